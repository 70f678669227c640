"""Exact forward transitions ("re-noising") between two noise levels of a model's own sampling space.

Search over paths (Ma, Tong et al. 2025, Sec. 3.2) moves a partly denoised sample back up the schedule with
fresh noise. The move must keep the marginal of the model's forward process, which differs by space:

- EDM / VE and ComfyUI's discrete (eps, v) models: ``x_sigma = x0 + sigma * eps``, so going from sigma_a
  up to sigma_b adds independent noise of variance ``sigma_b^2 - sigma_a^2`` (Karras et al. 2022, Eq. 1).
- Rectified flow (SD3, FLUX, Wan; ComfyUI's CONST): ``x_s = (1 - s) x0 + s eps``. From s_a to s_b the sample
  is scaled by ``r = (1 - s_b) / (1 - s_a)`` and gets noise of variance ``s_b^2 - r^2 s_a^2``
  (Liu et al. 2023, Eq. 1 read as a Gaussian forward process).

A move to the same level returns the sample untouched, also at s = 1 where the flow ratio is 0 / 0.
"""

import math

__all__ = ["SPACES", "edm_forward", "flow_forward", "forward_transition"]

SPACES = ("edm", "flow")


def _levels(sigma_from, sigma_to):
    a, b = float(sigma_from), float(sigma_to)
    if not (math.isfinite(a) and math.isfinite(b) and 0.0 <= a <= b):
        raise ValueError(f"re-noising goes up in noise: need finite 0 <= sigma_from <= sigma_to, got {a} -> {b}")
    return a, b


def edm_forward(x, sigma_from, sigma_to, noise):
    """EDM-type ``x0 + sigma * eps``: x at sigma_from -> a sample at sigma_to >= sigma_from."""
    a, b = _levels(sigma_from, sigma_to)
    if a == b:
        return x
    return x + math.sqrt(b * b - a * a) * noise


def flow_forward(x, sigma_from, sigma_to, noise):
    """Rectified-flow ``(1 - s) x0 + s eps``: x at s_from -> a sample at s_to >= s_from (both in [0, 1])."""
    a, b = _levels(sigma_from, sigma_to)
    if b > 1.0:
        raise ValueError(f"a rectified-flow noise level is at most 1, got {b}")
    if a == b:
        return x
    ratio = (1.0 - b) / (1.0 - a)
    return ratio * x + math.sqrt(max(b * b - (ratio * a) ** 2, 0.0)) * noise


def forward_transition(space):
    """The exact re-noising callable ``(x, sigma_from, sigma_to, noise) -> x`` of ``space`` ("edm" or "flow")."""
    if space == "edm":
        return edm_forward
    if space == "flow":
        return flow_forward
    raise ValueError(f"noise space must be one of {SPACES}, got {space!r}")
