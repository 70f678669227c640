"""Noise Candidate Pool: the candidates of a search as recipes, usable on their own in SamplerCustomAdvanced."""

from comfy_api.latest import io, ui

from ..search.noise import MAX_SEED, SeedRecipe, check_seed
from ..search.random_search import seed_pool
from ..search.zero_order import neighbours
from .types import NoisePool, NoisePoolType, PoolNoise, latent_shape
from .validation import Node


class NoiseCandidatePool(Node):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="NoiseCandidatePool_NoiseSearch",
            display_name="Noise Candidate Pool",
            category="noise-search/noise",
            description="A pool of candidate noises, each a reproducible recipe. 'seeds': seed, seed+1, ... (candidate i reproduces "
                        "in a plain KSampler with its seed). 'neighbourhood': the pivot seed's noise plus neighbours on the sphere "
                        "at cosine lambda to it. The NOISE output feeds SamplerCustomAdvanced to sample the whole pool as one batch.",
            inputs=[
                io.Int.Input("seed", default=0, min=0, max=MAX_SEED, control_after_generate=True,
                             tooltip="First seed ('seeds') or the pivot seed ('neighbourhood')."),
                io.Int.Input("count", default=4, min=1, max=4096, tooltip="Number of candidates in the pool."),
                io.Combo.Input("mode", options=["seeds", "neighbourhood"], default="seeds",
                               tooltip="'seeds': consecutive seeds. 'neighbourhood': the pivot plus count-1 neighbours at cosine lambda."),
                io.Float.Input("lambda_", display_name="lambda", default=0.95, min=0.01, max=0.999, step=0.005,
                               tooltip="Cosine similarity of each neighbour to the pivot ('neighbourhood' mode only)."),
                io.Latent.Input("latent", optional=True,
                                tooltip="Optional LATENT fixing the noise shape; without it the shape comes from the latent the NOISE is used with."),
            ],
            outputs=[
                NoisePoolType.Output(display_name="NOISE_POOL", tooltip="The candidates' recipes (and latent shape) for the search nodes."),
                io.Noise.Output(display_name="NOISE", tooltip="The pool as a NOISE for SamplerCustomAdvanced: candidate i is batch row i."),
                io.String.Output(display_name="recipes", tooltip="The pool's recipes as JSON."),
            ],
        )

    @classmethod
    def execute(cls, seed, count, mode, lambda_, latent=None) -> io.NodeOutput:
        seed = check_seed(seed)
        if mode == "seeds":
            recipes = seed_pool(seed, int(count))
        elif mode == "neighbourhood":
            pivot = SeedRecipe(seed)
            recipes = [pivot] + neighbours(pivot, 0, int(count) - 1, float(lambda_), seed)
        else:
            raise ValueError(f"mode must be 'seeds' or 'neighbourhood', got {mode!r}")
        shape = None
        if latent is not None:
            shape = latent_shape(latent["samples"])
        pool = NoisePool(recipes, shape, {"seed": seed, "count": int(count), "mode": mode, "lambda": float(lambda_)})
        text = "\n".join(f"{i}: {r.describe()}" for i, r in enumerate(recipes))
        return io.NodeOutput(pool, PoolNoise(pool), pool.to_json(), ui=ui.PreviewText(text))


NODES = [NoiseCandidatePool]
