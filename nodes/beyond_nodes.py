"""Search nodes beyond Ma, Tong et al. 2025: FK Steering, Evolutionary Search and Early Pruning.

Thin adapters: each one adds its own parameters to the shared inputs and outputs (search_common) and calls its
core algorithm (search/fk_steering.py, search/evolution.py, search/pruning.py). Evolutionary search samples whole
trajectories with ComfyUI's own sampler, as Zero-Order Search does (every member re-renders from its recipe).
FK steering and early pruning step ComfyUI's sampler one sigma at a time inside one guider call
(comfy_adapters.run_inside_sampler), as Search over Paths does, with the same single-step sampler rule
(stepwise.PATH_SAMPLERS) and every step's model calls checked against the core's NFE accounting; their output is
the kept final sample."""

from comfy_api.latest import io

from ..search.evolution import evolution_search
from ..search.fk_steering import POTENTIALS, check_fk_params, fk_steering
from ..search.noise import SeedRecipe
from ..search.pruning import early_pruning
from ..search.stepwise import grid_of
from . import search_common as common
from .comfy_adapters import noise_space
from .stepwise import check_stepwise, no_render, run_stepwise
from .validation import Node


def parse_checkpoints(text):
    """``"4, 8"`` -> [4, 8] (grid steps; the core checks their range and order)."""
    parts = [p for p in str(text or "").replace(";", ",").replace(" ", ",").split(",") if p]
    try:
        return [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"checkpoints must be grid steps as integers separated by commas (e.g. \"4, 8\"), got {text!r}") from None


class FKSteering(Node):
    @classmethod
    def define_schema(cls):
        return common.schema(
            "FKSteering_NoiseSearch", "FK Steering",
            "Feynman-Kac steering: k particles are sampled side by side with an ancestral (stochastic) version of the "
            "chosen single-step sampler; at the resampling steps each particle's clean prediction is scored, weighted by "
            "a potential and the particles are resampled, so good ones are duplicated and bad ones dropped. The output is "
            "the best final particle (its recipe records its whole lineage).",
            [io.Int.Input("particles", default=4, min=0, max=4096,
                          tooltip="k: particles sampled side by side (>= 2); 0 = as many as the NFE budget allows."),
             io.Combo.Input("potential", options=list(POTENTIALS), default="max",
                            tooltip="Potential of a particle line: max of its rewards so far, sum of them, or the "
                                    "difference to its previous reward (Singhal et al. Sec. 3)."),
             io.Float.Input("lambda_", display_name="lambda", default=10.0, min=0.0, max=1000.0, step=0.1,
                            tooltip="Inverse temperature of the potentials exp(lambda * u): larger = greedier resampling; "
                                    "0 = uniform weights."),
             io.Int.Input("resample_every", default=1, min=0, max=10000,
                          tooltip="m: resample every m grid steps inside the window; 0 = never (k independent particles)."),
             io.Int.Input("resample_start", default=0, min=0, max=10000,
                          tooltip="First grid step of the resampling window (0 = step 1)."),
             io.Int.Input("resample_end", default=0, min=0, max=10000,
                          tooltip="Last grid step of the resampling window (0 = steps - 1)."),
             io.Float.Input("ess_threshold", default=0.0, min=0.0, max=1.0, step=0.05,
                            tooltip="Adaptive resampling: resample only when the effective sample size falls below this "
                                    "fraction of k; 0 = resample at every resampling step."),
             io.Float.Input("eta", default=1.0, min=0.0, max=1.0, step=0.05,
                            tooltip="Noise share of each ancestral step (1 = DDPM's posterior noise). Must be > 0: "
                                    "resampled copies need fresh noise to part.")],
            proxy=False)

    @classmethod
    def execute(cls, **kw) -> io.NodeOutput:
        what = "FK Steering"
        ctx = common.begin(cls, kw, "fk", proxy=False)
        step_nfe = check_stepwise(ctx, kw, what, extra=" of its own; FK adds the ancestral noise itself (eta) around a "
                                                       "deterministic solver step")
        space = noise_space(ctx.setup.model)
        ess = float(kw["ess_threshold"])
        window = dict(potential=kw["potential"], lmbda=float(kw["lambda_"]), resample_every=int(kw["resample_every"]),
                      resample_start=int(kw["resample_start"]) or None, resample_end=int(kw["resample_end"]) or None,
                      ess_threshold=ess if ess > 0 else None, eta=float(kw["eta"]))
        check_fk_params(grid_of(ctx.search_sigmas), **window)  # the core's refusals (eta = 0, ...) before the model loads

        def search(denoise, decode, t):
            return fk_steering(denoise, ctx.scorer, ctx.shape, ctx.search_sigmas, space=space, seed=ctx.seed,
                               particles=int(kw["particles"]) or None, budget=ctx.budget, **window, step_nfe=step_nfe,
                               prepare=t.prepare, renoise=t.renoise, decode=decode, **common.callbacks(ctx))

        result = run_stepwise(ctx, what, step_nfe, search)
        return common.finish(cls, ctx, result, render_recipe=no_render)


class EvolutionarySearch(Node):
    @classmethod
    def define_schema(cls):
        return common.schema(
            "EvolutionarySearch_NoiseSearch", "Evolutionary Search",
            "Evolution over initial noise (after EvoSearch): generation 0 scores seeds seed .. seed + P - 1; each later "
            "generation keeps the best elites and fills the rest with children: a parent picked by tournament, mutated on "
            "the sphere around it (cosine lambda). Every member reproduces in a plain sampler from its recipe.",
            [io.Int.Input("population", default=8, min=2, max=4096, tooltip="P: members per generation."),
             io.Int.Input("elites", default=2, min=0, max=4095,
                          tooltip="Best members kept unchanged each generation (not sampled again); < population."),
             io.Float.Input("lambda_", display_name="lambda", default=0.9, min=0.01, max=0.999, step=0.005,
                            tooltip="Cosine similarity of a child's noise to its parent's: smaller = bigger mutations."),
             io.Int.Input("tournament", default=2, min=1, max=4096,
                          tooltip="Members drawn per parent selection; the best of them is the parent (1 = random parent)."),
             io.Int.Input("generations", default=4, min=0, max=100_000,
                          tooltip="Generations (the first included); 0 = as many as the NFE budget allows (the last one partial).")])

    @classmethod
    def execute(cls, **kw) -> io.NodeOutput:
        ctx = common.begin(cls, kw, "evolution")
        nfe = ctx.calibrate(SeedRecipe(ctx.seed))
        result = evolution_search(ctx.generator, ctx.scorer, ctx.shape, nfe_per_candidate=nfe, seed=ctx.seed,
                                  population=int(kw["population"]), elites=int(kw["elites"]),
                                  generations=int(kw["generations"]) or None, budget=ctx.budget, lam=float(kw["lambda_"]),
                                  tournament=int(kw["tournament"]), cfg_multiplier=ctx.generator.cfg_multiplier,
                                  **common.callbacks(ctx))
        return common.finish(cls, ctx, result)


class EarlyPruning(Node):
    @classmethod
    def define_schema(cls):
        return common.schema(
            "EarlyPruning_NoiseSearch", "Early Pruning",
            "Successive halving over seeds: count seeds are sampled down the grid; at each checkpoint every live "
            "candidate's clean prediction is scored and only the best keep fraction goes on. The survivors are finished "
            "and the best is the output. keep = 1 is best-of-N (Random Search).",
            [io.Int.Input("count", default=8, min=0, max=1_000_000,
                          tooltip="Seeds started (seed, seed+1, ...); 0 = as many as the NFE budget allows."),
             io.String.Input("checkpoints", default="10",
                             tooltip="Grid steps where candidates are scored and pruned, comma-separated, increasing, in "
                                     "[1, steps - 1]."),
             io.Float.Input("keep", default=0.5, min=0.01, max=1.0, step=0.05,
                            tooltip="Fraction of the live candidates each checkpoint keeps (rounded up, at least one); "
                                    "1 = keep all (best-of-N).")],
            proxy=False)

    @classmethod
    def execute(cls, **kw) -> io.NodeOutput:
        what = "Early Pruning"
        checkpoints = parse_checkpoints(kw["checkpoints"])
        ctx = common.begin(cls, kw, "pruning", proxy=False)
        step_nfe = check_stepwise(ctx, kw, what)

        def search(denoise, decode, t):
            return early_pruning(denoise, ctx.scorer, ctx.shape, ctx.search_sigmas, checkpoints=checkpoints,
                                 keep=float(kw["keep"]), seed=ctx.seed, count=int(kw["count"]) or None, budget=ctx.budget,
                                 step_nfe=step_nfe, prepare=t.prepare, decode=decode, **common.callbacks(ctx))

        result = run_stepwise(ctx, what, step_nfe, search)
        return common.finish(cls, ctx, result, render_recipe=no_render)


NODES = [FKSteering, EvolutionarySearch, EarlyPruning]
