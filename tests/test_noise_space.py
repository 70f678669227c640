"""Exact re-noising in the model's own space (samplers/noise_space.py).

The originals: EDM's forward process x = x0 + sigma eps (Karras et al. 2022, Eq. 1) and rectified flow's
x = (1 - s) x0 + s eps (as ComfyUI's CONST model_sampling ``noise_scaling`` defines it). A transition from a
to b must keep that marginal: the x0 coefficient and the total noise variance at b.
"""

import math

import pytest
import torch

from noise_search.samplers.noise_space import edm_forward, flow_forward, forward_transition


def coefficients(fn, a, b):
    """(scale of x, std of the added noise) of a linear transition, read off two probes."""
    one, zero = torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    return float(fn(one, a, b, zero)), float(fn(zero, a, b, one))


@pytest.mark.parametrize("a,b", [(0.0, 0.3), (0.2, 0.7), (0.5, 1.0), (0.9, 0.99)])
def test_flow_transition_keeps_the_flow_marginal(a, b):
    scale, std = coefficients(flow_forward, a, b)
    # x_a = (1 - a) x0 + a e1  ->  scale (1 - a) x0 + scale a e1 + std e2 must be (1 - b) x0 + b e
    assert scale * (1 - a) == pytest.approx(1 - b, abs=1e-12)
    assert (scale * a) ** 2 + std ** 2 == pytest.approx(b * b, abs=1e-12)


@pytest.mark.parametrize("a,b", [(0.0, 1.0), (0.5, 3.0), (14.6, 80.0)])
def test_edm_transition_keeps_the_edm_marginal(a, b):
    scale, std = coefficients(edm_forward, a, b)
    assert scale == 1.0 and a * a + std * std == pytest.approx(b * b, rel=1e-12)


@pytest.mark.parametrize("space,level", [("flow", 1.0), ("flow", 0.4), ("edm", 14.6), ("edm", 0.0)])
def test_a_move_to_the_same_level_is_the_identity(space, level):
    """delta_f = 0 on a flow grid starting at s = 1 used to divide 0 by 0 (ZeroDivisionError)."""
    x, noise = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    assert forward_transition(space)(x, level, level, noise) is x


def test_bad_levels_and_spaces_are_refused():
    x = torch.zeros(1)
    with pytest.raises(ValueError, match="sigma_from <= sigma_to"):
        edm_forward(x, 2.0, 1.0, x)
    with pytest.raises(ValueError, match="finite"):
        flow_forward(x, 0.1, math.inf, x)
    with pytest.raises(ValueError, match="at most 1"):
        flow_forward(x, 0.1, 1.5, x)
    with pytest.raises(ValueError, match="one of .*edm.*flow.*got 've'"):
        forward_transition("ve")


def test_path_search_from_pure_flow_noise_with_delta_f_zero_equals_plain_sampling():
    """Search over paths on a flow grid that starts at s = 1, start step 0, delta_f 0, M = 1 is plain sampling."""
    from noise_search.search.noise import SeedRecipe
    from noise_search.search.paths import path_search

    sig = [1.0, 0.75, 0.5, 0.25, 0.0]
    denoise = lambda x, a, b: x * (1 - (a - b))  # any deterministic per-step map
    res = path_search(denoise, lambda batch: batch.samples.flatten(1).sum(1), (1, 2, 2, 2), sig, seed=7, paths=1, width=1,
                      start_step=0, forward_steps=0, backward_steps=1, prepare=lambda n: n, renoise=flow_forward, top_k=1)
    x = SeedRecipe(7).make((1, 2, 2, 2))
    for a, b in zip(sig, sig[1:]):
        x = denoise(x, a, b)
    assert torch.equal(res.top_k_samples["samples"][0:1], x)


# ---------------------------------------------------------------------- the self-supervised verifier's early prediction

def test_the_early_call_is_the_nearest_to_sit_time_0_4():
    from noise_search.samplers.schedules import early_prediction_call
    assert early_prediction_call([1.0, 0.8, 0.45, 0.3, 0.1]) == (2, 0.45)
    assert early_prediction_call([1.0, 0.8, 0.45, 0.3, 0.1], rule="first_below") == (3, 0.3)


@pytest.mark.parametrize("times", [
    [1.0, 0.94, 0.83, 0.6],          # FLUX Euler 4 steps (shifted grid): nearest call to 0.4 is the last
    [0.9936, 0.4954],                # sCM 2 steps (t_max, t_mid = 1.1) in SiT time
    [0.3],                           # one step
])
def test_a_schedule_whose_early_call_is_the_last_is_refused(times):
    """The last call's x0 prediction is the final sample: every candidate would score cos(phi(x), phi(x)) = 1."""
    from noise_search.samplers.schedules import early_prediction_call
    with pytest.raises(ValueError, match="before the final one.*every candidate would score 1"):
        early_prediction_call(times)
    assert early_prediction_call(times, allow_last=True)[0] == len(times) - 1


def test_the_toy_student_refuses_the_self_supervised_verifier():
    """The toy student's Batch.early used to be its final sample (a constant verifier)."""
    from noise_search.toyworld.world import ToyWorld

    class NeedsEarly:
        needs_early = True

    world = ToyWorld(3, steps=2, generator="student", verifier=NeedsEarly())
    with pytest.raises(ValueError, match="student's only prediction at low noise is its final sample"):
        world.sample(torch.randn(1, 1, 8, 8), [0])
    teacher = ToyWorld(3, steps=4, verifier=NeedsEarly())
    batch = teacher.sample(torch.randn(2, 1, 8, 8))
    assert batch.early is not None and not torch.equal(batch.early, batch.samples)


def test_sampling_without_a_noise_space_is_refused():
    """No EDM default a flow model could fall into: sCM sampling names the space (or the host's own renoise)."""
    from noise_search.samplers.noise_space import EDM, FLOW
    from noise_search.samplers.scm import sample_scm
    with pytest.raises(ValueError, match="needs the model's noise space"):
        sample_scm(lambda x, s: torch.ones_like(x), torch.zeros(1, 2), [0.9, 0.25, 0.0])
    noise = torch.full((1, 2), 2.0)
    for space, expected in ((FLOW, 0.75 * torch.ones(1, 2) + 0.25 * noise),  # (1 - s) x0 + s eps at s = 0.25
                            (EDM, torch.ones(1, 2) + 0.25 * noise)):         # x0 + sigma eps
        seen = []
        out = sample_scm(lambda x, s: (seen.append(x.clone()), torch.ones_like(x))[1], torch.zeros(1, 2), [0.9, 0.25, 0.0],
                         noise_sampler=lambda a, b: noise, space=space)
        assert torch.allclose(seen[1], expected) and torch.equal(out, torch.ones(1, 2))


@pytest.mark.parametrize("space,sigma", [("edm", 0.0), ("edm", 3.0), ("flow", 0.0), ("flow", 0.4), ("flow", 1.0)])
def test_time_mapping_round_trips(space, sigma):
    from noise_search.samplers.noise_space import space_named
    sp = space_named(space)
    t = sp.to_time(sigma)
    assert 0.0 <= t <= 1.0 and sp.from_time(t) == pytest.approx(sigma, abs=1e-12)


def test_path_search_without_a_noise_space_is_refused():
    """Search over paths re-noises: it names the model's space or takes the host's own renoise, never defaults to EDM."""
    from noise_search.search.paths import path_search
    with pytest.raises(ValueError, match="search over paths needs the model's noise space .* or the host's own renoise"):
        path_search(lambda x, a, b: x, lambda b: b.samples.flatten(1).sum(1), (1, 2, 2, 2), [1.0, 0.5, 0.0], paths=1,
                    width=1, start_step=0, forward_steps=0, backward_steps=1)
