// Score-vs-NFE chart for the noise-search nodes, drawn on a plain <canvas> (no libraries).
//
// Pure drawing module: no side effects at import (ComfyUI auto-loads every .js under web/),
// so importing it from the extension and auto-loading it are both harmless.

const PALETTE = ["#5b9cf6", "#f6a55b", "#7bd88f", "#c792ea", "#f07178", "#4dd0e1", "#ffcb6b", "#a0a8b8"];
export const WINNER_COLOR = "#ffc94d";
export const PICK_COLOR = "#40e0d0";

export function roundColor(round) {
  const r = Number.isFinite(round) ? Math.abs(Math.trunc(round)) : 0;
  return PALETTE[r % PALETTE.length];
}

/** "Nice" tick values covering [lo, hi] (1-2-5 steps), at most about `count` of them. */
export function niceTicks(lo, hi, count = 5) {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [];
  if (hi < lo) [lo, hi] = [hi, lo];
  if (hi === lo) {
    const pad = Math.abs(lo) > 0 ? Math.abs(lo) * 0.1 : 1;
    lo -= pad;
    hi += pad;
  }
  const raw = (hi - lo) / Math.max(1, count);
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const norm = raw / mag;
  const step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
  const start = Math.ceil(lo / step - 1e-9) * step;
  const ticks = [];
  for (let v = start; v <= hi + step * 1e-9; v += step) ticks.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return ticks;
}

export function formatNumber(v, span) {
  if (!Number.isFinite(v)) return "–";
  const a = Math.abs(v);
  if (a >= 1e5) return v.toExponential(1);
  if (a >= 1000) return Math.round(v).toLocaleString("en-US");
  const s = span ?? a;
  const digits = s >= 10 ? 0 : s >= 1 ? 1 : s >= 0.1 ? 2 : s >= 0.01 ? 3 : 4;
  return v.toFixed(digits);
}

/** Best-so-far curve [(x, best)] over candidates sorted by x then index. */
export function bestCurve(points) {
  const sorted = [...points].sort((a, b) => a.x - b.x || a.index - b.index);
  const out = [];
  let best = -Infinity;
  for (const p of sorted) {
    if (p.y > best) best = p.y;
    out.push({ x: p.x, y: best });
  }
  return out;
}

/**
 * Points for the chart: x = search NFE at which a candidate was scored (the paper's x-axis),
 * or the candidate index when the node has no NFE accounting (e.g. Verifier Score).
 */
export function chartPoints(candidates) {
  const list = candidates.filter((c) => Number.isFinite(Number(c.score)));
  const hasNfe = list.some((c) => Number(c.nfe) > 0);
  return {
    xLabel: hasNfe ? "search NFE" : "candidate",
    points: list.map((c) => ({
      x: hasNfe ? Number(c.nfe) : Number(c.index),
      y: Number(c.score),
      index: Number(c.index),
      round: Number(c.round ?? 0),
    })),
  };
}

function themeColors(el) {
  const css = getComputedStyle(el);
  const pick = (name, fallback) => (css.getPropertyValue(name) || "").trim() || fallback;
  return {
    fg: pick("--fg-color", "#dddddd"),
    muted: pick("--descrip-text", "#999999"),
    grid: pick("--border-color", "#4e4e4e"),
    bg: pick("--comfy-input-bg", "#222222"),
  };
}

/**
 * Draw the chart into `canvas` (sized to its CSS box times devicePixelRatio).
 * `data`: {candidates, winner, picked, budget, mode, xLabel, emptyText, legend: [{color, text, mark}]}.
 * Returns the hit-test list in CSS pixels.
 */
export function drawChart(canvas, data) {
  const rect = canvas.getBoundingClientRect();
  const cssW = Math.max(120, Math.round(canvas.clientWidth || rect.width || 300));
  const cssH = Math.max(80, Math.round(canvas.clientHeight || rect.height || 150));
  const dpr = window.devicePixelRatio || 1;
  if (canvas.width !== Math.round(cssW * dpr) || canvas.height !== Math.round(cssH * dpr)) {
    canvas.width = Math.round(cssW * dpr);
    canvas.height = Math.round(cssH * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, cssW, cssH);
  const colors = themeColors(canvas);
  ctx.font = "10px sans-serif";

  const cp = chartPoints(data.candidates || []);
  const points = cp.points;
  const xLabel = data.xLabel && cp.xLabel === "candidate" ? data.xLabel : cp.xLabel;
  canvas.dataset.points = String(points.length);
  // top strip: the legend; bottom strip: x tick labels and the axis name on one line
  const M = { l: 44, r: 10, t: 15, b: 14 };
  const W = cssW - M.l - M.r;
  const H = cssH - M.t - M.b;

  if (!points.length) {
    // Before a run: a box centred in the canvas with the hint wrapped to its width.
    const box = { x: 8, y: 6, w: cssW - 16, h: cssH - 12 };
    ctx.fillStyle = colors.bg;
    ctx.fillRect(box.x, box.y, box.w, box.h);
    ctx.fillStyle = colors.muted;
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    const text = data.emptyText || "Queue the workflow: scores appear here while the search runs";
    const maxW = box.w - 16;
    const lines = wrapLines((t) => ctx.measureText(t).width, text, maxW);
    const lineH = 13;
    const top = box.y + box.h / 2 - ((lines.length - 1) * lineH) / 2;
    lines.forEach((line, i) => ctx.fillText(line, box.x + box.w / 2, top + i * lineH));
    delete canvas.dataset.legendRight;
    // for the browser tests: where the hint went and whether it fits its box
    canvas.dataset.placeholder = JSON.stringify({
      lines, width: Math.max(...lines.map((l) => ctx.measureText(l).width)), maxWidth: maxW,
      height: lines.length * lineH, boxHeight: box.h, left: box.x, right: cssW - box.x - box.w,
    });
    return [];
  }
  delete canvas.dataset.placeholder;

  ctx.fillStyle = colors.bg;
  ctx.fillRect(M.l, M.t, W, H);

  const budget = Number(data.budget);
  let xMax = Math.max(...points.map((p) => p.x));
  if (xLabel === "search NFE" && Number.isFinite(budget) && budget > 0) xMax = Math.max(xMax, budget);
  let xMin = xLabel === "search NFE" ? 0 : Math.min(...points.map((p) => p.x));
  if (xMax <= xMin) xMax = xMin + 1;
  let yMin = Math.min(...points.map((p) => p.y));
  let yMax = Math.max(...points.map((p) => p.y));
  const yPad = yMax > yMin ? (yMax - yMin) * 0.08 : Math.max(Math.abs(yMax) * 0.05, 0.05);
  yMin -= yPad;
  yMax += yPad;
  const xPad = (xMax - xMin) * 0.03;
  xMin -= xLabel === "search NFE" ? 0 : xPad;
  xMax += xPad;

  const sx = (x) => M.l + ((x - xMin) / (xMax - xMin)) * W;
  const sy = (y) => M.t + H - ((y - yMin) / (yMax - yMin)) * H;

  // grid + tick labels
  ctx.strokeStyle = colors.grid;
  ctx.lineWidth = 1;
  ctx.fillStyle = colors.muted;
  const yTicks = niceTicks(yMin, yMax, Math.max(3, Math.floor(H / 26)));
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  const ySpan = yMax - yMin;
  for (const t of yTicks) {
    const y = Math.round(sy(t)) + 0.5;
    ctx.globalAlpha = 0.45;
    ctx.beginPath();
    ctx.moveTo(M.l, y);
    ctx.lineTo(M.l + W, y);
    ctx.stroke();
    ctx.globalAlpha = 1;
    ctx.fillText(formatNumber(t, ySpan / 4), M.l - 5, y);
  }
  const xTicks = niceTicks(Math.max(xMin, xLabel === "search NFE" ? 0 : xMin), xMax, Math.max(2, Math.floor(W / 60)));
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  // the axis name sits at the right end of the tick row; tick labels that would touch it are left out
  const nameLeft = M.l + W - ctx.measureText(xLabel).width - 6;
  for (const t of xTicks) {
    if (xLabel !== "search NFE" && !Number.isInteger(t)) continue;
    const x = Math.round(sx(t)) + 0.5;
    ctx.globalAlpha = 0.3;
    ctx.beginPath();
    ctx.moveTo(x, M.t);
    ctx.lineTo(x, M.t + H);
    ctx.stroke();
    ctx.globalAlpha = 1;
    const label = xLabel !== "search NFE" ? String(t) : formatNumber(t, xMax - xMin);
    if (x + ctx.measureText(label).width / 2 < nameLeft) ctx.fillText(label, x, M.t + H + 2);
  }
  ctx.textAlign = "right";
  ctx.fillText(xLabel, M.l + W, M.t + H + 2);

  // NFE budget marker, labelled inside the plot next to its line
  if (xLabel === "search NFE" && Number.isFinite(budget) && budget > 0) {
    const x = Math.round(sx(budget)) + 0.5;
    ctx.save();
    ctx.setLineDash([4, 3]);
    ctx.strokeStyle = colors.muted;
    ctx.beginPath();
    ctx.moveTo(x, M.t);
    ctx.lineTo(x, M.t + H);
    ctx.stroke();
    ctx.restore();
    ctx.fillStyle = colors.muted;
    const text = `budget ${formatNumber(budget)}`;
    const right = x + 3 + ctx.measureText(text).width > M.l + W;
    ctx.textAlign = right ? "right" : "left";
    ctx.textBaseline = "top";
    ctx.fillText(text, right ? x - 3 : x + 3, M.t + 2);
  }

  // legend in the top strip
  let lx = M.l;
  ctx.textAlign = "left";
  ctx.textBaseline = "middle";
  for (const item of data.legend || []) {
    const y = Math.round(M.t / 2);
    ctx.fillStyle = item.color;
    ctx.strokeStyle = item.color;
    if (item.mark === "line") {
      ctx.fillRect(lx, y - 1, 12, 2);
      lx += 16;
    } else {
      ctx.beginPath();
      ctx.arc(lx + 4, y, 3.5, 0, Math.PI * 2);
      ctx.fill();
      lx += 11;
    }
    ctx.fillStyle = colors.muted;
    ctx.fillText(item.text, lx, y);
    lx += ctx.measureText(item.text).width + 12;
  }
  canvas.dataset.legendRight = String(Math.round(lx - 12)); // for the browser tests: the legend must fit

  const bars = data.mode === "bars";
  if (bars) {
    // one stem per scored image (Verifier Score): the order is the batch's, so no best-so-far line
    const base = sy(yMin);
    ctx.save();
    ctx.lineWidth = Math.max(2, Math.min(10, (W / Math.max(1, points.length)) * 0.35));
    ctx.lineCap = "butt";
    for (const p of points) {
      const special = p.index === Number(data.winner) ? WINNER_COLOR : p.index === Number(data.picked) ? PICK_COLOR : null;
      ctx.strokeStyle = special ?? roundColor(0);
      ctx.globalAlpha = special ? 0.9 : 0.55;
      ctx.beginPath();
      ctx.moveTo(sx(p.x), base);
      ctx.lineTo(sx(p.x), sy(p.y));
      ctx.stroke();
    }
    ctx.restore();
  }

  // best-so-far step line
  const curve = bars ? [] : bestCurve(points);
  ctx.save();
  ctx.strokeStyle = WINNER_COLOR;
  ctx.globalAlpha = 0.85;
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  curve.forEach((p, i) => {
    const x = sx(p.x), y = sy(p.y);
    if (i === 0) ctx.moveTo(x, y);
    else {
      ctx.lineTo(x, sy(curve[i - 1].y));
      ctx.lineTo(x, y);
    }
  });
  ctx.stroke();
  ctx.restore();

  // candidates
  const hits = [];
  for (const p of points) {
    const x = sx(p.x), y = sy(p.y);
    ctx.beginPath();
    ctx.arc(x, y, 2.6, 0, Math.PI * 2);
    ctx.fillStyle = roundColor(p.round);
    ctx.globalAlpha = 0.85;
    ctx.fill();
    ctx.globalAlpha = 1;
    hits.push({ x, y, index: p.index });
  }
  const ring = (index, color, r) => {
    const p = points.find((q) => q.index === index);
    if (!p) return;
    ctx.beginPath();
    ctx.arc(sx(p.x), sy(p.y), r, 0, Math.PI * 2);
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    ctx.stroke();
  };
  if (data.winner != null && data.winner >= 0) ring(Number(data.winner), WINNER_COLOR, 6);
  if (data.picked != null && data.picked >= 0 && data.picked !== data.winner) ring(Number(data.picked), PICK_COLOR, 6);

  // frame
  ctx.strokeStyle = colors.grid;
  ctx.lineWidth = 1;
  ctx.strokeRect(M.l + 0.5, M.t + 0.5, W - 1, H - 1);
  return hits;
}

/**
 * Split `text` into lines no wider than `maxWidth` (by `measure(string) -> px`), breaking at spaces;
 * a single word wider than the box is broken by characters.
 */
export function wrapLines(measure, text, maxWidth) {
  const lines = [];
  let line = "";
  for (const word of String(text).split(/\s+/).filter(Boolean)) {
    const next = line ? `${line} ${word}` : word;
    if (measure(next) <= maxWidth) {
      line = next;
      continue;
    }
    if (line) lines.push(line);
    line = word;
    while (measure(line) > maxWidth && line.length > 1) {
      let k = line.length - 1;
      while (k > 1 && measure(line.slice(0, k)) > maxWidth) k--;
      lines.push(line.slice(0, k));
      line = line.slice(k);
    }
  }
  if (line) lines.push(line);
  return lines;
}

/** Nearest hit within `radius` CSS pixels of (x, y), or null. */
export function hitTest(hits, x, y, radius = 7) {
  let best = null, bestD = radius * radius;
  for (const h of hits || []) {
    const d = (h.x - x) ** 2 + (h.y - y) ** 2;
    if (d <= bestD) {
      best = h;
      bestD = d;
    }
  }
  return best;
}
