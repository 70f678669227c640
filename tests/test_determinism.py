"""Determinism on the CPU: the same inputs give a bit-identical winner, scores and kept samples, in one
process and across processes; chunk sizes change nothing for a batch-invariant model and, for a real
network whose matmuls depend on the batch size (the toy world on MKL), change scores only at float
rounding level while chunk size 1 reproduces a plain batch-1 run exactly. See docs/determinism.md.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from noise_search.samplers.noise_space import EDM
from noise_search.samplers.ode import heun_step, sample_heun, sampler_nfe, step_nfe
from noise_search.samplers.schedules import karras_sigmas
from noise_search.search.evaluate import LATENT
from noise_search.search.noise import SeedRecipe, make_noise_batch
from noise_search.search.paths import path_search
from noise_search.search.random_search import random_search
from noise_search.search.zero_order import zero_order_search

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (1, 2, 4, 4)
SIGMAS = karras_sigmas(6, 0.002, 80.0)
NFE = sampler_nfe("heun", SIGMAS)
TARGET = torch.linspace(-1, 1, 32).view(1, 2, 4, 4)
HAVE_WEIGHTS = all((ROOT / "toyworld" / "weights" / f).exists() for f in ("teacher.safetensors", "classifier.safetensors"))


def model(x, sigma):  # elementwise, hence batch-invariant: chunking cannot change a bit
    s2 = sigma.view(-1, *([1] * (x.ndim - 1))) ** 2
    return (x + s2 * 0.3) / (1 + s2)


def gen(candidates):
    return sample_heun(model, candidates.noise * SIGMAS[0], SIGMAS)


def score(batch):
    return -((batch.samples - TARGET) ** 2).flatten(1).sum(1)


def searches(chunk):
    den = lambda x, a, b: heun_step(model, x, a, b)[0]
    return {
        "random": random_search(gen, score, SHAPE, seed=5, count=11, nfe_per_candidate=NFE, chunk_size=chunk, top_k=4),
        "zero_order": zero_order_search(gen, score, SHAPE, seed=5, neighbours_per_iter=3, iterations=3, lam=0.9,
                                        nfe_per_candidate=NFE, chunk_size=chunk, top_k=4),
        "paths": path_search(den, score, SHAPE, SIGMAS, seed=5, paths=2, width=3, start_step=2, forward_steps=1,
                             backward_steps=2, step_nfe=lambda a, b: step_nfe("heun", b), chunk_size=chunk, top_k=4, space=EDM),
    }


def without_chunk(d):
    d = dict(d)
    d["params"] = {k: v for k, v in d["params"].items() if k != "chunk_size"}
    return d


@pytest.mark.parametrize("chunk", [1, 2, 5, 16])
def test_core_results_are_bit_identical_across_runs_and_chunk_sizes(chunk):
    ref = searches(4)
    got = searches(chunk)
    for name in ref:
        a, b = ref[name], got[name]
        assert without_chunk(a.to_dict()) == without_chunk(b.to_dict()), name  # every recipe, score and NFE, exactly
        assert a.winner.recipe == b.winner.recipe and a.winner.score == b.winner.score
        for k in a.top_k_samples:
            assert torch.equal(a.top_k_samples[k], b.top_k_samples[k]), (name, k)


def test_winner_json_round_trips_exactly():
    r = searches(3)["zero_order"]
    d = json.loads(r.to_json())
    assert [c["score"] for c in d["history"]] == [c.score for c in r.history]  # repr floats: no digit lost


# -------------------------------------------------------------------------------- toy world


CHILD = r'''
import importlib.util, json, os, sys
ROOT = sys.argv[1]
if "noise_search" not in sys.modules:
    spec = importlib.util.spec_from_file_location("noise_search", os.path.join(ROOT, "__init__.py"), submodule_search_locations=[ROOT])
    m = importlib.util.module_from_spec(spec); sys.modules["noise_search"] = m; spec.loader.exec_module(m)
import torch
torch.set_num_threads(int(sys.argv[2]))
from noise_search.toyworld.world import ToyWorld
from noise_search.samplers.noise_space import EDM
from noise_search.search.evaluate import LATENT
from noise_search.search.paths import path_search
from noise_search.search.random_search import random_search
from noise_search.search.zero_order import zero_order_search
w = ToyWorld(3, steps=4)
nfe = w.nfe_per_candidate
out = {
    "random": random_search(w.generate, w.score, w.shape, seed=17, count=6, nfe_per_candidate=nfe, chunk_size=4, top_k=3),
    "zero_order": zero_order_search(w.generate, w.score, w.shape, seed=17, neighbours_per_iter=2, iterations=2, lam=0.9,
                                    nfe_per_candidate=nfe, chunk_size=3, top_k=2),
    "paths": path_search(w.denoise, w.score, w.shape, w.sigmas, seed=17, paths=2, width=2, start_step=1, forward_steps=1,
                         backward_steps=2, step_nfe=w.step_nfe, decode=w.decode, chunk_size=4, top_k=2, space=EDM),
}
print(json.dumps({k: {"result": r.to_dict(), "winner_latent": r.top_k_samples[LATENT][0].flatten().tolist()} for k, r in out.items()}))
'''


@pytest.mark.skipif(not HAVE_WEIGHTS, reason="toy-world weights not committed")
def test_toy_world_search_is_bit_identical_in_two_processes():
    """Two fresh interpreters, same inputs: the JSON (every recipe, score, NFE) and the winner latents agree exactly."""
    threads = str(min(2, os.cpu_count() or 1))
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(ROOT), threads], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
        outs.append(out)
    assert outs[0] == outs[1]
    d = json.loads(outs[0])
    assert set(d) == {"random", "zero_order", "paths"} and all(v["result"]["completed"] for v in d.values())


@pytest.fixture(scope="module")
def world():
    if not HAVE_WEIGHTS:
        pytest.skip("toy-world weights not committed")
    from noise_search.toyworld.world import ToyWorld
    return ToyWorld(3, steps=4)


def test_toy_world_same_chunk_size_is_bit_identical(world):
    run = lambda: random_search(world.generate, world.score, world.shape, seed=3, count=8, nfe_per_candidate=world.nfe_per_candidate,
                                chunk_size=4, top_k=3)
    a, b = run(), run()
    assert a.to_dict() == b.to_dict() and torch.equal(a.top_k_samples[LATENT], b.top_k_samples[LATENT])


def test_toy_world_chunk_size_one_reproduces_a_plain_batch_one_run(world):
    """At chunk size 1 every candidate is exactly what sampling its seed alone gives (what a plain KSampler
    run with the winner's seed computes)."""
    r = random_search(world.generate, world.score, world.shape, seed=3, count=5, nfe_per_candidate=world.nfe_per_candidate,
                      chunk_size=1, top_k=5)
    for c, lat in zip(r.top_k, r.top_k_samples[LATENT]):
        alone = world.sample(make_noise_batch([SeedRecipe(c.recipe.seed)], world.shape))
        assert torch.equal(alone.extras[LATENT][0], lat)
        assert world.score(alone).item() == c.score


def test_toy_world_chunk_sizes_agree_to_rounding(world):
    """MKL's matmul kernels depend on the batch size, so scores may differ in the last bits across chunk sizes:
    they agree to 1e-4 (logits of order 10) and the recipes, order and NFE are identical."""
    runs = {cs: random_search(world.generate, world.score, world.shape, seed=3, count=8,
                              nfe_per_candidate=world.nfe_per_candidate, chunk_size=cs, top_k=3) for cs in (1, 3, 8)}
    ref = runs[8]
    s_ref = torch.tensor([c.score for c in ref.history], dtype=torch.float64)
    for cs, r in runs.items():
        assert [c.recipe for c in r.history] == [c.recipe for c in ref.history]
        assert [c.nfe for c in r.history] == [c.nfe for c in ref.history]
        s = torch.tensor([c.score for c in r.history], dtype=torch.float64)
        assert (s - s_ref).abs().max().item() < 1e-4, cs
        top = sorted(s_ref.tolist(), reverse=True)
        if top[0] - top[1] > 1e-3:  # no near tie: the winner cannot flip on rounding
            assert r.winner.recipe == ref.winner.recipe
