"""Statistics of the fidelity study: Spearman's rho over average ranks (``verifiers.ensemble.ranks``, the pack's one
ranking), mean and standard error, and the best score of a best-so-far curve within a budget."""

import math

import torch

from ...verifiers.ensemble import ranks


def pearson(a, b):
    a, b = torch.as_tensor(a, dtype=torch.float64).flatten(), torch.as_tensor(b, dtype=torch.float64).flatten()
    if a.numel() != b.numel() or a.numel() < 2:
        raise ValueError(f"need two equally long samples of >= 2 values, got {a.numel()} and {b.numel()}")
    a, b = a - a.mean(), b - b.mean()
    den = (a.pow(2).sum() * b.pow(2).sum()).sqrt()
    if den == 0:
        return None  # a constant sample has no correlation
    return float((a @ b / den).clamp(-1, 1))


def spearman(a, b):
    """Spearman's rho (Pearson correlation of average ranks) in [-1, 1]; None when a sample is constant."""
    return pearson(ranks(a), ranks(b))


def mean_se(values):
    v = torch.as_tensor([float(x) for x in values], dtype=torch.float64)
    se = float(v.std() / math.sqrt(v.numel())) if v.numel() > 1 else 0.0
    return {"mean": float(v.mean()), "se": se, "n": int(v.numel())}


def best_at(curve, nfe):
    """Best score of a best-so-far curve [(nfe, best)] within ``nfe``; None before the first candidate."""
    vals = [b for n, b in curve if n <= nfe]
    return vals[-1] if vals else None

