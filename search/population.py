"""A population of partly denoised samples, advanced step by step: the seam for searches that act during sampling.

Best-of-N and zero-order search only need whole trajectories (``generate``). Search over paths (Ma, Tong et al.
2025, Sec. 3.2), and the particle and pruning methods that act on intermediate states, need the trajectory in
pieces: advance every row from grid step i to j, look at each row's clean prediction, re-noise rows back up, keep
some rows and clone others. A :class:`Stepper` is the host's half (one solver step, its cost, the start, the
decode); a :class:`Population` is the search's half (the states with each row's recipe, which records where the
row came from, so a clone or a branch keeps its lineage and any row re-runs from its recipe).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional, Protocol, Sequence, Union

import torch

from ..samplers.noise_space import NoiseSpace
from .candidates import Candidates

if TYPE_CHECKING:  # the types only
    from .evaluate import Batch
    from .noise import Recipe

__all__ = ["Stepper", "CallableStepper", "Population", "span_nfe"]


class Stepper(Protocol):
    """The host's sampler, one step at a time, in the model's own sigma space."""

    space: NoiseSpace

    def prepare(self, noise: torch.Tensor) -> torch.Tensor:
        """Initial noise (unit Gaussian) -> the states at the grid's first sigma."""

    def step(self, x: torch.Tensor, sigma_from: float, sigma_to: float) -> torch.Tensor:
        """One solver step of every row."""

    def step_nfe(self, sigma_from: float, sigma_to: float) -> int:
        """Model calls one step costs per row."""

    def decode(self, x0: torch.Tensor) -> Union[Batch, torch.Tensor]:
        """Clean states -> what the verifier scores (a Batch or an IMAGE tensor)."""

    def renoise(self, x: torch.Tensor, sigma_from: float, sigma_to: float, noise: torch.Tensor) -> torch.Tensor:
        """The exact forward transition up the schedule in the model's space (``space.renoise`` or the host's own)."""


@dataclass
class CallableStepper:
    """A :class:`Stepper` from plain callables (the toy world's and the nodes' ``denoise`` and friends).

    ``prepare`` defaults to the space's start from pure noise at the grid's first sigma, ``step_nfe`` to one call,
    ``decode`` to the identity."""

    denoise: Callable
    space: NoiseSpace
    first_sigma: float
    prepare_fn: Optional[Callable] = None
    step_nfe_fn: Optional[Callable] = None
    decode_fn: Optional[Callable] = None
    renoise_fn: Optional[Callable] = None

    def prepare(self, noise: torch.Tensor) -> torch.Tensor:
        return self.prepare_fn(noise) if self.prepare_fn is not None else self.space.initial(noise, self.first_sigma)

    def step(self, x: torch.Tensor, sigma_from: float, sigma_to: float) -> torch.Tensor:
        return self.denoise(x, sigma_from, sigma_to)

    def step_nfe(self, sigma_from: float, sigma_to: float) -> int:
        return int(self.step_nfe_fn(sigma_from, sigma_to)) if self.step_nfe_fn is not None else 1

    def decode(self, x0: torch.Tensor) -> Union[Batch, torch.Tensor]:
        return self.decode_fn(x0) if self.decode_fn is not None else x0

    def renoise(self, x: torch.Tensor, sigma_from: float, sigma_to: float, noise: torch.Tensor) -> torch.Tensor:
        """The host's exact re-noising when it has its own (ComfyUI's), else the space's."""
        fn = self.renoise_fn if self.renoise_fn is not None else self.space.renoise
        return fn(x, sigma_from, sigma_to, noise)


@dataclass
class Population:
    """States ``x`` [N, ...] at grid step ``step``; row k's identity and lineage is ``recipes[k]``, and ``keys[k]``
    the per-row key the search derives its re-noising seeds from."""

    x: torch.Tensor
    recipes: list
    keys: list
    step: int

    def __len__(self) -> int:
        return len(self.recipes)

    @classmethod
    def start(cls, stepper: Stepper, candidates: Candidates, keys: Sequence[int]) -> "Population":
        """The candidates' initial noise, prepared at grid step 0."""
        return cls(stepper.prepare(candidates.noise), list(candidates.recipes), list(keys), 0)

    def take(self, rows: Sequence[int]) -> "Population":
        """Rows ``rows`` in that order; a row named twice is cloned, with its lineage (its recipe) kept."""
        rows = list(rows)
        return Population(self.x[rows], [self.recipes[i] for i in rows], [self.keys[i] for i in rows], self.step)

    @staticmethod
    def cat(parts: Sequence["Population"]) -> "Population":
        """Populations at the same step, stacked."""
        steps = {p.step for p in parts}
        if len(steps) != 1:
            raise ValueError(f"only populations at one grid step can be stacked, got steps {sorted(steps)}")
        return Population(torch.cat([p.x for p in parts]), [r for p in parts for r in p.recipes],
                          [k for p in parts for k in p.keys], steps.pop())

    def advance(self, stepper: Stepper, sigmas: Sequence[float], to_step: int) -> "Population":
        """Every row stepped from its grid step down to ``to_step``."""
        x = self.x
        for s in range(self.step, to_step):
            x = stepper.step(x, sigmas[s], sigmas[s + 1])
        return Population(x, self.recipes, self.keys, to_step)

    def predict_x0(self, stepper: Stepper, sigmas: Sequence[float]) -> torch.Tensor:
        """Each row's clean prediction: one solver step from its sigma to 0 (verifiers cannot read noisy states)."""
        return stepper.step(self.x, sigmas[self.step], 0.0)

    def renoised(self, stepper: Stepper, sigmas: Sequence[float], to_step: int, recipes: Sequence[Recipe],
                 keys: Sequence[int], shape: Sequence[int]) -> "Population":
        """Every row moved back up to grid step ``to_step`` <= its own with fresh noise from ``recipes`` (the branches'
        recipes, which record their parent), exactly in the model's space."""
        noise = Candidates.of(recipes, shape).noise.to(self.x)
        x = stepper.renoise(self.x, sigmas[self.step], sigmas[to_step], noise)
        return Population(x, list(recipes), list(keys), to_step)


def span_nfe(stepper: Stepper, sigmas: Sequence[float], i: int, j: int) -> int:
    """Model calls per row to step from grid step i to j."""
    return sum(int(stepper.step_nfe(sigmas[s], sigmas[s + 1])) for s in range(i, j))

