"""Memory-bounded search: the Evaluator keeps only the top-K candidates' samples, as their own small
tensors (never views into a chunk), and the kept set equals a brute-force top-K whatever the chunking."""

import pytest
import torch

from noise_search.search.evaluate import Batch, Evaluator
from noise_search.search.noise import SeedRecipe, seed_noise
from noise_search.search.random_search import random_search

SHAPE = (1, 3, 16, 16)


def generate(candidates):
    return images_of(candidates.noise)


def images_of(noise):
    # big "decoded images" next to the latents, as a VAE would give; early x0 as the self-supervised verifier reads
    images = noise.repeat(1, 1, 4, 4).permute(0, 2, 3, 1).contiguous()
    return Batch(images, {"latent": noise.clone()}, early=images * 0.5)


def score(batch):
    return batch.extras["latent"].flatten(1).mean(1)


@pytest.mark.parametrize("chunk", [1, 3, 5, 8, 20])
@pytest.mark.parametrize("top_k", [1, 4])
def test_kept_samples_equal_brute_force_top_k(chunk, top_k):
    n = 20
    r = random_search(generate, score, SHAPE, seed=11, count=n, nfe_per_candidate=1, chunk_size=chunk, top_k=top_k)
    noises = torch.cat([seed_noise(11 + i, SHAPE) for i in range(n)])
    s = noises.flatten(1).mean(1).double()
    best = sorted(range(n), key=lambda i: (-float(s[i]), i))[:top_k]
    assert [c.index for c in r.top_k] == best
    assert torch.equal(r.top_k_samples["latent"], noises[best])
    assert torch.equal(r.top_k_samples["samples"], images_of(noises[best]).samples)


def test_kept_samples_hold_only_their_own_storage():
    """No kept tensor pins a whole chunk: each one's storage is exactly K samples."""
    r = random_search(generate, score, SHAPE, seed=0, count=64, nfe_per_candidate=1, chunk_size=16, top_k=2)
    for name, t in r.top_k_samples.items():
        assert t.shape[0] == 2
        assert t.untyped_storage().nbytes() == t.numel() * t.element_size(), name


def test_unchanged_top_k_is_not_copied_again():
    """A chunk whose candidates all rank below the kept top-K leaves the kept tensors untouched."""
    ev = Evaluator("random", {}, SHAPE, generate, lambda b: torch.full((len(b),), -1.0), nfe_per_candidate=1, chunk_size=4, top_k=2)
    first = ev.evaluate([SeedRecipe(i) for i in range(4)])
    kept = ev.result.top_k_samples["samples"]
    ev.score = lambda b: torch.full((len(b),), -2.0)
    ev.evaluate([SeedRecipe(i) for i in range(4, 8)])
    assert ev.result.top_k == first[:2]
    assert ev.result.top_k_samples["samples"] is kept
