"""What a search returns: every candidate with its recipe and score, the winner, the top-K."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

from .noise import Chained, own_dict, recipe_from_dict, recipe_to_dict

if TYPE_CHECKING:  # the types only
    import torch

    from .noise import Recipe

__all__ = ['Candidate', 'history_dicts', 'history_from_dicts', 'rank_key', 'SearchResult']


@dataclass
class Candidate:
    """One scored candidate. ``nfe`` is the search NFE spent when it was scored (the paper's x-axis)."""

    index: int
    recipe: object
    score: float
    nfe: int
    round: int = 0
    scores: dict = field(default_factory=dict)  # per-verifier raw scores, when an ensemble scored it

    def to_dict(self, recipe: Optional[dict] = None) -> dict:
        """``recipe``: the recipe's dict when the caller wrote it (``history_dicts``); else its full form."""
        d = {"index": self.index, "recipe": recipe_to_dict(self.recipe) if recipe is None else recipe, "score": self.score, "nfe": self.nfe, "round": self.round}
        if self.scores:
            d["scores"] = self.scores
        return d

    @classmethod
    def from_dict(cls, d: dict, recipe: Optional[Recipe] = None) -> Candidate:
        """``recipe``: the candidate's recipe when the caller built it (``history_from_dicts``)."""
        recipe = recipe_from_dict(d["recipe"]) if recipe is None else recipe
        return cls(int(d["index"]), recipe, float(d["score"]), int(d["nfe"]), int(d.get("round", 0)), dict(d.get("scores", {})))


def history_dicts(history: Sequence[Candidate]) -> list[dict]:
    """The candidates as dicts, in linear size: a candidate whose recipe is made from an earlier candidate's (a
    zero-order neighbour from the pivot it won as, a path branch from the branch it continues) is written as its
    own fields plus ``source_candidate``, that candidate's index, instead of its whole lineage. Written in full,
    every neighbour would repeat every pivot before it: 95 MB of JSON at 1,000 iterations."""
    seen, out = {}, []
    for c in history:
        src = c.recipe.source if isinstance(c.recipe, Chained) else None
        ref = {**own_dict(c.recipe), "source_candidate": seen[src]} if src is not None and src in seen else None
        out.append(c.to_dict(recipe=ref))
        seen.setdefault(c.recipe, c.index)
    return out


def history_from_dicts(rows: Sequence[dict]) -> list[Candidate]:
    """The inverse of ``history_dicts``: ``source_candidate`` must name an earlier candidate."""
    history = []
    for i, row in enumerate(rows):
        rd = row["recipe"]
        if isinstance(rd, dict) and "source_candidate" in rd:
            j = rd["source_candidate"]
            if not isinstance(j, int) or isinstance(j, bool) or not 0 <= j < i:
                raise ValueError(f"history entry {i}: source_candidate must be the index of an earlier candidate "
                                 f"(0..{i - 1}), got {j!r}")
            row = {**row, "recipe": None}
            c = Candidate.from_dict(row, recipe=recipe_from_dict({k: v for k, v in rd.items() if k != "source_candidate"},
                                                                  source=history[j].recipe))
        else:
            c = Candidate.from_dict(row)
        history.append(c)
    return history


def rank_key(c: Candidate) -> tuple[float, int]:
    """Ordering of candidates: higher score first, then earlier index (stable, deterministic tie-break)."""
    return (-c.score, c.index)


@dataclass
class SearchResult:
    algorithm: str
    params: dict
    history: list
    nfe: int  # model evaluations per sample, summed over candidates (the paper's NFE)
    cfg_multiplier: int = 1
    top_k: list = field(default_factory=list)  # Candidates, best first
    top_k_samples: dict = field(default_factory=dict)  # name -> tensor [K, ...] aligned with top_k
    completed: bool = True
    resumed: int = 0  # candidates taken over from an interrupted run (``resume_from``) instead of re-scored

    @property
    def winner(self) -> Candidate:
        if not self.top_k:
            raise ValueError(f"{self.algorithm}: no candidate was evaluated, so there is no winner")
        return self.top_k[0]

    @property
    def best(self) -> Candidate:
        """The best candidate of the whole history (``rank_key``), kept in the top-K or not: after an ensemble's
        final re-ranking (``search.scoring``) it can be one whose sample was not kept."""
        if not self.history:
            raise ValueError(f"{self.algorithm}: no candidate was evaluated, so there is no best")
        return min(self.history, key=rank_key)

    @property
    def forward_passes(self) -> int:
        """Network forward passes per sample counted with CFG's doubling (cond + uncond)."""
        return self.nfe * self.cfg_multiplier

    def winner_sample(self, name: str = "samples") -> torch.Tensor:
        return self.top_k_samples[name][:1]

    def curve(self) -> list[tuple[int, float]]:
        """Best score so far against search NFE: [(nfe, best)] at every scored candidate."""
        best, out = -float("inf"), []
        for c in sorted(self.history, key=lambda c: (c.nfe, c.index)):
            best = max(best, c.score)
            out.append((c.nfe, best))
        return out

    def to_dict(self) -> dict:
        d = {
            "algorithm": self.algorithm,
            "params": self.params,
            "completed": self.completed,
            "nfe": self.nfe,
            "forward_passes": self.forward_passes,
            "cfg_multiplier": self.cfg_multiplier,
            "winner": self.winner.to_dict() if self.top_k else None,
            "top_k": [c.to_dict() for c in self.top_k],
            "history": history_dicts(self.history),
        }
        if self.resumed:
            d["resumed"] = self.resumed
        return d

    @classmethod
    def from_dict(cls, d: dict, top_k_samples: Optional[Mapping[str, torch.Tensor]] = None) -> SearchResult:
        """The inverse of ``to_dict`` (e.g. an interrupted run's JSON); samples are not in the JSON, so pass
        ``top_k_samples`` (name -> tensor [K, ...]) to resume from it."""
        try:
            history = history_from_dicts(d["history"])
            by_index = {c.index: c for c in history}
            top_k = [by_index[int(c["index"])] for c in d["top_k"]]
            r = cls(str(d["algorithm"]), dict(d["params"]), history, int(d["nfe"]), int(d.get("cfg_multiplier", 1)),
                    top_k, dict(top_k_samples or {}), bool(d.get("completed", False)), int(d.get("resumed", 0)))
        except (KeyError, TypeError) as err:
            raise ValueError(f"not a search result: missing or malformed field {err}; expected the JSON written by "
                             f"SearchResult.to_json (algorithm, params, nfe, top_k, history)") from err
        if [c.index for c in history] != list(range(len(history))):
            raise ValueError("not a search result: history indices must be 0, 1, 2, ... in order")
        return r

    def to_json(self, **kw: Any) -> str:
        return json.dumps(self.to_dict(), **kw)
