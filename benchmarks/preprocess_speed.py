"""Time of the verifiers' image preprocessing on a batch of ComfyUI IMAGE tensors; JSON on stdout.

    python benchmarks/preprocess_speed.py [--batch 8] [--size 1024] [--reps 15] [--threads 0] [--device cpu]

Each pipeline is an ``ImagePreprocess`` configured as the verifiers configure it (CLIP-style shorter side 224 +
centre crop; HPSv2's pad to a square; DINOv2's shorter side 256 + crop 224), timed on the same batch (interleaved,
medians of wall and process CPU time; CPU time counts every thread and is the steadier figure on a busy machine).
``--threads 0`` keeps torch's default thread count (the Pillow resizes use as many threads). Run by hand; not part
of the test suite.
"""

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import context, emit, import_pack, interleave  # noqa: E402

import_pack()
from noise_search.verifiers.base import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, ImagePreprocess  # noqa: E402

PIPELINES = {  # name -> ImagePreprocess(crop, resize, mean, std, mode)
    "clip_crop_224": (224, 224, CLIP_MEAN, CLIP_STD, "crop"),
    "hps_pad_224": (224, 224, CLIP_MEAN, CLIP_STD, "pad"),
    "dino_crop_256_224": (224, 256, IMAGENET_MEAN, IMAGENET_STD, "crop"),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=1024, help="height and width of the IMAGE batch")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="where the IMAGE batch lives and the pixels go (cpu, cuda)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    images = torch.rand(a.batch, a.size, a.size, 3, generator=g).to(a.device)
    sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)

    def run(pre):
        def fn():
            out = pre(images, a.device)
            sync()
            return out
        return fn

    fns = {name: run(ImagePreprocess(*args)) for name, args in PIPELINES.items()}
    times = interleave(fns, a.reps, warmup=2)
    emit({"benchmark": "preprocess_speed", "batch": a.batch, "size": a.size, "device": a.device, "context": context(),
          "median_ms": {k: 1000 * statistics.median(v["wall"]) for k, v in times.items()},
          "median_cpu_ms": {k: 1000 * statistics.median(v["cpu"]) for k, v in times.items()},
          "median_ms_per_image": {k: 1000 * statistics.median(v["wall"]) / a.batch for k, v in times.items()}})


if __name__ == "__main__":
    main()
