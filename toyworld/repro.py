"""Git-independent reproducibility info stored in every weights file's metadata: what ran
(script hash, arguments), on what (versions, threads) and on which data (fingerprint)."""

import contextlib
import hashlib
import platform
from pathlib import Path

import numpy as np
import torch

from .data import data_fingerprint


def file_sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@contextlib.contextmanager
def deterministic(seed, threads=2):
    """Fixed seed, fixed thread count and deterministic kernels, so a rerun on the same machine reproduces
    the weights; the global RNG, thread count and determinism flag are restored on exit (tests call main())."""
    old_threads, old_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        torch.set_num_threads(int(threads))
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(old_det)
            torch.set_num_threads(old_threads)


def repro_info(script_file, args):
    """A JSON-able record of the run; ``script_file`` is the training module's ``__file__``."""
    here = Path(__file__).resolve().parent
    return {
        "script": Path(script_file).name,
        "script_sha256": file_sha256(script_file),
        "models_sha256": file_sha256(here / "models.py"),
        # Everything that shapes the result; the output path and logging do not.
        "args": {k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v))
                 for k, v in vars(args).items() if k not in ("out", "log_every")},
        "data": "sklearn.datasets.load_digits, x/8 - 1",
        "data_sha256": data_fingerprint(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
