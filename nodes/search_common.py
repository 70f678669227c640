"""What the three search nodes share: their common inputs and outputs, and one execution path
(sampling set-up, verifiers, calibration, progress, cancel, winner / pick, final render, outputs)."""

import json

import comfy.samplers
from comfy_api.latest import io

from ..search.candidates import Candidates
from ..search.evaluate import LATENT
from ..search.frames import AGGREGATES, FRAME_MODES, FrameSpec, keyframe_strip, select_frames
from ..search.noise import MAX_SEED
from . import memory, reporting
from ..search.scoring import PooledScorer, condition_for, score_table
from .comfy_adapters import Generator, Progress, SamplingSetup, resolve_sigmas
from .types import VerifierType

CATEGORY = "noise-search/search"
NAMES = {"random": "Random Search", "zero_order": "Zero-Order Search", "paths": "Search over Paths"}


def head_inputs():
    return [
        io.Model.Input("model", tooltip="The diffusion model that generates every candidate."),
        io.Conditioning.Input("positive", tooltip="Positive conditioning (repeated to each chunk's batch)."),
        io.Conditioning.Input("negative", tooltip="Negative conditioning (used when cfg > 1)."),
        io.Latent.Input("latent_image", tooltip="Batch-1 LATENT every candidate starts from: an empty latent for text-to-image, "
                                                "or an encoded image with denoise < 1 for img2img (a noise_mask is honoured)."),
        io.Vae.Input("vae", tooltip="Decodes candidates to images for the verifiers."),
        VerifierType.Input("verifier", tooltip="The verifier that scores candidates (Verifier Loader)."),
        io.String.Input("verifier_prompt", multiline=True, default="",
                        tooltip="Text the verifier scores images against (CLIPScore, PickScore, HPS, ImageReward, VLM grader). "
                                "Usually the same text as the positive prompt."),
        io.Int.Input("class_id", default=-1, min=-1, max=1_000_000,
                     tooltip="Class id for class verifiers (classifier logits, DINO linear head, CLIP zero-shot); -1 = none."),
        io.Int.Input("seed", default=0, min=0, max=MAX_SEED, control_after_generate=True,
                     tooltip="Base seed: candidate i of a random search has seed + i (reproducible in a plain KSampler)."),
        io.Combo.Input("sampler_name", options=comfy.samplers.KSampler.SAMPLERS, default="euler",
                       tooltip="Sampler for every candidate (ignored when a SAMPLER is connected). Deterministic (ODE) samplers make "
                               "the search a pure function of the noise."),
        io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, default="normal",
                       tooltip="Noise schedule (ignored when SIGMAS are connected)."),
        io.Int.Input("steps", default=20, min=1, max=10000, tooltip="Sampling steps of the final image (and of the search unless proxy_steps > 0)."),
        io.Float.Input("cfg", default=7.0, min=0.0, max=100.0, step=0.1, round=0.01,
                       tooltip="Classifier-free guidance scale; cfg > 1 doubles the forward passes per NFE (reported separately)."),
        io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01,
                       tooltip="Denoising strength: 1.0 for text-to-image, < 1 for img2img from the latent_image."),
    ]


def tail_inputs(proxy=True):
    out = [
        io.Int.Input("budget", default=0, min=0, max=100_000_000,
                     tooltip="Search NFE budget (model evaluations per sample, summed over candidates); 0 = no budget, "
                             "the count / iterations decide."),
        io.Int.Input("chunk_size", default=4, min=1, max=4096,
                     tooltip="Candidates generated and scored as one batch. Bigger is faster on a GPU. Made smaller up front "
                             "where ComfyUI's memory estimate says it does not fit (logged, and in the provenance); an "
                             "out-of-memory error halves it and the search goes on."),
        io.Int.Input("top_k", default=4, min=1, max=256, tooltip="How many best candidates to keep (top-K IMAGE batch, human pick)."),
    ]
    if proxy:
        out.append(io.Int.Input("proxy_steps", default=0, min=0, max=10000,
                                tooltip="Cheap proxy: score candidates sampled with this many steps (fewer than steps), then render "
                                        "only the winner at full steps. 0 = off."))
    out += [
        io.Sampler.Input("sampler", optional=True,
                         tooltip="Optional SAMPLER (e.g. the sCM 2-Step Sampler) that generates candidates instead of sampler_name."),
        io.Sigmas.Input("sigmas", optional=True,
                        tooltip="Optional SIGMAS (e.g. sCM Sigmas) used instead of scheduler / steps / denoise."),
        VerifierType.Input("verifier_2", optional=True, tooltip="Optional second verifier: with several, candidates are ranked by an ensemble."),
        VerifierType.Input("verifier_3", optional=True, tooltip="Optional third verifier for the ensemble."),
        io.Combo.Input("ensemble", options=["mean_rank", "zscore"], default="mean_rank", optional=True,
                       tooltip="How several verifiers combine: mean rank (the paper's) or mean z-score, over all candidates so far."),
        io.Int.Input("pick", default=-1, min=-1, max=1_000_000, optional=True,
                     tooltip="Human pick: -1 = the verifier's winner; otherwise a candidate index among the kept top-K "
                             "(set by the pack's frontend when you click a candidate)."),
    ] + video_inputs()
    return out


def video_inputs():
    """How a video model's candidates are scored (ignored for image models)."""
    return [
        io.Combo.Input("video_frames", options=list(FRAME_MODES), default="keyframes", optional=True,
                       tooltip="Video models: which decoded frames the verifier scores - keyframes (first, middle, last), "
                               "every_k (frames 0, k, 2k, ...) or list (video_frame_list). Ignored for image models."),
        io.Int.Input("video_every_k", default=4, min=1, max=100_000, optional=True,
                     tooltip="Video models, video_frames every_k: score every k-th frame (must be below the frame count)."),
        io.String.Input("video_frame_list", default="0, -1", optional=True,
                        tooltip="Video models, video_frames list: frame indices separated by commas (-1 = the last frame)."),
        io.Combo.Input("video_aggregate", options=list(AGGREGATES), default="mean", optional=True,
                       tooltip="Video models: one score per candidate from its frames' scores - their mean, or the worst frame (min)."),
    ]


def frame_spec(kw):
    """The FrameSpec of the video_* inputs (their defaults where left out)."""
    return FrameSpec(kw.get("video_frames") or "keyframes", int(kw.get("video_every_k") or 4),
                     kw.get("video_frame_list") if kw.get("video_frame_list") is not None else "0, -1",
                     kw.get("video_aggregate") or "mean")


def outputs():
    return [
        io.Latent.Output("latent", display_name="LATENT", tooltip="The winner's latent (batch 1), as a plain KSampler with its seed would give."),
        io.Image.Output("image", display_name="IMAGE",
                        tooltip="The winner decoded (a video model's: all its frames, for the video save nodes)."),
        io.Int.Output("winner_seed", display_name="seed",
                      tooltip="The winner's seed (for a neighbour or path candidate: the seed it descends from; the recipe is exact)."),
        io.String.Output("recipe", display_name="recipe", tooltip="The winner's noise recipe as JSON (recreates its noise bit-exactly)."),
        io.Image.Output("top_k_images", display_name="top_k",
                        tooltip="The kept top-K candidates' images, best first (a video model's: each one's scored frames side by side)."),
        io.String.Output("score_table", display_name="scores", tooltip="Score table of the best candidates (plain text)."),
        io.Image.Output("plot", display_name="score_vs_nfe", tooltip="Best score so far against search NFE (the paper's scaling plot)."),
        io.String.Output("provenance", display_name="provenance",
                         tooltip="Everything about the search as JSON: parameters, verifiers, every candidate's recipe and score "
                                 "(connect to Save Image with Search Provenance)."),
    ]


def schema(node_id, display_name, description, specific, proxy=True):
    return io.Schema(
        node_id=node_id, display_name=display_name, category=CATEGORY, description=description,
        inputs=head_inputs() + specific + tail_inputs(proxy), outputs=outputs(),
        hidden=[io.Hidden.unique_id, io.Hidden.prompt, io.Hidden.extra_pnginfo],
    )


class SearchContext:
    """The core's callables and settings for one search node execution."""

    def __init__(self, kw, algorithm, proxy=True):
        self.kw, self.algorithm = kw, algorithm
        model = kw["model"]
        steps, denoise = int(kw["steps"]), float(kw["denoise"])
        proxy_steps = int(kw.get("proxy_steps") or 0) if proxy else 0
        user_sampler, user_sigmas = kw.get("sampler"), kw.get("sigmas")
        self.sampler = user_sampler if user_sampler is not None else comfy.samplers.sampler_object(kw["sampler_name"])
        if user_sigmas is not None:
            if proxy_steps:
                raise ValueError("proxy_steps needs scheduler / steps to build the cheap grid; disconnect SIGMAS or set proxy_steps to 0")
            full = user_sigmas.detach().float().cpu()
            if full.ndim != 1 or full.numel() < 2:
                raise ValueError(f"SIGMAS must hold at least 2 values (steps + 1), got shape {tuple(full.shape)}")
            search = full
        else:
            if proxy_steps >= steps:  # a "cheap proxy" at least as dear as the render it stands for
                raise ValueError(f"proxy_steps must be in [0, {steps - 1}] (below steps={steps}: the proxy search is cheaper than "
                                 f"the final render; 0 = off), got {proxy_steps}")
            name = kw["sampler_name"]
            full = resolve_sigmas(model, name, kw["scheduler"], steps, denoise)
            search = resolve_sigmas(model, name, kw["scheduler"], proxy_steps, denoise) if proxy_steps else full
        self.full_sigmas, self.search_sigmas, self.proxy_steps = full, search, proxy_steps
        self.verifiers = [v for v in (kw["verifier"], kw.get("verifier_2"), kw.get("verifier_3")) if v is not None]
        if not self.verifiers:
            raise ValueError("connect at least one VERIFIER (Verifier Loader node)")
        prompt, class_id = kw.get("verifier_prompt") or "", int(kw.get("class_id", -1))
        self.scorer = PooledScorer(self.verifiers, [condition_for(v, prompt, class_id) for v in self.verifiers],
                                   kw.get("ensemble") or "mean_rank")
        self.setup = SamplingSetup(model, kw["positive"], kw["negative"], kw["latent_image"], kw["vae"], self.sampler, search, kw["cfg"])
        self.shape = self.setup.shape
        self.frames = None  # video: what the frames inputs select from the frames one candidate decodes to
        if self.setup.video:
            self.scorer.frames = frame_spec(kw)
            if self.setup.frames is not None:  # a frame past the end is refused before any sampling
                self.frames = self.scorer.frames.describe(self.setup.frames)
        self.budget = int(kw.get("budget") or 0) or None
        self.chunk_size, self.top_k = int(kw["chunk_size"]), int(kw["top_k"])
        # before any model call: the largest chunk up to chunk_size this host can sample (or a refusal)
        self.memory = memory.plan_chunk(self.setup.model, kw["vae"], kw["positive"], kw["negative"], self.shape, self.chunk_size,
                                        kw["cfg"], what=NAMES.get(algorithm, algorithm))
        self.chunk_size = self.memory["chunk_size"]
        self.seed = int(kw["seed"])
        self.pick = int(kw.get("pick", -1) if kw.get("pick") is not None else -1)
        self.progress = Progress(self.setup.model)
        self.generator = Generator(self.setup, self.progress, need_early=self.scorer.needs_early,
                                   final_sigmas=full if proxy_steps else None)
        self.node_id = self.prompt = self.extra_pnginfo = None

    def sampling_info(self):
        kw = self.kw
        return {"sampler": kw["sampler_name"] if kw.get("sampler") is None else "SAMPLER input",
                "scheduler": kw["scheduler"] if kw.get("sigmas") is None else "SIGMAS input",
                "steps": int(kw["steps"]), "cfg": float(kw["cfg"]), "denoise": float(kw["denoise"]),
                "sigmas": [float(s) for s in self.full_sigmas], "proxy_steps": self.proxy_steps,
                "search_sigmas": [float(s) for s in self.search_sigmas], "latent_shape": list(self.shape),
                **({"video": self.scorer.frames.describe(self.scorer.num_frames or self.setup.frames)} if self.setup.video else {}),
                "verifier_prompt": kw.get("verifier_prompt") or "", "class_id": int(kw.get("class_id", -1))}

    def extra(self):
        return {"sampling": self.sampling_info(), "verifiers": self.scorer.describe(), "final_nfe": self.generator.final_nfe,
                "early_time": self.generator.early_time, "memory": self.memory, "node": self.node_id}

    # callbacks for the core
    def on_scored(self, cands, result):
        self.scorer.commit(cands)
        reporting.send_progress(self.node_id, self.algorithm, cands, result, self.budget)

    def on_interrupt(self, partial):
        self.scorer.rerank(partial)
        reporting.dump_partial(partial, self.extra(), self.node_id, self.prompt, self.extra_pnginfo)

    def calibrate(self, first_recipe):
        """Measure model calls per candidate on the search's first candidate (cached for the search)."""
        self.progress.on_step(0, 1)
        return self.generator.calibrate(Candidates.of([first_recipe], self.shape))


def finish(cls, ctx, result, render_recipe=None):
    """Winner or human pick, final render at batch 1, outputs and UI.

    Random / zero-order (``render_recipe`` None): the output candidate is re-rendered at batch 1 with the final
    settings unless it already was (so its LATENT equals a plain KSampler run with its seed); an ensemble's final
    re-ranking may crown a candidate outside the kept top-K, which is rendered from its recipe too.
    Paths: ``render_recipe(recipe) -> Batch`` replays a candidate; the kept sample is used when present."""
    ctx.scorer.rerank(result)
    if not result.top_k:
        raise RuntimeError(f"{result.algorithm} search evaluated no candidate")
    best = result.top_k[0] if render_recipe is not None else result.best
    kept = {c.index: i for i, c in enumerate(result.top_k)}
    if ctx.pick >= 0:
        if ctx.pick not in kept:
            raise ValueError(f"pick={ctx.pick} is not among the kept top-{len(result.top_k)} candidates {sorted(kept)}; "
                             "pick one of those, or set pick to -1 for the verifier's choice")
        chosen, picked_by = result.top_k[kept[ctx.pick]], "user"
    else:
        chosen, picked_by = best, "verifier"
    try:  # a cancel during the final render still leaves the finished search's best in the temp folder
        if render_recipe is None:
            use_kept = chosen.index in kept and chosen.recipe in ctx.generator.exact
            batch = None if use_kept else ctx.generator.render(Candidates.of([chosen.recipe], ctx.shape))
        else:
            use_kept = chosen.index in kept
            batch = None if use_kept else render_recipe(chosen.recipe)
    except BaseException:
        reporting.dump_partial(result, ctx.extra(), ctx.node_id, ctx.prompt, ctx.extra_pnginfo)
        raise
    if use_kept:
        i = kept[chosen.index]
        latent, image = result.top_k_samples[LATENT][i:i + 1], result.top_k_samples["samples"][i:i + 1]
    else:
        latent, image = batch.extras[LATENT], batch.samples

    topk_images = result.top_k_samples["samples"]
    if ctx.setup.video:  # the winner's frames as an IMAGE batch (video save nodes); the top-K as strips of their scored frames
        image = image[0]
        topk_images = keyframe_strip(topk_images, select_frames(image.shape[0], ctx.scorer.frames))
    extra = ctx.extra()
    prov = reporting.provenance(result, extra, best.index, chosen.index if picked_by == "user" else None, picked_by)
    prov["output_index"] = chosen.index
    prov_json = json.dumps(prov)
    prefix = f"noise_search/{result.algorithm}_{ctx.node_id or 'node'}"
    topk_files = reporting.save_images(topk_images, prefix + "_topk", "temp")
    winner_files = reporting.save_images(image, prefix + "_out", "temp")
    ui = reporting.ui_payload(result, result.algorithm, best.index, chosen.index if picked_by == "user" else None, topk_files, winner_files)
    ui["text"] = [score_table(result, chosen.index)]
    return io.NodeOutput({"samples": latent}, image, int(reporting.root_seed(chosen.recipe)), reporting.recipe_json(chosen.recipe),
                         topk_images, ui["text"][0], reporting.plot_image(result), prov_json, ui=ui)


def begin(cls, kw, algorithm, proxy=True):
    ctx = SearchContext(kw, algorithm, proxy)
    hidden = getattr(cls, "hidden", None)
    if hidden is not None:
        ctx.node_id, ctx.prompt, ctx.extra_pnginfo = hidden.unique_id, hidden.prompt, hidden.extra_pnginfo
    return ctx


def callbacks(ctx):
    """Keyword arguments every core search takes from the node."""
    return {"chunk_size": ctx.chunk_size, "top_k": ctx.top_k, "on_step": ctx.progress.on_step,
            "on_scored": ctx.on_scored, "on_interrupt": ctx.on_interrupt}


def check_noise_mask_free(ctx, what):
    if ctx.setup.noise_mask is not None:
        raise ValueError(f"{what} does not support a LATENT with a noise_mask (inpainting); use Random or Zero-Order Search")

