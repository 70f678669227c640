"""Verifier ensembles: Ma et al.'s mean-rank rule and a weighted z-score.

Both combine each member's raw scores *relative to a pool of candidates*, so an ensemble score is
pool-relative: the same image gets a different score in a different pool.

Rules (higher is better for both):
- ``mean_rank`` (the paper's): per member, rank the pool ascending (worst = 1, best = N); tied raw scores share
  the average of their ranks (so ties are symmetric and the result does not depend on the order candidates
  arrive in); the score is the unweighted mean of a candidate's member ranks. Equal mean ranks are left equal:
  the search core breaks them deterministically by candidate index (earlier first, ``search.result.rank_key``).
- ``zscore``: per member ``(s - mean) / std`` over the pool (population std; a member whose scores are all equal
  contributes 0), combined as ``sum(w * z) / sum(w)`` with ``weights`` (default all 1).

How a search uses it: ``score(images, ...)`` ranks within the batch it is given. A chunked search must rank
against every candidate seen so far; ``search.scoring.PooledScorer`` keeps that pool (the one place that does)
and re-ranks the whole pool at the end. ``rank_pool(raw_scores_dict)`` is the pure function behind both.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence, Union

import torch

from .base import Verifier, broadcast_conditions, check_images

__all__ = ['RULES', 'unique_names', 'ranks', 'zscores', 'rank_pool', 'EnsembleVerifier']

RULES = ("mean_rank", "zscore")


def unique_names(names: Sequence[str]) -> list[str]:
    """Member names made unique in order: a repeated ``name`` becomes ``name#2``, ``name#3``, ... (the one place
    ensemble members are named, for the Verifier ensembles here and the search's pooled scorer)."""
    out = []
    for n in names:
        name, k = n, 2
        while name in out:
            name, k = f"{n}#{k}", k + 1
        out.append(name)
    return out


def ranks(scores: Union[torch.Tensor, Sequence[float]]) -> torch.Tensor:
    """Ascending ranks 1..N (best = N); ties share their average rank. Exact in float64."""
    s = torch.as_tensor(scores, dtype=torch.float64).flatten()
    if not torch.isfinite(s).all():
        raise ValueError(f"cannot rank non-finite scores: {s.tolist()}")
    srt = torch.sort(s).values
    below = torch.searchsorted(srt, s, right=False).double()
    upto = torch.searchsorted(srt, s, right=True).double()
    return below + (upto - below + 1) / 2


def zscores(scores: Union[torch.Tensor, Sequence[float]]) -> torch.Tensor:
    s = torch.as_tensor(scores, dtype=torch.float64).flatten()
    if not torch.isfinite(s).all():
        raise ValueError(f"cannot standardise non-finite scores: {s.tolist()}")
    # all-equal scores carry no information: exactly 0, not (rounding error of the mean) / (rounding-size std),
    # which for [0.1, 0.1, 0.1] gives a std of 1e-17 and z-scores of order 1
    if s.numel() < 2 or bool((s == s[0]).all()):
        return torch.zeros_like(s)
    sd = s.std(unbiased=False)
    return (s - s.mean()) / sd


def rank_pool(raw: Mapping[str, Union[torch.Tensor, Sequence[float]]], rule: str = "mean_rank",
              weights: Optional[Mapping[str, float]] = None) -> torch.Tensor:
    """Combine ``{member name: raw scores [N]}`` over the pool of N candidates -> float64 [N] (higher is better)."""
    if rule not in RULES:
        raise ValueError(f"ensemble rule must be one of {RULES}, got {rule!r}")
    if not raw:
        raise ValueError("rank_pool needs the raw scores of at least one verifier")
    cols = {k: torch.as_tensor(v, dtype=torch.float64).flatten() for k, v in raw.items()}
    sizes = {k: v.numel() for k, v in cols.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"every verifier must score the same candidates; got pool sizes {sizes}")
    if rule == "mean_rank":
        return torch.stack([ranks(v) for v in cols.values()]).mean(0)
    w = weights or {}
    ws = torch.tensor([float(w.get(k, 1.0)) for k in cols], dtype=torch.float64)
    if (ws < 0).any() or ws.sum() <= 0:
        raise ValueError(f"ensemble weights must be >= 0 with a positive sum, got {dict(zip(cols, ws.tolist()))}")
    z = torch.stack([zscores(v) for v in cols.values()])
    return (ws[:, None] * z).sum(0) / ws.sum()


class EnsembleVerifier(Verifier):
    """Several verifiers combined by ``rule`` ('mean_rank' or 'zscore') within a pool (see the module doc)."""

    name = "ensemble"

    def __init__(self, members: Union[dict[str, Verifier], Sequence[Verifier]], rule: str = "mean_rank",
                 weights: Optional[Mapping[str, float]] = None, weights_id: str = "") -> None:
        if rule not in RULES:
            raise ValueError(f"ensemble rule must be one of {RULES}, got {rule!r}")
        if isinstance(members, dict):
            items = list(members.items())
        else:
            members = list(members)
            items = list(zip(unique_names([m.name for m in members]), members))
        if not items:
            raise ValueError("an ensemble needs at least one verifier")
        for k, m in items:
            if not isinstance(m, Verifier):
                raise TypeError(f"ensemble member {k!r} is a {type(m).__name__}, not a Verifier")
        self.members = dict(items)
        if weights is not None:
            unknown = sorted(set(weights) - set(self.members))
            if unknown:
                raise ValueError(f"weights for unknown members {unknown}; members are {list(self.members)}")
        first = items[0][1]
        super().__init__(weights_id or "+".join(self.members), first.device, first.dtype, first.batch_size, 0)
        self.rule, self.weights = rule, dict(weights or {})
        self.name = f"ensemble_{rule}"
        self.needs_early = any(m.needs_early for m in self.members.values())
        kinds = {m.condition for m in self.members.values()} - {None}
        self.condition = kinds.pop() if len(kinds) == 1 else (None if not kinds else "mixed")

    def describe(self) -> dict:
        d = super().describe()
        d["rule"], d["members"] = self.rule, {k: m.describe() for k, m in self.members.items()}
        return d

    @torch.no_grad()
    def raw_scores(self, images: torch.Tensor, conditions: Union[str, int, Sequence, torch.Tensor, None] = None,
                   early: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        """``{member: raw scores [B]}`` of this batch (each member batches internally)."""
        images = check_images(images)
        broadcast_conditions(conditions, images.shape[0])
        if self.needs_early and early is None:
            raise ValueError(f"{self.name}: member(s) {[k for k, m in self.members.items() if m.needs_early]} need the early x0 prediction (early=...)")
        out = {}
        for k, m in self.members.items():
            conds = conditions if m.condition is not None else None
            out[k] = m.score(images, conds, early if m.needs_early else None).double()
        return out

    def rank_pool(self, raw: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return rank_pool(raw, self.rule, self.weights)

    def score(self, images: torch.Tensor, conditions: Union[str, int, Sequence, torch.Tensor, None] = None,
              early: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Scores of this batch ranked within the batch (a pool of its own); see ``score_pool`` for chunked search."""
        return self.rank_pool(self.raw_scores(images, conditions, early)).float()

    __call__ = score
