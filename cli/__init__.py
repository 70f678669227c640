"""Command line: ``python -m noise_search demo | score | bench | weights``.

Each subcommand lives in its own module of this package (``cli/demo.py``, ``cli/score.py``, ``cli/bench.py``,
``cli/weights.py``), which exposes ``add_parser(subparsers)``: it registers the subcommand's arguments and
``set_defaults(run=...)``. Only the module of the subcommand on the command line is imported, and the modules
import torch inside ``run``, so ``--help`` answers at once.

Every failure ends the same way (``EXIT_STATUS``, shown in each ``--help``): one line
``noise-search: error: ...`` on stderr and exit status 2 for a usage error, 1 for a runtime error.
"""

import argparse
import importlib
import os
import sys
import tempfile
from pathlib import Path

from ..errors import PackError

PROG = "python -m noise_search"
ERROR_PREFIX = "noise-search: error: "
DEBUG_ENV = "NOISE_SEARCH_DEBUG"

# name: (module that defines the subcommand, relative to this package; its line in the command list)
COMMANDS = {
    "demo": (".demo", "search over noise on the embedded toy world (8x8 digits)"),
    "score": (".score", "score images with a verifier (offline, local weights)"),
    "bench": (".bench", "measurements on the embedded toy world (paper fidelity)"),
    "weights": (".weights", "list the verifiers' published weights; 'weights get KIND' downloads them"),
}

EXIT_STATUS = f"""\
exit status:
  0    done
  1    runtime error: the command started and failed (weights it could not read, a file it
       could not write, a missing optional package such as scikit-learn, or an internal
       error: set {DEBUG_ENV}=1 to see its traceback)
  2    usage error: an argument is invalid (a value out of range, an unknown name, an input
       file that is missing or not an image, a --device this machine does not have, an --out
       that cannot be a folder)
  130  cancelled with Ctrl-C
Errors are one line on stderr: "{ERROR_PREFIX}..."."""

# Failures whose message is written for the user: shown as they are. Any other exception type is a bug.
EXPECTED_ERRORS = (OSError, ImportError, ValueError, PackError)


class UsageError(PackError, ValueError):
    """An argument on the command line is invalid: exit status 2. Raised by the subcommands' argument checks
    (a ValueError, so code that calls them without the CLI still sees the familiar type)."""


class CommandFailed(SystemExit):
    """How ``main`` ends on an error, after printing its one line: a SystemExit whose ``code`` is the exit
    status (so ``python -m`` prints nothing more) and whose text is the message (so callers can read it)."""

    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


def fail(message, code):
    """Print ``noise-search: error: <message>`` as one line on stderr and end with exit status ``code``."""
    line = " ".join(str(message).split())
    print(ERROR_PREFIX + line, file=sys.stderr, flush=True)
    raise CommandFailed(line, code)


class Parser(argparse.ArgumentParser):
    """argparse with the exit-status table in every ``--help`` (subparsers inherit the class) and its own
    errors (an unknown option, ``--digit abc``) in the one-line form, exit status 2."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("epilog", EXIT_STATUS)
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        fail(f"{message} (see {self.prog} --help)", 2)


def output_folder(path, flag="--out"):
    """Create the output folder ``path`` and prove a file can be written into it, before anything is loaded or
    computed: a path under an existing file, or a folder without write access, is a usage error now rather than
    a traceback when the results are saved. Returns it as a Path."""
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        blocker = next((p for p in (out, *out.parents) if p.exists()), None)
        why = f"{blocker} is a file, not a folder" if blocker is not None and not blocker.is_dir() else \
            f"it cannot be created or written ({err.strerror or err})"
        raise UsageError(f"{flag} {path} cannot be the output folder: {why}; give a writable folder (created if missing)") from err
    return out


def command_in(argv):
    """The subcommand named in ``argv``, or None (none given, or ``--help`` asked for before it)."""
    for token in argv:
        if token in ("-h", "--help"):
            return None
        if not token.startswith("-"):
            return token
    return None


def build_parser(argv=None):
    """The parser listing every subcommand. With ``argv`` (as ``main`` calls it), only the subcommand named there
    gets its arguments (its module is imported), so listing the subcommands imports none of them; without it,
    every subcommand gets its arguments."""
    parser = Parser(prog=PROG, description="Inference-time scaling for diffusion models: search over noise with "
                                           "verifiers, and sCM sampling.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(COMMANDS) + "}")
    chosen = command_in(argv) if argv is not None else None
    for name, (module, line) in COMMANDS.items():
        if argv is None or name == chosen:
            importlib.import_module(module, __package__).add_parser(sub)
        else:
            sub.add_parser(name, help=line)
    return parser


def runtime_message(err):
    """One line for an exception raised while a command ran: the message of an error written for the user,
    or, for any other type (a bug), its type, its message and how to see the traceback."""
    text = " ".join(str(err).split()) or type(err).__name__
    notes = [" ".join(n.split()) for n in getattr(err, "__notes__", ())]
    text = "; ".join([text, *notes])
    if isinstance(err, EXPECTED_ERRORS):
        return text
    return f"internal error: {type(err).__name__}: {text} (rerun with {DEBUG_ENV}=1 to see the traceback, and please report it)"


def debugging():
    """Whether the user asked for tracebacks (``NOISE_SEARCH_DEBUG=1``)."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def main(argv=None):
    """Run one subcommand. Returns 0 (done) or 130 (Ctrl-C); an error prints one line and raises
    :class:`CommandFailed` with exit status 2 (usage) or 1 (runtime), as argparse's own errors do."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    try:
        return args.run(args) or 0
    except KeyboardInterrupt as err:
        for note in getattr(err, "__notes__", ()):  # e.g. saving the partial result failed
            print(note, file=sys.stderr)
        # what was saved, if anything, the command itself says (the demo prints it as it stops)
        print("noise-search: cancelled (Ctrl-C)", file=sys.stderr)
        return 130
    except UsageError as err:
        fail(err, 2)
    except Exception as err:  # noqa: BLE001 - reported in one line, never swallowed; NOISE_SEARCH_DEBUG=1 re-raises
        if debugging():
            raise
        fail(runtime_message(err), 1)

