"""Search over noise on a ToyWorld, one way for every caller: ``run_search(world, algorithm, ...)`` runs random,
zero-order or path search through the pack's own search functions (``search/``) with the world's callables.
The demo (``cli/demo.py``) and the fidelity study (``toyworld/fidelity``) both call it.

Search over paths uses Ma et al.'s SiT times (``PATH_TIMES``) snapped to the world's grid, and the widest
Paths-N (M re-noisings per path) whose exact NFE fits the budget.

The searches beyond the paper (``BEYOND``: FK steering, evolutionary search, early pruning) run through
``toyworld.beyond`` with its settings (``settings=`` overrides them).
"""

from ..samplers.noise_space import EDM
from ..samplers.schedules import sigma_to_rf_time
from ..search.paths import path_search, path_search_nfe, steps_from_times
from ..search.random_search import random_search
from ..search.zero_order import zero_order_search

ALGORITHMS = ("random", "zero_order", "paths")
BEYOND = ("fk", "evolution", "pruning")  # toyworld.beyond's (not in ALGORITHMS: those are the fidelity study's)
PATH_TIMES = (0.11, 0.78, 0.81)  # start sigma, delta_f, delta_b in SiT time (Ma et al. App. A.3)


def path_plan(sigmas, times=PATH_TIMES):
    """Search over paths on the grid ``sigmas``: the SiT ``times`` (start, delta_f, delta_b) snapped to grid steps."""
    start, df, db = steps_from_times(sigmas, *times, sigma_to_rf_time)
    return {"start_step": start, "forward_steps": df, "backward_steps": db}


def paths_width(sigmas, budget, paths, step_nfe, times=PATH_TIMES):
    """The widest Paths-N (M re-noisings per path) whose exact NFE fits ``budget``; None if not even M = 1 does."""
    kw = dict(paths=paths, step_nfe=step_nfe, **path_plan(sigmas, times))
    if path_search_nfe(sigmas, width=1, **kw) > budget:
        return None
    m = 1
    while path_search_nfe(sigmas, width=m + 1, **kw) <= budget:
        m += 1
    return m


def run_search(world, algorithm, *, seed, budget=None, candidates=None, top_k=1, chunk_size=16, neighbours=4, lam=0.95,
               paths=2, path_times=PATH_TIMES, resume_from=None, on_step=None, on_interrupt=None, settings=None):
    """Run ``algorithm`` (one of ``ALGORITHMS``) on ``world`` (a ToyWorld) from ``seed``; returns its SearchResult.

    The cost is given once, as an NFE ``budget`` or as a number of ``candidates`` (a random search of that many
    seeds, ``candidates // neighbours`` zero-order iterations, the widest search over paths within
    ``candidates x world.nfe_per_candidate`` NFE). ``top_k``: candidates kept with their samples, at most as many
    as the algorithm keeps. ``neighbours``, ``lam``: ZO-N; ``paths``, ``path_times``: Paths-N. ``resume_from``:
    an interrupted result to continue (random and zero-order). ``on_step``, ``on_interrupt``: the search callbacks.
    ``algorithm`` may also be one of ``BEYOND`` (``toyworld.beyond.run_beyond``; ``settings``: its settings over
    ``toyworld.beyond.DEFAULTS``; evolution resumes too).
    """
    if (budget is None) == (candidates is None):
        raise ValueError("give the cost as an NFE budget or as a number of candidates (one of the two)")
    if algorithm in BEYOND:
        from .beyond import run_beyond

        return run_beyond(world, algorithm, seed=seed, budget=budget, candidates=candidates, top_k=top_k,
                          chunk_size=chunk_size, settings=settings, resume_from=resume_from, on_step=on_step,
                          on_interrupt=on_interrupt)
    nfe = world.nfe_per_candidate
    common = dict(chunk_size=chunk_size, cfg_multiplier=world.cfg_multiplier, on_step=on_step, on_interrupt=on_interrupt)
    if algorithm == "random":
        kept = candidates if candidates is not None else max(1, budget // nfe)
        return random_search(world.generate, world.score, world.shape, seed=seed, count=candidates, budget=budget,
                             nfe_per_candidate=nfe, top_k=min(top_k, kept), resume_from=resume_from, **common)
    if algorithm == "zero_order":
        n = max(1, neighbours)
        iterations = None if candidates is None else candidates // n
        kept = max(1, (budget // (n * nfe) if iterations is None else iterations) * n)
        return zero_order_search(world.generate, world.score, world.shape, seed=seed, neighbours_per_iter=neighbours,
                                 iterations=iterations, lam=lam, budget=budget, nfe_per_candidate=nfe, top_k=min(top_k, kept),
                                 resume_from=resume_from, **common)
    if algorithm != "paths":
        raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS + BEYOND)}, got {algorithm!r}")
    if resume_from is not None:
        raise ValueError("search over paths cannot resume an interrupted run; run it again")
    total = budget if budget is not None else candidates * nfe
    width = paths_width(world.sigmas, total, paths, world.step_nfe, path_times)
    if width is None:
        need = path_search_nfe(world.sigmas, width=1, paths=paths, step_nfe=world.step_nfe, **path_plan(world.sigmas, path_times))
        raise ValueError(f"an NFE budget of {total} is below one round of search over paths with {paths} paths ({need} NFE)")
    # the toy world integrates in EDM's sigma space (teacher and student alike)
    return path_search(world.denoise, world.score, world.shape, world.sigmas, seed=seed, paths=paths, width=width,
                       step_nfe=world.step_nfe, decode=world.decode, top_k=min(top_k, paths * width),
                       **path_plan(world.sigmas, path_times), **common, space=EDM)
