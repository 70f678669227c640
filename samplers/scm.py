"""sCM sampling (Lu & Song 2024, Sec. 2 and App. G.2): multistep consistency sampling for any host model.

``sample_scm`` has k-diffusion's sampler signature, so a host wraps it as a sampler object; the
model is the host's denoiser ``model(x, sigma, **extra_args) -> x0`` in the host's own sigma space.
For each sigma: ``denoised = model(x, sigma)``; if the next sigma is > 0 the sample is re-noised to
it with fresh noise (``renoise``), else the result is ``denoised``. With TrigFlow times this is
exactly the paper's multistep sampler (``x <- cos(t') x0 + sin(t') z``), and ComfyUI's
``sample_lcm`` (comfy/k_diffusion/sampling.py) with the host's ``noise_scaling``.

``scm_sigmas`` turns TrigFlow times (t_max, intermediate times, 0) into the host's sigmas. One convention
holds in every space: ``sigma_data`` is the standard deviation of the data in the host's own (latent) units,
TrigFlow's ``x_t = cos(t) x0 + sin(t) z`` with ``z ~ N(0, sigma_data^2)`` (Lu & Song 2024, Sec. 2), and a time t is
the EDM-equivalent noise level ``sigma = sigma_data tan t`` (x_t / cos t = x0 + sigma eps):

- ``space="edm"`` (also ``"ve"``): that sigma;
- ``space="flow"``: rectified-flow time s = sigma / (1 + sigma) = sigma_data sin t / (cos t + sigma_data sin t)
  (x = (1 - s) x0 + s eps is x_t scaled by 1 / (cos t + sigma_data sin t));
- ``space="trigflow"``: the times themselves;
- ``space="discrete"``: that sigma clipped to the host's sigma table ``model_sigmas`` and,
  with ``discrete="nearest"`` (default), snapped to the nearest table entry in log sigma. ComfyUI's
  ``ModelSamplingDiscrete.timestep`` rounds a sigma to its nearest index (log distance) for the network
  while the scalings use the sigma as given, so only table sigmas keep the two consistent.
  ``discrete="interpolate"`` keeps the exact (clipped) sigma and leaves the rounding to the host.

``sigma_data=None`` takes the space's usual value (``DEFAULT_SIGMA_DATA``): 0.5 for EDM-type and discrete
hosts (the paper's), 1.0 for flow hosts, whose latents have unit scale: SANA-Sprint's flow time
sin t / (sin t + cos t) is this map at sigma_data 1 (its TrigFlow sigma_d 0.5 is absorbed in its data scaling).
So t_mid = 1.1 is EDM sigma 0.98 on SD1.5/SDXL and flow s = 0.663 (EDM-equivalent 1.96) on SD3/FLUX by default;
give sigma_data to move either. docs/scm-times.md tabulates the times per model family.

Default times: t_max = atan(sigma_max / sigma_d) (= 1.5645464 for 80 / 0.5, the EDM/EDM2 start used
by the paper); intermediate times ``T_MIDS_SCM``: 2 steps 1.1 (the paper's value in all experiments),
3 steps (1.1, 0.8) (measured better than 2 steps on the toy world, toyworld/README.md), 4 steps (1.1, 0.8, 0.5)
(same spacing continued; not measured by the paper). rCM's list ``T_MIDS_RCM`` = [1.3, 1.0, 0.6][:n-1]
and SANA-Sprint's (t_max = pi/2, t_mid = 1.3) are given as constants to pass explicitly.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, Union

import torch
from tqdm.auto import trange

from .trigflow import SIGMA_DATA

if TYPE_CHECKING:  # the types only
    from .noise_space import NoiseSpace

__all__ = ['MAX_STEPS', 'SIGMA_MAX', 'T_MIDS_SCM', 'T_MIDS_RCM', 'SANA_SPRINT_T_MAX', 'SANA_SPRINT_T_MID', 'SPACES',
           'DEFAULT_SIGMA_DATA', 'default_noise_sampler', 'model_sampling_renoise', 'sample_scm', 'check_steps',
           'scm_times', 'space_sigma_data', 'times_to_sigmas', 'scm_sigmas']

MAX_STEPS = 4
SIGMA_MAX = 80.0
T_MIDS_SCM = {1: (), 2: (1.1,), 3: (1.1, 0.8), 4: (1.1, 0.8, 0.5)}
T_MIDS_RCM = {1: (), 2: (1.3,), 3: (1.3, 1.0), 4: (1.3, 1.0, 0.6)}
SANA_SPRINT_T_MAX = 1.57080  # diffusers SCMScheduler default (~pi/2); its 2-step t_mid is 1.3
SANA_SPRINT_T_MID = 1.3
SPACES = ("edm", "ve", "flow", "trigflow", "discrete")
DEFAULT_SIGMA_DATA = {"edm": SIGMA_DATA, "ve": SIGMA_DATA, "discrete": SIGMA_DATA, "trigflow": SIGMA_DATA, "flow": 1.0}


# --------------------------------------------------------------------------- noise and re-noising

def default_noise_sampler(x: torch.Tensor, seed: Optional[int] = None) -> Callable[..., torch.Tensor]:
    """k-diffusion's default: one generator seeded with ``seed`` feeds every draw (``torch.randn_like`` semantics
    without a seed), so a seeded run is reproducible and the i-th re-noising uses the i-th draw."""
    generator = None
    if seed is not None:
        generator = torch.Generator(device=x.device)
        generator.manual_seed(int(seed))
    return lambda sigma, sigma_next: torch.randn(x.size(), dtype=x.dtype, layout=x.layout, device=x.device, generator=generator)


def model_sampling_renoise(model_sampling: Any) -> Callable[..., torch.Tensor]:
    """Re-noising through a host object's ``noise_scaling(sigma, noise, latent)`` (ComfyUI's model_sampling), as ``sample_lcm`` does."""
    def renoise(denoised, sigma_next, noise):
        return model_sampling.noise_scaling(sigma_next, noise, denoised)
    return renoise


# --------------------------------------------------------------------------- sampler

@torch.no_grad()
def sample_scm(model: Callable[..., torch.Tensor], x: torch.Tensor, sigmas: Union[torch.Tensor, Sequence[float]],
               extra_args: Optional[dict] = None, callback: Optional[Callable[[dict], Any]] = None,
               disable: Optional[bool] = None, noise_sampler: Optional[Callable[..., torch.Tensor]] = None,
               renoise: Optional[Callable[..., torch.Tensor]] = None, space: Optional[NoiseSpace] = None) -> torch.Tensor:
    """Multistep consistency sampling (sCM, Lu & Song 2024, Sec. 2 and Algorithm 1's sampler) with noise re-injection
    between steps.

    ``model(x, sigma * ones[B], **extra_args)`` returns the denoised x0 in the host's sigma space;
    ``sigmas`` is the descending grid (steps + 1 values, normally from :func:`scm_sigmas`, ending in 0).
    Noise comes from ``noise_sampler(sigma, sigma_next)`` (default: :func:`default_noise_sampler` seeded
    with ``extra_args["seed"]`` when given, else ``torch.randn``). The re-noising is the model's: ``space`` (a
    ``samplers.noise_space.NoiseSpace``: EDM's ``x0 + sigma * eps`` or flow's ``(1 - s) x0 + s eps``) or, for a
    host with its own definition, ``renoise(denoised, sigma_next, noise)``; one of the two must be given.
    ``extra_args`` are passed to the model as they are (k-diffusion convention, ``seed`` included).
    """
    extra_args = {} if extra_args is None else extra_args
    if noise_sampler is None:
        noise_sampler = default_noise_sampler(x, seed=extra_args.get("seed"))
    s_in = x.new_ones([x.shape[0]])
    sig = sigmas.tolist() if torch.is_tensor(sigmas) else [float(s) for s in sigmas]
    if len(sig) < 2:
        raise ValueError(f"sigmas must hold at least 2 values (steps + 1), got {sig}")
    if renoise is None:
        if space is None:
            raise ValueError("sample_scm needs the model's noise space (space=EDM or FLOW from samplers.noise_space) or "
                             "its own renoise(denoised, sigma_next, noise): a flow model re-noised as EDM samples wrongly")
        renoise = space.resample
    for i in trange(len(sig) - 1, disable=True if disable is None else disable):
        sigma = sigmas[i] if torch.is_tensor(sigmas) else sig[i]
        denoised = model(x, sigma * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigma, "sigma_hat": sigma, "denoised": denoised})
        if sig[i + 1] > 0:
            sigma_next = sigmas[i + 1] if torch.is_tensor(sigmas) else sig[i + 1]
            x = renoise(denoised, sigma_next, noise_sampler(sigma, sigma_next))
        else:
            x = denoised
    return x


# --------------------------------------------------------------------------- times and sigmas

def _check_float(value, name, lo=None, hi=None, lo_open=True, hi_open=True):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    bad_lo = lo is not None and (v <= lo if lo_open else v < lo)
    bad_hi = hi is not None and (v >= hi if hi_open else v > hi)
    if bad_lo or bad_hi:
        lb = "(" if lo_open else "["
        rb = ")" if hi_open else "]"
        raise ValueError(f"{name} must be in {lb}{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}{rb}, got {value!r}")
    return v


def check_steps(steps: Union[int, float]) -> int:
    integral = isinstance(steps, int) or (isinstance(steps, float) and steps.is_integer())
    if isinstance(steps, bool) or not integral:
        raise ValueError(f"steps must be an integer in 1..{MAX_STEPS}, got {steps!r}")
    steps = int(steps)
    if not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be an integer in 1..{MAX_STEPS} (sCM is a 1-4 step sampler), got {steps}")
    return steps


def scm_times(steps: int, sigma_data: float = SIGMA_DATA, t_max: Optional[float] = None,
              t_mid: Optional[Union[float, Sequence[float], torch.Tensor]] = None,
              sigma_max: float = SIGMA_MAX) -> torch.Tensor:
    """TrigFlow times [t_max, t_1, ..., t_{steps-1}, 0] (float64) for a ``steps``-step sCM sampler.

    ``t_max`` defaults to atan(sigma_max / sigma_data) (a value up to 1e-5 above pi/2, such as SANA-Sprint's
    1.57080, is read as pi/2); ``t_mid`` is one time (2 steps) or a list of
    steps - 1 times (default ``T_MIDS_SCM[steps]``). All times must lie in (0, pi/2) and strictly decrease.
    """
    steps = check_steps(steps)
    sigma_data = _check_float(sigma_data, "sigma_data", 0, None)
    if t_max is None:
        sigma_max = _check_float(sigma_max, "sigma_max", 0, None)
        t_max = math.atan(sigma_max / sigma_data)
    if math.pi / 2 < float(t_max) <= math.pi / 2 + 1e-5:
        t_max = math.pi / 2  # SANA-Sprint's 1.57080 is pi/2 rounded up (cos would turn negative)
    t_max = _check_float(t_max, "t_max", 0, math.pi / 2, hi_open=False)
    if t_mid is None:
        mids = list(T_MIDS_SCM[steps])
    elif isinstance(t_mid, (int, float)) or (torch.is_tensor(t_mid) and t_mid.ndim == 0):
        mids = [t_mid]
    else:
        mids = list(t_mid.tolist() if torch.is_tensor(t_mid) else t_mid)
    if len(mids) != steps - 1:
        raise ValueError(f"t_mid must hold steps - 1 = {steps - 1} intermediate time(s) for {steps} step(s), got {len(mids)}: {mids}")
    mids = [_check_float(m, f"t_mid[{i}]", 0, math.pi / 2) for i, m in enumerate(mids)]
    ts = [t_max] + mids
    for i in range(1, len(ts)):
        if not ts[i] < ts[i - 1]:
            raise ValueError(f"times must strictly decrease from t_max: t_mid[{i - 1}] = {ts[i]} is not below {ts[i - 1]} "
                             f"(valid: pi/2 >= t_max > t_mid[0] > ... > 0), got {ts}")
    return torch.tensor(ts + [0.0], dtype=torch.float64)


def space_sigma_data(space: str, sigma_data: Optional[float] = None) -> float:
    """``sigma_data`` as given (checked > 0), or the usual value of ``space`` when None (module docstring)."""
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    return DEFAULT_SIGMA_DATA[space] if sigma_data is None else _check_float(sigma_data, "sigma_data", 0, None)


def times_to_sigmas(times: Union[torch.Tensor, Sequence[float]], space: str = "edm", sigma_data: Optional[float] = None,
                    model_sigmas: Optional[Union[torch.Tensor, Sequence[float]]] = None,
                    discrete: str = "nearest") -> torch.Tensor:
    """TrigFlow times -> sigmas in a host's space (see the module docstring); t = 0 maps to 0."""
    times = torch.as_tensor(times, dtype=torch.float64)
    sigma_data = space_sigma_data(space, sigma_data)
    if space == "trigflow":
        return times.clone()
    if space == "flow":
        scaled = sigma_data * torch.sin(times)
        return scaled / (torch.cos(times) + scaled)
    if (times >= math.pi / 2).any():
        raise ValueError(f"t = pi/2 is sigma = inf in the {space} space; use t_max < pi/2 (e.g. atan(sigma_max / sigma_data)), got {times.tolist()}")
    sig = sigma_data * torch.tan(times)
    if space != "discrete":
        return sig
    if model_sigmas is None:
        raise ValueError("space='discrete' needs model_sigmas: the host's sigma table (e.g. ComfyUI model_sampling.sigmas)")
    table = torch.as_tensor(model_sigmas, dtype=torch.float64).flatten()
    if table.numel() < 2 or (table <= 0).any() or not torch.isfinite(table).all():
        raise ValueError(f"model_sigmas must be >= 2 finite positive sigmas, got {table.numel()} values")
    table = table.sort().values
    pos = sig > 0
    clipped = sig[pos].clamp(table[0], table[-1])
    if discrete == "nearest":
        idx = (clipped.log()[:, None] - table.log()[None, :]).abs().argmin(dim=1)
        clipped = table[idx]
    elif discrete != "interpolate":
        raise ValueError(f"discrete must be 'nearest' or 'interpolate', got {discrete!r}")
    out = sig.clone()
    out[pos] = clipped
    if (out[:-1][pos[:-1]] <= out[1:][pos[:-1]]).any():
        raise ValueError(f"the host's sigma table maps these times onto repeated sigmas {out.tolist()}; "
                         "choose times further apart or discrete='interpolate'")
    return out


def scm_sigmas(steps: int, sigma_data: Optional[float] = None, t_max: Optional[float] = None,
               t_mid: Optional[Union[float, Sequence[float], torch.Tensor]] = None, sigma_max: float = SIGMA_MAX,
               space: str = "edm", model_sigmas: Optional[Union[torch.Tensor, Sequence[float]]] = None,
               discrete: str = "nearest", dtype: torch.dtype = torch.float32,
               device: Union[str, torch.device] = "cpu") -> torch.Tensor:
    """Sigmas (steps + 1 values ending in 0) for :func:`sample_scm` in the host's own sigma space.

    ``sigma_data=None``: the space's usual value for the map (module docstring); the default t_max is then the
    paper's atan(sigma_max / 0.5) = 1.5645 in every space. A given sigma_data sets both.
    For a discrete host whose largest sigma is below sigma_d tan(t_max) (SD1.5: 14.6), the first sigma is
    the table's largest. Example: ``scm_sigmas(2)`` = [80.0, 0.98238, 0] (t = 1.5645464, 1.1, 0).
    """
    times = scm_times(steps, SIGMA_DATA if sigma_data is None else sigma_data, t_max, t_mid, sigma_max)
    return times_to_sigmas(times, space, sigma_data, model_sigmas, discrete).to(dtype=dtype, device=device)
