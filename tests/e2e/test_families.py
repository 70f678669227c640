"""End to end per model family (issue 15): a real ComfyUI server (``main.py --cpu``) loads tiny random FLUX.1-dev,
FLUX.1-schnell, SDXL, PixArt-Sigma, SD3.5 (Medium, MMDiT-X) and Wan 2.1 / 2.2 models (tests/nodes/tiny_families.py)
through its standard loader nodes, and runs the family's usual graph (tests/e2e/graphs/families/<family>_sample.json)
and the three search nodes in it (<family>_search.json, with the search node turned into Zero-Order Search or Search
over Paths here). Checked per image family:

* Random Search: the winner's LATENT and IMAGE are bit-identical to the family's usual sampling graph (KSampler, or
  SamplerCustomAdvanced + RandomNoise + BasicGuider for FLUX-dev) run with the reported seed; NFE and the CFG
  multiplier in the provenance (FLUX: cfg 1, no negative -> one forward pass per model call);
* Zero-Order Search: NFE, neighbour recipes descending from the seed, and the winner against the same neighbourhood
  sampled by SamplerCustomAdvanced from a Noise Candidate Pool (batched there, so equal to float rounding only:
  a CPU batch of 3 differs from batch-1 runs by up to ~1e-6 relative);
* Search over Paths (euler): NFE as ``path_search_nfe`` counts it, and with delta_f 0, M 1 the output is bit-identical
  to the usual graph with the seed;
* flow families (FLUX, SD3.5): the sCM Sampler + sCM Sigmas in SamplerCustomAdvanced, and a Random Search whose
  candidates the sCM sampler generates, the winner bit-identical to that graph with its seed.

Wan (video): the usual text-to-video graph runs, and so do the search nodes on its video latent: a Random Search's
winner latent and frames are bit-identical to the usual graph (KSampler + VAEDecode) with the reported seed, its frames
feed ComfyUI's SaveAnimatedWEBP, the scored frames and their aggregation are in the provenance; Zero-Order Search and
Search over Paths run too; an image VAE with the video model is refused before sampling, in one line. Skipped without COMFYUI_PATH; see tests/README-comfy.md. About 7 minutes on 2 CPU
cores (20 s of it writing the models and starting the server); the tiny models take 6.5 GB on disk while the module
runs (deleted after). The graphs live in graphs/families/, not graphs/: test_server.py runs every graphs/*.json and
requires an example workflow for each.
"""

import copy
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
COMFY = os.environ.get("COMFYUI_PATH")
sys.path.insert(0, str(ROOT / "tests" / "nodes"))
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
from tiny_models import import_comfy  # noqa: E402
from comfy_server import running_server  # noqa: E402

SKIP_REASON = import_comfy(COMFY)
pytestmark = [pytest.mark.e2e, pytest.mark.comfy, pytest.mark.skipif(bool(SKIP_REASON), reason=SKIP_REASON or "")]

GRAPHS = HERE / "graphs" / "families"
IMAGE = ["flux_dev", "flux_schnell", "sdxl", "pixart_sigma", "sd35_medium"]
FLOW = ["flux_dev", "flux_schnell", "sd35_medium"]
VIDEO = ["wan21_t2v", "wan22_ti2v"]
LOAD_ONLY = ["sd35_large"]  # detected and sampled in its usual graph; its search runs are sd35_medium's (same class, no MMDiT-X)
# ComfyUI's supported_models class each tiny model is detected as
DETECTED = {"flux_dev": "Flux", "flux_schnell": "FluxSchnell", "sdxl": "SDXL", "pixart_sigma": "PixArtSigma",
            "sd35_medium": "SD3", "sd35_large": "SD3", "wan21_t2v": "WAN21_T2V", "wan22_ti2v": "WAN22_T2V"}
SEARCH, SAMPLER = "6", "20"  # node ids shared by the family graphs
LOAD_PROBLEMS = ("unet missing", "clip missing", "Missing VAE keys", "VAE not initalized")  # SD3.5 ships without text encoders


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import torch
    import tiny_families
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("comfy_families")
    models = base / "models"
    fams = {name: tiny_families.build(str(models), name, check=True) for name in IMAGE + LOAD_ONLY + VIDEO}
    vdir = models / "verifiers"
    vdir.mkdir()
    from verifiers_support import save_tiny_clip
    save_tiny_clip(str(vdir / "clip-vit-large-patch14"))
    try:
        with running_server(COMFY, base, models, ["checkpoints", "diffusion_models", "text_encoders", "vae", "verifiers"],
                            name="noise_search_families", families=fams) as srv:
            yield srv
    finally:
        shutil.rmtree(models, ignore_errors=True)  # gigabytes; pytest keeps the last three base temps


# --------------------------------------------------------------------------- graphs and results

def graph(family, kind):
    return json.loads((GRAPHS / f"{family}_{kind}.json").read_text())


def with_seed(g, seed):
    g = copy.deepcopy(g)
    for node in g.values():
        for key in ("seed", "noise_seed"):
            if key in node["inputs"] and node["class_type"] in ("KSampler", "RandomNoise"):
                node["inputs"][key] = int(seed)
    return g


def as_search(g, algorithm, **params):
    """The family's search graph with its Random Search node turned into ``algorithm`` (its own inputs replaced)."""
    g = copy.deepcopy(g)
    node = g[SEARCH]
    inputs = {k: v for k, v in node["inputs"].items() if k not in ("count", "proxy_steps")}
    if algorithm == "zero_order":
        node["class_type"] = "ZeroOrderSearch_NoiseSearch"
        inputs.update(neighbours=2, iterations=1, lambda_=0.9, score_pivot=False, proxy_steps=0)
    elif algorithm == "paths":
        node["class_type"] = "PathSearch_NoiseSearch"
        inputs.update(paths=2, width=2, start_step=1, delta_f=1, delta_b=2)
    else:
        raise ValueError(algorithm)
    inputs.update(params)
    node["inputs"] = inputs
    return g


def provenance(server, outputs):
    from PIL import Image
    png = Image.open(server.output(outputs["7"]["images"][0]))
    return json.loads(png.text["noise_search"])


def latent(server, outputs, node):
    from safetensors.torch import load_file
    return load_file(str(server.output(outputs[node]["latents"][0])))["latent_tensor"]


def pixels(server, outputs, node):
    import numpy as np
    from PIL import Image
    return np.asarray(Image.open(server.output(outputs[node]["images"][0])))


def usual(server, family, seed, kind="sample"):
    """The family's usual sampling graph (or its sCM graph) at ``seed`` -> (latent, 8-bit image)."""
    out = server.ok(with_seed(graph(family, kind), seed))
    return latent(server, out, "27"), pixels(server, out, "26")


def cfg_rows(family):
    return 1 if family in ("flux_dev", "flux_schnell") else 2


def assert_loaded_cleanly(server):
    bad = [ln for ln in server.log.read_text().splitlines() if any(p in ln for p in LOAD_PROBLEMS)]
    assert not bad, bad[:5]


# --------------------------------------------------------------------------- tests

@pytest.mark.parametrize("family", IMAGE + LOAD_ONLY + VIDEO)
def test_comfyui_detects_the_tiny_model_as_its_family(server, family):
    assert server.families[family].detected == DETECTED[family]


@pytest.mark.parametrize("family", IMAGE + LOAD_ONLY + VIDEO)
def test_the_usual_graph_runs_with_the_standard_loaders(server, family):
    import torch
    out = server.ok(graph(family, "sample"))
    lat = latent(server, out, "27")
    assert torch.isfinite(lat).all()
    if family in VIDEO:
        assert lat.ndim == 5 and lat.shape[1] == (48 if family == "wan22_ti2v" else 16)
        assert len(out["26"]["images"]) == 5  # the decoded frames
    else:
        assert lat.ndim == 4 and lat.shape[1] == (4 if family in ("sdxl", "pixart_sigma") else 16)
    assert_loaded_cleanly(server)


@pytest.mark.parametrize("family", IMAGE)
def test_random_search_winner_reproduces_in_the_usual_graph(server, family):
    import numpy as np
    import torch
    g = graph(family, "search")
    out = server.ok(g)
    p = provenance(server, out)
    steps, count = g[SEARCH]["inputs"]["steps"], g[SEARCH]["inputs"]["count"]
    assert p["algorithm"] == "random" and len(p["candidates"]) == count
    assert p["nfe"] == count * steps and p["cfg_multiplier"] == cfg_rows(family)
    assert p["forward_passes"] == p["nfe"] * cfg_rows(family)
    win = p["candidates"][p["output_index"]]["recipe"]
    assert win == {"seed": 42 + p["output_index"], "kind": "seed"} and p["winner_index"] == p["output_index"]
    ref_latent, ref_image = usual(server, family, win["seed"])
    assert torch.equal(latent(server, out, "8"), ref_latent)
    assert np.array_equal(pixels(server, out, "7"), ref_image)


@pytest.mark.parametrize("family", IMAGE)
def test_zero_order_search_winner_is_its_pool_neighbour(server, family):
    import torch
    g = as_search(graph(family, "search"), "zero_order", neighbours=2, iterations=1, lambda_=0.9, chunk_size=2)
    out = server.ok(g)
    p = provenance(server, out)
    steps = g[SEARCH]["inputs"]["steps"]
    assert p["algorithm"] == "zero_order" and len(p["candidates"]) == 2
    assert p["nfe"] == 2 * steps and p["cfg_multiplier"] == cfg_rows(family)
    recipes = [c["recipe"] for c in p["candidates"]]
    assert all(r["kind"] == "neighbour" and r["iteration"] == 0 and r["lineage"] == [{"seed": 42, "kind": "seed"}] for r in recipes), recipes
    won = p["output_index"]
    # the same neighbourhood as a Noise Candidate Pool (pivot, then the neighbours of iteration 0) in SamplerCustomAdvanced
    pool = pool_graph(graph(family, "sample"), family, lam=0.9, count=3, row=1 + recipes[won]["index"])
    ref = latent(server, server.ok(pool), "27")
    got = latent(server, out, "8")
    assert got.shape == ref.shape
    assert torch.allclose(got, ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max())), float((got - ref).abs().max())


def pool_graph(sample, family, lam, count, row):
    """``sample`` with its sampler fed by a Noise Candidate Pool's NOISE (neighbourhood of seed 42) and one row kept."""
    g = copy.deepcopy(sample)
    s = g[SAMPLER]
    if s["class_type"] == "KSampler":
        i = s["inputs"]
        g["22"] = {"class_type": "CFGGuider", "inputs": {"model": i["model"], "positive": i["positive"], "negative": i["negative"], "cfg": i["cfg"]}}
        g["23"] = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": i["sampler_name"]}}
        g["24"] = {"class_type": "BasicScheduler", "inputs": {"model": i["model"], "scheduler": i["scheduler"], "steps": i["steps"], "denoise": 1.0}}
        g[SAMPLER] = {"class_type": "SamplerCustomAdvanced", "inputs": {"guider": ["22", 0], "sampler": ["23", 0], "sigmas": ["24", 0],
                                                                        "latent_image": i["latent_image"]}}
    g.pop("21", None)
    g["30"] = {"class_type": "NoiseCandidatePool_NoiseSearch", "inputs": {"seed": 42, "count": count, "mode": "neighbourhood", "lambda_": lam,
                                                                         "latent": g[SAMPLER]["inputs"]["latent_image"]}}
    g[SAMPLER]["inputs"]["noise"] = ["30", 1]
    g["31"] = {"class_type": "LatentFromBatch", "inputs": {"samples": [SAMPLER, 0], "batch_index": row, "length": 1}}
    g["27"]["inputs"]["samples"] = ["31", 0]
    g["27"]["inputs"]["filename_prefix"] = f"families/{family}_pool"
    g["25"]["inputs"]["samples"] = ["31", 0]
    g["26"]["inputs"]["filename_prefix"] = f"families/{family}_pool"
    return g


@pytest.mark.parametrize("family", IMAGE)
def test_search_over_paths_counts_its_nfe(server, family):
    from noise_search.search.paths import path_search_nfe
    g = as_search(graph(family, "search"), "paths", steps=4, chunk_size=4)
    p = provenance(server, server.ok(g))
    sig = p["sampling"]["sigmas"]
    assert len(sig) == 5 and p["algorithm"] == "paths"
    assert p["nfe"] == path_search_nfe(sig, paths=2, width=2, start_step=1, forward_steps=1, backward_steps=2)
    assert p["cfg_multiplier"] == cfg_rows(family)
    assert p["candidates"][p["output_index"]]["recipe"]["kind"] == "path"


@pytest.mark.parametrize("family", IMAGE)
def test_search_over_paths_without_branching_is_the_usual_graph(server, family):
    import numpy as np
    import torch
    g = as_search(graph(family, "search"), "paths", paths=1, width=1, start_step=1, delta_f=0, delta_b=1, top_k=1)
    out = server.ok(g)
    ref_latent, ref_image = usual(server, family, 42)
    assert torch.equal(latent(server, out, "8"), ref_latent)
    assert np.array_equal(pixels(server, out, "7"), ref_image)


@pytest.mark.parametrize("family", FLOW)
def test_scm_sampler_and_sigmas_run_on_flow_models(server, family):
    import torch
    lat, img = usual(server, family, 42, kind="scm")
    assert torch.isfinite(lat).all() and img.shape[:2] == (64, 64)
    again, _ = usual(server, family, 43, kind="scm")
    assert not torch.equal(lat, again)  # the seed matters (initial noise and the sCM re-noise)


@pytest.mark.parametrize("family", FLOW)
def test_random_search_with_scm_candidates_reproduces(server, family):
    """A search whose candidates the sCM sampler generates (2 NFE each): the winner equals the sCM graph with its seed."""
    import numpy as np
    import torch
    scm = graph(family, "scm")
    g = graph(family, "search")
    g["13"], g["14"] = scm["13"], scm["14"]
    g[SEARCH]["inputs"].update(sampler=["13", 0], sigmas=["14", 0], cfg=1.0)
    out = server.ok(g)
    p = provenance(server, out)
    assert p["nfe"] == 3 * 2 and p["cfg_multiplier"] == 1 and p["sampling"]["sampler"] == "SAMPLER input"
    seed = p["candidates"][p["output_index"]]["recipe"]["seed"]
    ref_latent, ref_image = usual(server, family, seed, kind="scm")
    assert torch.equal(latent(server, out, "8"), ref_latent)
    assert np.array_equal(pixels(server, out, "7"), ref_image)


def all_pixels(server, outputs, node):
    import numpy as np
    from PIL import Image
    return [np.asarray(Image.open(server.output(im))) for im in outputs[node]["images"]]


@pytest.mark.parametrize("family", VIDEO)
def test_random_search_on_video_reproduces_in_the_usual_graph(server, family):
    """The winner's LATENT and every decoded frame equal the usual text-to-video graph's with its seed; its frames make
    an animated WEBP (ComfyUI's video save node); the top-K come out as strips of the scored keyframes."""
    import numpy as np
    import torch
    g = graph(family, "search")
    g["6"]["inputs"].update(video_frames="keyframes", video_aggregate="min")
    g["40"] = {"class_type": "SaveAnimatedWEBP", "inputs": {"images": ["6", 1], "filename_prefix": f"families/{family}_webp",
                                                          "fps": 8.0, "lossless": True, "quality": 80, "method": "fastest"}}
    g["41"] = {"class_type": "SaveImage", "inputs": {"images": ["6", 4], "filename_prefix": f"families/{family}_topk"}}
    out = server.ok(g)
    p = provenance(server, out)
    steps, count = g[SEARCH]["inputs"]["steps"], g[SEARCH]["inputs"]["count"]
    assert p["algorithm"] == "random" and len(p["candidates"]) == count and p["nfe"] == count * steps
    assert p["cfg_multiplier"] == 2
    assert p["sampling"]["video"] == {"frames": "keyframes", "aggregate": "min", "num_frames": 5, "scored_frames": [0, 2, 4]}
    win = p["candidates"][p["output_index"]]["recipe"]
    assert win == {"seed": 42 + p["output_index"], "kind": "seed"}
    ref = server.ok(with_seed(graph(family, "sample"), win["seed"]))
    assert torch.equal(latent(server, out, "8"), latent(server, ref, "27"))
    frames, ref_frames = all_pixels(server, out, "7"), all_pixels(server, ref, "26")
    assert len(frames) == len(ref_frames) == 5 and all(np.array_equal(a, b) for a, b in zip(frames, ref_frames))
    assert out["40"]["images"] and out["40"]["animated"][0] is True
    strips = all_pixels(server, out, "41")
    assert len(strips) == g[SEARCH]["inputs"]["top_k"] and strips[0].shape == (64, 3 * 64, 3)


@pytest.mark.parametrize("algorithm", ["zero_order", "paths"])
def test_zero_order_and_path_search_run_on_wan(server, algorithm):
    g = as_search(graph("wan21_t2v", "search"), algorithm, top_k=1,
                  **({"neighbours": 2} if algorithm == "zero_order" else {"paths": 1, "width": 2}))
    g[SEARCH]["inputs"].update(video_frames="every_k", video_every_k=2)
    out = server.ok(g)
    p = provenance(server, out)
    assert p["algorithm"] == algorithm and p["sampling"]["video"]["scored_frames"] == [0, 2, 4]
    assert len(out["7"]["images"]) == 5
    assert list(latent(server, out, "8").shape) == [1, 16, 2, 8, 8]


def test_an_image_vae_with_wan_is_refused_in_one_line(server):
    g = graph("wan21_t2v", "search")
    g["11"]["inputs"]["vae_name"] = "tiny_flux_ae.safetensors"
    h = server.run(g)
    assert h["status"]["status_str"] == "error", json.dumps(h["status"], indent=1)[-2000:]
    errs = [m[1] for m in h["status"]["messages"] if m[0] == "execution_error"]
    assert len(errs) == 1 and errs[0]["node_id"] == SEARCH and errs[0]["exception_type"] == "ValueError", errs
    msg = errs[0]["exception_message"].strip()
    assert msg.startswith("vae: an image VAE with a video model (WAN21_T2V)") and "\n" not in msg, msg


# --------------------------------------------------------------------------- the search nodes beyond Ma et al. (issue 17)

FLOW_SPACE = FLOW + VIDEO  # ComfyUI's CONST (flow) model sampling: FLUX, SD3.5, Wan; SDXL and PixArt-Sigma are EDM
BEYOND = {  # small valid settings (tests/nodes/test_beyond_nodes.py NODE_KW), euler, the graphs' 3 steps
    "fk": ("FKSteering_NoiseSearch", dict(particles=2, potential="max", lambda_=10.0, resample_every=1, resample_start=0,
                                          resample_end=0, ess_threshold=0.0, eta=1.0, top_k=1)),
    "evolution": ("EvolutionarySearch_NoiseSearch", dict(population=2, elites=1, lambda_=0.8, tournament=2, generations=2,
                                                         proxy_steps=0, top_k=2)),
    "pruning": ("EarlyPruning_NoiseSearch", dict(count=3, checkpoints="1", keep=0.5, top_k=1)),
}


def as_beyond(g, algorithm):
    """The family's search graph with its Random Search node turned into FK Steering, Evolutionary Search or Early
    Pruning (the shared inputs kept: model, conditioning, latent, VAE, verifier, seed, euler, steps, cfg, chunk_size)."""
    g = copy.deepcopy(g)
    node = g[SEARCH]
    class_type, params = BEYOND[algorithm]
    node["class_type"] = class_type
    node["inputs"] = {**{k: v for k, v in node["inputs"].items() if k not in ("count", "proxy_steps", "top_k")}, **params}
    assert node["inputs"]["sampler_name"] == "euler"
    return g


def beyond_nfe(algorithm, sigmas, family):
    """The core's NFE accounting for the settings in BEYOND (euler: one model call per step)."""
    _, kw = BEYOND[algorithm]
    if algorithm == "fk":
        from noise_search.samplers.noise_space import EDM, FLOW as FLOW_NOISE
        from noise_search.search.fk_steering import fk_steering_nfe
        return fk_steering_nfe(sigmas, particles=kw["particles"], space=FLOW_NOISE if family in FLOW_SPACE else EDM,
                               step_nfe=lambda a, b: 1, potential=kw["potential"], lmbda=kw["lambda_"],
                               resample_every=kw["resample_every"], eta=kw["eta"])
    if algorithm == "evolution":
        from noise_search.search.evolution import generation_sizes
        return sum(generation_sizes(kw["population"], kw["elites"], generations=kw["generations"])) * (len(sigmas) - 1)
    from noise_search.search.pruning import pruning_nfe
    return pruning_nfe(sigmas, count=kw["count"], checkpoints=[int(c) for c in kw["checkpoints"].split(",")],
                       keep=kw["keep"], step_nfe=lambda a, b: 1)


@pytest.mark.parametrize("algorithm", list(BEYOND))
@pytest.mark.parametrize("family", IMAGE + VIDEO)
def test_fk_evolution_and_pruning_run_on_every_family(server, family, algorithm):
    """FK Steering, Evolutionary Search and Early Pruning in each family's search graph: the run succeeds, the provenance
    names the algorithm, its NFE is the core's accounting and the CFG multiplier the family's (FLUX: 1)."""
    import torch
    g = as_beyond(graph(family, "search"), algorithm)
    out = server.ok(g)
    p = provenance(server, out)
    sig = p["sampling"]["sigmas"]
    assert p["algorithm"] == algorithm and len(sig) == g[SEARCH]["inputs"]["steps"] + 1
    assert p["nfe"] == beyond_nfe(algorithm, sig, family), (p["nfe"], p.get("params"))
    assert p["cfg_multiplier"] == cfg_rows(family)
    if algorithm == "evolution":
        _, kw = BEYOND["evolution"]
        from noise_search.search.evolution import generation_sizes
        assert len(p["candidates"]) == sum(generation_sizes(kw["population"], kw["elites"], generations=kw["generations"]))
    elif algorithm == "fk":
        assert p["params"]["particles"] == 2 and p["candidates"][p["output_index"]]["recipe"]["kind"] == "particle"
    else:
        assert p["params"]["alive"] == [3, 2] and p["candidates"][p["output_index"]]["recipe"]["kind"] == "seed"
    lat = latent(server, out, "8")
    assert torch.isfinite(lat).all() and lat.shape[0] == 1
    if family in VIDEO:
        assert lat.ndim == 5 and len(out["7"]["images"]) == 5
