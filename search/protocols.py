"""The callables that cross the seam between a search and its host, as ``typing.Protocol`` types.

A host (ComfyUI's nodes, the toy world, a test) hands a search plain callables; the search hands back a
:class:`~noise_search.search.result.SearchResult`. Nothing else crosses: the host never sees search state, the
search never sees the host's objects. The stepwise half of the seam (``Stepper``) is in ``search.population``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, Sequence, Union

import torch

if TYPE_CHECKING:  # the types only, for readers and checkers
    from .candidates import Candidates
    from .evaluate import Batch
    from .result import Candidate, SearchResult

__all__ = ["Generate", "Score", "Denoise", "Renoise", "OnStep", "OnScored", "OnInterrupt"]


class Generate(Protocol):
    """Sample every candidate of a chunk (whole trajectories): one row per candidate, in order."""

    def __call__(self, candidates: "Candidates", /) -> Union["Batch", torch.Tensor]: ...


class Score(Protocol):
    """One finite score per candidate of a batch, higher is better (a verifier, or ``search.scoring.PooledScorer``)."""

    def __call__(self, batch: "Batch", /) -> torch.Tensor: ...


class Denoise(Protocol):
    """One solver step of every row from ``sigma_from`` down to ``sigma_to``, in the model's own sigma space."""

    def __call__(self, x: torch.Tensor, sigma_from: float, sigma_to: float, /) -> torch.Tensor: ...


class Renoise(Protocol):
    """The exact forward transition of every row from ``sigma_from`` up to ``sigma_to`` with ``noise``."""

    def __call__(self, x: torch.Tensor, sigma_from: float, sigma_to: float, noise: torch.Tensor, /) -> torch.Tensor: ...


class OnStep(Protocol):
    """Progress: ``done`` of ``total`` candidates; a host may raise here to cancel (ComfyUI's interrupt)."""

    def __call__(self, done: int, total: int, /) -> None: ...


class OnScored(Protocol):
    """A chunk's candidates were just recorded (live charts, an ensemble's pool)."""

    def __call__(self, candidates: Sequence["Candidate"], result: "SearchResult", /) -> None: ...


class OnInterrupt(Protocol):
    """The search stops early (cancel, error): the partial result, to keep the best so far, before it propagates."""

    def __call__(self, partial: "SearchResult", /) -> None: ...
