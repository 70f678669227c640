"""Noise recipes: every candidate's noise is recreated bit-exactly from a small, JSON-able recipe.

Seed noise follows ComfyUI's ``prepare_noise``: a CPU generator seeded with ``seed`` and one
``torch.randn`` of the (batch-1) latent shape, so seed s here is seed s in a plain KSampler.
Zero-order neighbours live on the sphere of the pivot's norm at cosine ``lam`` to it
(``generate_neighbors`` in tt-scale-flux, credited to Ma); their direction noise has its own
derived seed, so a neighbour is reproducible too. Path candidates record their parent path and
the seed of the noise injected when re-noising.
"""

from __future__ import annotations

import hashlib
import math
import operator
import weakref
from dataclasses import InitVar, asdict, dataclass, field
from typing import Any, Optional, Sequence, Union

import torch

__all__ = ['MAX_SEED', 'derive_seed', 'check_seed', 'seed_noise', 'sphere_neighbour', 'SeedRecipe', 'Chained',
           'NeighbourRecipe', 'PathRecipe', 'Recipe', 'LINKS', 'RECIPE_FIELDS', 'lineage', 'own_dict', 'recipe_to_dict',
           'recipe_kind', 'chain_dicts', 'recipe_from_dict', 'make_noise_batch']

MAX_SEED = 0xFFFFFFFFFFFFFFFF


def derive_seed(*parts: int) -> int:
    """A 63-bit seed derived from ``parts`` (stable across runs, platforms and Python versions)."""
    h = hashlib.blake2b(repr(tuple(int(p) for p in parts)).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & 0x7FFFFFFFFFFFFFFF


def check_seed(seed: Any, name: str = "seed") -> int:
    try:
        ok = not isinstance(seed, (bool, str, bytes)) and int(seed) == seed and 0 <= int(seed) <= MAX_SEED
    except (TypeError, ValueError, OverflowError):  # None, NaN, inf, objects with no int()
        ok = False
    if not ok:
        raise ValueError(f"{name} must be an integer in [0, {MAX_SEED}], got {seed!r}")
    return int(seed)


def seed_noise(seed: int, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """ComfyUI ``prepare_noise`` for one candidate: ``torch.randn(shape)`` from a CPU generator seeded with ``seed``."""
    g = torch.Generator(device="cpu").manual_seed(check_seed(seed))
    return torch.randn(tuple(shape), generator=g, dtype=torch.float32, device="cpu").to(dtype)


def sphere_neighbour(pivot: torch.Tensor, direction: torch.Tensor, lam: float) -> torch.Tensor:
    """The point at cosine ``lam`` to ``pivot`` on the sphere of radius ||pivot||, towards ``direction``.

    Computed in float64 over all elements: y = r (lam u + sqrt(1 - lam^2) w), u = pivot / r,
    w = the unit part of ``direction`` orthogonal to u.
    """
    if not (0.0 < lam < 1.0):
        raise ValueError(f"lambda (cosine similarity to the pivot) must be in (0, 1), got {lam}")
    p = pivot.to(torch.float64).flatten()
    v = direction.to(torch.float64).flatten()
    r = p.norm()
    if not (r > 0) or not torch.isfinite(r):
        raise ValueError(f"the pivot must be finite with a non-zero norm to have neighbours on its sphere, got norm {r.item()}")
    u = p / r
    w = v - (v @ u) * u
    if not (w.norm() > 1e-6 * v.norm()):
        raise ValueError("the direction noise must not be parallel to the pivot (it would fix no direction on the sphere); "
                         "use a direction with another seed")
    w = w / w.norm()
    y = r * (lam * u + math.sqrt(1.0 - lam * lam) * w)
    return y.reshape(pivot.shape).to(pivot.dtype)


@dataclass(frozen=True)
class SeedRecipe:
    """Fresh Gaussian noise from a seed (KSampler-compatible)."""

    seed: int
    kind: str = field(default="seed", init=False)

    def make(self, shape: Sequence[int]) -> torch.Tensor:
        return seed_noise(self.seed, shape)

    def describe(self) -> str:
        return f"seed {self.seed}"

    @property
    def sampler_seed(self) -> int:
        """The seed of the fresh noise a stochastic sampler draws for this candidate: its own seed, so it
        reproduces in a plain KSampler / SamplerCustomAdvanced with that seed."""
        return self.seed

    @property
    def key(self) -> int:
        """A stable 63-bit identity of the recipe (same across runs, processes and platforms)."""
        return derive_seed(0, self.seed)


class Chained:
    """A recipe made from another one, its ``source`` (``LINK`` names that field): a neighbour from its pivot,
    a path branch from its parent. A zero-order search adds one link per iteration, so chains get as long
    as a search runs (100,000 iterations in the node); everything that walks a chain (equality, hashing,
    repr, serialisation, making the noise) is therefore iterative, never recursive, and what is needed per
    link is cached at construction from the source's cache, in O(1):

    * ``depth``: how many links of this recipe's own kind end here (1 for a neighbour of a seed);
    * ``origin``: the recipe that run of links starts from (the seed a zero-order search started at).
    """

    LINK = ""
    OWN = ()  # the fields besides the link (and the kind)

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls._get_own = operator.attrgetter(*cls.OWN)  # a tuple (OWN has several fields); cheap, as own() runs per link

    def __post_init__(self) -> None:
        src = self.source
        same = type(src) is type(self)
        object.__setattr__(self, "depth", src.depth + 1 if same else 1)
        object.__setattr__(self, "origin", src.origin if same else src)
        object.__setattr__(self, "_hash", hash((self.kind, self.own(), src)))  # the source's hash is cached: O(1)
        # the stable identity, chained from the source's the same way (Python's hash() of a str is salted per process)
        digest = hashlib.blake2b(repr((self.kind, src.key, self.own())).encode(), digest_size=8).digest()
        object.__setattr__(self, "key", int.from_bytes(digest, "little") & 0x7FFFFFFFFFFFFFFF)

    @property
    def sampler_seed(self) -> int:
        """The seed of the fresh noise a stochastic sampler draws for this candidate: its stable ``key``."""
        return self.key

    @property
    def source(self) -> Recipe:
        return getattr(self, self.LINK)

    def own(self) -> tuple:
        return self._get_own(self)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        a, b = self, other
        while isinstance(a, Chained):
            if a is b:
                return True
            if type(a) is not type(b) or a._hash != b._hash or a.own() != b.own():
                return False
            a, b = a.source, b.source
        return a == b

    def __repr__(self) -> str:
        src = self.source
        if isinstance(src, Chained):  # bounded: the source chain is summarised, not printed
            src = f"<{type(src).__name__} {src.depth} deep from {src.origin!r}>"
        else:
            src = repr(src)
        own = ", ".join(f"{f}={getattr(self, f)!r}" for f in self.OWN)
        return f"{type(self).__name__}({self.LINK}={src}, {own})"

    def __reduce__(self) -> tuple:
        """Pickle and deepcopy through the flat dict form: the default nests one call per link."""
        return recipe_from_dict, (recipe_to_dict(self),)

    def root(self) -> Recipe:
        """The recipe this run of links of one kind starts from (a path's or a particle's seed): ``origin``."""
        return self.origin

    def chain(self) -> list:
        """The links of this recipe's own kind, from the first one to this one."""
        out, r = [], self
        while type(r) is type(self):
            out.append(r)
            r = r.source
        return out[::-1]


@dataclass(frozen=True, eq=False, repr=False)
class NeighbourRecipe(Chained):
    """Neighbour ``index`` of ``pivot`` drawn in zero-order iteration ``iteration`` at cosine ``lam``.

    ``pivot_noise`` (not a field): the pivot's noise, when the caller holds it, as the search does. Then
    ``make`` costs one ``sphere_neighbour`` instead of rebuilding the pivot's whole chain. Only a weak
    reference is kept, so recipes kept in a search's history hold no tensors: once the caller drops its
    tensor, ``make`` rebuilds from the chain's origin again (the same bits, computed by the same steps).
    The caller guarantees that it is exactly ``pivot.make(pivot_noise.shape)``.
    """

    pivot: object
    iteration: int
    index: int
    lam: float
    seed: int
    kind: str = field(default="neighbour", init=False)
    pivot_noise: InitVar[object] = None

    LINK = "pivot"
    OWN = ("iteration", "index", "lam", "seed")

    def __post_init__(self, pivot_noise: Optional[torch.Tensor]) -> None:
        super().__post_init__()
        object.__setattr__(self, "_pivot_noise", None if pivot_noise is None else weakref.ref(pivot_noise))

    def from_pivot(self, pivot_noise: torch.Tensor) -> torch.Tensor:
        """This neighbour's noise from its pivot's: the one step every link of a chain takes."""
        return sphere_neighbour(pivot_noise, seed_noise(self.seed, pivot_noise.shape), self.lam)

    def lent_pivot_noise(self, shape: Sequence[int]) -> Optional[torch.Tensor]:
        """The pivot noise lent at construction, while its holder keeps it and it has this shape; else None."""
        noise = None if self._pivot_noise is None else self._pivot_noise()
        return noise if noise is not None and tuple(noise.shape) == tuple(shape) else None

    def make(self, shape: Sequence[int]) -> torch.Tensor:
        """Walk down to the nearest link whose pivot noise is at hand (lent, or the origin's, made afresh),
        then step back up link by link: iterative at any depth, and the same steps as during the search."""
        links, r, noise = [], self, None
        while noise is None:
            links.append(r)
            noise = r.lent_pivot_noise(shape)
            if noise is None and not isinstance(r.pivot, NeighbourRecipe):
                noise = r.pivot.make(shape)
            r = r.pivot
        for link in reversed(links):
            noise = link.from_pivot(noise)
        return noise

    def describe(self) -> str:
        """Bounded at any depth (the nodes show it for every candidate): a pivot that is itself a neighbour is
        summarised by how many neighbour steps it lies from the recipe its chain started at."""
        p = self.pivot
        if isinstance(p, NeighbourRecipe):
            of = f"pivot {p.depth} step{'s' if p.depth > 1 else ''} from ({p.origin.describe()})"
        else:
            of = p.describe()
        return f"neighbour {self.index} of ({of}) at iteration {self.iteration}, lambda {self.lam}"


@dataclass(frozen=True, eq=False, repr=False)
class PathRecipe(Chained):
    """A branch of search over paths: ``parent`` re-noised at grid step ``step`` with noise from ``seed``.

    ``parent`` is the SeedRecipe of the initial noise or the PathRecipe of the previous round.
    ``make`` returns the injected re-noise; the path itself is replayed by ``search.paths.replay``.
    """

    parent: object
    step: int
    index: int
    seed: int
    kind: str = field(default="path", init=False)

    LINK = "parent"
    OWN = ("step", "index", "seed")

    def make(self, shape: Sequence[int]) -> torch.Tensor:
        return seed_noise(self.seed, shape)

    def describe(self) -> str:
        return f"path from ({self.root().describe()}) re-noised at steps {[c.step for c in self.chain()]}"


Recipe = Union[SeedRecipe, NeighbourRecipe, PathRecipe]  # any candidate's recipe (the type of a ``recipes`` entry)

LINKS = {cls.kind: cls.LINK for cls in (NeighbourRecipe, PathRecipe)}  # kind -> the field naming its source
RECIPE_FIELDS = {"seed": ("seed",), **{cls.kind: (cls.LINK, *cls.OWN) for cls in (NeighbourRecipe, PathRecipe)}}


def lineage(recipe: Recipe) -> list[Recipe]:
    """``recipe`` and the recipes it is made from, root first, each made from the one before it."""
    out = [recipe]
    while isinstance(out[-1], Chained):
        out.append(out[-1].source)
    return out[::-1]


def own_dict(recipe: Recipe) -> dict:
    """A recipe's fields without its link (its pivot / parent), as in a ``lineage`` entry."""
    if isinstance(recipe, Chained):
        return {"kind": recipe.kind, **dict(zip(recipe.OWN, recipe.own()))}
    return asdict(recipe)


def recipe_to_dict(recipe: Recipe) -> dict:
    """A JSON-able dict; a chained recipe is flat: its own fields plus ``lineage``, the recipes it is made
    from (root first, each entry made from the one before it, entries without their pivot / parent), so a
    recipe 10,000 links deep needs no recursion here, in ``json`` or in ``recipe_from_dict``."""
    if not isinstance(recipe, Chained):
        return own_dict(recipe)
    return {**own_dict(recipe), "lineage": [own_dict(r) for r in lineage(recipe)[:-1]]}


def recipe_kind(d: Any) -> str:
    if not isinstance(d, dict):
        raise ValueError(f"a recipe must be a dict with a 'kind' ('seed', 'neighbour', 'path' or 'particle'), got {type(d).__name__}: {d!r}")
    kind = d.get("kind")
    if kind not in RECIPE_FIELDS:
        raise ValueError(f"unknown recipe kind {kind!r}; expected 'seed', 'neighbour', 'path' or 'particle'")
    return kind


def chain_dicts(d: dict) -> list[dict]:
    """The dicts of the recipes ``d`` is made of, root first: from ``lineage`` (``recipe_to_dict``), or by
    descending the nested form that earlier versions wrote (each pivot / parent inside its child)."""
    if recipe_kind(d) in LINKS and "lineage" in d:
        if not isinstance(d["lineage"], list):
            raise ValueError(f"a recipe's lineage must be a list of recipe dicts, root first; got {type(d['lineage']).__name__}")
        return [*d["lineage"], d]
    out = [d]
    while True:
        link = LINKS.get(recipe_kind(out[-1]))
        if link is None or link not in out[-1]:
            return out[::-1]
        out.append(out[-1][link])


def recipe_from_dict(d: dict, source: Optional[Recipe] = None) -> Recipe:
    """The inverse of ``recipe_to_dict`` (which also reads the nested form): built link by link from the root.

    ``source``: the recipe ``d`` is made from, when ``d`` holds only its own fields (a search result writes a
    candidate whose pivot / parent is an earlier candidate that way, see ``search.result``). FK steering's particle
    recipes (``search.particle_recipe``) are read here too, so a search result of any algorithm reads back."""
    if isinstance(d, dict) and d.get("kind") == "particle":
        from .particle_recipe import particle_recipe_from_dict  # it builds on this module's Chained
        return particle_recipe_from_dict(d, source)
    recipe = source
    for i, e in enumerate([d] if source is not None else chain_dicts(d)):
        kind = recipe_kind(e)
        link = LINKS.get(kind)
        missing = [f for f in RECIPE_FIELDS[kind] if f not in e and not (f == link and recipe is not None)]
        if missing:
            raise ValueError(f"{kind} recipe is missing {missing}; a {kind} recipe has the fields {list(RECIPE_FIELDS[kind])}")
        if (recipe is None) != (link is None):
            raise ValueError(f"entry {i} of the recipe's lineage is a {kind} recipe; the first entry must be its root "
                             f"(a seed recipe) and only the first")
        if kind == "seed":
            recipe = SeedRecipe(check_seed(e["seed"]))
        elif kind == "neighbour":
            recipe = NeighbourRecipe(recipe, int(e["iteration"]), int(e["index"]), float(e["lam"]), check_seed(e["seed"]))
        else:
            recipe = PathRecipe(recipe, int(e["step"]), int(e["index"]), check_seed(e["seed"]))
    return recipe


def make_noise_batch(recipes: Sequence[Recipe], shape: Sequence[int]) -> torch.Tensor:
    """Noise for ``recipes`` stacked on the batch dimension; ``shape`` is one candidate's latent shape (batch 1)."""
    if len(recipes) == 0:
        raise ValueError("the candidate pool is empty: give at least one recipe to make noise for")
    shape = tuple(shape)
    if len(shape) < 2 or shape[0] != 1:
        raise ValueError(f"latent shape must be one candidate's shape with batch 1, e.g. (1, 4, 64, 64), got {shape}")
    return torch.cat([r.make(shape) for r in recipes], dim=0)
