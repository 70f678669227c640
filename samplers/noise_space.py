"""A model's noise space: how its samples at a noise level are made, re-noised and timed.

Two families cover the hosts the pack serves:

- ``EDM``: EDM / VE models and ComfyUI's discrete (eps, v) models, ``x_sigma = x0 + sigma * eps`` (Karras et al.
  2022, Eq. 1; ComfyUI's discrete models sample in this form too, with sigma from their table).
- ``FLOW``: rectified flow (SD3, FLUX, Wan; ComfyUI's CONST), ``x_s = (1 - s) x0 + s * eps`` with s in [0, 1]
  (Liu et al. 2023, Eq. 1 read as a Gaussian forward process).

Each :class:`NoiseSpace` gives, without any host:

- ``initial(noise, sigma)``: a sample at ``sigma`` of the zero image (the start of text-to-image sampling);
- ``renoise(x, sigma_from, sigma_to, noise)``: the exact forward transition up the schedule, which keeps the
  forward marginal (search over paths, Ma, Tong et al. 2025, Sec. 3.2). From a to b: EDM adds noise of variance
  b^2 - a^2; flow scales by r = (1 - b) / (1 - a) and adds noise of variance b^2 - r^2 a^2. A move to the same level
  returns the sample untouched (also at s = 1, where the flow ratio is 0 / 0);
- ``resample(x0, sigma, noise)``: a fresh sample at ``sigma`` around a clean prediction (sCM's multistep
  re-noising, Lu & Song 2024, Sec. 2);
- ``to_time(sigma)`` / ``from_time(t)``: the SiT / rectified-flow time of the search paper (0 = data, 1 = noise),
  s = sigma / (1 + sigma) for EDM, s itself for flow.

Every caller names the space: there is no default a flow model could fall into.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Union

if TYPE_CHECKING:  # the types only: this module runs without torch
    import torch

__all__ = ["NoiseSpace", "EDM", "FLOW", "SPACES", "space_named", "edm_forward", "flow_forward", "forward_transition"]


def _levels(sigma_from, sigma_to):
    a, b = float(sigma_from), float(sigma_to)
    if not (math.isfinite(a) and math.isfinite(b) and 0.0 <= a <= b):
        raise ValueError(f"re-noising goes up in noise: need finite 0 <= sigma_from <= sigma_to, got {a} -> {b}")
    return a, b


def edm_forward(x: torch.Tensor, sigma_from: float, sigma_to: float, noise: torch.Tensor) -> torch.Tensor:
    """EDM-type ``x0 + sigma * eps``: x at sigma_from -> a sample at sigma_to >= sigma_from."""
    a, b = _levels(sigma_from, sigma_to)
    if a == b:
        return x
    return x + math.sqrt(b * b - a * a) * noise


def flow_forward(x: torch.Tensor, sigma_from: float, sigma_to: float, noise: torch.Tensor) -> torch.Tensor:
    """Rectified-flow ``(1 - s) x0 + s eps``: x at s_from -> a sample at s_to >= s_from (both in [0, 1])."""
    a, b = _levels(sigma_from, sigma_to)
    if b > 1.0:
        raise ValueError(f"a rectified-flow noise level is at most 1, got {b}")
    if a == b:
        return x
    ratio = (1.0 - b) / (1.0 - a)
    return ratio * x + math.sqrt(max(b * b - (ratio * a) ** 2, 0.0)) * noise


@dataclass(frozen=True)
class NoiseSpace:
    """One of the model noise spaces of the module docstring (``EDM`` or ``FLOW``)."""

    name: str

    def __post_init__(self) -> None:
        if self.name not in ("edm", "flow"):
            raise ValueError(f"noise space must be one of {SPACES}, got {self.name!r}")

    @property
    def is_flow(self) -> bool:
        return self.name == "flow"

    def initial(self, noise: torch.Tensor, sigma: float) -> torch.Tensor:
        """The start of sampling from pure noise at ``sigma`` (EDM: sigma * noise; flow: s * noise, the zero image's
        (1 - s) * 0 + s * noise)."""
        return noise * float(sigma)

    def renoise(self, x: torch.Tensor, sigma_from: float, sigma_to: float, noise: torch.Tensor) -> torch.Tensor:
        """The exact forward transition from ``sigma_from`` up to ``sigma_to``."""
        return (flow_forward if self.is_flow else edm_forward)(x, sigma_from, sigma_to, noise)

    def resample(self, x0: torch.Tensor, sigma: Union[float, torch.Tensor], noise: torch.Tensor) -> torch.Tensor:
        """A fresh sample at ``sigma`` around the clean ``x0``."""
        return (1 - sigma) * x0 + sigma * noise if self.is_flow else x0 + sigma * noise

    def to_time(self, sigma: float) -> float:
        """SiT / rectified-flow time (0 = data, 1 = noise) of a sigma of this space."""
        s = float(sigma)
        if self.is_flow:
            return s
        return 1.0 if math.isinf(s) else s / (1.0 + s)

    def from_time(self, t: float) -> float:
        """The sigma of this space at SiT time ``t`` (EDM needs t < 1: sigma = t / (1 - t))."""
        t = float(t)
        if not 0.0 <= t <= 1.0 or (not self.is_flow and t == 1.0):
            raise ValueError(f"rectified-flow time must be in [0, {'1]' if self.is_flow else '1)'}, got {t}")
        return t if self.is_flow else t / (1.0 - t)


EDM = NoiseSpace("edm")
FLOW = NoiseSpace("flow")
SPACES = ("edm", "flow")


def space_named(name: str) -> NoiseSpace:
    """``EDM`` or ``FLOW`` by name."""
    if name not in SPACES:
        raise ValueError(f"noise space must be one of {SPACES}, got {name!r}")
    return FLOW if name == "flow" else EDM


def forward_transition(space: Union[str, NoiseSpace]) -> Callable[[torch.Tensor, float, float, torch.Tensor], torch.Tensor]:
    """The exact re-noising callable ``(x, sigma_from, sigma_to, noise) -> x`` of ``space`` (a name or a NoiseSpace)."""
    return (space if isinstance(space, NoiseSpace) else space_named(space)).renoise
