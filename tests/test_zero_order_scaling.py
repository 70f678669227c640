"""Zero-order search at depth: a neighbour found after thousands of iterations is a recipe thousands of
links deep. Its noise costs the same per iteration as at the start (the search holds the pivot's noise),
and the recipe still recreates the exact bits on its own, after a JSON round trip, with no recursion
anywhere (make, describe, repr, ==, hash, dict/JSON, pickle, resume)."""

import copy
import json
import pickle

import pytest
import torch

import noise_search.search.noise as noise
from noise_search.search.noise import NeighbourRecipe, PathRecipe, SeedRecipe, recipe_from_dict, recipe_to_dict
from noise_search.search.result import SearchResult
from noise_search.search.zero_order import zero_order_search

SHAPE = (1, 2, 4, 4)
TARGET = torch.linspace(-1, 1, 32).view(SHAPE)


def score(batch):
    return -((batch.samples - TARGET) ** 2).flatten(1).sum(1)


def search(iterations, n=2, generate=lambda c: c.noise, **kw):
    """By default an identity generator (the samples are the noises), so every kept sample is a candidate's
    noise; one chunk is one iteration."""
    return zero_order_search(generate, score, SHAPE, seed=3, neighbours_per_iter=n, iterations=iterations, lam=0.9,
                             nfe_per_candidate=1, chunk_size=n, **kw)


def standalone(recipe):
    """The recipe as a fresh process sees it: rebuilt from its JSON, sharing no object with the search."""
    return recipe_from_dict(json.loads(json.dumps(recipe_to_dict(recipe))))


def neighbour_chain(depth, lam=0.9):
    r = SeedRecipe(5)
    for k in range(depth):
        r = NeighbourRecipe(r, k, k % 3, lam, 1000 + k)
    return r


def test_deep_neighbours_recreate_the_bits_they_had_during_the_search():
    batches = []  # the noises of the last iteration (one chunk), as the search generated them

    def generate(candidates):
        batches[:] = [candidates.noise.clone()]
        return candidates.noise
    result = search(2000, generate=generate)
    last = result.history[-2:]
    assert [c.recipe.depth for c in last] == [2000, 2000]
    for row, c in enumerate(last):
        again = standalone(c.recipe)
        assert again == c.recipe and again is not c.recipe
        assert torch.equal(again.make(SHAPE)[0], batches[0][row])  # standalone from its JSON
        assert torch.equal(c.recipe.make(SHAPE)[0], batches[0][row])  # after the search, whose pivot noise is gone
    # the kept samples are noises generated during the search: each kept candidate's recipe recreates its bits
    for k, c in enumerate(result.top_k):
        assert torch.equal(standalone(c.recipe).make(SHAPE), result.top_k_samples["samples"][k: k + 1])


def test_the_noise_cost_per_iteration_is_constant(monkeypatch):
    """Counted calls, not wall time: rebuilding the pivot's chain each iteration grows by N per iteration."""
    calls = {"sphere_neighbour": 0, "seed_noise": 0}
    for name in calls:
        real = getattr(noise, name)
        def counted(*a, _real=real, _name=name, **kw):
            calls[_name] += 1
            return _real(*a, **kw)
        monkeypatch.setattr(noise, name, counted)
    n, seen = 3, []
    search(300, n=n, on_scored=lambda cands, res: seen.append(dict(calls)))
    assert len(seen) == 300
    for name in calls:
        per_iteration = [b[name] - a[name] for a, b in zip(seen, seen[1:])]
        assert set(per_iteration) == {per_iteration[0]}, f"{name} calls per iteration: {per_iteration[:3]} ... {per_iteration[-3:]}"
        assert per_iteration[0] <= n + 1  # the N neighbours, plus moving the pivot


def test_no_recursion_error_at_depth_5000():
    deep = neighbour_chain(5000)
    twin = neighbour_chain(5000)
    assert deep == twin and hash(deep) == hash(twin) and deep is not twin
    assert deep != NeighbourRecipe(neighbour_chain(4999, lam=0.8), 4999, 4999 % 3, 0.9, 5999)  # differs at the far end
    assert len(deep.describe()) < 200 and len(repr(deep)) < 300
    assert deep.describe() == "neighbour 1 of (pivot 4999 steps from (seed 5)) at iteration 4999, lambda 0.9"
    d = recipe_to_dict(deep)
    assert len(d["lineage"]) == 5000 and d["lineage"][0] == {"kind": "seed", "seed": 5}
    again = standalone(deep)
    assert again == deep and copy.deepcopy(deep) == deep and pickle.loads(pickle.dumps(deep)) == deep
    assert torch.equal(again.make(SHAPE), deep.make(SHAPE))

    path = SeedRecipe(9)
    for k in range(5000):
        path = PathRecipe(path, k, 0, 77 + k)
    assert standalone(path) == path and len(recipe_to_dict(path)["lineage"]) == 5000 and hash(path) == hash(standalone(path))


def test_the_nested_form_of_earlier_versions_still_reads_at_depth():
    recipe = neighbour_chain(3000)
    nested = {"kind": "seed", "seed": 5}
    for r in noise.lineage(recipe)[1:]:  # built iteratively: each pivot inside its neighbour, as asdict wrote it
        nested = {"pivot": nested, "iteration": r.iteration, "index": r.index, "lam": r.lam, "seed": r.seed, "kind": "neighbour"}
    assert recipe_from_dict(nested) == recipe


@pytest.mark.parametrize("bad,match", [
    ({"kind": "neighbour", "iteration": 0, "index": 0, "lam": 0.9, "seed": 2, "lineage": [{"kind": "neighbour", "iteration": 0,
      "index": 0, "lam": 0.9, "seed": 1}]}, r"missing \['pivot'\]"),
    ({"kind": "neighbour", "iteration": 0, "index": 0, "lam": 0.9, "seed": 2, "lineage": [{"kind": "seed", "seed": 1},
      {"kind": "seed", "seed": 3}]}, "entry 1 of the recipe's lineage is a seed recipe"),
    ({"kind": "neighbour", "iteration": 0, "index": 0, "lam": 0.9, "seed": 2, "lineage": {"kind": "seed", "seed": 1}},
     "lineage must be a list"),
])
def test_a_broken_lineage_is_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        recipe_from_dict(bad)


def test_a_deep_search_resumes_from_its_json_where_it_stopped():
    full = search(600)
    seen = []

    def stop(done, total):
        if done >= 900:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        search(600, on_step=stop, on_interrupt=seen.append)
    restored = SearchResult.from_dict(json.loads(seen[0].to_json()), seen[0].top_k_samples)
    resumed = search(600, resume_from=restored)
    assert resumed.resumed == 900
    assert resumed.to_dict() | {"resumed": None} == full.to_dict() | {"resumed": None}
    assert torch.equal(resumed.top_k_samples["samples"], full.top_k_samples["samples"])


def test_the_result_json_grows_linearly_with_the_iterations():
    """Each history candidate names its pivot by candidate index instead of repeating the pivot's lineage
    (95 MB at 1,000 iterations before); the JSON reads back to equal recipes that make the same noise."""
    def run(iterations):
        return zero_order_search(lambda c: c.noise, lambda b: b.samples.flatten(1)[:, 0], (1, 2, 4, 4), seed=1, neighbours_per_iter=2,
                                 iterations=iterations, nfe_per_candidate=1, chunk_size=4)
    small, big = run(100), run(1000)
    per_small = len(small.to_json()) / len(small.history)
    per_big = len(big.to_json()) / len(big.history)
    assert per_big < 1.5 * per_small  # the winner's and top-K's own lineages are the only parts that grow
    back = SearchResult.from_dict(json.loads(big.to_json()))
    assert [c.recipe for c in back.history] == [c.recipe for c in big.history]
    assert torch.equal(back.history[-1].recipe.make((1, 2, 4, 4)), big.history[-1].recipe.make((1, 2, 4, 4)))
    rows = json.loads(big.to_json())["history"]
    assert sum("source_candidate" in r["recipe"] for r in rows) >= len(rows) - 2 * 2  # all but the first iteration(s)


@pytest.mark.parametrize("ref", [-1, 10 ** 6, "0", True])
def test_a_source_candidate_must_be_an_earlier_candidate(ref):
    r = zero_order_search(lambda c: c.noise, lambda b: b.samples.flatten(1)[:, 0], (1, 2, 4, 4), seed=1, neighbours_per_iter=2,
                          iterations=3, nfe_per_candidate=1, chunk_size=4)
    d = json.loads(r.to_json())
    d["history"][-1]["recipe"]["source_candidate"] = ref
    with pytest.raises(ValueError, match="source_candidate must be the index of an earlier candidate"):
        SearchResult.from_dict(d)
