// Per-node search state for the noise-search UI, fed by live progress messages and the final
// node output. Pure data code (no DOM, no ComfyUI imports), safe to auto-load.

export function emptyState() {
  return {
    promptId: null,
    algorithm: null,
    budget: null,
    nfe: 0,
    bestIndex: null,
    candidates: new Map(), // index -> candidate
    final: null, // the node's last `noise_search` ui entry
    running: false,
    stopped: null, // "cancelled" | "failed" after an interrupted or failed run
  };
}

function asIndex(v) {
  const n = Number(v);
  return Number.isInteger(n) ? n : null;
}

/** Merge one `noise-search.progress` payload. A new prompt id starts a fresh run. */
export function applyProgress(state, msg) {
  if (!msg) return state;
  if (msg.prompt_id != null && msg.prompt_id !== state.promptId) {
    const fresh = emptyState();
    Object.assign(state, fresh, { promptId: msg.prompt_id });
  }
  state.running = true;
  state.stopped = null;
  state.final = state.final && state.final.prompt_id === state.promptId ? state.final : null;
  if (msg.algorithm != null) state.algorithm = msg.algorithm;
  if (msg.budget != null) state.budget = Number(msg.budget);
  if (msg.nfe != null) state.nfe = Number(msg.nfe);
  if (msg.best_index != null) state.bestIndex = asIndex(msg.best_index);
  for (const c of msg.candidates || []) {
    const i = asIndex(c.index);
    if (i != null) state.candidates.set(i, { ...c, index: i });
  }
  return state;
}

/** Apply the node's final ui output (`message.noise_search[0]`). */
export function applyFinal(state, entry, promptId = null) {
  if (!entry) return state;
  state.final = { ...entry, prompt_id: promptId ?? state.promptId };
  state.running = false;
  state.stopped = null;
  if (promptId != null) state.promptId = promptId;
  if (entry.algorithm != null) state.algorithm = entry.algorithm;
  if (entry.budget != null) state.budget = Number(entry.budget);
  if (entry.nfe != null) state.nfe = Number(entry.nfe);
  if (Array.isArray(entry.candidates) && entry.candidates.length) {
    state.candidates = new Map();
    for (const c of entry.candidates) {
      const i = asIndex(c.index);
      if (i != null) state.candidates.set(i, { ...c, index: i });
    }
  }
  const w = asIndex(entry.winner);
  if (w != null) state.bestIndex = w;
  return state;
}

export function candidateList(state) {
  return [...state.candidates.values()].sort((a, b) => a.index - b.index);
}

/** Best-first candidates (higher score, then lower index: the search's own tie-break). */
export function ranked(state) {
  return candidateList(state)
    .filter((c) => Number.isFinite(Number(c.score)))
    .sort((a, b) => Number(b.score) - Number(a.score) || a.index - b.index);
}

/**
 * Gallery entries: the final top-K with their images (aligned with `top_k`), or, while the
 * search runs, the best candidates so far without images.
 */
export function galleryEntries(state, maxLive = 4) {
  const f = state.final;
  if (f && Array.isArray(f.top_k) && f.top_k.length) {
    const images = Array.isArray(f.images) ? f.images : [];
    return f.top_k.map((idx, rank) => {
      const i = asIndex(idx);
      return { rank, candidate: state.candidates.get(i) ?? { index: i }, image: images[rank] ?? null };
    });
  }
  return ranked(state)
    .slice(0, maxLive)
    .map((c, rank) => ({ rank, candidate: c, image: null }));
}

/** The candidate index the last output came from (the pick if one was applied, else the winner). */
export function outputIndex(state) {
  const f = state.final;
  if (!f) return null;
  const p = asIndex(f.picked);
  if (p != null && p >= 0) return p;
  return asIndex(f.winner);
}

export function recipeSummary(recipe) {
  // Mirrors search/noise.py `describe()`: the recipe recreates the candidate's noise exactly.
  if (recipe == null) return "";
  if (typeof recipe !== "object") return String(recipe);
  if (recipe.kind === "seed") return `seed ${recipe.seed}`;
  if (recipe.kind === "neighbour")
    return `neighbour ${recipe.index} of (${recipeSummary(recipe.pivot)}) at iteration ${recipe.iteration}, λ ${recipe.lam}`;
  if (recipe.kind === "path") {
    const steps = [];
    let r = recipe;
    while (r && r.kind === "path") {
      steps.unshift(r.step);
      r = r.parent;
    }
    return `path from (${recipeSummary(r)}) re-noised at steps [${steps.join(", ")}]`;
  }
  const parts = Object.entries(recipe)
    .filter(([, v]) => v === null || typeof v !== "object")
    .map(([k, v]) => `${k}=${v}`);
  return parts.join(" ");
}

/** 1 -> "1st", 2 -> "2nd", 11 -> "11th", 23 -> "23rd": a card's rank in the gallery. */
export function ordinal(n) {
  const t = n % 100;
  const suffix = t >= 11 && t <= 13 ? "th" : ["th", "st", "nd", "rd"][n % 10] ?? "th";
  return `${n}${suffix}`;
}
