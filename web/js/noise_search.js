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
  ordinal,
} from "./noise_search/state.js";

const { app } = window.comfyAPI.app;
const { api } = window.comfyAPI.api;

export const EXTENSION = "noise-search.CandidateGallery";
export const PROGRESS_EVENT = "noise-search.progress";
export const SEARCH_NODES = new Set(["RandomSearch_NoiseSearch", "ZeroOrderSearch_NoiseSearch", "PathSearch_NoiseSearch"]);
export const SCORE_NODES = new Set(["VerifierScore_NoiseSearch"]);
const PANEL_WIDGET = "noise_search_panel";
const PICK_WIDGET = "pick";
// The panel has one fixed height whatever it shows (idle, searching, done, picked, cancelled), so the
// node's size is right from the moment it is created or loaded and never grows under its neighbours.
export const MIN_WIDTH = 440;
const WIDGET_MARGIN = 4; // the frontend sizes a DOM widget's element to its slot minus this on each side
const PAD = 4, GAP = 4;
const HEAD_H = 16, CHART_H = 80, FOOT_H = 18;
const THUMB = 64, GRID_GAP = 5, CAPTION_H = 15;
const CARD_H = THUMB + CAPTION_H + 4; // + the 2 px border on each side
const GALLERY_H = CARD_H; // one row of thumbnails; more (top_k > 6 at the minimum width) scroll inside the gallery
export const PANEL_HEIGHT = 2 * PAD + 2 + HEAD_H + CHART_H + GALLERY_H + FOOT_H + 3 * GAP;

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
.ns-panel { box-sizing: border-box; display: flex; flex-direction: column; gap: ${GAP}px; padding: ${PAD}px 8px;
  height: ${PANEL_HEIGHT}px; font: 11px/1.3 var(--comfy-font, Inter, Arial, sans-serif); color: var(--fg-color, #ddd);
  background: var(--comfy-menu-bg, #353535); border: 1px solid var(--border-color, #4e4e4e); border-radius: 6px;
  overflow: hidden; pointer-events: auto; user-select: none; }
.ns-panel > * { flex: none; min-width: 0; }
.ns-head { display: flex; align-items: center; gap: 6px; height: ${HEAD_H}px; }
.ns-stats { display: flex; gap: 5px; flex: 1; min-width: 0; overflow: hidden; }
.ns-stat { font-size: 11px; line-height: 16px; padding: 0 6px; border-radius: 4px; background: var(--comfy-input-bg, #222);
  color: var(--descrip-text, #999); white-space: nowrap; font-variant-numeric: tabular-nums; }
.ns-stat b { color: var(--fg-color, #ddd); font-weight: 600; margin-left: 3px; }
.ns-stat.ns-stat-best b { color: ${WINNER_COLOR}; }
.ns-status { font-size: 10.5px; line-height: 16px; padding: 0 7px; border-radius: 8px; background: var(--comfy-input-bg, #222);
  color: var(--descrip-text, #999); white-space: nowrap; }
.ns-status.ns-running { color: #111; background: #7bd88f; }
.ns-chart { width: 100%; height: ${CHART_H}px; display: block; border-radius: 4px; cursor: crosshair; }
.ns-gallery { height: ${GALLERY_H}px; overflow-x: hidden; overflow-y: auto; }
/* a top-K larger than one row scrolls: keep the scrollbar visible (also where scrollbars overlay) so it shows */
.ns-gallery::-webkit-scrollbar { width: 6px; }
.ns-gallery::-webkit-scrollbar-thumb { background: var(--descrip-text, #888); border-radius: 3px; }
.ns-gallery::-webkit-scrollbar-track { background: transparent; }
@supports not selector(::-webkit-scrollbar) { .ns-gallery { scrollbar-width: thin; } }
.ns-grid { display: grid; grid-template-columns: repeat(auto-fill, ${THUMB}px); justify-content: space-between; gap: ${GRID_GAP}px; }
.ns-gallery-empty { box-sizing: border-box; height: 100%; display: flex; align-items: center; justify-content: center; text-align: center;
  padding: 0 12px; border: 1px dashed var(--border-color, #4e4e4e); border-radius: 5px; color: var(--descrip-text, #888); font-size: 10.5px; }
.ns-card { position: relative; box-sizing: border-box; width: ${THUMB}px; border-radius: 5px; overflow: hidden; cursor: pointer;
  background: var(--comfy-input-bg, #222); border: 2px solid transparent; transition: border-color .12s; }
.ns-card:hover { border-color: var(--descrip-text, #999); }
.ns-card.ns-nopick { cursor: default; }
.ns-card.ns-winner { border-color: ${WINNER_COLOR}; }
.ns-card.ns-picked { border-color: ${PICK_COLOR}; }
.ns-thumb { display: block; width: 100%; aspect-ratio: 1 / 1; object-fit: cover; background: #111; }
.ns-thumb.ns-empty { display: flex; align-items: center; justify-content: center; text-align: center; color: var(--descrip-text, #888);
  font-size: 10px; line-height: 12px; }
.ns-cap { display: block; height: ${CAPTION_H}px; line-height: ${CAPTION_H}px; padding: 0 4px; text-align: center; font-size: 11px;
  font-variant-numeric: tabular-nums; white-space: nowrap; overflow: hidden; }
.ns-cap b { font-weight: 600; }
.ns-badge { position: absolute; top: 2px; left: 2px; padding: 0 4px; border-radius: 7px; font-size: 10px; line-height: 14px;
  font-weight: 600; background: rgba(0,0,0,.7); color: #fff; white-space: nowrap; }
.ns-badge.ns-b-win { background: ${WINNER_COLOR}; color: #222; }
.ns-badge.ns-b-pick { left: auto; right: 2px; background: ${PICK_COLOR}; color: #053; }
.ns-badge.ns-b-out { left: auto; right: 2px; background: rgba(0,0,0,.75); color: ${PICK_COLOR}; }
.ns-badge.ns-b-id { top: auto; left: auto; bottom: ${CAPTION_H + 2}px; right: 2px; font-weight: 500; background: rgba(0,0,0,.6); }
.ns-foot { display: flex; align-items: center; gap: 6px; height: ${FOOT_H}px; }
.ns-note { flex: 1; min-width: 0; height: ${FOOT_H}px; line-height: ${FOOT_H}px; white-space: nowrap; overflow: hidden;
  color: var(--descrip-text, #999); font-size: 11px; }
.ns-note b { color: var(--fg-color, #ddd); font-weight: 600; }
.ns-btn { font: inherit; font-size: 11px; line-height: 14px; padding: 1px 8px; border-radius: 4px; cursor: pointer; white-space: nowrap;
  color: var(--input-text, #ddd); background: var(--comfy-input-bg, #222); border: 1px solid var(--border-color, #4e4e4e); }
.ns-btn:hover:not(:disabled) { border-color: ${PICK_COLOR}; }
.ns-btn:disabled { opacity: .45; cursor: default; }
.ns-btn-run { border-color: ${PICK_COLOR}; color: ${PICK_COLOR}; }
/* ComfyUI's help sidebar is about 220 px wide by default: let long node ids, file names and words in the
   help pages (web/docs/<NodeId>/en.md) wrap instead of running past its edge. Changes nothing that fits. */
.node-help-content .markdown-content { overflow-wrap: anywhere; }
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
    // The node's own title names the algorithm; the panel's first row holds the run's numbers and status.
    const head = el("div", "ns-head");
    this.statsEl = el("div", "ns-stats");
    this.statusEl = el("span", "ns-status", "idle");
    head.append(this.statsEl, this.statusEl);

    this.canvas = el("canvas", "ns-chart");
    this.canvas.addEventListener("mousemove", (e) => this.onChartHover(e));
    this.canvas.addEventListener("mouseleave", () => this.hideTip());
    this.canvas.addEventListener("click", (e) => this.onChartClick(e));

    // The gallery keeps one row's height; a larger top-K scrolls inside it.
    this.gallery = el("div", "ns-gallery");
    this.grid = el("div", "ns-grid");
    this.galleryEmpty = el("div", "ns-gallery-empty");
    this.gallery.append(this.grid, this.galleryEmpty);
    this.gallery.addEventListener("wheel", (e) => {
      // scroll the thumbnails, not the canvas, when there is something to scroll
      if (this.gallery.scrollHeight > this.gallery.clientHeight) e.stopPropagation();
    }, { passive: true });

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

    root.append(head, this.canvas, this.gallery, foot);
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
    const rounds = new Set(candidateList(s).map((c) => Number(c.round ?? 0)));
    const legend = this.kind === "score"
      ? [{ color: roundColor(0), text: "image score" }, { color: WINNER_COLOR, text: "verifier's best" }]
      : [{ color: roundColor(0), text: rounds.size > 1 ? `candidate (colour = ${s.algorithm === "zero_order" ? "iteration" : "round"})` : "candidate" },
        { color: WINNER_COLOR, text: "best so far", mark: "line" }];
    if (picked != null && picked >= 0) legend.push({ color: PICK_COLOR, text: "your pick" });
    this.hits = drawChart(this.canvas, {
      legend,
      candidates: candidateList(s),
      winner: s.final ? s.final.winner : s.bestIndex,
      picked,
      budget: s.budget,
      mode: this.kind === "score" ? "bars" : "scatter",
      xLabel: this.kind === "score" ? "image index" : undefined,
      emptyText: this.kind === "score" ? "Scores appear here after a run" : undefined,
    });
  }

  /** "cand. 6" (search nodes) or "image 2" (Verifier Score): what a number on a card means, spelled out. */
  label(index) {
    return `${this.kind === "score" ? "image" : "cand."} ${index}`;
  }

  render() {
    const s = this.state;
    const f = s.final;
    const n = s.candidates.size;
    const alg = s.algorithm ? ALGORITHM_NAMES[s.algorithm] ?? s.algorithm : null;
    const stats = [];
    if (n) stats.push([this.kind === "score" ? "images" : "candidates", String(n), `${n} ${this.kind === "score" ? "images" : "candidates"} scored`]);
    if (s.nfe && this.kind === "search") {
      stats.push(["NFE", `${formatNumber(s.nfe)}${s.budget ? ` / ${formatNumber(s.budget)}` : ""}`,
        `search NFE: model evaluations spent on the search so far${s.budget ? ", of the budget" : ""}`]);
    }
    const bestIdx = f ? f.winner : s.bestIndex;
    const best = bestIdx != null ? s.candidates.get(Number(bestIdx)) : null;
    if (best && Number.isFinite(Number(best.score))) {
      stats.push(["best", Number(best.score).toFixed(4), `best score ${best.score}: ${this.label(best.index)}`, "ns-stat-best"]);
    }
    this.statsEl.replaceChildren(...stats.map(([k, v, tip, cls]) => {
      const chip = el("span", cls ? `ns-stat ${cls}` : "ns-stat", k);
      chip.append(el("b", null, v));
      chip.title = tip;
      return chip;
    }));
    this.statusEl.textContent = s.running ? (this.kind === "score" ? "scoring…" : "searching…") : f ? "done" : s.stopped ?? "idle";
    this.statusEl.title = alg ? `${alg}: ${this.statusEl.textContent}` : this.statusEl.textContent;
    this.statusEl.classList.toggle("ns-running", !!s.running);
    this.root.dataset.nodeId = String(this.node.id);
    this.root.dataset.state = s.running ? "running" : f ? "done" : s.stopped ?? "idle";
    this.root.dataset.candidates = String(n);

    this.drawChart();
    this.renderGallery();
    this.renderFooter();
  }

  renderGallery() {
    const s = this.state;
    const f = s.final;
    // While searching, show as many live slots as the last run kept (top-K).
    this.liveSlots = f?.top_k?.length || this.liveSlots || 4;
    const entries = galleryEntries(s, this.liveSlots);
    const pending = this.pendingPick;
    const out = outputIndex(s);
    // Only a finished run's kept top-K can be picked (PROTOCOL.md section 3).
    const keptTopK = new Set((f?.top_k ?? []).map(Number));
    const what = this.kind === "score" ? "image" : "candidate";
    this.grid.replaceChildren();
    for (const { rank, candidate: c, image } of entries) {
      const canPick = pending != null && keptTopK.has(c.index);
      const card = el("div", "ns-card");
      card.dataset.index = String(c.index);
      card.dataset.rank = String(rank + 1);
      const isWinner = f ? Number(f.winner) === c.index : rank === 0;
      const isPicked = pending != null && pending >= 0 && pending === c.index;
      const isOut = !!f && out === c.index && Number(f.picked) >= 0;
      card.classList.toggle("ns-winner", isWinner);
      card.classList.toggle("ns-picked", isPicked);
      card.classList.toggle("ns-nopick", !canPick);
      let thumb;
      if (image && image.filename) {
        thumb = el("img", "ns-thumb");
        thumb.draggable = false;
        thumb.alt = `${what} ${c.index}`;
        thumb.src = viewURL(image);
      } else {
        // one short word: the thumbnail's middle, between the rank and the candidate badges
        thumb = el("div", "ns-thumb ns-empty", s.running ? "pending" : s.stopped ? "not kept" : "no image");
        thumb.title = s.running ? "The kept top-K are rendered when the search ends" : s.stopped ? "The run stopped before the top-K were rendered" : "";
      }
      // Top left: the rank in the gallery (best first). Bottom right: which candidate (or batch image) it is.
      const rankBadge = el("span", isWinner ? "ns-badge ns-b-rank ns-b-win" : "ns-badge ns-b-rank", `${isWinner ? "★ " : ""}${ordinal(rank + 1)}`);
      rankBadge.title = `rank ${rank + 1} of the ${f ? "kept top-" + entries.length : "best so far"}, by verifier score${isWinner ? " (★ the verifier's choice)" : ""}`;
      const idBadge = el("span", "ns-badge ns-b-id", this.label(c.index));
      idBadge.title = this.kind === "score" ? `image ${c.index} of the input batch` :
        `candidate index ${c.index}${c.seed != null ? ` (seed ${c.seed})` : ""}: the pick input takes this number`;
      card.append(thumb, rankBadge, idBadge);
      if (isPicked) card.append(Object.assign(el("span", "ns-badge ns-b-pick", "✓"), { title: "your pick: the next run outputs it" }));
      else if (isOut) card.append(Object.assign(el("span", "ns-badge ns-b-out", "out"), { title: "the last run output this one (your pick)" }));
      const cap = el("div", "ns-cap");
      const score = el("b", "ns-score", Number.isFinite(Number(c.score)) ? Number(c.score).toFixed(4) : "–");
      cap.append(score);
      card.append(cap);
      const lines = [`rank ${rank + 1} · ${what} ${c.index} · score ${c.score ?? "–"}`];
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
    this.galleryEmpty.style.display = entries.length ? "none" : "";
    this.galleryEmpty.textContent = this.kind === "score"
      ? "The best-scored images appear here after a run"
      : "The best candidates appear here; click one to output it instead of the verifier's choice";
  }

  renderFooter() {
    const s = this.state;
    const f = s.final;
    const pending = this.pendingPick;
    // Shown only when it does something (pick >= 0), so notes keep the footer's width.
    this.resetBtn.style.display = pending != null && pending >= 0 ? "" : "none";
    this.resetBtn.disabled = pending == null || pending < 0;
    // "Run" when the next run would output something else than what is shown
    const shown = f ? (Number(f.picked) >= 0 ? Number(f.picked) : -1) : null;
    this.runBtn.style.display = pending != null && f && !s.running && pending !== shown ? "" : "none";
    const L = (i) => `<b>${this.label(i)}</b>`;
    const what = this.kind === "score" ? "images" : "candidates";
    // One line (the full story is in its tooltip): what the next run outputs when that differs from
    // what is shown, else what the shown run output.
    const note = [];
    const tip = [];
    if (f && Number(f.picked) >= 0) tip.push(`The last run output ${this.label(f.picked)}, your pick; the verifier chose ${this.label(f.winner)}.`);
    else if (f && f.winner != null) tip.push(`The last run output ${this.label(f.winner)}, the verifier's choice.`);
    if (s.running) {
      note.push(this.kind === "score" ? "Scoring…" : "Searching: the chart updates after every chunk.");
    } else if (pending != null && f && pending !== shown) {
      if (pending >= 0) note.push(`Next run outputs ${L(pending)}, your pick.`);
      else note.push(`Next run outputs the verifier's choice, ${L(f.winner)}.`);
      tip.push(pending >= 0 ? `Queue the workflow (▶ Run) and the node outputs ${this.label(pending)} instead.` : "Queue the workflow and the node outputs the verifier's choice again.");
      if (this.seedNote) tip.push(this.seedNote.trim());
    } else if (f && Number(f.picked) >= 0) {
      note.push(`Output: ${L(Number(f.picked))}, your pick (verifier: ${this.label(f.winner)}).`);
    } else if (f && f.winner != null) {
      note.push(`Output: ${L(f.winner)} (verifier's choice).${pending != null ? " Click a thumbnail to change it." : ""}`);
      if (pending != null) tip.push("Click a thumbnail to output that candidate on the next run instead (sets pick).");
    } else if (s.stopped && s.candidates.size) {
      if (s.stopped === "cancelled") {
        note.push(`Cancelled after ${s.candidates.size} ${what}; best so far in the temp folder.`);
        tip.push(`The run was cancelled after ${s.candidates.size} ${what}; the best so far is saved in ComfyUI's temp folder (noise_search/partial_*).`);
      } else {
        note.push(`Failed after ${s.candidates.size} ${what} (see the error message).`);
        tip.push(`The run failed after ${s.candidates.size} ${what}.`);
      }
    } else if (pending != null && pending >= 0) {
      note.push(`Next run outputs ${L(pending)}.`);
    } else {
      note.push(this.kind === "score" ? "Queue the workflow to score the images." : "Queue the workflow to search.");
    }
    this.noteEl.innerHTML = note.join(" ");
    this.noteEl.title = [this.noteEl.textContent, ...tip].join("\n");
  }

  onChartHover(e) {
    const r = this.canvas.getBoundingClientRect();
    const h = hitTest(this.hits, e.clientX - r.left, e.clientY - r.top);
    if (!h) return this.hideTip();
    const c = this.state.candidates.get(h.index);
    if (!c) return this.hideTip();
    const lines = [`${this.label(c.index)} · score ${Number(c.score).toFixed(4)}`];
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

/**
 * Give the node its real size: at least MIN_WIDTH wide and exactly as tall as its inputs, widgets and the
 * fixed-height panel need. Runs when the node is created, when a saved workflow is loaded into it
 * (its stored size may predate the panel) and when the user resizes it, never in the middle of a run.
 */
function fitNode(node) {
  const min = node.computeSize?.();
  if (!min) return;
  const w = Math.max(node.size[0], MIN_WIDTH, min[0]);
  const h = min[1];
  if (node.size[0] !== w || node.size[1] !== h) node.setSize([w, h]);
  node.setDirtyCanvas?.(true, true);
}

const VIDEO_PREFIX = "video_";

function foldVideoWidgets(node) {
  node.__nsVideoWidgets = (node.widgets ?? []).filter((w) => w.name?.startsWith(VIDEO_PREFIX));
  for (const w of node.__nsVideoWidgets) {
    w.__nsType = w.type;
    w.__nsComputeSize = w.computeSize;
  }
  setVideoWidgetsShown(node, false);
}

function setVideoWidgetsShown(node, shown) {
  for (const w of node.__nsVideoWidgets ?? []) {
    w.type = shown ? w.__nsType : "hidden";
    w.computeSize = shown ? w.__nsComputeSize : () => [0, -4];
    w.hidden = !shown;
  }
  node.__nsVideoShown = shown;
}

function attachPanel(node, kind) {
  const panel = new Panel(node, kind);
  panels.add(panel);
  const widget = node.addDOMWidget(PANEL_WIDGET, "noise-search-panel", panel.root, {
    serialize: false,
    hideOnZoom: false,
    margin: WIDGET_MARGIN,
    getMinHeight: () => PANEL_HEIGHT + 2 * WIDGET_MARGIN,
    getMaxHeight: () => PANEL_HEIGHT + 2 * WIDGET_MARGIN,
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
  // A loaded workflow sets the node's stored size after creation: correct it at once.
  const onConfigure = node.onConfigure;
  node.onConfigure = function () {
    const r = onConfigure?.apply(this, arguments);
    fitNode(this);
    return r;
  };
  // Dragging the node narrower than the panel needs (or taller than its content) snaps back.
  const onResize = node.onResize;
  node.onResize = function (size) {
    const r = onResize?.apply(this, arguments);
    if (size && size[0] < MIN_WIDTH) size[0] = MIN_WIDTH;
    return r;
  };
  fitNode(node);
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
    ensureStyles(); // also for the help pages, before any panel exists
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
      if (kind === "search") foldVideoWidgets(this);
      attachPanel(this, kind);
      return r;
    };

    // The video_* inputs matter only for video models: folded away by default (their values still go with the
    // workflow and the prompt), shown from the node's menu, so an image search node stays short enough to fit.
    const getExtraMenuOptions = nodeType.prototype.getExtraMenuOptions;
    nodeType.prototype.getExtraMenuOptions = function (canvas, options) {
      const r = getExtraMenuOptions?.apply(this, arguments);
      if (kind === "search" && this.__nsVideoWidgets?.length) {
        options.push({
          content: this.__nsVideoShown ? "Hide video scoring inputs" : "Show video scoring inputs",
          callback: () => { setVideoWidgetsShown(this, !this.__nsVideoShown); fitNode(this); },
        });
      }
      return r;
    };

    // The gallery shows the node's images (the output among its top-K); the frontend's own preview
    // (at least 220 px, added after the first run and for live sampler previews) would make the node
    // grow under its neighbours, so these nodes draw none.
    const onDrawBackground = nodeType.prototype.onDrawBackground;
    nodeType.prototype.onDrawBackground = function () {
      if (this.__nsPanel) return;
      return onDrawBackground?.apply(this, arguments);
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
