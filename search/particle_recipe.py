"""The recipe of an FK-steering particle: its initial seed, its ancestors and the seeds of every step's noise.

A particle of FK steering (``search.fk_steering``) is made by a stochastic sampler, and resampling replaces
particles by copies of others, so neither its initial noise nor a sampler seed alone recreates it. Its
:class:`ParticleRecipe` records the whole lineage, as a chain of *segments* (one link each, root first):

* the root is the :class:`~noise_search.search.noise.SeedRecipe` of the initial noise of the particle's first
  ancestor (seed s here is seed s in a plain KSampler);
* link ``L`` says: from grid step ``L.step`` on, this particle sat in slot ``L.index`` and every stochastic
  transition from step ``t`` to ``t + 1`` drew its noise from ``seed_noise(derive_seed(L.seed, t))``, until the
  next link's step. The first link starts at step 0; a resampling at step ``i`` adds one link to every particle,
  whose parent is the recipe of the particle it was copied from.

So the chain of the winner names every ancestor (``ancestors``) and every noise draw, and
``search.fk_steering.replay_particle`` re-runs it bit-exactly from the recipe alone. Like the recipes of
``search.noise`` it is a frozen dataclass with ``make``, ``describe``, ``key`` and ``sampler_seed``; it is a
:class:`~noise_search.search.noise.Chained` recipe, so equality, hashing and ``recipe_to_dict`` walk the chain
iteratively, and a search result writes it in linear size (``search.result.history_dicts``).
``particle_recipe_from_dict`` reads the dict back (``search.noise.recipe_from_dict`` knows only the kinds
``seed``, ``neighbour`` and ``path``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import torch

from .noise import Chained, SeedRecipe, check_seed, derive_seed, recipe_to_dict, seed_noise

__all__ = ["ParticleRecipe", "particle_recipe_from_dict", "PARTICLE_FIELDS"]

PARTICLE_FIELDS = ("step", "index", "seed")  # a link's own fields (besides its parent and kind)


@dataclass(frozen=True, eq=False, repr=False)
class ParticleRecipe(Chained):
    """One segment of a particle's lineage: from grid step ``step`` on, slot ``index``, step noise from ``seed``.

    ``parent``: the SeedRecipe of the initial noise (first link) or the recipe of the particle this one was
    resampled from (every later link). ``make`` returns the initial noise (the root's), so a chunk of particle
    recipes (``search.candidates.Candidates``) starts from the right noise; ``noise_at`` the noise of one step."""

    parent: object
    step: int
    index: int
    seed: int
    kind: str = field(default="particle", init=False)

    LINK = "parent"
    OWN = PARTICLE_FIELDS

    def ancestors(self) -> list[tuple[int, int]]:
        """``[(step, slot)]`` root first: the slot this particle's line sat in from each step on."""
        return [(link.step, link.index) for link in self.chain()]

    def make(self, shape: Sequence[int]) -> torch.Tensor:
        """The particle's initial noise: its first ancestor's seed noise."""
        return self.root().make(shape)

    def noise_at(self, step: int, shape: Sequence[int]) -> torch.Tensor:
        """The fresh noise of the stochastic transition from grid step ``step`` to ``step + 1`` in this segment."""
        return seed_noise(derive_seed(self.seed, int(step)), shape)

    def describe(self) -> str:
        """Bounded at any depth: the slots of the line, abbreviated past eight resamplings."""
        slots = [str(link.index) for link in self.chain()]
        line = "-".join(slots) if len(slots) <= 9 else "-".join(slots[:4] + ["..."] + slots[-4:])
        return f"particle {self.index} from ({self.root().describe()}), slots {line}"

    def __reduce__(self) -> tuple:
        """Pickle and deepcopy through the flat dict form (``search.noise.recipe_from_dict`` has no particle kind)."""
        return particle_recipe_from_dict, (recipe_to_dict(self),)


def _link(parent: Any, e: dict, i: int) -> ParticleRecipe:
    missing = [f for f in PARTICLE_FIELDS if f not in e]
    if missing:
        raise ValueError(f"particle recipe entry {i} is missing {missing}; a particle link has the fields "
                         f"{list(PARTICLE_FIELDS)}")
    return ParticleRecipe(parent, int(e["step"]), int(e["index"]), check_seed(e["seed"]))


def particle_recipe_from_dict(d: dict, source: Optional[Any] = None) -> ParticleRecipe:
    """The inverse of ``search.noise.recipe_to_dict`` for a particle: ``{kind: 'particle', step, index, seed,
    lineage: [the seed root, then the earlier links]}``. ``source``: the recipe ``d`` continues, when ``d`` holds
    only its own fields (``search.result.history_dicts`` writes a candidate so when its parent is an earlier one)."""
    if not isinstance(d, dict) or d.get("kind") != "particle":
        raise ValueError(f"a particle recipe is a dict with kind 'particle', got {d!r}")
    if source is not None:
        return _link(source, d, 0)
    lineage = d.get("lineage")
    if not isinstance(lineage, list) or not lineage:
        raise ValueError("a particle recipe needs its lineage: a list of recipe dicts, the seed root first")
    root = lineage[0]
    if not isinstance(root, dict) or root.get("kind") != "seed" or "seed" not in root:
        raise ValueError(f"a particle's lineage starts at its seed recipe ({{'kind': 'seed', 'seed': ...}}), got {root!r}")
    recipe: Any = SeedRecipe(check_seed(root["seed"]))
    for i, e in enumerate([*lineage[1:], d], start=1):
        if not isinstance(e, dict) or e.get("kind") != "particle":
            raise ValueError(f"entry {i} of a particle's lineage must be a particle link, got {e!r}")
        recipe = _link(recipe, e, i)
    return recipe
