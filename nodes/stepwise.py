"""What the searches that step ComfyUI's sampler one sigma at a time share (Search over Paths, FK Steering, Early
Pruning): which samplers they accept, the rules they refuse by, and the one sampler call they run inside, with every
step's model calls checked against the core's NFE accounting."""

from . import search_common as common

# These searches step the sampler from grid point to grid point (and re-noise or resample between steps), so only a
# sampler whose step depends on nothing but (x, sigma_i, sigma_i+1) gives what it gives on the full grid.
# Multistep samplers (dpmpp_2m, lms, ipndm, deis, ...) carry history across steps and heunpp2 looks two sigmas
# ahead: stepped one sigma at a time they silently become Euler / Heun, so they are refused by name.
# Value: model calls one step costs per sample (the last step, to sigma 0, costs one: k-diffusion ends
# Heun and DPM-2 with an Euler step). Checked against the counted calls at every step, so a wrong entry is an
# error, never a wrong NFE. "ddim" is ComfyUI's name for Euler with random inpainting noise.
PATH_SAMPLERS = {"euler": 1, "euler_cfg_pp": 1, "ddim": 1, "heun": 2, "dpm_2": 2}


def stepped_sampler_name(kw, what):
    """The host name of the sampler ``what`` steps one sigma at a time, refused unless single-step (PATH_SAMPLERS)."""
    sampler = kw.get("sampler")
    if sampler is None:
        name, where = kw["sampler_name"], "sampler_name"
    else:
        fn = getattr(sampler, "sampler_function", None)
        fn_name = getattr(fn, "__name__", type(sampler).__name__)
        name, where = (fn_name[len("sample_"):] if fn_name.startswith("sample_") else fn_name), "the connected SAMPLER"
    if name not in PATH_SAMPLERS:
        raise ValueError(f"{what} cannot use {where} {name!r}: it steps the sampler one sigma at a time, which would "
                         f"silently turn a multistep, look-ahead or noise-injecting sampler into another one; use one of "
                         f"{', '.join(sorted(PATH_SAMPLERS))}")
    return name


def check_stepwise(ctx, kw, what, extra=""):
    """The rules Search over Paths applies to a search that steps the host's sampler; returns ``step_nfe``."""
    if ctx.setup.stochastic:
        raise ValueError(f"{what} needs a deterministic (ODE) sampler: this sampler injects fresh noise at every step "
                         f"(ancestral / SDE / LCM / sCM){extra}; use one of {', '.join(sorted(PATH_SAMPLERS))}")
    common.check_noise_mask_free(ctx, what)
    if ctx.scorer.needs_early:
        raise ValueError("the self-supervised verifier needs the x0 prediction at noise level 0.4 of a full run; "
                         "use it with Random, Zero-Order or Evolutionary Search")
    calls_per_step = PATH_SAMPLERS[stepped_sampler_name(kw, what)]

    def step_nfe(a, b):
        return calls_per_step if float(b) > 0 else 1
    return step_nfe


def run_stepwise(ctx, what, step_nfe, search):
    """Run ``search(denoise, decode, tools)`` inside one sampler call, every step's model calls checked against
    ``step_nfe``; returns its result with the measured cfg multiplier."""
    mult = {"cfg": 1}

    def body(t):
        counter = ctx.setup.counter

        def denoise(x, a, b):
            calls, rows = counter.calls, counter.rows
            out = t.denoise(x, a, b)
            used, passes = counter.calls - calls, counter.rows - rows
            if used != step_nfe(a, b):
                raise RuntimeError(f"NFE accounting: a step from sigma {float(a):.4g} to {float(b):.4g} made {used} model calls, "
                                   f"expected {step_nfe(a, b)}; this sampler is not supported by {what}")
            mult["cfg"] = max(mult["cfg"], round(passes / max(used, 1) / x.shape[0]))
            return out

        def decode(x0):
            batch = t.decode(x0)
            ctx.progress.show(batch.samples[0])  # live preview: the chunk's first decoded sample
            return batch

        return search(denoise, decode, t)

    from .comfy_adapters import run_inside_sampler
    result = run_inside_sampler(ctx.setup, body)
    result.cfg_multiplier = mult["cfg"]
    return result


def no_render(recipe):
    raise RuntimeError("internal: the chosen candidate is not among the kept final samples")
