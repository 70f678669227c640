"""The only code that turns ComfyUI objects into the core's plain callables.

- :class:`Generator`: ``generate(noise [B,C,H,W]) -> Batch`` (decoded images, latents, optional early x0)
  by running ComfyUI's own sampling (``comfy.samplers.sample``) on a batch of candidates, counting
  model calls exactly;
- :func:`run_inside_sampler`: gives the path search ``denoise(x, sigma_from, sigma_to)`` (one solver
  step), ``prepare``/``renoise`` in the model's own space and ``decode``, inside one guider call;
- :class:`Progress`: ``on_step(i, n)`` -> ``comfy.utils.ProgressBar`` (an interruption point) + previews.
"""

import inspect
import logging

import torch

import comfy.model_management
import comfy.model_sampling
import comfy.patcher_extension
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview

from ..search.evaluate import LATENT, Batch, concat_batches
from ..search.report import to_pil
from ..samplers.noise_space import EDM, FLOW
from ..samplers.schedules import EARLY_TIME, EARLY_TIME_TOLERANCE, early_prediction_call

NFE_KEY = "noise_search_nfe"


# --------------------------------------------------------------------------- model calls, counted

class NFECounter:
    """``calls``: denoiser evaluations (one per sampler model call, whatever the batch);
    ``rows``: network input rows summed over forward passes (cfg > 1 doubles them)."""

    def __init__(self):
        self.calls = 0
        self.rows = 0

    def reset(self):
        self.calls = self.rows = 0


def counted_model(model):
    """``model.clone()`` with two wrappers that count model calls; the caller's model is untouched."""
    m = model.clone()
    counter = NFECounter()

    def predict_noise(executor, *args, **kwargs):
        counter.calls += 1
        return executor(*args, **kwargs)

    def apply_model(executor, x, *args, **kwargs):
        counter.rows += int(x.shape[0])
        return executor(x, *args, **kwargs)

    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.PREDICT_NOISE, NFE_KEY, predict_noise)
    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, NFE_KEY, apply_model)
    return m, counter


def model_sampling(model):
    return model.get_model_object("model_sampling")


def is_flow(model):
    return isinstance(model_sampling(model), comfy.model_sampling.CONST)


def noise_space(model):
    """The model's noise space (``samplers.noise_space``): FLOW for ComfyUI's CONST model sampling, else EDM."""
    return FLOW if is_flow(model) else EDM


def sigma_to_time(model, sigma):
    """SiT / rectified-flow time (0 = data, 1 = noise) of a sigma of ``model``'s own sampling space."""
    return noise_space(model).to_time(sigma)


def resolve_sigmas(model, sampler_name, scheduler, steps, denoise):
    """The sigmas a plain KSampler would use (handles denoise < 1 and the samplers that drop a sigma)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    ks = comfy.samplers.KSampler(model, steps=steps, device="cpu", sampler=sampler_name, scheduler=scheduler, denoise=denoise)
    sig = ks.sigmas.detach().float().cpu()
    if sig.numel() < 2:
        raise ValueError(f"denoise {denoise} leaves no sampling steps; use denoise > 0")
    return sig


def is_stochastic(sampler):
    """A SAMPLER whose function draws fresh noise while sampling (ancestral, SDE, LCM, sCM)."""
    fn = getattr(sampler, "sampler_function", None)
    try:
        return fn is not None and "noise_sampler" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def per_row_noise_sampler(seeds, device):
    """k-diffusion's default noise sampler, one generator per candidate: row k equals a batch-1 run seeded with seeds[k]."""
    gens = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]

    def sample(x):
        return torch.cat([torch.randn((1,) + tuple(x.shape[1:]), dtype=x.dtype, layout=x.layout, device=x.device, generator=g)
                          for g in gens])
    return sample


def with_row_noise(sampler, seeds, device):
    """A copy of ``sampler`` whose fresh noise comes per candidate (see :func:`per_row_noise_sampler`)."""
    state = {}

    def noise_sampler(sigma, sigma_next):
        return state["fn"](state["x"])

    fn = sampler.sampler_function

    def wrapped(model, x, sigmas, *args, **kwargs):
        state["x"], state["fn"] = x, per_row_noise_sampler(seeds, x.device)
        kwargs["noise_sampler"] = noise_sampler
        return fn(model, x, sigmas, *args, **kwargs)

    return comfy.samplers.KSAMPLER(wrapped, dict(sampler.extra_options), dict(sampler.inpaint_options))


# --------------------------------------------------------------------------- progress and previews

class Progress:
    """``on_step(i, n)`` for the core: a ProgressBar update (the host's hook raises on cancel) plus an
    explicit interrupt check, with the latest preview of the running chunk."""

    def __init__(self, model, total=1, previews=True):
        self.pbar = comfy.utils.ProgressBar(max(1, int(total)))
        self.previewer = None
        if previews:
            self.previewer = latent_preview.get_previewer(model.load_device, model.model.latent_format)
        self.preview = None
        self.current, self.total = 0, max(1, int(total))

    def on_step(self, i, n):
        self.current, self.total = int(i), max(1, int(n))
        self.pbar.update_absolute(self.current, self.total, self.preview)
        comfy.model_management.throw_exception_if_processing_interrupted()

    def show(self, image):
        """Preview a decoded IMAGE row [H, W, C], or a video's frames [F, H, W, C] by its middle frame (when previews are on)."""
        if self.previewer is None:
            return
        if image.ndim == 4:
            image = image[(image.shape[0] - 1) // 2]
        self.preview = ("JPEG", to_pil(image), latent_preview.MAX_PREVIEW_RESOLUTION)

    def decoded(self, row, frames):
        """A video candidate of the running chunk was decoded (one at a time): the bar advances by candidate, its middle
        frame is the preview, and it is an interruption point."""
        self.show(frames)
        done = self.current + int(row) + 1
        if done < self.total:  # the chunk's end (or a total not known yet) is the search's to report
            self.pbar.update_absolute(done, self.total, self.preview)
        comfy.model_management.throw_exception_if_processing_interrupted()

    def sampler_callback(self, step, x0, x, total_steps):
        """Per sampler step inside a chunk: refresh the preview; every step is an interruption point."""
        if self.previewer is not None and x0 is not None:
            self.preview = self.previewer.decode_latent_to_preview_image("JPEG", x0)
        self.pbar.update_absolute(self.current, self.total, self.preview)
        comfy.model_management.throw_exception_if_processing_interrupted()


# --------------------------------------------------------------------------- image or video

def model_latent_dims(model):
    """Spatial(-temporal) dimensions of the latents ``model`` makes: 2 (images) or 3 (video), from its latent format."""
    fmt = getattr(getattr(model, "model", None), "latent_format", None)
    return int(getattr(fmt, "latent_dimensions", 2))


def vae_latent_dims(vae):
    """Dimensions of the latents ``vae`` decodes: 3 for a video VAE, 2 for an image VAE (a 3-D VAE that is not a video one,
    such as Hunyuan's refiner, counts as neither and is left to ComfyUI)."""
    dims = int(getattr(vae, "latent_dim", 2))
    return None if dims == 3 and getattr(vae, "not_video", False) else dims


def check_media(model, latent, vae):
    """Refuse, before any sampling, a latent or a VAE whose kind (image / video) is not the model's; one line naming the input."""
    want = model_latent_dims(model)
    kind = {2: "image", 3: "video"}
    if want not in kind:
        raise ValueError(f"model: the search works on image and video models; this model makes {want}-D latents")
    name = type(getattr(getattr(model, "model", None), "model_config", None)).__name__
    got = latent.ndim - 2
    if got != want:
        hint = "an empty video latent (e.g. EmptyHunyuanLatentVideo, Wan22ImageToVideoLatent)" if want == 3 else "an image latent (e.g. Empty Latent Image)"
        what = {2: "an image", 3: "a video"}.get(got, f"a {got}-D")
        raise ValueError(f"latent_image: {what} latent {list(latent.shape)} for {'a video' if want == 3 else 'an image'} model ({name}); connect {hint}")
    vdims = vae_latent_dims(vae)
    if vdims is not None and vdims != want:
        raise ValueError(f"vae: {'an image' if vdims == 2 else 'a video' if vdims == 3 else f'a {vdims}-D'} VAE with {'a video' if want == 3 else 'an image'} model ({name}); connect the VAE "
                         f"that decodes this model's {kind[want]} latents" + (" (e.g. the Wan VAE)" if want == 3 else ""))
    return want == 3


def decoded_frames(vae, latent_frames):
    """Frames the VAE decodes from ``latent_frames`` latent frames (ComfyUI's ``upscale_ratio``), or None when it gives none."""
    ratio = getattr(vae, "upscale_ratio", None)
    if isinstance(ratio, (tuple, list)) and ratio and callable(ratio[0]):
        return int(ratio[0](int(latent_frames)))
    return None


# --------------------------------------------------------------------------- generate

class SamplingSetup:
    """Everything one generation needs: the counted model, conditioning, cfg, sampler, sigmas, latent, VAE."""

    def __init__(self, model, positive, negative, latent, vae, sampler, sigmas, cfg):
        samples = latent["samples"]
        if samples.shape[0] != 1:
            raise ValueError(f"the search needs a batch-1 LATENT (every candidate starts from it), got batch {samples.shape[0]}; "
                             "use Latent From Batch to pick one")
        self.video = check_media(model, samples, vae)  # before anything is sampled
        self.model, self.counter = counted_model(model)
        self.positive, self.negative, self.vae = positive, negative, vae
        self.latent = comfy.sample.fix_empty_latent_channels(self.model, samples)
        self.on_decoded = None  # video: called with (row, frames [F, H, W, C]) after each candidate is decoded
        self.noise_mask = latent.get("noise_mask")
        self.sampler, self.sigmas, self.cfg = sampler, sigmas, float(cfg)
        self.stochastic = is_stochastic(sampler)

    @property
    def shape(self):
        return tuple(self.latent.shape[:1]) + tuple(self.latent.shape[1:])

    @property
    def frames(self):
        """Video: the frames one candidate decodes to (None for images, or when the VAE does not say)."""
        return decoded_frames(self.vae, self.latent.shape[2]) if self.video else None

    def decode(self, samples, report=True):
        """VAE-space latents -> IMAGE [B, H, W, C]; video latents [B, C, T, h, w] -> frames [B, F, H, W, C], decoded one
        candidate at a time (the decoder's memory is one candidate's, whatever the chunk)."""
        if not self.video:
            img = self.vae.decode(samples)
            if img.ndim != 4:
                raise ValueError(f"vae: decoded an image latent to shape {list(img.shape)}; connect the model's image VAE")
            return img.float().cpu()
        rows = []
        for j in range(samples.shape[0]):
            frames = self.vae.decode(samples[j:j + 1])
            if frames.ndim != 5:
                raise ValueError(f"vae: decoded a video latent to shape {list(frames.shape)}, not frames; connect the model's video VAE")
            rows.append(frames.float().cpu())
            if report and self.on_decoded is not None:
                self.on_decoded(j, rows[-1][0])
        return torch.cat(rows)

    def sample(self, candidates, sigmas=None, sampler=None, callback=None):
        """Run ComfyUI sampling for a chunk of Candidates; returns (VAE-space latents, calls, rows).

        A stochastic sampler draws its fresh noise per candidate from the candidate's ``sampler_seed`` (a seed
        candidate's own seed, so it reproduces in SamplerCustomAdvanced with RandomNoise(seed))."""
        sigmas = self.sigmas if sigmas is None else sigmas
        sampler = self.sampler if sampler is None else sampler
        noise, seeds = candidates.noise, candidates.sampler_seeds
        b = noise.shape[0]
        if self.stochastic:
            sampler = with_row_noise(sampler, seeds, self.model.load_device)
        latent = self.latent.repeat((b,) + (1,) * (self.latent.ndim - 1))
        mask = self.noise_mask
        seed = int(seeds[0])
        self.counter.reset()
        out = comfy.sample.sample_custom(self.model, noise, self.cfg, sampler, sigmas, self.positive, self.negative, latent,
                                         noise_mask=mask, callback=callback, disable_pbar=True, seed=seed)
        return out, self.counter.calls, self.counter.rows


class Generator:
    """``generate(candidates) -> Batch`` for the core, counting NFE per candidate exactly.

    ``calibrate(candidate)`` renders one candidate at batch 1 first to measure model calls per candidate
    (and the cfg multiplier); the result is kept, by the candidate's recipe, and reused when that candidate
    comes up in a chunk. ``render(candidate)`` gives a candidate at batch 1 with the final settings (full steps),
    bit-identical to a plain KSampler run with the candidate's seed and noise."""

    def __init__(self, setup, progress=None, need_early=False, final_sigmas=None, final_sampler=None):
        self.s, self.progress, self.need_early = setup, progress, need_early
        if progress is not None and setup.video:
            setup.on_decoded = progress.decoded  # a video chunk is decoded one candidate at a time: progress per candidate
        self.final_sigmas = setup.sigmas if final_sigmas is None else final_sigmas
        self.final_sampler = setup.sampler if final_sampler is None else final_sampler
        self.nfe_per_candidate = None
        self.cfg_multiplier = 1
        self.cache = {}  # recipe -> Batch of a candidate rendered at calibration
        self.exact = set()  # recipes generated at batch 1 with the final settings (bit-exact as they are)
        self.final_nfe = 0
        self.early_time, self.warned_early = None, False  # SiT time of the early x0 prediction actually read

    @property
    def renders_final(self):
        """Whether search candidates are sampled with the final settings (no cheap proxy)."""
        return self.final_sigmas is self.s.sigmas and self.final_sampler is self.s.sampler

    def _callback(self, sigmas, store):
        early_step = -1
        if self.need_early:
            early_step, self.early_time = early_prediction_call([sigma_to_time(self.s.model, s) for s in sigmas[:-1].tolist()])
            if abs(self.early_time - EARLY_TIME) > EARLY_TIME_TOLERANCE and not self.warned_early:
                logging.warning("noise-search: the self-supervised verifier reads the x0 prediction at SiT time %.3f on this "
                                "schedule (the paper's is %.1f); more steps bring it nearer", self.early_time, EARLY_TIME)
                self.warned_early = True

        def cb(step, x0, x, total_steps):
            if step == early_step:
                store["early"] = x0.detach().clone()
            if self.progress is not None:
                self.progress.sampler_callback(step, x0, x, total_steps)
        return cb

    def _run(self, candidates, sigmas, sampler):
        store = {}
        samples, calls, rows = self.s.sample(candidates, sigmas, sampler, self._callback(sigmas, store))
        images = self.s.decode(samples)
        early = None
        if self.need_early:
            if "early" not in store:
                raise RuntimeError("the sampler never reported the early x0 prediction the verifier needs")
            x0 = self.s.model.model.process_latent_out(store["early"].to(torch.float32))
            early = self.s.decode(x0.to(comfy.model_management.intermediate_device()), report=False)
        return Batch(images, {LATENT: samples.float().cpu()}, early), calls, rows

    def calibrate(self, candidate):
        """``candidate``: Candidates of one recipe. Returns the model calls one candidate costs."""
        batch, calls, rows = self._run(candidate, self.s.sigmas, self.s.sampler)
        if calls < 1:
            raise RuntimeError("the sampler made no model call; check steps, denoise and sigmas")
        self.nfe_per_candidate = calls
        self.cfg_multiplier = max(1, round(rows / calls / len(candidate)))
        recipe = candidate.recipes[0]
        self.cache[recipe] = batch
        if self.renders_final:
            self.exact.add(recipe)
        return calls

    def __call__(self, candidates):
        recipes = candidates.recipes
        todo = [i for i, r in enumerate(recipes) if r not in self.cache]
        batch = None
        if todo:
            part = candidates if len(todo) == len(recipes) else candidates.select(todo)
            batch, calls, rows = self._run(part, self.s.sigmas, self.s.sampler)
            if self.nfe_per_candidate is not None and calls != self.nfe_per_candidate:
                raise RuntimeError(f"NFE accounting: this chunk took {calls} model calls per candidate, calibration measured "
                                   f"{self.nfe_per_candidate}; the sampler's cost varies (e.g. dpm_adaptive), which search cannot budget")
            if len(todo) == 1 and self.renders_final:
                self.exact.add(recipes[todo[0]])
            if len(todo) == len(recipes):  # the usual chunk: nothing cached, the batch is the answer as it is
                return batch
        # some rows were rendered before (calibration): concatenate once, select once (no per-candidate copies)
        done = set(todo)
        cached = [i for i in range(len(recipes)) if i not in done]
        parts = ([batch] if batch is not None else []) + [self.cache.pop(recipes[i]) for i in cached]
        pool = parts[0]
        for p in parts[1:]:
            pool = concat_batches(pool, p)
        where = {i: j for j, i in enumerate(todo + cached)}
        return pool.select([where[i] for i in range(len(recipes))])

    def render(self, candidate):
        """One candidate (Candidates of one recipe) at batch 1 with the final settings (its NFE goes to ``final_nfe``)."""
        batch, calls, _ = self._run(candidate, self.final_sigmas, self.final_sampler)
        self.final_nfe += calls
        return batch


# --------------------------------------------------------------------------- path search inside one sampler call

def run_inside_sampler(setup, body, callback=None):
    """Run ``body(tools)`` inside one ComfyUI guider call (conditioning prepared once, model loaded once).

    ``tools`` has ``denoise(x, sigma_from, sigma_to)`` (one step of the chosen sampler, in the model's
    sampling space), ``prepare(noise)`` (initial noise -> x at sigmas[0]), ``renoise``, ``decode(x0) -> Batch``,
    ``calls()`` (model calls so far) and ``to_latent(x)`` (sampling space -> VAE-space latent)."""
    s = setup
    if not hasattr(s.sampler, "sampler_function"):
        raise ValueError(f"Search over Paths steps the sampler one sigma at a time and needs a k-diffusion style SAMPLER "
                         f"(KSAMPLER); {type(s.sampler).__name__} is not one")
    fn = s.sampler.sampler_function
    opts = dict(s.sampler.extra_options)
    out = {}

    class Tools:
        pass

    def inner(model_k, x, sigmas, extra_args=None, callback=None, disable=None, **_):
        ms = model_k.inner_model.inner_model.model_sampling
        inner_model = model_k.inner_model.inner_model
        latent_in = model_k.latent_image
        t = Tools()
        first = sigmas[0]

        def denoise(xx, a, b):
            sig = torch.tensor([float(a), float(b)], dtype=sigmas.dtype, device=sigmas.device)
            return fn(model_k, xx, sig, extra_args=extra_args, callback=None, disable=True, **opts)

        def prepare(noise):
            noise = noise.to(x.device, x.dtype)
            lat = latent_in.repeat((noise.shape[0],) + (1,) * (latent_in.ndim - 1)) if latent_in is not None else torch.zeros_like(noise)
            max_denoise = s.sampler.max_denoise(model_k.inner_model, sigmas)
            return ms.noise_scaling(first, noise, lat, max_denoise)

        def to_latent(xx):
            xx = ms.inverse_noise_scaling(sigmas[-1], xx)
            return inner_model.process_latent_out(xx.to(torch.float32)).to(comfy.model_management.intermediate_device())

        def decode(x0):
            lat = to_latent(x0)
            return Batch(s.decode(lat), {LATENT: lat.float().cpu()})

        t.denoise, t.prepare, t.renoise, t.decode, t.to_latent = denoise, prepare, noise_space(s.model).renoise, decode, to_latent
        t.calls = lambda: s.counter.calls
        t.device = x.device
        out["result"] = body(t)
        return x

    carrier = comfy.samplers.KSAMPLER(inner)
    s.counter.reset()
    noise = torch.zeros_like(s.latent)
    comfy.sample.sample_custom(s.model, noise, s.cfg, carrier, s.sigmas, s.positive, s.negative, s.latent,
                               noise_mask=s.noise_mask, callback=callback, disable_pbar=True, seed=0)
    return out["result"]
