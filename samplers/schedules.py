"""Sigma schedules (EDM / Karras et al. 2022) for k-diffusion-style samplers."""

from __future__ import annotations

import math
from typing import Sequence, Union

import torch

from .noise_space import EDM

__all__ = ['append_zero', 'karras_sigmas', 'check_sigmas', 'sigma_to_rf_time', 'rf_time_to_sigma', 'EARLY_TIME',
           'EARLY_TIME_TOLERANCE', 'early_prediction_call']


def append_zero(sigmas: torch.Tensor) -> torch.Tensor:
    return torch.cat([sigmas, sigmas.new_zeros([1])])


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0,
                  device: Union[str, torch.device] = "cpu") -> torch.Tensor:
    """EDM's rho-spaced grid of ``n`` sigmas from sigma_max to sigma_min, plus a final 0 (Karras 2022, Eq. 5)."""
    if int(n) != n or n < 1:
        raise ValueError(f"steps must be an integer >= 1, got {n!r}")
    if not (0 < sigma_min < sigma_max):
        raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
    ramp = torch.linspace(0, 1, int(n), dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    if n == 1:
        sigmas = torch.tensor([float(sigma_max)], dtype=torch.float64)
    return append_zero(sigmas).to(torch.float32).to(device)


def check_sigmas(sigmas: torch.Tensor, name: str = "sigmas") -> torch.Tensor:
    """Raise a clear error unless ``sigmas`` is a 1-D, non-increasing, non-negative grid of >= 2 points."""
    if not torch.is_tensor(sigmas) or sigmas.ndim != 1 or sigmas.numel() < 2:
        raise ValueError(f"{name} must be a 1-D tensor of at least 2 sigmas (steps + 1), got {getattr(sigmas, 'shape', sigmas)!r}")
    if not torch.isfinite(sigmas).all() or (sigmas < 0).any():
        raise ValueError(f"{name} must be finite and >= 0, got {sigmas.tolist()}")
    if (sigmas[1:] > sigmas[:-1]).any():
        raise ValueError(f"{name} must be non-increasing, got {sigmas.tolist()}")
    return sigmas


def sigma_to_rf_time(sigma: float) -> float:
    """EDM sigma (x = x0 + sigma*eps) -> rectified-flow / SiT time s in [0, 1] (0 = data): ``EDM.to_time``."""
    return EDM.to_time(sigma)


def rf_time_to_sigma(s: float) -> float:
    """Rectified-flow / SiT time s in [0, 1) -> EDM sigma = s / (1 - s): ``EDM.from_time``."""
    return EDM.from_time(s)


EARLY_TIME = 0.4  # Ma, Tong et al. 2025, Sec. 3.1: the self-supervised verifier reads the x0 prediction at sigma = 0.4 (SiT time)
EARLY_TIME_TOLERANCE = 0.1


def early_prediction_call(call_times: Sequence[float], target: float = EARLY_TIME, rule: str = "nearest",
                          allow_last: bool = False) -> tuple[int, float]:
    """Which model call's x0 prediction the self-supervised verifier compares with the final sample.

    ``call_times``: the SiT / rectified-flow time (0 = data, 1 = noise) of each model call of one sampling run,
    in order. ``rule``: "nearest" (the call nearest ``target``) or "first_below" (the first at or below it).
    Returns ``(index, time)``. The last call's prediction is the final sample itself, so the verifier would
    score cos(phi(x), phi(x)) = 1 for every candidate and the search would be a random pick: such a
    schedule is refused, naming the call it would have used (``allow_last=True`` returns it, for callers that
    record the prediction without scoring on it)."""
    times = [float(t) for t in call_times]
    if not times:
        raise ValueError("the schedule makes no model call; the self-supervised verifier needs at least two")
    if rule == "nearest":
        index = min(range(len(times)), key=lambda i: (abs(times[i] - target), i))
    elif rule == "first_below":
        index = next((i for i, t in enumerate(times) if t <= target), len(times) - 1)
    else:
        raise ValueError(f"rule must be 'nearest' or 'first_below', got {rule!r}")
    if index == len(times) - 1 and not allow_last:
        raise ValueError(f"the self-supervised verifier needs an x0 prediction before the final one: on this schedule of "
                         f"{len(times)} model call(s) at SiT times {[round(t, 3) for t in times]} the call for time {target} "
                         f"is the last, whose prediction is the final sample, so every candidate would score 1; "
                         f"use more steps (a call above and one below time {target}) or another verifier")
    return index, times[index]
