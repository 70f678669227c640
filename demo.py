"""The one-command demo: random, zero-order and path search on the embedded toy world.

For a chosen digit, each algorithm spends the same NFE budget on the class-conditional TrigFlow
teacher (or the distilled sCM student) and the classifier-logit verifier picks the best noise.
Writes per-algorithm grids of the ranked candidates (winner framed in gold), a score-vs-NFE
chart, and a JSON summary with every candidate's recipe and score.
"""

import json
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .search.paths import path_search, path_search_nfe, steps_from_times
from .search.random_search import random_search
from .search.report import candidate_grid, score_vs_nfe_plot
from .search.noise import MAX_SEED
from .search.result import SearchResult
from .search.zero_order import zero_order_search
from .samplers.schedules import sigma_to_rf_time

ALGORITHMS = ("random", "zero_order", "paths")


def add_parser(sub):
    p = sub.add_parser("demo", help="search over noise on the embedded toy world (8x8 digits)")
    p.add_argument("--digit", type=int, default=3, help="digit class 0-9 to generate (default 3)")
    p.add_argument("--budget", type=int, default=608, help="search NFE per algorithm (default 608 = 32 Heun-10 candidates)")
    p.add_argument("--algorithms", default=",".join(ALGORITHMS), help="comma-separated subset of random,zero_order,paths")
    p.add_argument("--steps", type=int, default=10, help="sampler steps per candidate (teacher: Heun steps; student: 1-4)")
    p.add_argument("--generator", choices=("teacher", "student"), default="teacher",
                   help="teacher = TrigFlow ODE (Heun); student = distilled sCM (use --steps 2)")
    p.add_argument("--seed", type=int, default=0, help="first seed of the candidate pool")
    p.add_argument("--neighbours", type=int, default=4, help="zero-order: neighbours per iteration (N)")
    p.add_argument("--lam", type=float, default=0.9, help="zero-order: cosine similarity of neighbours to the pivot, in (0, 1)")
    p.add_argument("--paths", type=int, default=2, help="search over paths: surviving paths (N)")
    p.add_argument("--chunk-size", type=int, default=16, help="candidates evaluated per batch")
    p.add_argument("--top-k", type=int, default=16, help="candidates shown in each grid (at most the candidates an algorithm keeps)")
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--resume", action="store_true",
                   help="continue runs interrupted with Ctrl-C from <out>/<algo>_interrupted.json: candidates already scored "
                        "are not generated again and the result equals an uninterrupted run's (random, zero_order; paths re-runs)")
    p.set_defaults(run=run)
    return p


def _check_args(args):
    algos = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    bad = [a for a in algos if a not in ALGORITHMS]
    if not algos or bad:
        raise SystemExit(f"--algorithms must be a comma-separated subset of {','.join(ALGORITHMS)}, got {args.algorithms!r}")
    if not (0 <= args.digit <= 9):
        raise SystemExit(f"--digit must be in [0, 9], got {args.digit}")
    if args.generator == "student" and not (1 <= args.steps <= 4):
        raise SystemExit(f"--steps must be in [1, 4] for the sCM student, got {args.steps}")
    for flag, value in (("--budget", args.budget), ("--steps", args.steps), ("--neighbours", args.neighbours),
                        ("--paths", args.paths), ("--chunk-size", args.chunk_size), ("--top-k", args.top_k)):
        if value < 1:
            raise SystemExit(f"{flag} must be an integer >= 1, got {value}")
    if not (0.0 < args.lam < 1.0):
        raise SystemExit(f"--lam (cosine similarity of neighbours to the pivot) must be in (0, 1), got {args.lam}")
    if not (0 <= args.seed <= MAX_SEED):
        raise SystemExit(f"--seed must be in [0, {MAX_SEED}], got {args.seed}")
    if args.generator == "student" and "paths" in algos:
        raise SystemExit("search over paths needs an ODE sampler: use --generator teacher, or drop paths from --algorithms")
    return algos


def _run_one(name, world, args, callbacks, resume_from=None):
    common = dict(chunk_size=args.chunk_size, cfg_multiplier=world.cfg_multiplier, **callbacks)
    nfe = world.nfe_per_candidate
    # the grid shows --top-k candidates, or all an algorithm keeps when it keeps fewer
    if name == "random":
        top_k = min(args.top_k, max(1, args.budget // nfe))
        return random_search(world.generate, world.score, world.shape, seed=args.seed, budget=args.budget, nfe_per_candidate=nfe,
                             top_k=top_k, resume_from=resume_from, **common)
    if name == "zero_order":
        n = max(1, args.neighbours)
        top_k = min(args.top_k, max(1, args.budget // (n * nfe) * n))
        return zero_order_search(world.generate, world.score, world.shape, seed=args.seed, neighbours_per_iter=args.neighbours,
                                 lam=args.lam, budget=args.budget, nfe_per_candidate=nfe, top_k=top_k, resume_from=resume_from, **common)
    start, df, db = steps_from_times(world.sigmas, 0.11, 0.78, 0.81, sigma_to_rf_time)
    kw = dict(paths=args.paths, start_step=start, forward_steps=df, backward_steps=db, step_nfe=world.step_nfe)
    width = 1
    while path_search_nfe(world.sigmas, width=width + 1, **kw) <= args.budget:
        width += 1
    if path_search_nfe(world.sigmas, width=width, **kw) > args.budget:
        raise SystemExit(f"--budget {args.budget} is below one round of search over paths "
                         f"({path_search_nfe(world.sigmas, width=1, **kw)} NFE with {args.paths} paths)")
    return path_search(world.denoise, world.score, world.shape, world.sigmas, seed=args.seed, width=width,
                       decode=world.decode, top_k=min(args.top_k, args.paths * width), **kw, **common)


def _write_result(out, name, result):
    top = result.top_k
    labels = [c.recipe.describe().split(" at iteration")[0][:18] for c in top]
    candidate_grid(result.top_k_samples["samples"], [c.score for c in top], labels, winner=0).save(out / f"{name}_grid.png")
    torch.save({"latents": result.top_k_samples["latents"][:1]}, out / f"{name}_winner.pt")


def _load_partial(out, name):
    """The interrupted run of ``name`` in ``out`` (JSON + its top-K samples), or None when there is none."""
    js, pt = out / f"{name}_interrupted.json", out / f"{name}_interrupted_topk.pt"
    if not js.exists():
        print(f"--resume: no {js.name} in {out}; running {name} in full")
        return None
    if not pt.exists():
        raise SystemExit(f"--resume: {js} has no {pt.name} beside it (the top-K samples); run without --resume")
    try:
        partial = SearchResult.from_dict(json.loads(js.read_text()), torch.load(pt, map_location="cpu", weights_only=True))
    except (ValueError, OSError, RuntimeError) as err:
        raise SystemExit(f"--resume: cannot read the interrupted {name} run in {out} ({err}); run without --resume") from err
    print(f"--resume: {name} continues after the {len(partial.history)} candidates scored in {js.name}")
    return partial


def run(args):
    from .toyworld.world import ToyWorld

    algos = _check_args(args)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    world = ToyWorld(args.digit, steps=args.steps, generator=args.generator)
    t0 = time.perf_counter()
    # baseline: one sample with no search, the same sampler
    baseline = world.score(world.generate(torch.randn(world.shape, generator=torch.Generator().manual_seed(args.seed)))).item()
    summary = {"digit": args.digit, "generator": args.generator, "steps": args.steps, "budget": args.budget,
               "nfe_per_candidate": world.nfe_per_candidate, "baseline_score": baseline, "verifier": world.verifier.describe(),
               "algorithms": {}}
    curves = {}
    bar = tqdm(total=len(algos), unit="algo", disable=args.quiet, desc="search")
    for name in algos:
        bar.set_description(name)

        def on_step(i, n, _bar=bar):
            _bar.set_postfix_str(f"{i}/{n} candidates")

        def on_interrupt(partial, _name=name):
            (out / f"{_name}_interrupted.json").write_text(partial.to_json(indent=1))
            info = {"algorithm": _name, "candidates": len(partial.history), "nfe": partial.nfe, "json": f"{_name}_interrupted.json"}
            if partial.top_k:
                _write_result(out, f"{_name}_interrupted", partial)
                torch.save(partial.top_k_samples, out / f"{_name}_interrupted_topk.pt")
                info.update(best_score=partial.winner.score, best_recipe=partial.winner.to_dict()["recipe"],
                            grid=f"{_name}_interrupted_grid.png")
                msg = f"best so far of {_name} ({len(partial.history)} candidates, score {partial.winner.score:.4f}) saved to " \
                      f"{out / (_name + '_interrupted_grid.png')}"
            else:  # search over paths before its final round: only intermediate x0 predictions were scored
                msg = f"{_name} had no final candidate yet ({len(partial.history)} intermediate scores saved to " \
                      f"{out / (_name + '_interrupted.json')})"
            summary["interrupted"] = info
            (out / "summary.json").write_text(json.dumps(summary, indent=1))
            print(f"\ninterrupted: {msg}" + ("; re-run with --resume to continue" if _name != "paths" else ""), flush=True)

        partial = _load_partial(out, name) if args.resume and name != "paths" else None
        t = time.perf_counter()
        result = _run_one(name, world, args, {"on_step": on_step, "on_interrupt": on_interrupt}, resume_from=partial)
        if partial is not None:  # the interrupted files are superseded by the full result
            for f in ("_interrupted.json", "_interrupted_topk.pt", "_interrupted_grid.png", "_interrupted_winner.pt"):
                (out / f"{name}{f}").unlink(missing_ok=True)
        _write_result(out, name, result)
        curves[name] = result.curve()
        d = result.to_dict()
        d["seconds"] = round(time.perf_counter() - t, 3)
        summary["algorithms"][name] = d
        bar.update(1)
    bar.close()
    title = f"digit {args.digit}: best classifier logit vs search NFE ({args.generator})"
    score_vs_nfe_plot(curves, title=title, baseline=baseline).save(out / "score_vs_nfe.png")
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    for name in algos:
        w = summary["algorithms"][name]["winner"]
        print(f"{name:>10}: winner score {w['score']:.4f} after {summary['algorithms'][name]['nfe']} NFE  ({w['recipe']['kind']})")
    print(f"no search: score {baseline:.4f}; wrote {out}/ (grids, score_vs_nfe.png, summary.json) in {summary['seconds']:.1f} s")
    return 0
