"""Verifiers: score images (ComfyUI IMAGE tensors [B,H,W,C] in 0..1) against prompts or class ids; higher is better.

Framework-free (no ComfyUI import); weights load offline from local paths. ``available()`` lists the names,
``load_verifier(name, path, device='cpu', dtype=torch.float32, **opts)`` loads one.

The names below are imported on first use (PEP 562), so ``score --help`` (``cli/score.py``) does not import torch.
"""

import importlib

_WHERE = {
    "Verifier": "base", "ClassifierVerifier": "base", "EmbeddingCache": "base", "ImagePreprocess": "base",
    "EnsembleVerifier": "ensemble", "rank_pool": "ensemble",
    "SelfSupervisedVerifier": "features",
    "VerifierWeightsError": "files", "MissingWeightsError": "files", "CorruptWeightsError": "files",
    "available": "registry", "load_verifier": "registry",
}

__all__ = list(_WHERE)


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
