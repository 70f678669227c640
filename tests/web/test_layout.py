"""The node panel as an artist sees it: the example workflows loaded in ComfyUI's real frontend (headless
Chromium, 1400x1000 window) against a real server.

* no two nodes of any example workflow overlap once loaded (the frontend's real sizes, the search node at its
  panel's size from the start), nor after a run of the random-search example (tiny models stand in for its
  checkpoint and verifier): output nodes grow their image previews, the search node keeps its size;
* the search node, panel and gallery included, fits the window below ComfyUI's menu bar at 100 % zoom;
* no text box of the panel overflows (before, during and after a run, after a pick), the chart's
  placeholder fits its box and is centred, and each card says what its numbers are (rank vs candidate);
* every pack node's help page is served at the first path the frontend asks for (no 404) and is not wider
  than the help sidebar at its default width.

Screenshots: tests/artifacts/web/layout/. NS_WRITE_EXAMPLE_LAYOUT=1 lays the example workflows out again from the
sizes the frontend gave their nodes (and redraws their thumbnails): run it after a change that resizes nodes.
"""

import ast
import json
import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "example_workflows"
DOCS = ROOT / "web" / "docs"
RUN_EXAMPLE = "random_search_clipscore_sd15"
PANEL_TYPES = {"RandomSearch_NoiseSearch", "ZeroOrderSearch_NoiseSearch", "PathSearch_NoiseSearch", "VerifierScore_NoiseSearch"}
WIDTH, HEIGHT = 1400, 1000
PANEL_MIN_WIDTH = 440  # MIN_WIDTH in web/js/noise_search.js
# room for the image preview ComfyUI adds to output nodes after a run (its widget is at least 220 px tall)
PREVIEW_HEIGHT = {"SaveImageWithProvenance_NoiseSearch": 300, "PreviewImage": 260, "SaveImage": 280}
TITLE, GAP_X, GAP_Y, ORIGIN = 30, 60, 30, 40


def tiny_widgets(ui):
    """Widget values that let the example run on the test server's tiny models (layout-neutral)."""
    out = {}
    for n in ui["nodes"]:
        if n["type"] == "CheckpointLoaderSimple":
            out[n["id"]] = {"ckpt_name": "tiny_sd15.safetensors"}
        elif n["type"] == "VerifierLoader_NoiseSearch":
            out[n["id"]] = {"name": "tiny_cls.pt", "kind": "classifier", "device": "cpu", "dtype": "fp32", "options": '{"num_classes": 10}'}
        elif n["type"] == "EmptyLatentImage":
            out[n["id"]] = {"width": 64, "height": 64}
        elif n["type"] in PANEL_TYPES:
            out[n["id"]] = {"class_id": 3}
    return out


def node_ids():
    """Node ids defined in nodes/*.py (as tests/test_web_docs.py finds them)."""
    ids = set()
    for path in (ROOT / "nodes").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.match(r"^[A-Z][A-Za-z0-9]*_NoiseSearch$", node.value):
                ids.add(node.value)
    return ids


def help_pages():
    return {p.parent.name: p.read_text(encoding="utf-8").splitlines()[0].lstrip("# ").strip() for p in sorted(DOCS.glob("*/en.md"))}


@pytest.fixture(scope="module")
def layout(drive):
    examples = []
    for path in sorted(EXAMPLES.glob("*.json")):
        ui = json.loads(path.read_text())
        panel = [n["id"] for n in ui["nodes"] if n["type"] in PANEL_TYPES]
        ex = {"name": path.stem, "workflow": ui, "node_id": panel[0] if panel else None}
        if path.stem == RUN_EXAMPLE:
            ex.update(run=True, widgets=tiny_widgets(ui))
        examples.append(ex)
    results, out = drive("layout", {"mode": "layout", "examples": examples, "help_pages": help_pages(),
                                    "width": WIDTH, "height": HEIGHT})
    return results, out


def test_example_workflows_have_no_overlapping_nodes(layout):
    results, _ = layout
    assert set(results["examples"]) == {p.stem for p in EXAMPLES.glob("*.json")}
    bad = {name: r["loaded"]["overlaps"] for name, r in results["examples"].items() if r["loaded"]["overlaps"]}
    assert not bad, json.dumps(bad, indent=1)


def test_search_node_has_its_panel_size_from_the_start(layout):
    """Loaded at its stored size, the node already is as wide as the panel needs and exactly as tall as its content."""
    results, _ = layout
    for name, r in results["examples"].items():
        for nid, p in r["loaded"]["panels"].items():
            box = next(b for b in r["loaded"]["boxes"] if str(b["id"]) == nid)
            assert p["size"][0] >= 440, (name, nid, p["size"])
            stored = next(n for n in json.loads((EXAMPLES / f"{name}.json").read_text())["nodes"] if str(n["id"]) == nid)
            assert [round(v) for v in stored["size"]] == [round(v) for v in p["size"]], \
                f"{name}: node {nid} is stored {stored['size']} but shows {p['size']}: re-lay out the example"
            assert box["w"] == p["size"][0]


def test_a_new_panel_node_has_its_size_at_once(layout):
    """Added from the node library (LiteGraph.createNode): as wide as the panel needs and as tall as its content."""
    created = [c for c in layout[0]["created"] if c["panel"]]
    assert {c["type"] for c in created} == PANEL_TYPES
    for c in created:
        assert c["size"][0] >= 440 and round(c["size"][1]) == round(c["min"][1]), c


def test_no_overlap_after_a_run_and_the_search_node_keeps_its_size(layout):
    r = layout[0]["examples"][RUN_EXAMPLE]
    assert r["after_run"]["overlaps"] == [], r["after_run"]["overlaps"]
    nid = str(next(iter(r["loaded"]["panels"])))
    assert r["after_run"]["panels"][nid]["state"] == "done"
    assert r["after_run"]["panels"][nid]["size"] == r["loaded"]["panels"][nid]["size"]
    grew = [b for b in r["after_run"]["boxes"] if b["type"] in ("SaveImageWithProvenance_NoiseSearch", "PreviewImage")]
    assert grew, "the example lost its output nodes"


def test_search_node_fits_the_window_at_full_size(layout):
    """1000 px window: title, widgets, chart and gallery all on screen at 100 % zoom, below the menu bars."""
    r = layout[0]["examples"][RUN_EXAMPLE]
    for key in ("full_size", "full_size_after_run"):
        f = r[key]
        assert f["top"] >= f["barBottom"] - 1 and f["bottom"] <= f["viewport"], (key, f)


def test_every_example_search_node_fits_at_its_saved_zoom(layout):
    for name, r in layout[0]["examples"].items():
        if r.get("full_size"):
            f = r["full_size"]
            scale = json.loads((EXAMPLES / f"{name}.json").read_text())["extra"]["ds"]["scale"]
            assert f["height"] * scale <= f["viewport"] - f["barBottom"], (name, f, scale)


def test_panel_text_does_not_overflow(layout):
    results, _ = layout
    bad = {}
    for name, r in results["examples"].items():
        for state in ("loaded", "running", "after_run", "picked"):
            for nid, p in (r.get(state) or {}).get("panels", {}).items():
                if p["overflow"]:
                    bad[f"{name} node {nid} {state} ({p['state']})"] = p["overflow"]
    assert not bad, json.dumps(bad, indent=1)


def test_the_checks_catch_overflow_and_overlap(layout):
    """The two checks above are not vacuous: a too-long note and a node moved onto another are reported."""
    st = layout[0]["examples"][RUN_EXAMPLE]["self_test"]
    assert any("ns-note" in b for b in st["overflow"]), st["overflow"]
    assert len(st["overlaps"]) >= 1, st


def test_cards_say_rank_and_candidate_apart(layout):
    cards = layout[0]["examples"][RUN_EXAMPLE]["cards"]
    assert [c["rank"].replace("★", "").strip() for c in cards] == ["1st", "2nd", "3rd", "4th"][: len(cards)]
    assert all(c["id"] == f"cand. {c['index']}" for c in cards), cards
    assert all("rank" in c["rank_tip"] and f"candidate index {c['index']}" in c["id_tip"] for c in cards), cards
    assert not any(c["rank"].startswith("#") or c["id"].startswith("#") for c in cards)


def test_help_pages_load_at_the_first_path_and_fit_the_sidebar(layout):
    results, _ = layout
    help_ = results["help"]
    assert help_ and set(help_) == set(help_pages()) == node_ids()
    problems = {}
    for node_id, h in help_.items():
        statuses = [q["status"] for q in h["requests"]]
        if h.get("error") or not statuses or statuses[0] != 200 or f"/docs/{node_id}/en.md" not in h["requests"][0]["url"]:
            problems[node_id] = {"error": h.get("error"), "requests": h["requests"]}
            continue
        lay = h["layout"]
        if lay["scroll_width"] > lay["text_width"] + 1 or lay["wide"] or (lay["scroller"] and lay["scroller"]["scroll"] > lay["scroller"]["client"] + 1):
            problems[node_id] = lay
    assert not problems, json.dumps(problems, indent=1)
    # the 404 the frontend used to log for each page's first request
    ours = [e for e in results["console_errors"] if "/docs/" in e]
    assert not ours, ours


def test_layout_screenshots(layout):
    _, out = layout
    for name in (f"{RUN_EXAMPLE}-01-loaded", f"{RUN_EXAMPLE}-02-panel-idle", f"{RUN_EXAMPLE}-03-after-run",
                 f"{RUN_EXAMPLE}-04-node-at-100pct-after-run", f"{RUN_EXAMPLE}-05-panel-picked", "help-RandomSearch_NoiseSearch"):
        assert (out / f"{name}.png").stat().st_size > 1000, name


def relayout(ui, boxes):
    """Columns (nodes sharing an x) keep their order left to right and top to bottom; each node gets the size the
    frontend showed (output nodes: room for their preview), columns are GAP_X apart and a title bar starts GAP_Y
    below the node above."""
    shown = {b["id"]: (b["w"], b["h"] - TITLE) for b in boxes}
    cols = {}
    for n in ui["nodes"]:
        cols.setdefault(n["pos"][0], []).append(n)
    x = ORIGIN
    for cx in sorted(cols):
        y, width = ORIGIN, 0
        for n in sorted(cols[cx], key=lambda n: n["pos"][1]):
            w, h = (round(v) for v in shown[n["id"]])
            w = max(w, PANEL_MIN_WIDTH if n["type"] in PANEL_TYPES else 340)
            h = max(h, PREVIEW_HEIGHT.get(n["type"], 0))
            n["pos"], n["size"] = [x, y], [w, h]
            y += h + TITLE + GAP_Y
            width = max(width, w)
        x += width + GAP_X
    return ui


@pytest.mark.skipif(os.environ.get("NS_WRITE_EXAMPLE_LAYOUT") != "1", reason="set NS_WRITE_EXAMPLE_LAYOUT=1 to lay the examples out again")
def test_write_example_layout(layout):
    sys.path.insert(0, str(ROOT / "tests" / "e2e"))
    from workflow_format import thumbnail
    for name, r in layout[0]["examples"].items():
        path = EXAMPLES / f"{name}.json"
        ui = relayout(json.loads(path.read_text()), r["loaded"]["boxes"])
        path.write_text(json.dumps(ui, indent=1) + "\n")
        title = ui.get("extra", {}).get("noise_search", {}).get("title", name)
        thumbnail(ui, title).save(path.with_suffix(".jpg"), quality=90)
