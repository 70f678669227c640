"""Search over paths (Paths-N, Ma et al. 2025, Sec. 3.2).

N seeded noises are integrated down the sampler's sigma grid to the start step. Each round,
every surviving path is re-noised M times from grid step i back up to step i - delta_f
(fresh noise, exact forward transition), integrated down delta_b steps to j = i - delta_f +
delta_b, and scored on its clean x-prediction (one extra denoising step, as verifiers cannot
read noisy inputs); the top N of the N x M branches survive. Rounds repeat until sigma = 0,
then the best survivor wins. delta_b > delta_f is required, or the search never ends.

Steps are counted on the host's grid ``sigmas`` (descending, ending in 0): ``denoise(x,
sigma_from, sigma_to)`` makes one solver step and costs ``step_nfe(sigma_from, sigma_to)``
model calls per sample.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional, Sequence, Union

import torch

from .candidates import Candidates
from .evaluate import Evaluator, as_batch, call_score, check_positive_int, resolve_top_k, run_guarded
from .noise import PathRecipe, check_seed, derive_seed
from .population import CallableStepper, Population, span_nfe
from .stepwise import make_stepper
from .random_search import seed_pool
from .result import rank_key

if TYPE_CHECKING:  # the types only
    from ..samplers.noise_space import NoiseSpace
    from .evaluate import Batch
    from .noise import Recipe
    from .protocols import Denoise, OnInterrupt, OnScored, OnStep, Renoise, Score
    from .result import SearchResult

__all__ = ['check_path_params', 'path_search', 'path_rounds', 'replay', 'steps_from_times', 'path_search_nfe']


def check_path_params(sigmas: Sequence[float], start_step: int, forward_steps: int,
                      backward_steps: int) -> tuple[int, int, int]:
    bad = [s for s in sigmas if not (s >= 0 and s != float("inf"))]
    if len(sigmas) < 2 or bad or any(b > a for a, b in zip(sigmas, sigmas[1:])):
        raise ValueError(f"sigmas must be a non-increasing grid of >= 2 finite sigmas >= 0 (steps + 1, ending in 0), got {sigmas}")
    last = len(sigmas) - 1
    start_step = check_positive_int(start_step, "start_step", minimum=0)
    forward_steps = check_positive_int(forward_steps, "delta_f (forward re-noising steps)", minimum=0)
    backward_steps = check_positive_int(backward_steps, "delta_b (backward denoising steps)", minimum=1)
    if backward_steps <= forward_steps:
        raise ValueError(f"search over paths needs delta_b > delta_f (each round must end nearer to clean), got delta_b={backward_steps}, delta_f={forward_steps}")
    if not (forward_steps <= start_step < last):
        raise ValueError(f"start_step must be in [delta_f={forward_steps}, {last - 1}] for a grid of {last} steps, got {start_step}")
    return start_step, forward_steps, backward_steps


def path_search(denoise: Denoise, score: Score, shape: Sequence[int], sigmas: Union[torch.Tensor, Sequence[float]], *,
                seed: int = 0, paths: int = 2, width: int = 2, start_step: int, forward_steps: int, backward_steps: int,
                space: Optional[NoiseSpace] = None, step_nfe: Optional[Callable[[float, float], int]] = None,
                prepare: Optional[Callable[[torch.Tensor], torch.Tensor]] = None, renoise: Optional[Renoise] = None,
                decode: Optional[Callable[[torch.Tensor], Union[Batch, torch.Tensor]]] = None, chunk_size: int = 8,
                top_k: Optional[int] = None, cfg_multiplier: int = 1, on_step: Optional[OnStep] = None,
                on_scored: Optional[OnScored] = None, on_interrupt: Optional[OnInterrupt] = None) -> SearchResult:
    """Paths-N with ``paths`` = N initial noises (seeds seed..seed+N-1) and ``width`` = M re-noisings per path.
    The top-K are final-round candidates, so an explicit ``top_k`` is at most N x M (default: up to 4).

    ``space`` is the model's noise space (``samplers.noise_space.EDM`` or ``FLOW``): it defines the start from pure
    noise and the exact re-noising, unless the host gives its own ``prepare`` / ``renoise``; one of ``space`` and
    ``renoise`` must be given (a flow model re-noised as EDM would sample from the wrong marginals)."""
    sig = [float(s) for s in (sigmas.tolist() if torch.is_tensor(sigmas) else sigmas)]
    start_step, df, db = check_path_params(sig, start_step, forward_steps, backward_steps)
    stepper = make_stepper(denoise, space, sig, step_nfe, prepare, renoise, decode, "search over paths")
    seed = check_seed(seed)
    n = check_positive_int(paths, "paths (N)")
    m = check_positive_int(width, "width (M re-noisings per path)")
    top_k = resolve_top_k(top_k, n * m, f"the final round's N x M = {n} x {m} branches")
    last = len(sig) - 1
    params = {"seed": seed, "paths": n, "width": m, "start_step": start_step, "delta_f": df, "delta_b": db,
              "sigmas": sig, "chunk_size": chunk_size}
    ev = Evaluator("paths", params, shape, None, None, nfe_per_candidate=1, chunk_size=chunk_size, top_k=top_k,
                   cfg_multiplier=cfg_multiplier, on_step=on_step, on_scored=on_scored)
    rounds = path_rounds(sig, start_step, df, db)
    ev.progress_total = n + n * m * len(rounds)
    ev.result.params["rounds"] = rounds

    def body():
        # the N paths, sampled down to the start step (an out-of-memory error halves the chunk: Evaluator.chunks)
        start = lambda part: Population.start(stepper, Candidates.of(part, shape), [r.seed for r in part]).advance(
            stepper, sig, start_step)
        parts = []
        for part, pop in ev.chunks(seed_pool(seed, n), start):
            ev.add_nfe(len(part) * span_nfe(stepper, sig, 0, start_step))
            parts.append(pop)
            ev.step(len(part))
        alive = Population.cat(parts)
        for rnd, (i, j) in enumerate(rounds, start=1):
            final = j == last
            # M branches per path: re-noised delta_f steps up with their own seeded noise, denoised to step j
            branches = [(k, b) for k in range(len(alive)) for b in range(m)]
            per = span_nfe(stepper, sig, i - df, j) + (0 if final else int(stepper.step_nfe(sig[j], 0.0)))

            def branch(part, i=i, j=j, final=final, alive=alive):
                parents = alive.take([k for k, _ in part])
                recipes = [PathRecipe(r, i, b, derive_seed(seed, i, key, b)) for r, key, (_, b) in zip(parents.recipes, parents.keys, part)]
                keys = [derive_seed(key, i, b) for key, (_, b) in zip(parents.keys, part)]
                child = parents.renoised(stepper, sig, i - df, recipes, keys, shape).advance(stepper, sig, j)
                batch = as_batch(stepper.decode(child.x if final else child.predict_x0(stepper, sig)))
                return child, batch, call_score(score, batch)

            children, cands = [], []
            for part, (child, batch, scores) in ev.chunks(branches, branch):
                cands += ev.record(child.recipes, scores, batch, round=rnd, per_candidate_nfe=per, keep=final)
                children.append(child)
                del batch, scores  # decoded samples go before the next chunk is generated
                ev.step(len(part))
            # the best N branches go on
            order = sorted(range(len(cands)), key=lambda t: rank_key(cands[t]))
            alive = Population.cat(children).take(order[:n])

    return run_guarded(ev, body, on_interrupt)


def path_rounds(sig: Sequence[float], start_step: int, df: int, db: int) -> list[tuple[int, int]]:
    """The rounds (i, j): re-noise from grid step i up to i - delta_f, denoise to j = i - delta_f + delta_b."""
    rounds, i, last = [], start_step, len(sig) - 1
    while i < last:
        j = min(i - df + db, last)
        rounds.append((i, j))
        i = j
    return rounds


@torch.no_grad()
def replay(recipe: Recipe, denoise: Denoise, shape: Sequence[int], sigmas: Union[torch.Tensor, Sequence[float]], *,
           start_step: int, forward_steps: int, backward_steps: int, space: Optional[NoiseSpace] = None,
           prepare: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
           renoise: Optional[Renoise] = None) -> torch.Tensor:
    """Recreate the final state of a path candidate from its recipe (bit-exact on the same host and batch size 1)."""
    sig = [float(s) for s in (sigmas.tolist() if torch.is_tensor(sigmas) else sigmas)]
    start_step, df, db = check_path_params(sig, start_step, forward_steps, backward_steps)
    stepper = make_stepper(denoise, space, sig, None, prepare, renoise, None, "search over paths")
    chain = recipe.chain() if isinstance(recipe, PathRecipe) else []
    root = recipe.root() if isinstance(recipe, PathRecipe) else recipe
    pop = Population.start(stepper, Candidates.of([root], shape), [0]).advance(stepper, sig, start_step)
    for link, (i, j) in zip(chain, path_rounds(sig, start_step, df, db)):
        if link.step != i:
            raise ValueError(f"recipe re-noises at step {link.step} but the schedule puts that round at step {i}: parameters differ from the search's")
        pop = pop.renoised(stepper, sig, i - df, [link], [0], shape).advance(stepper, sig, j)
    if len(chain) > len(path_rounds(sig, start_step, df, db)):
        raise ValueError(f"recipe re-noises {len(chain)} times but the schedule has only {len(path_rounds(sig, start_step, df, db))} rounds")
    return pop.advance(stepper, sig, len(sig) - 1).x


def steps_from_times(sigmas: Union[torch.Tensor, Sequence[float]], start: float, delta_f: float, delta_b: float,
                     sigma_to_time: Callable[[float], float]) -> tuple[int, int, int]:
    """Map the paper's continuous path parameters (SiT time: 0 = data, 1 = noise; Ma et al. App. A.3
    use start 0.11, delta_f 0.78, delta_b 0.81) onto the host's grid: (start_step, forward_steps, backward_steps).
    Each time is snapped to the nearest grid point; delta_b stays > delta_f."""
    sig = [float(s) for s in (sigmas.tolist() if torch.is_tensor(sigmas) else sigmas)]
    times = [float(sigma_to_time(s)) for s in sig]
    nearest = lambda tau: min(range(len(times)), key=lambda i: (abs(times[i] - tau), i))
    i0 = min(nearest(start), len(sig) - 2)
    i_up = nearest(times[i0] + delta_f)
    df = i0 - i_up
    i_back = nearest(times[i0] + delta_f - delta_b)
    db = max(i_back - i_up, df + 1)
    return i0, max(df, 0) if i_up <= i0 else 0, db


def path_search_nfe(sigmas: Union[torch.Tensor, Sequence[float]], *, paths: int, width: int, start_step: int,
                    forward_steps: int, backward_steps: int,
                    step_nfe: Optional[Callable[[float, float], int]] = None) -> int:
    """The exact NFE a path search will spend (same accounting as ``path_search``)."""
    sig = [float(s) for s in (sigmas.tolist() if torch.is_tensor(sigmas) else sigmas)]
    start_step, df, db = check_path_params(sig, start_step, forward_steps, backward_steps)
    cost = CallableStepper(None, None, sig[0], step_nfe_fn=step_nfe)
    last, total = len(sig) - 1, paths * span_nfe(cost, sig, 0, start_step)
    for i, j in path_rounds(sig, start_step, df, db):
        total += paths * width * (span_nfe(cost, sig, i - df, j) + (0 if j == last else cost.step_nfe(sig[j], 0.0)))
    return total
