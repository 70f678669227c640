"""``python -m noise_search weights`` (list every verifier kind's published files and what the target folder holds) and
``python -m noise_search weights get KIND [--to DIR]`` (fetch them: progress bar, resume, size/sha256 check).

A thin layer over ``verifiers/weights.py``, which holds the manifest and does the work (the Verifier Loader node calls
the same functions). Default folder: ``<ComfyUI>/models/verifiers/<kind>`` when the pack is installed in ComfyUI's
``custom_nodes``, else ``./models/verifiers/<kind>``; ``--to DIR`` names the verifier's folder itself.

Errors follow ``cli/__init__.py``: an unknown kind or a kind with nothing to download is a :class:`~cli.UsageError` (exit
status 2); offline mode, network, checksum and folder-check failures propagate as the pack's errors (exit status 1);
each is one line on stderr.
"""

import json
import os
import sys

from . import UsageError


def add_parser(sub):
    p = sub.add_parser("weights", help="list the verifiers' published weights; 'weights get KIND' downloads them",
                       description="List every verifier kind with its published files (Hub repository, files, sizes, licence) and "
                                   "whether they are in the target folder. 'weights get KIND [--to DIR]' downloads them: progress "
                                   "bar, resume of a broken download, size and sha256 / git-sha1 checked against the Hub's metadata; "
                                   "HF_HUB_OFFLINE=1 stops it before any request, HF_ENDPOINT selects a mirror.")
    p.add_argument("--root", default=None, metavar="DIR",
                   help="folder holding one sub-folder per verifier (default: ComfyUI's models/verifiers when the pack is in "
                        "custom_nodes, else ./models/verifiers)")
    p.add_argument("--json", action="store_true", help="print the listing as JSON")
    p.set_defaults(run=run_list)
    actions = p.add_subparsers(dest="action", metavar="{get}")
    g = actions.add_parser("get", help="download one verifier's weights",
                           description="Download one verifier kind's published files into its folder, then check the folder as "
                                       "the Verifier Loader reads it. Files already there are kept; a broken download resumes.")
    g.add_argument("kind", help="verifier kind (listed by 'python -m noise_search weights')")
    g.add_argument("--to", default=None, metavar="DIR", help="the verifier's folder (default: <root>/<kind>, see 'weights --help')")
    g.add_argument("--force", action="store_true", help="download every file again, even those already present")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    g.set_defaults(run=run_get)
    return p


def _root(args):
    from ..verifiers import weights as W

    return os.path.abspath(os.path.expanduser(args.root)) if getattr(args, "root", None) else W.default_root()


def _size(f):
    from ..verifiers import weights as W

    if f["size"]:
        return W.human_size(f["size"])
    return f"~{f['listed']}" if f["listed"] else "?"


def run_list(args, out=None):
    from ..verifiers import weights as W

    out = out or sys.stdout
    root = _root(args)
    rows = [W.status(k, os.path.join(root, k)) for k in W.kinds()]
    if args.json:
        print(json.dumps(rows, indent=1), file=out)
        return 0
    print(f"verifier weights in {root}\n"
          "[x] present  [ ] missing   sizes: exact, ~ as listed on the Hub, ? read from the Hub at download\n"
          "get one: python -m noise_search weights get KIND [--to DIR]", file=out)
    for r in rows:
        print(f"\n{r['kind']:<16} {r['state']:<8} {r['folder']}", file=out)
        if r["note"]:
            print(f"  {r['note']}", file=out)
        repo = None
        for f in r["files"]:
            if f["repo_id"] != repo:
                repo = f["repo_id"]
                print(f"  {repo}@{f['revision']}  licence: {f['licence']}", file=out)
            name = f["filename"] if f["target"] == f["filename"] else f"{f['filename']} -> {f['target']}"
            sha = f"  sha256 {f['sha256'][:12]}..." if f["sha256"] else ""
            print(f"    [{'x' if f['present'] else ' '}] {name:<46} {_size(f)}{sha}", file=out)
        if r["manual"]:
            print(f"    [{'x' if r['state'] == 'ready' else ' '}] by hand: {r['manual']}", file=out)
    return 0


def run_get(args, out=None):
    from ..verifiers import weights as W

    out = out or sys.stdout
    try:
        kind = W.canonical_kind(args.kind)
    except ValueError as err:
        raise UsageError(str(err)) from err
    if not W.MANIFEST[kind].files:
        raise UsageError(f"{kind}: nothing to download ({W.MANIFEST[kind].note})")
    folder = os.path.abspath(os.path.expanduser(args.to)) if args.to else os.path.join(_root(args), kind)
    if args.quiet:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    log = None if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    try:
        report = W.download(kind, folder, force=args.force, log=log)
    except KeyboardInterrupt as err:
        err.add_note("run the same command again to resume the download")
        raise
    got = sum(r["action"] == "downloaded" for r in report)
    checks = sorted({r["checked"] for r in report if r["action"] == "downloaded"})
    print(f"{kind}: ready in {folder} ({got} downloaded, {len(report) - got} kept"
          f"{'; verified: ' + ', '.join(checks) if checks else ''}; folder checked as the Verifier Loader reads it)", file=out)
    return 0
