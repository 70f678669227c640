"""The three search nodes of Ma, Tong et al. 2025: Random Search (best-of-N), Zero-Order Search and
Search over Paths. Each one only adds its own parameters to the shared inputs (search_common) and
calls its core algorithm."""

from comfy_api.latest import io

from ..search.noise import SeedRecipe
from ..search.paths import path_search
from ..search.random_search import random_search
from ..search.zero_order import neighbours, zero_order_search
from . import search_common as common
from .types import NoisePoolType
from .stepwise import check_stepwise, no_render, run_stepwise
from .validation import Node

class RandomSearch(Node):
    @classmethod
    def define_schema(cls):
        return common.schema(
            "RandomSearch_NoiseSearch", "Random Search (best-of-N)",
            "Best-of-N over seeded noises: sample N candidates (seed, seed+1, ...), score each with the verifier(s), "
            "output the best. N comes from count or the NFE budget. Every candidate reproduces in a plain KSampler with its seed.",
            [io.Int.Input("count", default=8, min=0, max=1_000_000,
                          tooltip="Number of candidates N; 0 = as many as the NFE budget allows."),
             NoisePoolType.Input("pool", optional=True,
                                 tooltip="Optional Noise Candidate Pool: search exactly its candidates (overrides seed and count).")])

    @classmethod
    def execute(cls, **kw) -> io.NodeOutput:
        ctx = common.begin(cls, kw, "random")
        pool = kw.get("pool")
        nfe = ctx.calibrate(pool.recipes[0] if pool is not None else SeedRecipe(ctx.seed))
        result = random_search(ctx.generator, ctx.scorer, ctx.shape, seed=ctx.seed, count=None if pool is not None else int(kw["count"]) or None,
                               budget=ctx.budget, nfe_per_candidate=nfe, cfg_multiplier=ctx.generator.cfg_multiplier,
                               pool=None if pool is None else pool.recipes, pool_params=None if pool is None else pool.params,
                               **common.callbacks(ctx))
        return common.finish(cls, ctx, result)


class ZeroOrderSearch(Node):
    @classmethod
    def define_schema(cls):
        return common.schema(
            "ZeroOrderSearch_NoiseSearch", "Zero-Order Search",
            "ZO-N: start from the seed's noise as the pivot; each iteration scores N neighbours on the sphere around the "
            "pivot (same norm, cosine lambda to it) and moves the pivot to the best. Every neighbour is reproducible from its recipe.",
            [io.Int.Input("neighbours", default=2, min=1, max=4096, tooltip="N: neighbours scored per iteration (the paper uses 2 or 4)."),
             io.Int.Input("iterations", default=4, min=0, max=100_000,
                          tooltip="Iterations; 0 = as many as the NFE budget allows."),
             io.Float.Input("lambda_", display_name="lambda", default=0.95, min=0.01, max=0.999, step=0.005,
                            tooltip="Cosine similarity of each neighbour to the pivot (0.95 = about 18 degrees away); "
                                    "smaller = bigger steps."),
             io.Boolean.Input("score_pivot", default=False,
                              tooltip="Also score the initial pivot (costs one candidate; tt-scale-flux does, the paper does not).")])

    @classmethod
    def execute(cls, **kw) -> io.NodeOutput:
        ctx = common.begin(cls, kw, "zero_order")
        n, lam = int(kw["neighbours"]), float(kw["lambda_"])
        pivot = SeedRecipe(ctx.seed)
        first = pivot if kw["score_pivot"] else neighbours(pivot, 0, n, lam, ctx.seed)[0]
        nfe = ctx.calibrate(first)
        result = zero_order_search(ctx.generator, ctx.scorer, ctx.shape, seed=ctx.seed, neighbours_per_iter=n,
                                   iterations=int(kw["iterations"]) or None, lam=lam, budget=ctx.budget, nfe_per_candidate=nfe,
                                   score_pivot=bool(kw["score_pivot"]), cfg_multiplier=ctx.generator.cfg_multiplier,
                                   **common.callbacks(ctx))
        return common.finish(cls, ctx, result)


class PathSearch(Node):
    @classmethod
    def define_schema(cls):
        return common.schema(
            "PathSearch_NoiseSearch", "Search over Paths",
            "Paths-N: N seeded paths are sampled down to start_step; each round every path is re-noised delta_f steps back "
            "up M times, denoised delta_b steps forward, scored on its clean prediction, and the best N branches go on, "
            "until the grid ends. Steps count on the sampler's sigma grid; needs a deterministic sampler.",
            [io.Int.Input("paths", default=2, min=1, max=1024, tooltip="N: paths kept after every round (the paper's T2I runs use 2)."),
             io.Int.Input("width", default=2, min=1, max=1024, tooltip="M: re-noised branches per path per round."),
             io.Int.Input("start_step", default=10, min=0, max=10000,
                          tooltip="Grid step where branching starts (0 = pure noise; must be < steps and >= delta_f)."),
             io.Int.Input("delta_f", default=2, min=0, max=10000, tooltip="Forward (re-noising) steps per round, back up the grid."),
             io.Int.Input("delta_b", default=4, min=1, max=10000,
                          tooltip="Backward (denoising) steps per round; must exceed delta_f so every round ends nearer to clean.")],
            proxy=False)

    @classmethod
    def execute(cls, **kw) -> io.NodeOutput:
        ctx = common.begin(cls, kw, "paths", proxy=False)
        step_nfe = check_stepwise(ctx, kw, "Search over Paths")

        def search(denoise, decode, t):
            return path_search(denoise, ctx.scorer, ctx.shape, ctx.search_sigmas, seed=ctx.seed, paths=int(kw["paths"]),
                               width=int(kw["width"]), start_step=int(kw["start_step"]), forward_steps=int(kw["delta_f"]),
                               backward_steps=int(kw["delta_b"]), step_nfe=step_nfe, prepare=t.prepare, renoise=t.renoise,
                               decode=decode, **common.callbacks(ctx))

        result = run_stepwise(ctx, "Search over Paths", step_nfe, search)
        return common.finish(cls, ctx, result, render_recipe=no_render)


NODES = [RandomSearch, ZeroOrderSearch, PathSearch]
