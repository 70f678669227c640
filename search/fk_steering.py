"""Feynman-Kac steering (FK steering; Singhal, Horvitz et al. 2025, arXiv 2501.06848).

``k`` particles are sampled side by side with a *stochastic* sampler. At the resampling steps (every ``m``-th grid
step of the window ``[start, end]``) each particle's clean prediction x0 is scored by the verifier, r_i, and turned
into a potential G_i = exp(lambda * u_i), one of the paper's three choices:

* ``"max"``:        u_i = max of the particle line's rewards so far, this one included;
* ``"sum"``:        u_i = sum of the line's rewards so far, this one included;
* ``"difference"``: u_i = r_i - the line's previous reward (0 before the first), so the potentials of a line
  telescope to exp(lambda * its last reward).

Each particle's log-weight gains lambda * u_i; then the particles are resampled (multinomial, with replacement, by
their normalised weights; weights reset to equal) either every time (``ess_threshold=None``, the paper's fixed
interval) or only when the effective sample size 1 / sum(w^2) falls below ``ess_threshold * k`` (adaptive
resampling; unresampled weights keep accumulating). After the last step every particle is a final sample, scored
and kept: the winner is the best of the ``k`` (the paper's best-of-k selection of the final particles; its own code
also resamples once more at the end with a corrected potential, which matters for sampling the tilted distribution,
not for a search that returns its best sample).

The stochastic transition. Resampling duplicates particles, so the copies must go on with independent noise, or
they coincide: the deterministic ODE is refused (``eta = 0``). Each step from sigma_i to sigma_{i+1} > 0 is an
*ancestral* step, exact in the model's noise space: the host's solver step from sigma_i down to sigma_down <
sigma_{i+1}, then the space's exact forward transition (``NoiseSpace.renoise``) from sigma_down back up to
sigma_{i+1} with fresh seeded noise. If the solver step follows the probability-flow ODE, its result has the
marginal at sigma_down, and the forward transition keeps the marginal at sigma_{i+1}: the particles sample the model's
distribution whatever ``eta``. ``eta`` in (0, 1] sets how much of the step is noise: EDM's sigma_up =
min(sigma_{i+1}, eta * sqrt(sigma_{i+1}^2 (sigma_i^2 - sigma_{i+1}^2) / sigma_i^2)), sigma_down = sqrt(sigma_{i+1}^2 -
sigma_up^2) (k-diffusion's ``get_ancestral_step``: DDPM's posterior noise at eta = 1); rectified flow's sigma_down =
sigma_{i+1} (1 + (sigma_{i+1} / sigma_i - 1) eta) (ComfyUI's ``sample_euler_ancestral_RF``). The last step, to
sigma = 0, is the plain solver step. A step costs the solver's NFE from sigma_i to sigma_down (Heun: 2, as on the
grid), so a particle costs what one sample of the ODE sampler costs, plus one x0 prediction (the solver's step to
0) at each resampling step.

Lineage. Particle ``j`` starts from seed ``seed + j`` (a KSampler seed); every particle's recipe
(``search.particle_recipe.ParticleRecipe``) records its ancestors and the seed of every step's noise, and
``replay_particle`` re-runs any particle, the winner included, bit-exactly from its recipe alone.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Optional, Sequence, Union

import torch

from .candidates import Candidates
from .evaluate import Evaluator, as_batch, check_positive_int, resolve_top_k, run_guarded
from .noise import check_seed, derive_seed
from .particle_recipe import ParticleRecipe
from .random_search import seed_pool
from .stepwise import CountingScore, grid_of, make_stepper

if TYPE_CHECKING:  # the types only
    from ..samplers.noise_space import NoiseSpace
    from .evaluate import Batch
    from .population import Stepper
    from .protocols import Denoise, OnInterrupt, OnScored, OnStep, Renoise, Score
    from .result import SearchResult

__all__ = ["POTENTIALS", "sigma_down", "transition", "resample_steps", "check_fk_params", "fk_particle_nfe",
           "fk_steering_nfe", "fk_steering", "replay_particle"]

POTENTIALS = ("max", "sum", "difference")
_SALT = 0x464B  # "FK": the segment seeds' own stream


def sigma_down(space: NoiseSpace, sigma_from: float, sigma_to: float, eta: float) -> float:
    """Where the solver step of an ancestral step from ``sigma_from`` to ``sigma_to`` ends (see the module docstring);
    0 for the last step (``sigma_to = 0``)."""
    a, b = float(sigma_from), float(sigma_to)
    if b == 0.0:
        return 0.0
    if space.is_flow:
        return b * (1.0 + (b / a - 1.0) * eta)
    up = min(b, eta * math.sqrt(b * b * (a * a - b * b) / (a * a)))
    return math.sqrt(max(b * b - up * up, 0.0))


def transition(stepper: Stepper, space: NoiseSpace, x: torch.Tensor, sigma_from: float, sigma_to: float, eta: float,
               noise: Optional[torch.Tensor]) -> torch.Tensor:
    """One stochastic step of every row: the solver to sigma_down, then the exact forward transition to ``sigma_to``
    with ``noise`` (unused on the last step, to 0)."""
    down = sigma_down(space, sigma_from, sigma_to, eta)
    x = stepper.step(x, sigma_from, down)
    if sigma_to == 0.0:
        return x
    fn = getattr(stepper, "renoise", None) or space.renoise
    return fn(x, down, sigma_to, noise.to(x))


def resample_steps(last: int, start: int, end: int, every: int) -> list[int]:
    """The grid steps at which FK resamples: ``start, start + every, ... <= end`` (none when ``every`` is 0)."""
    return [] if every == 0 else list(range(start, end + 1, every))


def _check_float(value, name, lo, hi, lo_open, hi_open, hint):
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    ok = math.isfinite(v) and (v > lo if lo_open else v >= lo) and (hi is None or (v < hi if hi_open else v <= hi))
    if isinstance(value, bool) or not ok:
        rng = f"{'(' if lo_open else '['}{lo}, {'inf)' if hi is None else str(hi) + (')' if hi_open else ']')}"
        raise ValueError(f"{name} must be a number in {rng}{hint}, got {value!r}")
    return v


def check_fk_params(sig: Sequence[float], *, potential: str, lmbda: float, resample_every: int,
                    resample_start: Optional[int], resample_end: Optional[int], ess_threshold: Optional[float],
                    eta: float) -> dict:
    """Check FK steering's settings against the grid ``sig``; returns them resolved (the window's defaults filled)."""
    last = len(sig) - 1
    if potential not in POTENTIALS:
        raise ValueError(f"potential must be one of {', '.join(POTENTIALS)} (Singhal et al. Sec. 3), got {potential!r}")
    lmbda = _check_float(lmbda, "lambda (the potentials' inverse temperature)", 0.0, None, False, False, "")
    if isinstance(eta, (int, float)) and not isinstance(eta, bool) and float(eta) == 0.0:
        raise ValueError("FK steering needs a stochastic transition, and eta = 0 is the deterministic ODE: copies made by "
                         "resampling would follow one trajectory and coincide; use eta in (0, 1] (1 = DDPM's posterior noise)")
    eta = _check_float(eta, "eta (the noise share of each ancestral step)", 0.0, 1.0, True, False,
                       "; 0 would be the deterministic ODE")
    every = check_positive_int(resample_every, "resample_every (m, resample every m grid steps; 0 = never)", minimum=0)
    if last < 2 and every:
        raise ValueError(f"FK steering resamples at intermediate grid steps and a grid of {last} step has none; "
                         f"use >= 2 sampler steps or resample_every=0")
    start = 1 if resample_start is None else resample_start
    end = last - 1 if resample_end is None else resample_end
    if every:
        for name, v in (("resample_start", start), ("resample_end", end)):
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= last - 1:
                raise ValueError(f"{name} must be a grid step in [1, {last - 1}] (the schedule's intermediate steps, of "
                                 f"{last} steps), got {v!r}")
        if start > end:
            raise ValueError(f"the resampling window [resample_start, resample_end] is empty: {start} > {end}; give "
                             f"1 <= resample_start <= resample_end <= {last - 1}")
    if ess_threshold is not None:
        ess_threshold = _check_float(ess_threshold, "ess_threshold (fraction of k the effective sample size must fall "
                                     "below to resample)", 0.0, 1.0, True, False, "; None resamples every time")
    return {"potential": potential, "lambda": lmbda, "resample_every": every, "resample_start": start,
            "resample_end": end, "ess_threshold": ess_threshold, "eta": eta,
            "resample_steps": resample_steps(last, start, end, every)}


def _nfe(step_nfe: Optional[Callable], a: float, b: float) -> int:
    return 1 if step_nfe is None else int(step_nfe(a, b))


def fk_particle_nfe(sig: Sequence[float], space: NoiseSpace, eta: float, steps: Sequence[int],
                    step_nfe: Optional[Callable[[float, float], int]] = None) -> int:
    """Model calls per particle: the ancestral steps down the grid plus an x0 prediction at each resampling step."""
    walk = sum(_nfe(step_nfe, sig[s], sigma_down(space, sig[s], sig[s + 1], eta)) for s in range(len(sig) - 1))
    return walk + sum(_nfe(step_nfe, sig[i], 0.0) for i in steps)


def fk_steering_nfe(sigmas: Union[torch.Tensor, Sequence[float]], *, particles: int, space: NoiseSpace,
                    step_nfe: Optional[Callable[[float, float], int]] = None, potential: str = "max", lmbda: float = 10.0,
                    resample_every: int = 1, resample_start: Optional[int] = None, resample_end: Optional[int] = None,
                    ess_threshold: Optional[float] = None, eta: float = 1.0) -> int:
    """The exact NFE an FK steering search will spend (same accounting as ``fk_steering``)."""
    sig = grid_of(sigmas)
    p = check_fk_params(sig, potential=potential, lmbda=lmbda, resample_every=resample_every, resample_start=resample_start,
                        resample_end=resample_end, ess_threshold=ess_threshold, eta=eta)
    return int(particles) * fk_particle_nfe(sig, space, p["eta"], p["resample_steps"], step_nfe)


def fk_steering(denoise: Denoise, score: Score, shape: Sequence[int], sigmas: Union[torch.Tensor, Sequence[float]], *,
                space: NoiseSpace, seed: int = 0, particles: Optional[int] = None, budget: Optional[int] = None,
                potential: str = "max", lmbda: float = 10.0, resample_every: int = 1, resample_start: Optional[int] = None,
                resample_end: Optional[int] = None, ess_threshold: Optional[float] = None, eta: float = 1.0,
                step_nfe: Optional[Callable[[float, float], int]] = None,
                prepare: Optional[Callable[[torch.Tensor], torch.Tensor]] = None, renoise: Optional[Renoise] = None,
                decode: Optional[Callable[[torch.Tensor], Union[Batch, torch.Tensor]]] = None, chunk_size: int = 8,
                top_k: Optional[int] = None, cfg_multiplier: int = 1, on_step: Optional[OnStep] = None,
                on_scored: Optional[OnScored] = None, on_interrupt: Optional[OnInterrupt] = None) -> SearchResult:
    """FK steering with ``particles`` = k >= 2 particles (or as many as the NFE ``budget`` pays for) from seeds
    ``seed .. seed + k - 1``, over the host's grid ``sigmas`` (descending, ending in 0).

    ``denoise(x, sigma_from, sigma_to)`` is one solver step (any target sigma, also off the grid) costing
    ``step_nfe(sigma_from, sigma_to)`` model calls per row; ``space`` the model's noise space (``EDM`` or ``FLOW``),
    which places the ancestral step and re-noises exactly unless the host gives its own ``renoise`` / ``prepare``;
    ``decode`` turns clean states into what ``score`` reads. ``potential``, ``lmbda`` (lambda), ``resample_every``
    (m; 0 = never resample: k independent particles), the window ``[resample_start, resample_end]`` (default
    ``[1, steps - 1]``), ``ess_threshold`` and ``eta``: see the module docstring.

    The result's history holds every scored x0 prediction (``round`` = its grid step, not kept as a sample) and the
    k final samples (``round`` = the number of steps, kept: the top-K, at most k); ``params`` record the resampling
    steps, where resampling happened (``resampled_at``), the ESS there, and the verifier calls next to the NFE."""
    sig = grid_of(sigmas)
    last = len(sig) - 1
    if space is None:
        raise ValueError("FK steering needs the model's noise space (space=EDM or FLOW from samplers.noise_space): it "
                         "places the ancestral step's sigma_down and re-noises exactly in the model's own space")
    stepper = make_stepper(denoise, space, sig, step_nfe, prepare, renoise, decode, "FK steering")
    seed = check_seed(seed)
    p = check_fk_params(sig, potential=potential, lmbda=lmbda, resample_every=resample_every, resample_start=resample_start,
                        resample_end=resample_end, ess_threshold=ess_threshold, eta=eta)
    steps, eta, lam = p["resample_steps"], p["eta"], p["lambda"]
    per_particle = fk_particle_nfe(sig, space, eta, steps, step_nfe)
    k = _plan_particles(particles, budget, per_particle)
    top_k = resolve_top_k(top_k, k, f"the k = {k} final particles")
    params = {"seed": seed, "particles": k, "budget": budget, **{n: v for n, v in p.items() if n != "resample_steps"},
              "resample_steps": steps, "sigmas": sig, "nfe_per_particle": per_particle, "chunk_size": chunk_size}
    ev = Evaluator("fk", params, shape, None, None, nfe_per_candidate=1, chunk_size=chunk_size, top_k=top_k,
                   cfg_multiplier=cfg_multiplier, on_step=on_step, on_scored=on_scored)
    counted = CountingScore(score)
    ev.progress_total = k * (len(steps) + 1)
    shape = ev.shape
    log = {"resampled_at": [], "ess": []}
    params.update(log, verifier_calls=0, preview_verifier_calls=0)  # filled in as the search goes (also when cancelled)

    def body():
        recipes = [ParticleRecipe(root, 0, j, derive_seed(seed, _SALT, -1, j)) for j, root in enumerate(seed_pool(seed, k))]
        x, cur = None, 0
        acc = torch.full((k,), -math.inf if potential == "max" else 0.0, dtype=torch.float64)  # the lines' statistic
        logw = torch.zeros(k, dtype=torch.float64)
        for stop in [*steps, last]:
            final = stop == last
            per = sum(_nfe(step_nfe, sig[s], sigma_down(space, sig[s], sig[s + 1], eta)) for s in range(cur, stop))
            per += 0 if final else _nfe(step_nfe, sig[stop], 0.0)

            def compute(part, x=x, cur=cur, stop=stop, final=final, recipes=recipes):
                rows = [recipes[j] for j in part]
                xs = stepper.prepare(Candidates.of(rows, shape).noise) if x is None else x[list(part)]
                for s in range(cur, stop):
                    noise = None if sig[s + 1] == 0.0 else torch.cat([r.noise_at(s, shape) for r in rows])
                    xs = transition(stepper, space, xs, sig[s], sig[s + 1], eta, noise)
                batch = as_batch(stepper.decode(xs if final else stepper.step(xs, sig[stop], 0.0)))
                return xs, batch, counted(batch)

            xs_parts, scores = [], []
            for part, (xs, batch, s) in ev.chunks(list(range(k)), compute):
                ev.record([recipes[j] for j in part], s, batch, round=stop, per_candidate_nfe=per, keep=final)
                params["verifier_calls"] = counted.calls
                params["preview_verifier_calls"] += 0 if final else len(part)
                xs_parts.append(xs)
                scores.append(s)
                del batch  # the decoded chunk goes before the next one is made
                ev.step(len(part))
            x, r, cur = torch.cat(xs_parts), torch.cat(scores), stop
            if final:
                break
            # the potential of this step, accumulated into the log-weights
            if potential == "max":
                acc = torch.maximum(acc, r)
                logw = logw + lam * acc
            elif potential == "sum":
                acc = acc + r
                logw = logw + lam * acc
            else:
                logw = logw + lam * (r - acc)
                acc = r
            w = torch.softmax(logw, 0)
            ess = float(1.0 / (w * w).sum())
            log["ess"].append(round(ess, 6))
            if p["ess_threshold"] is not None and not ess < p["ess_threshold"] * k:
                continue
            g = torch.Generator(device="cpu").manual_seed(derive_seed(seed, _SALT, stop, k))
            idx = torch.multinomial(w, k, replacement=True, generator=g).tolist()
            log["resampled_at"].append(stop)
            x, acc, logw = x[idx], acc[idx], torch.zeros(k, dtype=torch.float64)
            recipes = [ParticleRecipe(recipes[a], stop, j, derive_seed(seed, _SALT, stop, j)) for j, a in enumerate(idx)]

    return run_guarded(ev, body, on_interrupt)


def _plan_particles(particles: Optional[int], budget: Optional[int], per: int) -> int:
    if particles is None and budget is None:
        raise ValueError(f"give particles (k, an integer >= 2) or an NFE budget (an integer >= {2 * per}, two particles)")
    if budget is not None:
        budget = check_positive_int(budget, "budget (NFE)")
        if budget < 2 * per:
            raise ValueError(f"NFE budget {budget} is below two particles ({per} NFE each: the ancestral steps plus an x0 "
                             f"prediction at each resampling step); raise the budget to >= {2 * per}")
    if particles is None:
        return budget // per
    if isinstance(particles, bool) or not isinstance(particles, int) or particles < 2:
        raise ValueError(f"particles (k) must be an integer >= 2: FK steering resamples among particles, got {particles!r}")
    if budget is not None and particles * per > budget:
        raise ValueError(f"particles {particles} x {per} NFE = {particles * per} exceeds the NFE budget {budget}; use "
                         f"particles in [2, {budget // per}] or raise the budget")
    return particles


@torch.no_grad()
def replay_particle(recipe: ParticleRecipe, stepper: Stepper, sigmas: Union[torch.Tensor, Sequence[float]], *,
                    shape: Sequence[int], eta: float = 1.0) -> torch.Tensor:
    """The final state (sigma = 0) of the particle ``recipe`` names, re-run from its recipe alone on ``stepper`` (which
    carries the model's noise space) with the search's grid and ``eta``: bit-exact on the same host when the model's
    rows do not depend on their batch (the search steps particles in chunks)."""
    if not isinstance(recipe, ParticleRecipe):
        raise ValueError(f"replay_particle needs a particle's recipe (ParticleRecipe), got {type(recipe).__name__}")
    sig = grid_of(sigmas)
    last = len(sig) - 1
    space = getattr(stepper, "space", None)
    if space is None:
        raise ValueError("replay_particle needs a stepper with the model's noise space (stepper.space = EDM or FLOW)")
    eta = _check_float(eta, "eta", 0.0, 1.0, True, False, "; the search's own eta")
    chain = recipe.chain()
    starts = [link.step for link in chain]
    if starts[0] != 0 or any(b <= a for a, b in zip(starts, starts[1:])) or starts[-1] > last - 1:
        raise ValueError(f"the recipe's segments start at steps {starts}; a particle's start at 0 and increase within "
                         f"[0, {last - 1}]: it was made on another grid than these {last} steps")
    x = stepper.prepare(recipe.make(tuple(shape)))
    for link, end in zip(chain, [*starts[1:], last]):
        for s in range(link.step, end):
            noise = None if sig[s + 1] == 0.0 else link.noise_at(s, tuple(shape))
            x = transition(stepper, space, x, sig[s], sig[s + 1], eta, noise)
    return x
