"""Early pruning by successive halving: many seeds started, only the promising ones finished.

N candidates (seeds ``seed .. seed + N - 1``, KSampler seeds as in random search) are sampled down the host's grid
with its deterministic solver. At each checkpoint (a grid step) every live candidate's clean prediction x0 (the
solver's step to sigma = 0) is scored by the verifier, and only the best ``keep`` fraction (ceil(keep x live), at
least one; ties to the earlier seed) goes on; the rest stop there, having cost only their steps so far. After the
last checkpoint the survivors are sampled to sigma = 0 and scored as full samples: they are the search's final
candidates, the winner among them (successive halving, Jamieson & Talwalkar 2016 / Karnin et al. 2013, with the
x0 preview of a partly denoised sample as the cheap fidelity).

Accounting: a preview costs the steps since the candidate's previous checkpoint plus the x0 step (one model call
for Euler and Heun); a final sample the steps since its last checkpoint. A checkpoint where nothing would be pruned
(``keep = 1``, or one live candidate) is skipped, so with ``keep = 1`` this is best-of-N: the same candidates,
samples, scores and NFE as ``random_search`` over the same seeds when the host's ``generate`` runs the same solver
steps. ``result.params`` reports the verifier calls on previews (``preview_verifier_calls``) and in all
(``verifier_calls``) next to the NFE, and how many candidates each stage kept (``alive``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Optional, Sequence, Union

import torch

from .candidates import Candidates
from .evaluate import Evaluator, as_batch, check_positive_int, resolve_top_k, run_guarded
from .noise import check_seed
from .population import Population, span_nfe
from .random_search import seed_pool
from .result import rank_key
from .stepwise import CountingScore, grid_of, make_stepper

if TYPE_CHECKING:  # the types only
    from ..samplers.noise_space import NoiseSpace
    from .evaluate import Batch
    from .protocols import Denoise, OnInterrupt, OnScored, OnStep, Score
    from .result import SearchResult

__all__ = ["check_pruning_params", "keep_count", "pruning_stages", "pruning_nfe", "pruning_count", "early_pruning"]


def keep_count(live: int, keep: float) -> int:
    """How many of ``live`` candidates a checkpoint keeps: ceil(keep x live), at least one."""
    return max(1, math.ceil(live * keep - 1e-9))


def check_pruning_params(sig: Sequence[float], checkpoints: Sequence[int],
                         keep: Union[float, Sequence[float]]) -> tuple[list[int], list[float]]:
    """The checkpoints (grid steps in [1, steps - 1], increasing) and one keep fraction in (0, 1] per checkpoint."""
    last = len(sig) - 1
    try:
        cps = list(checkpoints)
    except TypeError:
        raise ValueError(f"checkpoints must be a list of grid steps in [1, {last - 1}], increasing, "
                         f"got {checkpoints!r}") from None
    if not cps or any(isinstance(c, bool) or not isinstance(c, int) for c in cps) or not all(1 <= c <= last - 1 for c in cps) \
            or any(b <= a for a, b in zip(cps, cps[1:])):
        raise ValueError(f"checkpoints must be a non-empty list of grid steps in [1, {last - 1}] (between the first and the "
                         f"last of {last} steps), increasing, got {checkpoints!r}")
    fracs = list(keep) if isinstance(keep, (list, tuple)) else [keep] * len(cps)
    if len(fracs) != len(cps):
        raise ValueError(f"give one keep fraction, or one per checkpoint ({len(cps)}), got {len(fracs)}: {keep!r}")
    for f in fracs:
        ok = not isinstance(f, bool) and isinstance(f, (int, float)) and math.isfinite(f) and 0.0 < f <= 1.0
        if not ok:
            raise ValueError(f"keep (the fraction of candidates a checkpoint keeps) must be in (0, 1], got {f!r}; "
                             "1 keeps every candidate (best-of-N)")
    return cps, [float(f) for f in fracs]


def pruning_stages(count: int, checkpoints: Sequence[int], keep: Sequence[float], last: int) -> list[tuple[int, int, int]]:
    """``[(stop, live, kept)]``: the steps the candidates are scored at (the checkpoints where something is pruned,
    then ``last``), how many are scored there and how many go on."""
    stages, live = [], count
    for c, f in zip(checkpoints, keep):
        kept = keep_count(live, f)
        if kept < live:
            stages.append((c, live, kept))
            live = kept
    return stages + [(last, live, live)]


def pruning_nfe(sigmas: Union[torch.Tensor, Sequence[float]], *, count: int, checkpoints: Sequence[int],
                keep: Union[float, Sequence[float]], step_nfe: Optional[Callable[[float, float], int]] = None) -> int:
    """The exact NFE an early-pruning search of ``count`` seeds spends (same accounting as ``early_pruning``)."""
    sig = grid_of(sigmas)
    cps, fracs = check_pruning_params(sig, checkpoints, keep)
    return _cost(sig, count, cps, fracs, step_nfe)


def _cost(sig, count, cps, fracs, step_nfe):
    cost = CostStepper(step_nfe)
    total, prev, last = 0, 0, len(sig) - 1
    for stop, live, _ in pruning_stages(count, cps, fracs, last):
        total += live * (span_nfe(cost, sig, prev, stop) + (0 if stop == last else cost.step_nfe(sig[stop], 0.0)))
        prev = stop
    return total


class CostStepper:
    """Only the cost of a step (for the NFE plans)."""

    def __init__(self, step_nfe: Optional[Callable[[float, float], int]]) -> None:
        self.fn = step_nfe

    def step_nfe(self, a: float, b: float) -> int:
        return 1 if self.fn is None else int(self.fn(a, b))


def pruning_count(sigmas: Union[torch.Tensor, Sequence[float]], budget: int, *, checkpoints: Sequence[int],
                  keep: Union[float, Sequence[float]], step_nfe: Optional[Callable[[float, float], int]] = None) -> int:
    """The most seeds whose early-pruning search fits ``budget`` NFE (0 if not even one does)."""
    sig = grid_of(sigmas)
    cps, fracs = check_pruning_params(sig, checkpoints, keep)
    lo, hi = 0, int(budget) + 1  # the cost grows with the count and one seed costs >= 1 NFE
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if _cost(sig, mid, cps, fracs, step_nfe) <= budget else (lo, mid)
    return lo


def early_pruning(denoise: Denoise, score: Score, shape: Sequence[int], sigmas: Union[torch.Tensor, Sequence[float]], *,
                  checkpoints: Sequence[int], keep: Union[float, Sequence[float]] = 0.5, seed: int = 0,
                  count: Optional[int] = None, budget: Optional[int] = None, space: Optional[NoiseSpace] = None,
                  step_nfe: Optional[Callable[[float, float], int]] = None,
                  prepare: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                  decode: Optional[Callable[[torch.Tensor], Union[Batch, torch.Tensor]]] = None, chunk_size: int = 8,
                  top_k: Optional[int] = None, cfg_multiplier: int = 1, on_step: Optional[OnStep] = None,
                  on_scored: Optional[OnScored] = None, on_interrupt: Optional[OnInterrupt] = None) -> SearchResult:
    """Successive halving over ``count`` seeds (or the most the NFE ``budget`` pays for) on the host's grid ``sigmas``
    (descending, ending in 0), pruning at ``checkpoints`` (grid steps) to the ``keep`` fraction (one for all, or one
    per checkpoint). ``denoise``, ``step_nfe``, ``space`` / ``prepare``, ``decode`` as in ``search.paths.path_search``.
    The top-K are final samples, so an explicit ``top_k`` is at most the number of survivors."""
    sig = grid_of(sigmas)
    last = len(sig) - 1
    stepper = make_stepper(denoise, space, sig, step_nfe, prepare, None, decode, "early pruning", renoises=False)
    seed = check_seed(seed)
    cps, fracs = check_pruning_params(sig, checkpoints, keep)
    n = _plan_count(sig, count, budget, cps, fracs, step_nfe)
    stages = pruning_stages(n, cps, fracs, last)
    top_k = resolve_top_k(top_k, stages[-1][1], f"the {stages[-1][1]} survivors of {n} seeds")
    params = {"seed": seed, "count": n, "budget": budget, "checkpoints": cps, "keep": fracs if len(set(fracs)) > 1 else fracs[0],
              "alive": [live for _, live, _ in stages], "scored_at": [stop for stop, _, _ in stages],
              "sigmas": sig, "chunk_size": chunk_size, "verifier_calls": 0, "preview_verifier_calls": 0}
    ev = Evaluator("pruning", params, shape, None, None, nfe_per_candidate=1, chunk_size=chunk_size, top_k=top_k,
                   cfg_multiplier=cfg_multiplier, on_step=on_step, on_scored=on_scored)
    counted = CountingScore(score)
    ev.progress_total = sum(live for _, live, _ in stages)
    shape = ev.shape

    def body():
        recipes, pop, prev = seed_pool(seed, n), None, 0
        for rnd, (stop, live, kept) in enumerate(stages):
            final = stop == last
            per = span_nfe(stepper, sig, prev, stop) + (0 if final else int(stepper.step_nfe(sig[stop], 0.0)))

            def compute(part, pop=pop, prev=prev, stop=stop, final=final):
                if pop is None:
                    sub = Population.start(stepper, Candidates.of([recipes[j] for j in part], shape), list(part))
                else:
                    sub = pop.take(part)
                sub = sub.advance(stepper, sig, stop)
                batch = as_batch(stepper.decode(sub.x if final else sub.predict_x0(stepper, sig)))
                return sub, batch, counted(batch)

            subs, cands = [], []
            for part, (sub, batch, s) in ev.chunks(list(range(live)), compute):
                cands += ev.record(sub.recipes, s, batch, round=rnd, per_candidate_nfe=per, keep=final)
                params["verifier_calls"] = counted.calls
                params["preview_verifier_calls"] += 0 if final else len(part)
                subs.append(sub)
                del batch  # the decoded chunk goes before the next one is made
                ev.step(len(part))
            if final:
                break
            # the best ``kept`` go on, in their original order (so chunks keep the seeds' order)
            best = sorted(sorted(range(live), key=lambda t: rank_key(cands[t]))[:kept])
            pop = Population.cat(subs).take(best)
            recipes, prev = pop.recipes, stop

    return run_guarded(ev, body, on_interrupt)


def _plan_count(sig, count, budget, cps, fracs, step_nfe):
    one = _cost(sig, 1, cps, fracs, step_nfe)
    if count is None and budget is None:
        raise ValueError(f"give count (seeds, an integer >= 1) or an NFE budget (an integer >= {one}, one candidate)")
    if budget is not None:
        budget = check_positive_int(budget, "budget (NFE)")
        if budget < one:
            raise ValueError(f"NFE budget {budget} is below one candidate ({one} NFE); raise the budget to >= {one}")
    if count is None:
        return pruning_count(sig, budget, checkpoints=cps, keep=fracs, step_nfe=step_nfe)
    count = check_positive_int(count, "count (seeds started)")
    if budget is not None and _cost(sig, count, cps, fracs, step_nfe) > budget:
        most = pruning_count(sig, budget, checkpoints=cps, keep=fracs, step_nfe=step_nfe)
        raise ValueError(f"count {count} costs {_cost(sig, count, cps, fracs, step_nfe)} NFE with these checkpoints, over "
                         f"the NFE budget {budget}; use count <= {most} or raise the budget")
    return count
