"""Verifier protocol, preprocessing, caching, ensembles (exact arithmetic), registry, weight-file errors, CLI."""

import json
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "fixtures"))
import verifiers_support as S  # noqa: E402

from noise_search.verifiers import (CorruptWeightsError, EnsembleVerifier, MissingWeightsError, Verifier, available,  # noqa: E402
                                    load_verifier, rank_pool)
from noise_search.verifiers.base import EmbeddingCache, ImagePreprocess, center_crop, resize_shortest  # noqa: E402
from noise_search.verifiers.ensemble import ranks, zscores  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    yield from S.one_thread()

# -- preprocessing ---------------------------------------------------------------------------------


def test_preprocess_shapes_channels_and_normalisation():
    p = ImagePreprocess(crop=16, resize=20, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    grey = torch.full((2, 30, 50, 1), 0.25)
    rgba = torch.cat([torch.full((1, 7, 9, 3), 1.0), torch.zeros(1, 7, 9, 1)], -1)
    # an IMAGE is read as ComfyUI's SaveImage writes it, 8-bit truncated as the originals read a PNG: 0.25 -> 63
    assert p(grey).shape == (2, 3, 16, 16) and torch.allclose(p(grey), torch.full((2, 3, 16, 16), (63 / 255 - 0.5) / 0.5), atol=1e-6)
    assert torch.allclose(p(rgba), torch.ones(1, 3, 16, 16), atol=1e-6)  # alpha dropped, bicubic overshoot clamped


def test_resize_and_crop_follow_torchvision_rounding():
    x = torch.arange(6 * 10, dtype=torch.float32).view(1, 1, 6, 10) / 60
    assert resize_shortest(x, 6) is x  # already the right size: untouched
    assert resize_shortest(x, 3).shape[-2:] == (3, 5)
    assert resize_shortest(torch.rand(1, 3, 10, 6), 3).shape[-2:] == (5, 3)
    c = center_crop(x, 4)
    assert torch.equal(c, x[..., 1:5, 3:7])
    assert center_crop(torch.ones(1, 1, 2, 2), 4).sum() == 4  # smaller image: zero padded


def test_embedding_cache_lru():
    calls = []
    c = EmbeddingCache(2)

    def f(keys):
        calls.append(list(keys))
        return torch.tensor([[float(len(k))] for k in keys])

    out = c.get_many(["aa", "b", "aa"], f)
    assert out.flatten().tolist() == [2.0, 1.0, 2.0] and calls == [["aa", "b"]]
    c.get_many(["ccc"], f)  # evicts "aa" (least recently used)
    assert list(c.data) == ["b", "ccc"] and (c.hits, c.misses) == (1, 3)
    assert c.get_many(["b"], f).item() == 1.0 and len(calls) == 2


class Const(Verifier):
    """Scores each image by its mean pixel times ``k`` (no weights)."""

    name = "const"

    def __init__(self, k=1.0, name=None, needs_early=False, batch_size=16):
        super().__init__("none", batch_size=batch_size)
        self.k = k
        self.needs_early = needs_early
        if name:
            self.name = name
        self.calls = 0

    def _score(self, images, conditions, early):
        self.calls += 1
        return images.mean((1, 2, 3)) * self.k


def imgs(values):
    return torch.tensor(values, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 2, 2, 3).contiguous()


def test_verifier_batches_internally_and_validates():
    v = Const(batch_size=2)
    s = v.score(imgs([0.1, 0.2, 0.3, 0.4, 0.5]))
    assert v.calls == 3 and s.dtype == torch.float32 and torch.allclose(s, torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5]))
    with pytest.raises(ValueError, match=r"must be a float tensor \[B, H, W, C\]"):
        v.score(torch.rand(2, 3, 3))
    with pytest.raises(ValueError, match="got 2 conditions for 5 images"):
        v.score(imgs([0.1] * 5), ["a", "b"])


# -- ensembles ---------------------------------------------------------------------------------------


def test_ranks_ties_share_average_rank():
    assert ranks([0.3, 0.1, 0.2]).tolist() == [3.0, 1.0, 2.0]
    assert ranks([5, 5, 1, 5]).tolist() == [3.0, 3.0, 1.0, 3.0]
    assert ranks([2, 2]).tolist() == [1.5, 1.5]
    with pytest.raises(ValueError, match="non-finite"):
        ranks([1.0, float("nan")])


def test_mean_rank_exact():
    raw = {"aesthetic": [5.0, 6.0, 4.0, 6.0], "clip": [0.30, 0.20, 0.25, 0.10], "ir": [-1.0, 0.5, 0.0, 2.0]}
    # ranks: aesthetic [2, 3.5, 1, 3.5]; clip [4, 2, 3, 1]; ir [1, 3, 2, 4]
    assert rank_pool(raw).tolist() == [7 / 3, 8.5 / 3, 2.0, 8.5 / 3]


def test_weighted_zscore_exact():
    raw = {"a": [1.0, 2.0, 3.0], "b": [10.0, 10.0, 10.0], "c": [3.0, 1.0, 2.0]}
    za = zscores(raw["a"])
    assert torch.allclose(za, torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64) / (2 / 3) ** 0.5)
    assert zscores(raw["b"]).tolist() == [0.0, 0.0, 0.0]
    got = rank_pool(raw, "zscore", {"a": 2.0, "b": 1.0, "c": 1.0})
    expected = (2 * za + zscores(raw["c"])) / 4
    assert torch.allclose(got, expected, atol=1e-15)
    with pytest.raises(ValueError, match="weights must be >= 0 with a positive sum"):
        rank_pool(raw, "zscore", {"a": -1.0})
    with pytest.raises(ValueError, match="same candidates"):
        rank_pool({"a": [1.0], "b": [1.0, 2.0]})
    with pytest.raises(ValueError, match="rule must be one of"):
        rank_pool(raw, "median")


def test_ensemble_verifier_within_batch_and_pool():
    a, b = Const(1.0, "a"), Const(-1.0, "b")
    c = Const(1.0, "c")
    ens = EnsembleVerifier([a, b, c])
    x = imgs([0.1, 0.3, 0.2])
    # a: ranks [1,3,2]; b (reversed): [3,1,2]; c: [1,3,2] -> mean [5/3, 7/3, 2]
    assert torch.allclose(ens.score(x), torch.tensor([5 / 3, 7 / 3, 2.0]))
    assert ens.name == "ensemble_mean_rank" and list(ens.members) == ["a", "b", "c"]
    # a chunked search pools its candidates in the core's scorer (search.scoring), the one place that keeps a pool
    from noise_search.search.evaluate import Batch
    from noise_search.search.scoring import PooledScorer
    pooled = PooledScorer([a, b, c], [None, None, None])
    first = pooled(Batch(x[:2]))
    pooled.commit([])
    assert torch.allclose(first, torch.tensor([4 / 3, 5 / 3]))  # pool = 2 so far: a [1,2], b [2,1], c [1,2]
    second = pooled(Batch(x[2:]))
    pooled.commit([])
    assert torch.allclose(second, torch.tensor([2.0]))
    assert torch.allclose(pooled.final_scores().float(), ens.score(x))  # the pool re-ranked = one batch of all three
    assert torch.cat(pooled.pool["b"]).tolist() == pytest.approx([-0.1, -0.3, -0.2])
    z = EnsembleVerifier({"x": a, "y": c}, rule="zscore", weights={"x": 3.0})
    assert torch.allclose(z.score(x).double(), zscores([0.1, 0.3, 0.2]), atol=1e-6)
    with pytest.raises(ValueError, match=r"weights for unknown members \['nope'\]"):
        EnsembleVerifier({"x": a}, weights={"nope": 1.0})


def test_ensemble_passes_early_only_to_members_that_need_it():
    class Early(Const):
        def _score(self, images, conditions, early):
            return (images - early).abs().mean((1, 2, 3))

    ens = EnsembleVerifier([Const(1.0, "a"), Early(name="ss", needs_early=True)])
    assert ens.needs_early
    with pytest.raises(ValueError, match=r"member\(s\) \['ss'\] need the early x0 prediction"):
        ens.score(imgs([0.1, 0.2]))
    s = ens.score(imgs([0.1, 0.2]), early=imgs([0.5, 0.1]))
    # a: [1, 2]; ss: |0.1-0.5| = 0.4 -> rank 2, |0.2-0.1| = 0.1 -> rank 1
    assert s.tolist() == [1.5, 1.5]


# -- registry and weight errors ------------------------------------------------------------------------


def test_registry_names_and_unknown_name():
    names = available()
    for n in ("clip_score", "aesthetic", "image_reward", "pick_score", "hpsv2", "hpsv2.1", "clip_zero_shot", "dino_linear",
              "self_supervised", "classifier", "vlm_grader", "ensemble"):
        assert n in names
    with pytest.raises(ValueError) as e:
        load_verifier("imagereward_v9", "/x")
    assert "unknown verifier 'imagereward_v9'; valid names: clip_score, pick_score" in str(e.value) and "vlm_grader" in str(e.value)
    with pytest.raises(ValueError, match="needs a path to its weights"):
        load_verifier("clip_score")


def test_missing_folder_and_files_name_everything(tmp_path):
    with pytest.raises(MissingWeightsError) as e:
        load_verifier("image_reward", tmp_path / "ImageReward")
    msg = str(e.value)
    assert "image_reward verifier: the folder ImageReward not found in " + str(tmp_path) in msg
    assert "ImageReward.pt, med_config.json, vocab.txt" in msg and "huggingface.co/THUDM/ImageReward" in msg
    (tmp_path / "ImageReward").mkdir()
    with pytest.raises(MissingWeightsError, match=r"ImageReward.pt not found in .*ImageReward \(expected there: ImageReward.pt"):
        load_verifier("image_reward", tmp_path / "ImageReward")
    with pytest.raises(FileNotFoundError, match=r"HPS_v2.1_compressed.pt not found in .*huggingface.co/xswu/HPSv2"):
        load_verifier("hpsv2.1", tmp_path / "ImageReward")
    with pytest.raises(MissingWeightsError, match=r"sac\+logos\+ava1-l14-linearMSE.pth not found .*improved-aesthetic-predictor"):
        load_verifier("aesthetic", tmp_path / "ImageReward")
    with pytest.raises(MissingWeightsError, match=r"config.json not found in .*expected there: config.json, model.safetensors"):
        load_verifier("clip_score", tmp_path / "ImageReward")
    with pytest.raises(MissingWeightsError, match=r"a linear head file .* not found .*facebook/dinov2"):
        load_verifier("dino_linear", tmp_path / "ImageReward")


def test_partial_and_corrupt_files(tmp_path):
    clip = tmp_path / "clip"
    model, tok = S.save_tiny_clip(str(clip))
    # tokenizer missing
    d = tmp_path / "notok"
    d.mkdir()
    for f in ("config.json", "model.safetensors"):
        (d / f).write_bytes((clip / f).read_bytes())
    with pytest.raises(MissingWeightsError, match=r"clip_score verifier: tokenizer.json \(or vocab.json \+ merges.txt\) not found in .*notok"):
        load_verifier("clip_score", d)
    # truncated weights
    data = (clip / "model.safetensors").read_bytes()
    (clip / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptWeightsError) as e:
        load_verifier("clip_score", clip)
    assert "model.safetensors in " + str(clip) + " is corrupt or unreadable (truncated" in str(e.value)
    assert "download it again from huggingface.co/openai/clip-vit-large-patch14" in str(e.value)
    (clip / "model.safetensors").write_bytes(data)
    (clip / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(CorruptWeightsError, match="config.json in .* is corrupt or unreadable \\(not valid JSON"):
        load_verifier("clip_score", clip)
    # a .pt that is not a checkpoint
    ir = tmp_path / "ir"
    ir.mkdir()
    (ir / "ImageReward.pt").write_bytes(b"this is not a torch file")
    S.write_json(ir / "med_config.json", S.tiny_med_config(30))
    S.synthetic_bert_vocab(str(ir / "vocab.txt"))
    with pytest.raises(CorruptWeightsError, match=r"ImageReward.pt in .*ir is corrupt or unreadable .*THUDM/ImageReward"):
        load_verifier("image_reward", ir)
    S.write_json(ir / "med_config.json", {"hidden_size": 3})
    with pytest.raises(CorruptWeightsError, match=r"med_config.json .*\(missing the BERT fields \['vocab_size'"):
        load_verifier("image_reward", ir)
    # wrong model type in a CLIP slot
    dino = tmp_path / "dino"
    S.save_tiny_dino(str(dino))
    with pytest.raises(CorruptWeightsError, match="has model_type 'dinov2'; expected 'clip'"):
        load_verifier("pick_score", dino)


def test_hub_is_never_contacted(tmp_path, monkeypatch):
    """A missing local folder is an error at once (no hub id fallback, no retries)."""
    import time

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    t = time.perf_counter()
    with pytest.raises(MissingWeightsError):
        load_verifier("clip_score", "openai/clip-vit-base-patch32")
    assert time.perf_counter() - t < 2.0


# -- CLI ---------------------------------------------------------------------------------------------


def test_cli_scores_images(tmp_path, capsys):
    from PIL import Image

    from noise_search.cli import score as cli

    folder = tmp_path / "clip"
    S.save_tiny_clip(str(folder))
    paths = []
    for i, c in enumerate([(255, 0, 0), (0, 128, 255)]):
        p = tmp_path / f"img{i}.png"
        Image.new("RGB", (40, 30), c).save(p)
        paths.append(str(p))
    assert cli.main(["score", "--verifier", "clip_score", "--weights", str(folder), "--prompt", "a cat", *paths]) == 0
    lines = [json.loads(ln) for ln in capsys.readouterr().out.strip().splitlines()]
    assert [ln["path"] for ln in lines] == paths
    v = load_verifier("clip_score", folder)
    for ln, p in zip(lines, paths):
        assert ln["score"] == pytest.approx(float(v.score(cli.load_image(p), "a cat")[0]), abs=1e-6)
    with pytest.raises(SystemExit, match="needs --prompt TEXT"):
        cli.main(["score", "--verifier", "clip_score", "--weights", str(folder), *paths])
    with pytest.raises(SystemExit, match="needs --class-id N"):
        cli.main(["score", "--verifier", "clip_zero_shot", "--weights", str(folder), "--opt", 'class_names=["cat","dog"]', *paths])
    assert cli.main(["score", "--verifier", "clip_zero_shot", "--weights", str(folder), "--opt", 'class_names=["cat","dog"]',
                     "--class-id", "1", paths[0]]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"path", "score"}
    assert cli.main(["score", "--verifier", "x", "--list"]) == 0
    assert "image_reward" in capsys.readouterr().out.split()
    for argv, must in ((["--verifier", "nope", "--weights", str(folder), "--prompt", "a", paths[0]],
                        "unknown verifier 'nope'; valid names: clip_score"),
                       (["--verifier", "image_reward", "--weights", str(tmp_path), "--prompt", "a", paths[0]],
                        "ImageReward.pt not found in " + str(tmp_path))):
        with pytest.raises(SystemExit) as e:  # the CLI's convention: one line on stderr, exit status 2
            cli.main(["score", *argv])
        assert e.value.code == 2 and must in capsys.readouterr().err


def test_dispatcher_hookup():
    import importlib

    try:
        top = importlib.import_module("noise_search.cli")
    except ImportError as err:  # the dispatcher belongs to another module of the pack
        pytest.skip(f"noise_search.cli not importable: {err}")
    args = top.build_parser().parse_args(["score", "--verifier", "clip_score", "--weights", "w", "--prompt", "p", "a.png"])
    from noise_search.cli import score as cli

    assert args.run is cli.run and args.images == ["a.png"] and args.prompt == "p"
