"""P1: overhead of a search over the model calls it must make.

A random search over N candidates (chunked generate + score, top-K kept) is timed against the same work
written by hand: the same seeded noises, the same chunk size, the same batched sampling, decoding and
scoring calls, and a top-K kept with ``torch.topk``. Repetitions are interleaved (A B B A ...), both with
one torch thread; the ratio search / hand is reported for wall time and process CPU time (medians, with
the 10th-90th percentile of per-repetition ratios as the noise), and decomposed: the time spent inside
the model calls (network, decoder, verifier: timed by wrappers in both loops) is the same work, so
``1 + (outside_search - outside_hand) / total_hand`` is the overhead with the model noise removed; the target
is judged on this decomposed CPU ratio (on a shared 2-core machine the raw ratio of identical work swings by
+-10 % between runs).

* toy world (always): ToyWorld teacher, Heun, classifier-logit verifier;
* null world (always): generate/score that do almost nothing, giving the core's own cost per candidate;
* ComfyUI (when COMFYUI_PATH is set; run with a ComfyUI-capable python): tiny random SD1.5 checkpoint,
  the search node's adapters (``SamplingSetup`` + ``Generator`` + ``Scorer``) against a hand loop over
  ``comfy.sample.sample`` + ``vae.decode`` + the verifier.

    python benchmarks/p1_overhead.py
    COMFYUI_PATH=~/comfyui ~/cvenv/bin/python benchmarks/p1_overhead.py

Prints JSON. Target: ratio <= 1.03.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _util import host_harness, context, emit, import_pack, interleave, ratio_stats  # noqa: E402

TARGET = 1.03


class WorkTimer:
    """Accumulates process CPU and wall time spent inside wrapped callables (the model work)."""

    def __init__(self):
        self.cpu = self.wall = 0.0
        self.depth = 0

    def reset(self):
        self.cpu = self.wall = 0.0

    def wrap(self, fn):
        def timed(*a, **k):
            if self.depth:
                return fn(*a, **k)
            self.depth += 1
            w0, c0 = time.perf_counter(), time.process_time()
            try:
                return fn(*a, **k)
            finally:
                self.wall += time.perf_counter() - w0
                self.cpu += time.process_time() - c0
                self.depth -= 1
        return timed


def run_pair(fns, timer, reps):
    """Interleaved repetitions; each records total and inside-model time (wall and CPU)."""
    rec = {k: {"wall": [], "cpu": [], "in_wall": [], "in_cpu": []} for k in fns}
    for fn in fns.values():  # warm-up
        fn()
    for r in range(reps):
        for k in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
            timer.reset()
            w0, c0 = time.perf_counter(), time.process_time()
            fns[k]()
            rec[k]["wall"].append(time.perf_counter() - w0)
            rec[k]["cpu"].append(time.process_time() - c0)
            rec[k]["in_wall"].append(timer.wall)
            rec[k]["in_cpu"].append(timer.cpu)
    return rec


def summarise(rec, a="search", b="hand"):
    out = ratio_stats(rec, a, b)
    for kind in ("wall", "cpu"):
        outside = {k: statistics.median(t - i for t, i in zip(rec[k][kind], rec[k]["in_" + kind])) for k in (a, b)}
        total_b = statistics.median(rec[b][kind])
        out[kind]["outside_model_s"] = outside
        out[kind]["inside_model_s"] = {k: statistics.median(rec[k]["in_" + kind]) for k in (a, b)}
        out[kind]["ratio_decomposed"] = 1.0 + (outside[a] - outside[b]) / total_b
    # judged on the decomposed CPU ratio (the model work is the same calls on the same inputs in both loops, so
    # only the time outside it can differ); the raw ratio is reported with its noise band
    out["met"] = out["cpu"]["ratio_decomposed"] <= TARGET
    out["raw_ratio_within_noise_of_target"] = out["cpu"]["p10_p90"][0] <= TARGET
    return out


def topk_keep(best, scores, images, latents, k):
    if best is not None:
        scores, images, latents = torch.cat([best[0], scores]), torch.cat([best[1], images]), torch.cat([best[2], latents])
    top = torch.topk(scores, min(k, len(scores))).indices
    return scores[top], images[top], latents[top]


# ----------------------------------------------------------------------------------------------- toy world

def bench_toy(n, chunk, top_k, steps, reps):
    from noise_search.samplers.ode import STEPS
    from noise_search.search.noise import seed_noise
    from noise_search.search.random_search import random_search
    from noise_search.toyworld.world import SHAPE, ToyWorld, to_images

    timer = WorkTimer()
    w = ToyWorld(3, steps=steps, method="heun")
    model = w.model
    w.model = timer.wrap(model)  # the instance attribute: world.generate and the hand loop both call it
    w.verifier.score = timer.wrap(w.verifier.score)
    sig, step = w.sigmas.tolist(), STEPS[w.method]

    def search():
        return random_search(w.generate, w.score, SHAPE, seed=0, count=n, nfe_per_candidate=w.nfe_per_candidate,
                             chunk_size=chunk, top_k=top_k)

    @torch.no_grad()
    def hand():
        best = None
        for c0 in range(0, n, chunk):
            noise = torch.cat([seed_noise(s, SHAPE) for s in range(c0, min(n, c0 + chunk))])
            x = noise * sig[0]
            for i in range(len(sig) - 1):
                x, _ = step(w.model, x, sig[i], sig[i + 1])
            images = to_images(x)
            best = topk_keep(best, w.verifier.score(images, w.digit), images, x, top_k)
        return best

    r, h = search(), hand()
    same = [c.score for c in r.top_k] == h[0].tolist() and torch.equal(r.top_k_samples["samples"], h[1])
    w.model_calls = 0
    search()
    calls_search = w.model_calls
    w.model_calls = 0
    hand()
    calls_hand = w.model_calls
    rec = run_pair({"search": search, "hand": hand}, timer, reps)
    out = summarise(rec)
    out.update({"config": {"N": n, "chunk_size": chunk, "top_k": top_k, "sampler": f"heun {steps} steps",
                           "nfe_per_candidate": w.nfe_per_candidate, "reps": reps},
                "same_top_k_as_hand": bool(same), "model_calls": {"search": calls_search, "hand": calls_hand}})
    return out


def bench_null(n, chunk, top_k, reps):
    """The core's own cost: generate / score do almost nothing, so the difference is pure overhead."""
    from noise_search.search.evaluate import Batch
    from noise_search.search.noise import seed_noise
    from noise_search.search.random_search import random_search

    shape = (1, 4, 8, 8)

    def generate(candidates):
        noise = candidates.noise
        return Batch(noise, {"latent": noise})

    def score(batch):
        return batch.samples.flatten(1).mean(1)

    def search():
        return random_search(generate, score, shape, seed=0, count=n, nfe_per_candidate=1, chunk_size=chunk, top_k=top_k)

    def hand():
        best = None
        for c0 in range(0, n, chunk):
            noise = torch.cat([seed_noise(s, shape) for s in range(c0, min(n, c0 + chunk))])
            best = topk_keep(best, noise.flatten(1).mean(1), noise, noise, top_k)
        return best

    t = interleave({"search": search, "hand": hand}, reps)
    per = {k: statistics.median(t[k]["cpu"]) / n * 1e6 for k in t}
    return {"config": {"N": n, "chunk_size": chunk, "top_k": top_k, "reps": reps},
            "cpu_us_per_candidate": per, "core_overhead_us_per_candidate": per["search"] - per["hand"]}


# ----------------------------------------------------------------------------------------------- ComfyUI

def bench_comfy(harness, n, chunk, top_k, steps, cfg, reps, with_node):
    timer = WorkTimer()
    with tempfile.TemporaryDirectory() as root:
        t0 = time.perf_counter()
        m = harness.sd15_world(root)
        setup_s = time.perf_counter() - t0
        unet = m["model"].model.diffusion_model
        state = {}

        def pre(mod, args):
            if not timer.depth:
                state["t"] = (time.perf_counter(), time.process_time())
            timer.depth += 1

        def post(mod, args, out):
            timer.depth -= 1
            if not timer.depth:
                w0, c0 = state.pop("t")
                timer.wall += time.perf_counter() - w0
                timer.cpu += time.process_time() - c0

        hooks = [unet.register_forward_pre_hook(pre), unet.register_forward_hook(post)]
        m["vae"].decode = timer.wrap(m["vae"].decode)
        m["verifier"].verifier.score = timer.wrap(m["verifier"].verifier.score)
        search = harness.adapter_search(m, n, chunk, top_k, steps, cfg)
        hand = harness.hand_search(m, n, chunk, top_k, steps, cfg, keep=topk_keep)
        r, h = search(), hand()
        diff = float((r.top_k_samples["samples"] - h[1]).abs().max())
        score_diff = max(abs(c.score - float(x)) for c, x in zip(r.top_k, h[0]))
        fns = {"search": search, "hand": hand}
        if with_node:
            fns["node"] = harness.random_search_node(m, n, chunk, top_k, steps, cfg)
        rec = run_pair(fns, timer, reps)
        for hk in hooks:
            hk.remove()
    out = summarise(rec)
    if with_node:
        node = summarise(rec, "node", "hand")
        out["node_vs_hand"] = {"cpu_median_of_ratios": node["cpu"]["median_of_ratios"], "wall_median_of_ratios": node["wall"]["median_of_ratios"],
                               "cpu_ratio_decomposed": node["cpu"]["ratio_decomposed"],
                               "note": "the full node also renders a calibration candidate at batch 1 (NFE measurement, bit-exact "
                                       "winner), re-renders the winner at batch 1 unless it is that candidate, and draws the "
                                       "plot / saves previews: extra model calls by design, not overhead of the search loop"}
    out.update({"config": {"checkpoint": "tiny SD1.5 (random weights, tests/nodes/tiny_models.py)", "latent": "1x4x8x8 (64 px)",
                           "N": n, "chunk_size": chunk, "top_k": top_k, "sampler": f"euler/normal {steps} steps", "cfg": cfg,
                           "verifier": "TorchScript 10-class CNN (classifier)", "reps": reps, "setup_s": setup_s},
                "max_abs_diff_vs_hand": {"top_k_images": diff, "top_k_scores": score_diff}})
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=15, help="interleaved repetitions per variant (toy world)")
    ap.add_argument("--comfy-reps", type=int, default=6, help="interleaved repetitions per variant (ComfyUI)")
    ap.add_argument("--n", type=int, default=64, help="candidates N (toy world)")
    ap.add_argument("--comfy-n", type=int, default=8, help="candidates N (ComfyUI)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-node", action="store_true", help="skip timing the full RandomSearch node")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    import_pack()
    out = {"benchmark": "p1_overhead", "target": f"search / hand <= {TARGET}", "context": context()}
    out["toy_world"] = bench_toy(args.n, 8, 4, 10, args.reps)
    out["null_world"] = bench_null(1024, 8, 4, 7)
    harness, why_not = host_harness()
    out["comfyui"] = bench_comfy(harness, args.comfy_n, 4, 4, 3, 4.0, args.comfy_reps, not args.no_node) if harness else {"skipped": why_not}
    emit(out)


if __name__ == "__main__":
    main()
