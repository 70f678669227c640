"""Distil the toy world's TrigFlow teacher into a 1-2 step sCM student (sCD, or sCT with --mode sct; Algorithm 1 of Lu & Song 2024).

    python -m noise_search.toyworld.distill_student --out toyworld/weights/student.safetensors [--iterations N]

The student starts from the teacher's (EMA) weights (for sCT too, as in the paper) and is trained with
``training.scm_distill`` on all 1797 digits; every ``--eval-every`` iterations the EMA student is scored with the toy FD protocol
(2000 samples, 200 per class, classifier features, clamped) at 1 step and 2 steps, on *selection*
seeds that the benchmark (benchmarks/scm_fd.py, seeds 0 and 1) does not use. The EMA weights with the
best 2-step FD are saved (fp16, same architecture as the teacher, so ``load_student()`` reads them).
toyworld/README.md: the loss says nothing about progress and quality drifts, hence the FD-based selection.

Deterministic for a given machine and thread count: every random draw comes from seeded generators.

Measured (benchmarks/scm_fd.py, 2000 samples, mean of seeds 0 and 1, FD clamped / raw; teacher Heun-50
3.76 / 1.12): the committed student (the default run, checkpoint at iteration 4000) gives 1 step 8.08 / 3.68,
2 steps (t_mid 1.1) 4.32 / 1.30 (1.15x / 1.16x the teacher), 3 steps 3.76 / 1.20; its monitored 2-step FD at
iteration 8000 is 1.11x the selected one. 8000 iterations in 15.8 min of CPU on one thread. The ablation of the
recipe (which technique matters, sCT beside sCD) is benchmarks/scm_ablation.py; toyworld/README.md reads it.
"""

import argparse
import copy
import json
import math
import sys
import time

import torch

from ..samplers.noise_space import EDM
from ..samplers.scm import default_noise_sampler, sample_scm, scm_sigmas
from ..samplers.trigflow import TrigFlowAsDenoiser
from ..training.scm_distill import SCMConfig, SCMDistiller
from .data import IMAGE_SHAPE, load_digits_tensor
from .models import SIGMA_DATA

# The paper's CIFAR-10 recipe (Lu & Song 2024, App. G: RAdam, lr 1e-4 at batch 512, betas (0.9, 0.99),
# P_mean -1.0, P_std 1.4, c 0.1, EMA half-life 0.5 M images), the tangent warm-up H at the paper's 2.5% of the
# run (10 k of 400 k), and the paper's ImageNet lr schedule, EDM2's lr / sqrt(max(it / t_ref, 1)) with t_ref at
# the same 8.75% of the run as its 35 k of 400 k (constant lr drifts; a short power EMA keeps the 2-step FD
# higher: benchmarks/scm_ablation.py, toyworld/README.md).
DEFAULTS = {"mode": "scd", "iterations": 8000, "batch": 512, "lr": 1e-4, "lr_decay_start": 1.0, "lr_ref": 700, "optimizer": "radam",
            "p_mean": -1.0, "p_std": 1.4, "tangent_warmup": 200, "ema_halflife": 500_000.0, "tangent_c": 0.1, "dropout": 0.0,
            "eval_every": 500, "t_mid": 1.1, "select_seeds": [100, 101], "seed": 0, "threads": 1}


STABLE_RATIO = 1.3  # the pack's stability target for a distillation: 2-step FD at twice the best iteration within 1.3x of the best


def training_stability(history, selected=None):
    """Was the run stable after its best checkpoint? From the FD monitor rows (``history``, as the script logs them).

    ``selected``: the chosen row (default: the lowest 2-step clamped FD). Returns the selected iteration and FD,
    the 2-step FD at the first monitor point at or after twice that iteration and its ratio to the selected FD
    (stable when <= STABLE_RATIO), and the worst 2-step FD after the selected point; the ratio is None when the
    run ended before twice the selected iteration (nothing shown either way).
    """
    if not history:
        raise ValueError("no FD monitor rows: the run logged nothing (--eval-every 0 and no final row?)")
    best = selected or min(history, key=lambda r: r["fd2_clamped"])
    later = [r for r in history if r["iteration"] >= 2 * best["iteration"]]
    out = {"selected_iteration": best["iteration"], "selected_fd2": best["fd2_clamped"], "last_iteration": history[-1]["iteration"],
           "max_fd2_after_selected": max(r["fd2_clamped"] for r in history if r["iteration"] >= best["iteration"]),
           "fd2_at_2x": None, "ratio": None, "stable": None}
    if later:
        ratio = later[0]["fd2_clamped"] / best["fd2_clamped"]
        out.update({"fd2_at_2x": later[0]["fd2_clamped"], "ratio": round(ratio, 4), "stable": bool(ratio <= STABLE_RATIO)})
    return out


def student_samples(net, labels, steps, t_mid=None, seed=0, batch_size=1000, sigma_max=80.0, sigma_data=SIGMA_DATA):
    """sCM samples [N, 1, 8, 8] (raw, not clamped) of a TrigFlow ``net`` for ``labels``, with 1-4 steps.

    Initial noise: unit Gaussian from a generator seeded with ``seed`` (as toyworld.evaluate.sample_noise),
    scaled by sigma_max (ComfyUI's noise_scaling); re-noising draws come from a second generator seeded with
    ``seed + 1_000_003`` per batch chunk, so the result does not depend on how many steps came before.
    """
    labels = torch.as_tensor(labels).long().flatten()
    sigmas = scm_sigmas(steps, sigma_data=sigma_data, t_mid=t_mid, sigma_max=sigma_max)
    g = torch.Generator().manual_seed(int(seed))
    noise = torch.randn((labels.numel(),) + IMAGE_SHAPE, generator=g)
    den = TrigFlowAsDenoiser(net, sigma_data)
    out = []
    was_training = net.training
    net.eval()
    for k, i in enumerate(range(0, labels.numel(), batch_size)):
        x = noise[i: i + batch_size] * sigmas[0]
        ns = default_noise_sampler(x, seed=int(seed) + 1_000_003 + k)
        out.append(sample_scm(den, x, sigmas, extra_args={"class_labels": labels[i: i + batch_size]}, noise_sampler=ns, space=EDM))
    net.train(was_training)
    return torch.cat(out)


def student_fd(net, reference, steps, t_mid=None, seeds=(0,), per_class=200):
    """Mean over ``seeds`` of the toy FD report (fd_clamped, fd_raw, accuracy) of the student at ``steps``."""
    from .evaluate import balanced_labels, fd_report

    labels = balanced_labels(per_class)
    rows = [fd_report(student_samples(net, labels, steps, t_mid, seed), labels, reference, pr_k=0) for seed in seeds]
    return {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m noise_search.toyworld.distill_student", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="where to write the student .safetensors")
    p.add_argument("--mode", choices=["scd", "sct"], default=DEFAULTS["mode"],
                   help="scd: distil the teacher's PF-ODE; sct: consistency training on the digits (starts from the teacher too)")
    p.add_argument("--teacher", default=None, help="teacher .safetensors (default: the committed one)")
    p.add_argument("--classifier", default=None, help="classifier .safetensors for the FD monitor (default: the committed one)")
    p.add_argument("--iterations", type=int, default=DEFAULTS["iterations"])
    p.add_argument("--batch", type=int, default=DEFAULTS["batch"])
    p.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    p.add_argument("--lr-ref", type=int, default=DEFAULTS["lr_ref"],
                   help="EDM2's inverse square-root decay (the paper's ImageNet runs): lr / sqrt(max(iteration / lr_ref, 1)); 0 = off")
    p.add_argument("--lr-decay-start", type=float, default=DEFAULTS["lr_decay_start"],
                   help="fraction of the run after which lr decays linearly to 0 (1 = constant lr)")
    p.add_argument("--p-mean", type=float, default=DEFAULTS["p_mean"])
    p.add_argument("--p-std", type=float, default=DEFAULTS["p_std"])
    p.add_argument("--tangent-warmup", type=int, default=DEFAULTS["tangent_warmup"], help="H: r = min(1, it / H)")
    p.add_argument("--tangent-c", type=float, default=DEFAULTS["tangent_c"])
    p.add_argument("--optimizer", choices=["radam", "adam"], default=DEFAULTS["optimizer"])
    ema = p.add_mutually_exclusive_group()
    ema.add_argument("--ema-halflife", type=float, default=None,
                     help=f"EMA half-life in images (default {DEFAULTS['ema_halflife']:.0f}, the paper's CIFAR-10 value)")
    ema.add_argument("--ema-std", type=float, default=None, help="EDM2 power EMA with this sigma_rel instead (the paper's ImageNet: 0.05)")
    ema.add_argument("--ema", type=float, default=None, help="fixed EMA decay per iteration instead")
    p.add_argument("--dropout", type=float, default=DEFAULTS["dropout"], help="student dropout (the paper: 0 for sCD, 0.2 for sCT on CIFAR-10)")
    p.add_argument("--no-adaptive-weight", action="store_true")
    p.add_argument("--eval-every", type=int, default=DEFAULTS["eval_every"], help="FD monitor period (0: only at the end)")
    p.add_argument("--t-mid", type=float, default=DEFAULTS["t_mid"], help="2-step intermediate time used for selection")
    p.add_argument("--select-seeds", type=int, nargs="+", default=DEFAULTS["select_seeds"])
    p.add_argument("--eval-per-class", type=int, default=200, help="FD monitor samples per class (toy protocol: 200)")
    p.add_argument("--select", choices=["fd2", "last"], default="fd2",
                   help="save the EMA with the best 2-step clamped FD (fd2) or the last one")
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    p.add_argument("--threads", type=int, default=DEFAULTS["threads"],
                   help="torch threads (1 is far faster than 2 when other jobs share the 2 cores)")
    p.add_argument("--log", default=None, help="also write the monitor rows as JSON lines here")
    args = p.parse_args(argv)
    if args.iterations < 1:
        p.error(f"--iterations must be >= 1, got {args.iterations}")
    if args.lr_ref < 0:
        p.error(f"--lr-ref must be >= 0 iterations (0 = constant lr), got {args.lr_ref}")
    if not 0 <= args.lr_decay_start <= 1:
        p.error(f"--lr-decay-start must be a fraction in [0, 1], got {args.lr_decay_start}")
    if args.batch < 1:
        p.error(f"--batch must be >= 1, got {args.batch}")
    if not 0 <= args.dropout < 1:
        p.error(f"--dropout must be in [0, 1), got {args.dropout}")
    if args.ema_std is None and args.ema is None and args.ema_halflife is None:
        args.ema_halflife = DEFAULTS["ema_halflife"]
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    try:
        cfg = SCMConfig(mode=args.mode, sigma_data=SIGMA_DATA, p_mean=args.p_mean, p_std=args.p_std, lr=args.lr,
                        optimizer=args.optimizer, tangent_c=args.tangent_c, tangent_warmup=args.tangent_warmup,
                        ema_decay=args.ema, ema_halflife=args.ema_halflife, ema_std=args.ema_std,
                        adaptive_weight=not args.no_adaptive_weight, seed=args.seed)
    except ValueError as err:
        raise SystemExit(f"distill_student: {err}") from None
    from .evaluate import FDReference
    from .load import load_classifier, load_teacher, save_weights

    teacher = load_teacher(args.teacher)
    reference = FDReference(load_classifier(args.classifier))
    x_all, y_all = load_digits_tensor()
    student = copy.deepcopy(teacher)
    student.set_dropout(args.dropout)
    dist = SCMDistiller(teacher if args.mode == "scd" else None, cfg, student=student)
    data_gen = torch.Generator().manual_seed(args.seed + 1)

    def monitor(it, secs):
        fd1 = student_fd(dist.ema, reference, 1, seeds=args.select_seeds, per_class=args.eval_per_class)
        fd2 = student_fd(dist.ema, reference, 2, args.t_mid, seeds=args.select_seeds, per_class=args.eval_per_class)
        row = {"iteration": it, "seconds": round(secs, 1), "cpu_seconds": round(time.process_time() - c0, 1), "fd1_clamped": round(fd1["fd_clamped"], 4),
               "fd1_raw": round(fd1["fd_raw"], 4), "fd2_clamped": round(fd2["fd_clamped"], 4),
               "fd2_raw": round(fd2["fd_raw"], 4), "acc2": round(fd2["accuracy"], 4)}
        return row

    history, best, best_state = [], None, None
    t0, c0 = time.perf_counter(), time.process_time()
    train_secs = 0.0
    stats = {}
    for it in range(1, args.iterations + 1):
        idx = torch.randint(0, x_all.shape[0], (args.batch,), generator=data_gen)
        start = args.lr_decay_start * args.iterations
        lr = args.lr if it <= start else args.lr * max(0.0, (args.iterations - it + 1) / (args.iterations - start + 1))
        if args.lr_ref:
            lr /= math.sqrt(max(it / args.lr_ref, 1.0))
        for group in dist.optimizer.param_groups:
            group["lr"] = lr
        ts = time.perf_counter()
        stats = dist.step(x_all[idx], y_all[idx])
        train_secs += time.perf_counter() - ts
        if not all(math.isfinite(stats[k]) for k in ("loss", "mse")):
            raise FloatingPointError(f"sCD loss became non-finite at iteration {it}: {stats}")
        if (args.eval_every and it % args.eval_every == 0) or it == args.iterations:
            row = monitor(it, time.perf_counter() - t0)
            row.update({"lr": lr, "loss": round(stats["loss"], 5), "g_norm": round(stats["g_norm"], 5), "logvar": round(stats["logvar"], 4)})
            history.append(row)
            print(json.dumps(row), flush=True)
            if args.log:
                with open(args.log, "a") as f:
                    f.write(json.dumps(row) + "\n")
            if args.select == "last" or best is None or row["fd2_clamped"] < best["fd2_clamped"]:
                best = row
                best_state = {k: v.detach().clone() for k, v in dist.ema.state_dict().items()}
    dist.ema.load_state_dict(best_state)
    dist.ema.set_dropout(0.0)  # saved for sampling (eval mode ignores it; the file says what the architecture is)
    method = "sCD" if args.mode == "scd" else "sCT"
    info = {"script": "toyworld/distill_student.py", "method": f"{method} (Lu & Song 2024, Algorithm 1), EMA weights",
            "args": {k: v for k, v in vars(args).items() if k not in ("out", "log")}, "config": cfg.to_dict(),
            "selected": best, "selection": f"{args.select} on seeds {args.select_seeds} (benchmark seeds differ)",
            "history": history, "train_seconds": round(train_secs, 1), "total_seconds": round(time.perf_counter() - t0, 1),
            "total_cpu_seconds": round(time.process_time() - c0, 1),
            "torch": torch.__version__, "threads": args.threads}
    save_weights(dist.ema, args.out, "student", info)
    print(json.dumps({"saved": str(args.out), "selected": best, "total_seconds": info["total_seconds"]}), flush=True)
    return info


if __name__ == "__main__":
    main()
