"""``python -m noise_search bench fidelity [--quick] [--out DIR]``: measure the papers' claims on the toy world.

Prints the JSON report (F1 scaling, F2 diversity, F3 self-supervised verifier, F4 sCM, and each claim with
its verdict) and writes it with the PNG plots to ``--out``. The measuring code is the ``toyworld/fidelity`` package.
"""

import json
import sys

from . import UsageError, output_folder


def add_parser(sub):
    p = sub.add_parser("bench", description="Measurements on the embedded toy world (paper fidelity).")
    which = p.add_subparsers(dest="bench", required=True)
    f = which.add_parser("fidelity", help="reproduce the papers' findings on the toy world, with numbers and plots")
    f.add_argument("--quick", action="store_true", help="a smaller run (1 seed, budgets to 32 candidates, 50 winners): ~1-2 min")
    f.add_argument("--out", default="fidelity_out", help="folder for fidelity.json and the PNG plots (default fidelity_out)")
    f.add_argument("--parts", default="f1,f2,f3,f4", help="comma-separated subset of f1,f2,f3,f4 (default all)")
    f.add_argument("--merge", action="store_true", help="keep the other parts of an existing <out>/fidelity.json of the "
                                                         "same configuration (e.g. --parts f4 --merge once the student exists)")
    f.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1; see toyworld/fidelity/__init__.py)")
    f.set_defaults(run=run_fidelity)
    return p


def run_fidelity(args):
    parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    bad = [x for x in parts if x not in ("f1", "f2", "f3", "f4")]
    if not parts or bad:
        raise UsageError(f"--parts must be a comma-separated subset of f1,f2,f3,f4, got {args.parts!r}")
    if args.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {args.threads}")
    output_folder(args.out)  # a bad --out fails now, not after minutes of measuring
    from ..toyworld import fidelity

    report = fidelity.run_fidelity("quick" if args.quick else "full", out=args.out, parts=parts, threads=args.threads,
                                   merge=args.merge)
    json.dump(report, sys.stdout, indent=1)
    sys.stdout.write("\n")
    print("\n" + fidelity.markdown_tables(report) + "\n" + fidelity.summary_text(report), file=sys.stderr)
    print(f"wrote {args.out}/fidelity.json and {', '.join(report.get('plots', []))} in {report['seconds']:.0f} s", file=sys.stderr)
    return 0
