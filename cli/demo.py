"""The one-command demo: random, zero-order and path search on the embedded toy world (and, when named in
--algorithms, the searches beyond the paper: FK steering, evolutionary search, early pruning).

For a chosen digit, each algorithm spends the same NFE budget on the class-conditional TrigFlow
teacher (or the distilled sCM student) and the classifier-logit verifier picks the best noise.
Writes per-algorithm grids of the ranked candidates (winner framed in gold), a score-vs-NFE
chart, and a JSON summary with every candidate's recipe and score.

torch and the search code are imported inside ``run``: ``demo --help`` and argument errors answer at once.
"""

import json
import time
from pathlib import Path

from . import UsageError, output_folder

ALGORITHMS = ("random", "zero_order", "paths")  # as toyworld/search.py runs them (not imported here: no torch for --help)
BEYOND = ("fk", "evolution", "pruning")  # toyworld/beyond.py's: run only when --algorithms names them
CHOICES = ALGORITHMS + BEYOND
STEPWISE = ("paths", "fk", "pruning")  # they step the teacher's ODE: not with the sCM student
NO_RESUME = ("paths", "fk", "pruning")  # an interrupted run of these re-runs (no --resume)
DEFAULT_STEPS = {"teacher": 10, "student": 2}  # Heun-10 (19 NFE); the student was distilled for 2 steps
PACK_ROOT = Path(__file__).resolve().parents[1]

# Every file the demo writes into --out ("{}" = an algorithm): a new run removes the earlier run's, and only these.
RUN_FILES = ("summary.json", "score_vs_nfe.png")
RESULT_FILES = ("{}_grid.png", "{}_winner.pt")
INTERRUPTED_FILES = ("{}_interrupted.json", "{}_interrupted_topk.pt", "{}_interrupted_grid.png", "{}_interrupted_winner.pt")
RESUME_INPUTS = INTERRUPTED_FILES[:2]  # what --resume reads back


def add_parser(sub):
    p = sub.add_parser("demo", description="Search over noise on the embedded toy world (8x8 digits): random, zero-order\n"
                                           "and path search at the same NFE budget, scored by the digit classifier.")
    p.add_argument("--digit", type=int, default=3, help="digit class 0-9 to generate (default 3)")
    p.add_argument("--budget", type=int, default=608, help="search NFE per algorithm (default 608 = 32 Heun-10 candidates)")
    p.add_argument("--algorithms", default=None,
                   help="comma-separated subset of random,zero_order,paths,fk,evolution,pruning (default: random,zero_order,"
                        "paths; with --generator student random,zero_order, as search over paths needs an ODE sampler; "
                        "fk, evolution and pruning, the searches beyond the paper, run when named here)")
    p.add_argument("--steps", type=int, default=None,
                   help="sampler steps per candidate (default: teacher 10 Heun steps; student 2, of 1-4)")
    p.add_argument("--generator", choices=("teacher", "student"), default="teacher",
                   help="teacher = TrigFlow ODE (Heun); student = distilled sCM (1-4 steps)")
    p.add_argument("--seed", type=int, default=0, help="first seed of the candidate pool")
    p.add_argument("--neighbours", type=int, default=4, help="zero-order: neighbours per iteration (N)")
    p.add_argument("--lam", type=float, default=0.9, help="zero-order: cosine similarity of neighbours to the pivot, in (0, 1)")
    p.add_argument("--paths", type=int, default=2, help="search over paths: surviving paths (N)")
    p.add_argument("--chunk-size", type=int, default=16, help="candidates evaluated per batch")
    p.add_argument("--top-k", type=int, default=16, help="candidates shown in each grid (at most the candidates an algorithm keeps)")
    p.add_argument("--out", default="demo_out",
                   help="output folder (default demo_out); the files of an earlier demo run there are replaced, other files kept")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--resume", action="store_true",
                   help="continue runs interrupted with Ctrl-C from <out>/<algo>_interrupted.json: candidates already scored "
                        "are not generated again and the result equals an uninterrupted run's (random, zero_order, evolution; "
                        "paths, fk and pruning re-run)")
    p.set_defaults(run=run)
    return p


def _algorithms(args):
    """The algorithms to run. By default all three, but search over paths only with the teacher: it re-noises
    and re-integrates an ODE trajectory, which the sCM student's sampler does not have. Asked for explicitly with
    the student, paths is an error rather than silently dropped."""
    if args.algorithms is None:
        return [a for a in ALGORITHMS if not (a == "paths" and args.generator == "student")]
    algos = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    bad = [a for a in algos if a not in CHOICES]
    if not algos or bad:
        raise UsageError(f"--algorithms must be a comma-separated subset of {','.join(CHOICES)}, got {args.algorithms!r}")
    twice = sorted({a for a in algos if algos.count(a) > 1})
    if twice:
        raise UsageError(f"--algorithms names {', '.join(twice)} more than once (got {args.algorithms!r}); "
                         f"give each of {','.join(CHOICES)} at most once")
    stepwise = [a for a in algos if a in STEPWISE]
    if args.generator == "student" and stepwise:
        names = ",".join(stepwise)
        raise UsageError(f"--algorithms {names} need{'s' if len(stepwise) == 1 else ''} an ODE sampler: use --generator "
                         f"teacher, or drop {names} from --algorithms (the default for the student is random,zero_order)")
    return algos


def _check_args(args):
    """Validate every argument that needs no model, and fill in the generator's default --steps; -> algorithms."""
    from ..search.noise import MAX_SEED

    if not (0 <= args.digit <= 9):
        raise UsageError(f"--digit must be in [0, 9], got {args.digit}")
    if args.steps is None:
        args.steps = DEFAULT_STEPS[args.generator]
    if args.generator == "student" and not (1 <= args.steps <= 4):
        raise UsageError(f"--steps must be in [1, 4] for the sCM student, got {args.steps}")
    for flag, value in (("--budget", args.budget), ("--steps", args.steps), ("--neighbours", args.neighbours),
                        ("--paths", args.paths), ("--chunk-size", args.chunk_size), ("--top-k", args.top_k)):
        if value < 1:
            raise UsageError(f"{flag} must be an integer >= 1, got {value}")
    if not (0.0 < args.lam < 1.0):
        raise UsageError(f"--lam (cosine similarity of neighbours to the pivot) must be in (0, 1), got {args.lam}")
    if not (0 <= args.seed <= MAX_SEED):
        raise UsageError(f"--seed must be in [0, {MAX_SEED}], got {args.seed}")
    return _algorithms(args)


def _min_budget(name, world, args):
    """(NFE, what it pays for): the smallest --budget with which algorithm ``name`` can run at all."""
    from ..search.paths import path_search_nfe
    from ..toyworld.search import path_plan

    nfe = world.nfe_per_candidate
    if name in BEYOND:
        from ..toyworld.beyond import min_budget

        return min_budget(world, name)
    if name == "random":
        return nfe, f"one candidate ({nfe} NFE: {args.generator}, {args.steps} steps)"
    if name == "zero_order":
        return args.neighbours * nfe, f"one zero-order iteration (--neighbours {args.neighbours} x {nfe} NFE)"
    need = path_search_nfe(world.sigmas, width=1, paths=args.paths, step_nfe=world.step_nfe, **path_plan(world.sigmas))
    return need, f"one round of search over paths with --paths {args.paths} ({need} NFE)"


def _check_budget(args, world, algos):
    """--budget must pay for the smallest unit of every chosen algorithm: checked before the first one runs,
    so a budget too small for the last algorithm does not fail after the others have spent minutes."""
    needs = {name: _min_budget(name, world, args) for name in algos}
    short = [(need, name, what) for name, (need, what) in needs.items() if args.budget < need]
    if short:
        need, name, what = max(short)
        everything = max(n for n, _ in needs.values())
        raise UsageError(f"--budget {args.budget} is below {what} for {name}; give --budget >= {everything}"
                         + (f" to run {','.join(algos)}" if len(algos) > 1 else ""))


def _clear_earlier_run(out, keep=()):
    """Remove what an earlier demo run wrote into ``out``: only the demo's own file names (RUN_FILES, RESULT_FILES,
    INTERRUPTED_FILES), never anything else kept there, so the folder shows this run's results alone.
    ``keep``: names to leave (the interrupted runs --resume continues). Returns the names removed."""
    names = list(RUN_FILES) + [f.format(a) for a in CHOICES for f in RESULT_FILES + INTERRUPTED_FILES]
    removed = []
    for name in names:
        if name not in keep and (out / name).is_file():
            (out / name).unlink()
            removed.append(name)
    return removed


def _resume_inputs(args, algos):
    """The files --resume reads back (the interrupted random / zero-order runs): kept by the clean-up."""
    if not args.resume:
        return ()
    return {f.format(a) for a in algos if a not in NO_RESUME for f in RESUME_INPUTS}


def _run_one(name, world, args, callbacks, resume_from=None):
    """One algorithm at --budget NFE. The grid shows --top-k candidates, or all an algorithm keeps when it keeps
    fewer; search over paths takes as many re-noisings per path as the budget pays for (_check_budget made sure of one)."""
    from ..toyworld.search import run_search

    return run_search(world, name, seed=args.seed, budget=args.budget, top_k=args.top_k, chunk_size=args.chunk_size,
                      neighbours=args.neighbours, lam=args.lam, paths=args.paths, resume_from=resume_from, **callbacks)


def _write_result(out, name, result):
    import torch

    from ..search.evaluate import LATENT
    from ..search.report import candidate_grid, candidate_label

    top = result.top_k
    labels = [candidate_label(c.recipe) for c in top]
    candidate_grid(result.top_k_samples["samples"], [c.score for c in top], labels, winner=0).save(out / f"{name}_grid.png")
    # the winner file keeps its own key, "latents", whatever the key inside the search
    torch.save({"latents": result.top_k_samples[LATENT][:1]}, out / f"{name}_winner.pt")


def _write_summary(out, summary):
    (out / "summary.json").write_text(json.dumps(summary, indent=1))


def _load_partial(out, name):
    """The interrupted run of ``name`` in ``out`` (JSON + its top-K samples), or None when there is none."""
    import torch

    from ..search.evaluate import LATENT
    from ..search.result import SearchResult

    js, pt = out / f"{name}_interrupted.json", out / f"{name}_interrupted_topk.pt"
    if not js.exists():
        print(f"--resume: no {js.name} in {out}; running {name} in full")
        return None
    if not pt.exists():
        raise UsageError(f"--resume: {js} has no {pt.name} beside it (the top-K samples); run without --resume")
    try:
        samples = torch.load(pt, map_location="cpu", weights_only=True)
        if isinstance(samples, dict) and "latents" in samples and LATENT not in samples:  # saved before the key was LATENT
            samples[LATENT] = samples.pop("latents")
        partial = SearchResult.from_dict(json.loads(js.read_text()), samples)
    except (ValueError, OSError, RuntimeError) as err:
        raise UsageError(f"--resume: cannot read the interrupted {name} run in {out} ({err}); run without --resume") from err
    print(f"--resume: {name} continues after the {len(partial.history)} candidates scored in {js.name}")
    return partial


def _verifier_summary(world):
    """The verifier as summary.json records it, with the weights file it really loaded (the toy world names it
    'toyworld/classifier'), relative to the pack when inside it so the summary is the same on every machine."""
    info = dict(world.verifier.describe())
    path = getattr(getattr(world.verifier, "model", None), "weights_path", None)
    if path is not None:
        path = Path(path).resolve()
        info["weights"] = path.relative_to(PACK_ROOT).as_posix() if path.is_relative_to(PACK_ROOT) else str(path)
    return info


def _say_nothing_scored(out, summary, name):
    """Ctrl-C before ``name`` scored its first candidate (None: before any search began, e.g. while the models
    load). The search had nothing to hand to its interrupt handler, so say truthfully that nothing of it was
    saved, and keep the results of the algorithms that finished before it."""
    done = list(summary["algorithms"])
    what = f"{name} had scored no candidate yet, so nothing of it was saved" if name else \
        "no candidate was scored yet, so nothing was saved"
    if done:
        summary["interrupted"] = {"algorithm": name, "candidates": 0, "nfe": 0}
        _write_summary(out, summary)
        what += f"; the finished {', '.join(done)} results are in {out} (summary.json and grids)"
    print(f"\ninterrupted: {what}", flush=True)


def run(args):
    import torch
    from tqdm.auto import tqdm

    from ..search.candidates import Candidates
    from ..search.noise import SeedRecipe
    from ..search.report import score_vs_nfe_plot
    from ..toyworld.world import ToyWorld

    algos = _check_args(args)
    out = output_folder(args.out)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    summary = {"algorithms": {}}  # filled in once the world is loaded
    # accounted: the algorithms whose state on disk is already told (finished, or saved by on_interrupt)
    accounted, current = set(), None
    try:
        world = ToyWorld(args.digit, steps=args.steps, generator=args.generator)
        _check_budget(args, world, algos)
        removed = _clear_earlier_run(out, keep=_resume_inputs(args, algos))
        if removed:
            print(f"removed {len(removed)} files of an earlier demo run from {out}")
        if args.algorithms is None and len(algos) < len(ALGORITHMS):
            print(f"note: search over paths needs an ODE sampler, which the sCM student has not: running {','.join(algos)} "
                  "(--generator teacher runs all three)")
        t0 = time.perf_counter()
        # baseline: one sample with no search (the candidate of --seed), the same sampler
        baseline = world.score(world.generate(Candidates.of([SeedRecipe(args.seed)], world.shape))).item()
        summary = {"digit": args.digit, "generator": args.generator, "steps": args.steps, "budget": args.budget,
                   "nfe_per_candidate": world.nfe_per_candidate, "baseline_score": baseline, "verifier": _verifier_summary(world),
                   "algorithms": {}}
        curves = {}
        bar = tqdm(total=len(algos), unit="algo", disable=args.quiet, desc="search")
        for name in algos:
            current = name
            bar.set_description(name)

            def on_step(i, n, _bar=bar):
                _bar.set_postfix_str(f"{i}/{n} candidates")

            def on_interrupt(partial, _name=name):
                accounted.add(_name)
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
                _write_summary(out, summary)
                print(f"\ninterrupted: {msg}" + ("; re-run with --resume to continue" if _name not in NO_RESUME else ""), flush=True)

            partial = _load_partial(out, name) if args.resume and name not in NO_RESUME else None
            t = time.perf_counter()
            result = _run_one(name, world, args, {"on_step": on_step, "on_interrupt": on_interrupt}, resume_from=partial)
            accounted.add(name)
            if partial is not None:  # the interrupted files are superseded by the full result
                for f in INTERRUPTED_FILES:
                    (out / f.format(name)).unlink(missing_ok=True)
            _write_result(out, name, result)
            curves[name] = result.curve()
            d = result.to_dict()
            d["seconds"] = round(time.perf_counter() - t, 3)
            summary["algorithms"][name] = d
            bar.update(1)
        bar.close()
    except KeyboardInterrupt:
        if current not in accounted:
            _say_nothing_scored(out, summary, current)
        raise
    title = f"digit {args.digit}: best classifier logit vs search NFE ({args.generator}, {args.steps} steps)"
    score_vs_nfe_plot(curves, title=title, baseline=baseline, y_label="best classifier logit").save(out / "score_vs_nfe.png")
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    _write_summary(out, summary)
    for name in algos:
        w = summary["algorithms"][name]["winner"]
        print(f"{name:>10}: winner score {w['score']:.4f} after {summary['algorithms'][name]['nfe']} NFE  ({w['recipe']['kind']})")
    print(f"no search: score {baseline:.4f}; wrote {out}/ (grids, score_vs_nfe.png, summary.json) in {summary['seconds']:.1f} s")
    return 0
