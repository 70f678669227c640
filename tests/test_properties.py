"""Property-based tests of the core (hypothesis): recipes, neighbours, NFE accounting, top-K ordering,
ensemble ranks and schedules hold for random parameters, not only for the hand-picked ones elsewhere.
Small ``max_examples`` and tiny tensors keep the whole file well under a minute."""

import json
import math

import torch
from hypothesis import HealthCheck, assume, example, given, settings, strategies as st

from closed_form import CountingModel
from noise_search.samplers.noise_space import EDM
from noise_search.samplers.ode import STEPS, sample_euler, sample_heun, sampler_nfe, step_nfe
from noise_search.samplers.schedules import karras_sigmas
from noise_search.search.noise import (MAX_SEED, NeighbourRecipe, PathRecipe, SeedRecipe, derive_seed, recipe_from_dict,
                                       recipe_to_dict, seed_noise, sphere_neighbour)
from noise_search.search.paths import path_search, path_search_nfe
from noise_search.search.random_search import random_search, seed_pool
from noise_search.search.result import rank_key
from noise_search.search.zero_order import zero_order_search

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

seeds = st.integers(0, MAX_SEED)
small_ints = st.integers(0, 50)
lams = st.floats(0.01, 0.99)
shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(lambda s: (1, *s))


def recipes(depth=2):
    base = st.builds(SeedRecipe, seeds)
    if depth == 0:
        return base
    inner = recipes(depth - 1)
    # a direction seed equal to the pivot's own seed is the pivot itself: refused (test_bad_inputs S44)
    neighbour = st.builds(NeighbourRecipe, inner, small_ints, small_ints, lams, seeds).filter(
        lambda r: r.seed != getattr(r.pivot, "seed", None))
    path = st.builds(PathRecipe, st.one_of(base, st.deferred(lambda: path_chain(depth - 1))), small_ints, small_ints, seeds)
    return st.one_of(base, neighbour, path)


def path_chain(depth):
    base = st.builds(SeedRecipe, seeds)
    if depth == 0:
        return base
    return st.one_of(base, st.builds(PathRecipe, path_chain(depth - 1), small_ints, small_ints, seeds))


# ------------------------------------------------------------------------------------------- recipes

@FAST
@given(recipes(), shapes)
def test_recipe_round_trips_through_json_and_makes_the_same_bits(recipe, shape):
    again = recipe_from_dict(json.loads(json.dumps(recipe_to_dict(recipe))))
    assert again == recipe
    if isinstance(recipe, NeighbourRecipe) and math.prod(shape) < 2:
        shape = (1, 2)  # a neighbour needs a direction orthogonal to the pivot
    a, b = recipe.make(shape), again.make(shape)
    assert a.shape == shape and a.dtype == torch.float32
    assert torch.equal(a, b) and torch.equal(a, recipe.make(shape))


@FAST
@given(seeds, shapes)
def test_seed_noise_is_comfy_prepare_noise(seed, shape):
    assert torch.equal(seed_noise(seed, shape), torch.randn(shape, generator=torch.Generator().manual_seed(seed)))


@FAST
@given(seeds, seeds, lams, st.integers(8, 64))
def test_neighbours_keep_the_norm_and_cosine_lambda(s_pivot, s_dir, lam, n):
    assume(s_pivot != s_dir)  # the same seed is the pivot itself: no direction (an error, see test_bad_inputs S44)
    pivot, direction = seed_noise(s_pivot, (1, n)), seed_noise(s_dir, (1, n))
    y = sphere_neighbour(pivot, direction, lam)
    p, q = pivot.double().flatten(), y.double().flatten()
    assert abs(q.norm().item() / p.norm().item() - 1) < 1e-6
    assert abs((p @ q).item() / (p.norm() * q.norm()).item() - lam) < 1e-5
    r = NeighbourRecipe(SeedRecipe(s_pivot), 0, 0, lam, s_dir)
    assert torch.equal(r.make((1, n)), y)


@FAST
@given(st.lists(st.integers(-2**62, 2**62), min_size=1, max_size=4))
def test_derived_seeds_are_valid_and_stable(parts):
    s = derive_seed(*parts)
    assert 0 <= s < 2**63 and s == derive_seed(*parts)


@FAST
@given(seeds, st.integers(1, 20))
def test_seed_pool_is_consecutive_and_wraps(seed, n):
    assert [r.seed for r in seed_pool(seed, n)] == [(seed + i) % 2**64 for i in range(n)]


# ------------------------------------------------------------------------------------ NFE accounting

SHAPE = (1, 1, 2, 2)


def score(batch):
    return -(batch.samples ** 2).flatten(1).sum(1)


def world(method, steps):
    m = CountingModel()
    sig = karras_sigmas(steps, 0.002, 80.0)
    sampler = sample_heun if method == "heun" else sample_euler
    return m, sig, (lambda c: sampler(m, c.noise * sig[0], sig)), sampler_nfe(method, sig)


methods = st.sampled_from(sorted(STEPS))


@FAST
@given(methods, st.integers(1, 6), st.integers(1, 9), st.integers(1, 5))
def test_random_search_nfe_equals_model_calls(method, steps, count, chunk):
    m, _, gen, nfe = world(method, steps)
    r = random_search(gen, score, SHAPE, seed=1, count=count, nfe_per_candidate=nfe, chunk_size=chunk)
    assert r.nfe == m.calls == count * nfe
    assert [c.nfe for c in r.history] == [nfe * (i + 1) for i in range(count)]


@FAST
@given(methods, st.integers(1, 5), st.integers(1, 4), st.integers(1, 3), st.booleans(), st.integers(1, 4), lams)
def test_zero_order_nfe_equals_model_calls(method, steps, n, iterations, score_pivot, chunk, lam):
    m, _, gen, nfe = world(method, steps)
    z = zero_order_search(gen, score, SHAPE, seed=2, neighbours_per_iter=n, iterations=iterations, lam=lam,
                          nfe_per_candidate=nfe, score_pivot=score_pivot, chunk_size=chunk)
    assert z.nfe == m.calls == (iterations * n + score_pivot) * nfe
    assert len(z.history) == iterations * n + score_pivot


@st.composite
def path_params(draw):
    steps = draw(st.integers(2, 8))
    df = draw(st.integers(0, min(2, steps - 1)))
    db = draw(st.integers(df + 1, df + 3))
    start = draw(st.integers(df, steps - 1))
    return steps, start, df, db


@FAST
@given(methods, path_params(), st.integers(1, 3), st.integers(1, 3), st.integers(1, 5))
def test_path_search_nfe_equals_model_calls_and_the_planner(method, params, n, width, chunk):
    steps, start, df, db = params
    m = CountingModel()
    sig = karras_sigmas(steps, 0.002, 80.0)
    den = lambda x, a, b: STEPS[method](m, x, a, b)[0]
    snfe = lambda a, b: step_nfe(method, b)
    p = path_search(den, score, SHAPE, sig, seed=3, paths=n, width=width, start_step=start, forward_steps=df,
                    backward_steps=db, step_nfe=snfe, chunk_size=chunk, space=EDM)
    planned = path_search_nfe(sig, paths=n, width=width, start_step=start, forward_steps=df, backward_steps=db, step_nfe=snfe)
    assert p.nfe == m.calls == planned
    final = max(c.round for c in p.history)
    assert len([c for c in p.history if c.round == final]) == n * width


# -------------------------------------------------------------------------------------- top-K order

@FAST
@given(st.lists(st.integers(-3, 3), min_size=1, max_size=12), st.integers(1, 5), st.data())
def test_top_k_is_sorted_winner_is_max_ties_by_index(values, chunk, data):
    """Scores with many ties; the kept top-K is the history sorted by (score desc, index asc), truncated."""
    top_k = data.draw(st.integers(1, len(values)))
    it = iter(float(v) for v in values)
    r = random_search(lambda c: c.noise, lambda b: torch.tensor([next(it) for _ in range(len(b))]), SHAPE,
                      seed=0, count=len(values), nfe_per_candidate=1, chunk_size=chunk, top_k=top_k)
    expected = sorted(range(len(values)), key=lambda i: (-values[i], i))[:top_k]
    assert [c.index for c in r.top_k] == expected
    assert r.winner.score == max(values) and r.winner.index == values.index(max(values))
    assert [c.score for c in r.top_k] == sorted((c.score for c in r.top_k), reverse=True)
    assert r.top_k == sorted(r.top_k, key=rank_key)
    # the kept samples are the kept candidates' own noise (generate is the identity here)
    for c, x in zip(r.top_k, r.top_k_samples["samples"]):
        assert torch.equal(x, seed_noise(c.recipe.seed, SHAPE)[0])


# ---------------------------------------------------------------------------------- ensemble ranks

scores_lists = st.lists(st.integers(-5, 5).map(float), min_size=1, max_size=10)


@FAST
@given(scores_lists, st.randoms(use_true_random=False))
def test_ranks_are_permutation_equivariant_and_sum_to_n_n_plus_1_over_2(s, rnd):
    from noise_search.verifiers.ensemble import ranks
    n = len(s)
    perm = list(range(n))
    rnd.shuffle(perm)
    r = ranks(s)
    assert torch.equal(ranks([s[i] for i in perm]), r[perm])
    assert r.sum().item() == n * (n + 1) / 2 and r.min() >= 1 and r.max() <= n
    for i in range(n):
        for j in range(n):
            if s[i] == s[j]:
                assert r[i] == r[j]  # ties share their rank
            elif s[i] < s[j]:
                assert r[i] < r[j]


@FAST
@given(st.integers(1, 10).flatmap(lambda n: st.lists(st.lists(st.integers(-5, 5).map(float), min_size=n, max_size=n),
                                                     min_size=1, max_size=3)), st.data())
def test_mean_rank_invariants(members, data):
    from noise_search.verifiers.ensemble import rank_pool
    n = len(members[0])
    raw = {f"v{k}": torch.tensor(v) for k, v in enumerate(members)}
    base = rank_pool(raw)
    # permutation equivariance over candidates
    perm = data.draw(st.permutations(range(n)))
    assert torch.equal(rank_pool({k: v[list(perm)] for k, v in raw.items()}), base[list(perm)])
    # member order does not matter
    assert torch.allclose(rank_pool(dict(reversed(list(raw.items())))), base, rtol=0, atol=1e-12)
    # a strictly increasing transform of one member's scores changes nothing (only ranks count)
    k0 = "v0"
    assert torch.equal(rank_pool({**raw, k0: torch.exp(raw[k0] / 3)}), base)
    # monotonicity: raising one candidate's score in one member never lowers its mean rank, never raises others'
    i = data.draw(st.integers(0, n - 1))
    up = raw[k0].clone()
    up[i] += data.draw(st.floats(0.5, 20))
    after = rank_pool({**raw, k0: up})
    assert after[i] >= base[i]
    assert all(after[j] <= base[j] for j in range(n) if j != i)


@FAST
@given(st.integers(1, 10).flatmap(lambda n: st.lists(st.lists(st.integers(-5, 5).map(float), min_size=n, max_size=n),
                                                     min_size=2, max_size=3)),
       st.floats(0.1, 10), st.floats(-5, 5))
@example([[1.0, 1.0, 1.0], [0.0, 2.0, 1.0]], 0.1, 0.0)  # constant member * 0.1: std 1e-17 from rounding once gave z ~ 1
def test_zscore_ensemble_ignores_a_member_s_scale_and_offset(members, a, b):
    from noise_search.verifiers.ensemble import rank_pool
    raw = {f"v{k}": torch.tensor(v, dtype=torch.float64) for k, v in enumerate(members)}
    base = rank_pool(raw, "zscore")
    assert torch.allclose(rank_pool({**raw, "v0": raw["v0"] * a + b}, "zscore"), base, atol=1e-9)


# ---------------------------------------------------------------------------------------- schedules

@FAST
@given(st.integers(1, 40), st.floats(1e-3, 1.0), st.floats(2.0, 200.0), st.floats(1.0, 10.0))
def test_karras_sigmas_are_strictly_decreasing_from_sigma_max_to_zero(n, lo, ratio, rho):
    hi = lo * ratio
    s = karras_sigmas(n, lo, hi, rho=rho)
    assert s.shape == (n + 1,) and s[-1] == 0 and (s[:-1] > 0).all()
    assert (s[1:] < s[:-1]).all()
    assert math.isclose(s[0].item(), hi, rel_tol=1e-6)
    if n > 1:
        assert math.isclose(s[-2].item(), lo, rel_tol=1e-5)


@st.composite
def scm_times_args(draw):
    steps = draw(st.integers(1, 4))
    t_max = draw(st.floats(0.3, math.pi / 2 - 1e-3))
    cuts = sorted(draw(st.lists(st.floats(0.02, 0.98), min_size=steps - 1, max_size=steps - 1, unique=True)), reverse=True)
    return steps, t_max, [t_max * c for c in cuts]


@FAST
@given(scm_times_args(), st.sampled_from(["edm", "flow", "trigflow"]))
def test_scm_sigmas_decrease_to_zero_in_every_space(args, space):
    from noise_search.samplers.scm import scm_sigmas
    steps, t_max, mids = args
    s = scm_sigmas(steps, t_max=t_max, t_mid=mids if steps > 1 else None, space=space, dtype=torch.float64)
    assert s.shape == (steps + 1,) and s[-1] == 0 and (s[1:] < s[:-1]).all()
    if space == "edm":
        assert math.isclose(s[0].item(), 0.5 * math.tan(t_max), rel_tol=1e-12)
    if space == "flow":
        assert 0 < s[0] <= 1
