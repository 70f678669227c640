// noise-search frontend: candidate gallery, live score-vs-NFE chart and "pick another candidate"
// inside the search nodes and Verifier Score.
//
// Uses only the current extension API (window.comfyAPI.*, app.registerExtension); no legacy
// /scripts/ui* or /extensions/core/* imports. Protocol: nodes/PROTOCOL.md.

import { drawChart, hitTest, formatNumber, roundColor, WINNER_COLOR, PICK_COLOR } from "./noise_search/chart.js";
import {
  emptyState,
  applyProgress,
  applyFinal,
  candidateList,
  galleryEntries,
  outputIndex,
  recipeSummary,
} from "./noise_search/state.js";

const { app } = window.comfyAPI.app;
const { api } = window.comfyAPI.api;

export const EXTENSION = "noise-search.CandidateGallery";
export const PROGRESS_EVENT = "noise-search.progress";
export const SEARCH_NODES = new Set(["RandomSearch_NoiseSearch", "ZeroOrderSearch_NoiseSearch", "PathSearch_NoiseSearch"]);
export const SCORE_NODES = new Set(["VerifierScore_NoiseSearch"]);
const PANEL_WIDGET = "noise_search_panel";
const PICK_WIDGET = "pick";
const MIN_WIDTH = 440;
const WIDGET_MARGIN = 8; // the frontend sizes a DOM widget's element to its slot minus this on each side

const ALGORITHM_NAMES = {
  random: "Random search",
  zero_order: "Zero-order search",
  zero_order_search: "Zero-order search",
  paths: "Search over paths",
  path: "Search over paths",
  verifier: "Verifier scores",
  score: "Verifier scores",
};

// ------------------------------------------------------------------ styles

const CSS = `
.ns-panel { box-sizing: border-box; display: flex; flex-direction: column; gap: 6px; padding: 6px 8px 8px;
  font: 12px/1.35 var(--comfy-font, Inter, Arial, sans-serif); color: var(--fg-color, #ddd);
  background: var(--comfy-menu-bg, #353535); border: 1px solid var(--border-color, #4e4e4e); border-radius: 6px;
  overflow: hidden; pointer-events: auto; user-select: none; }
.ns-head { display: flex; align-items: center; gap: 8px; min-height: 18px; }
.ns-title { font-weight: 600; font-size: 12.5px; white-space: nowrap; flex: 1; overflow: hidden; text-overflow: ellipsis; }
.ns-stats { display: flex; flex-wrap: wrap; gap: 4px 6px; min-height: 18px; }
.ns-stat { font-size: 11px; padding: 1px 7px; border-radius: 4px; background: var(--comfy-input-bg, #222);
  color: var(--descrip-text, #999); white-space: nowrap; font-variant-numeric: tabular-nums; }
.ns-stat b { color: var(--fg-color, #ddd); font-weight: 600; margin-left: 3px; }
.ns-stat.ns-stat-best b { color: ${WINNER_COLOR}; }
.ns-status { font-size: 10.5px; padding: 1px 7px; border-radius: 9px; background: var(--comfy-input-bg, #222);
  color: var(--descrip-text, #999); white-space: nowrap; }
.ns-status.ns-running { color: #111; background: #7bd88f; }
.ns-chart { width: 100%; height: 140px; display: block; border-radius: 4px; cursor: crosshair; }
.ns-legend { display: flex; gap: 12px; color: var(--descrip-text, #999); font-size: 10.5px; margin-top: -2px; }
.ns-legend i { display: inline-block; width: 9px; height: 9px; border-radius: 50%; margin-right: 4px; vertical-align: -1px; }
.ns-legend i.ns-line { width: 14px; height: 2px; border-radius: 1px; vertical-align: 2px; }
.ns-grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(84px, 1fr)); gap: 6px; }
.ns-card { position: relative; border-radius: 5px; overflow: hidden; cursor: pointer; background: var(--comfy-input-bg, #222);
  border: 2px solid transparent; transition: border-color .12s, transform .12s; }
.ns-card:hover { border-color: var(--descrip-text, #999); transform: translateY(-1px); }
.ns-card.ns-nopick { cursor: default; }
.ns-card.ns-winner { border-color: ${WINNER_COLOR}; }
.ns-card.ns-picked { border-color: ${PICK_COLOR}; box-shadow: 0 0 0 1px ${PICK_COLOR}; }
.ns-thumb { display: block; width: 100%; aspect-ratio: 1 / 1; object-fit: cover; background: #111; }
.ns-thumb.ns-empty { display: flex; align-items: center; justify-content: center; color: var(--descrip-text, #888); font-size: 10px; }
.ns-cap { display: flex; justify-content: space-between; align-items: center; gap: 4px; padding: 3px 5px;
  font-size: 11px; font-variant-numeric: tabular-nums; }
.ns-cap b { font-weight: 600; }
.ns-cap span { color: var(--descrip-text, #999); }
.ns-badge { position: absolute; top: 3px; left: 3px; padding: 0 5px; border-radius: 8px; font-size: 10px; line-height: 15px;
  font-weight: 600; background: rgba(0,0,0,.65); color: #fff; }
.ns-badge.ns-b-win { background: ${WINNER_COLOR}; color: #222; }
.ns-badge.ns-b-pick { left: auto; right: 3px; background: ${PICK_COLOR}; color: #053; }
.ns-badge.ns-b-out { top: auto; bottom: 24px; left: 3px; background: rgba(0,0,0,.7); color: #fff; font-weight: 500; }
.ns-foot { display: flex; align-items: center; gap: 8px; }
.ns-note { flex: 1; color: var(--descrip-text, #999); font-size: 11px; }
.ns-note b { color: var(--fg-color, #ddd); font-weight: 600; }
.ns-btn { font: inherit; font-size: 11px; padding: 2px 9px; border-radius: 4px; cursor: pointer;
  color: var(--input-text, #ddd); background: var(--comfy-input-bg, #222); border: 1px solid var(--border-color, #4e4e4e); }
.ns-btn:hover:not(:disabled) { border-color: ${PICK_COLOR}; }
.ns-btn:disabled { opacity: .45; cursor: default; }
.ns-btn-run { border-color: ${PICK_COLOR}; color: ${PICK_COLOR}; }
.ns-tip { position: fixed; z-index: 10000; pointer-events: none; padding: 4px 7px; border-radius: 4px; font-size: 11px;
  background: rgba(20,20,20,.92); color: #eee; border: 1px solid #555; max-width: 320px; display: none; }
`;

function ensureStyles() {
  if (document.getElementById("noise-search-css")) return;
  const style = document.createElement("style");
  style.id = "noise-search-css";
  style.textContent = CSS;
  document.head.appendChild(style);
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  return e;
}

// ------------------------------------------------------------------ node lookup

const panels = new Set(); // live Panel objects

/** Resolve an execution id ("12" or "5:12" inside a subgraph) to a node of the open workflow. */
function nodeByExecutionId(executionId) {
  const parts = String(executionId).split(":");
  let graph = app.graph;
  let node = null;
  for (let i = 0; i < parts.length; i++) {
    if (!graph) return null;
    node = graph.getNodeById?.(Number(parts[i])) ?? graph.getNodeById?.(parts[i]) ?? null;
    if (!node) return null;
    if (i < parts.length - 1) graph = node.subgraph;
  }
  return node;
}

function findWidget(node, name) {
  return node.widgets?.find((w) => w.name === name) ?? null;
}

function viewURL(image) {
  const params = new URLSearchParams({
    filename: image.filename ?? "",
    subfolder: image.subfolder ?? "",
    type: image.type ?? "temp",
  });
  const extra = (app.getPreviewFormatParam?.() ?? "") + (app.getRandParam?.() ?? "");
  return api.apiURL(`/view?${params.toString()}${extra}`);
}

// ------------------------------------------------------------------ panel

class Panel {
  constructor(node, kind) {
    this.node = node;
    this.kind = kind; // "search" | "score"
    this.state = emptyState();
    this.hits = [];
    this.build();
  }

  build() {
    ensureStyles();
    const root = el("div", "ns-panel");
    root.dataset.nsPanel = this.kind;
    root.dataset.nodeId = String(this.node.id);
    const head = el("div", "ns-head");
    this.titleEl = el("span", "ns-title", this.kind === "score" ? "Verifier scores" : "Noise search");
    this.statusEl = el("span", "ns-status", "idle");
    head.append(this.titleEl, this.statusEl);
    this.statsEl = el("div", "ns-stats");

    this.canvas = el("canvas", "ns-chart");
    this.canvas.addEventListener("mousemove", (e) => this.onChartHover(e));
    this.canvas.addEventListener("mouseleave", () => this.hideTip());
    this.canvas.addEventListener("click", (e) => this.onChartClick(e));

    const legend = el("div", "ns-legend");
    const item = (color, text, line = false) => {
      const s = el("span");
      const i = el("i", line ? "ns-line" : null);
      i.style.background = color;
      s.append(i, document.createTextNode(text));
      return s;
    };
    this.legendItems = {
      candidate: item(roundColor(0), this.kind === "score" ? "image score" : "candidate"),
      best: this.kind === "score" ? item(WINNER_COLOR, "verifier's best") : item(WINNER_COLOR, "best so far", true),
      pick: item(PICK_COLOR, "your pick"),
    };
    legend.append(this.legendItems.candidate, this.legendItems.best, this.legendItems.pick);
    this.legendEl = legend;

    this.grid = el("div", "ns-grid");
    const foot = el("div", "ns-foot");
    this.noteEl = el("span", "ns-note");
    this.resetBtn = el("button", "ns-btn", "Reset to verifier");
    this.resetBtn.title = "Set pick to -1: the next run outputs the verifier's choice";
    this.resetBtn.addEventListener("click", (e) => {
      e.stopPropagation();
      this.setPick(-1);
    });
    this.runBtn = el("button", "ns-btn ns-btn-run", "▶ Run");
    this.runBtn.title = "Queue the workflow now, so the node outputs the candidate you picked";
    this.runBtn.addEventListener("click", (e) => {
      e.stopPropagation();
      app.queuePrompt(0, 1);
    });
    foot.append(this.noteEl, this.resetBtn, this.runBtn);

    this.tip = el("div", "ns-tip");
    document.body.appendChild(this.tip);

    root.append(head, this.statsEl, this.canvas, legend, this.grid, foot);
    // keep canvas interactions (pan/zoom) from leaking into thumbnails' clicks
    root.addEventListener("pointerdown", (e) => e.stopPropagation());
    this.root = root;
    this.resizeObserver = new ResizeObserver(() => this.drawChart());
    this.resizeObserver.observe(this.canvas);
    this.render();
  }

  destroy() {
    this.resizeObserver?.disconnect();
    this.tip?.remove();
    panels.delete(this);
  }

  get pickWidget() {
    return findWidget(this.node, PICK_WIDGET);
  }

  /** Pick value the next run will use (-1 = verifier's choice), or null if the node has no pick input. */
  get pendingPick() {
    const w = this.pickWidget;
    if (!w) return null;
    const v = Number(w.value);
    return Number.isFinite(v) ? v : -1;
  }

  setPick(index) {
    const w = this.pickWidget;
    if (!w) return;
    const v = Number(index);
    w.value = v;
    w.callback?.(v, app.canvas, this.node);
    if (v >= 0) this.holdSeed();
    this.node.setDirtyCanvas?.(true, true);
    app.graph?.setDirtyCanvas?.(true, true);
    this.render();
  }

  /**
   * A pick names a candidate of the run shown here; if the seed widget would change on the next
   * queue (control_after_generate != fixed) the search would draw other candidates, so put back the
   * seed this run used and fix it.
   */
  holdSeed() {
    const seedW = findWidget(this.node, "seed");
    const control = seedW?.linkedWidgets?.find((w) => w.name === "control_after_generate") ??
      findWidget(this.node, "control_after_generate");
    // The seed the shown run used: from the node's output when it says, else the value this node sent
    // with its last queued prompt (captured in serializeValue below).
    const used = this.state.final?.seed ?? this.state.final?.params?.seed ?? this.queuedSeed;
    this.seedNote = "";
    if (!seedW) return;
    if (used != null && Number(seedW.value) !== Number(used)) {
      seedW.value = Number(used);
      seedW.callback?.(seedW.value, app.canvas, this.node);
      this.seedNote = ` Seed set back to ${used}.`;
    }
    if (control && control.value !== "fixed") {
      control.value = "fixed";
      control.callback?.(control.value, app.canvas, this.node);
      this.seedNote += " Seed fixed so the pick refers to this search.";
    }
  }

  onProgress(msg) {
    // Nodes that cannot know their prompt id get the one of the last execution_start.
    const promptId = msg?.prompt_id ?? this.pendingPromptId ?? null;
    if (promptId !== this.state.promptId) this.seedNote = "";
    applyProgress(this.state, { ...msg, prompt_id: promptId });
    this.render();
  }

  onFinal(entry, promptId = null) {
    if (promptId != null && promptId !== this.state.promptId) this.seedNote = "";
    applyFinal(this.state, entry, promptId);
    this.render();
  }

  drawChart() {
    const s = this.state;
    const pending = this.pendingPick;
    const picked = pending != null && pending >= 0 ? pending : (s.final?.picked ?? null);
    this.hits = drawChart(this.canvas, {
      candidates: candidateList(s),
      winner: s.final ? s.final.winner : s.bestIndex,
      picked,
      budget: s.budget,
      mode: this.kind === "score" ? "bars" : "scatter",
      xLabel: this.kind === "score" ? "image index" : undefined,
      emptyText: this.kind === "score" ? "Scores appear here after a run" : undefined,
    });
  }

  render() {
    const s = this.state;
    const f = s.final;
    const n = s.candidates.size;
    const alg = s.algorithm ? ALGORITHM_NAMES[s.algorithm] ?? s.algorithm : null;
    if (alg) this.titleEl.textContent = alg;
    const stats = [];
    if (n) stats.push([this.kind === "score" ? "images" : "candidates", String(n)]);
    if (s.nfe && this.kind === "search") stats.push(["search NFE", `${formatNumber(s.nfe)}${s.budget ? ` / ${formatNumber(s.budget)}` : ""}`]);
    const bestIdx = f ? f.winner : s.bestIndex;
    const best = bestIdx != null ? s.candidates.get(Number(bestIdx)) : null;
    if (best && Number.isFinite(Number(best.score))) stats.push(["best", `${Number(best.score).toFixed(4)}  #${best.index}`, "ns-stat-best"]);
    this.statsEl.replaceChildren(...stats.map(([k, v, cls]) => {
      const chip = el("span", cls ? `ns-stat ${cls}` : "ns-stat", k);
      chip.append(el("b", null, v));
      return chip;
    }));
    this.statsEl.style.display = stats.length ? "" : "none";
    this.statusEl.textContent = s.running ? (this.kind === "score" ? "scoring…" : "searching…") : f ? "done" : s.stopped ?? "idle";
    this.statusEl.classList.toggle("ns-running", !!s.running);
    this.root.dataset.nodeId = String(this.node.id);
    this.root.dataset.state = s.running ? "running" : f ? "done" : s.stopped ?? "idle";
    this.root.dataset.candidates = String(n);

    const rounds = new Set(candidateList(s).map((c) => Number(c.round ?? 0)));
    const label = this.legendItems.candidate.lastChild;
    if (this.kind === "search") label.textContent = rounds.size > 1 ? `candidate (colour = ${s.algorithm === "zero_order" ? "iteration" : "round"})` : "candidate";
    this.drawChart();
    this.renderGallery();
    this.renderFooter();
    if (this.node.graph) {
      const h = panelHeight(this);
      if (h !== this.lastHeight) {
        this.lastHeight = h;
        fitNode(this.node);
      }
    }
  }

  renderGallery() {
    const s = this.state;
    const f = s.final;
    // While searching, show as many live slots as the last run kept (top-K), so the node keeps its size.
    this.liveSlots = f?.top_k?.length || this.liveSlots || 4;
    const entries = galleryEntries(s, this.liveSlots);
    const pending = this.pendingPick;
    const out = outputIndex(s);
    // Only a finished run's kept top-K can be picked (PROTOCOL.md section 3).
    const keptTopK = new Set((f?.top_k ?? []).map(Number));
    this.grid.replaceChildren();
    for (const { rank, candidate: c, image } of entries) {
      const canPick = pending != null && keptTopK.has(c.index);
      const card = el("div", "ns-card");
      card.dataset.index = String(c.index);
      const isWinner = f ? Number(f.winner) === c.index : rank === 0;
      const isPicked = pending != null && pending >= 0 && pending === c.index;
      card.classList.toggle("ns-winner", isWinner);
      card.classList.toggle("ns-picked", isPicked);
      card.classList.toggle("ns-nopick", !canPick);
      let thumb;
      if (image && image.filename) {
        thumb = el("img", "ns-thumb");
        thumb.loading = "lazy";
        thumb.draggable = false;
        thumb.alt = `candidate ${c.index}`;
        thumb.src = viewURL(image);
      } else {
        thumb = el("div", "ns-thumb ns-empty", s.running ? "image when done" : s.stopped ? "not rendered" : "no image");
      }
      const badge = el("span", isWinner ? "ns-badge ns-b-win" : "ns-badge", isWinner ? "★ verifier" : `#${rank + 1}`);
      card.append(thumb, badge);
      if (isPicked) card.append(el("span", "ns-badge ns-b-pick", "✓ pick"));
      if (f && out === c.index && Number(f.picked) >= 0) card.append(el("span", "ns-badge ns-b-out", "output"));
      const cap = el("div", "ns-cap");
      const score = el("b", "ns-score", Number.isFinite(Number(c.score)) ? Number(c.score).toFixed(4) : "–");
      cap.append(score, el("span", null, `#${c.index}`));
      card.append(cap);
      const lines = [`candidate #${c.index} · score ${c.score ?? "–"}`];
      if (c.nfe != null) lines.push(`scored at search NFE ${c.nfe}${c.round != null ? `, round ${c.round}` : ""}`);
      if (c.seed != null) lines.push(`seed ${c.seed}`);
      if (c.recipe) lines.push(recipeSummary(c.recipe));
      if (canPick) lines.push(isPicked ? "picked: the next run outputs this one" : "click: output this candidate on the next run");
      card.title = lines.join("\n");
      card.addEventListener("click", (e) => {
        e.stopPropagation();
        if (!canPick) return;
        this.setPick(isPicked ? -1 : c.index);
      });
      this.grid.append(card);
    }
    this.grid.style.display = entries.length ? "" : "none";
  }

  renderFooter() {
    const s = this.state;
    const f = s.final;
    const pending = this.pendingPick;
    this.resetBtn.style.display = pending == null ? "none" : "";
    this.resetBtn.disabled = pending == null || pending < 0;
    // "Run" when the next run would output something else than what is shown
    const shown = f ? (Number(f.picked) >= 0 ? Number(f.picked) : -1) : null;
    this.runBtn.style.display = pending != null && f && !s.running && pending !== shown ? "" : "none";
    const note = [];
    if (f && Number(f.picked) >= 0) note.push(`Output: <b>#${Number(f.picked)}</b> (picked; verifier chose #${f.winner}).`);
    else if (f && f.winner != null) note.push(`Output: <b>#${f.winner}</b> (verifier's choice).`);
    if (pending != null) {
      if (pending >= 0) note.push(`Next run outputs <b>#${pending}</b>.${this.seedNote ?? ""}`);
      else if (f) note.push("Click a thumbnail to output another candidate.");
    }
    if (!f && s.stopped && s.candidates.size) {
      note.push(s.stopped === "cancelled"
        ? `Search cancelled after ${s.candidates.size} candidates; the best so far is saved in ComfyUI's temp folder (noise_search/partial_*).`
        : `The run failed after ${s.candidates.size} candidates (see the error message).`);
    }
    if (!f && !s.running && !s.candidates.size) note.push(this.kind === "score" ? "Run the workflow to score images." : "Run the workflow to search.");
    this.noteEl.innerHTML = note.join(" ");
  }

  onChartHover(e) {
    const r = this.canvas.getBoundingClientRect();
    const h = hitTest(this.hits, e.clientX - r.left, e.clientY - r.top);
    if (!h) return this.hideTip();
    const c = this.state.candidates.get(h.index);
    if (!c) return this.hideTip();
    const lines = [`#${c.index}  score ${Number(c.score).toFixed(4)}`];
    if (c.nfe != null) lines.push(`NFE ${c.nfe}${c.round != null ? ` · round ${c.round}` : ""}`);
    if (c.recipe) lines.push(recipeSummary(c.recipe));
    else if (c.seed != null) lines.push(`seed ${c.seed}`);
    this.tip.textContent = lines.join("\n");
    this.tip.style.whiteSpace = "pre";
    this.tip.style.left = `${e.clientX + 12}px`;
    this.tip.style.top = `${e.clientY + 12}px`;
    this.tip.style.display = "block";
  }

  hideTip() {
    if (this.tip) this.tip.style.display = "none";
  }

  onChartClick(e) {
    // Picking from the chart works for candidates the gallery holds (the kept top-K).
    const r = this.canvas.getBoundingClientRect();
    const h = hitTest(this.hits, e.clientX - r.left, e.clientY - r.top);
    if (!h || this.pendingPick == null) return;
    const topK = this.state.final?.top_k?.map(Number) ?? [];
    if (topK.includes(h.index)) this.setPick(h.index);
  }
}

// ------------------------------------------------------------------ wiring

/** Height the panel's content needs at its current width (measured; estimated before layout). */
function panelHeight(panel) {
  const root = panel.root;
  const kids = [...root.children].filter((k) => k.style.display !== "none");
  let h = 6 + 8 + 2 + 6 * (kids.length - 1);
  let measured = true;
  for (const k of kids) {
    if (!k.offsetHeight) measured = false;
    h += k.offsetHeight;
  }
  if (measured) return Math.ceil(h) + 2 * WIDGET_MARGIN;
  const cards = panel.grid.childElementCount;
  const width = Math.max(MIN_WIDTH, panel.node.size?.[0] ?? MIN_WIDTH) - 40;
  const perRow = Math.max(1, Math.floor((width + 6) / (84 + 6)));
  const rows = cards ? Math.ceil(cards / perRow) : 0;
  const cardH = (width - 6 * (perRow - 1)) / perRow + 22;
  return 16 + 20 + 24 + 140 + 16 + rows * (cardH + 6) + 34 + 6 * 5 + 2 * WIDGET_MARGIN;
}

function attachPanel(node, kind) {
  const panel = new Panel(node, kind);
  panels.add(panel);
  const widget = node.addDOMWidget(PANEL_WIDGET, "noise-search-panel", panel.root, {
    serialize: false,
    hideOnZoom: false,
    margin: WIDGET_MARGIN,
    getMinHeight: () => panelHeight(panel),
    getMaxHeight: () => panelHeight(panel),
  });
  widget.serialize = false; // never in widgets_values (keeps the node's value order intact)
  node.__nsPanel = panel;
  const onAdded = node.onAdded;
  node.onAdded = function () {
    panel.root.dataset.nodeId = String(this.id); // ids are final once the node is in a graph
    return onAdded?.apply(this, arguments);
  };
  const onRemoved = node.onRemoved;
  node.onRemoved = function () {
    panel.destroy();
    return onRemoved?.apply(this, arguments);
  };
  if (node.size[0] < MIN_WIDTH) node.setSize([MIN_WIDTH, node.size[1]]);
  const seedW = findWidget(node, "seed");
  if (seedW) {
    const serialize = seedW.serializeValue;
    seedW.serializeValue = async function (n, i) {
      const v = serialize ? await serialize.call(this, n, i) : this.value;
      panel.queuedSeed = v;
      return v;
    };
  }
  const pick = findWidget(node, PICK_WIDGET);
  if (pick) {
    const cb = pick.callback;
    pick.callback = function () {
      const r = cb?.apply(this, arguments);
      panel.render();
      return r;
    };
  }
  return panel;
}

/** Resize the node to its content (after the gallery changed); waits a frame so the DOM is laid out. */
function fitNode(node) {
  requestAnimationFrame(() => {
    const sz = node.computeSize?.();
    if (sz) node.setSize([Math.max(node.size[0], MIN_WIDTH), sz[1]]);
    node.setDirtyCanvas?.(true, true);
  });
}

// ComfyUI serves web/ once per registered name: under the pack's folder name (WEB_DIRECTORY) and, when
// that differs from it, again under the pyproject name ([tool.comfy] web). Both copies of this module
// run; only the first registers the extension.
const LOADED = Symbol.for("noise-search.extension-loaded");
if (!window[LOADED]) {
  window[LOADED] = true;
  registerExtension();
}

function registerExtension() {
app.registerExtension({
  name: EXTENSION,

  async setup() {
    api.addEventListener(PROGRESS_EVENT, ({ detail }) => {
      if (!detail || detail.node == null) return;
      const node = nodeByExecutionId(detail.node);
      const panel = node?.__nsPanel;
      if (!panel) return;
      panel.onProgress(detail);
    });
    // A cancelled or failed prompt: stop the "searching" state, keep what was scored.
    for (const type of ["execution_interrupted", "execution_error"]) {
      api.addEventListener(type, ({ detail }) => {
        for (const p of panels) {
          if (p.state.running && (!detail?.prompt_id || p.state.promptId === detail.prompt_id)) {
            p.state.running = false;
            p.state.stopped = type === "execution_interrupted" ? "cancelled" : "failed";
            p.render();
          }
        }
      });
    }
    api.addEventListener("execution_start", ({ detail }) => {
      for (const p of panels) {
        if (p.node.graph) p.pendingPromptId = detail?.prompt_id ?? null;
      }
    });
    // A node whose result came from ComfyUI's cache runs no search and gets no "executed" message
    // of its own; its last ui output is still in the prompt's history, so show that.
    api.addEventListener("execution_success", async ({ detail }) => {
      const promptId = detail?.prompt_id;
      if (!promptId) return;
      const stale = [...panels].filter((p) => p.node.graph && p.state.final?.prompt_id !== promptId);
      if (!stale.length) return;
      try {
        const res = await api.fetchApi(`/history/${encodeURIComponent(promptId)}`);
        if (!res.ok) return;
        const outputs = (await res.json())?.[promptId]?.outputs ?? {};
        for (const [executionId, output] of Object.entries(outputs)) {
          const entry = output?.noise_search?.[0];
          const node = entry ? nodeByExecutionId(executionId) : null;
          const panel = node?.__nsPanel;
          if (panel && stale.includes(panel)) panel.onFinal(entry, promptId);
        }
      } catch (err) {
        console.warn("noise-search: could not read the history of prompt", promptId, err);
      }
    });
  },

  async beforeRegisterNodeDef(nodeType, nodeData) {
    const kind = SEARCH_NODES.has(nodeData.name) ? "search" : SCORE_NODES.has(nodeData.name) ? "score" : null;
    if (!kind) return;

    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const r = onNodeCreated?.apply(this, arguments);
      attachPanel(this, kind);
      return r;
    };

    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      const r = onExecuted?.apply(this, arguments);
      const entry = message?.noise_search?.[0];
      const panel = this.__nsPanel;
      if (entry && panel) {
        panel.onFinal(entry, panel.pendingPromptId ?? null);
      }
      return r;
    };
  },
});
}
