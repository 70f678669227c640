"""P2: batched against batch-1 sequential evaluation of N = 16 candidates, on the CPU.

The same random search (same candidates, same model calls per candidate) with chunk_size = N (one batch)
and chunk_size = 1 (one candidate at a time), interleaved repetitions, one torch thread by default;
speedup = time(batch 1) / time(batched), from medians of wall and process CPU time.

* toy world: ToyWorld teacher, Heun 10 steps (19 NFE), classifier-logit verifier;
* ComfyUI (when COMFYUI_PATH is set): tiny random SD1.5 checkpoint through the search node's adapters,
  euler 3 steps, cfg 4 (cond + uncond batched), 8x8 latent, TorchScript classifier verifier.

The GPU target (>= 3x) cannot be measured here: ``"gpu": null``.

    python benchmarks/p2_batching.py
    COMFYUI_PATH=~/comfyui ~/cvenv/bin/python benchmarks/p2_batching.py
"""

import argparse
import os
import statistics
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _util import host_harness, context, emit, import_pack, interleave  # noqa: E402


def speedup(t, seq="batch_1", bat="batched"):
    out = {}
    for kind in ("wall", "cpu"):
        per = sorted(a / b for a, b in zip(t[seq][kind], t[bat][kind]))
        out[kind] = {"speedup_of_medians": statistics.median(t[seq][kind]) / statistics.median(t[bat][kind]),
                     "median_of_ratios": statistics.median(per), "min_max": [per[0], per[-1]],
                     f"median_s_{seq}": statistics.median(t[seq][kind]), f"median_s_{bat}": statistics.median(t[bat][kind]),
                     "per_candidate_ms": {seq: 1e3 * statistics.median(t[seq][kind]) / N, bat: 1e3 * statistics.median(t[bat][kind]) / N}}
    return out


N = 16


def bench_toy(reps):
    from noise_search.search.random_search import random_search
    from noise_search.toyworld.world import SHAPE, ToyWorld

    w = ToyWorld(3, steps=10, method="heun")

    def run(chunk):
        return lambda: random_search(w.generate, w.score, SHAPE, seed=0, count=N, nfe_per_candidate=w.nfe_per_candidate,
                                     chunk_size=chunk, top_k=4)
    a, b = run(N)(), run(1)()
    diff = max(abs(x.score - y.score) for x, y in zip(a.history, b.history))
    t = interleave({"batched": run(N), "batch_1": run(1)}, reps)
    return {"config": {"N": N, "sampler": "heun 10 steps (19 NFE)", "reps": reps}, "speedup": speedup(t),
            "max_abs_score_diff_batched_vs_batch_1": diff}


def bench_comfy(harness, reps):
    with tempfile.TemporaryDirectory() as root:
        m = harness.sd15_world(root)
        batched = harness.adapter_search(m, N, N, 4, 3, 4.0)
        single = harness.adapter_search(m, N, 1, 4, 3, 4.0)
        a, b = batched(), single()
        diff = max(abs(x.score - y.score) for x, y in zip(a.history, b.history))
        t = interleave({"batched": batched, "batch_1": single}, reps)
    return {"config": {"checkpoint": "tiny SD1.5 (random weights)", "latent": "1x4x8x8", "N": N, "sampler": "euler/normal 3 steps",
                       "cfg": 4.0, "reps": reps}, "speedup": speedup(t), "max_abs_score_diff_batched_vs_batch_1": diff}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--comfy-reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    import_pack()
    out = {"benchmark": "p2_batching", "context": context(), "toy_world": bench_toy(args.reps)}
    harness, why_not = host_harness()
    out["comfyui"] = bench_comfy(harness, args.comfy_reps) if harness else {"skipped": why_not}
    out["gpu"] = None
    out["gpu_note"] = ("target: batched >= 3x batch-1 on a GPU; not measurable here (no GPU in this task). Run this script on a "
                       "CUDA machine with a real checkpoint to measure it; CPU speedups are bounded by the CPU's compute, "
                       "a GPU's by its idle time at batch 1.")
    emit(out)


if __name__ == "__main__":
    main()
