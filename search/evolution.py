"""Evolutionary search over initial noise, after EvoSearch (He et al. 2025, arXiv 2505.17618).

A population of ``population`` initial noises (generation 0: seeds ``seed .. seed + P - 1``, KSampler seeds) is
sampled and scored. Each later generation keeps the ``elites`` best members unchanged (elitism; they are not
sampled again: the sampler is deterministic, so their samples and scores stand) and fills the rest with mutated
children: a parent is picked by tournament selection (the best of ``tournament`` members drawn at random from the
current population, seeded; a standard genetic-algorithm operator, chosen here, not necessarily the paper's exact
one), and mutated on the sphere of its own norm at cosine ``lam`` to it (``sphere_neighbour``: a mutation
sqrt(1 - beta^2) x + beta eps with beta = sqrt(1 - lam^2), kept on the Gaussian shell as zero-order search keeps
its neighbours). Every member is a recipe (a seed, or a ``NeighbourRecipe`` chain down from one), so each re-makes
its noise bit-exactly and re-renders in a plain sampler.

The NFE budget schedules the generations: generation 0 costs ``population`` candidates, each later one
``population - elites``; the last generation takes the children the budget has left (fewer, if so). EvoSearch also
evolves intermediate denoising states; this module evolves the initial noise only.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional, Sequence

import torch

from .evaluate import Evaluator, check_positive_int, resolve_top_k, run_guarded
from .noise import NeighbourRecipe, check_seed, derive_seed
from .random_search import seed_pool
from .result import rank_key

if TYPE_CHECKING:  # the types only
    from .protocols import Generate, OnInterrupt, OnScored, OnStep, Score
    from .result import Candidate, SearchResult

__all__ = ["check_evolution_params", "generation_sizes", "tournament_parents", "evolution_search"]

_SALT = 0x45564F  # "EVO": the mutation and selection seeds' own stream


def check_evolution_params(population: int, elites: int, lam: float, tournament: int) -> tuple[int, int, float, int]:
    p = check_positive_int(population, "population (P, members per generation)", minimum=2)
    e = check_positive_int(elites, "elites (members kept unchanged each generation)", minimum=0)
    if e >= p:
        raise ValueError(f"elites must be in [0, population - 1 = {p - 1}] (the rest are the children), got {e}")
    ok = not isinstance(lam, bool) and isinstance(lam, (int, float)) and math.isfinite(lam) and 0.0 < lam < 1.0
    if not ok:
        raise ValueError(f"lam (the mutation's cosine similarity to the parent) must be in (0, 1), got {lam!r}")
    t = check_positive_int(tournament, "tournament (members drawn per parent selection)")
    if t > p:
        raise ValueError(f"tournament must be in [1, population = {p}], got {t}")
    return p, e, float(lam), t


def generation_sizes(population: int, elites: int, *, candidates: Optional[int] = None,
                     generations: Optional[int] = None) -> list[int]:
    """The new candidates sampled per generation: ``[P, P - E, ..., rest]``, for ``generations`` full generations or
    as many as ``candidates`` pay for (the last one partial)."""
    children = population - elites
    if generations is not None:
        return [population] + [children] * (generations - 1)
    if candidates < population:
        return []
    extra = candidates - population
    return [population] + [children] * (extra // children) + ([extra % children] if extra % children else [])


def tournament_parents(members: Sequence[Candidate], n: int, size: int, seed: int, generation: int) -> list[Candidate]:
    """``n`` parents, each the best (``rank_key``) of ``size`` members drawn with replacement (seeded)."""
    g = torch.Generator(device="cpu").manual_seed(derive_seed(seed, _SALT, generation, 1))
    draws = torch.randint(len(members), (n, size), generator=g).tolist()
    return [min((members[i] for i in row), key=rank_key) for row in draws]


def evolution_search(generate: Generate, score: Score, shape: Sequence[int], *, nfe_per_candidate: int, seed: int = 0,
                     population: int = 8, elites: int = 2, generations: Optional[int] = None, budget: Optional[int] = None,
                     lam: float = 0.9, tournament: int = 2, chunk_size: int = 8, top_k: Optional[int] = None,
                     cfg_multiplier: int = 1, on_step: Optional[OnStep] = None, on_scored: Optional[OnScored] = None,
                     on_interrupt: Optional[OnInterrupt] = None, resume_from: Optional[SearchResult] = None) -> SearchResult:
    """EvoSearch over initial noise for ``generations`` generations (or as many as the NFE ``budget`` pays for, the
    last one partial). ``top_k`` and ``resume_from`` as in ``random_search`` (selection is seeded and reads only the
    recorded scores, so a resumed run ends where an uninterrupted one does)."""
    seed = check_seed(seed)
    p, e, lam, t = check_evolution_params(population, elites, lam, tournament)
    nfe = check_positive_int(nfe_per_candidate, "nfe_per_candidate")
    if generations is None:
        if budget is None:
            raise ValueError(f"give generations (an integer >= 1) or an NFE budget (an integer >= {p * nfe}, one generation)")
        budget = check_positive_int(budget, "budget (NFE)")
        sizes = generation_sizes(p, e, candidates=budget // nfe)
        if not sizes:
            raise ValueError(f"NFE budget {budget} is below one generation (population {p} x {nfe} NFE); raise the budget "
                             f"to >= {p * nfe} or lower the population")
    else:
        generations = check_positive_int(generations, "generations")
        sizes = generation_sizes(p, e, generations=generations)
        if budget is not None and sum(sizes) * nfe > budget:
            most = len(generation_sizes(p, e, candidates=budget // nfe)) if budget >= p * nfe else 0
            raise ValueError(f"{generations} generations ({sum(sizes)} candidates x {nfe} NFE = {sum(sizes) * nfe}) exceed the "
                             f"NFE budget {budget}; use generations <= {most} or raise the budget")
    total = sum(sizes)
    top_k = resolve_top_k(top_k, total, f"{len(sizes)} generations, {total} candidates")
    params = {"seed": seed, "population": p, "elites": e, "generations": len(sizes), "lam": lam, "tournament": t,
              "budget": budget, "nfe_per_candidate": nfe, "chunk_size": chunk_size, "generation_sizes": sizes}
    ev = Evaluator("evolution", params, shape, generate, score, nfe_per_candidate=nfe, chunk_size=chunk_size, top_k=top_k,
                   cfg_multiplier=cfg_multiplier, on_step=on_step, on_scored=on_scored, resume_from=resume_from)
    ev.progress_total = total

    def body():
        members = ev.evaluate(seed_pool(seed, p), round=0)
        noise = {c.recipe: c.recipe.make(ev.shape) for c in members}  # the live members' noise: one mutation per child
        for gen, n in enumerate(sizes[1:], start=1):
            ranked = sorted(members, key=rank_key)
            parents = tournament_parents(members, n, t, seed, gen)
            kids = [NeighbourRecipe(par.recipe, gen, j, lam, derive_seed(seed, _SALT, gen, j, 0),
                                    pivot_noise=noise[par.recipe]) for j, par in enumerate(parents)]
            children = ev.evaluate(kids, round=gen)
            for c in children:
                noise[c.recipe] = c.recipe.from_pivot(noise[c.recipe.pivot])
            members = ranked[:e] + children
            noise = {c.recipe: noise[c.recipe] for c in members}

    result = run_guarded(ev, body, on_interrupt)
    result.params["verifier_calls"] = len(result.history)  # one per candidate (a resumed run's included); no previews
    return result
