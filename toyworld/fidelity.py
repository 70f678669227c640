"""Paper fidelity: reproduce the findings of Ma, Tong et al. 2025 (search over noise with verifiers) and
Lu & Song 2024 (sCM) on the embedded toy world, with numbers.

- F1 scaling: the classifier-verifier score of the winner against NFE for random, zero-order and path
  search, against spending the same NFE on more Heun steps for one sample.
- F2 diversity: k-NN precision / recall (classifier features, vs the 1797 real digits) of independent
  search winners, against no search at Heun-10 and at equal NFE (the paper's "verifier hacking").
- F3 the self-supervised verifier: Spearman correlation with the classifier verifier over candidates,
  and whether selecting by it raises the classifier's score.
- F4 sCM: the distilled student's Frechet distance at 1 and 2 steps against the teacher's.

Everything is fixed up front (``CONFIGS``, seed bases in ``unit_seed``); nothing is tuned to the outcome.
Scores are the classifier logit of the wanted digit. NFE = model evaluations per final sample, Heun's
second evaluation counted (Heun-10 = 19 NFE); a search's winner is one of its candidates, so a search
of N Heun-10 candidates costs 19 N NFE in all (no re-generation step).

Many searches run side by side in threads whose model calls are merged into one batched forward per
round (``Lockstep``): the searches are the pack's own ``random_search`` / ``zero_order_search`` /
``path_search`` unchanged, only their network calls are batched. Batch composition is deterministic, so
a run is reproducible on one machine. Framework-free: torch and PIL only.

    report = run_fidelity("quick")          # or python -m noise_search bench fidelity --quick
"""

import json
import math
import os
import sys
import threading
import time
from pathlib import Path

import torch

from ..samplers.ode import SAMPLERS, STEPS
from ..samplers.schedules import early_prediction_call, karras_sigmas, sigma_to_rf_time
from ..search.noise import seed_noise
from ..search.paths import path_search, path_search_nfe, steps_from_times
from ..search.random_search import random_search
from ..search.zero_order import zero_order_search
from ..verifiers.features import SelfSupervisedVerifier
from .load import WEIGHTS_DIR, load_classifier, load_teacher
from .metrics import class_accuracy, classifier_features, frechet_distance, precision_recall
from .models import TrigFlowDenoiser
from .world import SHAPE, ToyWorld, classifier_verifier, from_images, to_images

# -- fixed settings (declared before any measurement) -----------------------------------------------
STEPS_PER_CANDIDATE = 10   # Heun-10 on EDM's rho = 7 grid: 19 NFE per candidate
ZO_N, ZO_LAMBDA = 4, 0.95  # ZO-4 as in Ma et al. Fig. 11 (ImageNet); lambda = tt-scale-flux's default
PATHS_N = 2                # Paths-2 as in Ma et al.'s text-to-image runs
PATH_TIMES = (0.11, 0.78, 0.81)  # start sigma, delta_f, delta_b in SiT time (Ma et al. App. A.3)
PR_K = 3                   # k of the k-NN manifolds (Kynkaanniemi et al.)
ALGORITHMS = ("random", "zero_order", "paths")

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


# -- statistics ---------------------------------------------------------------------------------------

def ranks(x):
    """Ranks 1..n with ties given their average rank (float64)."""
    x = torch.as_tensor(x, dtype=torch.float64).flatten()
    uniq, inv = torch.unique(x, return_inverse=True)
    order = torch.argsort(x, stable=True)
    r = torch.empty_like(x)
    r[order] = torch.arange(1, x.numel() + 1, dtype=torch.float64)
    total = torch.zeros(uniq.numel(), dtype=torch.float64).index_add_(0, inv, r)
    count = torch.zeros(uniq.numel(), dtype=torch.float64).index_add_(0, inv, torch.ones_like(r))
    return (total / count)[inv]


def pearson(a, b):
    a, b = torch.as_tensor(a, dtype=torch.float64).flatten(), torch.as_tensor(b, dtype=torch.float64).flatten()
    if a.numel() != b.numel() or a.numel() < 2:
        raise ValueError(f"need two equally long samples of >= 2 values, got {a.numel()} and {b.numel()}")
    a, b = a - a.mean(), b - b.mean()
    den = (a.pow(2).sum() * b.pow(2).sum()).sqrt()
    if den == 0:
        return None  # a constant sample has no correlation
    return float((a @ b / den).clamp(-1, 1))


def spearman(a, b):
    """Spearman's rho (Pearson correlation of average ranks) in [-1, 1]; None when a sample is constant."""
    return pearson(ranks(a), ranks(b))


def mean_se(values):
    v = torch.as_tensor([float(x) for x in values], dtype=torch.float64)
    se = float(v.std() / math.sqrt(v.numel())) if v.numel() > 1 else 0.0
    return {"mean": float(v.mean()), "se": se, "n": int(v.numel())}


# -- batching many searches -----------------------------------------------------------------------------

class Lockstep:
    """Merges the model calls of searches running in threads: each round waits until every live thread
    has asked for one forward, runs them as one batch (ordered by thread index) and hands each its rows."""

    def __init__(self, denoiser):
        self.denoiser = denoiser
        self.cv = threading.Condition()
        self.alive, self.pending, self.results, self.error = 0, {}, {}, None
        self.rounds = 0

    def call(self, idx, x, sigma, labels):
        with self.cv:
            self.pending[idx] = (x, sigma, labels)
            self._fire()
            while idx not in self.results:
                if self.error is not None:
                    raise RuntimeError("another search of the batch failed") from self.error
                self.cv.wait()
            return self.results.pop(idx)

    def leave(self):
        with self.cv:
            self.alive -= 1
            self._fire()

    def _fire(self):  # called with the lock held
        if not self.pending or len(self.pending) < self.alive or self.error is not None:
            return
        keys = sorted(self.pending)
        xs, ss, ys = zip(*(self.pending[k] for k in keys))
        self.pending = {}
        try:
            with torch.no_grad():
                out = self.denoiser(torch.cat(xs), torch.cat(ss), class_labels=torch.cat(ys))
        except BaseException as err:
            self.error = err
            self.cv.notify_all()
            raise
        self.rounds += 1
        i = 0
        for k, x in zip(keys, xs):
            self.results[k] = out[i:i + x.shape[0]]
            i += x.shape[0]
        self.cv.notify_all()


class _Proxy:
    """Stands in for a ToyWorld's denoiser: forwards its calls to the shared Lockstep."""

    def __init__(self, lockstep, idx, digit):
        self.lockstep, self.idx, self.digit = lockstep, idx, digit

    def __call__(self, x, sigma, class_labels=None):
        sigma = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1).expand(x.shape[0])
        labels = torch.full((x.shape[0],), self.digit, dtype=torch.long)
        return self.lockstep.call(self.idx, x, sigma, labels)


def run_batched(tasks, models, max_threads=256):
    """Run ``tasks`` = [(key, digit, fn)] where ``fn(world)`` runs one search on a ToyWorld of that digit.
    Returns {key: fn's return value}. Threads run in waves of ``max_threads``."""
    out = {}
    for w0 in range(0, len(tasks), max_threads):
        wave = tasks[w0:w0 + max_threads]
        ls = Lockstep(models["denoiser"])
        ls.alive = len(wave)
        errors = []

        def work(i, key, digit, fn):
            try:
                world = ToyWorld(digit, steps=STEPS_PER_CANDIDATE, teacher=models["teacher"], verifier=models["verifier"])
                world.denoiser = _Proxy(ls, i, digit)
                out[key] = fn(world)
            except BaseException as err:  # noqa: BLE001 - re-raised below in the main thread
                errors.append(err)
                with ls.cv:
                    if ls.error is None:
                        ls.error = err
                    ls.cv.notify_all()
            finally:
                ls.leave()

        threads = [threading.Thread(target=work, args=(i, *t), daemon=True) for i, t in enumerate(wave)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
    return out


# -- the world's pieces -------------------------------------------------------------------------------

def require_scikit_learn():
    """Fail in one line before anything is loaded or measured: every part compares with the real 8x8 digits, which
    ship inside scikit-learn, an optional dependency (the pack's ``demo`` and ``test`` extras)."""
    try:
        import sklearn.datasets  # noqa: F401
    except ImportError as err:
        raise ImportError("bench fidelity needs scikit-learn, which ships the real 8x8 digits every part compares with: "
                          "pip install scikit-learn (or pip install -e \".[demo]\")") from err


def load_models(teacher=None, classifier=None):
    teacher = teacher if teacher is not None else load_teacher()
    classifier = classifier if classifier is not None else load_classifier()
    return {"teacher": teacher, "denoiser": TrigFlowDenoiser(teacher).eval(), "classifier": classifier.eval(),
            "verifier": classifier_verifier(classifier)}


def grid(steps=STEPS_PER_CANDIDATE):
    return karras_sigmas(int(steps), TrigFlowDenoiser.sigma_min, TrigFlowDenoiser.sigma_max)


def heun_nfe(steps):
    return 2 * int(steps) - 1


def steps_for_nfe(nfe):
    """The most Heun steps whose 2N - 1 NFE fit in ``nfe``."""
    return max(1, (int(nfe) + 1) // 2)


def path_params(sigmas):
    start, df, db = steps_from_times(sigmas, *PATH_TIMES, sigma_to_rf_time)
    return {"start_step": start, "forward_steps": df, "backward_steps": db}


def _heun_step_nfe(a, b):
    return 1 if float(b) == 0 else 2


def paths_width(budget, sigmas=None):
    """The widest Paths-N (M re-noisings per path) whose exact NFE fits ``budget``; None if none does."""
    sig = grid() if sigmas is None else sigmas
    kw = dict(paths=PATHS_N, step_nfe=_heun_step_nfe, **path_params(sig))
    if path_search_nfe(sig, width=1, **kw) > budget:
        return None
    m = 1
    while path_search_nfe(sig, width=m + 1, **kw) <= budget:
        m += 1
    return m


@torch.no_grad()
def heun_samples(denoiser, noise, labels, steps, batch_size=2000):
    """Raw samples [N, 1, 8, 8] of Heun-``steps`` from unit noise [N, 1, 8, 8], one label each."""
    sig = grid(steps)
    out = []
    for i in range(0, noise.shape[0], batch_size):
        x = noise[i:i + batch_size] * sig[0]
        out.append(SAMPLERS["heun"](denoiser, x, sig, extra_args={"class_labels": labels[i:i + batch_size]}))
    return torch.cat(out)


def seed_batch(seeds):
    return torch.cat([seed_noise(s, SHAPE) for s in seeds])


@torch.no_grad()
def logits_of(classifier, x, labels):
    """Classifier logit of each sample's own label; x raw [N, 1, 8, 8] (clamped like an image, as the verifier sees it)."""
    lg = classifier(x.clamp(-1, 1))
    return lg[torch.arange(x.shape[0]), torch.as_tensor(labels).long()]


def _search(name, world, seed, candidates):
    """One search of the pack at a budget of ``candidates`` Heun-10 candidates (paths: the widest that fits)."""
    nfe = world.nfe_per_candidate
    if name == "random":
        return random_search(world.generate, world.score, world.shape, seed=seed, count=candidates, nfe_per_candidate=nfe,
                             chunk_size=64, top_k=1)
    if name == "zero_order":
        return zero_order_search(world.generate, world.score, world.shape, seed=seed, neighbours_per_iter=ZO_N,
                                 iterations=candidates // ZO_N, lam=ZO_LAMBDA, nfe_per_candidate=nfe, chunk_size=ZO_N, top_k=1)
    width = paths_width(candidates * nfe, world.sigmas)
    return path_search(world.denoise, world.score, world.shape, world.sigmas, seed=seed, paths=PATHS_N, width=width,
                       step_nfe=world.step_nfe, decode=world.decode, chunk_size=64, top_k=1, **path_params(world.sigmas))


def feasible(name, candidates):
    if name == "zero_order":
        return candidates >= ZO_N and candidates % ZO_N == 0
    if name == "paths":
        return paths_width(candidates * heun_nfe(STEPS_PER_CANDIDATE)) is not None
    return candidates >= 1


# -- F1: scaling ------------------------------------------------------------------------------------------

def best_at(curve, nfe):
    """Best score of a best-so-far curve [(nfe, best)] within ``nfe``; None before the first candidate."""
    vals = [b for n, b in curve if n <= nfe]
    return vals[-1] if vals else None


def f1_scaling(cfg, models):
    t0 = time.perf_counter()
    per = heun_nfe(STEPS_PER_CANDIDATE)
    cands = sorted(cfg["f1_candidates"])
    units = [(d, s) for s in cfg["f1_seeds"] for d in cfg["digits"]]
    top = cands[-1]
    tasks = []
    for d, s in units:
        seed = unit_seed("f1", d, s)
        tasks.append((("random", d, s), d, lambda w, _s=seed: _search("random", w, _s, top).curve()))
        zo_top = max([c for c in cands if feasible("zero_order", c)], default=None)
        if zo_top:
            tasks.append((("zero_order", d, s), d, lambda w, _s=seed, _c=zo_top: _search("zero_order", w, _s, _c).curve()))
        for c in cands:
            if feasible("paths", c):
                tasks.append((("paths", d, s, c), d, lambda w, _s=seed, _c=c: _search("paths", w, _s, _c)))
    res = run_batched(tasks, models)
    # one sample, more Heun steps for the same NFE (same noise as the searches' first candidate)
    noise = seed_batch([unit_seed("f1", d, s) for d, s in units])
    labels = torch.tensor([d for d, _ in units])
    score = lambda steps: logits_of(models["classifier"], heun_samples(models["denoiser"], noise, labels, steps), labels)
    b0 = score(STEPS_PER_CANDIDATE).tolist()  # no search: one Heun-10 sample per unit
    steps_rows, steps_vals = [], {}
    for c in cands:
        n = steps_for_nfe(c * per)
        steps_vals[c] = b0 if n == STEPS_PER_CANDIDATE else score(n).tolist()
        steps_rows.append({"candidates": c, "steps": n, "nfe": heun_nfe(n), **mean_se(steps_vals[c])})
    curves = {"more_steps": steps_rows}
    for name in ("random", "zero_order"):
        rows = []
        for c in cands:
            if name == "zero_order" and not feasible(name, c):
                continue
            vals = [best_at(res[(name, d, s)], c * per) for d, s in units]
            rows.append({"candidates": c, "nfe": c * per, **mean_se(vals)})
        curves[name] = rows
    rows = []
    for c in cands:
        if not feasible("paths", c):
            continue
        rs = [res[("paths", d, s, c)] for d, s in units]
        rows.append({"candidates": c, "budget": c * per, "nfe": rs[0].nfe, "width": rs[0].params["width"],
                     **mean_se([r.winner.score for r in rs])})
    curves["paths"] = rows
    # paired gains over the one-sample baseline (same noise) at the largest budget each reached
    gains = {}
    for name in ("random", "zero_order"):
        if curves[name]:
            c = curves[name][-1]["candidates"]
            gains[name] = {"candidates": c, **mean_se([best_at(res[(name, d, s)], c * per) - b for (d, s), b in zip(units, b0)])}
    if curves["paths"]:
        c = curves["paths"][-1]["candidates"]
        gains["paths"] = {"candidates": c, **mean_se([res[("paths", d, s, c)].winner.score - b for (d, s), b in zip(units, b0)])}
    gains["more_steps"] = {"candidates": top, **mean_se([v - b for v, b in zip(steps_vals[top], b0)])}
    return {"nfe_per_candidate": per, "units": len(units), "digits": cfg["digits"], "seeds": cfg["f1_seeds"],
            "zero_order": {"neighbours": ZO_N, "lambda": ZO_LAMBDA},
            "paths": {"paths": PATHS_N, **path_params(grid()), "sit_times": list(PATH_TIMES)},
            "no_search": {"steps": STEPS_PER_CANDIDATE, "nfe": per, **mean_se(b0)},
            "curves": curves, "paired_gain_at_max": gains, "seconds": round(time.perf_counter() - t0, 1)}


# -- F2: diversity ------------------------------------------------------------------------------------------

class Reference:
    """Real digits, their classifier features and within-class spread (the precision/recall reference)."""

    def __init__(self, classifier):
        from .data import load_digits_tensor

        self.classifier = classifier
        self.x, self.y = load_digits_tensor()
        self.feats = classifier_features(classifier, self.x)
        self.spread = within_class_spread(self.feats, self.y)


def within_class_spread(feats, labels):
    """Mean pairwise L2 distance between samples of the same class, averaged over classes."""
    labels = torch.as_tensor(labels)
    vals = []
    for c in labels.unique().tolist():
        f = feats[labels == c].double()
        if f.shape[0] > 1:
            d = torch.cdist(f, f)
            vals.append(float(d.sum() / (f.shape[0] * (f.shape[0] - 1))))
    return sum(vals) / len(vals)


def sample_metrics(x, labels, ref):
    """Precision / recall (k = PR_K) vs all real digits, FD, class accuracy, mean logit and within-class spread."""
    clamped = x.clamp(-1, 1)
    f = classifier_features(ref.classifier, clamped)
    k = min(PR_K, f.shape[0] - 1)
    pr = precision_recall(ref.feats, f, k=k)
    return {"n": int(x.shape[0]), "precision": pr["precision"], "recall": pr["recall"], "k": k,
            "fd": frechet_distance(ref.feats, f) if f.shape[0] > 2 else None,
            "accuracy": class_accuracy(ref.classifier, clamped, labels),
            "mean_logit": float(logits_of(ref.classifier, x, labels).mean()),
            "spread": within_class_spread(f, labels), "spread_real": ref.spread}


def f2_diversity(cfg, models, ref):
    t0 = time.perf_counter()
    per = heun_nfe(STEPS_PER_CANDIDATE)
    units = [(d, r) for d in cfg["digits"] for r in range(cfg["f2_per_digit"])]
    labels = torch.tensor([d for d, _ in units])
    noise = seed_batch([unit_seed("f2", d, r) for d, r in units])
    gd = GRID_DIGIT if GRID_DIGIT in cfg["digits"] else cfg["digits"][0]
    pics = {}
    x0 = heun_samples(models["denoiser"], noise, labels, STEPS_PER_CANDIDATE)
    rows = {"no_search": {"candidates": 1, "nfe": per, **sample_metrics(x0, labels, ref)}}
    pics["no search"] = x0[labels == gd]
    # the same protocol on an independent seed set: how much precision / recall move by chance alone
    noise_b = seed_batch([unit_seed("f2_rerun", d, r) for d, r in units])
    rows["no_search_rerun"] = {"candidates": 1, "nfe": per, **sample_metrics(
        heun_samples(models["denoiser"], noise_b, labels, STEPS_PER_CANDIDATE), labels, ref)}
    for c in cfg["f2_candidates"]:
        n = steps_for_nfe(c * per)
        rows[f"more_steps@{c}"] = {"candidates": c, "steps": n, "nfe": heun_nfe(n), **sample_metrics(
            heun_samples(models["denoiser"], noise, labels, n), labels, ref)}
        tasks = [((name, d, r), d, lambda w, _n=name, _s=unit_seed("f2", d, r), _c=c: _search(_n, w, _s, _c))
                 for name in ALGORITHMS if feasible(name, c) for d, r in units]
        res = run_batched(tasks, models)
        for name in ALGORITHMS:
            if not feasible(name, c):
                continue
            rs = [res[(name, d, r)] for d, r in units]
            x = torch.cat([r.top_k_samples["latents"][:1] for r in rs])
            rows[f"{name}@{c}"] = {"candidates": c, "nfe": rs[0].nfe, **sample_metrics(x, labels, ref)}
            if c == max(cfg["f2_candidates"]):
                pics[f"{name}@{c}"] = x[labels == gd]
    return {"winners_per_algorithm": len(units), "per_digit": cfg["f2_per_digit"], "candidates": cfg["f2_candidates"],
            "rows": rows, "grid_digit": gd, "pictures": pics, "seconds": round(time.perf_counter() - t0, 1)}


# -- F3: the self-supervised verifier --------------------------------------------------------------------

class ClassifierFeatureMap(torch.nn.Module):
    """IMAGE [B, 8, 8, 1] -> the classifier's 128-d penultimate features (the toy world's DINO/CLIP stand-in)."""

    def __init__(self, classifier):
        super().__init__()
        self.classifier = classifier

    @torch.no_grad()
    def forward(self, images):
        return self.classifier.features(from_images(images))


@torch.no_grad()
def trajectory(world, noise):
    """Run the world's Heun ODE on ``noise`` keeping the x0 prediction at every grid sigma; returns
    (final raw x, [(sigma, denoised)])."""
    sig = world.sigmas.tolist()
    x, preds = noise * sig[0], []
    for i in range(len(sig) - 1):
        x, den = STEPS[world.method](world.model, x, sig[i], sig[i + 1])
        preds.append((sig[i], den))
    return x, preds


def f3_self_supervised(cfg, models):
    t0 = time.perf_counter()
    ssl = SelfSupervisedVerifier(ClassifierFeatureMap(models["classifier"]), weights_id="toyworld/classifier features")
    n = cfg["f3_candidates"]
    per_digit, pooled_c, pooled_s, pooled_d, select, by_sigma = {}, [], [], [], [], {}
    sizes = [k for k in (1, 2, 4, 8, 16, 32, 64, 128) if k <= n]
    for d in cfg["digits"]:
        world = ToyWorld(d, steps=STEPS_PER_CANDIDATE, teacher=models["teacher"], verifier=models["verifier"])
        rhos = []
        for p in cfg["f3_pools"]:
            base = unit_seed("f3", d, p)
            noise = seed_batch(range(base, base + n))
            batch = world.sample(noise)  # the adapter's Batch: samples + early (x0 at SiT time 0.4)
            cls = world.score(batch)
            s = ssl.score(batch.samples, early=batch.early)
            rhos.append(spearman(s, cls))
            pooled_c += cls.tolist()
            pooled_s += s.tolist()
            pooled_d += [d] * n
            # best-of-k chosen by each verifier, read with the classifier (nested prefixes of the pool)
            select.append({k: (float(cls[:k][s[:k].argmax()]), float(cls[:k].max()), float(cls[:k].mean())) for k in sizes})
            # the same correlation with the x0 prediction taken at every grid sigma instead
            xf, preds = trajectory(world, noise)
            for sigma, den in preds:
                v = ssl.score(to_images(xf), early=to_images(den))
                by_sigma.setdefault(round(float(sigma), 4), []).append((spearman(v, cls), float(v.mean())))
        ok = [r for r in rhos if r is not None]
        per_digit[str(d)] = sum(ok) / len(ok) if ok else None
    vals = [v for v in per_digit.values() if v is not None]
    sel = {}
    for k in sizes:
        sel[str(k)] = {"ssl_selected": mean_se([s[k][0] for s in select])["mean"],
                       "classifier_selected": mean_se([s[k][1] for s in select])["mean"],
                       "random_pick": mean_se([s[k][2] for s in select])["mean"]}
    sig_rows = []
    for sigma, rs in sorted(by_sigma.items(), reverse=True):
        ok = [r for r, _ in rs if r is not None]
        sig_rows.append({"sigma": sigma, "sit_time": round(sigma_to_rf_time(sigma), 4),
                         "is_adapter_early": sigma == round(_early_grid_sigma(), 4),
                         "rho_mean": sum(ok) / len(ok) if ok else None, "ssl_mean": sum(m for _, m in rs) / len(rs)})
    return {"candidates_per_pool": n, "pools": len(cfg["f3_pools"]), "digits": cfg["digits"],
            "early": {"target_sit_time": 0.4, "grid_sigma": _early_grid_sigma(), "grid_sit_time": sigma_to_rf_time(_early_grid_sigma())},
            "spearman_per_digit": per_digit, "spearman_mean_over_digits": sum(vals) / len(vals) if vals else None,
            "spearman_pooled": spearman(pooled_s, pooled_c), "selection": sel, "by_early_sigma": sig_rows,
            "ssl_range": [min(pooled_s), max(pooled_s)], "points": list(zip(pooled_s, pooled_c, pooled_d)),
            "seconds": round(time.perf_counter() - t0, 1)}


def _early_grid_sigma():
    """The grid sigma whose x0 prediction ToyWorld hands over as Batch.early (the first at or below SiT time 0.4)."""
    sig = grid().tolist()
    return sig[early_prediction_call([sigma_to_rf_time(s) for s in sig[:-1]], rule="first_below")[0]]


# -- F4: sCM ------------------------------------------------------------------------------------------------

def f4_scm(cfg, models, ref):
    """FD of the committed sCM student at 1 and 2 steps (2 steps at the paper's t_mid 1.1 and at the t_mid its
    distillation selected with) against the teacher's Heun, on the toy FD protocol (toyworld/evaluate.py)."""
    t0 = time.perf_counter()
    path = WEIGHTS_DIR / "student.safetensors"
    if cfg["f4_per_class"] <= 0:
        return {"status": "skipped", "reason": "this configuration does not measure F4"}
    if not path.is_file():
        return {"status": "pending", "reason": "no sCM student committed yet (toyworld/weights/student.safetensors missing)"}
    from .distill_student import student_samples
    from .evaluate import FDReference, balanced_labels, fd_report, sample_noise
    from .load import load_student

    net = load_student(path)
    info = getattr(net, "weights_info", {}) or {}
    t_sel = float(info.get("args", {}).get("t_mid", 1.1))
    fdref = FDReference(models["classifier"], ref.x)
    labels = balanced_labels(cfg["f4_per_class"])
    samplers = [(f"teacher Heun-{n}", heun_nfe(n), lambda seed, _n=n: heun_samples(
        models["denoiser"], sample_noise(labels.numel(), seed), labels, _n)) for n in cfg["f4_teacher_steps"]]
    samplers.append(("student sCM 1 step", 1, lambda seed: student_samples(net, labels, 1, seed=seed)))
    for tm in sorted({1.1, t_sel}, reverse=True):
        samplers.append((f"student sCM 2 steps (t_mid {tm:g})", 2, lambda seed, _t=tm: student_samples(net, labels, 2, _t, seed=seed)))
    table = []
    for name, nfe, fn in samplers:
        rows = [fd_report(fn(seed), labels, fdref) for seed in cfg["f4_seeds"]]
        table.append({"sampler": name, "nfe": nfe, **{k: mean_se([r[k] for r in rows])["mean"] for k in rows[0]}})
    # how far the distillation got: its own FD monitor (selection seeds, clamped) and the samples it saw
    args, sel = info.get("args", {}), info.get("selected") or {}
    training = {"iterations": args.get("iterations"), "batch": args.get("batch"), "lr": args.get("lr"),
                "selected_iteration": sel.get("iteration"),
                "samples_seen_at_selection": (sel.get("iteration") or 0) * (args.get("batch") or 0) or None,
                "monitor": [{"iteration": h.get("iteration"), "fd1_clamped": h.get("fd1_clamped"), "fd2_clamped": h.get("fd2_clamped")}
                            for h in info.get("history", [])]}
    return {"status": "measured", "student": path.name, "student_t_mid": t_sel, "seeds": cfg["f4_seeds"],
            "samples": int(labels.numel()), "table": table, "training": training, "seconds": round(time.perf_counter() - t0, 1)}


# -- claims ---------------------------------------------------------------------------------------------------

def claims(report):
    """Each paper claim with the toy-world number it is checked against and a verdict by a rule fixed in advance."""
    out = []
    f1, f2, f3, f4 = (report.get(k) for k in ("f1", "f2", "f3", "f4"))
    if f1 and f1.get("paired_gain_at_max"):
        g = f1["paired_gain_at_max"]
        for name in ALGORITHMS:
            if name in g:
                ok = g[name]["mean"] > 2 * g[name]["se"]
                out.append({"id": f"F1-{name}", "claim": f"{name} search raises the verifier score as NFE grows (Ma et al. Figs. 3, 11)",
                            "measured": f"+{g[name]['mean']:.2f} +- {g[name]['se']:.2f} logit over one Heun-10 sample at "
                                        f"{g[name]['candidates']} candidates", "holds": bool(ok),
                            "rule": "paired gain > 2 standard errors"})
        last = {n: f1["curves"][n][-1] for n in ALGORITHMS if f1["curves"].get(n)}
        if "random" in last and len(last) > 1:
            out.append({"id": "F1-order", "claim": "random search is the strongest algorithm at equal NFE (Ma et al. Table 2, text-to-image)",
                        "measured": ", ".join(f"{n} {r['mean']:.2f} at {r['nfe']} NFE" for n, r in last.items()),
                        "holds": bool(all(last["random"]["mean"] >= r["mean"] for r in last.values())),
                        "rule": "random's mean logit at the largest budget >= every other algorithm's"})
        s, best = g["more_steps"], max(g[n]["mean"] for n in ALGORITHMS if n in g)
        out.append({"id": "F1-steps", "claim": "more denoising steps plateau; search keeps scaling beyond them (Ma et al., title and Sec. 1)",
                    "measured": f"more steps: {s['mean']:+.2f} +- {s['se']:.2f}; best search: {best:+.2f} at equal NFE",
                    "holds": bool(best > s["mean"] + 2 * s["se"]), "rule": "best search gain > steps gain + 2 se"})
    if f2:
        rows, c = f2["rows"], max(f2["candidates"])
        ns, rr = rows["no_search"], rows["no_search_rerun"]
        noise_p, noise_r = abs(ns["precision"] - rr["precision"]), abs(ns["recall"] - rr["recall"])
        d = {n: (rows[f"{n}@{c}"]["precision"] - ns["precision"], rows[f"{n}@{c}"]["recall"] - ns["recall"])
             for n in ALGORITHMS if f"{n}@{c}" in rows}
        if "random" in d:
            dp, dr = d["random"]
            out.append({"id": "F2-hacking", "claim": "verifier hacking: search raises precision and lowers recall (Ma et al. Fig. 13)",
                        "measured": f"random@{c}: precision {dp:+.3f}, recall {dr:+.3f} (rerun noise {noise_p:.3f} / {noise_r:.3f})",
                        "holds": bool(dp >= 0 and dr < -noise_r), "rule": "precision not down and recall down by more than the rerun difference"})
            others = [n for n in d if n != "random"]
            if others:
                ok = all(d[n][1] > dr for n in others)
                small = min(f2["candidates"])
                extra = "" if small == c else "; at {}: ".format(small) + ", ".join(
                    f"{n} {rows[f'{n}@{small}']['recall'] - ns['recall']:+.3f}" for n in ALGORITHMS if f"{n}@{small}" in rows)
                out.append({"id": "F2-ease", "claim": "zero-order and path search ease the diversity loss of random search (Ma et al., ImageNet results)",
                            "measured": f"recall change at {c} candidates: " + ", ".join(f"{n} {d[n][1]:+.3f}" for n in d) + extra,
                            "holds": bool(ok), "rule": "recall drop of every other algorithm smaller than random's"})
    if f3:
        rho = f3["spearman_mean_over_digits"]
        out.append({"id": "F3-corr", "claim": "the self-supervised verifier correlates strongly with the classifier logit (Ma et al. Fig. 5)",
                    "measured": f"Spearman {rho:.2f} within digit (pooled {f3['spearman_pooled']:.2f})" if rho is not None else "undefined",
                    "holds": bool(rho is not None and rho >= 0.5), "rule": "mean within-digit Spearman >= 0.5"})
        k = max(f3["selection"], key=int)
        s = f3["selection"][k]
        out.append({"id": "F3-search", "claim": "searching with the self-supervised verifier raises the supervised score (Ma et al. Fig. 5)",
                    "measured": f"best-of-{k} by SSL: logit {s['ssl_selected']:.2f} vs random pick {s['random_pick']:.2f} "
                                f"(classifier-selected {s['classifier_selected']:.2f})",
                    "holds": bool(s["ssl_selected"] > s["random_pick"]), "rule": "SSL-selected logit above the random pick"})
    if f4:
        if f4.get("status") != "measured":
            out.append({"id": "F4", "claim": "2-step sCM within ~10% of the teacher's FD (Lu & Song Tables 1-2)",
                        "measured": f4.get("status"), "holds": None, "rule": "student 2-step FD <= 1.1 x teacher's best FD"})
        else:
            teach = [r for r in f4["table"] if r["sampler"].startswith("teacher")]
            ref_t = max(teach, key=lambda r: r["nfe"])
            two = [r for r in f4["table"] if r["nfe"] == 2]
            # the verdict uses the t_mid the distillation selected on its own seeds, not the best on these
            best = next(r for r in two if r["sampler"].endswith(f"(t_mid {f4['student_t_mid']:g})"))
            one = next(r for r in f4["table"] if r["nfe"] == 1)
            out.append({"id": "F4", "claim": "2-step sCM within ~10% of the teacher's FD (Lu & Song Tables 1-2)",
                        "measured": "; ".join(f"{r['sampler']}: FD {r['fd_clamped']:.2f}" for r in two) +
                                    f" vs {ref_t['sampler']} {ref_t['fd_clamped']:.2f} (clamped; 1 step {one['fd_clamped']:.2f})",
                        "holds": bool(best["fd_clamped"] <= 1.1 * ref_t["fd_clamped"]),
                        "rule": "student 2-step FD <= 1.1 x the teacher's FD at its most steps"})
            out.append({"id": "F4-steps", "claim": "2 sCM steps beat 1 (Lu & Song Table 1)",
                        "measured": f"1 step {one['fd_clamped']:.2f}, 2 steps {best['fd_clamped']:.2f} (clamped FD)",
                        "holds": bool(best["fd_clamped"] < one["fd_clamped"]), "rule": "2-step FD (student's t_mid) below the 1-step FD"})
    return out


# -- plots (PIL) ----------------------------------------------------------------------------------------------

PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
GRID_DIGIT = 3  # the digit whose winners the F2 picture shows (the first digit measured when 3 is not)


def chart(series, title, xlabel, ylabel, logx=False, width=720, height=440, label_points=False):
    """PIL chart of [{"name", "points": [(x, y)], "dashed"?, "line"?}]: lines (or labelled points) with a legend."""
    from PIL import Image, ImageDraw

    from ..search.report import _font

    pts = [p for s in series for p in s["points"] if p[1] is not None]
    fx = (lambda v: math.log2(v)) if logx else (lambda v: v)
    errs = [e for s in series for e in s.get("err", [])]
    xs = [fx(p[0]) for p in pts]
    ys = [p[1] for p in pts] + [p[1] + e for p, e in zip(pts, errs)] + [p[1] - e for p, e in zip(pts, errs)]
    x_lo, x_hi = min(xs), max(xs)
    y_lo, y_hi = min(ys), max(ys)
    if x_hi - x_lo < 1e-9:
        x_lo, x_hi = x_lo - 1, x_hi + 1
    if y_hi - y_lo < 1e-9:
        y_lo, y_hi = y_lo - 0.5, y_hi + 0.5
    mx, my = (x_hi - x_lo) * 0.05, (y_hi - y_lo) * 0.08
    x_lo, x_hi, y_lo, y_hi = x_lo - mx, x_hi + mx, y_lo - my, y_hi + my
    L, R, T, B = 64, 190, 30, 46
    img = Image.new("RGB", (width, height), "white")
    d, font = ImageDraw.Draw(img), _font(12)
    px = lambda v: L + (fx(v) - x_lo) / (x_hi - x_lo) * (width - L - R)
    py = lambda v: height - B - (v - y_lo) / (y_hi - y_lo) * (height - T - B)
    d.rectangle([L, T, width - R, height - B], outline=(160, 160, 160))
    for k in range(5):
        yv = y_lo + (y_hi - y_lo) * k / 4
        d.line([L, py(yv), width - R, py(yv)], fill=(235, 235, 235))
        d.text((4, py(yv) - 7), f"{yv:.3g}", fill=(60, 60, 60), font=font)
    if logx:  # powers of two inside the range
        ticks = [2.0 ** k for k in range(math.ceil(x_lo), math.floor(x_hi) + 1)]
    else:
        ticks = [x_lo + (x_hi - x_lo) * k / 4 for k in range(5)]
    for t in ticks:
        d.line([px(t), height - B, px(t), height - B + 4], fill=(120, 120, 120))
        d.text((px(t) - 10, height - B + 6), str(int(t)) if logx else f"{t:.3g}", fill=(60, 60, 60), font=font)
    d.text(((width - R) // 2 - 30, height - 18), xlabel + (" (log scale)" if logx else ""), fill=(0, 0, 0), font=font)
    d.text((L, 8), title, fill=(0, 0, 0), font=font)
    d.text((4, 14), ylabel, fill=(90, 90, 90), font=_font(10))
    for k, s in enumerate(series):
        col = s.get("color", PALETTE[k % len(PALETTE)])
        p = [(px(x), py(y)) for x, y in s["points"] if y is not None]
        if s.get("line", True) and len(p) > 1:
            if s.get("dashed"):
                for a, b in zip(p, p[1:]):
                    n = max(1, int(math.dist(a, b) // 8))
                    for j in range(0, n, 2):
                        d.line([(a[0] + (b[0] - a[0]) * j / n, a[1] + (b[1] - a[1]) * j / n),
                                (a[0] + (b[0] - a[0]) * (j + 1) / n, a[1] + (b[1] - a[1]) * (j + 1) / n)], fill=col, width=2)
            else:
                d.line(p, fill=col, width=2)
        for j, q in enumerate(p):
            if s.get("err"):
                e = s["err"][j]
                y0, y1 = py(s["points"][j][1] - e), py(s["points"][j][1] + e)
                d.line([q[0], y0, q[0], y1], fill=col, width=1)
                d.line([q[0] - 3, y0, q[0] + 3, y0], fill=col)
                d.line([q[0] - 3, y1, q[0] + 3, y1], fill=col)
            r = s.get("radius", 3)
            d.ellipse([q[0] - r, q[1] - r, q[0] + r, q[1] + r], fill=col)
            if label_points:
                d.text((q[0] + 5, q[1] - 6), s["name"], fill=col, font=_font(10))
        d.rectangle([width - R + 10, T + 4 + 16 * k, width - R + 20, T + 14 + 16 * k], fill=col)
        d.text((width - R + 25, T + 2 + 16 * k), s["name"], fill=(0, 0, 0), font=font)
    return img


def winners_grid(rows, title, cell=40, label_w=120):
    """Rows of 8x8 samples (raw model space) with a label each, scaled up with nearest neighbour."""
    from PIL import Image, ImageDraw

    from ..search.report import _font, to_pil

    cols = max(x.shape[0] for x in rows.values())
    pad = 4
    img = Image.new("RGB", (label_w + cols * (cell + pad) + pad, 28 + len(rows) * (cell + pad) + pad), "white")
    d = ImageDraw.Draw(img)
    d.text((pad, 6), title, fill=(0, 0, 0), font=_font(12))
    for r, (name, x) in enumerate(rows.items()):
        y0 = 28 + r * (cell + pad)
        d.text((pad, y0 + cell // 2 - 7), name, fill=(0, 0, 0), font=_font(12))
        for k, im in enumerate(to_images(x)):
            img.paste(to_pil(im).resize((cell, cell), Image.NEAREST), (label_w + pad + k * (cell + pad), y0))
    return img


def draw_plots(report, out):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    f1 = report.get("f1")
    if f1:
        c = f1["curves"]
        pe = lambda rows: {"points": [(r["nfe"], r["mean"]) for r in rows], "err": [r["se"] for r in rows]}
        series = [{"name": "random search", **pe(c["random"])},
                  {"name": f"zero-order ZO-{ZO_N}", **pe(c["zero_order"])},
                  {"name": f"paths Paths-{PATHS_N}", **pe(c["paths"])},
                  {"name": "1 sample, more steps", **pe(c["more_steps"]), "dashed": True}]
        chart([s for s in series if s["points"]], f"F1: winner's classifier logit vs NFE (mean +- se of {f1['units']} searches)",
              "NFE per final sample", "logit", logx=True).save(out / "f1_scaling.png")
        files.append("f1_scaling.png")
    f2 = report.get("f2")
    if f2:
        series = []
        for key, r in f2["rows"].items():
            series.append({"name": key, "points": [(r["recall"], r["precision"])], "line": False, "radius": 5})
        chart(series, f"F2: precision vs recall of {f2['winners_per_algorithm']} winners (k-NN, classifier features)",
              "recall (diversity)", "precision").save(out / "f2_precision_recall.png")
        files.append("f2_precision_recall.png")
        # the trade-off: recall against how far each method raised the verifier score
        rows = f2["rows"]
        base = (rows["no_search"]["mean_logit"], rows["no_search"]["recall"])
        series = [{"name": name, "points": [base] + [(rows[f"{name}@{c}"]["mean_logit"], rows[f"{name}@{c}"]["recall"])
                                                      for c in f2["candidates"] if f"{name}@{c}" in rows]}
                  for name in ALGORITHMS + ("more_steps",)]
        chart(series, "F2: recall vs mean winner logit (from no search through each budget)", "mean classifier logit of the winners",
              "recall").save(out / "f2_recall_vs_logit.png")
        files.append("f2_recall_vs_logit.png")
        if f2.get("pictures"):
            winners_grid(f2["pictures"], f"F2: the {f2['per_digit']} winners for digit {f2['grid_digit']}, one row per method"
                         ).save(out / "f2_winners.png")
            files.append("f2_winners.png")
    f3 = report.get("f3")
    if f3:
        pts = f3["points"]
        a = chart([{"name": f"digit {k}", "points": [(s, c) for s, c, d in pts if d == k], "line": False, "radius": 2}
                   for k in sorted({d for _, _, d in pts})],
                  f"F3: self-supervised score vs classifier logit (Spearman {f3['spearman_mean_over_digits']:.2f} within digit)",
                  "self-supervised score cos(phi(x0 at SiT 0.4), phi(x))", "logit", width=720)
        a.save(out / "f3_ssl_vs_logit.png")
        files.append("f3_ssl_vs_logit.png")
        rows = [r for r in f3["by_early_sigma"] if r["rho_mean"] is not None]
        chart([{"name": "Spearman", "points": [(r["sit_time"], r["rho_mean"]) for r in rows]}],
              "F3: within-digit Spearman vs the SiT time of the early x0 prediction", "SiT time of the early prediction",
              "Spearman rho").save(out / "f3_rho_by_time.png")
        files.append("f3_rho_by_time.png")
    return files


# -- the whole run --------------------------------------------------------------------------------------------

def run_fidelity(config="quick", out=None, parts=("f1", "f2", "f3", "f4"), models=None, threads=1, merge=False):
    """Measure F1-F4 for the named configuration (or a config dict); write fidelity.json and PNGs to ``out``.

    ``merge``: when ``out`` already holds a fidelity.json of the same configuration, keep its parts that this
    run does not measure (e.g. add F4 once the student is committed: ``parts=("f4",), merge=True``).
    ``threads``: torch intra-op threads. 1 by default: the network is small and the batched searches call
    torch from many Python threads; on a shared 2-core machine 2 intra-op threads made Heun sampling of
    200 digits 28x slower in wall time (115 s vs 4.2 s, OpenMP workers spinning against each other)."""
    cfg = CONFIGS[config] if isinstance(config, str) else dict(config)
    name = config if isinstance(config, str) else "custom"
    bad = [p for p in parts if p not in ("f1", "f2", "f3", "f4")]
    if bad or not parts:
        raise ValueError(f"parts must be a non-empty subset of f1, f2, f3, f4, got {list(parts)}")
    require_scikit_learn()
    old = {}
    if merge and out is not None and (Path(out) / "fidelity.json").is_file():
        old = json.loads((Path(out) / "fidelity.json").read_text())
        if old.get("config") != name or old.get("settings") != json.loads(json.dumps(cfg)):
            raise ValueError(f"{Path(out) / 'fidelity.json'} was measured with configuration {old.get('config')!r}, not {name!r}; "
                             "merge only into a report of the same configuration")
    if threads:
        torch.set_num_threads(int(threads))
    t0, c0 = time.perf_counter(), time.process_time()
    models = models or load_models()
    ref = Reference(models["classifier"])
    report = {"config": name, "settings": cfg, "nfe_per_candidate": heun_nfe(STEPS_PER_CANDIDATE), "torch": torch.__version__,
              "threads": torch.get_num_threads()}
    steps = {"f1": lambda: f1_scaling(cfg, models), "f2": lambda: f2_diversity(cfg, models, ref),
             "f3": lambda: f3_self_supervised(cfg, models), "f4": lambda: f4_scm(cfg, models, ref)}
    for p in parts:
        log(f"fidelity: {p} ...")
        report[p] = steps[p]()
        log(f"fidelity: {p} done in {report[p].get('seconds', 0)} s")
    report["seconds"] = round(time.perf_counter() - t0, 1)
    report["cpu_seconds"] = round(time.process_time() - c0, 1)  # wall time depends on what else runs
    report["loadavg_1m"] = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        report["plots"] = draw_plots(report, out)
    if report.get("f3"):
        report["f3"].pop("points", None)  # every candidate's score pair: plotted, too long for the JSON
    if report.get("f2"):
        report["f2"].pop("pictures", None)  # samples, drawn as f2_winners.png
    kept = [p for p in ("f1", "f2", "f3", "f4") if p not in parts and p in old]
    if kept:
        for p in kept:
            report[p] = old[p]
        report["plots"] = sorted(set(report.get("plots", [])) | set(old.get("plots", [])))
        report["merged"] = {"kept_from_previous_run": kept}  # each part keeps its own "seconds"
    report["claims"] = claims(report)
    if out is not None:
        (out / "fidelity.json").write_text(json.dumps(report, indent=1))
    return report


def summary_text(report):
    """The claims as a Markdown table (what the README section shows)."""
    lines = ["| id | claim | toy-world measurement | holds? |", "|---|---|---|---|"]
    for c in report["claims"]:
        h = {True: "yes", False: "no", None: "pending"}[c["holds"]]
        lines.append(f"| {c['id']} | {c['claim']} | {c['measured']} | {h} |")
    return "\n".join(lines)


def markdown_tables(report):
    """The measured numbers as Markdown tables (F1 curve, F2 sets, F3 sweep, F4), generated from the report."""
    out = []
    f1 = report.get("f1")
    if f1:
        c = f1["curves"]
        by = {n: {r["candidates"]: r for r in c[n]} for n in ("random", "zero_order", "paths", "more_steps")}
        out += [f"F1: mean winner logit +- se over {f1['units']} searches (digits x seeds); NFE per final sample",
                "", "| candidates | NFE | random | zero-order ZO-4 | paths Paths-2 (NFE) | 1 sample, more steps (steps) |",
                "|---|---|---|---|---|---|"]
        cell = lambda r: "-" if r is None else f"{r['mean']:.2f} +- {r['se']:.2f}"
        for k in sorted(by["random"]):
            p, m = by["paths"].get(k), by["more_steps"].get(k)
            out.append(f"| {k} | {k * f1['nfe_per_candidate']} | {cell(by['random'].get(k))} | {cell(by['zero_order'].get(k))} | "
                       f"{cell(p)}{'' if p is None else ' (' + str(p['nfe']) + ')'} | {cell(m)}{'' if m is None else ' (' + str(m['steps']) + ')'} |")
        out.append("")
    f2 = report.get("f2")
    if f2:
        out += [f"F2: {f2['winners_per_algorithm']} samples per set ({f2['per_digit']} per digit, each winner from its own search) vs the 1797 real digits",
                "", "| set | NFE | precision | recall | FD | class accuracy | mean logit | within-digit spread |", "|---|---|---|---|---|---|---|---|"]
        for k, r in f2["rows"].items():
            fd = "-" if r["fd"] is None else f"{r['fd']:.1f}"
            out.append(f"| {k} | {r['nfe']} | {r['precision']:.3f} | {r['recall']:.3f} | {fd} | {r['accuracy']:.3f} | "
                       f"{r['mean_logit']:.2f} | {r['spread']:.1f} |")
        out.append(f"| real digits | - | - | - | - | - | - | {next(iter(f2['rows'].values()))['spread_real']:.1f} |")
        out.append("")
    f3 = report.get("f3")
    if f3:
        rows = f3["by_early_sigma"]
        out += ["F3: within-digit Spearman (SSL score vs classifier logit) with the early x0 prediction taken at each grid point",
                "", "| SiT time of the early prediction | " + " | ".join(
                    (f"**{r['sit_time']:.2f}** (adapter)" if r["is_adapter_early"] else f"{r['sit_time']:.2f}") for r in rows) + " |",
                "|---|" + "---|" * len(rows),
                "| Spearman | " + " | ".join("-" if r["rho_mean"] is None else f"{r['rho_mean']:.2f}" for r in rows) + " |",
                "| mean SSL score | " + " | ".join(f"{r['ssl_mean']:.3f}" for r in rows) + " |", ""]
        sel = f3["selection"]
        out += ["F3: classifier logit of the best-of-k chosen by each verifier", "",
                "| k | " + " | ".join(sel) + " |", "|---|" + "---|" * len(sel)]
        for key, name in (("ssl_selected", "self-supervised"), ("classifier_selected", "classifier"), ("random_pick", "random pick (mean)")):
            out.append(f"| {name} | " + " | ".join(f"{v[key]:.2f}" for v in sel.values()) + " |")
        out.append("")
    f4 = report.get("f4")
    if f4 and f4.get("status") == "measured":
        out += [f"F4: FD over {f4['samples']} samples (200 per digit), mean of seeds {f4['seeds']}", "",
                "| sampler | NFE | FD clamped | FD raw | class accuracy | precision | recall |", "|---|---|---|---|---|---|---|"]
        for r in f4["table"]:
            out.append(f"| {r['sampler']} | {r['nfe']} | {r['fd_clamped']:.2f} | {r['fd_raw']:.2f} | {r['accuracy']:.3f} | "
                       f"{r['precision']:.3f} | {r['recall']:.3f} |")
        out.append("")
    return "\n".join(out)
