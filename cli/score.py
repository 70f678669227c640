"""``python -m noise_search score --verifier NAME --weights PATH (--prompt TEXT | --class-id N) [--scale S] IMAGE...``

Prints one JSON line per image: ``{"path": ..., "score": ...}``. The ``noise_search`` dispatcher (``cli/__init__.py``)
calls ``add_parser(subparsers)`` and ``run(args)``; ``main(argv)`` runs the subcommand on its own.

Everything that can be checked before the verifier loads (which can take a minute) is checked first: the images,
``--early``, ``--prompt``, ``--device``. Invalid arguments raise ``cli.UsageError`` (exit status 2); weights that
exist but cannot be read stay runtime errors (exit status 1). Nothing here imports torch until ``run``.
"""

import json
import os
import sys

from . import EXIT_STATUS, UsageError

EXAMPLES = """\
examples:
  python -m noise_search score --list
  python -m noise_search score --verifier classifier --weights toyworld/weights/classifier.safetensors --class-id 3 digit.png
  python -m noise_search score --verifier clip_score --weights models/verifiers/clip-vit-large-patch14 \\
      --prompt "a photo of a cat" cat1.png cat2.png"""


def add_parser(subparsers):
    p = subparsers.add_parser("score", description="Score images with a verifier loaded from local weights; one JSON line per image.",
                              epilog=EXAMPLES + "\n\n" + EXIT_STATUS)
    p.add_argument("--verifier", help="verifier name (required unless --list; --list prints the names)")
    p.add_argument("--weights", required=False, help="folder or file holding the verifier's weights")
    cond = p.add_mutually_exclusive_group()
    cond.add_argument("--prompt", help="text prompt (prompt verifiers; not empty)")
    cond.add_argument("--class-id", type=int, dest="class_id", help="class id (class verifiers)")
    p.add_argument("--early", nargs="+", default=None, help="early x0 prediction images, one per IMAGE (self_supervised)")
    p.add_argument("--device", default="cpu", help="cpu (default), or cuda, cuda:N, mps where this machine has them")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--scale", default=None, metavar="SCALE",
                   help="clip_score only: cosine (default, raw cosine), hessel (2.5*max(cos,0)) or torchmetrics (max(100*cos,0)); "
                        "see docs/verifier-scales.md")
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE", help="extra loader option (JSON value or string)")
    p.add_argument("--list", action="store_true", help="list the verifier names and exit")
    p.add_argument("images", nargs="*", help="image files")
    p.set_defaults(run=run)
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
            raise UsageError(f"--opt expects KEY=VALUE, got {kv!r}")
        k, v = kv.split("=", 1)
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


def _loader_opts(args):
    """The loader's keyword options: every --opt, and --scale (which must agree with an --opt scale=)."""
    opts = _opts(args.opt)
    scale = getattr(args, "scale", None)
    if scale is not None:
        from ..verifiers.clip import CLIP_SCORE_SCALES
        if scale not in CLIP_SCORE_SCALES:
            raise UsageError(f"--scale must be one of {', '.join(CLIP_SCORE_SCALES)}, got {scale!r}")
        if opts.get("scale", scale) != scale:
            raise UsageError(f"--scale {scale} and --opt scale={opts['scale']} disagree; give one of them")
        opts["scale"] = scale
    return opts


def _check_images(flag, paths):
    """Each path is a file PIL can open as an image: a missing file or a text file is one line naming it, found
    before the verifier loads rather than as a traceback after."""
    from PIL import Image, UnidentifiedImageError

    for path in paths:
        if not os.path.isfile(path):
            why = "is a folder, not an image file" if os.path.isdir(path) else "does not exist"
            raise UsageError(f"{flag} {path} {why}; give image files (PNG, JPEG, WEBP...)")
        try:
            with Image.open(path) as im:
                im.verify()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            raise UsageError(f"{flag} {path} is not an image PIL can read ({type(err).__name__}: {err}); "
                             "give image files (PNG, JPEG, WEBP...)") from err


def usable_devices():
    """The --device values this machine's torch can run on: cpu, and each CUDA device or MPS it has."""
    import torch

    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def _check_device(name):
    """``--device`` names a device this machine has: 'banana', or 'cuda' on a CPU-only torch build, would
    otherwise fail as a torch traceback in the middle of loading the verifier."""
    import torch

    valid = usable_devices()
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        device = None
    if device is not None and (device.type == "cpu" or str(device) in valid):
        return
    why = ""
    if device is not None and device.type == "cuda":
        why = f" (this torch {torch.__version__} is a CPU-only build)" if torch.version.cuda is None else " (no CUDA device is visible)"
    raise UsageError(f"--device must be one of {', '.join(valid)} on this machine, got {name!r}{why}")


def _check_request(args):
    """Everything about the command line that needs no verifier loaded."""
    if not args.verifier:
        from ..verifiers.registry import available
        raise UsageError(f"--verifier NAME is required: one of {', '.join(available())}")
    if not args.images:
        raise UsageError("give at least one IMAGE file to score")
    if not args.weights:
        raise UsageError(f"--weights PATH is required: the folder or file holding the {args.verifier} verifier's weights")
    if args.prompt is not None and not args.prompt.strip():
        raise UsageError(f"--prompt must be a non-empty text, got {args.prompt!r}")
    _check_images("IMAGE", args.images)
    _check_images("--early", args.early or ())
    _check_device(args.device)


def _toy_world_kind(path):
    """The kind ('classifier', 'teacher', 'student') a toy-world weights file records in its safetensors metadata,
    or None for any other path. Needed because the registry's ``classifier`` loader reads transformers folders and
    torch.export / TorchScript files only: given the toy world's own classifier.safetensors, it tried to open it
    as TorchScript and called the file corrupt."""
    if not (os.path.isfile(path) and str(path).endswith(".safetensors")):
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return (f.metadata() or {}).get("kind")
    except Exception:  # noqa: BLE001 - unreadable as safetensors: not a toy-world file; the registry's loader reports it
        return None


def _load_toy_classifier(path, device, dtype, opts):
    """The toy world's digit classifier (toyworld/load.py) as a class-logit verifier: classes 0-9, images
    turned grey and resized to 8x8 (as the demo scores them). A teacher or student file is refused by name."""
    from ..toyworld.data import NUM_CLASSES
    from ..toyworld.load import load_classifier
    from ..toyworld.world import from_images
    from ..verifiers.base import ClassifierVerifier

    return ClassifierVerifier(load_classifier(path), from_images, NUM_CLASSES, weights_id=str(path), device=device, dtype=dtype,
                              **opts)


def _load(args, opts):
    """The verifier; a name, option or path that cannot work is a usage error (2), weights that exist but
    cannot be read stay the loader's own error (a runtime error, 1)."""
    import torch

    from ..verifiers.registry import load_verifier

    dtype = getattr(torch, args.dtype)
    toy = args.verifier.strip().lower() == "classifier" and _toy_world_kind(args.weights) is not None
    try:
        if toy:
            return _load_toy_classifier(args.weights, args.device, dtype, opts)
        return load_verifier(args.verifier, args.weights, device=args.device, dtype=dtype, **opts)
    except (ValueError, FileNotFoundError) as err:  # unknown name or scale, missing weights
        raise UsageError(str(err)) from err
    except TypeError as err:
        if not opts:  # not caused by an --opt: a bug, reported as one
            raise
        raise UsageError(f"the {args.verifier} verifier does not take one of --opt {', '.join(opts)} ({err})") from err


def _condition(v, args):
    """The prompt or class id the loaded verifier scores against, checked against what it needs."""
    if v.condition == "prompt" and args.prompt is None:
        raise UsageError(f"the {v.name} verifier needs --prompt TEXT")
    if v.condition == "class":
        classes = f" (0..{v.num_classes - 1})" if hasattr(v, "num_classes") else ""
        if args.class_id is None:
            raise UsageError(f"the {v.name} verifier needs --class-id N{classes}")
        try:
            v.check_conditions([args.class_id])
        except ValueError as err:
            raise UsageError(f"--class-id {args.class_id} is not a class of the {v.name} verifier{classes}: {err}") from err
    if v.needs_early and (not args.early or len(args.early) != len(args.images)):
        raise UsageError(f"the {v.name} verifier needs --early with one image per IMAGE ({len(args.images)})")
    return args.prompt if args.prompt is not None else args.class_id


def run(args, out=None):
    out = out or sys.stdout
    if args.list:
        from ..verifiers.registry import available
        for n in available():
            print(n, file=out)
        return 0
    opts = _loader_opts(args)
    _check_request(args)
    v = _load(args, opts)
    cond = _condition(v, args)
    for i, path in enumerate(args.images):
        early = load_image(args.early[i]) if v.needs_early else None
        s = v.score(load_image(path), cond, early)
        print(json.dumps({"path": path, "score": float(s[0])}), file=out, flush=True)
    return 0


def main(argv=None):
    """``main(["score", ...])``: the pack's command line (``cli.main``), kept here for callers of the score
    subcommand's own entry point; same errors and exit statuses."""
    from . import main as cli_main

    return cli_main(argv)
