"""Which of the sCM paper's techniques make the toy world's sCD stable? Leave-one-out ablation, as JSON + markdown.

    python benchmarks/scm_ablation.py --out docs/scm_ablation [--jobs 2] [--variants paper no_double ...]

writes ``scm_ablation.json`` and ``scm_ablation.md`` to ``--out``; the runs' weights, teachers and logs go to
``--work`` (default ``<out>/runs``, not committed).

Every variant is one run of ``toyworld/distill_student.py`` (sCD unless named sct) with the FD monitor
every ``--eval-every`` iterations (2000 samples on the selection seeds 100 and 101, clamped: the script's
own monitor), so each row shows the 2-step and 1-step FD over training, not only its best point.
``paper`` is the recipe the pack ships (Lu & Song 2024: positional time embedding with c_noise(t) = t,
adaptive double normalisation, RAdam at lr 1e-4 and batch 512, tangent warm-up over 2.5% of the run, EMA
half-life 0.5 M images, EDM2's inverse square-root lr decay as in the paper's ImageNet runs); ``power_ema``
uses EDM2's power EMA (sigma_rel 0.05) instead; ``constant_lr`` also drops the decay (the paper's CIFAR-10
schedule) and is the base every leave-one-out variant changes one thing of; ``old`` is the toy world's first recipe and teacher (at its own batch 128, as many images) and ``sct``
consistency training on the data with dropout 0.2 (the paper's CIFAR-10 sCT). Teachers other than the committed one are trained first with ``train_teacher`` (about a
minute each) into ``--out``. Stability: the 2-step FD at twice the best iteration, over the best (target
<= 1.3); a run whose best is in its second half cannot show it and says so.

One seed per variant (the CPU budget: about 10 minutes per run on one core); run by hand, not a test.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import import_pack  # noqa: E402

DISTILL_ITERATIONS = 8000  # toyworld/distill_student.py's default (checked in main)

# name -> teacher architecture flags for train_teacher (None: the committed teacher)
TEACHERS = {
    "committed": None,
    "geometric": ["--time-embedding", "geometric", "--max-freq", "64"],
    "adaln": ["--modulation", "adaln"],
    "legacy": ["--time-embedding", "geometric", "--max-freq", "64", "--modulation", "adaln"],
}

# name -> (what it changes, teacher, distill_student arguments on top of its defaults). ``paper`` is what
# distill_student ships; ``power_ema`` swaps its EMA, ``constant_lr`` also drops its lr schedule and is the base
# the leave-one-out rows below it change one thing of (they were run in that order, before the shipped EMA
# was chosen from them).
VARIANTS = {
    "paper": ("the shipped recipe: all of the paper's techniques, EMA half-life 0.5 M images (CIFAR-10), "
              "lr / sqrt(max(it / 700, 1)) (ImageNet schedule)", "committed", []),
    "power_ema": ("EDM2 power EMA sigma_rel 0.05 (the paper's ImageNet sampling EMA) instead of the half-life",
                  "committed", ["--ema-std", "0.05"]),
    "constant_lr": ("power EMA and constant lr 1e-4 (the paper's CIFAR-10 schedule): the base of the rows below",
                    "committed", ["--lr-ref", "0", "--ema-std", "0.05"]),
    "no_positional": ("time embedding sin/cos(t f), f in geomspace(1, 64) (teacher and student)", "geometric",
                      ["--lr-ref", "0", "--ema-std", "0.05"]),
    "no_double": ("plain adaptive LayerNorm instead of double normalisation (teacher and student)", "adaln",
                  ["--lr-ref", "0", "--ema-std", "0.05"]),
    "lr_8x": ("lr 8e-4: the old run's rate per sample (2e-4 at batch 128)", "committed",
              ["--lr-ref", "0", "--ema-std", "0.05", "--lr", "8e-4"]),
    "adam": ("Adam instead of RAdam", "committed", ["--lr-ref", "0", "--ema-std", "0.05", "--optimizer", "adam"]),
    "ema_halflife": ("EMA half-life 0.5 M images (the paper's CIFAR-10 value) instead of the power EMA", "committed",
                     ["--lr-ref", "0", "--ema-halflife", "500000"]),
    "long_warmup": ("tangent warm-up over 17% of the run (the old run's share)", "committed",
                    ["--lr-ref", "0", "--ema-std", "0.05", "--tangent-warmup", "680"]),
    "old": ("the first recipe: old teacher, Adam 2e-4, batch 128, EMA 0.998, H 500, lr decay from 40%", "legacy",
            ["--lr-ref", "0", "--optimizer", "adam", "--lr", "2e-4", "--batch", "128", "--ema", "0.998",
             "--tangent-warmup", "500", "--lr-decay-start", "0.4"]),
    "sct_paper": ("sCT with the shipped recipe and dropout 0.2 (the paper's CIFAR-10 sCT dropout)", "committed",
                  ["--mode", "sct", "--dropout", "0.2"]),
    "sct": ("sCT: consistency training on the digits, dropout 0.2 (the paper's CIFAR-10 sCT), power EMA, constant lr",
            "committed", ["--lr-ref", "0", "--ema-std", "0.05", "--mode", "sct", "--dropout", "0.2"]),
}
FULL_LENGTH = ("paper", "power_ema", "constant_lr", "sct_paper")  # run distill_student's full default length, to show whether they stay stable


def teacher_path(name, work, log):
    flags = TEACHERS[name]
    if flags is None:
        return None
    path = work / f"teacher_{name}.safetensors"
    if not path.exists():
        cmd = [sys.executable, "-m", "noise_search.toyworld.train_teacher", "--out", str(path), *flags]
        log(f"training teacher {name}: {' '.join(cmd[1:])}")
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return path


def variant_command(name, work, iterations, eval_every, teacher):
    _, _, extra = VARIANTS[name]
    if name in FULL_LENGTH:
        iterations = DISTILL_ITERATIONS
    cmd = [sys.executable, "-m", "noise_search.toyworld.distill_student", "--out", str(work / f"{name}.safetensors"),
           "--log", str(work / f"{name}.jsonl"), "--iterations", str(iterations), "--eval-every", str(eval_every), *extra]
    if "--batch" in extra:  # the old recipe at batch 128: the same number of images as the others, monitored
        batch = int(extra[extra.index("--batch") + 1])  # as often in iterations (its collapse is fast)
        cmd[cmd.index("--iterations") + 1] = str(iterations * 512 // batch)
    if teacher is not None:
        cmd += ["--teacher", str(teacher)]
    return cmd


def t_response_sign_changes(net, n_t=400, samples=16):
    """How much F oscillates in t: sign changes of dF/dt along t in [0.01, 1.56] (n_t points) at a fixed input
    (16 digits noised to t = 1 with seed-0 noise, their own labels), per output coordinate, averaged. High-frequency
    time embeddings raise it; the consistency tangent differentiates F in t, so oscillation feeds its variance."""
    import torch

    from noise_search.toyworld.data import load_digits_tensor

    x0, y = load_digits_tensor()
    x0, y = x0[:samples].flatten(1), y[:samples]
    z = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)) * 0.5
    x_in = (torch.cos(torch.tensor(1.0)) * x0 + torch.sin(torch.tensor(1.0)) * z) / 0.5
    ts = torch.linspace(0.01, 1.56, n_t)
    with torch.no_grad():
        F = torch.stack([net(x_in, t.expand(samples), y) for t in ts])
    d = F.diff(dim=0)
    return round(float(((d[1:] * d[:-1]) < 0).sum(0).float().mean()), 2)


def oscillation(name, work):
    """t_response_sign_changes of the variant's teacher and of its saved student."""
    from noise_search.toyworld.load import load_student, load_teacher

    teacher = TEACHERS[VARIANTS[name][1]]
    t_path = None if teacher is None else work / f"teacher_{VARIANTS[name][1]}.safetensors"
    return {"teacher": t_response_sign_changes(load_teacher(t_path)),
            "student": t_response_sign_changes(load_student(work / f"{name}.safetensors"))}


def summarise(name, rows):
    """Best 2-step FD, its iteration, the FD at twice that iteration and the verdict on stability."""
    from noise_search.toyworld.distill_student import training_stability

    best = min(rows, key=lambda r: r["fd2_clamped"])
    stab = training_stability(rows, best)
    return {"variant": name, "change": VARIANTS[name][0], "best_iteration": best["iteration"],
            "best_fd2": best["fd2_clamped"], "best_fd1": best["fd1_clamped"], "best_fd2_raw": best["fd2_raw"],
            "fd2_at_2x_best": stab["fd2_at_2x"], "stability_ratio": stab["ratio"], "stable": stab["stable"],
            "final_fd2": rows[-1]["fd2_clamped"], "final_fd1": rows[-1]["fd1_clamped"], "iterations": rows[-1]["iteration"],
            "cpu_seconds": rows[-1].get("cpu_seconds")}


def markdown(summary, histories, images_per_iteration):
    lines = ["# sCD on the toy world: which of the sCM paper's techniques matter", "",
             "Written by `python benchmarks/scm_ablation.py --out docs/scm_ablation` (one training seed per variant: the "
             "CPU budget; FD of 2000 samples on the selection seeds 100 and 101, clamped, as the distillation's own "
             "monitor). Stability: the 2-step FD at twice the best iteration over the best (target <= 1.3). "
             "dF/dt sign changes: how often F's response to t changes direction along t (16 digits, t from 0.01 to "
             "1.56), for the variant's teacher and its saved student. `toyworld/README.md` reads the table.", "",
             "| variant | change | best 2-step FD (iteration) | its 1-step FD | 2-step FD at 2x best (ratio) | final 2-step / 1-step FD "
             "| dF/dt sign changes, teacher / student |",
             "|---|---|---|---|---|---|---|"]
    for s in summary:
        at2 = f"{s['fd2_at_2x_best']:.2f} ({s['stability_ratio']:.2f})" if s["fd2_at_2x_best"] is not None else "best in the second half: not shown"
        lines.append(f"| {s['variant']} | {s['change']} | {s['best_fd2']:.2f} ({s['best_iteration']}) | {s['best_fd1']:.2f} | "
                     f"{at2} | {s['final_fd2']:.2f} / {s['final_fd1']:.2f} | "
                     f"{s['dF_dt_sign_changes']['teacher']:.1f} / {s['dF_dt_sign_changes']['student']:.1f} |")
    lines += ["", "2-step / 1-step FD (clamped, selection seeds) over training, by thousands of images seen:", ""]
    step = max(r["iteration"] * images_per_iteration[n] for n, rows in histories.items() for r in rows[:1])
    marks = sorted({r["iteration"] * images_per_iteration[n] // 1000 for n, rows in histories.items() for r in rows
                    if (r["iteration"] * images_per_iteration[n]) % step == 0})
    lines.append("| variant | " + " | ".join(f"{m} k" for m in marks) + " |")
    lines.append("|---|" + "---|" * len(marks))
    for name, rows in histories.items():
        by = {r["iteration"] * images_per_iteration[name] // 1000: r for r in rows}
        cells = [f"{by[m]['fd2_clamped']:.1f} / {by[m]['fd1_clamped']:.1f}" if m in by else "" for m in marks]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python benchmarks/scm_ablation.py", description=__doc__.split("\n")[0])
    p.add_argument("--out", default="docs/scm_ablation", help="folder for the JSON and the markdown table")
    p.add_argument("--work", default=None, help="folder for the runs' weights, teachers and logs (default <out>/runs)")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    p.add_argument("--iterations", type=int, default=3000, help="iterations at batch 512 (the old recipe runs 4x as many at 128)")
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--jobs", type=int, default=2, help="runs at once (each uses one thread)")
    p.add_argument("--report-only", action="store_true", help="only summarise the logs already in --out")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args.iterations < 1 or args.eval_every < 1 or args.jobs < 1:
        p.error("--iterations, --eval-every and --jobs must be >= 1")
    import_pack()
    from noise_search.toyworld.distill_student import DEFAULTS

    assert DEFAULTS["iterations"] == DISTILL_ITERATIONS, "keep DISTILL_ITERATIONS equal to distill_student's default"
    out_dir = Path(args.out)
    work = Path(args.work) if args.work else out_dir / "runs"
    out_dir.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    commands = {}
    for name in args.variants:
        commands[name] = variant_command(name, work, args.iterations, args.eval_every,
                                         None if args.report_only else teacher_path(VARIANTS[name][1], work, log))
    if not args.report_only:
        pending, running = list(args.variants), {}
        while pending or running:
            while pending and len(running) < args.jobs:
                name = pending.pop(0)
                (work / f"{name}.jsonl").unlink(missing_ok=True)
                log(f"start {name}: {' '.join(commands[name][1:])}")
                running[name] = subprocess.Popen(commands[name], stdout=subprocess.DEVNULL)
            time.sleep(2)
            for name, proc in list(running.items()):
                if proc.poll() is not None:
                    del running[name]
                    if proc.returncode:
                        raise SystemExit(f"scm_ablation: variant {name} failed (exit {proc.returncode}): {' '.join(commands[name])}")
                    log(f"done {name}")
    histories, per_it = {}, {}
    for name in args.variants:
        path = work / f"{name}.jsonl"
        if not path.exists():
            raise SystemExit(f"scm_ablation: no log for variant {name} ({path}); run it without --report-only")
        histories[name] = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        extra = VARIANTS[name][2]
        per_it[name] = int(extra[extra.index("--batch") + 1]) if "--batch" in extra else 512
    summary = [summarise(n, rows) for n, rows in histories.items()]
    for row in summary:
        row["dF_dt_sign_changes"] = oscillation(row["variant"], work)
    table = markdown(summary, histories, per_it)
    report = {"benchmark": "scm_ablation", "seeds": "one training seed per variant; FD on selection seeds 100, 101",
              "commands": {n: " ".join(["python"] + c[1:]) for n, c in commands.items()}, "summary": summary,
              "histories": histories, "seconds": round(time.perf_counter() - t0, 1)}
    (out_dir / "scm_ablation.json").write_text(json.dumps(report, indent=1) + "\n")
    (out_dir / "scm_ablation.md").write_text(table + "\n")
    print(json.dumps({"summary": summary, "seconds": report["seconds"]}, indent=1))
    print(table)
    return report


if __name__ == "__main__":
    main()
