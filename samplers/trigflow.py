"""TrigFlow (Lu & Song 2024, sCM) and its conversions to the host models' spaces.

TrigFlow: ``x_t = cos(t) x0 + sin(t) z`` with ``z ~ N(0, sigma_d^2 I)``, ``t`` in [0, pi/2]; a network
``F(x_t / sigma_d, t)`` predicts ``v_t = (cos(t) z - sin(t) x0) / sigma_d`` and the PF-ODE is
``dx_t/dt = sigma_d F``. The consistency function (= one DDIM step to 0) is
``f(x_t, t) = cos(t) x_t - sin(t) sigma_d F`` (Lu & Song 2024, Eq. 5).

Every other diffusion parameterisation maps into TrigFlow (Lu & Song 2024, App. B.2, Eq. 29). With the
standard-normal noise ``eps = z / sigma_d`` shared by all of them:

=====================  ===================================  =====================================  ==========================================
host space             host state                           TrigFlow time                          TrigFlow state
=====================  ===================================  =====================================  ==========================================
general (Eq. 29)       ``alpha x0 + sigma eps``              ``atan(sigma / (sigma_d alpha))``      ``sigma_d x / sqrt(alpha^2 sigma_d^2 + sigma^2)``
EDM / VE (k-diffusion) ``x0 + sigma eps``                    ``atan(sigma / sigma_d)``              ``cos(t) x``
discrete eps / v (VP)  ``sqrt(a) x0 + sqrt(1-a) eps``        ``atan(sqrt(1-a)/(sigma_d sqrt(a)))``  ``sigma_d x / sqrt(a sigma_d^2 + 1 - a)``
rectified flow         ``(1-s) x0/sigma_d + s eps``          ``atan(s / (1-s))``                    ``sigma_d x / sqrt(s^2 + (1-s)^2)``
=====================  ===================================  =====================================  ==========================================

A discrete (DDPM) host in k-diffusion / ComfyUI form already lives in EDM space: its sigma is
``sqrt((1 - a) / a)`` and its input is ``x0 + sigma eps``, so the EDM row applies to it unchanged.
Rectified flow follows diffusers' SanaSprintPipeline: the flow model's data is ``x0 / sigma_d`` (its
own unit-scale data), so ``s = sin t / (sin t + cos t)`` does not depend on sigma_d.

Model outputs (``t`` is the TrigFlow time of the step, ``x_t`` the TrigFlow state):

- ``x0``: ``F = (cos(t) x_t - x0) / (sigma_d sin t)``; back ``x0 = cos(t) x_t - sin(t) sigma_d F``.
- ``eps`` (standard-normal noise): ``F = (eps - sin(t) x_t / sigma_d) / cos t``; back ``eps = cos(t) F + sin(t) x_t / sigma_d``.
- ``v`` (ComfyUI ``V_PREDICTION`` with its own ``v_sigma_data``, e.g. 1.0 for SD2; diffusers'
  ``alpha eps - sigma x0`` for VP = ``v_sigma_data`` 1): it is the TrigFlow F of the same process
  measured with ``sigma_data = v_sigma_data``, so ``v == F`` when the two sigma_data agree.
- ``flow`` velocity ``v_FM = eps - x0 / sigma_d`` in the flow's own state ``x_s``:
  ``F = [(1 - 2s) x_s + (1 - 2s + 2s^2) v_FM] / sqrt(s^2 + (1-s)^2)``.

Everything is plain torch arithmetic and works on floats or tensors (times broadcast against the
state when given per sample as [B]). Exact at interior times; the endpoints t = 0 (no noise) and
t = pi/2 (EDM sigma = inf) are singular for some conversions, as the formulas are.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence, Union

import torch

__all__ = ['HALF_PI', 'SIGMA_DATA', 'PREDICTIONS', 'edm_sigma_to_t', 't_to_edm_sigma', 'alpha_sigma_to_t',
           'flow_time_to_t', 't_to_flow_time', 'alphas_cumprod_to_t', 't_to_alphas_cumprod',
           'alphas_cumprod_to_sigmas', 'edm_to_trigflow_x', 'trigflow_to_edm_x', 'alpha_sigma_to_trigflow_x',
           'vp_to_trigflow_x', 'trigflow_to_vp_x', 'flow_to_trigflow_x', 'trigflow_to_flow_x', 'x0_to_F', 'F_to_x0',
           'eps_to_F', 'F_to_eps', 'v_to_F', 'F_to_v', 'flow_velocity_to_F', 'F_to_flow_velocity', 'prediction_to_F',
           'consistency_function', 'TrigFlowAsDenoiser', 'denoiser_to_F']

HALF_PI = math.pi / 2
SIGMA_DATA = 0.5

PREDICTIONS = ("x0", "eps", "v", "flow")


def _t(value, like=None):
    """A time/sigma as a float64-or-like tensor."""
    if torch.is_tensor(value):
        return value if like is None else value.to(like.dtype)
    dtype = like.dtype if like is not None and like.is_floating_point() else torch.float64
    device = like.device if like is not None else None
    return torch.tensor(float(value), dtype=dtype, device=device)


def _b(t, x):
    """Broadcast a scalar or per-sample [B] time against a state ``x`` of shape [B, ...]."""
    t = _t(t, x)
    if t.ndim == 0 or t.ndim == x.ndim:
        return t
    if t.ndim == 1 and t.shape[0] == x.shape[0]:
        return t.reshape((-1,) + (1,) * (x.ndim - 1))
    raise ValueError(f"time of shape {tuple(t.shape)} does not broadcast against a state of shape {tuple(x.shape)}; "
                     "give a scalar or one value per sample")


# --------------------------------------------------------------------------- times

def edm_sigma_to_t(sigma: Union[float, torch.Tensor], sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """EDM / VE / k-diffusion sigma -> TrigFlow t = atan(sigma / sigma_d) (Lu & Song 2024, Eq. 30)."""
    return torch.atan(_t(sigma) / sigma_data)


def t_to_edm_sigma(t: Union[float, torch.Tensor], sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """TrigFlow t -> EDM sigma = sigma_d tan t."""
    return sigma_data * torch.tan(_t(t))


def alpha_sigma_to_t(alpha: Union[float, torch.Tensor], sigma: Union[float, torch.Tensor],
                     sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """General x = alpha x0 + sigma eps -> t = atan(sigma / (sigma_d alpha)) (Lu & Song 2024, Eq. 29)."""
    return torch.atan2(_t(sigma), sigma_data * _t(alpha))


def flow_time_to_t(s: Union[float, torch.Tensor]) -> torch.Tensor:
    """Rectified-flow time s in [0, 1] (0 = data) -> t = atan(s / (1 - s)) (s = 1 -> pi/2)."""
    s = _t(s)
    return torch.atan2(s, 1 - s)


def t_to_flow_time(t: Union[float, torch.Tensor]) -> torch.Tensor:
    """TrigFlow t -> rectified-flow time s = sin t / (sin t + cos t)."""
    t = _t(t)
    return torch.sin(t) / (torch.sin(t) + torch.cos(t))


def alphas_cumprod_to_t(alphas_cumprod: Union[float, torch.Tensor], sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """DDPM alphas_cumprod a -> t = atan(sqrt(1 - a) / (sigma_d sqrt(a)))."""
    a = _t(alphas_cumprod)
    return torch.atan2(torch.sqrt(1 - a), sigma_data * torch.sqrt(a))


def t_to_alphas_cumprod(t: Union[float, torch.Tensor], sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """TrigFlow t -> DDPM alphas_cumprod a = 1 / (1 + sigma_d^2 tan^2 t) (= cos^2 t when sigma_d = 1)."""
    t = _t(t)
    c, s = torch.cos(t), torch.sin(t)
    return c * c / (c * c + (sigma_data * s) ** 2)


def alphas_cumprod_to_sigmas(alphas_cumprod: Union[float, torch.Tensor]) -> torch.Tensor:
    """The k-diffusion / ComfyUI sigma table of a DDPM schedule: sqrt((1 - a) / a) (ascending with the index)."""
    a = _t(alphas_cumprod)
    return torch.sqrt((1 - a) / a)


# --------------------------------------------------------------------------- states

def edm_to_trigflow_x(x: torch.Tensor, sigma: Union[float, torch.Tensor], sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """EDM state x0 + sigma eps -> TrigFlow x_t = cos(t) x (Lu & Song 2024, Eq. 30)."""
    return torch.cos(_b(edm_sigma_to_t(sigma, sigma_data), x)) * x


def trigflow_to_edm_x(x_t: torch.Tensor, t: Union[float, torch.Tensor]) -> torch.Tensor:
    """TrigFlow x_t -> EDM state x_t / cos t (sigma = sigma_d tan t)."""
    return x_t / torch.cos(_b(t, x_t))


def alpha_sigma_to_trigflow_x(x: torch.Tensor, alpha: Union[float, torch.Tensor], sigma: Union[float, torch.Tensor],
                              sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """General alpha x0 + sigma eps -> x_t = sigma_d x / sqrt(alpha^2 sigma_d^2 + sigma^2) (Eq. 29)."""
    alpha, sigma = _b(alpha, x), _b(sigma, x)
    return sigma_data * x / torch.sqrt(alpha * alpha * sigma_data ** 2 + sigma * sigma)


def vp_to_trigflow_x(x: torch.Tensor, alphas_cumprod: Union[float, torch.Tensor],
                     sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """DDPM state sqrt(a) x0 + sqrt(1 - a) eps -> x_t = sigma_d x / sqrt(a sigma_d^2 + 1 - a)."""
    a = _b(alphas_cumprod, x)
    return sigma_data * x / torch.sqrt(a * sigma_data ** 2 + 1 - a)


def trigflow_to_vp_x(x_t: torch.Tensor, t: Union[float, torch.Tensor], sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """TrigFlow x_t -> DDPM state at a = t_to_alphas_cumprod(t)."""
    a = _b(t_to_alphas_cumprod(t, sigma_data), x_t)
    return x_t * torch.sqrt(a * sigma_data ** 2 + 1 - a) / sigma_data


def flow_to_trigflow_x(x_s: torch.Tensor, s: Union[float, torch.Tensor], sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """Rectified-flow state (1-s) x0/sigma_d + s eps -> x_t = sigma_d x_s / sqrt(s^2 + (1-s)^2) (Lu & Song 2024, App. B.2)."""
    s = _b(s, x_s)
    return sigma_data * x_s / torch.sqrt(s * s + (1 - s) ** 2)


def trigflow_to_flow_x(x_t: torch.Tensor, t: Union[float, torch.Tensor], sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """TrigFlow x_t -> rectified-flow state x_t / (sigma_d (sin t + cos t))."""
    t = _b(t, x_t)
    return x_t / (sigma_data * (torch.sin(t) + torch.cos(t)))


# --------------------------------------------------------------------------- model outputs

def x0_to_F(x0: torch.Tensor, x_t: torch.Tensor, t: Union[float, torch.Tensor],
            sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """x0 prediction -> TrigFlow F = (cos t x_t - x0) / (sigma_d sin t)."""
    t = _b(t, x_t)
    return (torch.cos(t) * x_t - x0) / (sigma_data * torch.sin(t))


def F_to_x0(F: torch.Tensor, x_t: torch.Tensor, t: Union[float, torch.Tensor],
            sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """TrigFlow F -> x0 = cos t x_t - sin t sigma_d F (the consistency function f(x_t, t), Lu & Song 2024, Eq. 5)."""
    t = _b(t, x_t)
    return torch.cos(t) * x_t - torch.sin(t) * sigma_data * F


def eps_to_F(eps: torch.Tensor, x_t: torch.Tensor, t: Union[float, torch.Tensor],
             sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """Standard-normal noise prediction -> F = (eps - sin t x_t / sigma_d) / cos t."""
    t = _b(t, x_t)
    return (eps - torch.sin(t) * x_t / sigma_data) / torch.cos(t)


def F_to_eps(F: torch.Tensor, x_t: torch.Tensor, t: Union[float, torch.Tensor],
             sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """TrigFlow F -> standard-normal noise eps = cos t F + sin t x_t / sigma_d."""
    t = _b(t, x_t)
    return torch.cos(t) * F + torch.sin(t) * x_t / sigma_data


def _in_v_process(x_t, t, sigma_data, v_sigma_data):
    """The same noisy sample in the TrigFlow process with ``v_sigma_data``: (t broadcast, its state, its time)."""
    t_ = _b(t, x_t)
    sigma = sigma_data * torch.tan(t_)
    x_v = v_sigma_data * x_t / torch.sqrt(torch.cos(t_) ** 2 * v_sigma_data ** 2 + (sigma_data * torch.sin(t_)) ** 2)
    return t_, x_v, torch.atan(sigma / v_sigma_data)


def v_to_F(v: torch.Tensor, x_t: torch.Tensor, t: Union[float, torch.Tensor], sigma_data: float = SIGMA_DATA,
           v_sigma_data: float = 1.0) -> torch.Tensor:
    """v prediction (ComfyUI V_PREDICTION with ``v_sigma_data``; diffusers VP v for 1.0) -> TrigFlow F.

    v is the F of the same process measured with sigma_data = v_sigma_data, so the conversion goes
    through x0 at the v model's own time atan(sigma / v_sigma_data) (identity when they agree).
    """
    if v_sigma_data == sigma_data:
        return v
    t_, x_v, t_v = _in_v_process(x_t, t, sigma_data, v_sigma_data)
    return x0_to_F(F_to_x0(v, x_v, t_v, v_sigma_data), x_t, t_, sigma_data)


def F_to_v(F: torch.Tensor, x_t: torch.Tensor, t: Union[float, torch.Tensor], sigma_data: float = SIGMA_DATA,
           v_sigma_data: float = 1.0) -> torch.Tensor:
    """TrigFlow F -> v prediction with ``v_sigma_data`` (inverse of :func:`v_to_F`)."""
    if v_sigma_data == sigma_data:
        return F
    t_, x_v, t_v = _in_v_process(x_t, t, sigma_data, v_sigma_data)
    return x0_to_F(F_to_x0(F, x_t, t_, sigma_data), x_v, t_v, v_sigma_data)


def flow_velocity_to_F(v_fm: torch.Tensor, x_s: torch.Tensor, s: Union[float, torch.Tensor]) -> torch.Tensor:
    """Flow velocity eps - x0/sigma_d at flow state x_s, time s -> F (diffusers SanaSprintPipeline; Lu & Song 2024, App. B.2)."""
    s = _b(s, x_s)
    return ((1 - 2 * s) * x_s + (1 - 2 * s + 2 * s * s) * v_fm) / torch.sqrt(s * s + (1 - s) ** 2)


def F_to_flow_velocity(F: torch.Tensor, x_s: torch.Tensor, s: Union[float, torch.Tensor]) -> torch.Tensor:
    """TrigFlow F -> flow velocity (inverse of :func:`flow_velocity_to_F`)."""
    s = _b(s, x_s)
    return (F * torch.sqrt(s * s + (1 - s) ** 2) - (1 - 2 * s) * x_s) / (1 - 2 * s + 2 * s * s)


def prediction_to_F(out: torch.Tensor, x_t: torch.Tensor, t: Union[float, torch.Tensor], prediction: str,
                    sigma_data: float = SIGMA_DATA, v_sigma_data: float = 1.0) -> torch.Tensor:
    """Any supported prediction (``x0``, ``eps``, ``v``; ``flow`` expects the flow's own state) -> F, at TrigFlow state x_t."""
    if prediction == "x0":
        return x0_to_F(out, x_t, t, sigma_data)
    if prediction == "eps":
        return eps_to_F(out, x_t, t, sigma_data)
    if prediction == "v":
        return v_to_F(out, x_t, t, sigma_data, v_sigma_data)
    if prediction == "flow":
        return flow_velocity_to_F(out, trigflow_to_flow_x(x_t, t, sigma_data), t_to_flow_time(t))
    raise ValueError(f"unknown prediction type {prediction!r}; choose one of {PREDICTIONS}")


# --------------------------------------------------------------------------- wrappers

def consistency_function(F: Callable[..., torch.Tensor], x_t: torch.Tensor, t: Union[float, torch.Tensor],
                         sigma_data: float = SIGMA_DATA, **cond: Any) -> torch.Tensor:
    """f(x_t, t) = cos t x_t - sin t sigma_d F(x_t / sigma_d, t, **cond) for a TrigFlow network ``F``."""
    tt = _t(t, x_t)
    if tt.ndim == 0:
        tt = tt.expand(x_t.shape[0])
    return F_to_x0(F(x_t / sigma_data, tt, **cond), x_t, tt, sigma_data)


class TrigFlowAsDenoiser(torch.nn.Module):
    """A TrigFlow network ``F(x_t / sigma_d, t, **cond)`` as a k-diffusion EDM denoiser ``D(x, sigma, **cond) -> x0``.

    ``x = x0 + sigma eps`` (EDM); t = atan(sigma / sigma_d), x_t = cos t x; returns f(x_t, t). This is
    what ComfyUI's V_PREDICTION with ``sigma_data = sigma_d`` computes (checked in tests/test_scm.py against ComfyUI's formulas). Keyword
    arguments other than those the network takes (e.g. k-diffusion's ``seed``) are dropped via ``drop``.
    """

    def __init__(self, net: Callable[..., torch.Tensor], sigma_data: float = SIGMA_DATA,
                 drop: Sequence[str] = ("seed", "model_options", "denoise_mask")) -> None:
        super().__init__()
        self.net, self.sigma_data, self.drop = net, float(sigma_data), tuple(drop)

    def forward(self, x: torch.Tensor, sigma: Union[float, torch.Tensor], **cond: Any) -> torch.Tensor:
        cond = {k: v for k, v in cond.items() if k not in self.drop}
        sigma = _t(sigma, x)
        if sigma.ndim == 0:
            sigma = sigma.expand(x.shape[0])
        t = edm_sigma_to_t(sigma, self.sigma_data)
        x_t = torch.cos(_b(t, x)) * x
        return consistency_function(self.net, x_t, t, self.sigma_data, **cond)


def denoiser_to_F(denoiser: Callable[..., torch.Tensor], x_t: torch.Tensor, t: Union[float, torch.Tensor],
                  sigma_data: float = SIGMA_DATA, **cond: Any) -> torch.Tensor:
    """TrigFlow F of an EDM denoiser D(x, sigma): sigma_d F = (cos t x_t - D(x_t / cos t; sigma_d tan t)) / sin t."""
    tt = _t(t, x_t)
    if tt.ndim == 0:
        tt = tt.expand(x_t.shape[0])
    x0 = denoiser(trigflow_to_edm_x(x_t, tt), t_to_edm_sigma(tt, sigma_data).to(x_t.dtype), **cond)
    return x0_to_F(x0, x_t, tt, sigma_data)
