"""F5, beyond the paper: the three searches of ``toyworld/beyond.py`` (FK steering, evolutionary search, early
pruning) next to the paper's three (random, zero-order ZO-4, paths Paths-2) on F1's and F2's protocols.

- Curve (F1's protocol): the winner's classifier logit, mean +- se over the F1 searches (digits 0-9 x seeds 0-3,
  ``unit_seed("f1", ...)``), at budgets of 1 to 64 Heun-10 candidates' worth of NFE (19 to 1216 NFE).
- Diversity (F2's protocol, ``sample_metrics``): precision / recall (k = 3, classifier features, vs the 1797 real
  digits), FD, mean logit of the winners of independent searches (``unit_seed("f2", ...)``, 20 per digit) at two
  budgets (8 and 64 candidates' worth), with F2's no-search Heun-10 set as the baseline.

How each method spends a budget of B = c x 19 NFE (c candidates' worth), fixed before measuring:

- random, zero-order, paths: exactly as F1 and F2 (``experiments._search``): c candidates; c // 4 ZO-4 iterations
  (read off one search's best-so-far curve, as F1 does); the widest Paths-2 whose exact NFE fits B.
- FK steering, evolution, early pruning: ``run_search(..., budget=B)`` with ``toyworld.beyond.DEFAULTS`` (chosen on
  development seeds by ``benchmarks/beyond_paper.py --tune`` at 304 NFE; not re-tuned per budget) and the core's
  budget rule: FK takes ``B // fk_particle_nfe`` particles (28 NFE each on Heun-10: its ancestral steps plus one x0
  preview per resampling step), evolution ``generation_sizes(4, 1, candidates=B // 19)`` (generations of 4, then 3
  children each, the last partial), pruning the most seeds ``pruning_count`` fits in B. Each budget is its own run.
  A method is left out at a budget below its minimum (``toyworld.beyond.min_budget``: FK two particles = 56 NFE,
  evolution one generation = 76 NFE).
- A control, ``fk_no_resampling``: FK's stochastic sampler (ancestral, eta 1) with ``resample_every=0``, i.e. the best
  of ``B // 19`` independent particles (no previews, no resampling): it separates what FK's sampler does to the
  winners from what its resampling does.

Every search is the demo's ``run_search``, run side by side through ``scheduler.run_batched``; the winner is a final
sample (never a preview). NFE counts the model evaluations of a search (previews included); ``verifier_calls``
counts the verifier's samples (FK and pruning also score previews).

    report = run_f5("full", out="docs/fidelity")   # python benchmarks/beyond_paper.py --curve
"""

import json
import os
import time
from pathlib import Path

import torch

from ...search.evaluate import LATENT
from ..beyond import BEYOND, DEFAULTS, min_budget
from ..search import run_search
from ..world import ToyWorld
from .config import PATHS_N, SEARCH_CHUNK, STEPS_PER_CANDIDATE, ZO_N, feasible, heun_nfe, log, unit_seed
from .experiments import Reference, _search, sample_metrics
from .sampling import heun_samples, load_models, require_scikit_learn, seed_batch
from .scheduler import run_batched
from .stats import best_at, mean_se

METHODS = ("random", "zero_order", "paths") + BEYOND
# a control: FK's stochastic (ancestral, eta 1) sampler without resampling, i.e. best of k = B // 19 independent
# particles: how much of FK steering's effect is its sampler's rather than its resampling's
CONTROLS = {"fk_no_resampling": ("fk", {"resample_every": 0})}
ALL = METHODS + tuple(CONTROLS)
LABELS = {"random": "random", "zero_order": f"zero-order ZO-{ZO_N}", "paths": f"paths Paths-{PATHS_N}",
          "fk": "FK steering", "evolution": "evolution", "pruning": "early pruning",
          "fk_no_resampling": "FK, no resampling (control)"}

F5_CONFIGS = {
    "full": {"digits": list(range(10)), "seeds": [0, 1, 2, 3], "candidates": [1, 4, 8, 16, 32, 64],
             "per_digit": 20, "diversity_candidates": [8, 64]},
    "quick": {"digits": list(range(10)), "seeds": [0], "candidates": [1, 4, 8, 16, 32, 64],
              "per_digit": 4, "diversity_candidates": [8, 64]},
    "tiny": {"digits": [0, 1], "seeds": [0], "candidates": [4, 8], "per_digit": 2, "diversity_candidates": [8]},
}


def feasible_beyond(name, candidates, world):
    """Whether ``name`` (any of ``ALL``) runs at a budget of ``candidates`` Heun-10 candidates."""
    if name in CONTROLS:
        algo, settings = CONTROLS[name]
        return candidates * heun_nfe(STEPS_PER_CANDIDATE) >= min_budget(world, algo, settings)[0]
    if name in BEYOND:
        return candidates * heun_nfe(STEPS_PER_CANDIDATE) >= min_budget(world, name)[0]
    return feasible(name, candidates)


def _size(name, r):
    """What a budget paid for, in the method's own units."""
    p = r.params
    if name in ("fk", "fk_no_resampling"):
        return p["particles"]
    if name == "evolution":
        return list(p["generation_sizes"])
    if name == "pruning":
        return list(p["alive"])
    if name == "paths":
        return p["width"]
    return None


def _summary(name, r, budget):
    """What F5 keeps of one search (the result itself is dropped: 1000+ searches run at once)."""
    curve = r.curve()
    return {"score": float(r.winner.score), "nfe": int(r.nfe), "budget": int(budget), "size": _size(name, r),
            "verifier_calls": int(r.params.get("verifier_calls", len(r.history))),
            "monotone": all(b >= a for (_, a), (_, b) in zip(curve, curve[1:]))}


def _run(name, world, seed, candidates, top_k=1):
    if name in CONTROLS:
        algo, settings = CONTROLS[name]
        return run_search(world, algo, seed=seed, budget=candidates * heun_nfe(STEPS_PER_CANDIDATE), top_k=top_k,
                          chunk_size=SEARCH_CHUNK, settings=settings)
    if name in BEYOND:
        return run_search(world, name, seed=seed, budget=candidates * heun_nfe(STEPS_PER_CANDIDATE), top_k=top_k,
                          chunk_size=SEARCH_CHUNK)
    return _search(name, world, seed, candidates)


def f5_curve(cfg, models):
    """Mean winner logit +- se per method and budget over the F1 searches, and the paired gain over random search."""
    t0 = time.perf_counter()
    per = heun_nfe(STEPS_PER_CANDIDATE)
    cands = sorted(cfg["candidates"])
    units = [(d, s) for s in cfg["seeds"] for d in cfg["digits"]]
    probe = ToyWorld(cfg["digits"][0], steps=STEPS_PER_CANDIDATE, teacher=models["teacher"], verifier=models["verifier"])
    ok = {name: [c for c in cands if feasible_beyond(name, c, probe)] for name in ALL}
    tasks = []
    for d, s in units:
        seed = unit_seed("f1", d, s)
        # random and ZO-4: one search at the largest budget, read off its best-so-far curve (as F1)
        for name in ("random", "zero_order"):
            if ok[name]:
                tasks.append(((name, d, s), d, lambda w, _n=name, _s=seed, _c=ok[name][-1]: _search(_n, w, _s, _c).curve()))
        for name in ("paths",) + BEYOND + tuple(CONTROLS):
            for c in ok[name]:
                tasks.append(((name, d, s, c), d, lambda w, _n=name, _s=seed, _c=c: _summary(_n, _run(_n, w, _s, _c), _c * per)))
    res = run_batched(tasks, models)
    curves, raw = {}, {}
    for name in ALL:
        rows = []
        for c in ok[name]:
            if name in ("random", "zero_order"):
                vals = [best_at(res[(name, d, s)], c * per) for d, s in units]
                nfes = [max(n for n, _ in res[(name, d, s)] if n <= c * per) for d, s in units]
                extra = {"nfe": max(nfes), "nfe_mean": sum(nfes) / len(nfes), "verifier_calls": c, "size": None,
                         "curves_monotone": all(all(b >= a for (_, a), (_, b) in zip(cv, cv[1:]))
                                                for cv in (res[(name, d, s)] for d, s in units))}
            else:
                sm = [res[(name, d, s, c)] for d, s in units]
                vals = [x["score"] for x in sm]
                extra = {"nfe": max(x["nfe"] for x in sm), "nfe_mean": sum(x["nfe"] for x in sm) / len(sm),
                         "verifier_calls": max(x["verifier_calls"] for x in sm), "size": sm[0]["size"],
                         "curves_monotone": all(x["monotone"] for x in sm)}
            raw[(name, c)] = vals
            rows.append({"candidates": c, "budget": c * per, **extra, **mean_se(vals)})
        curves[name] = rows
    for name in ALL:  # paired with random search at the same budget (same seeds)
        for row in curves[name]:
            base = raw.get(("random", row["candidates"]))
            if name != "random" and base is not None:
                row["gain_over_random"] = mean_se([a - b for a, b in zip(raw[(name, row["candidates"])], base)])
    return {"nfe_per_candidate": per, "units": len(units), "digits": cfg["digits"], "seeds": cfg["seeds"],
            "candidates": cands, "curves": curves, "seconds": round(time.perf_counter() - t0, 1)}


def f5_diversity(cfg, models, ref):
    """Precision / recall / FD of the winners of independent searches per method at each diversity budget (F2's
    protocol and seeds), with F2's no-search Heun-10 set as the baseline."""
    t0 = time.perf_counter()
    per = heun_nfe(STEPS_PER_CANDIDATE)
    units = [(d, r) for d in cfg["digits"] for r in range(cfg["per_digit"])]
    labels = torch.tensor([d for d, _ in units])
    noise = seed_batch([unit_seed("f2", d, r) for d, r in units])
    rows = {"no_search": {"method": "no_search", "candidates": 1, "nfe": per,
                          **sample_metrics(heun_samples(models["denoiser"], noise, labels, STEPS_PER_CANDIDATE), labels, ref)}}
    probe = ToyWorld(cfg["digits"][0], steps=STEPS_PER_CANDIDATE, teacher=models["teacher"], verifier=models["verifier"])

    def winner(name, w, seed, c):
        r = _run(name, w, seed, c)
        return r.top_k_samples[LATENT][:1], int(r.nfe)

    for c in cfg["diversity_candidates"]:
        names = [n for n in ALL if feasible_beyond(n, c, probe)]
        tasks = [((name, d, r), d, lambda w, _n=name, _s=unit_seed("f2", d, r), _c=c: winner(_n, w, _s, _c))
                 for name in names for d, r in units]
        res = run_batched(tasks, models)
        for name in names:
            out = [res[(name, d, r)] for d, r in units]
            x = torch.cat([o[0] for o in out])
            rows[f"{name}@{c}"] = {"method": name, "candidates": c, "budget": c * per, "nfe": max(o[1] for o in out),
                                   **sample_metrics(x, labels, ref)}
        log(f"F5 diversity: {c} candidates done ({round(time.perf_counter() - t0)} s)")
    return {"winners_per_method": len(units), "per_digit": cfg["per_digit"], "candidates": cfg["diversity_candidates"],
            "rows": rows, "seconds": round(time.perf_counter() - t0, 1)}


def _runs(sizes):
    """Generation sizes with repeats folded: [4, 3, 3, 3, 1] -> "4 + 3x3 + 1"."""
    out = []
    for v in sizes:
        if out and out[-1][0] == v:
            out[-1][1] += 1
        else:
            out.append([v, 1])
    return " + ".join(str(v) if n == 1 else f"{v}x{n}" for v, n in out)


def f5_tables(report):
    """F5 as Markdown: the logit curve, what each budget paid for, and the diversity of the winners."""
    out = []
    cur = report.get("curve")
    if cur:
        c = cur["curves"]
        by = {n: {r["candidates"]: r for r in c[n]} for n in ALL if n in c}
        cols = [n for n in ALL if n in c]
        cell = lambda r: "-" if r is None else f"{r['mean']:.2f} ± {r['se']:.2f}"
        out += [f"F5: mean winner logit ± se over {cur['units']} searches (F1 seeds) at a budget of c Heun-10 candidates' "
                "worth of NFE (19 c)", "",
                "| candidates | NFE budget | " + " | ".join(LABELS[n] for n in cols) + " |", "|---" * (len(cols) + 2) + "|"]
        for k in cur["candidates"]:
            out.append(f"| {k} | {k * cur['nfe_per_candidate']} | " + " | ".join(cell(by[n].get(k)) for n in cols) + " |")
        out += ["", "F5: what each budget paid for (NFE actually spent, the most over the searches; verifier calls per search)", "",
                "| candidates | paths: width M (NFE) | FK: particles (NFE, verifier calls) | evolution: generation sizes (NFE) | "
                "pruning: seeds alive per stage (NFE, verifier calls) |", "|---|---|---|---|---|"]
        for k in cur["candidates"]:
            def sz(n, fmt):
                r = by[n].get(k)
                return "-" if r is None else fmt(r)
            out.append(f"| {k} | {sz('paths', lambda r: '%s (%d)' % (r['size'], r['nfe']))} | "
                       f"{sz('fk', lambda r: '%s (%d, %d)' % (r['size'], r['nfe'], r['verifier_calls']))} | "
                       f"{sz('evolution', lambda r: '%s (%d)' % (_runs(r['size']), r['nfe']))} | "
                       f"{sz('pruning', lambda r: '%s (%d, %d)' % (' -> '.join(map(str, r['size'])), r['nfe'], r['verifier_calls']))} |")
        gains = [(n, r) for n in cols if n != "random" for r in c[n] if "gain_over_random" in r]
        if gains:
            out += ["", "F5: paired gain over random search at the same budget (same seeds), mean ± se", "",
                    "| candidates | " + " | ".join(LABELS[n] for n in cols if n != "random") + " |",
                    "|---" * len(cols) + "|"]
            for k in cur["candidates"]:
                cells = []
                for n in cols[1:]:
                    r = by[n].get(k)
                    g = None if r is None else r.get("gain_over_random")
                    cells.append("-" if g is None else f"{g['mean']:+.2f} ± {g['se']:.2f}")
                out.append(f"| {k} | " + " | ".join(cells) + " |")
        out.append("")
    div = report.get("diversity")
    if div:
        out += [f"F5: {div['winners_per_method']} winners per set ({div['per_digit']} per digit, each from its own search, "
                "F2 seeds) vs the 1797 real digits (k = 3, classifier features)", "",
                "| set | candidates | NFE | precision | recall | FD | mean logit |", "|---|---|---|---|---|---|---|"]
        for key, r in div["rows"].items():
            name = "no search (Heun-10)" if key == "no_search" else LABELS[r["method"]]
            fd = "-" if r["fd"] is None else f"{r['fd']:.1f}"
            out.append(f"| {name} | {r['candidates']} | {r['nfe']} | {r['precision']:.3f} | {r['recall']:.3f} | {fd} | "
                       f"{r['mean_logit']:.2f} |")
        out.append("")
    return "\n".join(out)


def f5_plots(report, out):
    from ...search.report import chart

    out = Path(out)
    files = []
    cur = report.get("curve")
    if cur:
        series = [{"name": LABELS[n], "points": [(r["budget"], r["mean"]) for r in cur["curves"][n]],
                   "err": [r["se"] for r in cur["curves"][n]], "dashed": n in CONTROLS}
                  for n in ALL if cur["curves"].get(n)]
        chart(series, f"F5: winner's classifier logit vs NFE budget (mean +- se of {cur['units']} searches)",
              "NFE budget per final sample (19 per Heun-10 candidate)", "logit", logx=True, width=800).save(out / "f5_logit_vs_nfe.png")
        files.append("f5_logit_vs_nfe.png")
    div = report.get("diversity")
    if div:
        base = (div["rows"]["no_search"]["recall"], div["rows"]["no_search"]["precision"])
        budgets = " and ".join(str(c) for c in div["candidates"])
        series = []  # each method's line runs from no search through its budgets (colours as in the logit plot)
        for n in ALL:
            pts = [(r["recall"], r["precision"]) for r in div["rows"].values() if r["method"] == n]
            if pts:
                series.append({"name": LABELS[n], "points": [base] + pts})
        series.append({"name": "no search (Heun-10)", "points": [base], "line": False, "radius": 5})
        chart(series, f"F5: precision vs recall of {div['winners_per_method']} winners: no search, then {budgets} candidates' worth",
              "recall (diversity)", "precision", width=800).save(out / "f5_precision_recall.png")
        files.append("f5_precision_recall.png")
    return files


def run_f5(config="full", out=None, parts=("curve", "diversity"), models=None, threads=1):
    """Measure F5 for the named configuration (or a config dict); write f5_beyond.json, f5_beyond.md and the PNGs
    to ``out``. ``threads``: torch intra-op threads (1: see ``run_fidelity``)."""
    cfg = F5_CONFIGS[config] if isinstance(config, str) else dict(config)
    name = config if isinstance(config, str) else "custom"
    bad = [p for p in parts if p not in ("curve", "diversity")]
    if bad or not parts:
        raise ValueError(f"parts must be a non-empty subset of curve, diversity, got {list(parts)}")
    if "diversity" in parts:
        require_scikit_learn()
    if threads:
        torch.set_num_threads(int(threads))
    t0, c0 = time.perf_counter(), time.process_time()
    models = models or load_models()
    report = {"experiment": "F5", "config": name, "settings": cfg, "nfe_per_candidate": heun_nfe(STEPS_PER_CANDIDATE),
              "beyond_settings": DEFAULTS, "torch": torch.__version__, "threads": torch.get_num_threads()}
    if "curve" in parts:
        log("F5: curve ...")
        report["curve"] = f5_curve(cfg, models)
        log(f"F5: curve done in {report['curve']['seconds']} s")
    if "diversity" in parts:
        log("F5: diversity ...")
        report["diversity"] = f5_diversity(cfg, models, Reference(models["classifier"]))
        log(f"F5: diversity done in {report['diversity']['seconds']} s")
    report["seconds"] = round(time.perf_counter() - t0, 1)
    report["cpu_seconds"] = round(time.process_time() - c0, 1)
    report["loadavg_1m"] = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        report["plots"] = f5_plots(report, out)
        (out / "f5_beyond.json").write_text(json.dumps(report, indent=1, default=list))
        (out / "f5_beyond.md").write_text(f5_tables(report))
    return report
