// Drives ComfyUI's real frontend in headless Chromium (playwright-core, system chromium) through
// the noise-search UI: load a workflow, queue it, read the gallery and chart, pick a candidate,
// re-queue, reset. Writes results.json and screenshots into cfg.out_dir; pytest asserts on them.
//
// usage: node drive.mjs config.json
//   config: {url, out_dir, chromium, workflow?: UI-format graph, api?: API-format graph,
//            pick_rank: 1, timeout_s: 300}

import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";

const cfg = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const out = cfg.out_dir;
fs.mkdirSync(out, { recursive: true });
const timeout = (cfg.timeout_s ?? 300) * 1000;
const results = { steps: [], console_errors: [], page_errors: [] };
const log = (msg) => {
  results.steps.push(msg);
  console.log(`[drive] ${msg}`);
};

// A fresh profile directory per run (playwright passes it as --user-data-dir).
const profile = fs.mkdtempSync(path.join(cfg.profile_root ?? out, "chromium-profile-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: cfg.chromium ?? "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
  viewport: { width: cfg.width ?? 1400, height: cfg.height ?? 1700 },
  deviceScaleFactor: 1,
});

async function main() {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("console", (m) => {
    if (m.type() === "error") results.console_errors.push(m.text());
  });
  page.on("pageerror", (e) => results.page_errors.push(String(e.stack || e)));
  // Only loopback traffic: refuse anything else the page might try.
  await page.route(/^https?:\/\/(?!127\.0\.0\.1|localhost)/, (route) => route.abort());

  await page.goto(cfg.url, { waitUntil: "domcontentloaded", timeout });
  await page.waitForFunction(
    () => window.comfyAPI?.app?.app?.graph && window.comfyAPI.app.app.vueAppReady &&
      window.LiteGraph?.registered_node_types?.["RandomSearch_NoiseSearch"],
    null, { timeout },
  );
  await page.keyboard.press("Escape");
  log("frontend ready");

  // Record the protocol traffic as the page sees it.
  await page.evaluate(() => {
    const { api } = window.comfyAPI.api;
    window.__ns = { progress: [], executed: [], done: {}, errors: {} };
    api.addEventListener("noise-search.progress", (e) => window.__ns.progress.push(e.detail));
    api.addEventListener("executed", (e) => window.__ns.executed.push(e.detail));
    api.addEventListener("execution_success", (e) => (window.__ns.done[e.detail.prompt_id] = "success"));
    api.addEventListener("execution_error", (e) => {
      window.__ns.done[e.detail.prompt_id] = "error";
      window.__ns.errors[e.detail.prompt_id] = e.detail;
    });
    api.addEventListener("execution_interrupted", (e) => (window.__ns.done[e.detail.prompt_id] = "interrupted"));
  });

  // Load the workflow.
  const targets = cfg.target_types ?? ["RandomSearch_NoiseSearch", "ZeroOrderSearch_NoiseSearch", "PathSearch_NoiseSearch"];
  const loaded = await page.evaluate(async ({ workflow, api, targets, nodeId }) => {
    const app = window.comfyAPI.app.app;
    if (workflow) await app.loadGraphData(workflow);
    else app.loadApiJson(api, "noise-search-test");
    const node = nodeId != null ? app.graph.getNodeById(Number(nodeId)) : app.graph.nodes.find((n) => targets.includes(n.type));
    return node ? { id: node.id, type: node.type, widgets: node.widgets.map((w) => w.name), hasPanel: !!node.__nsPanel } : null;
  }, { workflow: cfg.workflow ?? null, api: cfg.api ?? null, targets, nodeId: cfg.node_id ?? null });
  if (!loaded) throw new Error("no noise-search search node in the loaded workflow");
  results.node = loaded;
  log(`loaded workflow; search node ${loaded.id} (${loaded.type}), panel=${loaded.hasPanel}`);
  await page.keyboard.press("Escape");

  const focus = async () => {
    // Centre the view on the search node at 1:1 so screenshots show it whole.
    await page.evaluate((id) => {
      const app = window.comfyAPI.app.app;
      const node = app.graph.getNodeById(id);
      const c = app.canvas;
      c.ds.scale = 1;
      const [w, h] = [c.canvas.width / (window.devicePixelRatio || 1), c.canvas.height / (window.devicePixelRatio || 1)];
      c.ds.offset[0] = -node.pos[0] + (w - node.size[0]) / 2;
      c.ds.offset[1] = -node.pos[1] + Math.max(40, (h - node.size[1]) / 2);
      c.setDirty(true, true);
    }, loaded.id);
    await page.waitForTimeout(400);
  };
  const nodeShot = async (name) => {
    await focus();
    const box = await page.evaluate((id) => {
      const app = window.comfyAPI.app.app;
      const node = app.graph.getNodeById(id);
      const c = app.canvas;
      const rect = c.canvas.getBoundingClientRect();
      const th = window.LiteGraph.NODE_TITLE_HEIGHT ?? 30;
      const [x, y] = c.ds.convertOffsetToCanvas([node.pos[0], node.pos[1] - th]);
      return { x: rect.left + x - 8, y: rect.top + y - 8, width: node.size[0] * c.ds.scale + 16, height: (node.size[1] + th) * c.ds.scale + 16 };
    }, loaded.id);
    const vp = page.viewportSize();
    const clip = {
      x: Math.max(0, box.x), y: Math.max(0, box.y),
      width: Math.min(box.width, vp.width - Math.max(0, box.x)), height: Math.min(box.height, vp.height - Math.max(0, box.y)),
    };
    const file = path.join(out, `${name}.png`);
    await page.screenshot({ path: file, clip });
    await page.screenshot({ path: path.join(out, `${name}-full.png`) });
    log(`screenshot ${name}`);
    return file;
  };

  const panelShot = async (name) => {
    await focus();
    const file = path.join(out, `${name}.png`);
    await page.locator(`.ns-panel[data-node-id="${loaded.id}"]`).screenshot({ path: file });
    log(`panel screenshot ${name}`);
    return file;
  };
  const panelState = (id = loaded.id) => page.evaluate((id) => {
    const app = window.comfyAPI.app.app;
    const node = app.graph.getNodeById(id);
    const p = node.__nsPanel;
    const root = p.root;
    const cards = [...root.querySelectorAll(".ns-card")].map((c) => ({
      index: Number(c.dataset.index),
      score: c.querySelector(".ns-score")?.textContent,
      img: c.querySelector("img")?.getAttribute("src") ?? null,
      loaded: !!(c.querySelector("img")?.complete && c.querySelector("img")?.naturalWidth > 0),
      winner: c.classList.contains("ns-winner"),
      picked: c.classList.contains("ns-picked"),
    }));
    const pick = node.widgets.find((w) => w.name === "pick");
    return {
      state: root.dataset.state,
      candidates: Number(root.dataset.candidates),
      chart_points: Number(root.querySelector("canvas.ns-chart")?.dataset.points ?? 0),
      stats: root.querySelector(".ns-stats")?.textContent,
      note: root.querySelector(".ns-note")?.textContent,
      cards,
      pick: pick ? pick.value : null,
      final: p.state.final ? {
        winner: p.state.final.winner, picked: p.state.final.picked, top_k: p.state.final.top_k,
        images: p.state.final.images, n_candidates: (p.state.final.candidates || []).length,
      } : null,
      visible: root.getBoundingClientRect().width > 0 && root.getBoundingClientRect().height > 0,
    };
  }, id);

  const queue = async (label) => {
    const before = await page.evaluate(() => window.__ns.progress.length);
    const pid = await page.evaluate(async () => {
      const { api } = window.comfyAPI.api;
      const app = window.comfyAPI.app.app;
      const p = await app.graphToPrompt();
      const res = await api.queuePrompt(0, p);
      return res.prompt_id;
    });
    log(`${label}: queued prompt ${pid}`);
    // A live screenshot while the search runs (best effort: tiny models finish fast).
    await page.waitForFunction(({ n, id }) => window.__ns.progress.length > n || window.__ns.done[id], { n: before, id: pid }, { timeout });
    if (await page.evaluate((id) => !window.__ns.done[id], pid)) {
      await page.waitForTimeout(150);
      await nodeShot(`${label}-live`);
    } else {
      log(`${label}: finished before any live progress was seen`);
    }
    await page.waitForFunction((id) => window.__ns.done[id], pid, { timeout });
    const status = await page.evaluate((id) => ({ status: window.__ns.done[id], error: window.__ns.errors[id] ?? null }), pid);
    if (status.status !== "success") throw new Error(`${label}: prompt ${pid} ended with ${JSON.stringify(status)}`);
    // wait until thumbnails have loaded
    await page.waitForFunction((id) => {
      const node = window.comfyAPI.app.app.graph.getNodeById(id);
      const imgs = [...node.__nsPanel.root.querySelectorAll("img.ns-thumb")];
      return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0);
    }, loaded.id, { timeout: 30000 }).catch(() => log(`${label}: thumbnails did not all load`));
    const progress = await page.evaluate((n) => window.__ns.progress.slice(n), before);
    const executed = await page.evaluate((id) => window.__ns.executed.filter((e) => e.prompt_id === id), pid);
    const others = {};
    for (const id of await page.evaluate(() => window.comfyAPI.app.app.graph.nodes.filter((n) => n.__nsPanel).map((n) => n.id))) {
      if (id !== loaded.id) others[id] = await panelState(id);
    }
    return { prompt_id: pid, progress, executed, panel: await panelState(), other_panels: others };
  };

  results.initial = await panelState();
  await nodeShot("01-loaded");

  results.run1 = await queue("02-run1");
  await nodeShot("03-run1-done");
  await panelShot("03-run1-panel");

  // Pick a non-winning candidate by clicking its thumbnail (a real mouse click).
  const cards = results.run1.panel.cards;
  const rank = Math.min(cfg.pick_rank ?? 1, cards.length - 1);
  const chosen = cards[rank];
  if (!chosen) throw new Error("gallery is empty after run 1");
  await focus();
  await page.locator(`.ns-panel[data-node-id="${loaded.id}"] .ns-card[data-index="${chosen.index}"]`).click();
  results.picked_index = chosen.index;
  results.after_click = await panelState();
  log(`clicked candidate ${chosen.index}; pick widget = ${results.after_click.pick}`);
  await nodeShot("04-picked");

  results.run2 = await queue("05-run2");
  await nodeShot("06-run2-done");
  await panelShot("06-run2-panel");

  // Reset to the verifier's choice.
  await focus();
  await page.locator(`.ns-panel[data-node-id="${loaded.id}"] .ns-btn`, { hasText: "Reset to verifier" }).click();
  results.after_reset = await panelState();
  log(`reset; pick widget = ${results.after_reset.pick}`);

  // Cancel a longer search mid-way: the panel keeps the scored candidates and says so.
  if (cfg.cancel_widgets) {
    await page.evaluate(({ id, values }) => {
      const node = window.comfyAPI.app.app.graph.getNodeById(id);
      for (const [k, v] of Object.entries(values)) node.widgets.find((w) => w.name === k).value = v;
    }, { id: loaded.id, values: cfg.cancel_widgets });
    const before = await page.evaluate(() => window.__ns.progress.length);
    const pid = await page.evaluate(async () => {
      const app = window.comfyAPI.app.app;
      return (await window.comfyAPI.api.api.queuePrompt(0, await app.graphToPrompt())).prompt_id;
    });
    await page.waitForFunction((n) => window.__ns.progress.length > n, before, { timeout });
    await page.evaluate(() => window.comfyAPI.api.api.interrupt());
    await page.waitForFunction((id) => window.__ns.done[id], pid, { timeout });
    results.cancel = { prompt_id: pid, status: await page.evaluate((id) => window.__ns.done[id], pid), panel: await panelState() };
    log(`cancelled prompt ${pid}: ${results.cancel.status}, panel ${results.cancel.panel.state}`);
    await panelShot("07-cancelled-panel");
  }

  // Help page of a pack node, as the frontend serves it.
  results.help_page = await page.evaluate(async (pack) => {
    const { api } = window.comfyAPI.api;
    const r = await fetch(api.fileURL(`/extensions/${pack}/docs/RandomSearch_NoiseSearch.md`));
    return { status: r.status, head: r.ok ? (await r.text()).slice(0, 200) : null };
  }, cfg.pack_dir_name ?? "noise_search");
}

let code = 0;
try {
  await main();
} catch (e) {
  results.error = String(e && e.stack ? e.stack : e);
  console.error(results.error);
  code = 1;
} finally {
  fs.writeFileSync(path.join(out, "results.json"), JSON.stringify(results, null, 2));
  await context.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
process.exit(code);
