"""Deterministic ODE samplers over a k-diffusion-style denoiser ``model(x, sigma, **extra) -> x0``.

With no injected noise a sampler is a deterministic map from initial noise to sample: the
property search over noise relies on. Euler costs one model call per step; Heun two,
except for the last step to sigma = 0, which is an Euler step (Karras et al. 2022, Alg. 1).
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Union

import torch
from tqdm.auto import trange

__all__ = ['to_d', 'euler_step', 'heun_step', 'STEPS', 'step_nfe', 'sampler_nfe', 'sample_euler', 'sample_heun',
           'SAMPLERS']


def to_d(x: torch.Tensor, sigma: Union[float, torch.Tensor], denoised: torch.Tensor) -> torch.Tensor:
    """dx/dsigma of the probability-flow ODE in EDM form."""
    return (x - denoised) / sigma


def _s_in(x):
    return x.new_ones([x.shape[0]])


def euler_step(model: Callable[..., torch.Tensor], x: torch.Tensor, sigma: float, sigma_next: float,
               extra_args: Optional[dict] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One Euler step sigma -> sigma_next. Returns (x_next, denoised at sigma)."""
    denoised = model(x, sigma * _s_in(x), **(extra_args or {}))
    if sigma_next == 0:
        return denoised, denoised
    return x + to_d(x, sigma, denoised) * (sigma_next - sigma), denoised


def heun_step(model: Callable[..., torch.Tensor], x: torch.Tensor, sigma: float, sigma_next: float,
              extra_args: Optional[dict] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One Heun step sigma -> sigma_next (Euler when sigma_next = 0). Returns (x_next, denoised at sigma)."""
    extra_args = extra_args or {}
    denoised = model(x, sigma * _s_in(x), **extra_args)
    if sigma_next == 0:
        return denoised, denoised
    d = to_d(x, sigma, denoised)
    x_euler = x + d * (sigma_next - sigma)
    denoised_2 = model(x_euler, sigma_next * _s_in(x), **extra_args)
    d_2 = to_d(x_euler, sigma_next, denoised_2)
    return x + (d + d_2) / 2 * (sigma_next - sigma), denoised


STEPS = {"euler": euler_step, "heun": heun_step}


def step_nfe(method: str, sigma_next: float) -> int:
    """Model calls one step of ``method`` costs per sample."""
    if method not in STEPS:
        raise ValueError(f"unknown ODE method {method!r}; choose one of {sorted(STEPS)}")
    return 1 if (method == "euler" or float(sigma_next) == 0) else 2


def sampler_nfe(method: str, sigmas: torch.Tensor) -> int:
    """Model calls a whole run over ``sigmas`` costs per sample (Heun: 2N - 1 when the grid ends at 0)."""
    return sum(step_nfe(method, s) for s in sigmas[1:].tolist())


def _sample(step, model, x, sigmas, extra_args=None, callback=None, disable=None):
    sigmas = sigmas.tolist() if torch.is_tensor(sigmas) else list(sigmas)
    for i in trange(len(sigmas) - 1, disable=True if disable is None else disable):
        x, denoised = step(model, x, sigmas[i], sigmas[i + 1], extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
    return x


@torch.no_grad()
def sample_euler(model: Callable[..., torch.Tensor], x: torch.Tensor, sigmas: Union[torch.Tensor, Sequence[float]],
                 extra_args: Optional[dict] = None, callback: Optional[Callable[[dict], Any]] = None,
                 disable: Optional[bool] = None) -> torch.Tensor:
    """Euler ODE sampler (Karras et al. 2022, Alg. 2 with no churn)."""
    return _sample(euler_step, model, x, sigmas, extra_args, callback, disable)


@torch.no_grad()
def sample_heun(model: Callable[..., torch.Tensor], x: torch.Tensor, sigmas: Union[torch.Tensor, Sequence[float]],
                extra_args: Optional[dict] = None, callback: Optional[Callable[[dict], Any]] = None,
                disable: Optional[bool] = None) -> torch.Tensor:
    """Heun's 2nd-order ODE sampler (Karras et al. 2022, Alg. 1)."""
    return _sample(heun_step, model, x, sigmas, extra_args, callback, disable)


SAMPLERS = {"euler": sample_euler, "heun": sample_heun}
