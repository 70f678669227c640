"""Search over paths batches its own chunks: an out-of-memory error there halves the chunk and the search
goes on, with the same candidates, scores and NFE as an uninterrupted run (elementwise toy denoiser, so
chunking cannot change a bit)."""

import pytest
import torch

from noise_search.samplers.noise_space import EDM
from noise_search.samplers.ode import heun_step, step_nfe
from noise_search.samplers.schedules import karras_sigmas
from noise_search.search.paths import path_search

SHAPE = (1, 2, 4, 4)


def denoiser(x, sigma):
    s2 = sigma.view(-1, *([1] * (x.ndim - 1))) ** 2
    return (x + s2 * 0.3) / (1 + s2)


def score(batch):
    target = torch.linspace(-1, 1, 32).view(1, 2, 4, 4)
    return -((batch.samples - target) ** 2).flatten(1).sum(1)


def run(den, chunk):
    return path_search(den, score, SHAPE, karras_sigmas(8, 0.002, 80.0), seed=4, paths=3, width=3, start_step=3,
                       forward_steps=1, backward_steps=2, step_nfe=lambda a, b: step_nfe("heun", b), chunk_size=chunk, top_k=2, space=EDM)


@pytest.mark.parametrize("limit", [1, 2])
def test_out_of_memory_in_path_search_halves_the_chunk(limit):
    sizes = []

    def flaky(x, a, b):
        sizes.append(x.shape[0])
        if x.shape[0] > limit:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return heun_step(denoiser, x, a, b)[0]

    ref = run(lambda x, a, b: heun_step(denoiser, x, a, b)[0], 8)
    r = run(flaky, 8)
    assert max(s for s in sizes[-5:]) <= limit and r.completed
    assert [(c.recipe, c.score, c.nfe) for c in r.history] == [(c.recipe, c.score, c.nfe) for c in ref.history]
    assert r.nfe == ref.nfe and [c.index for c in r.top_k] == [c.index for c in ref.top_k]
    assert torch.equal(r.top_k_samples["samples"], ref.top_k_samples["samples"])


def test_other_errors_in_path_search_propagate():
    def broken(x, a, b):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        run(broken, 4)
