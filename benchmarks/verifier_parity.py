"""Each verifier's preprocessing and scores against its original scoring pipeline; JSON on stdout.

    python benchmarks/verifier_parity.py

Uses the zoo and the references of ``tests/test_verifiers_parity.py`` (every verifier on tiny random weights at the
real 224 px input, loaded through ``load_verifier``; each original pipeline called or transcribed from its library)
on ComfyUI IMAGE batches written to PNG as ``SaveImage`` writes them. Two kinds of images: ``synthetic`` (noise off
the 8-bit grid, a hard black/white band, a ramp past 0..1) and ``photo`` (scikit-image's sample photos resized to
each size, with sub-level noise; skipped without scikit-image). Per verifier: the worst pixel difference in 8-bit
levels (pixels de-normalised with the original's std) over all sizes, the worst relative and absolute score
differences over batches of 4 (random weights put some scores near 0, where the relative figure is inflated), and
whether every batch ranks the same. Run by hand; not part of the test suite.
"""

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _util import context, emit, import_pack  # noqa: E402

import_pack()
import test_verifiers_parity as P  # noqa: E402


def photos(h, w, n, seed):
    """IMAGE [n, h, w, 3] from scikit-image's sample photos (PIL Lanczos to the size), plus uniform noise below one
    8-bit level so the SaveImage quantisation has work to do; None without scikit-image."""
    try:
        from skimage import data
    except ImportError:
        return None
    from PIL import Image

    srcs = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), data.immunohistochemistry()]
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        a = np.asarray(Image.fromarray(srcs[(i + seed) % len(srcs)]).resize((w, h), Image.LANCZOS), dtype=np.float32)
        out.append((torch.from_numpy(a) + torch.rand(h, w, 3, generator=g)) / 255.0)
    return torch.stack(out).clamp(0, 1)


def main():
    torch.set_num_threads(1)
    kinds = {"synthetic": P.sample_images, "photo": photos}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        zoo = P.build_zoo(root / "zoo")
        report = {name: {"original": e.original, "max_pixel_levels": {}, "max_rel_score_diff": {}, "max_abs_score_diff": {},
                         "same_ranking": True} for name, e in zoo.items()}
        for kind, make in kinds.items():
            batches = []
            for h, w in P.SIZES:
                images = make(h, w, 4, 1)
                if images is None:
                    break
                early = make(h, w, 4, 2)
                folder = root / kind / f"{h}x{w}"
                batches.append((images, P.pngs(images, folder / "final"), early, P.pngs(early, folder / "early")))
            if not batches:
                continue
            with torch.no_grad():
                for name, e in zoo.items():
                    levels, rel, absolute = 0.0, 0.0, 0.0
                    for images, pils, early, early_pils in batches:
                        levels = max(levels, P.max_level_difference(e, images, pils))
                        ours, ref = P.score_pair(e, images, pils, early, early_pils)
                        rel = max(rel, P.relative_difference(ours, ref))
                        absolute = max(absolute, float((ours - ref).abs().max()))
                        report[name]["same_ranking"] &= bool(torch.equal(ours.argsort(stable=True), ref.argsort(stable=True)))
                    report[name]["max_pixel_levels"][kind] = round(levels, 4)
                    report[name]["max_rel_score_diff"][kind] = float(f"{rel:.3g}")
                    report[name]["max_abs_score_diff"][kind] = float(f"{absolute:.3g}")
    emit({"benchmark": "verifier_parity", "sizes_hw": P.SIZES, "batch": 4, "context": context(), "verifiers": report})


if __name__ == "__main__":
    main()
