"""In-process execution of the search nodes on tiny random checkpoints (ComfyUI's own loaders)."""

import json

import pytest
import torch


def search_kwargs(m, verifier, **kw):
    base = dict(model=m["model"], positive=m["positive"], negative=m["negative"], latent_image=m["latent"], vae=m["vae"],
                verifier=verifier, verifier_prompt="", class_id=3, seed=100, sampler_name="euler", scheduler="normal",
                steps=3, cfg=1.0, denoise=1.0, budget=0, chunk_size=3, top_k=3)
    base.update(kw)
    return base


def run(node, **kw):
    with torch.inference_mode():
        return node.execute(**kw)


def test_random_search_outputs_and_accounting(sd15, verifier):
    from noise_search.nodes.search_nodes import RandomSearch
    out = run(RandomSearch, **search_kwargs(sd15, verifier, count=5, proxy_steps=0))
    latent, image, seed, recipe, topk, table, plot, prov = out.result
    p = json.loads(prov)
    assert p["algorithm"] == "random" and len(p["candidates"]) == 5
    assert p["nfe"] == 5 * 3 and p["cfg_multiplier"] == 1
    assert latent["samples"].shape == (1, 4, 8, 8) and image.shape == (1, 64, 64, 3)
    assert topk.shape[0] == 3 and plot.ndim == 4
    best = max(p["candidates"], key=lambda c: (c["score"], -c["index"]))
    assert seed == 100 + best["index"] and json.loads(recipe) == {"seed": seed, "kind": "seed"}
    ui = out.ui
    ns = ui["noise_search"][0]
    assert ns["winner"] == best["index"] and ns["picked"] == -1 and len(ns["images"]) == 3 == len(ns["top_k"])
    assert ns["seed"] == 100 and ns["nfe"] == 15 and len(ui["images"]) == 1  # previews show the output only


def ksampler(m, seed, steps, cfg=1.0, sampler="euler", scheduler="normal", denoise=1.0, latent=None):
    import nodes
    with torch.inference_mode():
        return nodes.common_ksampler(m["model"], seed, steps, cfg, sampler, scheduler, m["positive"], m["negative"],
                                     latent or m["latent"], denoise=denoise)[0]["samples"]


def custom_advanced(m, seed, sampler, sigmas, cfg=1.0, noise=None):
    from comfy_extras.nodes_custom_sampler import Noise_RandomNoise, SamplerCustomAdvanced
    import comfy.samplers
    guider = comfy.samplers.CFGGuider(m["model"])
    guider.set_conds(m["positive"], m["negative"])
    guider.set_cfg(cfg)
    with torch.inference_mode():
        out = SamplerCustomAdvanced().sample(noise or Noise_RandomNoise(seed), guider, sampler, sigmas, m["latent"])
    return out[0]["samples"]


@pytest.mark.parametrize("cfg", [1.0, 4.0])
def test_winner_seed_reproduces_bit_exactly_in_ksampler(sd15, verifier, cfg):
    from noise_search.nodes.search_nodes import RandomSearch
    out = run(RandomSearch, **search_kwargs(sd15, verifier, count=5, chunk_size=3, cfg=cfg, proxy_steps=0))
    latent, seed, prov = out.result[0], out.result[2], json.loads(out.result[7])
    assert torch.equal(latent["samples"], ksampler(sd15, seed, 3, cfg=cfg))
    assert prov["nfe"] == 15 and prov["cfg_multiplier"] == (2 if cfg > 1 else 1)
    assert prov["forward_passes"] == 15 * prov["cfg_multiplier"]


def test_batched_candidates_equal_batch_one_runs(sd15):
    from noise_search.nodes.comfy_adapters import Generator, SamplingSetup, resolve_sigmas
    from noise_search.search.candidates import Candidates
    from noise_search.search.noise import SeedRecipe
    import comfy.samplers
    m = sd15
    sig = resolve_sigmas(m["model"], "euler", "normal", 3, 1.0)
    setup = SamplingSetup(m["model"], m["positive"], m["negative"], m["latent"], m["vae"], comfy.samplers.sampler_object("euler"), sig, 3.0)
    gen = Generator(setup)
    recipes = [SeedRecipe(s) for s in (7, 8, 9, 10)]
    with torch.inference_mode():
        batch = gen(Candidates.of(recipes, setup.shape))
        singles = [gen(Candidates.of([r], setup.shape)) for r in recipes]
    lat = batch.extras["latent"]
    for i, s in enumerate(singles):
        assert torch.allclose(lat[i:i + 1], s.extras["latent"], atol=1e-3, rtol=0)
        assert torch.equal(s.extras["latent"], ksampler(m, recipes[i].seed, 3, cfg=3.0))


def test_proxy_steps_render_the_winner_at_full_steps(sd15, verifier):
    from noise_search.nodes.search_nodes import RandomSearch
    out = run(RandomSearch, **search_kwargs(sd15, verifier, count=4, steps=4, proxy_steps=2))
    latent, seed, prov = out.result[0], out.result[2], json.loads(out.result[7])
    assert prov["nfe"] == 4 * 2 and prov["final_nfe"] == 4
    assert prov["sampling"]["proxy_steps"] == 2 and len(prov["sampling"]["search_sigmas"]) == 3
    assert torch.equal(latent["samples"], ksampler(sd15, seed, 4))


def test_budget_sets_the_count(sd15, verifier):
    from noise_search.nodes.search_nodes import RandomSearch
    out = run(RandomSearch, **search_kwargs(sd15, verifier, count=0, budget=10, proxy_steps=0))
    prov = json.loads(out.result[7])
    assert len(prov["candidates"]) == 3 and prov["nfe"] == 9 and prov["params"]["budget"] == 10
    with pytest.raises(ValueError, match="exceeds the NFE budget"):
        run(RandomSearch, **search_kwargs(sd15, verifier, count=5, budget=10, proxy_steps=0))


def test_pool_input_and_pool_noise(sd15, verifier):
    from noise_search.nodes.noise_nodes import NoiseCandidatePool
    from noise_search.nodes.search_nodes import RandomSearch
    import comfy.samplers
    from noise_search.nodes.comfy_adapters import resolve_sigmas
    pool_out = NoiseCandidatePool.execute(seed=40, count=3, mode="seeds", lambda_=0.95, latent=sd15["latent"])
    pool, noise = pool_out.result[0], pool_out.result[1]
    assert noise.seed == 40 and len(json.loads(pool_out.result[2])["recipes"]) == 3
    sig = resolve_sigmas(sd15["model"], "euler", "normal", 3, 1.0)
    batched = custom_advanced(sd15, None, comfy.samplers.sampler_object("euler"), sig, noise=noise)
    assert batched.shape[0] == 3
    for i in range(3):
        assert torch.allclose(batched[i:i + 1], ksampler(sd15, 40 + i, 3), atol=1e-3, rtol=0)
    out = run(RandomSearch, **search_kwargs(sd15, verifier, count=99, pool=pool, proxy_steps=0))
    prov = json.loads(out.result[7])
    assert [c["recipe"]["seed"] for c in prov["candidates"]] == [40, 41, 42]
    assert torch.equal(out.result[0]["samples"], ksampler(sd15, out.result[2], 3))


def test_neighbourhood_pool():
    from noise_search.nodes.noise_nodes import NoiseCandidatePool
    from noise_search.search.noise import seed_noise
    out = NoiseCandidatePool.execute(seed=5, count=4, mode="neighbourhood", lambda_=0.9)
    pool, noise = out.result[0], out.result[1]
    x = noise.generate_noise({"samples": torch.zeros(1, 4, 8, 8)})
    assert x.shape == (4, 4, 8, 8) and torch.equal(x[:1], seed_noise(5, (1, 4, 8, 8)))
    cos = torch.nn.functional.cosine_similarity(x[1:].flatten(1).double(), x[:1].flatten(1).double())
    assert torch.allclose(cos, torch.full((3,), 0.9, dtype=torch.float64), atol=1e-5)
    with pytest.raises(ValueError, match="batch 2"):
        noise.generate_noise({"samples": torch.zeros(2, 4, 8, 8)})


def test_zero_order_search_on_a_flow_model(sd3, verifier):
    from noise_search.nodes.search_nodes import ZeroOrderSearch
    from noise_search.search.noise import recipe_from_dict
    kw = search_kwargs(sd3, verifier, neighbours=2, iterations=2, lambda_=0.9, score_pivot=True, proxy_steps=0, chunk_size=2)
    out = run(ZeroOrderSearch, **kw)
    latent, prov = out.result[0], json.loads(out.result[7])
    assert prov["algorithm"] == "zero_order" and len(prov["candidates"]) == 5 and prov["nfe"] == 5 * 3
    assert latent["samples"].shape == (1, 16, 8, 8)
    recipe = recipe_from_dict(json.loads(out.result[3]))
    # the winner (whatever its kind) is recreated exactly from its recipe
    from noise_search.nodes.types import NoisePool, PoolNoise
    import comfy.samplers
    from noise_search.nodes.comfy_adapters import resolve_sigmas
    sig = resolve_sigmas(sd3["model"], "euler", "normal", 3, 1.0)
    again = custom_advanced(sd3, None, comfy.samplers.sampler_object("euler"), sig, noise=PoolNoise(NoisePool([recipe])))
    assert torch.equal(latent["samples"], again)


@pytest.mark.parametrize("which", ["sd15", "sd3"])
def test_path_search(request, verifier, which):
    from noise_search.nodes.search_nodes import PathSearch
    from noise_search.search.paths import path_search_nfe
    m = request.getfixturevalue(which)
    kw = search_kwargs(m, verifier, steps=6, paths=2, width=2, start_step=2, delta_f=1, delta_b=2, chunk_size=3, top_k=2)
    out = run(PathSearch, **kw)
    prov = json.loads(out.result[7])
    sig = prov["sampling"]["sigmas"]
    assert prov["nfe"] == path_search_nfe(sig, paths=2, width=2, start_step=2, forward_steps=1, backward_steps=2)
    assert out.result[0]["samples"].shape[0] == 1 and out.result[1].shape[0] == 1
    assert json.loads(out.result[3])["kind"] == "path"


def test_path_search_with_heun_counts_two_calls_per_step(sd15, verifier):
    from noise_search.nodes.search_nodes import PathSearch
    from noise_search.search.paths import path_search_nfe
    kw = search_kwargs(sd15, verifier, sampler_name="heun", steps=5, paths=1, width=2, start_step=2, delta_f=1, delta_b=2, top_k=2)
    prov = json.loads(run(PathSearch, **kw).result[7])
    step = lambda a, b: 2 if b > 0 else 1
    assert prov["nfe"] == path_search_nfe(prov["sampling"]["sigmas"], paths=1, width=2, start_step=2, forward_steps=1,
                                          backward_steps=2, step_nfe=step)


def test_pick_outputs_the_human_choice(sd15, verifier):
    from noise_search.nodes.search_nodes import RandomSearch
    first = run(RandomSearch, **search_kwargs(sd15, verifier, count=4, proxy_steps=0))
    topk = first.ui["noise_search"][0]["top_k"]
    out = run(RandomSearch, **search_kwargs(sd15, verifier, count=4, proxy_steps=0, pick=topk[1]))
    prov = json.loads(out.result[7])
    assert prov["picked_by"] == "user" and prov["picked"] == topk[1] and prov["output_index"] == topk[1]
    assert out.result[2] == 100 + topk[1]
    assert out.ui["noise_search"][0]["picked"] == topk[1]
    assert torch.equal(out.result[0]["samples"], ksampler(sd15, 100 + topk[1], 3))
    outside = next(i for i in range(4) if i not in topk)
    with pytest.raises(ValueError, match="not among the kept top"):
        run(RandomSearch, **search_kwargs(sd15, verifier, count=4, proxy_steps=0, pick=outside))


def test_ensemble_of_verifiers(sd15, verifier):
    from noise_search.nodes.search_nodes import RandomSearch
    out = run(RandomSearch, **search_kwargs(sd15, verifier, count=4, proxy_steps=0, verifier_2=verifier, ensemble="zscore"))
    prov = json.loads(out.result[7])
    assert prov["verifiers"]["ensemble_rule"] == "zscore" and prov["verifiers"]["names"] == ["classifier", "classifier#2"]
    assert all(set(c["scores"]) == {"classifier", "classifier#2"} for c in prov["candidates"])


def test_clear_errors(sd15, verifier):
    from noise_search.nodes.search_nodes import PathSearch, RandomSearch
    from noise_search.nodes.scm_nodes import SCMSampler
    two = {"samples": torch.zeros(2, 4, 8, 8)}
    with pytest.raises(ValueError, match="batch-1 LATENT"):
        run(RandomSearch, **search_kwargs(sd15, verifier, count=2, proxy_steps=0, latent_image=two))
    with pytest.raises(ValueError, match="class_id"):
        run(RandomSearch, **search_kwargs(sd15, verifier, count=2, proxy_steps=0, class_id=-1))
    scm = SCMSampler.execute().result[0]
    with pytest.raises(ValueError, match="deterministic"):
        run(PathSearch, **search_kwargs(sd15, verifier, steps=4, paths=1, width=1, start_step=1, delta_f=0, delta_b=1, sampler=scm))


def test_img2img_with_denoise(sd15, verifier):
    from noise_search.nodes.search_nodes import RandomSearch
    g = torch.Generator().manual_seed(0)
    lat = {"samples": torch.randn(1, 4, 8, 8, generator=g)}
    out = run(RandomSearch, **search_kwargs(sd15, verifier, count=3, steps=4, denoise=0.5, latent_image=lat, proxy_steps=0))
    prov = json.loads(out.result[7])
    assert len(prov["sampling"]["sigmas"]) == 5
    assert torch.equal(out.result[0]["samples"], ksampler(sd15, out.result[2], 4, denoise=0.5, latent=lat))


def test_cancel_saves_the_best_so_far(sd15, verifier, comfy_env):
    import comfy.model_management as mm
    from host_harness import interrupting_verifier, snapshot, written_since
    from noise_search.nodes.search_nodes import RandomSearch
    v = interrupting_verifier(verifier)
    folder = comfy_env["temp"] / "noise_search"
    before = snapshot(folder, "partial_*.json")
    with pytest.raises(mm.InterruptProcessingException):
        run(RandomSearch, **search_kwargs(sd15, v, count=9, chunk_size=2, proxy_steps=0))
    mm.interrupt_current_processing(False)
    found = written_since(folder, "partial_*.json", before)
    assert found, "no partial summary in the temp folder"
    prov = json.loads(found[-1].read_text())
    assert prov["completed"] is False and len(prov["candidates"]) == 4
    from PIL import Image
    pngs = sorted((comfy_env["temp"] / "noise_search").glob("partial_*.png"))
    assert pngs and "noise_search" in Image.open(pngs[-1]).text


@pytest.mark.parametrize("node_name", ["RandomSearch", "PathSearch"])
def test_progress_bar_and_previews(sd15, verifier, monkeypatch, node_name):
    import comfy.cli_args
    import comfy.utils
    from latent_preview import LatentPreviewMethod
    from noise_search.nodes import search_nodes
    monkeypatch.setattr(comfy.cli_args.args, "preview_method", LatentPreviewMethod.Latent2RGB)
    seen = []
    monkeypatch.setattr(comfy.utils, "PROGRESS_BAR_HOOK", lambda v, t, p, node_id=None: seen.append((v, t, p)))
    extra = dict(count=4, proxy_steps=0) if node_name == "RandomSearch" else dict(steps=4, paths=1, width=2, start_step=1, delta_f=0, delta_b=1, top_k=2)
    run(getattr(search_nodes, node_name), **search_kwargs(sd15, verifier, **extra))
    assert seen and seen[-1][0] == seen[-1][1]  # ends at 100 %
    previews = [p for _, _, p in seen if p is not None]
    assert previews and previews[-1][0] == "JPEG" and previews[-1][1].size[0] > 0


# ---------------------------------------------------------------------- Search over Paths and the host's samplers

def _path_samplers():
    from noise_search.nodes.stepwise import PATH_SAMPLERS
    return sorted(PATH_SAMPLERS)


@pytest.mark.parametrize("which", ["sd15", "sd3"])
@pytest.mark.parametrize("sampler_name", ["euler", "euler_cfg_pp", "ddim", "heun", "dpm_2"])
def test_path_search_without_branching_is_the_plain_ksampler(request, verifier, which, sampler_name):
    """The original: ComfyUI's own KSampler (``nodes.common_ksampler``) on the full grid. With delta_f = 0 and
    M = 1 Search over Paths re-noises by nothing, so every accepted sampler must give exactly its latent."""
    from noise_search.nodes.search_nodes import PathSearch
    assert sampler_name in _path_samplers()
    m = request.getfixturevalue(which)
    kw = search_kwargs(m, verifier, sampler_name=sampler_name, steps=4, paths=1, width=1, start_step=1, delta_f=0,
                       delta_b=1, top_k=1, cfg=2.0)
    out = run(PathSearch, **kw)
    assert out.result[2] == 100
    assert torch.equal(out.result[0]["samples"], ksampler(m, 100, 4, cfg=2.0, sampler=sampler_name))


def test_path_search_refuses_every_other_deterministic_sampler_by_name(sd15, verifier):
    """Multistep samplers (their step reads earlier steps) and look-ahead ones are refused, never stepped as Euler."""
    import comfy.samplers
    from noise_search.nodes.comfy_adapters import is_stochastic
    from noise_search.nodes.search_nodes import PathSearch
    refused = [n for n in comfy.samplers.KSampler.SAMPLERS
               if n not in _path_samplers() and not is_stochastic(comfy.samplers.sampler_object(n))]
    assert {"dpmpp_2m", "lms", "ipndm", "deis", "heunpp2", "uni_pc"} <= set(refused)
    for name in refused:
        with pytest.raises(ValueError, match=f"cannot use sampler_name '{name}'.*one of ddim, dpm_2, euler"):
            run(PathSearch, **search_kwargs(sd15, verifier, sampler_name=name, steps=4, paths=1, width=1, start_step=1,
                                            delta_f=0, delta_b=1, top_k=1))
    # a connected SAMPLER is named by its k-diffusion function
    with pytest.raises(ValueError, match="cannot use the connected SAMPLER 'dpmpp_2m'"):
        run(PathSearch, **search_kwargs(sd15, verifier, steps=4, paths=1, width=1, start_step=1, delta_f=0, delta_b=1,
                                        top_k=1, sampler=comfy.samplers.sampler_object("dpmpp_2m")))


# ---------------------------------------------------------------------- the self-supervised verifier's early prediction

def _self_supervised():
    from noise_search.nodes.types import HostVerifier
    from noise_search.verifiers.features import SelfSupervisedVerifier
    return HostVerifier(SelfSupervisedVerifier(lambda images: images.flatten(1)), kind="self_supervised")


def test_self_supervised_verifier_on_a_short_schedule_is_refused(sd15, sd3):
    """ComfyUI's own grids: the model call nearest SiT time 0.4 is the last on 2-step SD1.5 and SD3 (flow) Euler
    schedules and on sCM 2-step sigmas, whose x0 prediction is the final sample: a constant verifier, so the search
    refuses it."""
    from noise_search.nodes.scm_nodes import SCMSampler, SCMSigmas
    from noise_search.nodes.search_nodes import RandomSearch
    for m in (sd15, sd3):
        with pytest.raises(ValueError, match="every candidate would score 1"):
            run(RandomSearch, **search_kwargs(m, _self_supervised(), steps=2, count=2, proxy_steps=0, top_k=2))
        scm = dict(sampler=SCMSampler.execute().result[0],
                   sigmas=SCMSigmas.execute(model=m["model"], steps=2, t_max=0.0, t_mid=1.1, sigma_data=0.0).result[0])
        with pytest.raises(ValueError, match="every candidate would score 1"):
            run(RandomSearch, **search_kwargs(m, _self_supervised(), count=2, proxy_steps=0, top_k=2, **scm))


def test_self_supervised_verifier_records_the_early_time_it_read(sd15):
    from noise_search.nodes.comfy_adapters import sigma_to_time
    from noise_search.nodes.search_nodes import RandomSearch
    out = run(RandomSearch, **search_kwargs(sd15, _self_supervised(), steps=8, count=3, proxy_steps=0, top_k=2))
    prov = json.loads(out.result[7])
    times = [sigma_to_time(sd15["model"], s) for s in prov["sampling"]["sigmas"][:-1]]
    nearest = min(times, key=lambda t: abs(t - 0.4))
    assert prov["early_time"] == pytest.approx(nearest) and prov["early_time"] != times[-1]
    assert len({c["score"] for c in prov["candidates"]}) > 1  # not the constant 1 of a final-vs-final comparison
