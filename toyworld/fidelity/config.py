"""The fidelity study's settings, fixed before any measurement (``CONFIGS``, seed bases in ``unit_seed``), and the
NFE arithmetic of its budgets: Heun-10 candidates, more Heun steps at equal NFE, the widest search over paths."""

import sys

from ...samplers.schedules import karras_sigmas
from ..models import TrigFlowDenoiser
# ALGORITHMS (random, zero_order, paths) and PATH_TIMES (start sigma, delta_f, delta_b in SiT time, Ma et al.
# App. A.3) are the demo's too: toyworld/search.py runs every search of the study
from ..search import ALGORITHMS, PATH_TIMES, path_plan  # noqa: F401 - ALGORITHMS: the study's, named here
from ..search import paths_width as _paths_width

# -- fixed settings (declared before any measurement) -----------------------------------------------
STEPS_PER_CANDIDATE = 10   # Heun-10 on EDM's rho = 7 grid: 19 NFE per candidate
ZO_N, ZO_LAMBDA = 4, 0.95  # ZO-4 as in Ma et al. Fig. 11 (ImageNet); lambda = tt-scale-flux's default
PATHS_N = 2                # Paths-2 as in Ma et al.'s text-to-image runs
PR_K = 3                   # k of the k-NN manifolds (Kynkaanniemi et al.)
SEARCH_CHUNK = 64          # candidates per batch of one search (zero-order's iterations of ZO_N fit in one)
GRID_DIGIT = 3             # the digit whose winners the F2 picture shows (the first digit measured when 3 is not)

CONFIGS = {
    "full": {"digits": list(range(10)), "f1_seeds": [0, 1, 2, 3], "f1_candidates": [1, 2, 4, 8, 16, 32, 64],
             "f2_per_digit": 20, "f2_candidates": [8, 64], "f3_pools": [0, 1, 2, 3], "f3_candidates": 64,
             "f4_per_class": 200, "f4_seeds": [0, 1], "f4_teacher_steps": [10, 50]},
    "quick": {"digits": list(range(10)), "f1_seeds": [0], "f1_candidates": [1, 2, 4, 8, 16, 32],
              "f2_per_digit": 5, "f2_candidates": [16], "f3_pools": [0], "f3_candidates": 64,
              "f4_per_class": 50, "f4_seeds": [0], "f4_teacher_steps": [50]},
    "tiny": {"digits": [0, 1], "f1_seeds": [0], "f1_candidates": [4, 8], "f2_per_digit": 2, "f2_candidates": [8],
             "f3_pools": [0], "f3_candidates": 8, "f4_per_class": 0, "f4_seeds": [0], "f4_teacher_steps": [10]},
}
PHASES = {"f1": 1, "f2": 2, "f3": 3, "f2_rerun": 4}


def unit_seed(phase, digit, rep):
    """First seed of one independent search (or one no-search sample): phases, digits and repeats never
    share seeds (a random search of <= 10000 candidates uses seeds base .. base + N - 1)."""
    return PHASES[phase] * 10 ** 9 + (int(rep) * 10 + int(digit)) * 10 ** 4


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# -- budgets in NFE ------------------------------------------------------------------------------------

def grid(steps=STEPS_PER_CANDIDATE):
    return karras_sigmas(int(steps), TrigFlowDenoiser.sigma_min, TrigFlowDenoiser.sigma_max)


def heun_nfe(steps):
    return 2 * int(steps) - 1


def steps_for_nfe(nfe):
    """The most Heun steps whose 2N - 1 NFE fit in ``nfe``."""
    return max(1, (int(nfe) + 1) // 2)


def path_params(sigmas):
    return path_plan(sigmas, PATH_TIMES)


def _heun_step_nfe(a, b):
    return 1 if float(b) == 0 else 2


def paths_width(budget, sigmas=None):
    """The widest Paths-N (M re-noisings per path) whose exact NFE fits ``budget``; None if none does."""
    return _paths_width(grid() if sigmas is None else sigmas, budget, PATHS_N, _heun_step_nfe, PATH_TIMES)


def feasible(name, candidates):
    if name == "zero_order":
        return candidates >= ZO_N and candidates % ZO_N == 0
    if name == "paths":
        return paths_width(candidates * heun_nfe(STEPS_PER_CANDIDATE)) is not None
    return candidates >= 1
