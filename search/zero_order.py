"""Zero-order search (ZO-N, Ma et al. 2025, Sec. 3.2): N neighbours on the sphere around a pivot
noise (same norm, cosine ``lam`` to it) are scored each iteration; the pivot moves to the best
neighbour (the paper always moves). Cost per iteration: N candidates; the pivot itself is
scored only with ``score_pivot=True``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

from .evaluate import Evaluator, check_positive_int, plan_count, resolve_top_k, run_guarded
from .noise import NeighbourRecipe, SeedRecipe, check_seed, derive_seed
from .result import rank_key

if TYPE_CHECKING:  # the types only
    import torch

    from .noise import Recipe
    from .protocols import Generate, OnInterrupt, OnScored, OnStep, Score
    from .result import SearchResult

__all__ = ['neighbours', 'zero_order_search']


def neighbours(pivot: Recipe, iteration: int, n: int, lam: float, base_seed: int,
               pivot_noise: Optional[torch.Tensor] = None) -> list[NeighbourRecipe]:
    """The N neighbour recipes of ``pivot`` in iteration ``iteration``. ``pivot_noise``: the pivot's noise when the
    caller holds it (the search does), so each neighbour's noise costs one ``sphere_neighbour`` instead of a
    rebuild of the pivot's whole chain (see ``NeighbourRecipe``; the recipes keep only a weak reference)."""
    if not (0.0 < float(lam) < 1.0):
        raise ValueError(f"lambda (cosine similarity to the pivot) must be in (0, 1), got {lam}")
    return [NeighbourRecipe(pivot, iteration, j, float(lam), derive_seed(base_seed, iteration, j), pivot_noise=pivot_noise)
            for j in range(n)]


def zero_order_search(generate: Generate, score: Score, shape: Sequence[int], *, seed: int = 0, neighbours_per_iter: int = 2,
                      iterations: Optional[int] = None, lam: float = 0.95, budget: Optional[int] = None,
                      nfe_per_candidate: int, score_pivot: bool = False, pivot: Optional[Recipe] = None,
                      chunk_size: int = 8, top_k: Optional[int] = None, cfg_multiplier: int = 1,
                      on_step: Optional[OnStep] = None, on_scored: Optional[OnScored] = None,
                      on_interrupt: Optional[OnInterrupt] = None, resume_from: Optional[SearchResult] = None) -> SearchResult:
    """ZO-N from pivot ``pivot`` (default: the noise of ``seed``) for ``iterations`` rounds (or as many as the NFE budget allows).

    ``top_k`` and ``resume_from`` as in ``random_search`` (a resumed run re-walks the pivots from the
    recorded scores, so it ends exactly where an uninterrupted run does)."""
    seed = check_seed(seed)
    n = check_positive_int(neighbours_per_iter, "neighbours per iteration (N)")
    if not (0.0 < float(lam) < 1.0):
        raise ValueError(f"lambda (cosine similarity to the pivot) must be in (0, 1), got {lam}")
    per_iter = n * nfe_per_candidate
    first = nfe_per_candidate if score_pivot else 0
    if iterations is None:
        if budget is None:
            raise ValueError(f"give iterations (an integer >= 1) or an NFE budget (an integer >= {per_iter + first}, one iteration)")
        iterations = plan_count(None, budget - first, per_iter, "iterations") if budget - first >= per_iter else 0
        if iterations < 1:
            raise ValueError(f"NFE budget {budget} is below one zero-order iteration ({per_iter} NFE = N {n} x {nfe_per_candidate}"
                             f"{' + the pivot' if score_pivot else ''}); raise the budget to >= {per_iter + first}")
    else:
        iterations = check_positive_int(iterations, "iterations")
        if budget is not None and iterations * per_iter + first > budget:
            raise ValueError(f"iterations {iterations} x {per_iter} NFE{' + pivot' if score_pivot else ''} = {iterations * per_iter + first} "
                             f"exceeds the NFE budget {budget}; use iterations <= {max(0, (budget - first) // per_iter)}")
    total = iterations * n + (1 if score_pivot else 0)
    top_k = resolve_top_k(top_k, total, f"{iterations} iterations x N = {n}{' + the pivot' if score_pivot else ''}")
    pivot = SeedRecipe(seed) if pivot is None else pivot
    params = {"seed": seed, "neighbours_per_iter": n, "iterations": iterations, "lambda": float(lam), "budget": budget,
              "score_pivot": score_pivot, "nfe_per_candidate": nfe_per_candidate, "chunk_size": chunk_size}
    ev = Evaluator("zero_order", params, shape, generate, score, nfe_per_candidate=nfe_per_candidate, chunk_size=chunk_size,
                   top_k=top_k, cfg_multiplier=cfg_multiplier, on_step=on_step, on_scored=on_scored,
                   resume_from=resume_from)
    ev.progress_total = total
    state = {"pivot": pivot}

    def body():
        if score_pivot:
            ev.evaluate([state["pivot"]], round=0)
        # Only the current pivot's noise is held: each move costs one sphere_neighbour, whatever the depth.
        pivot_noise = state["pivot"].make(ev.shape)
        for k in range(iterations):
            cands = ev.evaluate(neighbours(state["pivot"], k, n, lam, seed, pivot_noise=pivot_noise), round=k + 1)
            best = min(cands, key=rank_key).recipe  # a neighbour of the current pivot (also when resumed: equal recipes)
            pivot_noise = best.from_pivot(pivot_noise)
            state["pivot"] = best

    result = run_guarded(ev, body, on_interrupt)
    result.params["final_pivot"] = state["pivot"].describe()
    return result
