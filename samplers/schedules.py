"""Sigma schedules (EDM / Karras et al. 2022) for k-diffusion-style samplers."""

import math

import torch


def append_zero(sigmas):
    return torch.cat([sigmas, sigmas.new_zeros([1])])


def karras_sigmas(n, sigma_min, sigma_max, rho=7.0, device="cpu"):
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


def check_sigmas(sigmas, name="sigmas"):
    """Raise a clear error unless ``sigmas`` is a 1-D, non-increasing, non-negative grid of >= 2 points."""
    if not torch.is_tensor(sigmas) or sigmas.ndim != 1 or sigmas.numel() < 2:
        raise ValueError(f"{name} must be a 1-D tensor of at least 2 sigmas (steps + 1), got {getattr(sigmas, 'shape', sigmas)!r}")
    if not torch.isfinite(sigmas).all() or (sigmas < 0).any():
        raise ValueError(f"{name} must be finite and >= 0, got {sigmas.tolist()}")
    if (sigmas[1:] > sigmas[:-1]).any():
        raise ValueError(f"{name} must be non-increasing, got {sigmas.tolist()}")
    return sigmas


def sigma_to_rf_time(sigma):
    """EDM sigma (x = x0 + sigma*eps) -> rectified-flow / SiT time s in [0, 1] (0 = data): s = sigma / (1 + sigma)."""
    return sigma / (1 + sigma) if not math.isinf(float(sigma)) else 1.0


def rf_time_to_sigma(s):
    """Rectified-flow / SiT time s in [0, 1) -> EDM sigma = s / (1 - s)."""
    if not (0 <= s < 1):
        raise ValueError(f"rectified-flow time must be in [0, 1), got {s}")
    return s / (1 - s)
