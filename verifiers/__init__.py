"""Verifiers: score images (ComfyUI IMAGE tensors [B,H,W,C] in 0..1) against prompts or class ids; higher is better.

Framework-free (no ComfyUI import); weights load offline from local paths. ``available()`` lists the names,
``load_verifier(name, path, device='cpu', dtype=torch.float32, **opts)`` loads one.
"""

from .base import ClassifierVerifier, EmbeddingCache, ImagePreprocess, Verifier
from .ensemble import EnsembleVerifier, rank_pool
from .features import SelfSupervisedVerifier
from .files import CorruptWeightsError, MissingWeightsError, VerifierWeightsError
from .registry import available, load_verifier

__all__ = ["Verifier", "ClassifierVerifier", "EmbeddingCache", "ImagePreprocess", "EnsembleVerifier", "rank_pool", "SelfSupervisedVerifier",
           "VerifierWeightsError", "MissingWeightsError", "CorruptWeightsError", "available", "load_verifier"]
