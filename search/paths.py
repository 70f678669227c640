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

import torch

from ..samplers.noise_space import edm_forward
from .evaluate import Batch, Evaluator, as_batch, call_score, check_positive_int, resolve_top_k, run_guarded
from .noise import PathRecipe, check_seed, derive_seed, make_noise_batch
from .random_search import seed_pool
from .result import rank_key


def check_path_params(sigmas, start_step, forward_steps, backward_steps):
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


class _Path:
    __slots__ = ("x", "recipe", "key")

    def __init__(self, x, recipe, key):
        self.x, self.recipe, self.key = x, recipe, key


def _integrate(denoise, x, sigmas, i, j):
    for s in range(i, j):
        x = denoise(x, sigmas[s], sigmas[s + 1])
    return x


def _span_nfe(step_nfe, sigmas, i, j):
    return sum(int(step_nfe(sigmas[s], sigmas[s + 1])) for s in range(i, j))


def path_search(denoise, score, shape, sigmas, *, seed=0, paths=2, width=2, start_step, forward_steps, backward_steps,
                step_nfe=None, prepare=None, renoise=edm_forward, decode=None, chunk_size=8, top_k=None, cfg_multiplier=1,
                on_step=None, on_scored=None, on_interrupt=None):
    """Paths-N with ``paths`` = N initial noises (seeds seed..seed+N-1) and ``width`` = M re-noisings per path.
    The top-K are final-round candidates, so an explicit ``top_k`` is at most N x M (default: up to 4)."""
    sig = [float(s) for s in (sigmas.tolist() if torch.is_tensor(sigmas) else sigmas)]
    start_step, df, db = check_path_params(sig, start_step, forward_steps, backward_steps)
    seed = check_seed(seed)
    n = check_positive_int(paths, "paths (N)")
    m = check_positive_int(width, "width (M re-noisings per path)")
    top_k = resolve_top_k(top_k, n * m, f"the final round's N x M = {n} x {m} branches")
    step_nfe = step_nfe or (lambda a, b: 1)
    prepare = prepare or (lambda noise: noise * sig[0])
    decode = decode or (lambda x: x)
    last = len(sig) - 1
    params = {"seed": seed, "paths": n, "width": m, "start_step": start_step, "delta_f": df, "delta_b": db,
              "sigmas": sig, "chunk_size": chunk_size}
    ev = Evaluator("paths", params, shape, None, None, nfe_per_candidate=1, chunk_size=chunk_size, top_k=top_k,
                   cfg_multiplier=cfg_multiplier, on_step=on_step, on_scored=on_scored)
    rounds, i = [], start_step
    while i < last:
        j = min(i - df + db, last)
        rounds.append((i, j))
        i = j
    ev.progress_total = n + n * m * len(rounds)
    ev.result.params["rounds"] = rounds

    def body():
        roots = seed_pool(seed, n)
        alive = []
        start = lambda part: _integrate(denoise, prepare(make_noise_batch(part, shape)), sig, 0, start_step)
        for part, x in ev.chunks(roots, start):  # an out-of-memory error halves the chunk (Evaluator.chunks)
            ev.add_nfe(len(part) * _span_nfe(step_nfe, sig, 0, start_step))
            alive += [_Path(x[k:k + 1], r, r.seed) for k, r in enumerate(part)]
            ev.step(len(part))
        for rnd, (i, j) in enumerate(rounds, start=1):
            final = j == last
            branches = [(p, PathRecipe(p.recipe, i, b, derive_seed(seed, i, p.key, b))) for p in alive for b in range(m)]
            per = _span_nfe(step_nfe, sig, i - df, j) + (0 if final else int(step_nfe(sig[j], 0.0)))
            scored = []

            def branch(part, i=i, j=j, final=final):
                x = torch.cat([p.x for p, _ in part])
                x = renoise(x, sig[i], sig[i - df], make_noise_batch([r for _, r in part], shape).to(x))
                x = _integrate(denoise, x, sig, i - df, j)
                batch = as_batch(decode(x if final else denoise(x, sig[j], 0.0)))
                return x, batch, call_score(score, batch)

            for part, (x, batch, scores) in ev.chunks(branches, branch):
                recipes = [r for _, r in part]
                cands = ev.record(recipes, scores, batch, round=rnd, per_candidate_nfe=per, keep=final)
                scored += [(c, _Path(x[k:k + 1], r, derive_seed(p.key, i, b))) for k, (c, (p, r), b) in
                           enumerate(zip(cands, part, [r.index for _, r in part]))]
                del batch, scores  # decoded samples go before the next chunk is generated
                ev.step(len(part))
            scored.sort(key=lambda t: rank_key(t[0]))
            alive = [p for _, p in scored[:n]]

    return run_guarded(ev, body, on_interrupt)


@torch.no_grad()
def replay(recipe, denoise, shape, sigmas, *, start_step, forward_steps, backward_steps, prepare=None, renoise=edm_forward):
    """Recreate the final latent of a path candidate from its recipe (bit-exact on the same host and batch size 1)."""
    sig = [float(s) for s in (sigmas.tolist() if torch.is_tensor(sigmas) else sigmas)]
    start_step, df, db = check_path_params(sig, start_step, forward_steps, backward_steps)
    prepare = prepare or (lambda noise: noise * sig[0])
    chain = recipe.chain() if isinstance(recipe, PathRecipe) else []
    root = recipe.root() if isinstance(recipe, PathRecipe) else recipe
    x = _integrate(denoise, prepare(root.make(shape)), sig, 0, start_step)
    i = start_step
    for link in chain:
        if link.step != i:
            raise ValueError(f"recipe re-noises at step {link.step} but the schedule puts that round at step {i}: parameters differ from the search's")
        j = min(i - df + db, len(sig) - 1)
        x = renoise(x, sig[i], sig[i - df], link.make(shape).to(x))
        x = _integrate(denoise, x, sig, i - df, j)
        i = j
    return _integrate(denoise, x, sig, i, len(sig) - 1)


def steps_from_times(sigmas, start, delta_f, delta_b, sigma_to_time):
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


def path_search_nfe(sigmas, *, paths, width, start_step, forward_steps, backward_steps, step_nfe=None):
    """The exact NFE a path search will spend (same accounting as ``path_search``)."""
    sig = [float(s) for s in (sigmas.tolist() if torch.is_tensor(sigmas) else sigmas)]
    start_step, df, db = check_path_params(sig, start_step, forward_steps, backward_steps)
    step_nfe = step_nfe or (lambda a, b: 1)
    last, total, i = len(sig) - 1, paths * _span_nfe(step_nfe, sig, 0, start_step), start_step
    while i < last:
        j = min(i - df + db, last)
        total += paths * width * (_span_nfe(step_nfe, sig, i - df, j) + (0 if j == last else int(step_nfe(sig[j], 0.0))))
        i = j
    return total
