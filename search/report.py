"""Pictures of a search, drawn with PIL only: a ranked candidate grid and a score-vs-NFE chart.
Shared by the CLI demo and the ComfyUI nodes (which turn the PIL image into an IMAGE tensor)."""

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]
WINNER = (230, 180, 0)


def _font(size=12):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def to_pil(image):
    """IMAGE tensor [H, W, C] (or [1, H, W, C]) in 0..1 -> RGB PIL image."""
    a = image.detach().float().cpu()
    if a.ndim == 4:
        a = a[0]
    a = (a.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    return Image.fromarray(a[..., :3], "RGB")


def pil_to_image(img):
    """RGB PIL image -> IMAGE tensor [1, H, W, 3] in 0..1."""
    return torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0)[None]


def candidate_grid(images, scores, labels=None, winner=0, columns=8, cell=96):
    """Candidates (best first) in a grid with their scores; the winner gets a gold frame."""
    n = len(images)
    if n == 0:
        raise ValueError("candidate_grid needs at least one image")
    cols = max(1, min(columns, n))
    rows = (n + cols - 1) // cols
    pad, text_h = 6, 30
    img = Image.new("RGB", (cols * (cell + pad) + pad, rows * (cell + text_h + pad) + pad), (250, 250, 250))
    draw, font = ImageDraw.Draw(img), _font(11)
    for i in range(n):
        r, c = divmod(i, cols)
        x0, y0 = pad + c * (cell + pad), pad + r * (cell + text_h + pad)
        tile = to_pil(images[i]).resize((cell, cell), Image.NEAREST)
        img.paste(tile, (x0, y0))
        if i == winner:
            draw.rectangle([x0 - 3, y0 - 3, x0 + cell + 2, y0 + cell + 2], outline=WINNER, width=3)
        label = f"#{i + 1}  {scores[i]:.3f}"
        draw.text((x0, y0 + cell + 2), label, fill=(0, 0, 0), font=font)
        if labels is not None:
            draw.text((x0, y0 + cell + 15), str(labels[i])[:18], fill=(90, 90, 90), font=font)
    return img


def score_vs_nfe_plot(curves, width=640, height=400, title="best score vs search NFE", baseline=None):
    """Line chart of {name: [(nfe, best_score), ...]}; ``baseline`` draws a dashed horizontal reference."""
    pts = [p for c in curves.values() for p in c]
    if not pts:
        raise ValueError("score_vs_nfe_plot needs at least one point")
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts] + ([baseline] if baseline is not None else [])
    x_lo, x_hi = 0, max(xs) or 1
    y_lo, y_hi = min(ys), max(ys)
    if y_hi - y_lo < 1e-9:
        y_lo, y_hi = y_lo - 0.5, y_hi + 0.5
    margin = (y_hi - y_lo) * 0.08
    y_lo, y_hi = y_lo - margin, y_hi + margin
    L, R, T, B = 64, 16, 30, 44
    img = Image.new("RGB", (width, height), "white")
    d, font = ImageDraw.Draw(img), _font(12)
    px = lambda x: L + (x - x_lo) / (x_hi - x_lo) * (width - L - R)
    py = lambda y: height - B - (y - y_lo) / (y_hi - y_lo) * (height - T - B)
    d.rectangle([L, T, width - R, height - B], outline=(160, 160, 160))
    for k in range(5):
        yv = y_lo + (y_hi - y_lo) * k / 4
        xv = x_lo + (x_hi - x_lo) * k / 4
        d.line([L, py(yv), width - R, py(yv)], fill=(235, 235, 235))
        d.text((4, py(yv) - 7), f"{yv:.3g}", fill=(60, 60, 60), font=font)
        d.text((px(xv) - 12, height - B + 6), f"{xv:.0f}", fill=(60, 60, 60), font=font)
    d.text((width // 2 - 40, height - 18), "search NFE", fill=(0, 0, 0), font=font)
    d.text((L, 8), title, fill=(0, 0, 0), font=font)
    if baseline is not None:
        for x in range(L, width - R, 10):
            d.line([x, py(baseline), x + 5, py(baseline)], fill=(120, 120, 120))
    for k, (name, curve) in enumerate(curves.items()):
        col = PALETTE[k % len(PALETTE)]
        pts = [(px(x), py(y)) for x, y in curve]
        # best-so-far is a step function
        steps = []
        for i, p in enumerate(pts):
            if i:
                steps.append((p[0], pts[i - 1][1]))
            steps.append(p)
        if len(steps) > 1:
            d.line(steps, fill=col, width=2)
        for p in pts:
            d.ellipse([p[0] - 2, p[1] - 2, p[0] + 2, p[1] + 2], fill=col)
    # legend in the lower-right corner (best-so-far curves rise, so it rarely hides a line), on white
    lx, ly = width - R - 150, height - B - 10 - 16 * len(curves)
    d.rectangle([lx - 6, ly - 4, width - R - 4, height - B - 4], fill="white", outline=(200, 200, 200))
    for k, name in enumerate(curves):
        col = PALETTE[k % len(PALETTE)]
        d.rectangle([lx, ly + 3 + 16 * k, lx + 10, ly + 13 + 16 * k], fill=col)
        d.text((lx + 15, ly + 1 + 16 * k), name, fill=(0, 0, 0), font=font)
    if baseline is not None:
        d.text((L + 6, py(baseline) - 15), "no search", fill=(110, 110, 110), font=font)
    return img
