"""Load (and save) the toy world's committed weights.

Weights are fp16 safetensors in ``toyworld/weights/`` (small enough to ship in the repository);
the architecture config, training arguments and reproducibility info live in the file's own
safetensors metadata as JSON strings, so a file can never disagree with a sidecar. In memory
models are fp32 in eval mode. Any missing, corrupt or mismatched file raises an error naming
the file and the command that regenerates it.
"""

import json
from pathlib import Path

import torch

from ..errors import PackError
from .models import LEGACY_CONFIG, DigitClassifier, TrigFlowDenoiser, TrigFlowNet

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

# kind -> (file name, model class, how to (re)create the file)
KINDS = {
    "teacher": ("teacher.safetensors", TrigFlowNet,
                "python -m noise_search.toyworld.train_teacher --out toyworld/weights/teacher.safetensors"),
    "classifier": ("classifier.safetensors", DigitClassifier,
                   "python -m noise_search.toyworld.train_classifier --out toyworld/weights/classifier.safetensors"),
    "student": ("student.safetensors", TrigFlowNet,
                "python -m noise_search.toyworld.distill_student --out toyworld/weights/student.safetensors "
                "(sCD distillation of the teacher; same architecture as the teacher)"),
}


class WeightsError(PackError, RuntimeError):
    """A toy-world weights file is unreadable or does not fit its model."""


class MissingWeightsError(WeightsError, FileNotFoundError):
    """A toy-world weights file does not exist."""


def default_path(kind):
    return WEIGHTS_DIR / KINDS[kind][0]


def _how(kind):
    return KINDS[kind][2]


def save_weights(model, path, kind, info=None):
    """Write ``model``'s state dict as fp16 safetensors with metadata {kind, config, info} (JSON strings)."""
    from safetensors.torch import save_file

    if kind not in KINDS:
        raise ValueError(f"unknown weights kind {kind!r}; choose one of {sorted(KINDS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in model.state_dict().items()}
    meta = {"format": "pt", "kind": kind, "config": json.dumps(model.config, sort_keys=True),
            "info": json.dumps(info or {}, sort_keys=True)}
    save_file(state, str(path), metadata=meta)
    return path


def read_weights(path, kind):
    """(fp32 state dict, metadata with 'config' and 'info' parsed) of a weights file, or a clear error."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError(
            f"toy-world {kind} weights not found: {path} (folder {path.parent}). Create them with: {_how(kind)}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            state = {k: f.get_tensor(k).float() for k in f.keys()}
        meta["config"] = json.loads(meta["config"])
        meta["info"] = json.loads(meta.get("info", "{}"))
    except Exception as err:  # noqa: BLE001 - any failure to parse means the file is unusable
        raise WeightsError(f"toy-world {kind} weights file {path} is corrupt or not a toy-world weights file "
                           f"({type(err).__name__}: {err}). Regenerate it with: {_how(kind)}") from err
    if meta.get("kind") != kind:
        raise WeightsError(f"{path} holds {meta.get('kind')!r} weights, not {kind!r}. Regenerate it with: {_how(kind)}")
    return state, meta


def read_metadata(path=None, kind="teacher"):
    """The parsed metadata (config, training info, measured accuracy...) of a weights file."""
    return read_weights(default_path(kind) if path is None else path, kind)[1]


def _load(kind, path, device):
    path = default_path(kind) if path is None else Path(path)
    state, meta = read_weights(path, kind)
    cls = KINDS[kind][1]
    config = dict(meta["config"])
    if cls is TrigFlowNet:  # files written before these keys existed were built the legacy way, not today's default
        config = {**LEGACY_CONFIG, **config}
    try:
        model = cls(**config)
        model.load_state_dict(state, strict=True)
    except Exception as err:  # noqa: BLE001
        raise WeightsError(f"toy-world {kind} weights {path} do not fit {cls.__name__} "
                           f"({type(err).__name__}: {err}). Regenerate them with: {_how(kind)}") from err
    model.weights_path = str(path)
    model.weights_info = meta["info"]
    return model.to(device).float().eval()


def load_teacher(path=None, device="cpu"):
    """The TrigFlow teacher (EMA weights) as an fp32 TrigFlowNet in eval mode."""
    return _load("teacher", path, device)


def load_student(path=None, device="cpu"):
    """The sCD-distilled student (same architecture as the teacher), fp32, eval mode."""
    return _load("student", path, device)


def load_classifier(path=None, device="cpu"):
    """The digit classifier (verifier and FD feature extractor), fp32, eval mode."""
    return _load("classifier", path, device)


def teacher_denoiser(cfg_scale=1.0, path=None, device="cpu"):
    """The teacher wrapped as a k-diffusion denoiser ``model(x, sigma, class_labels=...) -> x0``."""
    return TrigFlowDenoiser(load_teacher(path, device), cfg_scale=cfg_scale).eval()
