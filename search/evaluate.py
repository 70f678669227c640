"""Chunked candidate evaluation shared by every search algorithm.

Candidates are generated and scored ``chunk_size`` at a time; between chunks the progress
callback runs (ComfyUI's ProgressBar raises there on cancel), so a search is interruptible and
its memory is bounded by the chunk plus the top-K kept. An out-of-memory error halves the chunk
and the search goes on.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Sequence, Union

import torch

from .candidates import Candidates
from .result import Candidate, SearchResult, rank_key

if TYPE_CHECKING:  # the types only
    from .noise import Recipe
    from .protocols import Generate, OnInterrupt, OnScored, OnStep, Score

__all__ = ['LATENT', 'Batch', 'as_batch', 'call_score', 'check_positive_int', 'DEFAULT_TOP_K', 'resolve_top_k',
           'check_shape', 'is_oom', 'Evaluator', 'merge_rows', 'concat_batches', 'run_guarded', 'plan_count']

LATENT = "latent"  # the Batch.extras key (and top_k_samples key) of the generator's latents, in every generator


@dataclass
class Batch:
    """What ``generate`` returns: ``samples`` are what the verifier scores; ``extras`` are kept alongside
    for the top-K (e.g. latents), and ``early`` is the x0 prediction at sigma ~ 0.4 for the
    self-supervised verifier. Every tensor has the candidates on dim 0."""

    samples: torch.Tensor
    extras: dict = field(default_factory=dict)
    early: torch.Tensor = None

    def __len__(self) -> int:
        return self.samples.shape[0]

    def select(self, idx: Union[Sequence[int], torch.Tensor]) -> Batch:
        idx = torch.as_tensor(idx, dtype=torch.long)
        ex = {k: v[idx] for k, v in self.extras.items()}
        return Batch(self.samples[idx], ex, None if self.early is None else self.early[idx])

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"samples": self.samples, **self.extras}


def as_batch(out: Union[Batch, torch.Tensor]) -> Batch:
    if isinstance(out, Batch):
        return out
    if torch.is_tensor(out):
        return Batch(out)
    raise TypeError(f"generate() must return a tensor or a Batch, got {type(out).__name__}")


def call_score(score: Score, batch: Batch) -> torch.Tensor:
    """Call ``score(batch)`` and check it returns one finite float per candidate."""
    s = score(batch)
    s = torch.as_tensor(s).detach().to("cpu", torch.float64).flatten()
    if s.numel() != len(batch):
        raise ValueError(f"score() returned {s.numel()} scores for {len(batch)} candidates; it must return one per candidate")
    if not bool(torch.isfinite(s).all()):
        bad = (~torch.isfinite(s)).nonzero().flatten().tolist()
        raise ValueError(f"the verifier returned non-finite scores (NaN or inf) for candidates {bad} of this chunk: {s[bad].tolist()}; scores must be finite numbers")
    return s


def check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int,)) and not (hasattr(value, "__index__")):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


DEFAULT_TOP_K = 4


def resolve_top_k(top_k: Optional[int], total: int, what: str) -> int:
    """The top-K kept: ``None`` keeps up to DEFAULT_TOP_K; an explicit ``top_k`` must be in [1, total]
    (asking to keep more candidates than the search scores is an error, not a silent clamp)."""
    if top_k is None:
        return max(1, min(DEFAULT_TOP_K, total))
    top_k = check_positive_int(top_k, "top_k")
    if top_k > total:
        raise ValueError(f"top_k {top_k} is larger than the {total} candidates this search keeps ({what}); "
                         f"use top_k in [1, {total}] or search more candidates")
    return top_k


def check_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """One candidate's latent shape: a tuple of positive ints with batch 1, e.g. (1, 4, 64, 64)."""
    try:
        shape = tuple(int(d) for d in shape)
    except (TypeError, ValueError) as err:
        raise ValueError(f"latent shape must be a tuple of ints with batch 1, e.g. (1, 4, 64, 64), got {shape!r}") from err
    if len(shape) < 2 or shape[0] != 1 or min(shape) < 1:
        raise ValueError(f"latent shape must be one candidate's shape with batch 1 and sizes >= 1, e.g. (1, 4, 64, 64), got {shape}")
    return shape


def is_oom(err: BaseException) -> bool:
    return isinstance(err, getattr(torch, "OutOfMemoryError", ())) or "out of memory" in str(err).lower()


class Evaluator:
    """Runs generate+score over recipes in chunks and keeps the history, the NFE count and the top-K samples."""

    def __init__(self, algorithm: str, params: dict, shape: Sequence[int], generate: Optional[Generate],
                 score: Optional[Score], *, nfe_per_candidate: int, chunk_size: int = 8, top_k: int = 4,
                 cfg_multiplier: int = 1, on_step: Optional[OnStep] = None, on_scored: Optional[OnScored] = None,
                 resume_from: Optional[SearchResult] = None) -> None:
        self.shape = check_shape(shape)
        self.generate, self.score = generate, score
        self.nfe_per_candidate = check_positive_int(nfe_per_candidate, "nfe_per_candidate")
        self.chunk_size = check_positive_int(chunk_size, "chunk_size")
        self.top_k_n = check_positive_int(top_k, "top_k")
        cfg_multiplier = check_positive_int(cfg_multiplier, "cfg_multiplier (network passes per model call)")
        self.on_step, self.on_scored = on_step, on_scored
        self.result = SearchResult(algorithm, params, [], 0, cfg_multiplier=cfg_multiplier, completed=False)
        self._kept = None  # Batch of top-K samples aligned with result.top_k
        self.progress_total = 1
        self.progress_done = 0
        self._replay = 0  # candidates of ``resume_from`` handed back so far
        self._resumed = 0
        if resume_from is not None:
            self._resume(resume_from)

    def _resume(self, partial):
        """Start from an interrupted search's scored candidates (same algorithm and parameters, chunk size
        included, so every later chunk has the same boundaries); ``evaluate`` hands them back in order
        instead of generating them again, so the finished result equals an uninterrupted run's."""
        if partial.algorithm != self.result.algorithm:
            raise ValueError(f"resume_from is a {partial.algorithm!r} search; it cannot resume a {self.result.algorithm!r} search")
        diff = {k: (partial.params.get(k), v) for k, v in self.result.params.items() if partial.params.get(k) != v}
        if diff:
            raise ValueError("resume_from was made with other parameters: " +
                             ", ".join(f"{k}={a!r} there, {b!r} here" for k, (a, b) in sorted(diff.items())) +
                             "; resume with the same parameters or start afresh")
        if partial.history and not partial.top_k_samples:
            raise ValueError("resume_from has scored candidates but no top-K samples (top_k_samples); "
                             "pass the samples saved with it (they are not in the JSON)")
        if self.top_k_n > len(partial.top_k) and len(partial.history) > len(partial.top_k):
            raise ValueError(f"resume_from kept the samples of only its top {len(partial.top_k)} candidates; "
                             f"resume with top_k <= {len(partial.top_k)} (got {self.top_k_n})")
        kept = {k: v for k, v in partial.top_k_samples.items()}
        if kept and any(v.shape[0] != len(partial.top_k) for v in kept.values()):
            raise ValueError(f"resume_from holds {len(partial.top_k)} top-K candidates but top-K samples of batch "
                             f"{[v.shape[0] for v in kept.values()]}; they must match")
        self.result.history = list(partial.history)
        self.result.nfe = partial.nfe
        self.result.top_k = list(partial.top_k)[: self.top_k_n]
        if kept:
            samples = kept.pop("samples")
            self._kept = Batch(samples, kept).select(list(range(len(self.result.top_k))))
            self.result.top_k_samples = self._kept.tensors()
        self._resumed = self.result.resumed = len(partial.history)

    # -- bookkeeping -----------------------------------------------------------------------
    def add_nfe(self, n: int) -> None:
        self.result.nfe += int(n)

    def record(self, recipes: Sequence[Recipe], scores: Union[torch.Tensor, Sequence[float]], batch: Batch, round: int = 0,
               per_candidate_nfe: Optional[int] = None, keep: bool = True) -> list[Candidate]:
        """Append scored candidates to the history; merge them into the top-K unless ``keep`` is False
        (intermediate x0 predictions of search over paths are scored but are not final samples)."""
        per = self.nfe_per_candidate if per_candidate_nfe is None else per_candidate_nfe
        values = scores.tolist() if torch.is_tensor(scores) else [float(s) for s in scores]  # one conversion per chunk
        hist, nfe0 = self.result.history, self.result.nfe
        cands = [Candidate(len(hist) + j, r, float(values[j]), nfe0 + per * (j + 1), round) for j, r in enumerate(recipes)]
        hist.extend(cands)
        self.result.nfe = nfe0 + per * len(cands)
        if not keep:
            if self.on_scored is not None:
                self.on_scored(cands, self.result)
            return cands
        n_old = len(self.result.top_k)
        merged = list(self.result.top_k) + cands
        order = sorted(range(len(merged)), key=lambda i: rank_key(merged[i]))[: self.top_k_n]
        self.result.top_k = [merged[i] for i in order]
        # Copy out only the chunk's candidates that enter the top-K (never the whole chunk), so the kept
        # samples cost O(K) memory and copying per chunk; an unchanged top-K keeps its tensors as they are.
        entering = [i - n_old for i in order if i >= n_old]
        if self._kept is None or not n_old:
            self._kept = batch.select(entering)
            self.result.top_k_samples = self._kept.tensors()
        elif entering or order != list(range(n_old)):
            self._kept = merge_rows(self._kept, batch, order, n_old)
            self.result.top_k_samples = self._kept.tensors()
        if self.on_scored is not None:
            self.on_scored(cands, self.result)
        return cands

    def step(self, n: int = 1) -> None:
        self.progress_done += n
        if self.on_step is not None:
            self.on_step(min(self.progress_done, self.progress_total), self.progress_total)

    # -- evaluation ------------------------------------------------------------------------
    def evaluate(self, recipes: Sequence[Recipe], round: int = 0) -> list[Candidate]:
        """Generate and score ``recipes`` chunk by chunk; returns their Candidates in order."""
        out, i, chunk = [], 0, self.chunk_size
        while i < len(recipes):
            if self._replay < self._resumed:  # already scored before the interruption
                prior = self.result.history[self._replay]
                if prior.recipe != recipes[i]:
                    raise ValueError(f"resume_from does not match this search: its candidate {self._replay} is "
                                     f"{prior.recipe.describe()}, this search's is {recipes[i].describe()}")
                out.append(prior)
                self._replay += 1
                i += 1
                self.step(1)
                continue
            part = recipes[i: i + chunk]
            try:
                batch = as_batch(self.generate(Candidates(tuple(part), self.shape)))
                if len(batch) != len(part):
                    raise ValueError(f"generate() returned {len(batch)} samples for {len(part)} noises; it must return one per noise")
                scores = call_score(self.score, batch)
            except Exception as err:  # noqa: BLE001 - only OOM is handled; everything else re-raises
                if is_oom(err) and len(part) > 1:
                    chunk = max(1, len(part) // 2)
                    self.chunk_size = chunk
                    continue
                raise
            out += self.record(part, scores, batch, round)
            del batch, scores  # the chunk's samples go now, not while the next chunk is generated
            i += len(part)
            self.step(len(part))
        return out

    def chunks(self, items: Sequence[Any], compute: Callable[[Sequence[Any]], Any]) -> Iterator[tuple[Sequence[Any], Any]]:
        """Yield ``(part, compute(part))`` over ``items``, ``chunk_size`` at a time; an out-of-memory error in
        ``compute`` halves the chunk and retries it, as ``evaluate`` does (search over paths batches this way).
        ``compute`` must have no side effects: the caller records each part after it is yielded."""
        i = 0
        while i < len(items):
            part = items[i: i + self.chunk_size]
            try:
                out = compute(part)
            except Exception as err:  # noqa: BLE001 - only OOM is handled; everything else re-raises
                if is_oom(err) and len(part) > 1:
                    self.chunk_size = max(1, len(part) // 2)
                    continue
                raise
            yield part, out
            del out  # not alive while the next chunk is computed
            i += len(part)

    def finish(self) -> SearchResult:
        self.result.completed = True
        return self.result


def merge_rows(old: Batch, new: Batch, order: Sequence[int], n_old: int) -> Batch:
    """The Batch whose row j is row ``order[j]`` of ``old`` (indices < n_old) or of ``new`` (index - n_old), built
    row by row into one fresh tensor per field: no concatenated K + chunk intermediate."""
    def take(a, b):
        if a is None or b is None:
            return None
        out = b.new_empty((len(order),) + tuple(b.shape[1:]))
        for j, i in enumerate(order):
            out[j].copy_(a[i] if i < n_old else b[i - n_old])
        return out
    return Batch(take(old.samples, new.samples), {k: take(old.extras[k], new.extras[k]) for k in old.extras},
                 take(old.early, new.early))


def concat_batches(a: Batch, b: Batch) -> Batch:
    ex = {k: torch.cat([a.extras[k], b.extras[k]]) for k in a.extras}
    early = None if a.early is None or b.early is None else torch.cat([a.early, b.early])
    return Batch(torch.cat([a.samples, b.samples]), ex, early)


def run_guarded(ev: Evaluator, body: Callable[[], Any], on_interrupt: Optional[OnInterrupt] = None) -> SearchResult:
    """Run ``body()``; if anything escapes (cancel, Ctrl-C, an error), hand the partial result to
    ``on_interrupt`` first so the best so far is never lost, then re-raise."""
    try:
        body()
    except BaseException as exc:
        if on_interrupt is not None and ev.result.history:
            try:
                on_interrupt(ev.result)
            except Exception as err:  # noqa: BLE001 - the cancel/error stays the exception raised; the failed save is attached to it
                note = f"on_interrupt could not save the partial result: {type(err).__name__}: {err}"
                if hasattr(exc, "add_note"):
                    exc.add_note(note)
                else:  # Python 3.10
                    warnings.warn(note, RuntimeWarning, stacklevel=2)
        raise
    return ev.finish()


def plan_count(count: Optional[int], budget: Optional[int], nfe_per_candidate: int, what: str = "count") -> int:
    """Resolve a candidate count against an NFE budget (either may be None, not both)."""
    if count is None and budget is None:
        raise ValueError(f"give {what} (an integer >= 1) or an NFE budget (an integer >= {nfe_per_candidate}, the NFE of one candidate)")
    if budget is not None:
        budget = check_positive_int(budget, "budget (NFE)")
        if budget < nfe_per_candidate:
            raise ValueError(f"NFE budget {budget} is below one candidate ({nfe_per_candidate} NFE each); raise the budget to >= {nfe_per_candidate}")
    if count is None:
        return budget // nfe_per_candidate
    count = check_positive_int(count, what)
    if budget is not None and count * nfe_per_candidate > budget:
        raise ValueError(f"{what} {count} x {nfe_per_candidate} NFE = {count * nfe_per_candidate} exceeds the NFE budget {budget}; "
                         f"use {what} <= {budget // nfe_per_candidate} or raise the budget")
    return count

