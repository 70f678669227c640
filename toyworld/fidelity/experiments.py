"""The four measurements of the fidelity study (see the package's docstring): F1 scaling, F2 diversity, F3 the
self-supervised verifier, F4 sCM. Every search is ``toyworld.search.run_search``, the demo's; many run side by
side through ``scheduler.run_batched``."""

import time

import torch

from ...samplers.ode import STEPS
from ...samplers.schedules import EARLY_TIME, early_prediction_call, sigma_to_rf_time
from ...search.evaluate import LATENT
from ...verifiers.features import SelfSupervisedVerifier
from ..load import WEIGHTS_DIR
from ..metrics import class_accuracy, classifier_features, frechet_distance, precision_recall
from ..search import run_search
from ..world import ToyWorld, from_images, to_images
from .config import (ALGORITHMS, GRID_DIGIT, PATH_TIMES, PATHS_N, PR_K, SEARCH_CHUNK, STEPS_PER_CANDIDATE, ZO_LAMBDA, ZO_N,
                     feasible, grid, heun_nfe, path_params, steps_for_nfe, unit_seed)
from .sampling import heun_samples, logits_of, seed_batch
from .scheduler import run_batched
from .stats import best_at, mean_se, spearman


def _search(name, world, seed, candidates):
    """One search of the pack at a budget of ``candidates`` Heun-10 candidates (paths: the widest that fits)."""
    return run_search(world, name, seed=seed, candidates=candidates, top_k=1, chunk_size=SEARCH_CHUNK, neighbours=ZO_N,
                      lam=ZO_LAMBDA, paths=PATHS_N, path_times=PATH_TIMES)


# -- F1: scaling ------------------------------------------------------------------------------------------

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
        from ..data import load_digits_tensor

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
            x = torch.cat([r.top_k_samples[LATENT][:1] for r in rs])
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
            "early": {"target_sit_time": EARLY_TIME, "grid_sigma": _early_grid_sigma(), "grid_sit_time": sigma_to_rf_time(_early_grid_sigma())},
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
    from ..distill_student import student_samples
    from ..evaluate import FDReference, balanced_labels, fd_report, sample_noise
    from ..load import load_student

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

