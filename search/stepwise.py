"""What the stepwise searches beyond Ma et al. share (FK steering, early pruning): the sampler's grid checked once,
the host's callables made a :class:`~noise_search.search.population.Stepper`, and a score function that counts its
verifier calls (the previews of a pruning or steering search cost verifier calls as well as NFE)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Optional, Sequence, Union

import torch

from .evaluate import call_score
from .population import CallableStepper

if TYPE_CHECKING:  # the types only
    from ..samplers.noise_space import NoiseSpace
    from .evaluate import Batch
    from .protocols import Denoise, Renoise, Score

__all__ = ["grid_of", "make_stepper", "CountingScore"]


def grid_of(sigmas: Union[torch.Tensor, Sequence[float]]) -> list[float]:
    """The sampler's sigma grid as floats: >= 2 finite sigmas, strictly decreasing, ending in 0 (steps + 1 entries)."""
    sig = [float(s) for s in (sigmas.tolist() if torch.is_tensor(sigmas) else sigmas)]
    if len(sig) < 2 or any(not math.isfinite(s) or s < 0 for s in sig) or any(b >= a for a, b in zip(sig, sig[1:])) \
            or sig[-1] != 0.0:
        raise ValueError(f"sigmas must be a strictly decreasing grid of >= 2 finite sigmas ending in 0 (steps + 1 "
                         f"entries, as a sampler's schedule), got {sig}")
    return sig


def make_stepper(denoise: Denoise, space: Optional[NoiseSpace], sig: Sequence[float], step_nfe: Optional[Callable],
                 prepare: Optional[Callable], renoise: Optional[Renoise], decode: Optional[Callable],
                 what: str, renoises: bool = True) -> CallableStepper:
    """A CallableStepper over the host's callables; the start from pure noise needs ``space`` or the host's ``prepare``,
    and a search that re-noises (``renoises``) needs ``space`` or the host's ``renoise``: there is no default a flow
    model could fall into."""
    if not callable(denoise):
        raise ValueError(f"{what} needs denoise(x, sigma_from, sigma_to), the host's one solver step; got {denoise!r}")
    if renoises and space is None and renoise is None:
        raise ValueError(f"{what} needs the model's noise space (space=EDM or FLOW from samplers.noise_space) or the "
                         "host's own renoise: a flow model re-noised as EDM would sample from the wrong marginals")
    if space is None and prepare is None:
        raise ValueError(f"{what} needs the model's noise space (space=EDM or FLOW from samplers.noise_space) or the "
                         "host's own prepare(noise): the start from pure noise differs between them")
    return CallableStepper(denoise, space, sig[0], prepare, step_nfe, decode, renoise)


class CountingScore:
    """``score`` wrapped: each call is checked (``call_score``: one finite score per row) and its rows counted."""

    def __init__(self, score: Score) -> None:
        self.score, self.calls = score, 0

    def __call__(self, batch: Batch) -> torch.Tensor:
        s = call_score(self.score, batch)
        self.calls += int(s.numel())
        return s
