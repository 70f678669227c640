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
