"""In-process execution of the search nodes beyond Ma et al. (FK Steering, Evolutionary Search, Early Pruning) on
tiny random checkpoints: each runs, its NFE is the core's accounting, its winner reproduces, bad settings are refused."""

import json

import pytest

from host_harness import interrupting_verifier, snapshot, written_since
import torch

from test_search_nodes import custom_advanced, ksampler, run, search_kwargs


def _space(which):
    from noise_search.samplers.noise_space import EDM, FLOW
    return FLOW if which == "sd3" else EDM


def _step_nfe(calls):
    return lambda a, b: calls if b > 0 else 1


FK = dict(particles=3, potential="max", lambda_=10.0, resample_every=1, resample_start=0, resample_end=0, ess_threshold=0.0,
          eta=1.0)


@pytest.mark.parametrize("which", ["sd15", "sd3"])
def test_fk_steering_runs_and_counts_the_cores_nfe(request, verifier, which):
    from noise_search.nodes.beyond_nodes import FKSteering
    from noise_search.search.fk_steering import fk_steering_nfe
    m = request.getfixturevalue(which)
    out = run(FKSteering, **search_kwargs(m, verifier, steps=4, chunk_size=2, top_k=3, **FK))
    latent, image, seed, recipe, topk, table, plot, prov = out.result
    p = json.loads(prov)
    sig = p["sampling"]["sigmas"]
    assert p["algorithm"] == "fk"
    assert p["nfe"] == fk_steering_nfe(sig, particles=3, space=_space(which), step_nfe=_step_nfe(1), potential="max",
                                       lmbda=10.0, resample_every=1, eta=1.0)
    assert p["params"]["resample_steps"] == [1, 2, 3] and p["params"]["particles"] == 3
    assert latent["samples"].shape[0] == 1 and image.shape[0] == 1 and topk.shape[0] == 3
    r = json.loads(recipe)
    assert r["kind"] == "particle" and 100 <= seed <= 102
    assert out.ui["noise_search"][0]["algorithm"] == "fk"


@pytest.mark.parametrize("which", ["sd15", "sd3"])
def test_fk_steering_winner_replays_from_its_recipe(request, verifier, which):
    """The output particle is the kept final sample; its recipe alone (lineage and step seeds) re-runs it bit-exactly
    on the host's own sampler steps (batch 1: chunk_size 1, so no row depends on its batch)."""
    from noise_search.nodes.beyond_nodes import FKSteering
    from noise_search.nodes.comfy_adapters import SamplingSetup, noise_space, resolve_sigmas, run_inside_sampler
    from noise_search.search.fk_steering import replay_particle
    from noise_search.search.particle_recipe import particle_recipe_from_dict
    from noise_search.search.population import CallableStepper
    import comfy.samplers
    m = request.getfixturevalue(which)
    out = run(FKSteering, **search_kwargs(m, verifier, steps=4, chunk_size=1, top_k=3, **dict(FK, eta=0.7)))
    recipe = particle_recipe_from_dict(json.loads(out.result[3]))
    assert [link.step for link in recipe.chain()] == [0, 1, 2, 3]  # resampled at every intermediate step
    sig = resolve_sigmas(m["model"], "euler", "normal", 4, 1.0)
    setup = SamplingSetup(m["model"], m["positive"], m["negative"], m["latent"], m["vae"],
                          comfy.samplers.sampler_object("euler"), sig, 1.0)
    space = noise_space(setup.model)

    def body(t):
        stepper = CallableStepper(t.denoise, space, float(sig[0]), t.prepare, None, None, t.renoise)
        return t.to_latent(replay_particle(recipe, stepper, sig, shape=setup.shape, eta=0.7)).float().cpu()

    with torch.inference_mode():
        again = run_inside_sampler(setup, body)
    assert torch.equal(out.result[0]["samples"], again)


def test_fk_steering_with_heun_and_adaptive_resampling(sd15, verifier):
    from noise_search.nodes.beyond_nodes import FKSteering
    from noise_search.search.fk_steering import fk_steering_nfe
    kw = dict(FK, potential="difference", ess_threshold=0.5, resample_every=2, eta=0.5)
    p = json.loads(run(FKSteering, **search_kwargs(sd15, verifier, steps=4, sampler_name="heun", top_k=2, **kw)).result[7])
    assert p["nfe"] == fk_steering_nfe(p["sampling"]["sigmas"], particles=3, space=_space("sd15"), step_nfe=_step_nfe(2),
                                       potential="difference", lmbda=10.0, resample_every=2, ess_threshold=0.5, eta=0.5)


def test_fk_steering_budget_sets_the_particles(sd15, verifier):
    from noise_search.nodes.beyond_nodes import FKSteering
    from noise_search.search.fk_steering import fk_particle_nfe
    kw = dict(FK, particles=0)
    p = json.loads(run(FKSteering, **search_kwargs(sd15, verifier, steps=3, budget=20, top_k=2, **kw)).result[7])
    per = fk_particle_nfe(p["sampling"]["sigmas"], _space("sd15"), 1.0, [1, 2])
    assert p["params"]["particles"] == 20 // per and p["nfe"] == (20 // per) * per <= 20


def test_fk_steering_refusals(sd15, verifier):
    from noise_search.nodes.beyond_nodes import FKSteering
    with pytest.raises(ValueError, match="stochastic transition"):
        run(FKSteering, **search_kwargs(sd15, verifier, steps=3, **dict(FK, eta=0.0)))
    with pytest.raises(ValueError, match=r"particles \(k\) must be an integer >= 2"):
        run(FKSteering, **search_kwargs(sd15, verifier, steps=3, top_k=1, **dict(FK, particles=1)))
    with pytest.raises(ValueError, match="deterministic"):
        run(FKSteering, **search_kwargs(sd15, verifier, steps=3, sampler_name="euler_ancestral", **FK))
    with pytest.raises(ValueError, match="cannot use sampler_name 'dpmpp_2m'"):
        run(FKSteering, **search_kwargs(sd15, verifier, steps=3, sampler_name="dpmpp_2m", **FK))
    with pytest.raises(ValueError, match="potential"):
        run(FKSteering, **search_kwargs(sd15, verifier, steps=3, **dict(FK, potential="bogus")))
    with pytest.raises(ValueError, match="resample_end"):
        run(FKSteering, **search_kwargs(sd15, verifier, steps=3, **dict(FK, resample_end=7)))


EVO = dict(population=3, elites=1, lambda_=0.8, tournament=2, generations=3, proxy_steps=0)


def _reproduce(m, recipe_json, steps):
    import comfy.samplers
    from noise_search.nodes.comfy_adapters import resolve_sigmas
    from noise_search.nodes.types import NoisePool, PoolNoise
    from noise_search.search.noise import recipe_from_dict
    recipe = recipe_from_dict(json.loads(recipe_json))
    sig = resolve_sigmas(m["model"], "euler", "normal", steps, 1.0)
    return custom_advanced(m, None, comfy.samplers.sampler_object("euler"), sig, noise=PoolNoise(NoisePool([recipe])))


@pytest.mark.parametrize("which", ["sd15", "sd3"])
def test_evolutionary_search_winner_reproduces(request, verifier, which):
    from noise_search.nodes.beyond_nodes import EvolutionarySearch
    from noise_search.search.evolution import generation_sizes
    m = request.getfixturevalue(which)
    out = run(EvolutionarySearch, **search_kwargs(m, verifier, chunk_size=2, **EVO))
    latent, seed, recipe, prov = out.result[0], out.result[2], out.result[3], json.loads(out.result[7])
    sizes = generation_sizes(3, 1, generations=3)
    assert prov["algorithm"] == "evolution" and len(prov["candidates"]) == sum(sizes) == 7
    assert prov["nfe"] == sum(sizes) * 3
    # the winner (a seed or a mutated child) re-renders bit-exactly from its recipe; a seed winner in a plain KSampler
    assert torch.equal(latent["samples"], _reproduce(m, recipe, 3))
    if json.loads(recipe)["kind"] == "seed":
        assert torch.equal(latent["samples"], ksampler(m, seed, 3))
    # a kept child, picked by hand, re-renders from its recipe too
    topk = out.ui["noise_search"][0]["top_k"]
    child = next((i for i in topk if i >= 3), None)
    if child is not None:
        picked = run(EvolutionarySearch, **search_kwargs(m, verifier, chunk_size=2, pick=child, **EVO))
        assert json.loads(picked.result[3])["kind"] == "neighbour"
        assert torch.equal(picked.result[0]["samples"], _reproduce(m, picked.result[3], 3))


def test_evolutionary_search_winner_in_ksampler_with_cfg(sd15, verifier):
    from noise_search.nodes.beyond_nodes import EvolutionarySearch
    out = run(EvolutionarySearch, **search_kwargs(sd15, verifier, cfg=4.0, **dict(EVO, generations=1)))
    latent, seed, prov = out.result[0], out.result[2], json.loads(out.result[7])
    assert torch.equal(latent["samples"], ksampler(sd15, seed, 3, cfg=4.0))
    assert prov["nfe"] == 9 and prov["cfg_multiplier"] == 2


def test_evolutionary_search_refuses_bad_settings(sd15, verifier):
    from noise_search.nodes.beyond_nodes import EvolutionarySearch
    with pytest.raises(ValueError, match="elites"):
        run(EvolutionarySearch, **search_kwargs(sd15, verifier, **dict(EVO, elites=3)))
    with pytest.raises(ValueError, match="tournament"):
        run(EvolutionarySearch, **search_kwargs(sd15, verifier, **dict(EVO, tournament=4)))


PRUNE = dict(count=4, checkpoints="1", keep=0.5)


@pytest.mark.parametrize("which", ["sd15", "sd3"])
def test_early_pruning_runs_and_counts_the_cores_nfe(request, verifier, which):
    from noise_search.nodes.beyond_nodes import EarlyPruning
    from noise_search.search.pruning import pruning_nfe
    m = request.getfixturevalue(which)
    out = run(EarlyPruning, **search_kwargs(m, verifier, top_k=2, **PRUNE))
    p = json.loads(out.result[7])
    assert p["algorithm"] == "pruning" and p["params"]["alive"] == [4, 2]
    assert p["nfe"] == pruning_nfe(p["sampling"]["sigmas"], count=4, checkpoints=[1], keep=0.5, step_nfe=_step_nfe(1))
    assert out.result[0]["samples"].shape[0] == 1 and json.loads(out.result[3])["kind"] == "seed"


def test_early_pruning_with_heun_counts_two_calls_per_step(sd15, verifier):
    from noise_search.nodes.beyond_nodes import EarlyPruning
    from noise_search.search.pruning import pruning_nfe
    kw = search_kwargs(sd15, verifier, steps=4, sampler_name="heun", top_k=1, count=3, checkpoints="1, 2", keep=0.5)
    p = json.loads(run(EarlyPruning, **kw).result[7])
    assert p["nfe"] == pruning_nfe(p["sampling"]["sigmas"], count=3, checkpoints=[1, 2], keep=0.5, step_nfe=_step_nfe(2))


@pytest.mark.parametrize("which", ["sd15", "sd3"])
def test_early_pruning_keep_one_is_random_search(request, verifier, which):
    from noise_search.nodes.beyond_nodes import EarlyPruning
    from noise_search.nodes.search_nodes import RandomSearch
    m = request.getfixturevalue(which)
    # batch 1 (chunk_size 1): a flow model's rows depend on their batch in the last bits
    pr = run(EarlyPruning, **search_kwargs(m, verifier, chunk_size=1, **dict(PRUNE, keep=1.0)))
    rs = run(RandomSearch, **search_kwargs(m, verifier, chunk_size=1, count=4, proxy_steps=0))
    p, q = json.loads(pr.result[7]), json.loads(rs.result[7])
    assert pr.result[2] == rs.result[2] and pr.result[3] == rs.result[3]
    assert p["nfe"] == q["nfe"] == 4 * 3
    assert [c["score"] for c in p["candidates"]] == pytest.approx([c["score"] for c in q["candidates"]])
    assert torch.equal(pr.result[0]["samples"], rs.result[0]["samples"])
    assert torch.equal(pr.result[0]["samples"], ksampler(m, pr.result[2], 3))


def test_early_pruning_refusals(sd15, verifier):
    from noise_search.nodes.beyond_nodes import EarlyPruning
    with pytest.raises(ValueError, match="checkpoints must be grid steps"):
        run(EarlyPruning, **search_kwargs(sd15, verifier, **dict(PRUNE, checkpoints="one")))
    with pytest.raises(ValueError, match="checkpoints must be a non-empty list"):
        run(EarlyPruning, **search_kwargs(sd15, verifier, **dict(PRUNE, checkpoints="3")))
    with pytest.raises(ValueError, match="top_k 3 is larger"):
        run(EarlyPruning, **search_kwargs(sd15, verifier, **PRUNE))
    with pytest.raises(ValueError, match="cannot use sampler_name 'lms'"):
        run(EarlyPruning, **search_kwargs(sd15, verifier, sampler_name="lms", top_k=2, **PRUNE))


NODE_KW = {"FKSteering": dict(steps=4, top_k=2, **FK), "EvolutionarySearch": dict(EVO),
           "EarlyPruning": dict(steps=4, top_k=2, count=4, checkpoints="2", keep=0.5)}


@pytest.mark.parametrize("node_name", sorted(NODE_KW))
def test_progress_bar_and_previews(sd15, verifier, monkeypatch, node_name):
    import comfy.cli_args
    import comfy.utils
    from latent_preview import LatentPreviewMethod
    from noise_search.nodes import beyond_nodes
    monkeypatch.setattr(comfy.cli_args.args, "preview_method", LatentPreviewMethod.Latent2RGB)
    seen = []
    monkeypatch.setattr(comfy.utils, "PROGRESS_BAR_HOOK", lambda v, t, p, node_id=None: seen.append((v, t, p)))
    run(getattr(beyond_nodes, node_name), **search_kwargs(sd15, verifier, **NODE_KW[node_name]))
    assert seen and seen[-1][0] == seen[-1][1]  # ends at 100 %
    previews = [p for _, _, p in seen if p is not None]
    assert previews and previews[-1][0] == "JPEG" and previews[-1][1].size[0] > 0


@pytest.mark.parametrize("node_name", sorted(NODE_KW))
def test_cancel_saves_the_best_so_far(sd15, verifier, comfy_env, node_name):
    import comfy.model_management as mm
    from noise_search.nodes import beyond_nodes
    v = interrupting_verifier(verifier)
    folder = comfy_env["temp"] / "noise_search"
    before = snapshot(folder, "partial_*.json")
    with pytest.raises(mm.InterruptProcessingException):
        run(getattr(beyond_nodes, node_name), **search_kwargs(sd15, v, chunk_size=2, **NODE_KW[node_name]))
    mm.interrupt_current_processing(False)
    found = written_since(folder, "partial_*.json", before)
    assert found, "no partial summary in the temp folder"
    prov = json.loads(found[-1].read_text())
    assert prov["completed"] is False and len(prov["candidates"]) >= 2
