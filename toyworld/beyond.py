"""The searches beyond Ma et al. on a ToyWorld: FK steering, evolutionary search and early pruning, run through the
pack's own functions (``search/fk_steering.py``, ``search/evolution.py``, ``search/pruning.py``) with the world's
callables. ``toyworld.search.run_search`` dispatches the names of ``BEYOND`` here, so the demo and the benchmark
(``benchmarks/beyond_paper.py``) run them as they run random, zero-order and path search.

``DEFAULTS`` are the settings the demo uses (any of them can be overridden with ``settings=``). They were chosen on
development seeds that the measurement never uses (``benchmarks/beyond_paper.py --tune``), for the teacher's Heun-10
grid, with the classifier logit as the verifier; the cost is always the NFE budget, and each algorithm takes as many
particles / generations / seeds as the budget pays for.
"""

from ..samplers.noise_space import EDM
from ..search.evolution import evolution_search, generation_sizes
from ..search.fk_steering import check_fk_params, fk_particle_nfe, fk_steering
from ..search.pruning import check_pruning_params, early_pruning, pruning_count, pruning_stages
from ..search.stepwise import grid_of

__all__ = ["BEYOND", "DEFAULTS", "STEPWISE", "settings_for", "min_budget", "run_beyond"]

BEYOND = ("fk", "evolution", "pruning")
DEFAULTS = {  # the best of benchmarks/beyond_paper.py --tune on its development seeds (not the measured ones)
    "fk": {"potential": "sum", "lmbda": 5.0, "resample_every": 1, "resample_start": None, "resample_end": None,
           "ess_threshold": 0.5, "eta": 1.0},
    "evolution": {"population": 4, "elites": 1, "lam": 0.8, "tournament": 3},
    "pruning": {"checkpoints": (1, 3), "keep": 0.25},
}
STEPWISE = ("fk", "pruning")  # they step the teacher's ODE: not the sCM student


def settings_for(algorithm, settings=None):
    """The algorithm's DEFAULTS with ``settings`` (a dict) over them; an unknown setting is an error."""
    base = dict(DEFAULTS[algorithm])
    unknown = sorted(set(settings or {}) - set(base))
    if unknown:
        raise ValueError(f"unknown {algorithm} settings {unknown}; the settings are {sorted(base)}")
    base.update(settings or {})
    return base


def min_budget(world, algorithm, settings=None):
    """The smallest NFE budget with which ``algorithm`` runs on ``world`` at all (two particles, one generation,
    one seed) and what it pays for."""
    s = settings_for(algorithm, settings)
    nfe = world.nfe_per_candidate
    if algorithm == "evolution":
        return s["population"] * nfe, f"one generation (population {s['population']} x {nfe} NFE)"
    sig = grid_of(world.sigmas)
    if algorithm == "fk":
        p = check_fk_params(sig, **s)
        per = fk_particle_nfe(sig, EDM, p["eta"], p["resample_steps"], world.step_nfe)
        return 2 * per, f"two FK particles ({per} NFE each)"
    return nfe, f"one candidate ({nfe} NFE)"


def run_beyond(world, algorithm, *, seed, budget=None, candidates=None, top_k=1, chunk_size=16, settings=None,
               resume_from=None, on_step=None, on_interrupt=None):
    """Run ``algorithm`` (one of ``BEYOND``) on ``world`` at an NFE ``budget`` (or ``candidates`` x the world's NFE per
    candidate); ``top_k`` is clamped to the candidates the algorithm keeps. Only evolution can resume."""
    if algorithm not in BEYOND:
        raise ValueError(f"algorithm must be one of {', '.join(BEYOND)}, got {algorithm!r}")
    s = settings_for(algorithm, settings)
    nfe = world.nfe_per_candidate
    total = budget if budget is not None else candidates * nfe
    common = dict(chunk_size=chunk_size, cfg_multiplier=world.cfg_multiplier, on_step=on_step, on_interrupt=on_interrupt)
    if algorithm == "evolution":
        kept = max(1, sum(generation_sizes(s["population"], s["elites"], candidates=total // nfe)))
        return evolution_search(world.generate, world.score, world.shape, nfe_per_candidate=nfe, seed=seed, budget=total,
                                top_k=min(top_k, kept), resume_from=resume_from, **s, **common)
    if resume_from is not None:
        raise ValueError(f"{algorithm} cannot resume an interrupted run; run it again")
    if world.generator != "teacher":
        raise ValueError(f"{algorithm} steps the teacher's ODE one step at a time; the sCM student has no such sampler "
                         "(use the teacher, or random, zero_order or evolution with the student)")
    sig = grid_of(world.sigmas)
    steps = dict(step_nfe=world.step_nfe, decode=world.decode, space=EDM)
    if algorithm == "fk":
        p = check_fk_params(sig, **s)
        k = max(2, total // fk_particle_nfe(sig, EDM, p["eta"], p["resample_steps"], world.step_nfe))
        return fk_steering(world.denoise, world.score, world.shape, sig, seed=seed, budget=total, top_k=min(top_k, k),
                           **s, **steps, **common)
    cps, fracs = check_pruning_params(sig, list(s["checkpoints"]), s["keep"])
    n = pruning_count(sig, total, checkpoints=cps, keep=fracs, step_nfe=world.step_nfe)
    kept = pruning_stages(n, cps, fracs, len(sig) - 1)[-1][1] if n else 1
    return early_pruning(world.denoise, world.score, world.shape, sig, checkpoints=cps, keep=s["keep"], seed=seed,
                         budget=total, top_k=min(top_k, max(1, kept)), **steps, **common)

