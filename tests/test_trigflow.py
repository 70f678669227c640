"""TrigFlow conversions (samplers/trigflow.py): time, state and prediction round trips in float64, and the
identities of Lu & Song 2024, Sec. 2 and App. B.2."""

import math

import pytest
import torch

from noise_search.samplers import trigflow as tf

D64 = torch.float64
SD = 0.5
TIMES = torch.tensor([0.01, 0.2, 0.5, 0.9, 1.1, 1.3, 1.5, 1.5645464], dtype=D64)


def _data(n=len(TIMES), d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n, d, generator=g, dtype=D64) * SD
    eps = torch.randn(n, d, generator=g, dtype=D64)
    return x0, eps


def _xt(x0, eps, t):
    t = t[:, None]
    return torch.cos(t) * x0 + torch.sin(t) * SD * eps


def _close(a, b, tol=1e-12):
    a, b = torch.as_tensor(a, dtype=D64), torch.as_tensor(b, dtype=D64)
    assert torch.allclose(a, b, rtol=tol, atol=tol), (a - b).abs().max().item()


def test_edm_time_round_trip_and_t_max():
    sig = tf.t_to_edm_sigma(TIMES, SD)
    _close(tf.edm_sigma_to_t(sig, SD), TIMES)
    assert float(tf.edm_sigma_to_t(80.0, 0.5)) == pytest.approx(math.atan(160.0), abs=1e-15)
    assert float(tf.edm_sigma_to_t(80.0, 0.5)) == pytest.approx(1.5645464, abs=1e-7)
    # EDM sigma at the paper's t_mid = 1.1 (Lu & Song 2024, App. G.2: ~0.98)
    assert float(tf.t_to_edm_sigma(1.1, 0.5)) == pytest.approx(0.5 * math.tan(1.1), rel=1e-15)
    assert float(tf.t_to_edm_sigma(1.1, 0.5)) == pytest.approx(0.98238, abs=1e-5)


def test_flow_time_round_trip_and_independence_of_sigma_data():
    s = tf.t_to_flow_time(TIMES)
    _close(tf.flow_time_to_t(s), TIMES)
    # s / (1 - s) = tan t, and the endpoints
    _close(s / (1 - s), torch.tan(TIMES))
    assert float(tf.t_to_flow_time(0.0)) == 0.0
    assert float(tf.flow_time_to_t(1.0)) == pytest.approx(math.pi / 2, abs=1e-15)
    assert float(tf.t_to_flow_time(math.pi / 4)) == pytest.approx(0.5, abs=1e-15)


def test_alphas_cumprod_round_trip_and_formula():
    a = tf.t_to_alphas_cumprod(TIMES, SD)
    _close(tf.alphas_cumprod_to_t(a, SD), TIMES)
    _close(tf.alphas_cumprod_to_t(a, SD), torch.atan(torch.sqrt(1 - a) / (SD * torch.sqrt(a))))
    # the k-diffusion sigma of the DDPM schedule is the EDM sigma: atan(sigma / sigma_d) = t
    _close(tf.edm_sigma_to_t(tf.alphas_cumprod_to_sigmas(a), SD), TIMES)
    # sigma_d = 1: a = cos^2 t
    _close(tf.t_to_alphas_cumprod(TIMES, 1.0), torch.cos(TIMES) ** 2)
    # general Eq. 29 with alpha = sqrt(a), sigma = sqrt(1 - a)
    _close(tf.alpha_sigma_to_t(torch.sqrt(a), torch.sqrt(1 - a), SD), TIMES)


def test_states_map_to_the_same_trigflow_point():
    x0, eps = _data()
    x_t = _xt(x0, eps, TIMES)
    tb = TIMES[:, None]
    # EDM: x0 + sigma eps
    sig = tf.t_to_edm_sigma(TIMES, SD)
    x_edm = x0 + sig[:, None] * eps
    _close(tf.edm_to_trigflow_x(x_edm, sig, SD), x_t)
    _close(tf.trigflow_to_edm_x(x_t, TIMES), x_edm, 1e-10)
    # VP: sqrt(a) x0 + sqrt(1 - a) eps
    a = tf.t_to_alphas_cumprod(TIMES, SD)
    x_vp = torch.sqrt(a)[:, None] * x0 + torch.sqrt(1 - a)[:, None] * eps
    _close(tf.vp_to_trigflow_x(x_vp, a, SD), x_t)
    _close(tf.trigflow_to_vp_x(x_t, TIMES, SD), x_vp)
    _close(tf.alpha_sigma_to_trigflow_x(x_vp, torch.sqrt(a), torch.sqrt(1 - a), SD), x_t)
    # rectified flow: (1 - s) x0 / sigma_d + s eps, and Lu & Song 2024 App. B.2's x_s = x_t / (sigma_d (sin t + cos t))
    s = tf.t_to_flow_time(TIMES)
    x_s = (1 - s)[:, None] * x0 / SD + s[:, None] * eps
    _close(tf.flow_to_trigflow_x(x_s, s, SD), x_t)
    _close(tf.trigflow_to_flow_x(x_t, TIMES, SD), x_s)
    _close(x_s, x_t / (SD * (torch.sin(tb) + torch.cos(tb))))
    _close(x_s, (x_t / SD) * torch.sqrt(s * s + (1 - s) ** 2)[:, None])


def test_predictions_from_exact_x0_and_eps_give_the_exact_F():
    x0, eps = _data()
    x_t = _xt(x0, eps, TIMES)
    tb = TIMES[:, None]
    F = torch.cos(tb) * eps - torch.sin(tb) * x0 / SD  # v_t / sigma_d
    _close(tf.x0_to_F(x0, x_t, TIMES, SD), F, 1e-10)
    _close(tf.F_to_x0(F, x_t, TIMES, SD), x0)
    _close(tf.eps_to_F(eps, x_t, TIMES, SD), F, 1e-9)
    _close(tf.F_to_eps(F, x_t, TIMES, SD), eps)
    # PF-ODE velocity sigma_d F is d x_t / dt along the forward path
    h = 1e-6
    fd = (_xt(x0, eps, TIMES + h) - _xt(x0, eps, TIMES - h)) / (2 * h)
    _close(SD * F, fd, 1e-8)
    # flow velocity eps - x0/sigma_d -> F (Lu & Song 2024, App. B.2) and back
    s = tf.t_to_flow_time(TIMES)
    x_s = tf.trigflow_to_flow_x(x_t, TIMES, SD)
    v_fm = eps - x0 / SD
    _close(tf.flow_velocity_to_F(v_fm, x_s, s), F, 1e-10)
    _close(tf.F_to_flow_velocity(F, x_s, s), v_fm, 1e-10)
    _close(tf.prediction_to_F(v_fm, x_t, TIMES, "flow", SD), F, 1e-10)


def test_v_prediction_conversions():
    x0, eps = _data()
    x_t = _xt(x0, eps, TIMES)
    F = tf.x0_to_F(x0, x_t, TIMES, SD)
    # v with the same sigma_data is F itself (ComfyUI V_PREDICTION with sigma_data = sigma_d)
    assert tf.v_to_F(F, x_t, TIMES, SD, v_sigma_data=SD) is F
    # diffusers VP v = sqrt(a1) eps - sqrt(1 - a1) x0 with a1 the unit-data alphas_cumprod at the same EDM sigma
    sig = tf.t_to_edm_sigma(TIMES, SD)
    a1 = 1 / (1 + sig ** 2)
    v = torch.sqrt(a1)[:, None] * eps - torch.sqrt(1 - a1)[:, None] * x0
    _close(tf.F_to_v(F, x_t, TIMES, SD, 1.0), v, 1e-9)
    _close(tf.v_to_F(v, x_t, TIMES, SD, 1.0), F, 1e-9)
    _close(tf.prediction_to_F(v, x_t, TIMES, "v", SD), F, 1e-9)


def test_prediction_round_trips_on_arbitrary_outputs():
    x0, eps = _data(seed=3)
    x_t = _xt(x0, eps, TIMES)
    F = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(7), dtype=D64)
    _close(tf.x0_to_F(tf.F_to_x0(F, x_t, TIMES, SD), x_t, TIMES, SD), F, 1e-10)
    _close(tf.eps_to_F(tf.F_to_eps(F, x_t, TIMES, SD), x_t, TIMES, SD), F, 1e-9)
    _close(tf.v_to_F(tf.F_to_v(F, x_t, TIMES, SD, 1.0), x_t, TIMES, SD, 1.0), F, 1e-9)
    s = tf.t_to_flow_time(TIMES)
    x_s = tf.trigflow_to_flow_x(x_t, TIMES, SD)
    _close(tf.flow_velocity_to_F(tf.F_to_flow_velocity(F, x_s, s), x_s, s), F, 1e-12)
    with pytest.raises(ValueError, match="unknown prediction type"):
        tf.prediction_to_F(F, x_t, TIMES, "score", SD)


def test_consistency_function_boundary_and_one_step():
    """Lu & Song 2024, Eq. 5: f(x, 0) = x; the 1-step output at t_max is cos(t_max) z - sin(t_max) sigma_d F(z / sigma_d, t_max)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(16, 16)).double()
    F = lambda x, t: net(x) * (1 + t[:, None])  # noqa: E731
    x = torch.randn(4, 16, dtype=D64)
    _close(tf.consistency_function(F, x, 0.0, SD), x, 0)
    t_max = math.atan(80 / SD)
    z = torch.randn(4, 16, dtype=D64) * SD
    want = math.cos(t_max) * z - math.sin(t_max) * SD * F(z / SD, torch.full((4,), t_max, dtype=D64))
    _close(tf.consistency_function(F, z, t_max, SD), want, 1e-14)
    # the same through the EDM denoiser wrapper (sigma = 80, x = x_t / cos t)
    den = tf.TrigFlowAsDenoiser(lambda x, t: F(x, t), SD)
    _close(den(z / math.cos(t_max), torch.full((4,), 80.0, dtype=D64), seed=3), want, 1e-12)
    # and F recovered from the denoiser
    t = torch.full((4,), 0.8, dtype=D64)
    _close(tf.denoiser_to_F(den, x, t, SD), F(x / SD, t), 1e-12)


def test_time_broadcast_errors_name_the_shapes():
    with pytest.raises(ValueError, match="does not broadcast"):
        tf.F_to_x0(torch.zeros(3, 4), torch.zeros(3, 4), torch.zeros(2))
