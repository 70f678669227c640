"""``python -m noise_search score --verifier NAME --weights PATH (--prompt TEXT | --class-id N) IMAGE...``

Prints one JSON line per image: ``{"path": ..., "score": ...}``. The ``noise_search`` dispatcher (``cli.py``) calls
``add_parser(subparsers)`` and ``run(args)``; ``main(argv)`` runs the subcommand on its own.
"""

import argparse
import json
import sys


def add_parser(subparsers):
    p = subparsers.add_parser("score", help="score images with a verifier (offline, local weights)",
                              description="Score images with a verifier loaded from local weights; one JSON line per image.")
    p.add_argument("--verifier", required=True, help="verifier name (see --list)")
    p.add_argument("--weights", required=False, help="folder or file holding the verifier's weights")
    cond = p.add_mutually_exclusive_group()
    cond.add_argument("--prompt", help="text prompt (prompt verifiers)")
    cond.add_argument("--class-id", type=int, dest="class_id", help="class id (class verifiers)")
    p.add_argument("--early", nargs="+", default=None, help="early x0 prediction images, one per IMAGE (self_supervised)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE", help="extra loader option (JSON value or string)")
    p.add_argument("--list", action="store_true", help="list the verifier names and exit")
    p.add_argument("images", nargs="*", help="image files")
    p.set_defaults(func=run, run=run)
    return p


def load_image(path):
    import numpy as np
    import torch
    from PIL import Image

    with Image.open(path) as im:
        a = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(a)[None]


def _opts(pairs):
    out = {}
    for kv in pairs:
        if "=" not in kv:
            raise SystemExit(f"--opt expects KEY=VALUE, got {kv!r}")
        k, v = kv.split("=", 1)
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


def run(args, out=None):
    import torch

    from .registry import available, load_verifier

    out = out or sys.stdout
    if args.list:
        for n in available():
            print(n, file=out)
        return 0
    if not args.images:
        raise SystemExit("score: give at least one IMAGE")
    if not args.weights:
        raise SystemExit("score: --weights PATH is required")
    try:
        v = load_verifier(args.verifier, args.weights, device=args.device, dtype=getattr(torch, args.dtype), **_opts(args.opt))
    except (ValueError, OSError, TypeError) as err:  # unknown name, missing/corrupt weights, bad --opt
        print(f"score: {err}", file=sys.stderr)
        return 2
    cond = args.prompt if args.prompt is not None else args.class_id
    if v.condition == "prompt" and args.prompt is None:
        raise SystemExit(f"score: the {v.name} verifier needs --prompt TEXT")
    if v.condition == "class" and args.class_id is None:
        raise SystemExit(f"score: the {v.name} verifier needs --class-id N")
    if v.needs_early and (not args.early or len(args.early) != len(args.images)):
        raise SystemExit(f"score: the {v.name} verifier needs --early with one image per IMAGE ({len(args.images)})")
    for i, path in enumerate(args.images):
        early = load_image(args.early[i]) if v.needs_early else None
        s = v.score(load_image(path), cond, early)
        print(json.dumps({"path": path, "score": float(s[0])}), file=out, flush=True)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="noise_search")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)
