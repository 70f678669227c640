// Unit tests of the UI's pure modules (no browser, no ComfyUI): node --test tests/web/unit/
import test from "node:test";
import assert from "node:assert/strict";
import { emptyState, applyProgress, applyFinal, galleryEntries, outputIndex, ranked, recipeSummary, ordinal } from "../../../web/js/noise_search/state.js";
import { niceTicks, bestCurve, chartPoints, hitTest, formatNumber, wrapLines } from "../../../web/js/noise_search/chart.js";

const cand = (index, score, nfe = (index + 1) * 4, round = 0) => ({ index, score, nfe, round, recipe: `seed ${10 + index}`, seed: 10 + index });

test("progress merges chunks and a new prompt starts a fresh run", () => {
  const s = emptyState();
  applyProgress(s, { node: "6", prompt_id: "a", candidates: [cand(0, 0.1), cand(1, 0.3)], best_index: 1, nfe: 8, budget: 16, algorithm: "random" });
  applyProgress(s, { node: "6", prompt_id: "a", candidates: [cand(2, 0.2)], best_index: 1, nfe: 12, budget: 16, algorithm: "random" });
  assert.equal(s.candidates.size, 3);
  assert.equal(s.nfe, 12);
  assert.equal(s.bestIndex, 1);
  assert.ok(s.running);
  assert.deepEqual(ranked(s).map((c) => c.index), [1, 2, 0]);
  applyProgress(s, { node: "6", prompt_id: "b", candidates: [cand(0, 0.5)], best_index: 0, nfe: 4 });
  assert.equal(s.candidates.size, 1);
  assert.equal(s.promptId, "b");
});

test("final output: gallery follows top_k with aligned images, pick overrides the winner", () => {
  const s = emptyState();
  applyProgress(s, { prompt_id: "a", candidates: [cand(0, 0.1), cand(1, 0.3)], best_index: 1 });
  const images = [{ filename: "w.png", subfolder: "", type: "temp" }, { filename: "x.png", subfolder: "", type: "temp" }];
  applyFinal(s, { algorithm: "random", candidates: [cand(0, 0.1), cand(1, 0.3), cand(2, 0.2)], winner: 1, picked: -1, top_k: [1, 2], images }, "a");
  assert.ok(!s.running);
  const g = galleryEntries(s);
  assert.deepEqual(g.map((e) => [e.candidate.index, e.image.filename]), [[1, "w.png"], [2, "x.png"]]);
  assert.equal(outputIndex(s), 1);
  applyFinal(s, { candidates: [cand(0, 0.1), cand(1, 0.3), cand(2, 0.2)], winner: 1, picked: 2, top_k: [1, 2], images }, "b");
  assert.equal(outputIndex(s), 2);
});

test("live gallery shows the best candidates so far, without images", () => {
  const s = emptyState();
  applyProgress(s, { prompt_id: "a", candidates: [0.4, 0.9, 0.1, 0.7, 0.8, 0.3].map((v, i) => cand(i, v)) });
  const g = galleryEntries(s, 4);
  assert.deepEqual(g.map((e) => e.candidate.index), [1, 4, 3, 0]);
  assert.ok(g.every((e) => e.image === null));
});

test("recipes read like the Python describe()", () => {
  assert.equal(recipeSummary({ kind: "seed", seed: 7 }), "seed 7");
  assert.equal(recipeSummary({ kind: "neighbour", index: 1, iteration: 2, lam: 0.95, seed: 3, pivot: { kind: "seed", seed: 7 } }),
    "neighbour 1 of (seed 7) at iteration 2, λ 0.95");
  const p1 = { kind: "path", step: 4, index: 0, seed: 1, parent: { kind: "seed", seed: 7 } };
  assert.equal(recipeSummary({ kind: "path", step: 6, index: 1, seed: 2, parent: p1 }), "path from (seed 7) re-noised at steps [4, 6]");
  assert.equal(recipeSummary("seed 9"), "seed 9");
});

test("chart helpers: nice ticks, best-so-far curve, x axis, hit test", () => {
  assert.deepEqual(niceTicks(0, 60, 5), [0, 10, 20, 30, 40, 50, 60]);
  const t = niceTicks(3.565, 3.5725, 4);
  assert.ok(t.length >= 3 && t.every((v) => v >= 3.565 && v <= 3.5725));
  assert.deepEqual(bestCurve([{ x: 8, y: 1, index: 1 }, { x: 4, y: 2, index: 0 }, { x: 12, y: 3, index: 2 }]).map((p) => p.y), [2, 2, 3]);
  assert.equal(chartPoints([cand(0, 1), cand(1, 2)]).xLabel, "search NFE");
  const byIndex = chartPoints([{ index: 0, score: 1, nfe: 0 }, { index: 1, score: 2, nfe: 0 }]);
  assert.equal(byIndex.xLabel, "candidate");
  assert.deepEqual(byIndex.points.map((p) => p.x), [0, 1]);
  assert.equal(hitTest([{ x: 10, y: 10, index: 3 }, { x: 50, y: 50, index: 4 }], 12, 9).index, 3);
  assert.equal(hitTest([{ x: 10, y: 10, index: 3 }], 40, 40), null);
  assert.equal(formatNumber(1234.5), "1,235");
});

test("gallery ranks read as ordinals, never as '#n' (the candidate index's notation elsewhere)", () => {
  assert.deepEqual([1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 101, 111].map(ordinal),
    ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "101st", "111th"]);
});

test("the chart's placeholder wraps to its box", () => {
  const measure = (t) => t.length * 6;
  const text = "Queue the workflow: scores appear here while the search runs";
  const lines = wrapLines(measure, text, 120);
  assert.ok(lines.length > 1);
  assert.ok(lines.every((l) => measure(l) <= 120), lines);
  assert.equal(lines.join(" "), text);
  assert.deepEqual(wrapLines(measure, text, 1000), [text]);
  // a word longer than the box is cut by characters, nothing lost
  const long = wrapLines(measure, "RandomSearch_NoiseSearch", 60);
  assert.ok(long.every((l) => measure(l) <= 60) && long.join("") === "RandomSearch_NoiseSearch", long);
});
