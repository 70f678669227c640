"""Command line: ``python -m noise_search demo | score | bench``.

Each subcommand module exposes ``add_parser(subparsers)``, which registers its arguments and
``set_defaults(run=...)``.
"""

import argparse
import sys


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m noise_search",
                                     description="Inference-time scaling for diffusion models: search over noise with verifiers, and sCM sampling.")
    sub = parser.add_subparsers(dest="command", required=True)
    from . import bench, demo
    from .verifiers import cli as verifiers_cli

    for module in (demo, verifiers_cli, bench):
        module.add_parser(sub)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except KeyboardInterrupt as err:
        for note in getattr(err, "__notes__", ()):  # e.g. saving the partial result failed
            print(note, file=sys.stderr)
        print("cancelled (Ctrl-C); the best result so far was saved where the command writes its output", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
