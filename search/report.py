"""The pack's pictures, drawn with PIL only, and its one IMAGE-to-PIL conversion: a ranked candidate grid and a
score-vs-NFE chart (the CLI demo and the ComfyUI nodes, which turn the PIL image into an IMAGE tensor), a general
x-y chart and labelled rows of images (the fidelity study's plots, ``toyworld/fidelity/plots.py``).
"""

import math

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

__all__ = ['PALETTE', 'WINNER', 'ROUNDINGS', 'to_pil', 'pil_to_image', 'fit_text', 'candidate_label',
           'candidate_grid', 'nice_ticks', 'tick_text', 'score_vs_nfe_plot', 'chart', 'image_rows']

PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
WINNER = (230, 180, 0)


def _font(size=12):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


ROUNDINGS = ("round", "truncate")


def to_pil(image, rounding="round"):
    """IMAGE tensor [H, W, C] (or [1, H, W, C]) in 0..1 -> RGB PIL image (one channel is repeated to three).

    ``rounding``: how 0..1 becomes 0..255.
    - ``"truncate"``: ComfyUI's SaveImage bit for bit (``np.clip(255 * x, 0, 255).astype(uint8)``): for an IMAGE
      saved as a file, which must hold the same pixels as the same IMAGE saved by SaveImage.
    - ``"round"``: the nearest 8-bit value: for pictures drawn from IMAGEs (grids, charts, previews).
    """
    a = image.detach().float().cpu()
    if a.ndim == 4:
        a = a[0]
    if rounding == "truncate":
        a = np.clip(255.0 * a.numpy(), 0, 255).astype(np.uint8)
    elif rounding == "round":
        a = (a.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    else:
        raise ValueError(f"rounding must be one of {', '.join(ROUNDINGS)}, got {rounding!r}")
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    return Image.fromarray(a[..., :3], "RGB")


def pil_to_image(img):
    """RGB PIL image -> IMAGE tensor [1, H, W, 3] in 0..1."""
    return torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0)[None]


def fit_text(draw, text, font, width):
    """``text`` cut to ``width`` pixels with "..." when it is longer: a label never runs into the next tile."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text.rstrip() + "..."


def candidate_label(recipe):
    """Two short lines that tell a search's candidates apart in a grid (the full recipe is in the JSON):
    a seed; a zero-order neighbour by iteration and index, with the pivot it was drawn around; a path by its
    initial seed and the branch it took in each round ("branches 5-3-1": branch 5 of round 1, 3 of round 2...)."""
    kind = getattr(recipe, "kind", None)
    if kind == "neighbour":
        pivot = recipe.pivot
        around = f"iter {pivot.iteration} nbr {pivot.index}" if getattr(pivot, "kind", None) == "neighbour" else pivot.describe()
        return f"iter {recipe.iteration}, nbr {recipe.index}\npivot: {around}"
    if kind == "path":
        return f"path of {recipe.root().describe()}\nbranches {'-'.join(str(link.index) for link in recipe.chain())}"
    return recipe.describe()


def candidate_grid(images, scores, labels=None, winner=0, columns=8, cell=96):
    """Candidates (best first) in a grid with their rank and score; the winner gets a gold frame.
    ``labels``: one per candidate, up to two lines (``candidate_label``), each cut to the tile's width."""
    n = len(images)
    if n == 0:
        raise ValueError("candidate_grid needs at least one image")
    cols = max(1, min(columns, n))
    rows = (n + cols - 1) // cols
    pad, line_h = 6, 13
    label_lines = [str(t).splitlines()[:2] for t in labels] if labels is not None else [[] for _ in range(n)]
    text_h = line_h * (1 + max(len(lines) for lines in label_lines)) + 4
    img = Image.new("RGB", (cols * (cell + pad) + pad, rows * (cell + text_h + pad) + pad), (250, 250, 250))
    draw, font = ImageDraw.Draw(img), _font(11)
    for i in range(n):
        r, c = divmod(i, cols)
        x0, y0 = pad + c * (cell + pad), pad + r * (cell + text_h + pad)
        tile = to_pil(images[i]).resize((cell, cell), Image.NEAREST)
        img.paste(tile, (x0, y0))
        if i == winner:
            draw.rectangle([x0 - 3, y0 - 3, x0 + cell + 2, y0 + cell + 2], outline=WINNER, width=3)
        draw.text((x0, y0 + cell + 2), f"#{i + 1}  {scores[i]:.3f}", fill=(0, 0, 0), font=font)
        for k, line in enumerate(label_lines[i]):
            draw.text((x0, y0 + cell + 2 + line_h * (k + 1)), fit_text(draw, line, font, cell), fill=(90, 90, 90), font=font)
    return img


def nice_ticks(lo, hi, count=5):
    """About ``count`` round tick values covering [lo, hi], and their step (1, 2 or 5 times a power of ten,
    the nearest to an even split): axes read 10, 12, 14 rather than 9.03, 11.1, 13.2."""
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    raw = (hi - lo) / max(1, count - 1)
    power = 10.0 ** math.floor(math.log10(raw))
    fraction = raw / power
    step = power * (1 if fraction < 1.5 else 2 if fraction < 3 else 5 if fraction < 7 else 10)
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [round(k * step, 10) for k in range(first, last + 1)], step


def tick_text(value, step):
    """A tick value with as many decimals as its step needs (0.5 -> one, 0.02 -> two, 100 -> none)."""
    decimals = 0
    while decimals < 6 and abs(step * 10 ** decimals - round(step * 10 ** decimals)) > 1e-6:
        decimals += 1
    return f"{value:.{decimals}f}"


def _vertical_text(img, text, x, y_mid, font, fill):
    """Draw ``text`` turned 90 degrees (reading upwards), centred on ``y_mid``: the y-axis label."""
    w = int(ImageDraw.Draw(img).textlength(text, font=font)) + 2
    strip = Image.new("RGB", (w, 16), "white")
    ImageDraw.Draw(strip).text((1, 1), text, fill=fill, font=font)
    strip = strip.rotate(90, expand=True)
    img.paste(strip, (x, int(y_mid - strip.height / 2)))


def _dashed(d, x0, x1, y, fill):
    for x in range(int(x0), int(x1), 10):
        d.line([x, y, min(x + 5, x1), y], fill=fill)


def score_vs_nfe_plot(curves, width=640, height=400, title="best score vs search NFE", baseline=None, y_label="best score"):
    """Line chart of {name: [(nfe, best_score), ...]} (best-so-far steps); ``baseline`` draws a dashed
    horizontal reference ("no search"). The legend is a row above the plot, so nothing is written over a curve."""
    pts = [p for c in curves.values() for p in c]
    if not pts:
        raise ValueError("score_vs_nfe_plot needs at least one point")
    ys = [p[1] for p in pts] + ([baseline] if baseline is not None else [])
    pad = (max(ys) - min(ys)) * 0.04
    y_ticks, y_step = nice_ticks(min(ys) - pad, max(ys) + pad)
    x_lo, x_hi = 0, max(p[0] for p in pts) or 1  # the x axis ends at the budget spent, ticks inside it
    x_ticks, x_step = nice_ticks(x_lo, x_hi, count=8)
    x_ticks = [x for x in x_ticks if x <= x_hi]
    y_lo, y_hi = y_ticks[0], y_ticks[-1]
    L, R, T, B = 72, 16, 48, 46
    img = Image.new("RGB", (width, height), "white")
    d, font = ImageDraw.Draw(img), _font(12)
    px = lambda x: L + (x - x_lo) / (x_hi - x_lo) * (width - L - R)
    py = lambda y: height - B - (y - y_lo) / (y_hi - y_lo) * (height - T - B)
    for yv in y_ticks:
        d.line([L, py(yv), width - R, py(yv)], fill=(235, 235, 235))
        text = tick_text(yv, y_step)
        d.text((L - 6 - d.textlength(text, font=font), py(yv) - 7), text, fill=(60, 60, 60), font=font)
    for xv in x_ticks:
        text = tick_text(xv, x_step)
        d.text((px(xv) - d.textlength(text, font=font) / 2, height - B + 6), text, fill=(60, 60, 60), font=font)
    d.rectangle([L, T, width - R, height - B], outline=(160, 160, 160))
    d.text((L + (width - L - R) / 2 - d.textlength("search NFE", font=font) / 2, height - 20), "search NFE", fill=(0, 0, 0), font=font)
    _vertical_text(img, y_label, 4, T + (height - T - B) / 2, font, (0, 0, 0))
    d.text((L, 6), title, fill=(0, 0, 0), font=font)
    if baseline is not None:
        _dashed(d, L + 1, width - R - 1, py(baseline), (120, 120, 120))
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
    # legend: one row between the title and the plot
    x = L
    for k, name in enumerate(curves):
        d.rectangle([x, 31, x + 10, 41], fill=PALETTE[k % len(PALETTE)])
        d.text((x + 15, 29), name, fill=(0, 0, 0), font=font)
        x += 15 + d.textlength(name, font=font) + 18
    if baseline is not None:
        _dashed(d, x, x + 22, 36, (120, 120, 120))
        d.text((x + 27, 29), "no search (one sample)", fill=(0, 0, 0), font=font)
    return img


# -- general charts (the fidelity study's plots) ----------------------------------------------------------------

def chart(series, title, xlabel, ylabel, logx=False, width=720, height=440, label_points=False):
    """PIL chart of [{"name", "points": [(x, y)], "dashed"?, "line"?}]: lines (or labelled points) with a legend."""
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


def image_rows(rows, title, cell=40, label_w=120):
    """Rows of IMAGE batches ``{label: [N, H, W, C]}`` with a label each and a title, every image scaled to
    ``cell`` pixels with nearest neighbour."""
    cols = max(x.shape[0] for x in rows.values())
    pad = 4
    img = Image.new("RGB", (label_w + cols * (cell + pad) + pad, 28 + len(rows) * (cell + pad) + pad), "white")
    d = ImageDraw.Draw(img)
    d.text((pad, 6), title, fill=(0, 0, 0), font=_font(12))
    for r, (name, x) in enumerate(rows.items()):
        y0 = 28 + r * (cell + pad)
        d.text((pad, y0 + cell // 2 - 7), name, fill=(0, 0, 0), font=_font(12))
        for k, im in enumerate(x):
            img.paste(to_pil(im).resize((cell, cell), Image.NEAREST), (label_w + pad + k * (cell + pad), y0))
    return img
