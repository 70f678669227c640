"""What the core hands a host's ``generate``: the candidates themselves, not bare noise.

A search decides which candidates to sample; the host samples them. Each row of a chunk carries its
recipe, so a host knows which candidate it is sampling without looking at the noise: it reads the initial
noise from :attr:`Candidates.noise`, and any per-candidate randomness of its own (the fresh noise of a
stochastic sampler) from :attr:`Candidates.sampler_seeds`, which a seed candidate takes from its seed (so it
reproduces in a plain KSampler with that seed) and any other candidate from its recipe's stable key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from .noise import make_noise_batch

__all__ = ["Candidates"]


@dataclass(frozen=True)
class Candidates:
    """One chunk of candidates: ``recipes`` (row order) and one candidate's latent ``shape`` (batch 1)."""

    recipes: tuple
    shape: tuple
    _noise: list = field(default_factory=list, repr=False, compare=False)  # the noise, made once on first use

    def __post_init__(self) -> None:
        object.__setattr__(self, "recipes", tuple(self.recipes))
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))

    @classmethod
    def of(cls, recipes: Sequence, shape: Sequence[int]) -> "Candidates":
        return cls(tuple(recipes), tuple(shape))

    def __len__(self) -> int:
        return len(self.recipes)

    @property
    def noise(self) -> torch.Tensor:
        """The initial noise [B, ...], row k made by ``recipes[k]`` (bit-exact, see ``search.noise``)."""
        if not self._noise:
            self._noise.append(make_noise_batch(self.recipes, self.shape))
        return self._noise[0]

    @property
    def sampler_seeds(self) -> list:
        """Per row, the seed for the host's own random draws while sampling this candidate."""
        return [int(r.sampler_seed) for r in self.recipes]

    @property
    def keys(self) -> list:
        """Per row, the candidate's stable identity (equal recipes, equal keys; a cache key for hosts)."""
        return [int(r.key) for r in self.recipes]

    def select(self, rows: Sequence[int]) -> "Candidates":
        """The candidates of ``rows``, in that order (their noise is taken from this chunk's when made)."""
        out = Candidates(tuple(self.recipes[i] for i in rows), self.shape)
        if self._noise:
            out._noise.append(self._noise[0][list(rows)])
        return out
