// Drives ComfyUI's real frontend in headless Chromium (playwright-core, system chromium) through
// the noise-search UI: load a workflow, queue it, read the gallery and chart, pick a candidate,
// re-queue, reset. Writes results.json and screenshots into cfg.out_dir; pytest asserts on them.
//
// usage: node drive.mjs config.json
//   config: {url, out_dir, chromium, workflow?: UI-format graph, api?: API-format graph,
//            pick_rank: 1, timeout_s: 300}
//   or, with mode "layout": {examples: [{name, workflow, node_id?, widgets?, run?}], help_pages: {NodeId: title}}:
//   loads each example workflow as an artist would, measures every node's box (before and after a run),
//   the panel's text boxes, and opens the help sidebar for every pack node.

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
    if (m.type() === "error") results.console_errors.push(`${m.text()}${m.location()?.url ? ` (${m.location().url})` : ""}`);
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
  await page.evaluate(installChecks);
  if (cfg.mode === "layout") return layoutMain(page);

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
      overflow: window.__nsChecks.panelOverflow(root),
      size: [...node.size],
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
      const nodes = window.comfyAPI.app.app.graph.nodes.filter((n) => n.__nsPanel);
      const mine = [...window.comfyAPI.app.app.graph.getNodeById(id).__nsPanel.root.querySelectorAll("img.ns-thumb")];
      const imgs = nodes.flatMap((n) => [...n.__nsPanel.root.querySelectorAll("img.ns-thumb")]);
      return mine.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0);
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
    // the path ComfyUI's frontend asks for first (docs/<NodeId>/<locale>.md)
    const r = await fetch(api.fileURL(`/extensions/${pack}/docs/RandomSearch_NoiseSearch/en.md`));
    return { status: r.status, head: r.ok ? (await r.text()).slice(0, 200) : null };
  }, cfg.pack_dir_name ?? "noise_search");
}

// ------------------------------------------------------------------ checks run in the page

/** Installed into the page: overflow of the panel's text boxes and the canvas' boxes of nodes. */
function installChecks() {
  const clipAncestor = (e, root) => {
    for (let a = e.parentElement; a && a !== root.parentElement; a = a.parentElement) {
      const cs = getComputedStyle(a);
      if (cs.overflowX !== "visible" || cs.overflowY !== "visible") return a;
    }
    return null;
  };
  const describe = (e) => `${e.tagName.toLowerCase()}.${[...e.classList].join(".")} "${(e.textContent || "").trim().slice(0, 50)}"`;
  const intersects = (a, b) => a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5;
  window.__nsChecks = {
    /** Every text box of the panel shows all its text: nothing scrolls, is cut off or sticks out. */
    panelOverflow(root) {
      const bad = [];
      if (!root || !root.getClientRects().length) return bad;
      for (const e of [root, ...root.querySelectorAll("*")]) {
        if (!e.getClientRects().length) continue; // display: none
        const cs = getComputedStyle(e);
        const scrollsY = /(auto|scroll)/.test(cs.overflowY);
        if (e.tagName !== "CANVAS" && e.tagName !== "IMG") {
          if (e.clientWidth > 0 && e.scrollWidth > e.clientWidth + 1) bad.push(`${describe(e)}: text ${e.scrollWidth}px wide in ${e.clientWidth}px`);
          if (!scrollsY && e.clientHeight > 0 && e.scrollHeight > e.clientHeight + 1) bad.push(`${describe(e)}: content ${e.scrollHeight}px tall in ${e.clientHeight}px`);
        }
        if (e === root) continue;
        const clip = clipAncestor(e, root);
        if (!clip) continue;
        const r = e.getBoundingClientRect(), c = clip.getBoundingClientRect();
        const outX = r.left < c.left - 1 || r.right > c.right + 1;
        const outY = !/(auto|scroll)/.test(getComputedStyle(clip).overflowY) && (r.top < c.top - 1 || r.bottom > c.bottom + 1);
        if (outX || outY) bad.push(`${describe(e)}: sticks out of ${describe(clip)}`);
      }
      // badges on a card must not cover each other, nor the text of an image-less thumbnail
      for (const card of root.querySelectorAll(".ns-card")) {
        const badges = [...card.querySelectorAll(".ns-badge")].filter((b) => b.getClientRects().length);
        for (let i = 0; i < badges.length; i++)
          for (let j = i + 1; j < badges.length; j++)
            if (intersects(badges[i].getBoundingClientRect(), badges[j].getBoundingClientRect())) bad.push(`${describe(badges[i])} covers ${describe(badges[j])}`);
        const empty = card.querySelector(".ns-thumb.ns-empty");
        if (empty?.firstChild) {
          const range = document.createRange();
          range.selectNodeContents(empty);
          for (const line of range.getClientRects())
            for (const b of badges) if (intersects(line, b.getBoundingClientRect())) bad.push(`${describe(b)} covers the thumbnail text ${describe(empty)}`);
        }
      }
      const canvas = root.querySelector("canvas.ns-chart");
      if (canvas && canvas.dataset.points === "0" && !canvas.dataset.placeholder) bad.push("chart placeholder not measured (no data-placeholder)");
      if (canvas?.dataset.placeholder) {
        const p = JSON.parse(canvas.dataset.placeholder);
        if (p.width > p.maxWidth + 0.5) bad.push(`chart placeholder ${p.width}px wide in ${p.maxWidth}px`);
        if (p.height > p.boxHeight) bad.push(`chart placeholder ${p.height}px tall in ${p.boxHeight}px`);
        if (Math.abs(p.left - p.right) > 1) bad.push(`chart placeholder box off-centre (${p.left}px left, ${p.right}px right)`);
      }
      if (canvas?.dataset.legendRight && Number(canvas.dataset.legendRight) > canvas.clientWidth) bad.push(`chart legend ends at ${canvas.dataset.legendRight}px of ${canvas.clientWidth}px`);
      return bad;
    },
    /** Boxes of the open graph's nodes in canvas units, title bar included. */
    nodeBoxes() {
      const app = window.comfyAPI.app.app;
      const th = window.LiteGraph.NODE_TITLE_HEIGHT ?? 30;
      return app.graph.nodes.map((n) => ({
        id: n.id, type: n.type, x: n.pos[0], y: n.pos[1] - th, w: n.size[0], h: n.size[1] + th,
        collapsed: !!n.flags?.collapsed, panel: !!n.__nsPanel,
      }));
    },
  };
}

function overlaps(boxes) {
  const out = [];
  for (let i = 0; i < boxes.length; i++)
    for (let j = i + 1; j < boxes.length; j++) {
      const a = boxes[i], b = boxes[j];
      if (a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h)
        out.push(`${a.type}#${a.id} [${a.x},${a.y} ${a.w}x${a.h}] overlaps ${b.type}#${b.id} [${b.x},${b.y} ${b.w}x${b.h}]`);
    }
  return out;
}

// ------------------------------------------------------------------ layout mode

async function layoutMain(page) {
  const docs = [];
  page.on("response", (r) => {
    if (r.url().includes("/docs/")) docs.push({ status: r.status(), url: r.url() });
  });
  await page.evaluate(() => {
    const { api } = window.comfyAPI.api;
    window.__ns = { done: {}, errors: {} };
    api.addEventListener("execution_success", (e) => (window.__ns.done[e.detail.prompt_id] = "success"));
    api.addEventListener("execution_error", (e) => {
      window.__ns.done[e.detail.prompt_id] = "error";
      window.__ns.errors[e.detail.prompt_id] = e.detail;
    });
  });
  const shot = async (name, locator) => {
    const file = path.join(out, `${name}.png`);
    if (locator) await locator.screenshot({ path: file });
    else await page.screenshot({ path: file });
    log(`screenshot ${name}`);
  };
  const measure = () => page.evaluate(() => {
    const app = window.comfyAPI.app.app;
    const panels = {};
    for (const n of app.graph.nodes.filter((n) => n.__nsPanel)) {
      panels[n.id] = { state: n.__nsPanel.root.dataset.state, size: [...n.size], overflow: window.__nsChecks.panelOverflow(n.__nsPanel.root) };
    }
    return { boxes: window.__nsChecks.nodeBoxes(), panels, scale: app.canvas.ds.scale };
  });
  // Shows the node at 100 % zoom with its title just below the menu and workflow-tab bars; where it lands.
  const atFullSize = async (id) => {
    // move the graph out of the way so that no node or DOM widget covers the column scanned below
    await page.evaluate(() => {
      const c = window.comfyAPI.app.app.canvas;
      c.ds.scale = 1;
      c.ds.offset[0] = -1e6;
      c.ds.offset[1] = -1e6;
      c.setDirty(true, true);
    });
    await page.waitForTimeout(300);
    return page.evaluate((id) => {
      const app = window.comfyAPI.app.app;
      const node = app.graph.getNodeById(id);
      const c = app.canvas;
      const th = window.LiteGraph.NODE_TITLE_HEIGHT ?? 30;
      const rect = c.canvas.getBoundingClientRect();
      // where the canvas becomes visible below the bars, in the node's column
      const column = rect.left + 360 + node.size[0] / 2;
      let barBottom = rect.top;
      while (barBottom < rect.top + 200 && document.elementFromPoint(column, barBottom + 0.5) !== c.canvas) barBottom += 1;
      c.ds.offset[0] = -node.pos[0] + 360;
      c.ds.offset[1] = -node.pos[1] + th + (barBottom - rect.top) + 4;
      c.setDirty(true, true);
      const top = rect.top + (node.pos[1] - th + c.ds.offset[1]);
      return { top, bottom: top + node.size[1] + th, viewport: window.innerHeight, barBottom, height: node.size[1] + th };
    }, id);
  };

  results.examples = {};
  for (const ex of cfg.examples) {
    const r = (results.examples[ex.name] = {});
    await page.evaluate(async (wf) => window.comfyAPI.app.app.loadGraphData(wf), ex.workflow);
    await page.keyboard.press("Escape");
    await page.waitForTimeout(600);
    if (ex.widgets) {
      await page.evaluate((widgets) => {
        const g = window.comfyAPI.app.app.graph;
        for (const [id, values] of Object.entries(widgets)) {
          const node = g.getNodeById(Number(id));
          for (const [k, v] of Object.entries(values)) node.widgets.find((w) => w.name === k).value = v;
        }
      }, ex.widgets);
    }
    await page.waitForTimeout(300);
    r.loaded = await measure();
    r.loaded.overlaps = overlaps(r.loaded.boxes.filter((b) => !b.collapsed));
    await shot(`${ex.name}-01-loaded`);
    log(`${ex.name}: ${r.loaded.boxes.length} nodes, ${r.loaded.overlaps.length} overlaps`);
    if (ex.node_id == null) continue;
    r.full_size = await atFullSize(ex.node_id);
    await page.waitForTimeout(300);
    await shot(`${ex.name}-02-node-at-100pct`);
    await shot(`${ex.name}-02-panel-idle`, page.locator(`.ns-panel[data-node-id="${ex.node_id}"]`));
    if (!ex.run) continue;

    const pid = await page.evaluate(async () => {
      const app = window.comfyAPI.app.app;
      return (await window.comfyAPI.api.api.queuePrompt(0, await app.graphToPrompt())).prompt_id;
    });
    // while it runs (best effort: tiny models are quick)
    await page.waitForFunction(({ id, pid }) => {
      const n = window.comfyAPI.app.app.graph.getNodeById(id);
      return n.__nsPanel.root.dataset.state === "running" || window.__ns.done[pid];
    }, { id: ex.node_id, pid }, { timeout });
    r.running = await measure();
    await page.waitForFunction((pid) => window.__ns.done[pid], pid, { timeout });
    const status = await page.evaluate((pid) => ({ status: window.__ns.done[pid], error: window.__ns.errors[pid] ?? null }), pid);
    if (status.status !== "success") throw new Error(`${ex.name}: prompt ended with ${JSON.stringify(status)}`);
    await page.waitForFunction((id) => {
      const imgs = [...window.comfyAPI.app.app.graph.getNodeById(id).__nsPanel.root.querySelectorAll("img.ns-thumb")];
      return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0);
    }, ex.node_id, { timeout: 30000 }).catch(() => log(`${ex.name}: thumbnails did not all load`));
    await page.waitForTimeout(1500); // output nodes load their previews and resize
    r.after_run = await measure();
    r.after_run.overlaps = overlaps(r.after_run.boxes.filter((b) => !b.collapsed));
    await page.evaluate(() => {
      const app = window.comfyAPI.app.app;
      app.canvas.ds.scale = app.graph.extra?.ds?.scale ?? 0.75;
      app.canvas.ds.offset[0] = app.graph.extra?.ds?.offset?.[0] ?? 0;
      app.canvas.ds.offset[1] = app.graph.extra?.ds?.offset?.[1] ?? 0;
      app.canvas.setDirty(true, true);
    });
    await page.waitForTimeout(300);
    await shot(`${ex.name}-03-after-run`);
    r.full_size_after_run = await atFullSize(ex.node_id);
    await page.waitForTimeout(300);
    await shot(`${ex.name}-04-node-at-100pct-after-run`);
    await shot(`${ex.name}-04-panel-done`, page.locator(`.ns-panel[data-node-id="${ex.node_id}"]`));
    // pick the third card: "next run" note, ✓ badge, Run button
    await page.locator(`.ns-panel[data-node-id="${ex.node_id}"] .ns-card`).nth(2).click();
    await page.waitForTimeout(200);
    r.picked = await measure();
    r.cards = await page.evaluate((id) => [...window.comfyAPI.app.app.graph.getNodeById(id).__nsPanel.root.querySelectorAll(".ns-card")].map((c) => ({
      index: Number(c.dataset.index),
      rank: c.querySelector(".ns-b-rank")?.textContent, rank_tip: c.querySelector(".ns-b-rank")?.title,
      id: c.querySelector(".ns-b-id")?.textContent, id_tip: c.querySelector(".ns-b-id")?.title,
    })), ex.node_id);
    await shot(`${ex.name}-05-panel-picked`, page.locator(`.ns-panel[data-node-id="${ex.node_id}"]`));
    // the checker itself: a note too long for its line, and a node moved onto another, must be caught
    r.self_test = await page.evaluate((id) => {
      const app = window.comfyAPI.app.app;
      const node = app.graph.getNodeById(id);
      const note = node.__nsPanel.root.querySelector(".ns-note");
      const saved = note.innerHTML;
      note.textContent = "A note far too long for the one line the panel's footer has: ".repeat(3);
      const overflow = window.__nsChecks.panelOverflow(node.__nsPanel.root);
      note.innerHTML = saved;
      const boxes = window.__nsChecks.nodeBoxes();
      const me = boxes.find((b) => b.id === id), other = boxes.find((b) => b.id !== id);
      Object.assign(other, { x: me.x + me.w - 10, y: me.y + 10 });
      return { overflow, boxes };
    }, ex.node_id);
    r.self_test.overlaps = overlaps(r.self_test.boxes);
    delete r.self_test.boxes;
  }

  // Help pages in the help sidebar, at its default width, for every pack node.
  results.help = {};
  const ids = Object.keys(cfg.help_pages ?? {});
  if (ids.length) {
    // one node of each pack type, as if added from the node library: panel nodes get their size at once
    results.created = await page.evaluate((types) => {
      const app = window.comfyAPI.app.app;
      app.graph.clear();
      return types.map((t, i) => {
        const n = window.LiteGraph.createNode(t);
        n.pos = [80 + (i % 4) * 480, 120 + Math.floor(i / 4) * 1000];
        app.graph.add(n);
        app.canvas.setDirty(true, true);
        return { type: t, panel: !!n.__nsPanel, size: [...n.size], min: [...n.computeSize()] };
      });
    }, ids);
  }
  for (const [type, title] of Object.entries(cfg.help_pages ?? {})) {
    const before = docs.length;
    await page.evaluate((type) => {
      const app = window.comfyAPI.app.app;
      const node = app.graph.nodes.find((n) => n.type === type);
      app.canvas.deselectAll?.();
      app.canvas.ds.scale = 1;
      app.canvas.ds.offset[0] = -node.pos[0] + 500;
      app.canvas.ds.offset[1] = -node.pos[1] + 200;
      app.canvas.selectNode(node);
      app.canvas.setDirty(true, true);
    }, type);
    const info = page.locator('[data-testid="info-button"]');
    await info.first().waitFor({ state: "attached", timeout: 10000 });
    await info.first().evaluate((b) => b.click());
    const h = (results.help[type] = { title });
    try {
      await page.waitForFunction((title) => [...document.querySelectorAll(".node-help-content h1")].some((e) => e.textContent.trim() === title), title, { timeout: 15000 });
    } catch {
      h.error = "the help page did not show";
    }
    await page.waitForTimeout(300);
    h.requests = docs.slice(before);
    h.layout = await page.evaluate(() => {
      const content = document.querySelector(".node-help-content");
      const md = content?.querySelector(".markdown-content") ?? content;
      if (!md) return null;
      let scroller = content;
      while (scroller && !/(auto|scroll)/.test(getComputedStyle(scroller).overflowX)) scroller = scroller.parentElement;
      const box = md.getBoundingClientRect();
      const wide = [...md.querySelectorAll("*")].filter((e) => e.getBoundingClientRect().right > box.right + 1)
        .map((e) => `${e.tagName.toLowerCase()} "${e.textContent.trim().slice(0, 40)}" ${Math.round(e.getBoundingClientRect().width)}px`);
      return {
        sidebar: Math.round(document.querySelector(".side-bar-panel")?.getBoundingClientRect().width ?? 0),
        text_width: md.clientWidth, scroll_width: md.scrollWidth,
        scroller: scroller ? { client: scroller.clientWidth, scroll: scroller.scrollWidth } : null,
        tables: md.querySelectorAll("table").length, wide: wide.slice(0, 10),
      };
    });
    await shot(`help-${type}`, page.locator(".side-bar-panel"));
    log(`help ${type}: ${h.requests.map((q) => q.status).join(",")} ${JSON.stringify(h.layout)}`);
  }
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
