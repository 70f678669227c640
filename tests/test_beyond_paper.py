"""The searches beyond Ma et al. (issue 17): FK steering (search/fk_steering.py), evolutionary search
(search/evolution.py) and early pruning by successive halving (search/pruning.py).

Fast: the closed-form world of tests/closed_form.py (N(MU, I) data, exact elementwise denoiser, so chunking
cannot change a bit) on toy shapes, plus a few runs on the committed toy world when its weights are there.
Each equivalence test names the original it stands for.
"""

import json
import math
import pickle
from pathlib import Path

import pytest
import torch

from closed_form import CountingModel
from noise_search.samplers.noise_space import EDM, FLOW
from noise_search.samplers.ode import euler_step, heun_step, sampler_nfe, step_nfe
from noise_search.samplers.schedules import karras_sigmas
from noise_search.search.evaluate import LATENT, Batch
from noise_search.search.evolution import evolution_search, generation_sizes
from noise_search.search.fk_steering import fk_steering, fk_steering_nfe, replay_particle, sigma_down
from noise_search.search.noise import NeighbourRecipe, SeedRecipe, derive_seed, recipe_from_dict, recipe_to_dict, seed_noise
from noise_search.search.particle_recipe import ParticleRecipe, particle_recipe_from_dict
from noise_search.search.population import CallableStepper
from noise_search.search.pruning import early_pruning, pruning_count, pruning_nfe
from noise_search.search.random_search import random_search
from noise_search.search.result import SearchResult, history_dicts

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (1, 2, 4, 4)
SIGMAS = karras_sigmas(8, 0.002, 80.0)
SIG = SIGMAS.tolist()
NFE = sampler_nfe("heun", SIGMAS)  # 15
TARGET = torch.linspace(-1, 1, 32).view(1, 2, 4, 4)
HEUN_NFE = lambda a, b: step_nfe("heun", b)  # noqa: E731
HAVE_WEIGHTS = all((ROOT / "toyworld" / "weights" / f).exists() for f in ("teacher.safetensors", "classifier.safetensors"))


def score(batch):
    return -((batch.samples - TARGET) ** 2).flatten(1).sum(1)


def decode(x):
    return Batch(x, {LATENT: x})


def heun(model):
    return lambda x, a, b: heun_step(model, x, a, b)[0]


def fk(model, **kw):
    base = dict(space=EDM, seed=3, particles=6, lmbda=2.0, step_nfe=HEUN_NFE, decode=decode, chunk_size=4, top_k=6)
    base.update(kw)
    return fk_steering(heun(model), score, SHAPE, SIGMAS, **base)


def stepper(model, space=EDM):
    return CallableStepper(heun(model), space, SIG[0], step_nfe_fn=HEUN_NFE)


# ---------------------------------------------------------------------------------------------- FK steering

@pytest.mark.parametrize("kw", [dict(), dict(potential="sum", resample_every=2), dict(potential="difference", eta=0.5),
                                dict(ess_threshold=0.9, resample_start=2, resample_end=5, chunk_size=1)])
def test_fk_nfe_equals_counted_model_calls(kw):
    model = CountingModel()
    res = fk(model, **kw)
    assert res.nfe == model.calls == fk_steering_nfe(SIGMAS, particles=6, space=EDM, step_nfe=HEUN_NFE,
                                                     **{k: v for k, v in kw.items() if k != "chunk_size"})
    steps = res.params["resample_steps"]
    assert res.params["verifier_calls"] == 6 * (len(steps) + 1) and res.params["preview_verifier_calls"] == 6 * len(steps)
    finals = [c for c in res.history if c.round == len(SIG) - 1]
    assert len(finals) == 6 and res.top_k[0] == max(finals, key=lambda c: c.score)  # previews never win
    assert res.history[-1].nfe == res.nfe


def test_fk_ancestral_step_matches_k_diffusion_and_comfy_rf():
    """sigma_down of EDM is k-diffusion's get_ancestral_step; of flow ComfyUI's sample_euler_ancestral_RF."""
    a, b = 10.0, 4.0
    up = min(b, math.sqrt(b ** 2 * (a ** 2 - b ** 2) / a ** 2))
    assert sigma_down(EDM, a, b, 1.0) == pytest.approx(math.sqrt(b ** 2 - up ** 2))
    assert sigma_down(FLOW, 0.8, 0.5, 1.0) == pytest.approx(0.5 * (0.5 / 0.8))
    assert sigma_down(EDM, a, b, 1e-9) == pytest.approx(b) and sigma_down(EDM, a, 0.0, 1.0) == 0.0


def test_fk_every_particle_and_the_winner_replay_bit_exactly_from_their_recipe():
    model = CountingModel()
    res = fk(model, lmbda=5.0)
    assert res.params["resampled_at"] == res.params["resample_steps"] == list(range(1, len(SIG) - 1))
    # resampling happened: some final particles share an ancestor, and each line records one link per resampling
    chains = [c.recipe.chain() for c in res.top_k]
    assert all(len(ch) == 1 + len(res.params["resampled_at"]) for ch in chains)
    assert len({c.recipe.root() for c in res.top_k}) < 6
    st = stepper(CountingModel())
    for j, c in enumerate(res.top_k):
        x = replay_particle(c.recipe, st, SIGMAS, shape=SHAPE, eta=1.0)
        assert torch.equal(x, res.top_k_samples[LATENT][j:j + 1]), j
    # the recipe alone: through its JSON dict and a pickle
    w = res.winner.recipe
    again = particle_recipe_from_dict(json.loads(json.dumps(recipe_to_dict(w))))
    assert again == w and hash(again) == hash(w) and again.key == w.key and pickle.loads(pickle.dumps(w)) == w
    assert torch.equal(replay_particle(again, st, SIGMAS, shape=SHAPE), res.top_k_samples[LATENT][:1])
    json.dumps(res.to_dict())  # the whole result serialises (history in linear size)
    assert len(history_dicts(res.history)) == len(res.history)
    back = SearchResult.from_dict(json.loads(res.to_json()))  # and reads back: particles are a known recipe kind
    assert [c.recipe for c in back.history] == [c.recipe for c in res.history]


def test_fk_with_resampling_disabled_equals_independent_particles():
    """Stands for k independent runs of the ancestral sampler (Euler-ancestral-style steps, k-diffusion's
    get_ancestral_step with Heun as the solver), written out here with each particle's own noise seeds."""
    model = CountingModel()
    res = fk(model, resample_every=0, particles=5, top_k=5, eta=0.7)
    assert res.nfe == model.calls == 5 * NFE and res.params["verifier_calls"] == 5 and res.params["resampled_at"] == []
    assert len(res.history) == 5  # no previews
    ref_model = CountingModel()
    for c in res.history:
        r = c.recipe
        assert isinstance(r, ParticleRecipe) and r.chain() == [r] and r.step == 0
        x = seed_noise(r.root().seed, SHAPE) * SIG[0]
        for s in range(len(SIG) - 1):
            a, b = SIG[s], SIG[s + 1]
            if b == 0:
                x = heun_step(ref_model, x, a, 0.0)[0]
                continue
            up = min(b, 0.7 * math.sqrt(b ** 2 * (a ** 2 - b ** 2) / a ** 2))
            down = math.sqrt(b ** 2 - up ** 2)
            x = heun_step(ref_model, x, a, down)[0]
            x = x + math.sqrt(b * b - down * down) * seed_noise(derive_seed(r.seed, s), SHAPE)
        kept = [j for j, t in enumerate(res.top_k) if t.index == c.index][0]
        assert torch.equal(x, res.top_k_samples[LATENT][kept:kept + 1])
        assert c.score == score(Batch(x)).item()
    # a particle does not depend on how many others run beside it
    two = fk(CountingModel(), resample_every=0, particles=2, top_k=2, eta=0.7)
    assert [c.score for c in two.history] == [c.score for c in res.history[:2]]


def test_fk_on_a_flow_grid_accounts_and_replays():
    sig = [1.0, 0.75, 0.5, 0.25, 0.0]

    def flow_model(x, sigma):  # the exact x0 of N(0.3, I) data under x = (1 - s) x0 + s eps
        s = sigma.view(-1, *([1] * (x.ndim - 1)))
        v = (1 - s) ** 2 + s ** 2
        return 0.3 + (1 - s) * (x - (1 - s) * 0.3) / v

    def euler(x, a, b):
        d = euler_step(flow_model, x, a, b)
        return d[0]

    res = fk_steering(euler, score, SHAPE, sig, space=FLOW, seed=1, particles=4, lmbda=3.0, decode=decode, chunk_size=3)
    assert res.nfe == 4 * (4 + 3)  # Euler: 1 per step + one x0 per resampling step
    st = CallableStepper(euler, FLOW, sig[0])
    assert torch.equal(replay_particle(res.winner.recipe, st, sig, shape=SHAPE), res.top_k_samples[LATENT][:1])


def test_fk_cancel_hands_over_the_partial_result():
    seen = []

    def on_step(done, total):
        if done >= 12:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fk(CountingModel(), on_step=on_step, on_interrupt=seen.append)
    assert seen and not seen[0].completed and len(seen[0].history) == 12 and seen[0].params["verifier_calls"] == 12


# ---------------------------------------------------------------------------------------------- early pruning

def stepwise_gen(model):
    """A host's whole-trajectory generate that runs the same solver steps a Stepper does (the toy world's sample:
    noise x sigma_0, then one Heun step per grid interval), so stepwise and whole runs agree bit for bit."""
    def gen(candidates):
        x = candidates.noise * SIG[0]
        for a, b in zip(SIG, SIG[1:]):
            x = heun_step(model, x, a, b)[0]
        return decode(x)
    return gen


def prune(model, **kw):
    base = dict(seed=7, count=12, checkpoints=[2, 4], keep=0.5, space=EDM, step_nfe=HEUN_NFE, decode=decode, chunk_size=5)
    base.update(kw)
    return early_pruning(heun(model), score, SHAPE, SIGMAS, **base)


def test_pruning_nfe_equals_counted_model_calls_and_counts_preview_verifier_calls():
    model = CountingModel()
    res = prune(model)
    # 12 seeds to step 2 (4 NFE + 1 preview), 6 to step 4 (4 + 1), 3 to the end (15 - 8)
    assert res.nfe == model.calls == 12 * 5 + 6 * 5 + 3 * 7 == pruning_nfe(SIGMAS, count=12, checkpoints=[2, 4], keep=0.5,
                                                                          step_nfe=HEUN_NFE)
    assert res.params["alive"] == [12, 6, 3] and res.params["preview_verifier_calls"] == 18
    assert res.params["verifier_calls"] == 21 and len(res.top_k) == 3
    assert pruning_count(SIGMAS, res.nfe, checkpoints=[2, 4], keep=0.5, step_nfe=HEUN_NFE) == 12
    # each survivor was among the best previews of its stage; the winner re-renders from its seed alone
    first = sorted(res.history[:12], key=lambda c: -c.score)[:6]
    assert {c.recipe for c in res.history[12:18]} == {c.recipe for c in first}
    whole = stepwise_gen(CountingModel())
    from noise_search.search.candidates import Candidates
    assert torch.equal(whole(Candidates.of([res.winner.recipe], SHAPE)).samples, res.top_k_samples["samples"][:1])


def test_pruning_with_keep_one_equals_random_search_on_the_same_seeds():
    """Stands for random search (best-of-N, Ma et al. Sec. 3.2) over the same seeds with a whole-trajectory generate
    that runs the same Heun steps (``stepwise_gen``): same candidates, scores, NFE, winner and kept samples."""
    a, b = CountingModel(), CountingModel()
    pr = prune(a, keep=1.0, top_k=4)
    rs = random_search(stepwise_gen(b), score, SHAPE, seed=7, count=12, nfe_per_candidate=NFE, chunk_size=5, top_k=4)
    assert pr.nfe == rs.nfe == a.calls == b.calls == 12 * NFE and pr.params["preview_verifier_calls"] == 0
    assert history_dicts(pr.history) == history_dicts(rs.history)
    assert [c.index for c in pr.top_k] == [c.index for c in rs.top_k]
    assert all(torch.equal(pr.top_k_samples[k], rs.top_k_samples[k]) for k in ("samples", LATENT))


def test_pruning_budget_plans_the_most_seeds():
    res = prune(CountingModel(), count=None, budget=200)
    n = res.params["count"]
    assert res.nfe <= 200 < pruning_nfe(SIGMAS, count=n + 1, checkpoints=[2, 4], keep=0.5, step_nfe=HEUN_NFE)


# ---------------------------------------------------------------------------------------------- evolution

def evo(model, **kw):
    base = dict(seed=2, population=6, elites=2, generations=4, lam=0.8, tournament=2, nfe_per_candidate=NFE, chunk_size=4)
    base.update(kw)
    return evolution_search(stepwise_gen(model), score, SHAPE, **base)


def test_evolution_accounts_keeps_elites_and_every_member_reproduces_from_its_recipe():
    model = CountingModel()
    res = evo(model, top_k=5)
    assert res.params["generation_sizes"] == [6, 4, 4, 4]
    assert res.nfe == model.calls == 18 * NFE and len(res.history) == 18 and res.params["generations"] == 4
    # the elites are not sampled again: every recipe is scored once
    assert len({c.recipe for c in res.history}) == 18
    # later generations are mutations of earlier members, on the sphere of the parent's norm
    from noise_search.search.candidates import Candidates
    for c in res.history[6:]:
        r = c.recipe
        assert isinstance(r, NeighbourRecipe) and r.iteration == c.round
        p, y = r.pivot.make(SHAPE).double().flatten(), r.make(SHAPE).double().flatten()
        cos = torch.tensor(0.8, dtype=torch.float64)
        assert torch.isclose(y.norm(), p.norm(), rtol=1e-6) and torch.isclose(y @ p / p.norm() ** 2, cos)
    gen = stepwise_gen(CountingModel())
    for j, c in enumerate(res.top_k):
        again = recipe_from_dict(json.loads(json.dumps(recipe_to_dict(c.recipe))))
        assert torch.equal(gen(Candidates.of([again], SHAPE)).samples, res.top_k_samples["samples"][j:j + 1])


def test_evolution_budget_schedules_a_partial_last_generation_and_resumes_exactly():
    assert generation_sizes(6, 2, candidates=13) == [6, 4, 3] and generation_sizes(6, 2, candidates=5) == []
    full = evo(CountingModel(), generations=None, budget=13 * NFE)
    assert full.params["generation_sizes"] == [6, 4, 3] and full.nfe == 13 * NFE
    seen = []

    def on_step(done, total):
        if done >= 9:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        evo(CountingModel(), generations=None, budget=13 * NFE, on_step=on_step, on_interrupt=seen.append)
    model = CountingModel()
    resumed = evo(model, generations=None, budget=13 * NFE, resume_from=seen[0])
    assert model.calls == (13 - len(seen[0].history)) * NFE
    a, b = full.to_dict(), resumed.to_dict()
    b.pop("resumed")
    assert a == b


# ---------------------------------------------------------------------------------------------- bad inputs

BAD = {
    "fk k < 2": (lambda: fk(CountingModel(), particles=1), ["particles (k) must be an integer >= 2", "got 1"]),
    "fk budget below two particles": (lambda: fk(CountingModel(), particles=None, budget=20),
                                      ["NFE budget 20 is below two particles", ">= "]),
    "fk window past the schedule": (lambda: fk(CountingModel(), resample_end=8),
                                    ["resample_end must be a grid step in [1, 7]", "got 8"]),
    "fk window before the schedule": (lambda: fk(CountingModel(), resample_start=0),
                                      ["resample_start must be a grid step in [1, 7]", "got 0"]),
    "fk empty window": (lambda: fk(CountingModel(), resample_start=5, resample_end=3), ["window", "5 > 3"]),
    "fk deterministic transition": (lambda: fk(CountingModel(), eta=0), ["stochastic transition", "eta = 0", "(0, 1]"]),
    "fk eta above 1": (lambda: fk(CountingModel(), eta=1.5), ["eta", "(0.0, 1.0]", "1.5"]),
    "fk unknown potential": (lambda: fk(CountingModel(), potential="mean"), ["potential must be one of max, sum, difference"]),
    "fk ess threshold": (lambda: fk(CountingModel(), ess_threshold=1.2), ["ess_threshold", "(0.0, 1.0]", "1.2"]),
    "fk negative lambda": (lambda: fk(CountingModel(), lmbda=-1), ["lambda", "[0.0, inf)", "-1"]),
    "fk no noise space": (lambda: fk(CountingModel(), space=None), ["noise space", "EDM or FLOW"]),
    "replay another recipe": (lambda: replay_particle(SeedRecipe(1), stepper(CountingModel()), SIGMAS, shape=SHAPE),
                              ["ParticleRecipe", "SeedRecipe"]),
    "replay on another grid": (lambda: replay_particle(ParticleRecipe(ParticleRecipe(SeedRecipe(1), 0, 0, 5), 9, 0, 6),
                                                       stepper(CountingModel()), SIGMAS, shape=SHAPE),
                               ["segments start at steps [0, 9]", "another grid"]),
    "pruning keep 0": (lambda: prune(CountingModel(), keep=0.0), ["keep", "(0, 1]", "0.0"]),
    "pruning keep above 1": (lambda: prune(CountingModel(), keep=1.5), ["keep", "(0, 1]", "1.5"]),
    "pruning checkpoint at the end": (lambda: prune(CountingModel(), checkpoints=[8]), ["checkpoints", "[1, 7]", "[8]"]),
    "pruning checkpoints not increasing": (lambda: prune(CountingModel(), checkpoints=[4, 2]), ["increasing", "[4, 2]"]),
    "pruning count over the budget": (lambda: prune(CountingModel(), budget=50), ["count 12 costs", "budget 50", "count <="]),
    "evolution elites": (lambda: evo(CountingModel(), elites=6), ["elites must be in [0, population - 1 = 5]", "got 6"]),
    "evolution population 1": (lambda: evo(CountingModel(), population=1), ["population", ">= 2", "got 1"]),
    "evolution lam": (lambda: evo(CountingModel(), lam=1.0), ["lam", "(0, 1)", "1.0"]),
    "evolution budget below a generation": (lambda: evo(CountingModel(), generations=None, budget=5 * NFE),
                                            ["below one generation", f">= {6 * NFE}"]),
    "evolution generations over the budget": (lambda: evo(CountingModel(), budget=10 * NFE),
                                              ["4 generations", "exceed the NFE budget", "generations <= 2"]),
    "grid not ending in 0": (lambda: fk_steering(heun(CountingModel()), score, SHAPE, [80.0, 1.0], space=EDM, particles=2),
                             ["strictly decreasing", "ending in 0"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_inputs_get_one_clear_error(case):
    call, parts = BAD[case]
    with pytest.raises(ValueError) as err:
        call()
    msg = str(err.value)
    assert "\n" not in msg and all(p in msg for p in parts), msg


# ---------------------------------------------------------------------------------------------- the toy world

@pytest.fixture(scope="module")
def world():
    if not HAVE_WEIGHTS:
        pytest.skip("the toy world's weights are not committed")
    from noise_search.toyworld.world import ToyWorld
    return ToyWorld(3, steps=6)


def test_toy_world_runs_every_new_algorithm_through_run_search(world):
    from noise_search.toyworld.search import run_search
    for name in ("fk", "evolution", "pruning"):
        world.model_calls = 0
        res = run_search(world, name, seed=0, budget=20 * world.nfe_per_candidate, top_k=2)
        assert res.algorithm == name and res.completed and res.nfe == world.model_calls <= 20 * world.nfe_per_candidate
        assert res.top_k_samples["samples"].shape[0] == 2 and "verifier_calls" in res.params
        json.dumps(res.to_dict())


def test_toy_world_fk_winner_replays_bit_exactly_at_chunk_one(world):
    """On a real network the rows depend on their batch (MKL), so the search runs at chunk size 1, as a batch-1 replay."""
    res = fk_steering(world.denoise, world.score, world.shape, world.sigmas, space=EDM, seed=4, particles=4, lmbda=1.0,
                      step_nfe=world.step_nfe, decode=world.decode, chunk_size=1)
    st = CallableStepper(world.denoise, EDM, float(world.sigmas[0]), step_nfe_fn=world.step_nfe)
    assert torch.equal(replay_particle(res.winner.recipe, st, world.sigmas, shape=world.shape), res.top_k_samples[LATENT][:1])


def test_toy_world_pruning_with_keep_one_equals_its_random_search(world):
    """Stands for the toy world's own random search (``ToyWorld.generate``, the whole Heun trajectory): the same
    solver steps in the same batches, so the same winner and samples bit for bit."""
    pr = early_pruning(world.denoise, world.score, world.shape, world.sigmas, checkpoints=[2], keep=1.0, seed=9, count=10,
                       space=EDM, step_nfe=world.step_nfe, decode=world.decode, chunk_size=4, top_k=3)
    rs = random_search(world.generate, world.score, world.shape, seed=9, count=10, nfe_per_candidate=world.nfe_per_candidate,
                       chunk_size=4, top_k=3)
    assert history_dicts(pr.history) == history_dicts(rs.history) and pr.nfe == rs.nfe
    assert all(torch.equal(pr.top_k_samples[k], rs.top_k_samples[k]) for k in ("samples", LATENT))
