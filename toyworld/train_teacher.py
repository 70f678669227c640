"""Train the toy world's class-conditional TrigFlow teacher on the 8x8 digits (CPU, ~2 minutes on 2 cores).

Loss (sCM paper Eq. 4; toyworld/README.md): mean ||sigma_d F(x_t / sigma_d, t, y) - v||^2 / sigma_d^2 with
x_t = cos t x0 + sin t z, z ~ N(0, sigma_d^2 I), v = cos t z - sin t x0, t = atan(e^tau / sigma_d),
tau ~ N(-1, 1.4^2) (EDM's log-normal sigma), 10% of labels replaced by the null class (for CFG).
Adam with linear warm-up and a linear decay over the last 40%, grad-clip 1, EMA 0.999; the EMA
weights are saved (fp16) because samplers and the sCD student start from them.

    python -m noise_search.toyworld.train_teacher --out toyworld/weights/teacher.safetensors
"""

import argparse
import copy
import math
import time

import torch

from .data import load_digits_tensor
from .load import default_path, save_weights
from .models import NULL_CLASS, SIGMA_DATA, TEACHER_CONFIG, TrigFlowNet
from .repro import deterministic, repro_info


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m noise_search.toyworld.train_teacher", description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(default_path("teacher")), help="output .safetensors (fp16)")
    p.add_argument("--iterations", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--decay-fraction", type=float, default=0.4, help="linear decay to 0 over this last fraction")
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--p-mean", type=float, default=-1.0)
    p.add_argument("--p-std", type=float, default=1.4)
    p.add_argument("--class-dropout", type=float, default=0.1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--log-every", type=int, default=250)
    for k, v in TEACHER_CONFIG.items():
        p.add_argument("--" + k.replace("_", "-"), type=type(v), default=v, help="architecture")
    return p.parse_args(argv)


def lr_at(it, args):
    """Linear warm-up, constant, then linear decay to 0 over the last ``decay_fraction`` of the run."""
    warm = min(1.0, (it + 1) / max(1, args.warmup))
    start = int(args.iterations * (1 - args.decay_fraction))
    decay = 1.0 if it < start else max(0.0, (args.iterations - it) / max(1, args.iterations - start))
    return args.lr * warm * decay


def teacher_loss(net, x0, y, gen, args, sigma_d=SIGMA_DATA):
    """TrigFlow v-prediction loss on one batch (also used by the tests)."""
    b = x0.shape[0]
    x0 = x0.reshape(b, -1)
    tau = torch.randn(b, generator=gen) * args.p_std + args.p_mean
    t = torch.atan(torch.exp(tau) / sigma_d)
    z = torch.randn(x0.shape, generator=gen) * sigma_d
    ct, st = torch.cos(t)[:, None], torch.sin(t)[:, None]
    x_t = ct * x0 + st * z
    v = ct * z - st * x0
    drop = torch.rand(b, generator=gen) < args.class_dropout
    y = torch.where(drop, torch.full_like(y, NULL_CLASS), y)
    f = net(x_t / sigma_d, t, y)
    return ((sigma_d * f - v) ** 2).mean() / sigma_d ** 2


def train(args):
    """Returns (EMA net, stats). Runs under ``deterministic`` so the caller's torch settings come back afterwards."""
    with deterministic(args.seed, args.threads):
        return _train(args)


def _train(args):
    gen = torch.Generator().manual_seed(args.seed)
    x, y = load_digits_tensor()
    config = {k: getattr(args, k) for k in TEACHER_CONFIG}
    net = TrigFlowNet(**config)
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    n = x.shape[0]
    perm, pos = torch.randperm(n, generator=gen), 0
    t0, running = time.perf_counter(), None
    for it in range(args.iterations):
        if pos + args.batch > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        idx = perm[pos: pos + args.batch]
        pos += args.batch
        for g in opt.param_groups:
            g["lr"] = lr_at(it, args)
        loss = teacher_loss(net, x[idx], y[idx], gen, args)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        decay = min(args.ema, (1 + it) / (10 + it))
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), net.parameters()):
                pe.lerp_(p, 1 - decay)
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if args.log_every and ((it + 1) % args.log_every == 0 or it + 1 == args.iterations):
            el = time.perf_counter() - t0
            print(f"it {it + 1}/{args.iterations}  loss {running:.4f}  lr {lr_at(it, args):.2e}  {el:.1f}s "
                  f"({1000 * el / (it + 1):.1f} ms/it)", flush=True)
    seconds = time.perf_counter() - t0
    if not math.isfinite(running):
        raise RuntimeError(f"teacher training diverged (loss {running})")
    return ema, {"train_seconds": round(seconds, 1), "final_loss_ema": round(running, 5), "weights": "EMA",
                 "params": sum(p.numel() for p in net.parameters()), "train_images": n}


def main(argv=None):
    args = parse_args(argv)
    ema, stats = train(args)
    info = {**repro_info(__file__, args), **stats}
    out = save_weights(ema, args.out, "teacher", info)
    print(f"teacher: {stats['params']} params, {args.iterations} iterations in {stats['train_seconds']} s "
          f"({args.threads} threads); saved {out}")
    return out


if __name__ == "__main__":
    main()
