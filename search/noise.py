"""Noise recipes: every candidate's noise is recreated bit-exactly from a small, JSON-able recipe.

Seed noise follows ComfyUI's ``prepare_noise``: a CPU generator seeded with ``seed`` and one
``torch.randn`` of the (batch-1) latent shape, so seed s here is seed s in a plain KSampler.
Zero-order neighbours live on the sphere of the pivot's norm at cosine ``lam`` to it
(``generate_neighbors`` in tt-scale-flux, credited to Ma); their direction noise has its own
derived seed, so a neighbour is reproducible too. Path candidates record their parent path and
the seed of the noise injected when re-noising.
"""

import hashlib
import math
from dataclasses import dataclass, field, asdict

import torch

MAX_SEED = 0xFFFFFFFFFFFFFFFF


def derive_seed(*parts):
    """A 63-bit seed derived from ``parts`` (stable across runs, platforms and Python versions)."""
    h = hashlib.blake2b(repr(tuple(int(p) for p in parts)).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & 0x7FFFFFFFFFFFFFFF


def check_seed(seed, name="seed"):
    try:
        ok = not isinstance(seed, (bool, str, bytes)) and int(seed) == seed and 0 <= int(seed) <= MAX_SEED
    except (TypeError, ValueError, OverflowError):  # None, NaN, inf, objects with no int()
        ok = False
    if not ok:
        raise ValueError(f"{name} must be an integer in [0, {MAX_SEED}], got {seed!r}")
    return int(seed)


def seed_noise(seed, shape, dtype=torch.float32):
    """ComfyUI ``prepare_noise`` for one candidate: ``torch.randn(shape)`` from a CPU generator seeded with ``seed``."""
    g = torch.Generator(device="cpu").manual_seed(check_seed(seed))
    return torch.randn(tuple(shape), generator=g, dtype=torch.float32, device="cpu").to(dtype)


def sphere_neighbour(pivot, direction, lam):
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

    def make(self, shape):
        return seed_noise(self.seed, shape)

    def describe(self):
        return f"seed {self.seed}"


@dataclass(frozen=True)
class NeighbourRecipe:
    """Neighbour ``index`` of ``pivot`` drawn in zero-order iteration ``iteration`` at cosine ``lam``."""

    pivot: object
    iteration: int
    index: int
    lam: float
    seed: int
    kind: str = field(default="neighbour", init=False)

    def make(self, shape):
        return sphere_neighbour(self.pivot.make(shape), seed_noise(self.seed, shape), self.lam)

    def describe(self):
        return f"neighbour {self.index} of ({self.pivot.describe()}) at iteration {self.iteration}, lambda {self.lam}"


@dataclass(frozen=True)
class PathRecipe:
    """A branch of search over paths: ``parent`` re-noised at grid step ``step`` with noise from ``seed``.

    ``parent`` is the SeedRecipe of the initial noise or the PathRecipe of the previous round.
    ``make`` returns the injected re-noise; the path itself is replayed by ``search.paths.replay``.
    """

    parent: object
    step: int
    index: int
    seed: int
    kind: str = field(default="path", init=False)

    def make(self, shape):
        return seed_noise(self.seed, shape)

    def root(self):
        r = self.parent
        while isinstance(r, PathRecipe):
            r = r.parent
        return r

    def chain(self):
        """The branch points from the root outwards."""
        out, r = [], self
        while isinstance(r, PathRecipe):
            out.append(r)
            r = r.parent
        return out[::-1]

    def describe(self):
        return f"path from ({self.root().describe()}) re-noised at steps {[c.step for c in self.chain()]}"


def recipe_to_dict(recipe):
    d = asdict(recipe)
    return d


RECIPE_FIELDS = {"seed": ("seed",), "neighbour": ("pivot", "iteration", "index", "lam", "seed"),
                 "path": ("parent", "step", "index", "seed")}


def recipe_from_dict(d):
    if not isinstance(d, dict):
        raise ValueError(f"a recipe must be a dict with a 'kind' ('seed', 'neighbour' or 'path'), got {type(d).__name__}: {d!r}")
    d = dict(d)
    kind = d.pop("kind", None)
    if kind not in RECIPE_FIELDS:
        raise ValueError(f"unknown recipe kind {kind!r}; expected 'seed', 'neighbour' or 'path'")
    missing = [f for f in RECIPE_FIELDS[kind] if f not in d]
    if missing:
        raise ValueError(f"{kind} recipe is missing {missing}; a {kind} recipe has the fields {list(RECIPE_FIELDS[kind])}")
    if kind == "seed":
        return SeedRecipe(check_seed(d["seed"]))
    if kind == "neighbour":
        return NeighbourRecipe(recipe_from_dict(d["pivot"]), int(d["iteration"]), int(d["index"]), float(d["lam"]), check_seed(d["seed"]))
    return PathRecipe(recipe_from_dict(d["parent"]), int(d["step"]), int(d["index"]), check_seed(d["seed"]))


def make_noise_batch(recipes, shape):
    """Noise for ``recipes`` stacked on the batch dimension; ``shape`` is one candidate's latent shape (batch 1)."""
    if len(recipes) == 0:
        raise ValueError("the candidate pool is empty: give at least one recipe to make noise for")
    shape = tuple(shape)
    if len(shape) < 2 or shape[0] != 1:
        raise ValueError(f"latent shape must be one candidate's shape with batch 1, e.g. (1, 4, 64, 64), got {shape}")
    return torch.cat([r.make(shape) for r in recipes], dim=0)
