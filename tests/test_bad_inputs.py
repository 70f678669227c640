"""Every row of docs/bad-inputs.md: the bad input, the exact error type, and a message that names the
input, its valid range (or the valid choices / expected files) and what was given.

Each case is ``id: (call, error type, [substrings the message must contain])``; ``call`` gets a
temporary folder. ``test_the_table_and_the_tests_agree`` keeps the document and these cases in step
(node-layer rows live in tests/nodes/test_bad_inputs_nodes.py, which needs ComfyUI).
"""

import functools
import math
import re
from pathlib import Path

import pytest
import torch

from noise_search.samplers.noise_space import EDM
from noise_search.samplers.ode import heun_step, sample_heun, sampler_nfe, step_nfe
from noise_search.samplers.schedules import check_sigmas, karras_sigmas, rf_time_to_sigma
from noise_search.search.evaluate import Batch, Evaluator
from noise_search.search.noise import (MAX_SEED, NeighbourRecipe, PathRecipe, SeedRecipe, make_noise_batch, recipe_from_dict,
                                       sphere_neighbour)
from noise_search.search.paths import path_search, replay
from noise_search.search.random_search import random_search
from noise_search.search.result import SearchResult
from noise_search.search.zero_order import zero_order_search

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "bad-inputs.md"
SHAPE = (1, 2, 4, 4)
SIGMAS = karras_sigmas(8, 0.002, 80.0)
NFE = sampler_nfe("heun", SIGMAS)  # 15


def model(x, sigma):
    s2 = sigma.view(-1, *([1] * (x.ndim - 1))) ** 2
    return (x + s2 * 0.3) / (1 + s2)


def gen(candidates):
    return sample_heun(model, candidates.noise * SIGMAS[0], SIGMAS)


def den(x, a, b):
    return heun_step(model, x, a, b)[0]


def score(batch):
    return -(batch.samples ** 2).flatten(1).sum(1)


def rs(**kw):
    base = dict(seed=0, count=3, nfe_per_candidate=NFE)
    base.update(kw)
    return random_search(gen, score, SHAPE, **base)


def zo(**kw):
    base = dict(seed=0, neighbours_per_iter=2, iterations=1, lam=0.9, nfe_per_candidate=NFE)
    base.update(kw)
    return zero_order_search(gen, score, SHAPE, **base)


def ps(sigmas=SIGMAS, **kw):
    base = dict(seed=0, paths=2, width=2, start_step=3, forward_steps=1, backward_steps=2)
    base.update(kw)
    return path_search(den, score, SHAPE, sigmas, **base, space=EDM)


# -- toy world, verifiers (built lazily: only the cases that need them load weights) ------------------

@functools.cache
def toy():
    from noise_search.toyworld.world import ToyWorld
    return ToyWorld(3, steps=2, method="euler")


@functools.cache
def clf():
    from noise_search.toyworld.world import classifier_verifier
    return classifier_verifier()


def imgs(*shape, dtype=torch.float32):
    return torch.rand(*shape).to(dtype)


def prompt_verifier():
    from noise_search.verifiers.base import Verifier

    class Echo(Verifier):
        name, condition = "echo", "prompt"

        def _score(self, images, conditions, early):
            return images.mean(dim=(1, 2, 3))
    return Echo()


def early_verifier():
    from noise_search.verifiers.base import Verifier

    class Early(Verifier):
        name, needs_early = "self_supervised", True

        def _score(self, images, conditions, early):
            return images.mean(dim=(1, 2, 3))
    return Early()


def write(path, data):
    path.write_bytes(data)
    return path


def hps_folder(tmp, ckpt_bytes):
    (tmp / "tokenizer.json").write_text("{}")
    (tmp / "HPS_v2_compressed.pt").write_bytes(ckpt_bytes)
    return tmp


def load_verifier(*a, **kw):
    from noise_search.verifiers.registry import load_verifier as lv
    return lv(*a, **kw)


def score_cli(tmp, *args):
    """``python -m noise_search score ARGS IMAGE`` with a real image file in ``tmp`` (the command checks its images first)."""
    from PIL import Image

    from noise_search.cli import main
    Image.new("RGB", (8, 8)).save(tmp / "x.png")
    return main(["score", *args, str(tmp / "x.png")])


def image_reward_deeper_than_med_config(tmp):
    """A tiny ImageReward folder whose checkpoint has 2 text-encoder layers while its med_config.json says 1."""
    import sys
    fixtures = str(ROOT / "tests" / "fixtures")
    if fixtures not in sys.path:
        sys.path.insert(0, fixtures)
    import verifiers_support as S
    S.synthetic_bert_vocab(str(tmp / "vocab.txt"))
    n = len((tmp / "vocab.txt").read_text(encoding="utf-8").splitlines()) + 2  # + [DEC], [ENC]
    med = S.tiny_med_config(n)
    torch.save(S.RefImageReward(n, med).state_dict(), tmp / "ImageReward.pt")
    S.write_json(tmp / "med_config.json", {**med, "num_hidden_layers": 1})
    return load_verifier("image_reward", tmp, vision_heads=3)


def ensemble(members, **kw):
    from noise_search.verifiers.ensemble import EnsembleVerifier
    return EnsembleVerifier(members, **kw)


def ranks(s):
    from noise_search.verifiers.ensemble import ranks as r
    return r(s)


def demo(*args):
    from noise_search.cli import main
    return main(["demo", *args])


def toy_load(kind, path):
    from noise_search.toyworld import load
    return getattr(load, f"load_{kind}")(path)


def scm(**kw):
    from noise_search.samplers.scm import scm_sigmas
    return scm_sigmas(**kw)


def sample_scm_short():
    from noise_search.samplers.scm import sample_scm
    return sample_scm(model, torch.zeros(1, 1, 2, 2), torch.tensor([1.0]))


def resumed_with_other_seed():
    seen = []

    def stop(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rs(count=4, chunk_size=2, on_step=stop, on_interrupt=seen.append)
    return rs(count=4, chunk_size=2, seed=9, resume_from=seen[0])


BIG = MAX_SEED + 1
CASES = {
    # ---- search core: counts and budgets
    "S01": (lambda t: rs(count=0), ValueError, ["count", ">= 1", "got 0"]),
    "S02": (lambda t: rs(count=2.5), ValueError, ["count", ">= 1", "got 2.5"]),
    "S03": (lambda t: rs(count=10, budget=100, nfe_per_candidate=15), ValueError,
            ["count 10 x 15 NFE = 150 exceeds the NFE budget 100", "count <= 6"]),
    "S04": (lambda t: rs(count=None, budget=14, nfe_per_candidate=15), ValueError,
            ["NFE budget 14 is below one candidate (15 NFE each)", ">= 15"]),
    "S05": (lambda t: rs(count=None, budget=0), ValueError, ["budget (NFE)", ">= 1", "got 0"]),
    "S06": (lambda t: rs(count=None, budget=None), ValueError, ["give count (an integer >= 1) or an NFE budget", f">= {NFE}"]),
    "S07": (lambda t: rs(nfe_per_candidate=0), ValueError, ["nfe_per_candidate", ">= 1", "got 0"]),
    "S08": (lambda t: rs(cfg_multiplier=0), ValueError, ["cfg_multiplier", ">= 1", "got 0"]),
    "S09": (lambda t: rs(chunk_size=0), ValueError, ["chunk_size", ">= 1", "got 0"]),
    "S10": (lambda t: rs(count=3, top_k=5), ValueError, ["top_k 5 is larger than the 3 candidates", "count N = 3", "[1, 3]"]),
    "S11": (lambda t: rs(top_k=0), ValueError, ["top_k", ">= 1", "got 0"]),
    "S12": (lambda t: ps(top_k=5), ValueError, ["top_k 5 is larger than the 4 candidates", "N x M = 2 x 2", "[1, 4]"]),
    # ---- seeds and recipes
    "S13": (lambda t: rs(seed=-1), ValueError, ["seed", f"[0, {MAX_SEED}]", "got -1"]),
    "S14": (lambda t: rs(seed=BIG), ValueError, ["seed", f"[0, {MAX_SEED}]", f"got {BIG}"]),
    "S15": (lambda t: SeedRecipe(math.nan).make(SHAPE), ValueError, ["seed", f"[0, {MAX_SEED}]", "got nan"]),
    "S16": (lambda t: ps(seed="7"), ValueError, ["seed", f"[0, {MAX_SEED}]", "got '7'"]),
    "S17": (lambda t: recipe_from_dict({"kind": "beam", "seed": 1}), ValueError,
            ["unknown recipe kind 'beam'", "'seed', 'neighbour', 'path' or 'particle'"]),
    "S18": (lambda t: recipe_from_dict({"kind": "neighbour", "pivot": {"kind": "seed", "seed": 1}, "iteration": 0, "index": 0, "seed": 2}),
            ValueError, ["neighbour recipe is missing ['lam']", "'pivot', 'iteration', 'index', 'lam', 'seed'"]),
    "S19": (lambda t: make_noise_batch([], SHAPE), ValueError, ["candidate pool is empty", "at least one recipe"]),
    "S20": (lambda t: SearchResult("random", {}, [], 0).winner, ValueError, ["random", "no candidate was evaluated"]),
    "S21": (lambda t: random_search(gen, score, (2, 2, 4, 4), count=2, nfe_per_candidate=NFE),
            ValueError, ["latent shape", "batch 1", "got (2, 2, 4, 4)"]),
    "S22": (lambda t: random_search(gen, score, (1, 0, 4), count=2, nfe_per_candidate=NFE), ValueError,
            ["latent shape", "sizes >= 1", "got (1, 0, 4)"]),
    "S44": (lambda t: NeighbourRecipe(SeedRecipe(4), 0, 0, 0.9, 4).make(SHAPE), ValueError,
            ["direction noise must not be parallel to the pivot", "another seed"]),
    "S45": (lambda t: sphere_neighbour(torch.zeros(SHAPE), torch.ones(SHAPE), 0.9), ValueError,
            ["pivot must be finite with a non-zero norm", "got norm 0.0"]),
    # ---- zero-order
    "S23": (lambda t: zo(lam=1.0), ValueError, ["lambda", "(0, 1)", "got 1.0"]),
    "S24": (lambda t: zo(lam=0.0), ValueError, ["lambda", "(0, 1)", "got 0.0"]),
    "S25": (lambda t: zo(lam=math.nan), ValueError, ["lambda", "(0, 1)", "got nan"]),
    "S26": (lambda t: zo(neighbours_per_iter=0), ValueError, ["neighbours per iteration (N)", ">= 1", "got 0"]),
    "S27": (lambda t: zo(iterations=None, budget=NFE), ValueError,
            [f"NFE budget {NFE} is below one zero-order iteration ({2 * NFE} NFE = N 2 x {NFE})", f">= {2 * NFE}"]),
    "S28": (lambda t: zo(iterations=3, budget=4 * NFE), ValueError,
            [f"iterations 3 x {2 * NFE} NFE = {6 * NFE} exceeds the NFE budget {4 * NFE}", "iterations <= 2"]),
    "S29": (lambda t: zo(iterations=None, budget=None), ValueError, ["give iterations (an integer >= 1) or an NFE budget", f">= {2 * NFE}"]),
    # ---- search over paths
    "S30": (lambda t: ps(forward_steps=2, backward_steps=2), ValueError, ["delta_b > delta_f", "delta_b=2, delta_f=2"]),
    "S31": (lambda t: ps(start_step=8, forward_steps=0, backward_steps=1), ValueError,
            ["start_step must be in [delta_f=0, 7]", "grid of 8 steps", "got 8"]),
    "S32": (lambda t: ps(start_step=0, forward_steps=1), ValueError, ["start_step must be in [delta_f=1, 7]", "got 0"]),
    "S33": (lambda t: ps(width=0), ValueError, ["width (M re-noisings per path)", ">= 1", "got 0"]),
    "S34": (lambda t: ps(paths=0), ValueError, ["paths (N)", ">= 1", "got 0"]),
    "S35": (lambda t: ps(sigmas=[1.0, 2.0, 0.5, 0.0], start_step=1, forward_steps=0, backward_steps=1), ValueError,
            ["sigmas must be a non-increasing grid", "finite sigmas >= 0", "got [1.0, 2.0, 0.5, 0.0]"]),
    "S36": (lambda t: ps(sigmas=[5.0, math.nan, 0.0], start_step=1, forward_steps=0, backward_steps=1), ValueError,
            ["sigmas must be a non-increasing grid", "got [5.0, nan, 0.0]"]),
    "S37": (lambda t: replay(PathRecipe(SeedRecipe(1), 4, 0, 5), den, SHAPE, SIGMAS, start_step=3, forward_steps=1, backward_steps=2, space=EDM),
            ValueError, ["re-noises at step 4", "puts that round at step 3"]),
    # ---- what generate / score return
    "S38": (lambda t: random_search(gen, lambda b: torch.tensor([0.0, math.nan, 1.0]), SHAPE, count=3, nfe_per_candidate=NFE, chunk_size=3),
            ValueError, ["non-finite scores (NaN or inf) for candidates [1]", "[nan]", "must be finite"]),
    "S39": (lambda t: random_search(gen, lambda b: torch.full((len(b),), math.inf), SHAPE, count=2, nfe_per_candidate=NFE),
            ValueError, ["non-finite scores (NaN or inf) for candidates [0, 1]", "[inf, inf]", "must be finite"]),
    "S40": (lambda t: random_search(gen, lambda b: torch.zeros(2), SHAPE, count=3, nfe_per_candidate=NFE, chunk_size=3),
            ValueError, ["score() returned 2 scores for 3 candidates", "one per candidate"]),
    "S41": (lambda t: random_search(lambda n: gen(n)[:1], score, SHAPE, count=3, nfe_per_candidate=NFE, chunk_size=3),
            ValueError, ["generate() returned 1 samples for 3 noises", "one per noise"]),
    "S42": (lambda t: random_search(lambda c: [c.noise], score, SHAPE, count=1, nfe_per_candidate=NFE), TypeError,
            ["generate() must return a tensor or a Batch", "got list"]),
    "S43": (lambda t: resumed_with_other_seed(), ValueError, ["resume_from was made with other parameters", "seed=0 there, 9 here"]),
    # ---- samplers and schedules
    "P01": (lambda t: karras_sigmas(0, 0.002, 80.0), ValueError, ["steps", ">= 1", "got 0"]),
    "P02": (lambda t: karras_sigmas(10, 80.0, 0.002), ValueError, ["0 < sigma_min < sigma_max", "sigma_min=80.0, sigma_max=0.002"]),
    "P03": (lambda t: karras_sigmas(10, 0.0, 80.0), ValueError, ["0 < sigma_min < sigma_max", "sigma_min=0.0"]),
    "P04": (lambda t: step_nfe("dpm", 1.0), ValueError, ["unknown ODE method 'dpm'", "['euler', 'heun']"]),
    "P05": (lambda t: check_sigmas(torch.tensor([1.0, 2.0, 0.0])), ValueError, ["sigmas must be non-increasing", "got [1.0, 2.0, 0.0]"]),
    "P06": (lambda t: rf_time_to_sigma(1.0), ValueError, ["rectified-flow time", "[0, 1)", "got 1.0"]),
    "P07": (lambda t: scm(steps=5), ValueError, ["steps must be an integer in 1..4", "got 5"]),
    "P08": (lambda t: scm(steps=2, t_max=2.0), ValueError, ["t_max must be in (0, 1.5707963267948966]", "got 2.0"]),
    "P09": (lambda t: scm(steps=2, t_mid=1.6), ValueError, ["t_mid[0] must be in (0, 1.5707963267948966)", "got 1.6"]),
    "P10": (lambda t: scm(steps=2, t_max=1.0, t_mid=1.2), ValueError,
            ["times must strictly decrease from t_max", "pi/2 >= t_max > t_mid[0] > ... > 0"]),
    "P11": (lambda t: scm(steps=3, t_mid=1.1), ValueError, ["t_mid must hold steps - 1 = 2 intermediate time(s) for 3 step(s)", "got 1"]),
    "P12": (lambda t: sample_scm_short(), ValueError, ["sigmas must hold at least 2 values (steps + 1)", "[1.0]"]),
    # ---- verifiers: images, conditions, names, weights
    "V01": (lambda t: clf().score(imgs(1, 8, 8, 2), 3), ValueError, ["images", "1, 3 or 4 channels", "(1, 8, 8, 2)"]),
    "V02": (lambda t: clf().score(imgs(0, 8, 8, 1), 3), ValueError, ["images", "at least one image of at least 1x1 pixels", "(0, 8, 8, 1)"]),
    "V03": (lambda t: clf().score(imgs(1, 0, 8, 1), 3), ValueError, ["images", "at least one image of at least 1x1 pixels", "(1, 0, 8, 1)"]),
    "V04": (lambda t: clf().score((imgs(1, 8, 8, 1) * 255).to(torch.uint8), 3), ValueError,
            ["images", "floating point in 0..1", "torch.uint8"]),
    "V05": (lambda t: clf().score(imgs(8, 8, 1), 3), ValueError, ["images", "[B, H, W, C]", "(8, 8, 1)"]),
    "V06": (lambda t: clf().score(imgs(2, 8, 8, 1), [1, 2, 3]), ValueError, ["3 conditions for 2 images", "one per image or one for all"]),
    "V07": (lambda t: prompt_verifier().score(imgs(2, 8, 8, 3), ["a cat", "a dog", "a bird"]), ValueError,
            ["3 conditions for 2 images", "one per image or one for all"]),
    "V08": (lambda t: clf().score(imgs(1, 8, 8, 1), 10), ValueError, ["class id", "[0, 9]", "got 10"]),
    "V09": (lambda t: clf().score(imgs(1, 8, 8, 1), -1), ValueError, ["class id", "[0, 9]", "got -1"]),
    "V10": (lambda t: prompt_verifier().score(imgs(1, 8, 8, 3), None), ValueError, ["echo verifier", "text prompt per image", "got None"]),
    "V11": (lambda t: early_verifier().score(imgs(1, 8, 8, 3)), ValueError, ["self_supervised verifier", "early x0 prediction (early=...)"]),
    "V12": (lambda t: prompt_verifier().__class__(batch_size=0), ValueError, ["batch_size", ">= 1", "got 0"]),
    "V13": (lambda t: load_verifier("clip-score2", t), ValueError, ["unknown verifier 'clip-score2'", "valid names:", "clip_score"]),
    "V14": (lambda t: load_verifier("clip_score", None), ValueError, ["verifier 'clip_score' needs a path", "openai/clip-vit-large-patch14"]),
    "V15": (lambda t: load_verifier("hpsv2", t / "missing"), FileNotFoundError,
            ["hpsv2 verifier", "not found in", "HPS_v2_compressed.pt", "xswu/HPSv2"]),
    "V16": (lambda t: load_verifier("hpsv2", hps_folder(t, b"\x00not a checkpoint")), OSError,
            ["hpsv2 verifier", "HPS_v2_compressed.pt", "corrupt or unreadable", "download it again from huggingface.co/xswu/HPSv2"]),
    "V17": (lambda t: ensemble([clf()], rule="median"), ValueError, ["ensemble rule", "('mean_rank', 'zscore')", "got 'median'"]),
    "V18": (lambda t: ranks([1.0, math.nan]), ValueError, ["cannot rank non-finite scores", "nan"]),
    "V19": (lambda t: load_verifier("clip_score", t, scale="percent"), ValueError,
            ["clip_score scale must be one of 'cosine', 'hessel', 'torchmetrics'", "got 'percent'"]),
    "V20": (lambda t: load_verifier("pick_score", t, scale="hessel"), ValueError,
            ["verifier 'pick_score' has no scale option", "scale='hessel'", "only clip_score: cosine, hessel, torchmetrics"]),
    "V21": (lambda t: score_cli(t, "--verifier", "clip_score", "--weights", str(t), "--prompt", "a", "--scale", "percent"),
            SystemExit, ["--scale must be one of cosine, hessel, torchmetrics", "got 'percent'"]),
    "V22": (lambda t: image_reward_deeper_than_med_config(t), OSError,
            ["image_reward verifier", "ImageReward.pt", "text-encoder layers [1] beyond med_config.json's num_hidden_layers = 1",
             "download it again from huggingface.co/THUDM/ImageReward"]),
    # ---- toy world
    "T01": (lambda t: toy().__class__(10), ValueError, ["digit (class id)", "[0, 9]", "got 10"]),
    "T02": (lambda t: toy().sample(torch.zeros(2, 4, 8, 8)), ValueError, ["toy-world noise", "[B, 1, 8, 8]", "got (2, 4, 8, 8)"]),
    "T03": (lambda t: toy().__class__(3, steps=0), ValueError, ["steps", ">= 1", "got 0"]),
    "T04": (lambda t: toy().__class__(3, generator="gan"), ValueError, ["generator", "'teacher' or 'student'", "got 'gan'"]),
    "T05": (lambda t: toy().__class__(3, method="dpm"), ValueError, ["method", "['euler', 'heun']", "got 'dpm'"]),
    "T06": (lambda t: toy_load("teacher", t / "teacher.safetensors"), FileNotFoundError,
            ["toy-world teacher weights not found", "teacher.safetensors", "Create them with: python -m noise_search.toyworld.train_teacher"]),
    "T07": (lambda t: toy_load("teacher", write(t / "teacher.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{}")),
            RuntimeError, ["toy-world teacher weights file", "is corrupt", "Regenerate it with: python -m noise_search.toyworld.train_teacher"]),
    "T08": (lambda t: toy_load("teacher", ROOT / "toyworld" / "weights" / "classifier.safetensors"), RuntimeError,
            ["holds 'classifier' weights, not 'teacher'", "Regenerate it with"]),
    "T09": (lambda t: toy().denoiser(torch.zeros(1, 1, 8, 8), torch.ones(1), class_labels=11), ValueError,
            ["class labels", "0..10", "[11]"]),
    # ---- demo CLI (argparse-level errors exit with the message)
    "D01": (lambda t: demo("--digit", "12", "--out", str(t)), SystemExit, ["--digit", "[0, 9]", "got 12"]),
    "D02": (lambda t: demo("--algorithms", "beam", "--out", str(t)), SystemExit, ["--algorithms", "random,zero_order,paths", "'beam'"]),
    "D03": (lambda t: demo("--generator", "student", "--steps", "8", "--out", str(t)), SystemExit, ["--steps", "[1, 4]", "got 8"]),
    "D04": (lambda t: demo("--lam", "1.5", "--out", str(t)), SystemExit, ["--lam", "(0, 1)", "got 1.5"]),
    "D05": (lambda t: demo("--chunk-size", "0", "--out", str(t)), SystemExit, ["--chunk-size", ">= 1", "got 0"]),
    "D06": (lambda t: demo("--budget", "0", "--out", str(t)), SystemExit, ["--budget", ">= 1", "got 0"]),
    "D07": (lambda t: demo("--seed", "-3", "--out", str(t)), SystemExit, ["--seed", f"[0, {MAX_SEED}]", "got -3"]),
    "D08": (lambda t: demo("--top-k", "0", "--out", str(t)), SystemExit, ["--top-k", ">= 1", "got 0"]),
    "D09": (lambda t: write(t / "random_interrupted.json", b"{}") and demo("--algorithms", "random", "--budget", "6", "--steps", "2",
                                                                          "--resume", "--quiet", "--out", str(t)),
            SystemExit, ["--resume", "random_interrupted.json", "no random_interrupted_topk.pt", "run without --resume"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input(case, tmp_path):
    call, err_type, must = CASES[case]
    with pytest.raises(err_type) as info:
        call(tmp_path)
    msg = str(info.value)
    missing = [m for m in must if m not in msg]
    assert not missing, f"{case}: message {msg!r} lacks {missing}"


def test_weight_errors_are_specific_types():
    """Missing weights are FileNotFoundError (an OSError), corrupt ones the library's own classes."""
    from noise_search.toyworld.load import MissingWeightsError, WeightsError
    from noise_search.verifiers.files import CorruptWeightsError, MissingWeightsError as VMissing
    assert issubclass(MissingWeightsError, (WeightsError, FileNotFoundError))
    assert issubclass(VMissing, FileNotFoundError) and issubclass(CorruptWeightsError, OSError)


def test_corrupt_verifier_checkpoint_is_the_library_error(tmp_path):
    from noise_search.verifiers.files import CorruptWeightsError
    with pytest.raises(CorruptWeightsError):
        load_verifier("hpsv2", hps_folder(tmp_path, b"garbage"))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_verifier_converts_images_to_its_own_device_and_dtype(dtype):
    """Not an error: a verifier moves images to its own device and dtype (ComfyUI decodes on the CPU while a
    verifier may sit on the GPU in fp16) and returns float32 scores on the CPU."""
    images = torch.rand(3, 8, 8, 1).to(dtype)
    s = clf().score(images, 3)
    assert s.dtype == torch.float32 and s.device.type == "cpu" and s.shape == (3,)
    assert torch.equal(s, clf().score(images.float(), 3))  # exactly the scores of the same pixels in float32


def test_verifier_in_another_dtype_than_the_images():
    from noise_search.toyworld.world import classifier_verifier
    from noise_search.toyworld.load import load_classifier
    v64 = classifier_verifier(load_classifier().double())
    v64.dtype = torch.float64
    v64.model = v64.model.to(torch.float64)
    images = torch.rand(2, 8, 8, 1)
    s = v64.score(images, 3)
    assert s.dtype == torch.float32 and torch.allclose(s, clf().score(images, 3), atol=1e-4)


def test_the_table_and_the_tests_agree():
    """Every row of docs/bad-inputs.md names a case that exists in the test file its 'test' column names."""
    rows = [r for r in DOC.read_text().splitlines() if re.match(r"^\| [A-Z]\d\d \|", r)]
    assert len(rows) >= 25
    ids = [r.split("|")[1].strip() for r in rows]
    assert len(ids) == len(set(ids)), "duplicate row ids"
    node_src = (ROOT / "tests" / "nodes" / "test_bad_inputs_nodes.py").read_text()
    for r, i in zip(rows, ids):
        if i.startswith("N"):
            assert f'"{i}"' in node_src, f"row {i} has no case in tests/nodes/test_bad_inputs_nodes.py"
        else:
            assert i in CASES, f"row {i} has no case here"
    assert set(CASES) <= set(ids), f"cases missing from the table: {sorted(set(CASES) - set(ids))}"
