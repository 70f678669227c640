"""The searches beyond Ma et al. (FK steering, evolutionary search, early pruning) against random search on the
toy world, with the fidelity study's F1 protocol: teacher Heun-10 (19 NFE per sample), the classifier logit of the
wanted digit as the verifier, 40 searches = digits 0-9 x repeats 0-3 from the F1 seeds (``unit_seed("f1", d, r)``).

    python benchmarks/beyond_paper.py            # the measurement: prints JSON
    python benchmarks/beyond_paper.py --tune     # how toyworld/beyond.py's DEFAULTS were chosen (development seeds)
    python benchmarks/beyond_paper.py --curve --out docs/fidelity   # F5: every method at 1-64 candidates' worth

``--curve`` runs the fidelity study's F5 (``toyworld/fidelity/experiments_beyond.py``): the six methods' winner logit
at budgets of 1, 4, 8, 16, 32 and 64 Heun-10 candidates' worth of NFE (F1's 40 searches) and precision / recall / FD
of 200 winners per method at 8 and 64 candidates' worth (F2's protocol), with a control (FK's sampler without
resampling: the best of B // 19 independent particles); it writes f5_beyond.json, f5_beyond.md and
two PNGs to --out and prints the tables (about 5 min wall, 4 min CPU on a shared 2-core machine; ``--quick``: 10 searches per
budget and 40 winners per set, under a minute).

Random search runs 64 candidates; its winner at 304 NFE (16 candidates) and 1216 NFE (64) is read off its
best-so-far curve (its first 16 candidates are a 16-candidate search). Each new method runs at a 304 NFE budget
with ``toyworld.beyond.DEFAULTS`` and takes as many particles / generations / seeds as the budget pays for; its
winner is a final sample (never an x0 preview). Reported: mean winner logit +- standard error over the searches,
the NFE actually spent, the verifier calls (previews included), and the paired gains over random search at 304 and
1216 NFE (same seeds).

``--tune`` scores a small grid of settings per method on development seeds that the measurement never uses
(``DEV_BASE``: digits 0-9 x repeats 0-1), so the reported numbers are not tuned on their own searches.
Framework-free (torch only), one thread: the measurement takes about 15 s on a 2-core machine, --tune about 4 min.
"""

import argparse
import itertools
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import import_pack  # noqa: E402

BUDGET = 304          # 16 Heun-10 candidates
RANDOM_CANDIDATES = 64  # 1216 NFE: best-of-64, the README's F1 row at 64 candidates
CHUNK = 64            # the fidelity study's SEARCH_CHUNK
DEV_BASE = 8 * 10 ** 9  # development seeds: no phase of the fidelity study uses this base

def _grid(fk, evolution, pruning):
    return {"fk": [dict(potential=p, lmbda=lam, eta=eta, resample_every=m, ess_threshold=ess)
                   for p, lam, eta, m, ess in itertools.product(*fk)],
            "evolution": [dict(population=p, elites=e, lam=lam, tournament=t) for p, e, lam, t in itertools.product(*evolution)],
            "pruning": [dict(checkpoints=c, keep=k) for c, k in itertools.product(*pruning)]}


# two rounds: a coarse grid, then around its best (larger lambda, smaller populations, more checkpoints)
ROUNDS = [_grid((("max", "difference", "sum"), (0.5, 1.0, 2.0, 5.0), (1.0, 0.5), (1, 2), (None, 0.5)),
                ((4, 8), (1, 2), (0.7, 0.8, 0.9, 0.95), (2, 3)),
                (((1,), (2,), (3,), (4,), (1, 3), (2, 4)), (0.1, 0.2, 0.25, 1 / 3, 0.5))),
          _grid((("max", "difference", "sum"), (10.0, 20.0), (1.0,), (1, 2), (None, 0.5)),
                ((3, 6), (1,), (0.6, 0.7, 0.8), (2, 3)),
                (((1, 2), (1, 4), (1, 3, 5), (1, 2, 3), (2, 3)), (0.2, 0.25, 1 / 3, 0.5)))]
TUNE_GRID = {name: [s for r in ROUNDS for s in r[name]] for name in ("fk", "evolution", "pruning")}


def mean_se(values):
    n = len(values)
    m = sum(values) / n
    se = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1) / n) if n > 1 else 0.0
    return {"mean": round(m, 4), "se": round(se, 4), "n": n}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tune", action="store_true", help="score the settings grid on development seeds instead")
    ap.add_argument("--repeats", type=int, default=4, help="repeats per digit (default 4: the F1 protocol's 40 searches)")
    ap.add_argument("--curve", action="store_true", help="F5: the six methods at 1-64 candidates' worth of NFE, with "
                                                          "precision / recall / FD at 8 and 64 (toyworld/fidelity)")
    ap.add_argument("--quick", action="store_true", help="with --curve: 1 seed per digit and 4 winners per digit")
    ap.add_argument("--out", default="f5_out", help="with --curve: folder for f5_beyond.json/.md and the PNGs (the README's: "
                                                   "docs/fidelity)")
    args = ap.parse_args(argv)
    import_pack()
    if args.curve:
        from noise_search.toyworld.fidelity.experiments_beyond import f5_tables, run_f5

        report = run_f5("quick" if args.quick else "full", out=args.out)
        print(f5_tables(report))
        print(f"wrote {args.out}/f5_beyond.json, f5_beyond.md, {', '.join(report['plots'])} in {report['seconds']:.0f} s "
              f"({report['cpu_seconds']:.0f} s CPU)", file=sys.stderr)
        return 0
    import torch

    from noise_search.toyworld.beyond import BEYOND, DEFAULTS
    from noise_search.toyworld.fidelity.config import unit_seed
    from noise_search.toyworld.fidelity.stats import best_at
    from noise_search.toyworld.load import load_classifier, load_teacher
    from noise_search.toyworld.search import run_search
    from noise_search.toyworld.world import ToyWorld, classifier_verifier

    torch.set_num_threads(1)
    teacher, clf = load_teacher(), load_classifier()
    verifier = classifier_verifier(clf)
    worlds = {d: ToyWorld(d, steps=10, teacher=teacher, verifier=verifier) for d in range(10)}
    t0 = time.perf_counter()

    def search(name, d, seed, settings=None):
        w = worlds[d]
        w.model_calls = 0
        if name == "random":
            r = run_search(w, "random", seed=seed, candidates=RANDOM_CANDIDATES, chunk_size=CHUNK)
        else:
            r = run_search(w, name, seed=seed, budget=BUDGET, chunk_size=CHUNK, settings=settings)
        assert r.nfe == w.model_calls, (name, r.nfe, w.model_calls)  # the accounting is the counted model calls
        return r

    if args.tune:
        units = [(d, DEV_BASE + (rep * 10 + d) * 10 ** 4) for rep in range(2) for d in range(10)]
        out = {"units": len(units), "budget": BUDGET, "random_304": mean_se([best_at(search("random", d, s).curve(), BUDGET)
                                                                              for d, s in units])}
        for name in BEYOND:
            rows = []
            for st in TUNE_GRID[name]:
                rows.append({"settings": st, **mean_se([search(name, d, s, st).winner.score for d, s in units])})
            rows.sort(key=lambda r: -r["mean"])
            out[name] = rows[:8]
        out["seconds"] = round(time.perf_counter() - t0, 1)
        print(json.dumps(out, indent=1))
        return 0

    units = [(d, unit_seed("f1", d, rep)) for rep in range(args.repeats) for d in range(10)]
    rand = [search("random", d, s).curve() for d, s in units]
    r304 = [best_at(c, BUDGET) for c in rand]
    r1216 = [best_at(c, RANDOM_CANDIDATES * 19) for c in rand]
    out = {"protocol": f"teacher Heun-10 (19 NFE), classifier logit, {len(units)} searches = digits 0-9 x repeats "
                       f"0-{args.repeats - 1} (F1 seeds)",
           "budget": BUDGET,
           "random_304": {"nfe": 16 * 19, **mean_se(r304)},
           "random_1216": {"nfe": RANDOM_CANDIDATES * 19, **mean_se(r1216)}}
    for name in BEYOND:
        res = [search(name, d, s) for d, s in units]
        scores = [r.winner.score for r in res]
        p = res[0].params
        size = {"fk": ("particles", p.get("particles")), "evolution": ("generations", p.get("generation_sizes")),
                "pruning": ("seeds started / kept", p.get("alive"))}[name]
        out[name] = {"nfe_max": max(r.nfe for r in res), "nfe_mean": round(sum(r.nfe for r in res) / len(res), 1),
                     "verifier_calls": res[0].params["verifier_calls"], size[0]: size[1],
                     **mean_se(scores), "gain_over_random_304": mean_se([a - b for a, b in zip(scores, r304)]),
                     "gain_over_random_1216": mean_se([a - b for a, b in zip(scores, r1216)]),
                     "settings": DEFAULTS[name]}
    out["target"] = "reach best-of-64's mean winner logit (README F1, 1216 NFE) at <= 304 NFE"
    out["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out, indent=1, default=list))
    return 0


if __name__ == "__main__":
    sys.exit(main())
