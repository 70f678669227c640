"""Scoring candidates: one or more verifiers, pooled over every candidate a search has scored.

Ma, Tong et al. 2025 (Sec. 3.1, "verifier ensembles") combine verifiers by their mean rank over the candidates.
A chunked search sees its candidates a chunk at a time, so an ensemble score is relative to the pool of every
candidate scored so far, and an earlier candidate's score moves as later ones arrive. This module is the one
place that keeps that pool (``verifiers.ensemble.rank_pool`` is the rule itself):

1. ``scorer(batch)``: the members score the chunk once; the chunk comes back ranked against the pool so far;
2. ``scorer.commit(cands)`` (the search's ``on_scored``): the chunk joins the pool and each candidate keeps its
   members' raw scores;
3. ``scorer.rerank(result)`` at the end: every candidate's final score against the whole pool, the kept top-K
   re-ordered. The winner is then the best of the final scores, which may be a candidate whose sample was not
   kept (a host re-renders it from its recipe).

With one verifier the score is its raw score and nothing is pooled. ``rank_batch`` ranks a set of images once
(the Verifier Score node), ``score_table`` prints a search's result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence, Union

import torch

from ..verifiers.ensemble import RULES, rank_pool, unique_names
from .frames import FrameSpec, aggregate, select_frames
from .result import Candidate, SearchResult, rank_key

if TYPE_CHECKING:  # the types only
    from .evaluate import Batch

__all__ = ["PooledScorer", "unique_names", "condition_for", "rank_batch", "score_table", "batch_table"]


def condition_for(verifier: Any, prompt: str, class_id: int,
                  prompt_input: str = "verifier_prompt") -> Optional[Union[str, int]]:
    """What ``verifier`` scores against: the prompt, the class id or nothing, by its ``condition`` kind; a missing
    one is an error naming the input to fill."""
    kind = getattr(verifier, "condition", None)
    if kind == "prompt":
        if not (prompt or "").strip():
            raise ValueError(f"the {verifier.name} verifier scores images against a text prompt: fill in {prompt_input}")
        return prompt
    if kind == "class":
        if class_id is None or int(class_id) < 0:
            raise ValueError(f"the {verifier.name} verifier scores a class: set class_id (>= 0)")
        return int(class_id)
    return None


class PooledScorer:
    """``score(batch) -> Tensor[B]`` over ``verifiers`` (each with ``name``, ``condition``, ``needs_early`` and
    ``score(images, conditions, early)``), for the search core (see the module docstring).

    ``conditions``: one per verifier (see :func:`condition_for`). ``rule``: 'mean_rank' (the paper's) or 'zscore'.

    Video candidates (samples [B, F, H, W, C]): each member scores the frames ``frames`` selects (a
    :class:`~search.frames.FrameSpec`; keyframes and mean by default) and a candidate's raw score is their
    aggregate (``search.frames.aggregate``); the self-supervised verifier compares the same frames of the early
    x0 prediction. Ensembles then rank these per-candidate scores as for images."""

    def __init__(self, verifiers: Sequence[Any], conditions: Sequence[Any], rule: str = "mean_rank",
                 weights: Optional[Mapping[str, float]] = None, frames: Optional[FrameSpec] = None) -> None:
        if not verifiers:
            raise ValueError("connect at least one verifier")
        if rule not in RULES:
            raise ValueError(f"ensemble must be one of {list(RULES)}, got {rule!r}")
        if len(conditions) != len(verifiers):
            raise ValueError(f"give one condition per verifier: {len(conditions)} for {len(verifiers)}")
        self.verifiers, self.conditions = list(verifiers), list(conditions)
        self.names = unique_names([v.name for v in self.verifiers])
        self.rule, self.weights = rule, dict(weights or {})
        self.pool = {n: [] for n in self.names}
        self.pending = None
        self.frames = frames if frames is not None else FrameSpec()
        self.num_frames = None  # frames per video candidate, once one was scored

    @property
    def ensemble(self) -> bool:
        return len(self.verifiers) > 1

    @property
    def needs_early(self) -> bool:
        return any(v.needs_early for v in self.verifiers)

    def raw(self, images: torch.Tensor, early: Optional[torch.Tensor] = None) -> dict:
        """``{member name: raw scores [B]}`` (float64) of these images (or videos [B, F, H, W, C]: per candidate,
        the aggregate of its selected frames' scores)."""
        if self.needs_early and early is None:
            raise ValueError("the self-supervised verifier needs the early x0 predictions of these images")
        if images.ndim == 5:
            return self.raw_video(images, early)
        return {n: torch.as_tensor(v.score(images, c, early if v.needs_early else None)).double().cpu().flatten()
                for n, v, c in zip(self.names, self.verifiers, self.conditions)}

    def raw_video(self, videos: torch.Tensor, early: Optional[torch.Tensor] = None) -> dict:
        """``{member name: [B]}``: every member scores the frames ``self.frames`` selects, aggregated per candidate."""
        b, f = int(videos.shape[0]), int(videos.shape[1])
        idx = select_frames(f, self.frames)
        self.num_frames = f
        frames = videos[:, idx].reshape((b * len(idx),) + tuple(videos.shape[2:]))
        if early is not None:
            if early.ndim != 5 or tuple(early.shape[:2]) != (b, f):
                raise ValueError(f"the early x0 predictions must be videos like the samples {tuple(videos.shape[:2])} "
                                 f"(candidates, frames), got shape {tuple(early.shape)}")
            early = early[:, idx].reshape((b * len(idx),) + tuple(early.shape[2:]))
        out = {}
        for n, v, c in zip(self.names, self.verifiers, self.conditions):
            per_frame = torch.as_tensor(v.score(frames, c, early if v.needs_early else None)).double().cpu().flatten()
            out[n] = aggregate(per_frame.view(b, len(idx)), self.frames.how)
        return out

    def combine(self, raw: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The scores of a pool given its members' raw scores: the raw score, or the ensemble rule over the pool."""
        if not self.ensemble:
            return torch.as_tensor(raw[self.names[0]], dtype=torch.float64)
        return rank_pool(dict(raw), self.rule, self.weights)

    def __call__(self, batch: Batch) -> torch.Tensor:
        raw = self.raw(batch.samples, batch.early)
        self.pending = raw
        if not self.ensemble:
            return raw[self.names[0]].float()
        merged = {n: torch.cat(self.pool[n] + [raw[n]]) for n in self.names}
        return self.combine(merged)[-batch.samples.shape[0]:].float()

    def commit(self, cands: Sequence[Candidate]) -> None:
        """``on_scored``: the chunk just recorded joins the pool; ensemble candidates keep their members' raw scores."""
        if self.pending is None:
            return
        raw, self.pending = self.pending, None
        if self.ensemble:
            for j, c in enumerate(cands):
                c.scores = {n: float(raw[n][j]) for n in self.names}
        for n in self.names:
            self.pool[n].append(raw[n])

    def final_scores(self) -> Optional[torch.Tensor]:
        """Every pooled candidate's final ensemble score (history order), or None for a single verifier."""
        if not self.ensemble or not self.pool[self.names[0]]:
            return None
        return self.combine({n: torch.cat(self.pool[n]) for n in self.names})

    def rerank(self, result: SearchResult) -> SearchResult:
        """Give every candidate of ``result`` its final score against the whole pool and re-order the kept top-K
        (a no-op for one verifier, or when the pool is not this result's history)."""
        final = self.final_scores()
        if final is None or len(final) != len(result.history):
            return result
        for c, s in zip(result.history, final.tolist()):
            c.score = float(s)
        order = sorted(range(len(result.top_k)), key=lambda i: rank_key(result.top_k[i]))
        result.top_k = [result.top_k[i] for i in order]
        result.top_k_samples = {k: v[order] for k, v in result.top_k_samples.items()}
        return result

    def describe(self) -> dict:
        d = {"verifiers": [v.describe() for v in self.verifiers], "names": self.names}
        if self.num_frames is not None:
            d["video"] = self.frames.describe(self.num_frames)
        if self.ensemble:
            d["ensemble_rule"] = self.rule
        return d


def rank_batch(scorer: PooledScorer, images: torch.Tensor,
               early: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, list[int], dict[str, torch.Tensor]]:
    """Score a set of images as one pool: ``(scores float64 [N], order best first, raw per member)``; ties keep the
    earlier image first (the search's ``rank_key``)."""
    raw = scorer.raw(images, early)
    scores = scorer.combine(raw).double().cpu()
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    return scores, order, raw


def score_table(result: SearchResult, picked: Optional[int] = None, limit: int = 64) -> str:
    """Plain-text table of a search's best candidates, best first ('*' the output pick, '+' kept in the top-K)."""
    rows = sorted(result.history, key=rank_key)
    kept = {c.index for c in result.top_k}
    head = f"{result.algorithm} search: {len(result.history)} candidates, {result.nfe} NFE" + \
        (f" (x{result.cfg_multiplier} forward passes with CFG)" if result.cfg_multiplier > 1 else "") + \
        ("" if result.completed else " - CANCELLED, best so far")
    lines = [head, f"{'rank':>4} {'index':>5} {'score':>10} {'nfe':>7} {'round':>5}  recipe"]
    for r, c in enumerate(rows[:limit], 1):
        mark = "*" if picked is not None and c.index == picked else ("+" if c.index in kept else " ")
        lines.append(f"{r:>4} {c.index:>5} {c.score:>10.4f} {c.nfe:>7} {c.round:>5} {mark} {c.recipe.describe()}")
    if len(rows) > limit:
        lines.append(f"... {len(rows) - limit} more (full list in the provenance JSON)")
    return "\n".join(lines)


def batch_table(scores: torch.Tensor, order: Sequence[int], raw: Mapping[str, torch.Tensor], names: Sequence[str],
                best: int, top: Sequence[int]) -> str:
    """Plain-text table of a scored image batch (the Verifier Score node), best first; per-member raw scores
    for an ensemble."""
    per_member = len(names) > 1
    lines = [f"{'rank':>4} {'index':>5} {'score':>10}" + "".join(f" {n:>12}" for n in names if per_member)]
    for r, i in enumerate(order, 1):
        per = "".join(f" {float(raw[n][i]):>12.4f}" for n in names) if per_member else ""
        mark = "*" if i == best else ("+" if i in top else " ")
        lines.append(f"{r:>4} {i:>5} {float(scores[i]):>10.4f}{per} {mark}")
    return "\n".join(lines)

