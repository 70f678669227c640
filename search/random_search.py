"""Random search (best-of-N): score N seeded noises once, keep the best (Ma et al. 2025, Sec. 3.2)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

from .evaluate import Evaluator, plan_count, resolve_top_k, run_guarded
from .noise import SeedRecipe, check_seed, MAX_SEED

if TYPE_CHECKING:  # the types only
    from .noise import Recipe
    from .protocols import Generate, OnInterrupt, OnScored, OnStep, Score
    from .result import SearchResult

__all__ = ['seed_pool', 'random_search']


def seed_pool(seed: int, count: int) -> list[SeedRecipe]:
    """Candidate i has seed ``seed + i`` (wrapping at 2^64), so each reproduces in a plain KSampler."""
    seed = check_seed(seed)
    return [SeedRecipe((seed + i) & MAX_SEED) for i in range(count)]


def random_search(generate: Generate, score: Score, shape: Sequence[int], *, seed: int = 0, count: Optional[int] = None,
                  budget: Optional[int] = None, nfe_per_candidate: int, chunk_size: int = 8, top_k: Optional[int] = None,
                  cfg_multiplier: int = 1, on_step: Optional[OnStep] = None, on_scored: Optional[OnScored] = None,
                  on_interrupt: Optional[OnInterrupt] = None, resume_from: Optional[SearchResult] = None,
                  pool: Optional[Sequence[Recipe]] = None, pool_params: Optional[dict] = None) -> SearchResult:
    """Best-of-N over seeds ``seed .. seed+N-1``. ``count`` or the NFE ``budget`` fixes N.

    ``pool``: search exactly these recipes instead (a Noise Candidate Pool; ``seed`` and ``count`` are then unused,
    the budget must cover them all); ``pool_params`` describes where the pool came from, for the provenance.

    ``top_k``: how many best candidates keep their samples (default up to 4; more than N is an error).
    ``resume_from``: the partial SearchResult handed to ``on_interrupt`` (or ``SearchResult.from_dict`` of
    its JSON plus its top-K samples); its candidates are not generated again and the result equals an
    uninterrupted run's."""
    if pool is not None:
        recipes = list(pool)
        n = plan_count(len(recipes), budget, nfe_per_candidate, "pool size")
        top_k = resolve_top_k(top_k, n, f"the pool's {n} candidates")
        params = {"pool": pool_params, "count": n, "budget": budget, "nfe_per_candidate": nfe_per_candidate, "chunk_size": chunk_size}
    else:
        seed = check_seed(seed)
        n = plan_count(count, budget, nfe_per_candidate)
        top_k = resolve_top_k(top_k, n, f"count N = {n}")
        recipes = seed_pool(seed, n)
        params = {"seed": seed, "count": n, "budget": budget, "nfe_per_candidate": nfe_per_candidate, "chunk_size": chunk_size}
    ev = Evaluator("random", params, shape, generate, score, nfe_per_candidate=nfe_per_candidate, chunk_size=chunk_size,
                   top_k=top_k, cfg_multiplier=cfg_multiplier, on_step=on_step, on_scored=on_scored,
                   resume_from=resume_from)
    ev.progress_total = n
    return run_guarded(ev, lambda: ev.evaluate(recipes), on_interrupt)
