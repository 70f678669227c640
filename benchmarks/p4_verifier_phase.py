"""P4: the verifier phase of a search.

1. Text embeddings are computed once per prompt per search: a CLIPScore verifier (tiny random CLIP saved with
   save_pretrained, tests/fixtures/verifiers_support.py) scores a toy-world random search of N = 32 in chunks
   of 4; forward calls of its text tower and image tower are counted (also with the cache off, and for a
   second search and a second prompt with the same verifier object, as a Verifier Loader output is reused).
2. OOM: an injected out-of-memory error (generate fails above batch 2) halves the chunk and the search goes
   on with the same scores (random search and search over paths).
3. With COMFYUI_PATH set: a Random Search node run with the CLIP verifier under model management; every
   ``comfy.model_management.load_models_gpu`` call is recorded: the verifier's loads, whether it was ever
   requested together with the diffusion model, and the text-tower calls over the whole node run.

    python benchmarks/p4_verifier_phase.py
    COMFYUI_PATH=~/comfyui ~/cvenv/bin/python benchmarks/p4_verifier_phase.py
"""

import argparse
import json
import os
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _util import context, emit, host_harness, import_pack  # noqa: E402


class Counter:
    def __init__(self, module):
        self.calls = 0
        module.register_forward_pre_hook(self.hook)

    def hook(self, mod, args):
        self.calls += 1


def tiny_clip_verifier(folder, cache_size=256):
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "fixtures"))
    import verifiers_support
    from noise_search.verifiers.registry import load_verifier

    if not os.path.isfile(os.path.join(folder, "config.json")):
        verifiers_support.save_tiny_clip(folder)
    v = load_verifier("clip_score", folder)
    v.cache.maxsize = cache_size
    return v


def text_tower_calls(folder, n=32, chunk=4):
    from noise_search.search.random_search import random_search
    from noise_search.toyworld.world import SHAPE, ToyWorld

    w = ToyWorld(3, steps=4, method="euler")
    out = {}
    for label, cache in (("cached", 256), ("cache_off", 0)):
        v = tiny_clip_verifier(folder, cache)
        text, image = Counter(v.model.text_model), Counter(v.model.vision_model)
        rows = []
        for prompt in ("a photo of a cat", "a photo of a cat", "a dog"):
            t0, i0 = text.calls, image.calls
            random_search(w.generate, lambda b: v.score(b.samples, prompt), SHAPE, seed=0, count=n,
                          nfe_per_candidate=w.nfe_per_candidate, chunk_size=chunk, top_k=2)
            rows.append({"prompt": prompt, "text_tower_calls": text.calls - t0, "image_tower_calls": image.calls - i0})
        out[label] = {"searches": rows, "cache_hits": v.cache.hits, "cache_misses": v.cache.misses}
    out["config"] = {"N": n, "chunk_size": chunk, "scored_chunks_per_search": -(-n // chunk),
                     "verifier": "clip_score on a tiny random CLIP (tests/fixtures/verifiers_support.save_tiny_clip)"}
    first = out["cached"]["searches"]
    out["text_embeddings_once_per_prompt"] = (first[0]["text_tower_calls"] == 1 and first[1]["text_tower_calls"] == 0
                                              and first[2]["text_tower_calls"] == 1)
    return out


def oom_checks():
    from noise_search.samplers.noise_space import EDM
    from noise_search.samplers.ode import heun_step
    from noise_search.search.paths import path_search
    from noise_search.search.random_search import random_search
    from noise_search.toyworld.world import SHAPE, ToyWorld

    w = ToyWorld(3, steps=4, method="heun")
    sizes = []

    def flaky(candidates):
        sizes.append(len(candidates))
        if len(candidates) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return w.generate(candidates)

    ref = random_search(w.generate, w.score, SHAPE, seed=0, count=12, nfe_per_candidate=w.nfe_per_candidate, chunk_size=8)
    got = random_search(flaky, w.score, SHAPE, seed=0, count=12, nfe_per_candidate=w.nfe_per_candidate, chunk_size=8)
    rs = {"chunk_sizes_tried": sizes, "completed": got.completed, "candidates": len(got.history),
          "max_abs_score_diff_vs_uninterrupted": max(abs(a.score - b.score) for a, b in zip(got.history, ref.history))}
    psizes = []

    def den(x, a, b):
        psizes.append(x.shape[0])
        if x.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return heun_step(w.model, x, a, b)[0]

    kw = dict(seed=0, paths=2, width=3, start_step=1, forward_steps=1, backward_steps=2, step_nfe=w.step_nfe, decode=w.decode)
    pref = path_search(lambda x, a, b: heun_step(w.model, x, a, b)[0], w.score, SHAPE, w.sigmas, chunk_size=8, **kw, space=EDM)
    pgot = path_search(den, w.score, SHAPE, w.sigmas, chunk_size=8, **kw, space=EDM)
    ps = {"chunk_sizes_tried": sorted(set(psizes), reverse=True), "completed": pgot.completed, "candidates": len(pgot.history),
          "same_nfe": pgot.nfe == pref.nfe,
          "max_abs_score_diff_vs_uninterrupted": max(abs(a.score - b.score) for a, b in zip(pgot.history, pref.history))}
    return {"random_search": rs, "path_search": ps}


def comfy_phase(harness, root):
    from noise_search.nodes.verifier_nodes import host_verifier

    m = harness.sd15_world(root)
    v = tiny_clip_verifier(os.path.join(root, "tiny_clip"))
    hv = host_verifier(v, "clip_score", "tiny_clip", "default")  # ComfyUI's device (the CPU here), offloaded when idle
    text = Counter(v.model.text_model)
    with harness.load_models_gpu_calls(hv) as seq:
        out = harness.random_search_node(m, 16, 4, 2, 2, 4.0, class_id=-1, verifier=hv, prompt="a photo of a cat")()
    return {"config": {"node": "Random Search", "N": 16, "chunk_size": 4, "checkpoint": "tiny SD1.5", "verifier": "clip_score (tiny CLIP), device default"},
            "load_models_gpu_calls": seq,
            "verifier_loads": sum("verifier" in s for s in seq),
            "verifier_requested_with_diffusion_model": any("verifier" in s and "diffusion_model" in s for s in seq),
            "verifier_patcher": {"load_device": str(hv.patcher.load_device), "offload_device": str(hv.patcher.offload_device)},
            "text_tower_calls_in_node_run": text.calls, "candidates": len(json.loads(out.result[7])["candidates"]),
            "note": ("on a GPU, load_models_gpu([verifier]) first calls free_memory(verifier size * 1.1 + reserve, device) with "
                     "nothing kept loaded (comfy/model_management.py load_models_gpu), so when memory is short ComfyUI "
                     "offloads the diffusion model to fit the verifier, and the next chunk's sampling offloads the verifier; "
                     "on this CPU-only machine load_models_gpu skips free_memory, so the offloading itself is not exercised "
                     "here (tests/nodes/test_verifier_memory.py checks the calls and that neither model is pinned)")}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    import_pack()
    out = {"benchmark": "p4_verifier_phase", "context": context()}
    with tempfile.TemporaryDirectory() as root:
        out["text_embeddings"] = text_tower_calls(os.path.join(root, "tiny_clip"))
        out["oom"] = oom_checks()
        harness, why_not = host_harness()
        out["comfyui"] = comfy_phase(harness, root) if harness else {"skipped": why_not}
    emit(out)


if __name__ == "__main__":
    main()
