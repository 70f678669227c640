"""Shared helpers of the benchmark scripts: import the pack from the repository root, interleaved
A/B timing with medians (wall clock and process CPU time), JSON output with the machine's context."""

import importlib.util
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def import_pack():
    """Make ``import noise_search`` work from a plain checkout (as tests/conftest.py does)."""
    if "noise_search" not in sys.modules:
        try:
            import noise_search  # noqa: F401 - an installed (editable) pack
        except ImportError:
            spec = importlib.util.spec_from_file_location("noise_search", ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
            module = importlib.util.module_from_spec(spec)
            sys.modules["noise_search"] = module
            spec.loader.exec_module(module)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    return sys.modules["noise_search"]


def host_harness():
    """The ComfyUI harness of the node tests (tests/nodes/host_harness.py) with ComfyUI imported from
    COMFYUI_PATH on the CPU: ``(harness, None)``, or ``(None, why not)``. Benchmarks touch the host only through it."""
    nodes_tests = str(ROOT / "tests" / "nodes")
    if nodes_tests not in sys.path:
        sys.path.insert(0, nodes_tests)
    import host_harness

    reason = host_harness.import_comfy(os.environ.get("COMFYUI_PATH"))
    return (None, reason) if reason else (host_harness, None)


def timed(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w0, time.process_time() - c0, out


def interleave(fns, reps, warmup=1):
    """Run every callable of ``fns`` (name -> fn) ``reps`` times, interleaved A, B, A, B (warm-up runs
    discarded). Returns {name: {"wall": [...], "cpu": [...]}}."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    out = {k: {"wall": [], "cpu": []} for k in fns}
    for r in range(reps):
        names = list(fns) if r % 2 == 0 else list(fns)[::-1]  # A B, B A, ...: no fixed order effect
        for k in names:
            w, c, _ = timed(fns[k])
            out[k]["wall"].append(w)
            out[k]["cpu"].append(c)
    return out


def ratio_stats(times, a, b):
    """Ratio a / b of the medians and the median of per-repetition ratios, for wall and CPU time, with a
    noise figure (relative spread: (p90 - p10) / median of the per-repetition ratios)."""
    res = {}
    for kind in ("wall", "cpu"):
        ta, tb = times[a][kind], times[b][kind]
        per = sorted(x / y for x, y in zip(ta, tb))
        n = len(per)
        lo, hi = per[int(0.1 * (n - 1))], per[int(round(0.9 * (n - 1)))]
        res[kind] = {"ratio_of_medians": statistics.median(ta) / statistics.median(tb),
                     "median_of_ratios": statistics.median(per),
                     "p10_p90": [lo, hi],
                     f"median_s_{a}": statistics.median(ta), f"median_s_{b}": statistics.median(tb)}
    return res


def context():
    import torch
    return {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
            "loadavg_1m": os.getloadavg()[0], "python": sys.version.split()[0]}


def emit(obj):
    json.dump(obj, sys.stdout, indent=2, default=float)
    sys.stdout.write("\n")
