"""Train the toy world's digit classifier on the fixed 80% stratified split and report held-out accuracy.

It is the class-logit verifier of the noise search and the feature extractor of the Frechet
distance, so it must be accurate (>= 97% held out; ~99.5% is typical) and it must never see the
held-out 20%. Random one-pixel shifts make it less brittle on generated digits.

    python -m noise_search.toyworld.train_classifier --out toyworld/weights/classifier.safetensors
"""

import argparse
import time

import torch
import torch.nn.functional as F_

from .data import digits_split
from .load import default_path, save_weights
from .metrics import class_accuracy
from .models import DigitClassifier
from .repro import deterministic, repro_info


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m noise_search.toyworld.train_classifier", description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(default_path("classifier")), help="output .safetensors (fp16)")
    p.add_argument("--iterations", type=int, default=1500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--shift", type=int, default=1, help="max random shift in pixels (0 = no augmentation)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--log-every", type=int, default=500)
    return p.parse_args(argv)


def random_shift(x, max_shift, gen):
    """Shift each image by up to ``max_shift`` pixels, filling with background (-1)."""
    if max_shift <= 0:
        return x
    pad = F_.pad(x, (max_shift,) * 4, value=-1.0)
    out = torch.empty_like(x)
    d = torch.randint(0, 2 * max_shift + 1, (x.shape[0], 2), generator=gen)
    for i in range(x.shape[0]):
        out[i] = pad[i, :, d[i, 0]: d[i, 0] + 8, d[i, 1]: d[i, 1] + 8]
    return out


def train(args):
    """Returns (classifier, stats); the caller's torch settings are restored afterwards."""
    with deterministic(args.seed, args.threads):
        gen = torch.Generator().manual_seed(args.seed)
        x_tr, y_tr, x_te, y_te = digits_split()
        model = DigitClassifier()
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
        t0 = time.perf_counter()
        for it in range(args.iterations):
            lr = args.lr * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * it / max(1, args.iterations))).item())
            for g in opt.param_groups:
                g["lr"] = lr
            idx = torch.randint(0, x_tr.shape[0], (args.batch,), generator=gen)
            loss = F_.cross_entropy(model(random_shift(x_tr[idx], args.shift, gen)), y_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if args.log_every and ((it + 1) % args.log_every == 0 or it + 1 == args.iterations):
                print(f"it {it + 1}/{args.iterations}  loss {loss.item():.4f}  {time.perf_counter() - t0:.1f}s", flush=True)
        seconds = time.perf_counter() - t0
        model.eval()
        # Accuracy of the weights as shipped (fp16-rounded), which is what everyone else loads.
        shipped = DigitClassifier(**model.config)
        shipped.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})
        acc = class_accuracy(shipped.eval(), x_te, y_te)
        train_acc = class_accuracy(shipped, x_tr, y_tr)
    return model, {"train_seconds": round(seconds, 1), "heldout_accuracy": round(acc, 5), "train_accuracy": round(train_acc, 5),
                   "heldout_images": int(x_te.shape[0]), "train_images": int(x_tr.shape[0]),
                   "split": "data.stratified_split(labels, 0.2, seed=0)", "params": sum(p.numel() for p in model.parameters())}


def main(argv=None):
    args = parse_args(argv)
    model, stats = train(args)
    out = save_weights(model, args.out, "classifier", {**repro_info(__file__, args), **stats})
    print(f"classifier: held-out accuracy {stats['heldout_accuracy']:.4f} on {stats['heldout_images']} images "
          f"(train {stats['train_accuracy']:.4f}), {args.iterations} iterations in {stats['train_seconds']} s; saved {out}")
    return out


if __name__ == "__main__":
    main()
