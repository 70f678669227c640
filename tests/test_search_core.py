"""The framework-free search core on a closed-form toy: data ~ N(mu, I), whose exact denoiser
is D(x, sigma) = (x + sigma^2 mu) / (1 + sigma^2). Everything here is elementwise, so batching
and chunking cannot change a single bit."""

import math

import pytest
import torch

from closed_form import MU, CountingModel
from noise_search.samplers.noise_space import EDM
from noise_search.samplers.ode import heun_step, sample_heun, sample_euler, sampler_nfe, step_nfe
from noise_search.samplers.schedules import karras_sigmas
from noise_search.search.candidates import Candidates
from noise_search.search.evaluate import Batch
from noise_search.search.noise import (NeighbourRecipe, PathRecipe, SeedRecipe, make_noise_batch, recipe_from_dict,
                                       recipe_to_dict, seed_noise, sphere_neighbour)
from noise_search.search.paths import path_search, replay
from noise_search.search.random_search import random_search
from noise_search.search.zero_order import zero_order_search

SHAPE = (1, 2, 4, 4)


def target_score(batch):
    """Higher for samples nearer a fixed target pattern."""
    target = torch.linspace(-1, 1, 32).view(1, 2, 4, 4)
    return -((batch.samples - target) ** 2).flatten(1).sum(1)


@pytest.fixture
def world():
    model = CountingModel()
    sigmas = karras_sigmas(8, 0.002, 80.0)
    gen = lambda c: sample_heun(model, c.noise * sigmas[0], sigmas)
    return model, sigmas, gen, sampler_nfe("heun", sigmas)


def test_seed_noise_follows_comfy_prepare_noise():
    g = torch.manual_seed(1234)
    expected = torch.randn(SHAPE, generator=g, device="cpu")
    assert torch.equal(seed_noise(1234, SHAPE), expected)
    assert torch.equal(SeedRecipe(1234).make(SHAPE), expected)


def test_neighbours_lie_on_the_sphere_at_cosine_lambda():
    pivot = seed_noise(7, SHAPE)
    y = sphere_neighbour(pivot, seed_noise(8, SHAPE), 0.9)
    cos = torch.nn.functional.cosine_similarity(pivot.flatten().double(), y.flatten().double(), dim=0)
    assert abs(cos.item() - 0.9) < 1e-6
    assert abs(y.norm().item() - pivot.norm().item()) < 1e-4
    with pytest.raises(ValueError, match=r"lambda .* \(0, 1\)"):
        sphere_neighbour(pivot, pivot, 1.0)


@pytest.mark.parametrize("recipe", [
    SeedRecipe(5),
    NeighbourRecipe(SeedRecipe(5), 2, 1, 0.95, 123456789),
    NeighbourRecipe(NeighbourRecipe(SeedRecipe(5), 0, 0, 0.9, 11), 1, 3, 0.95, 12),
    PathRecipe(PathRecipe(SeedRecipe(9), 3, 0, 77), 4, 1, 78),
])
def test_recipes_recreate_noise_bit_exactly(recipe):
    again = recipe_from_dict(recipe_to_dict(recipe))
    assert again == recipe
    assert torch.equal(again.make(SHAPE), recipe.make(SHAPE))


def test_nfe_counts_for_samplers():
    sig = karras_sigmas(10, 0.002, 80.0)
    assert sampler_nfe("heun", sig) == 19 and sampler_nfe("euler", sig) == 10
    m = CountingModel()
    sample_heun(m, torch.randn(3, *SHAPE[1:]), sig)
    assert m.calls == 3 * 19
    assert step_nfe("heun", 0.0) == 1 and step_nfe("heun", 0.5) == 2
    with pytest.raises(ValueError, match="unknown ODE method"):
        step_nfe("dpm", 1.0)


def test_random_search_winner_is_max_and_nfe_matches_model_calls(world):
    model, sigmas, gen, nfe = world
    r = random_search(gen, target_score, SHAPE, seed=10, count=11, nfe_per_candidate=nfe, chunk_size=4, top_k=3)
    scores = [c.score for c in r.history]
    assert len(scores) == 11 and r.winner.score == max(scores)
    assert [c.score for c in r.top_k] == sorted(scores, reverse=True)[:3]
    assert r.nfe == model.calls == 11 * nfe
    assert [c.nfe for c in r.history] == [nfe * (i + 1) for i in range(11)]
    # the winner's seed regenerates the kept winner sample exactly
    again = gen(Candidates.of([r.winner.recipe], SHAPE))
    assert torch.equal(again, r.winner_sample())


def test_chunk_size_does_not_change_results(world):
    _, _, gen, nfe = world
    a = random_search(gen, target_score, SHAPE, seed=3, count=9, nfe_per_candidate=nfe, chunk_size=1)
    b = random_search(gen, target_score, SHAPE, seed=3, count=9, nfe_per_candidate=nfe, chunk_size=9)
    assert [c.score for c in a.history] == [c.score for c in b.history]
    assert torch.equal(a.top_k_samples["samples"], b.top_k_samples["samples"])


def test_zero_order_moves_pivot_and_accounts(world):
    model, _, gen, nfe = world
    z = zero_order_search(gen, target_score, SHAPE, seed=1, neighbours_per_iter=3, iterations=4, lam=0.9,
                          nfe_per_candidate=nfe, chunk_size=2)
    assert len(z.history) == 12 and z.nfe == model.calls == 12 * nfe
    assert z.winner.score == max(c.score for c in z.history)
    for k in range(1, 4):  # each iteration's neighbours surround the previous iteration's best
        prev = max((c for c in z.history if c.round == k), key=lambda c: (c.score, -c.index))
        for c in (c for c in z.history if c.round == k + 1):
            assert c.recipe.pivot == prev.recipe
    again = zero_order_search(gen, target_score, SHAPE, seed=1, neighbours_per_iter=3, iterations=4, lam=0.9,
                              nfe_per_candidate=nfe, chunk_size=5)
    assert again.to_dict() | {"params": None} == z.to_dict() | {"params": None}


def test_zero_order_budget_planning(world):
    _, _, gen, nfe = world
    z = zero_order_search(gen, target_score, SHAPE, seed=1, neighbours_per_iter=2, budget=5 * nfe, nfe_per_candidate=nfe)
    assert z.params["iterations"] == 2 and z.nfe == 4 * nfe
    with pytest.raises(ValueError, match="below one zero-order iteration"):
        zero_order_search(gen, target_score, SHAPE, neighbours_per_iter=2, budget=nfe, nfe_per_candidate=nfe)
    with pytest.raises(ValueError, match="exceeds the NFE budget"):
        zero_order_search(gen, target_score, SHAPE, iterations=3, neighbours_per_iter=2, budget=4 * nfe, nfe_per_candidate=nfe)


def test_random_search_budget_errors(world):
    _, _, gen, nfe = world
    with pytest.raises(ValueError, match=r"count 10 x 15 NFE = 150 exceeds the NFE budget 100"):
        random_search(gen, target_score, SHAPE, count=10, budget=100, nfe_per_candidate=15)
    with pytest.raises(ValueError, match="below one candidate"):
        random_search(gen, target_score, SHAPE, budget=14, nfe_per_candidate=15)
    with pytest.raises(ValueError, match="count must be an integer >= 1"):
        random_search(gen, target_score, SHAPE, count=0, nfe_per_candidate=15)
    assert random_search(gen, target_score, SHAPE, budget=3 * nfe + 1, nfe_per_candidate=nfe).params["count"] == 3


def _path_args(model, sigmas):
    den = lambda x, a, b: heun_step(model, x, a, b)[0]
    return den, lambda a, b: step_nfe("heun", b)


def test_paths_nfe_winner_and_replay(world):
    model, sigmas, _, _ = world
    den, snfe = _path_args(model, sigmas)
    p = path_search(den, target_score, SHAPE, sigmas, seed=4, paths=2, width=3, start_step=3, forward_steps=1,
                    backward_steps=2, step_nfe=snfe, chunk_size=4, space=EDM)
    assert p.nfe == model.calls
    final_round = max(c.round for c in p.history)
    finals = [c for c in p.history if c.round == final_round]
    assert len(finals) == 6 and p.winner.score == max(c.score for c in finals)
    assert all(c.round == final_round for c in p.top_k)
    x = replay(p.winner.recipe, den, SHAPE, sigmas, start_step=3, forward_steps=1, backward_steps=2, space=EDM)
    assert torch.equal(x, p.winner_sample())


def test_paths_with_no_renoising_reduce_to_plain_sampling(world):
    model, sigmas, gen, _ = world
    den, snfe = _path_args(model, sigmas)
    p = path_search(den, target_score, SHAPE, sigmas, seed=20, paths=3, width=1, start_step=2, forward_steps=0,
                    backward_steps=2, step_nfe=snfe, space=EDM)
    plain = gen(Candidates.of([SeedRecipe(20), SeedRecipe(21), SeedRecipe(22)], SHAPE))
    order = sorted(range(3), key=lambda i: -target_score(Batch(plain[i:i + 1])).item())
    assert torch.equal(p.top_k_samples["samples"], plain[order])


def test_paths_refuse_bad_deltas(world):
    model, sigmas, _, _ = world
    den, _ = _path_args(model, sigmas)
    with pytest.raises(ValueError, match="delta_b > delta_f"):
        path_search(den, target_score, SHAPE, sigmas, start_step=3, forward_steps=2, backward_steps=2, space=EDM)
    with pytest.raises(ValueError, match="start_step must be in"):
        path_search(den, target_score, SHAPE, sigmas, start_step=8, forward_steps=0, backward_steps=1, space=EDM)


def test_interrupt_hands_over_best_so_far_then_propagates(world):
    _, _, gen, nfe = world
    seen = {}

    class Cancel(Exception):
        pass

    def on_step(i, n):
        if i >= 4:
            raise Cancel()

    with pytest.raises(Cancel):
        random_search(gen, target_score, SHAPE, count=10, nfe_per_candidate=nfe, chunk_size=2, on_step=on_step,
                      on_interrupt=lambda r: seen.setdefault("r", r))
    r = seen["r"]
    assert not r.completed and len(r.history) == 4
    assert r.winner.score == max(c.score for c in r.history)


def test_out_of_memory_halves_the_chunk(world):
    _, _, gen, nfe = world
    sizes = []

    def flaky_generate(candidates):
        sizes.append(len(candidates))
        if len(candidates) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return gen(candidates)

    r = random_search(flaky_generate, target_score, SHAPE, seed=0, count=6, nfe_per_candidate=nfe, chunk_size=8)
    ref = random_search(gen, target_score, SHAPE, seed=0, count=6, nfe_per_candidate=nfe, chunk_size=8)
    assert sizes[:3] == [6, 3, 1] and max(sizes[2:]) == 1 and [c.score for c in r.history] == [c.score for c in ref.history]


def test_non_finite_scores_are_an_error(world):
    _, _, gen, nfe = world
    with pytest.raises(ValueError, match=r"non-finite scores \(NaN or inf\) for candidates \[1\]"):
        random_search(gen, lambda b: torch.tensor([0.0, math.nan, 1.0])[: len(b)], SHAPE, count=3,
                      nfe_per_candidate=nfe, chunk_size=3)


def test_euler_and_heun_are_deterministic():
    m = CountingModel()
    sig = karras_sigmas(5, 0.002, 80.0)
    x = seed_noise(3, SHAPE) * 80
    assert torch.equal(sample_euler(m, x, sig), sample_euler(m, x, sig))
    assert torch.equal(sample_heun(m, x, sig), sample_heun(m, x, sig))
    # the exact denoiser of N(mu, I) data: the ODE from noise ends near the data distribution's scale
    out = sample_heun(m, seed_noise(3, (256, 1, 1, 1)) * 80, karras_sigmas(40, 0.002, 80.0))
    assert abs(out.mean().item() - MU) < 0.2 and abs(out.std().item() - 1.0) < 0.15
