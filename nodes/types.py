"""The pack's socket types and the plain objects that travel on them.

``NOISE_POOL`` carries a :class:`NoisePool` (candidate noise recipes + the latent shape they are
made for); ``VERIFIER`` carries a :class:`HostVerifier` (a core verifier + the ComfyUI model patcher
that lets model management load and offload it). :class:`PoolNoise` is what the core
``SamplerCustomAdvanced`` node expects on its NOISE input.
"""

import json
from dataclasses import dataclass, field

import torch
from comfy_api.latest import io

from ..search.candidates import Candidates
from ..search.noise import recipe_to_dict

NoisePoolType = io.Custom("NOISE_POOL")
VerifierType = io.Custom("VERIFIER")


def latent_shape(samples):
    """One candidate's latent shape (batch 1) from a LATENT's ``samples`` tensor."""
    return (1,) + tuple(samples.shape[1:])


@dataclass
class NoisePool:
    """Candidate noises as recipes; ``shape`` is one candidate's latent shape, or None to take it from the latent at use."""

    recipes: list
    shape: tuple = None
    params: dict = field(default_factory=dict)

    def __len__(self):
        return len(self.recipes)

    def resolve_shape(self, samples=None):
        if samples is not None:
            shape = latent_shape(samples)
            if self.shape is not None and tuple(self.shape[1:]) != shape[1:] and tuple(self.shape[2:]) != shape[2:]:
                raise ValueError(f"the noise pool was made for latents of shape {tuple(self.shape)} but the latent here is {tuple(samples.shape)}")
            return shape
        if self.shape is None:
            raise ValueError("the noise pool has no latent shape: connect a LATENT to the Noise Candidate Pool node")
        return tuple(self.shape)

    def noise(self, shape):
        return Candidates.of(self.recipes, shape).noise

    def to_json(self):
        return json.dumps({"params": self.params, "shape": list(self.shape) if self.shape else None,
                           "recipes": [recipe_to_dict(r) for r in self.recipes]})


class PoolNoise:
    """NOISE for SamplerCustomAdvanced: the pool's candidates stacked on the batch dimension.

    Candidate i is ``seed_noise(seed_i, batch-1 shape)``, exactly what a KSampler draws for seed_i,
    so each row reproduces on its own in a plain KSampler with its seed (deterministic samplers)."""

    def __init__(self, pool):
        self.pool = pool
        first = pool.recipes[0]
        self.seed = int(getattr(first, "seed", 0))

    def generate_noise(self, input_latent):
        samples = input_latent["samples"]
        shape = self.pool.resolve_shape(samples)
        n, b = len(self.pool), samples.shape[0]
        if b not in (1, n):
            raise ValueError(f"the latent has batch {b} but the noise pool holds {n} candidates; use a batch-1 latent "
                             f"(every candidate shares it) or one of batch {n}")
        return self.pool.noise(shape).to(samples.dtype)


class HostVerifier:
    """A core verifier under ComfyUI model management.

    ``verifier`` follows ``verifiers.base.Verifier``; its torch modules are wrapped in one
    ``ModelPatcher`` so ComfyUI can load them onto the GPU for scoring and offload them when the
    diffusion model needs the memory."""

    def __init__(self, verifier, patcher=None, kind="", source=""):
        self.verifier, self.patcher, self.kind, self.source = verifier, patcher, kind, source

    @property
    def name(self):
        return getattr(self.verifier, "name", self.kind)

    @property
    def needs_early(self):
        return bool(getattr(self.verifier, "needs_early", False))

    @property
    def condition(self):
        return getattr(self.verifier, "condition", None)

    def describe(self):
        d = dict(self.verifier.describe()) if hasattr(self.verifier, "describe") else {"name": self.name}
        d["kind"], d["source"] = self.kind, self.source
        return d

    def load(self):
        """Bring the verifier's weights onto its load device (model management may offload others)."""
        if self.patcher is None:
            return
        import comfy.model_management as mm
        mm.load_models_gpu([self.patcher], force_full_load=True)
        dev = self.patcher.load_device
        self.verifier.device = torch.device(dev)

    def score(self, images, conditions=None, early=None):
        self.load()
        return torch.as_tensor(self.verifier.score(images, conditions, early)).detach().float().cpu().flatten()
