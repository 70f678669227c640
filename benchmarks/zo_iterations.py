"""Zero-order search: seconds per iteration at 10, 100, 1000 and 10,000 iterations (target: flat,
per-iteration(10,000) / per-iteration(100) <= 1.5).

After k iterations every neighbour is a recipe k links deep; the search holds the current pivot's noise,
so a new neighbour costs one sphere_neighbour whatever k is. An identity generator (the samples are the
noises) and a cheap scorer leave only the search's own work: making the noise, bookkeeping, top-K. Short
runs are repeated (about 2,000 iterations per size) and the median per-iteration time is reported; torch
runs on one thread so the figure does not depend on what else the machine is doing.

    python benchmarks/zo_iterations.py [--iterations 10 100 1000 10000]
"""

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _util import context, emit, import_pack, timed  # noqa: E402

SHAPE = (1, 4, 32, 32)
N = 2
TARGET = 1.5


def cheap_score(batch):
    return -batch.samples.flatten(1).abs().sum(1)


def per_iteration(zero_order_search, iterations):
    """Median seconds per iteration (wall, CPU) over repeated searches of ``iterations`` iterations."""
    reps = max(1, 2000 // iterations)
    wall, cpu = [], []
    for _ in range(reps):
        w, c, _ = timed(lambda: zero_order_search(lambda c: c.noise, cheap_score, SHAPE, seed=1, neighbours_per_iter=N,
                                                  iterations=iterations, lam=0.95, nfe_per_candidate=1, chunk_size=N))
        wall.append(w / iterations)
        cpu.append(c / iterations)
    return {"iterations": iterations, "repetitions": reps, "wall_s_per_iteration": statistics.median(wall),
            "cpu_s_per_iteration": statistics.median(cpu)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iterations", type=int, nargs="+", default=[10, 100, 1000, 10000])
    args = ap.parse_args()
    import_pack()
    import torch
    from noise_search.search.zero_order import zero_order_search

    torch.set_num_threads(1)
    per_iteration(zero_order_search, 10)  # warm-up
    rows = [per_iteration(zero_order_search, k) for k in args.iterations]
    by = {r["iterations"]: r for r in rows}
    out = {"benchmark": "zo_iterations", "shape": list(SHAPE), "neighbours_per_iter": N, "rows": rows,
           "target_ratio": TARGET, "context": context()}
    if 100 in by and 10000 in by:
        ratio = {k: by[10000][f"{k}_s_per_iteration"] / by[100][f"{k}_s_per_iteration"] for k in ("wall", "cpu")}
        out["ratio_10000_over_100"] = ratio
        out["pass"] = ratio["cpu"] <= TARGET
    emit(out)


if __name__ == "__main__":
    main()
