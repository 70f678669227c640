"""Random search (best-of-N): score N seeded noises once, keep the best (Ma et al. 2025, Sec. 3.2)."""

from .evaluate import Evaluator, plan_count, run_guarded
from .noise import SeedRecipe, check_seed, MAX_SEED


def seed_pool(seed, count):
    """Candidate i has seed ``seed + i`` (wrapping at 2^64), so each reproduces in a plain KSampler."""
    seed = check_seed(seed)
    return [SeedRecipe((seed + i) & MAX_SEED) for i in range(count)]


def random_search(generate, score, shape, *, seed=0, count=None, budget=None, nfe_per_candidate, chunk_size=8,
                  top_k=4, cfg_multiplier=1, on_step=None, on_scored=None, on_interrupt=None):
    """Best-of-N over seeds ``seed .. seed+N-1``. ``count`` or the NFE ``budget`` fixes N."""
    n = plan_count(count, budget, nfe_per_candidate)
    params = {"seed": seed, "count": n, "budget": budget, "nfe_per_candidate": nfe_per_candidate, "chunk_size": chunk_size}
    ev = Evaluator("random", params, shape, generate, score, nfe_per_candidate=nfe_per_candidate, chunk_size=chunk_size,
                   top_k=top_k, cfg_multiplier=cfg_multiplier, on_step=on_step, on_scored=on_scored)
    ev.progress_total = n
    return run_guarded(ev, lambda: ev.evaluate(seed_pool(seed, n)), on_interrupt)
