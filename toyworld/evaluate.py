"""Measure toy-world samplers: FD (classifier features, clamped and raw), precision/recall and class accuracy.

Protocol (toyworld/README.md): 2000 samples, 200 per class, against all 1797 real digits; FD in the
classifier's 128-d penultimate features. Clamping to [-1, 1] is what an image output does, raw
is what the model produces; both are reported. Reused by benchmarks:

    rows = teacher_report(steps=(10, 25, 50))
    python -m noise_search.toyworld.evaluate --steps 10 25 50 --seeds 0 1
"""

import argparse
import time

import torch

from ..samplers.ode import SAMPLERS, sampler_nfe
from ..samplers.schedules import karras_sigmas
from .data import IMAGE_SHAPE, NUM_CLASSES, load_digits_tensor
from .metrics import class_accuracy, classifier_features, frechet_distance, precision_recall


def balanced_labels(per_class=200, num_classes=NUM_CLASSES):
    """[0]*per_class + [1]*per_class + ...: the class-balanced label set of the FD protocol."""
    return torch.arange(num_classes).repeat_interleave(int(per_class))


def sample_noise(n, seed):
    """Unit Gaussian noise [n, 1, 8, 8] from a CPU generator seeded with ``seed``."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.randn((int(n),) + IMAGE_SHAPE, generator=g)


@torch.no_grad()
def sample_classes(denoiser, labels, steps, method="heun", seed=0, batch_size=1000, sigma_min=None, sigma_max=None):
    """Sample one image per label with a deterministic ODE sampler on EDM's Karras grid.

    Returns raw samples [N, 1, 8, 8] (not clamped). ``denoiser`` is ``model(x, sigma, class_labels=...)``.
    """
    if method not in SAMPLERS:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(SAMPLERS)}")
    labels = torch.as_tensor(labels).long().flatten()
    s_min = getattr(denoiser, "sigma_min", 0.002) if sigma_min is None else sigma_min
    s_max = getattr(denoiser, "sigma_max", 80.0) if sigma_max is None else sigma_max
    sigmas = karras_sigmas(int(steps), s_min, s_max)
    noise = sample_noise(labels.numel(), seed)
    out = []
    for i in range(0, labels.numel(), batch_size):
        x = noise[i: i + batch_size] * sigmas[0]
        out.append(SAMPLERS[method](denoiser, x, sigmas, extra_args={"class_labels": labels[i: i + batch_size]}))
    return torch.cat(out)


class FDReference:
    """Classifier + real-image feature statistics, computed once and reused for many reports."""

    def __init__(self, classifier=None, real=None):
        if classifier is None:
            from .load import load_classifier

            classifier = load_classifier()
        self.classifier = classifier.eval()
        self.real = load_digits_tensor()[0] if real is None else real
        self.real_feats = classifier_features(self.classifier, self.real)


def fd_report(samples, labels=None, reference=None, pr_k=3):
    """Metrics of samples [N, 1, 8, 8]: fd_clamped, fd_raw, accuracy (if labels), precision/recall (clamped)."""
    ref = reference or FDReference()
    clamped = samples.clamp(-1, 1)
    f_clamped = classifier_features(ref.classifier, clamped)
    out = {"fd_clamped": frechet_distance(ref.real_feats, f_clamped),
           "fd_raw": frechet_distance(ref.real_feats, classifier_features(ref.classifier, samples))}
    if labels is not None:
        out["accuracy"] = class_accuracy(ref.classifier, clamped, labels)
    if pr_k:
        out.update(precision_recall(ref.real_feats, f_clamped, k=pr_k))
    return out


def teacher_report(denoiser=None, steps=(10, 25, 50), method="heun", seeds=(0,), per_class=200, cfg_scale=1.0,
                   reference=None, log=print):
    """One row per (steps, seed): {"sampler", "steps", "nfe", "seed", "cfg", "fd_clamped", "fd_raw", "accuracy",
    "precision", "recall", "seconds"}. ``denoiser`` defaults to the committed teacher at ``cfg_scale``;
    nfe counts network passes per sample (Heun: 2N - 1, times 2 with CFG)."""
    if denoiser is None:
        from .load import teacher_denoiser

        denoiser = teacher_denoiser(cfg_scale)
    ref = reference or FDReference()
    labels = balanced_labels(per_class)
    rows = []
    for n in steps:
        for seed in seeds:
            t0 = time.perf_counter()
            x = sample_classes(denoiser, labels, n, method, seed)
            secs = time.perf_counter() - t0
            nfe = sampler_nfe(method, karras_sigmas(int(n), 0.002, 80.0)) * getattr(denoiser, "cfg_multiplier", 1)
            row = {"sampler": method, "steps": int(n), "nfe": int(nfe), "seed": int(seed),
                   "cfg": float(getattr(denoiser, "cfg_scale", 1.0)), **fd_report(x, labels, ref), "seconds": round(secs, 2)}
            rows.append(row)
            if log:
                log(format_row(row))
    return rows


def format_row(r):
    return (f"{r['sampler']} {r['steps']:>3} steps  NFE {r['nfe']:>3}  seed {r['seed']}  cfg {r['cfg']:g}  "
            f"FD clamped {r['fd_clamped']:.2f}  raw {r['fd_raw']:.2f}  acc {r['accuracy']:.4f}  "
            f"P {r['precision']:.3f}  R {r['recall']:.3f}  ({r['seconds']:.1f} s)")


def markdown_table(rows):
    lines = ["| sampler | steps | NFE | cfg | seed | FD clamped | FD raw | class accuracy | precision | recall |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['sampler']} | {r['steps']} | {r['nfe']} | {r['cfg']:g} | {r['seed']} | {r['fd_clamped']:.2f} | "
                     f"{r['fd_raw']:.2f} | {r['accuracy']:.4f} | {r['precision']:.3f} | {r['recall']:.3f} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m noise_search.toyworld.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--teacher", default=None, help="teacher .safetensors (default: the committed one)")
    p.add_argument("--classifier", default=None, help="classifier .safetensors (default: the committed one)")
    p.add_argument("--steps", type=int, nargs="+", default=[10, 25, 50])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--method", default="heun", choices=sorted(SAMPLERS))
    p.add_argument("--cfg", type=float, default=1.0)
    p.add_argument("--per-class", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from .load import load_classifier, teacher_denoiser

    ref = FDReference(load_classifier(args.classifier))
    rows = teacher_report(teacher_denoiser(args.cfg, args.teacher), args.steps, args.method, args.seeds, args.per_class,
                          reference=ref)
    print(markdown_table(rows))
    return rows


if __name__ == "__main__":
    main()
