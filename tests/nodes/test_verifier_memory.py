"""The verifier phase of a search under ComfyUI's model management (tiny checkpoints; skipped without COMFYUI_PATH).

- the verifier reaches its device only through ``comfy.model_management.load_models_gpu``, in calls of its
  own (never together with the diffusion model), so when the device is short of memory ComfyUI frees it by
  offloading the diffusion model (``free_memory`` in ``load_models_gpu`` unloads every other model it needs to);
- neither model is pinned: model management can unload both, and the next score loads the verifier again;
- an out-of-memory error inside the node's sampling halves the chunk and the node's search goes on.
"""

import json

import pytest
import torch


def search_kwargs(m, verifier, **kw):
    base = dict(model=m["model"], positive=m["positive"], negative=m["negative"], latent_image=m["latent"], vae=m["vae"],
                verifier=verifier, verifier_prompt="", class_id=3, seed=100, sampler_name="euler", scheduler="normal",
                steps=2, cfg=1.0, denoise=1.0, budget=0, chunk_size=3, top_k=2, count=6, proxy_steps=0)
    base.update(kw)
    return base


def run(node, **kw):
    with torch.inference_mode():
        return node.execute(**kw)


def is_diffusion(patcher):
    import comfy.model_base
    return isinstance(getattr(patcher, "model", None), comfy.model_base.BaseModel)


@pytest.fixture
def load_calls(monkeypatch):
    import comfy.model_management as mm
    calls, real = [], mm.load_models_gpu

    def spy(models, *a, **k):
        calls.append(list(models))
        return real(models, *a, **k)

    monkeypatch.setattr(mm, "load_models_gpu", spy)
    return calls


def test_verifier_goes_through_load_models_gpu_on_its_own(sd15, verifier, load_calls):
    from noise_search.nodes.search_nodes import RandomSearch
    out = run(RandomSearch, **search_kwargs(sd15, verifier))
    assert len(json.loads(out.result[7])["candidates"]) == 6
    vp = verifier.patcher
    assert vp is not None
    with_verifier = [c for c in load_calls if any(p is vp for p in c)]
    # count 6, chunk 3 -> 2 scored chunks: the verifier is (re)loaded before each
    assert len(with_verifier) >= 2
    assert not any(is_diffusion(p) for c in with_verifier for p in c), "verifier and diffusion model requested together"
    assert any(is_diffusion(p) for c in load_calls for p in c)  # the diffusion model goes the same way


def test_model_management_can_unload_both_and_the_verifier_comes_back(sd15, verifier, monkeypatch):
    import comfy.model_management as mm
    from noise_search.nodes.search_nodes import RandomSearch
    run(RandomSearch, **search_kwargs(sd15, verifier))
    loaded = lambda: [lm.model for lm in mm.current_loaded_models]
    assert any(m is verifier.patcher for m in loaded()) and any(is_diffusion(m) for m in loaded())
    # a device with no free memory: ComfyUI unloads what it may, i.e. anything not kept loaded
    monkeypatch.setattr(mm, "get_free_memory", lambda dev=None, torch_free_too=False: (0, 0) if torch_free_too else 0)
    mm.free_memory(1e30, torch.device("cpu"))
    assert not any(m is verifier.patcher for m in loaded()) and not any(is_diffusion(m) for m in loaded())
    monkeypatch.undo()
    with torch.inference_mode():
        s = verifier.score(torch.rand(2, 64, 64, 3), 3)
    assert s.shape == (2,) and any(m is verifier.patcher for m in loaded()) and not any(is_diffusion(m) for m in loaded())


def test_out_of_memory_in_node_sampling_halves_the_chunk(sd15, verifier, monkeypatch):
    from noise_search.nodes import comfy_adapters
    from noise_search.nodes.search_nodes import RandomSearch
    ref = json.loads(run(RandomSearch, **search_kwargs(sd15, verifier, chunk_size=4)).result[7])
    real, sizes = comfy_adapters.SamplingSetup.sample, []

    def flaky(self, candidates, *a, **k):
        sizes.append(len(candidates))
        if len(candidates) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return real(self, candidates, *a, **k)

    monkeypatch.setattr(comfy_adapters.SamplingSetup, "sample", flaky)
    got = json.loads(run(RandomSearch, **search_kwargs(sd15, verifier, chunk_size=4)).result[7])
    assert max(sizes) > 1 and sizes[-1] == 1
    assert got["nfe"] == ref["nfe"] and len(got["candidates"]) == len(ref["candidates"]) == 6
    for a, b in zip(got["candidates"], ref["candidates"]):
        assert a["recipe"] == b["recipe"] and a["score"] == pytest.approx(b["score"], abs=1e-3)
