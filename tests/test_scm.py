"""sCM multistep sampling (samplers/scm.py): sigmas per host space, the sampler loop, and agreement with
diffusers' SCMScheduler on the same TrigFlow network and noise."""

import math

import pytest
import torch

from noise_search.samplers import scm
from noise_search.samplers import trigflow as tf
from noise_search.samplers.noise_space import EDM, FLOW

SD = 0.5
T_MAX = math.atan(80 / SD)


class TinyTrigFlow(torch.nn.Module):
    """A small random class-conditional TrigFlow net F(x / sigma_d, t, class_labels)."""

    def __init__(self, d=12, width=32, classes=4, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.inp = torch.nn.Linear(d + 4, width)
        self.emb = torch.nn.Embedding(classes + 1, width)
        self.out = torch.nn.Linear(width, d)

    def forward(self, x, t, class_labels=None):
        t = torch.as_tensor(t, dtype=x.dtype).expand(x.shape[0])
        feats = torch.stack([torch.sin(t), torch.cos(t), torch.sin(5 * t), torch.cos(5 * t)], 1)
        h = self.inp(torch.cat([x, feats], 1))
        if class_labels is not None:
            h = h + self.emb(class_labels)
        return self.out(torch.nn.functional.silu(h))


# --------------------------------------------------------------------------- sigmas


def test_default_times_and_edm_sigmas():
    assert scm.scm_times(1).tolist() == [pytest.approx(1.5645464, abs=1e-7), 0.0]
    assert scm.scm_times(2).tolist() == [pytest.approx(T_MAX, abs=1e-15), 1.1, 0.0]
    assert scm.scm_times(3).tolist()[1:] == [1.1, 0.8, 0.0]
    assert scm.scm_times(4).tolist()[1:] == [1.1, 0.8, 0.5, 0.0]
    s = scm.scm_sigmas(2, dtype=torch.float64)
    assert s.tolist() == [pytest.approx(80.0, rel=1e-14), pytest.approx(0.5 * math.tan(1.1), rel=1e-14), 0.0]
    assert scm.scm_sigmas(2).dtype == torch.float32
    # ComfyUI's sample_lcm with these sigmas is the paper's 2-step sampler: [80.0, 0.9824, 0]
    assert scm.scm_sigmas(2)[1].item() == pytest.approx(0.98238, abs=1e-5)
    # rCM / SANA-Sprint presets pass through t_mid / t_max
    assert scm.scm_times(4, t_mid=scm.T_MIDS_RCM[4]).tolist()[1:] == [1.3, 1.0, 0.6, 0.0]
    assert scm.scm_times(2, t_max=scm.SANA_SPRINT_T_MAX, t_mid=scm.SANA_SPRINT_T_MID).tolist() == [math.pi / 2, 1.3, 0.0]
    # sigma_max / sigma_data move t_max
    assert scm.scm_times(1, sigma_data=1.0, sigma_max=14.6146).tolist()[0] == pytest.approx(math.atan(14.6146), abs=1e-15)


def test_flow_and_trigflow_spaces():
    t = scm.scm_times(3)
    s = scm.scm_sigmas(3, space="flow", dtype=torch.float64)
    assert torch.allclose(s, torch.sin(t) / (torch.sin(t) + torch.cos(t)), atol=0, rtol=0)
    assert s[-1].item() == 0.0
    assert scm.scm_sigmas(3, space="trigflow", dtype=torch.float64).tolist() == t.tolist()
    # pi/2 is representable in flow time (s = 1) but not as an EDM sigma
    assert scm.scm_sigmas(2, t_max=math.pi / 2, space="flow", dtype=torch.float64)[0].item() == pytest.approx(1.0, abs=1e-15)
    with pytest.raises(ValueError, match="sigma = inf"):
        scm.scm_sigmas(2, t_max=math.pi / 2, space="edm")


def _sd15_sigmas():
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    return tf.alphas_cumprod_to_sigmas(torch.cumprod(1 - betas, 0))


def test_discrete_host_sigmas_snap_to_the_table():
    table = _sd15_sigmas()
    s = scm.scm_sigmas(2, sigma_data=1.0, space="discrete", model_sigmas=table, dtype=torch.float64)
    # sigma_d tan(t_max) = 80 is above the table: clipped to its largest sigma (SD1.5: 14.6146)
    assert s[0].item() == table.max().item()
    assert s[0].item() == pytest.approx(14.6146, abs=1e-4)
    want = math.tan(1.1)
    nearest = table[(table.log() - math.log(want)).abs().argmin()].item()
    assert s[1].item() == nearest and abs(nearest - want) / want < 0.01
    assert s[2].item() == 0.0
    s_int = scm.scm_sigmas(2, sigma_data=1.0, space="discrete", model_sigmas=table, discrete="interpolate", dtype=torch.float64)
    assert s_int[1].item() == pytest.approx(want, rel=1e-14)
    with pytest.raises(ValueError, match="model_sigmas"):
        scm.scm_sigmas(2, space="discrete")
    with pytest.raises(ValueError, match="discrete must be"):
        scm.scm_sigmas(2, space="discrete", model_sigmas=table, discrete="round")
    # two times that both clip to the table's top collapse into one sigma: refused
    with pytest.raises(ValueError, match="repeated sigmas"):
        scm.scm_sigmas(2, sigma_data=1.0, t_mid=1.55, space="discrete", model_sigmas=table)


@pytest.mark.parametrize("kwargs, match", [
    ({"steps": 0}, r"steps must be an integer in 1\.\.4"),
    ({"steps": 5}, r"steps must be an integer in 1\.\.4"),
    ({"steps": 2.5}, r"steps must be an integer in 1\.\.4"),
    ({"steps": True}, r"steps must be an integer in 1\.\.4"),
    ({"steps": 2, "t_mid": [1.1, 0.8]}, r"t_mid must hold steps - 1 = 1"),
    ({"steps": 3, "t_mid": 1.1}, r"t_mid must hold steps - 1 = 2"),
    ({"steps": 3, "t_mid": [0.8, 1.1]}, r"strictly decrease"),
    ({"steps": 2, "t_mid": 1.6}, r"t_mid\[0\] must be in \(0, 1\.57"),
    ({"steps": 2, "t_mid": 0.0}, r"t_mid\[0\] must be in \(0"),
    ({"steps": 2, "t_max": 1.0, "t_mid": 1.1}, r"strictly decrease"),
    ({"steps": 1, "t_max": 1.6}, r"t_max must be in \(0, 1\.57"),
    ({"steps": 1, "sigma_max": -1.0}, r"sigma_max must be in \(0"),
    ({"steps": 1, "sigma_data": 0.0}, r"sigma_data must be in \(0"),
    ({"steps": 1, "space": "vp"}, r"space must be one of"),
])
def test_invalid_inputs_name_the_input_and_range(kwargs, match):
    with pytest.raises(ValueError, match=match):
        scm.scm_sigmas(**kwargs)


# --------------------------------------------------------------------------- sampler loop


def test_sampler_loop_calls_renoise_and_noise_in_order():
    calls = []

    def model(x, sigma, **extra):
        calls.append(("model", sigma[0].item(), extra))
        return x * 0.5 + 1.0

    def noise_sampler(sigma, sigma_next):
        calls.append(("noise", float(sigma), float(sigma_next)))
        return torch.full((2, 3), 2.0)

    seen = []
    sigmas = torch.tensor([4.0, 2.0, 1.0, 0.0])
    x = torch.ones(2, 3)
    out = scm.sample_scm(model, x, sigmas, extra_args={"class_labels": 7}, callback=seen.append, noise_sampler=noise_sampler, space=EDM)
    # by hand: x0 = 1.5; x = 1.5 + 2*2 = 5.5; x0 = 3.75; x = 3.75 + 1*2 = 5.75; x0 = 3.875; last step returns x0
    assert torch.equal(out, torch.full((2, 3), 3.875))
    assert [c[0] for c in calls] == ["model", "noise", "model", "noise", "model"]
    assert [c[1:] for c in calls if c[0] == "noise"] == [(4.0, 2.0), (2.0, 1.0)]
    assert all(c[2] == {"class_labels": 7} for c in calls if c[0] == "model")
    assert [d["i"] for d in seen] == [0, 1, 2]
    assert [float(d["sigma"]) for d in seen] == [4.0, 2.0, 1.0]
    assert torch.equal(seen[2]["denoised"], out)


def test_one_step_is_one_denoiser_call_and_flow_renoise():
    x = torch.randn(3, 5)
    out = scm.sample_scm(lambda x, s: x * 0 + s[:, None], x, [2.0, 0.0], space=EDM)
    assert torch.equal(out, torch.full((3, 5), 2.0))
    # flow re-noising: (1 - s) x0 + s eps
    noise = torch.full((3, 5), 3.0)
    out = scm.sample_scm(lambda x, s: torch.ones_like(x), x, [0.9, 0.25, 0.0],
                         noise_sampler=lambda a, b: noise, space=FLOW)
    assert torch.equal(out, torch.ones(3, 5))
    got = []
    scm.sample_scm(lambda x, s: (got.append(x.clone()), torch.ones_like(x))[1], x, [0.9, 0.25, 0.0],
                   noise_sampler=lambda a, b: noise, space=FLOW)
    assert torch.allclose(got[1], torch.full((3, 5), 0.75 * 1 + 0.25 * 3.0))


def test_model_sampling_renoise_uses_the_host_noise_scaling():
    class MS:
        def noise_scaling(self, sigma, noise, latent):
            return latent * 10 + sigma * noise

    r = scm.model_sampling_renoise(MS())
    assert torch.equal(r(torch.ones(2), 0.5, torch.full((2,), 4.0)), torch.full((2,), 12.0))


def test_seeded_default_noise_is_reproducible_and_matches_k_diffusion():
    net = TinyTrigFlow()
    den = tf.TrigFlowAsDenoiser(net, SD)
    x = torch.randn(4, 12, generator=torch.Generator().manual_seed(1)) * 80
    sig = scm.scm_sigmas(3)
    a = scm.sample_scm(den, x, sig, extra_args={"seed": 123}, space=EDM)
    b = scm.sample_scm(den, x, sig, extra_args={"seed": 123}, space=EDM)
    c = scm.sample_scm(den, x, sig, extra_args={"seed": 124}, space=EDM)
    assert torch.equal(a, b) and not torch.equal(a, c)
    # k-diffusion's default_noise_sampler: one generator seeded once, torch.randn(x.size()) per draw
    g = torch.Generator().manual_seed(123)
    draws = iter([torch.randn(x.size(), generator=g) for _ in range(2)])
    d = scm.sample_scm(den, x, sig, noise_sampler=lambda s, sn: next(draws), space=EDM)
    assert torch.equal(a, d)


def test_paper_two_step_sampler_in_trigflow_terms():
    """sample_scm in EDM space = Lu & Song 2024's 2-step sampler (Sec. 2, App. G.2): x0 = f(z, t_max); x = cos(t_mid) x0 + sin(t_mid) z2; x0 = f(x, t_mid)."""
    net = TinyTrigFlow().double()
    y = torch.tensor([0, 1, 2, 3])
    g = torch.Generator().manual_seed(5)
    z = torch.randn(4, 12, generator=g, dtype=torch.float64) * SD
    eps2 = torch.randn(4, 12, generator=g, dtype=torch.float64)
    x0 = tf.consistency_function(net, z, T_MAX, SD, class_labels=y)
    x = math.cos(1.1) * x0 + math.sin(1.1) * SD * eps2
    want = tf.consistency_function(net, x, 1.1, SD, class_labels=y)
    sig = scm.scm_sigmas(2, dtype=torch.float64)
    got = scm.sample_scm(tf.TrigFlowAsDenoiser(net, SD), z / math.cos(T_MAX), sig,
                         extra_args={"class_labels": y}, noise_sampler=lambda s, sn: eps2, space=EDM)
    assert torch.allclose(got, want, rtol=0, atol=1e-12)


def test_flow_host_gives_the_same_samples_as_the_edm_host():
    """The same TrigFlow net wrapped as a rectified-flow host (x0 in flow units = x0 / sigma_d, flow re-noising)
    samples the same images as the EDM host, up to the flow's data scale."""
    net = TinyTrigFlow().double()

    def flow_denoiser(x_s, s):
        t = tf.flow_time_to_t(s)
        return tf.consistency_function(net, tf.flow_to_trigflow_x(x_s, s, SD), t, SD) / SD

    g = torch.Generator().manual_seed(9)
    x_t = torch.randn(3, 12, generator=g, dtype=torch.float64) * SD
    eps = [torch.randn(3, 12, generator=g, dtype=torch.float64) for _ in range(3)]
    times = scm.scm_times(4)
    it = iter(eps)
    edm = scm.sample_scm(tf.TrigFlowAsDenoiser(net, SD), tf.trigflow_to_edm_x(x_t, times[0]),
                         scm.scm_sigmas(4, dtype=torch.float64), noise_sampler=lambda a, b: next(it), space=EDM)
    it = iter(eps)
    flow = scm.sample_scm(flow_denoiser, tf.trigflow_to_flow_x(x_t, times[0], SD),
                          scm.scm_sigmas(4, space="flow", dtype=torch.float64),
                          noise_sampler=lambda a, b: next(it), space=FLOW)
    assert torch.allclose(flow * SD, edm, rtol=0, atol=1e-12)


def test_comfy_v_prediction_mapping_is_the_consistency_function():
    """ComfyUI V_PREDICTION with sigma_data = sigma_d, fed F, is f(x_t, t) at x = x_t / cos t."""
    net = TinyTrigFlow().double()
    x = torch.randn(4, 12, dtype=torch.float64) * 3
    sigma = torch.tensor([80.0, 5.0, 0.98, 0.1], dtype=torch.float64)
    s = sigma[:, None]
    c_in = 1 / torch.sqrt(s ** 2 + SD ** 2)  # calculate_input
    t = tf.edm_sigma_to_t(sigma, SD)
    F = net(x * c_in, t)  # the host feeds x / sqrt(s^2 + sd^2) = x_t / sd
    comfy = x * SD ** 2 / (s ** 2 + SD ** 2) - F * s * SD / torch.sqrt(s ** 2 + SD ** 2)
    assert torch.allclose(tf.TrigFlowAsDenoiser(net, SD)(x, sigma), comfy, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- diffusers SCMScheduler


@pytest.mark.parametrize("steps, t_mid", [(1, None), (2, 1.1), (2, 1.3), (3, [1.1, 0.8]), (4, [1.3, 1.0, 0.6])])
def test_matches_diffusers_scm_scheduler(steps, t_mid):
    scheduling_scm = pytest.importorskip("diffusers.schedulers.scheduling_scm")
    net = TinyTrigFlow(seed=3)
    labels = torch.tensor([0, 1, 2, 3, 4, 1])
    seed = 1234
    x_t = torch.randn(6, 12, generator=torch.Generator().manual_seed(7)) * SD
    times = scm.scm_times(steps, t_mid=t_mid)

    sched = scheduling_scm.SCMScheduler(sigma_data=SD)
    sched.set_timesteps(steps, timesteps=times.tolist(), max_timesteps=None, intermediate_timesteps=None)
    gen = torch.Generator().manual_seed(seed)
    latents = x_t.clone()
    with torch.no_grad():
        for t in sched.timesteps[:-1]:
            model_out = SD * net(latents / SD, t.expand(latents.shape[0]), labels)
            latents = sched.step(model_out, t, latents, generator=gen, return_dict=False)[0]

    den = tf.TrigFlowAsDenoiser(net, SD)
    sigmas = scm.scm_sigmas(steps, t_mid=t_mid)
    x = tf.trigflow_to_edm_x(x_t, times[0].float())
    ours = scm.sample_scm(den, x, sigmas, extra_args={"seed": seed, "class_labels": labels}, space=EDM)
    assert ours.shape == latents.shape
    assert (ours - latents).abs().max().item() < 1e-5
    assert latents.abs().max().item() > 0.1  # a non-trivial output


def test_sigma_data_is_honoured_in_every_space():
    """One convention (docs/scm-times.md): sigma = sigma_data tan t; flow s = sigma / (1 + sigma). The original for
    the flow default is SANA-Sprint's time map s = sin t / (sin t + cos t), which is sigma_data = 1."""
    t = scm.scm_times(2)
    for sd in (0.5, 1.0, 2.0):
        edm = scm.times_to_sigmas(t, "edm", sd)
        flow = scm.times_to_sigmas(t, "flow", sd)
        assert torch.allclose(edm, sd * torch.tan(t), rtol=1e-15, atol=0)
        assert torch.allclose(flow[1:], (edm / (1 + edm))[1:], rtol=1e-14, atol=0)
    assert torch.equal(scm.times_to_sigmas(t, "flow"), scm.times_to_sigmas(t, "flow", 1.0))
    assert torch.equal(scm.times_to_sigmas(t, "edm"), scm.times_to_sigmas(t, "edm", 0.5))
    assert not torch.equal(scm.times_to_sigmas(t, "flow", 0.5), scm.times_to_sigmas(t, "flow"))
    with pytest.raises(ValueError, match="sigma_data must be in"):
        scm.times_to_sigmas(t, "flow", 0.0)
