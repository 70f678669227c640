"""The pack's web UI in a real browser against a real ComfyUI server and the real nodes.

One workflow (tiny random SD1.5 checkpoint, a tiny TorchScript classifier as the verifier):
Random Search -> Save Image with Search Provenance, and Verifier Score on the search's top-K.
The driver (drive.mjs) loads it, queues it, reads the gallery and chart, clicks a non-winning
thumbnail, queues again and resets; this test checks what it saw and what the server wrote.

Set NS_UPDATE_SCREENSHOTS=1 to copy the final screenshots to web/screenshots/ (for the README).
"""

import io
import json
import os
import shutil
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

COUNT, TOP_K, SEED, CLASS_ID = 12, 4, 5, 3


def workflow():
    """API-format graph; the frontend lays it out (app.loadApiJson)."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny_sd15.safetensors"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo of a cat", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "5": {"class_type": "VerifierLoader_NoiseSearch",
              "inputs": {"name": "tiny_cls.pt", "kind": "classifier", "device": "cpu", "dtype": "fp32", "options": '{"num_classes": 10}'}},
        "6": {"class_type": "RandomSearch_NoiseSearch", "inputs": {
            "model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0], "vae": ["1", 2],
            "verifier": ["5", 0], "verifier_prompt": "", "class_id": CLASS_ID, "seed": SEED, "sampler_name": "euler",
            "scheduler": "normal", "steps": 4, "cfg": 1.0, "denoise": 1.0, "count": COUNT, "budget": 0, "chunk_size": 3,
            "top_k": TOP_K, "proxy_steps": 0, "ensemble": "mean_rank", "pick": -1}},
        "7": {"class_type": "SaveImageWithProvenance_NoiseSearch",
              "inputs": {"images": ["6", 1], "filename_prefix": "ns_web_test", "provenance": ["6", 7]}},
        "8": {"class_type": "VerifierScore_NoiseSearch", "inputs": {
            "images": ["6", 4], "verifier": ["5", 0], "prompt": "", "class_id": CLASS_ID, "top_k": 3, "ensemble": "mean_rank", "pick": -1}},
        "9": {"class_type": "PreviewImage", "inputs": {"images": ["8", 1]}},
    }


def score_workflow():
    """Four photos in one batch, ranked by Verifier Score (its gallery and pick)."""
    g = {str(i + 1): {"class_type": "LoadImage", "inputs": {"image": f"ns_photo_{i}.png"}} for i in range(4)}
    g["5"] = {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["2", 0]}}
    g["6"] = {"class_type": "ImageBatch", "inputs": {"image1": ["5", 0], "image2": ["3", 0]}}
    g["7"] = {"class_type": "ImageBatch", "inputs": {"image1": ["6", 0], "image2": ["4", 0]}}
    g["8"] = {"class_type": "VerifierLoader_NoiseSearch",
              "inputs": {"name": "tiny_cls.pt", "kind": "classifier", "device": "cpu", "dtype": "fp32", "options": '{"num_classes": 10}'}}
    g["9"] = {"class_type": "VerifierScore_NoiseSearch", "inputs": {
        "images": ["7", 0], "verifier": ["8", 0], "prompt": "", "class_id": CLASS_ID, "top_k": 4, "ensemble": "mean_rank", "pick": -1}}
    g["10"] = {"class_type": "PreviewImage", "inputs": {"images": ["9", 1]}}
    return g


def history(url, prompt_id):
    with urllib.request.urlopen(f"{url}/history/{prompt_id}", timeout=30) as r:
        return json.loads(r.read())[prompt_id]


def saved_png(url, entry):
    from PIL import Image
    q = urllib.parse.urlencode({"filename": entry["filename"], "subfolder": entry["subfolder"], "type": entry["type"]})
    with urllib.request.urlopen(f"{url}/view?{q}", timeout=30) as r:
        img = Image.open(io.BytesIO(r.read()))
        img.load()
    return img


def provenance_of(url, prompt_id):
    h = history(url, prompt_id)
    assert h["status"]["status_str"] == "success", h["status"]
    files = h["outputs"]["7"]["images"]
    assert len(files) == 1
    img = saved_png(url, files[0])
    return json.loads(img.text["noise_search"]), img


@pytest.fixture(scope="module")
def session(drive, comfy_server):
    results, out = drive("random_search", {"api": workflow(), "node_id": 6, "pick_rank": 2, "pack_dir_name": "noise_search",
                                           "cancel_widgets": {"count": 120, "pick": -1}})
    return results, out, comfy_server["url"]


def test_gallery_shows_the_scored_top_k(session):
    results, _, _ = session
    assert results["node"]["hasPanel"], "the search node has no noise-search panel"
    panel = results["run1"]["panel"]
    assert panel["state"] == "done" and panel["visible"]
    assert len(panel["cards"]) == TOP_K
    assert all(c["img"] and c["loaded"] for c in panel["cards"]), panel["cards"]
    scores = [float(c["score"]) for c in panel["cards"]]
    assert scores == sorted(scores, reverse=True), "gallery is not best first"
    final = panel["final"]
    assert [c["index"] for c in panel["cards"]] == final["top_k"]
    assert panel["cards"][0]["winner"] and panel["cards"][0]["index"] == final["winner"]
    assert sum(c["winner"] for c in panel["cards"]) == 1
    assert final["n_candidates"] == COUNT and panel["candidates"] == COUNT


def test_chart_has_a_point_per_candidate_and_updates_live(session):
    results, _, _ = session
    run1 = results["run1"]
    assert run1["panel"]["chart_points"] == COUNT
    progress = [p for p in run1["progress"] if str(p.get("node")) == "6"]
    assert len(progress) >= 2, "expected several live progress messages (one per chunk)"
    seen = [c["index"] for p in progress for c in p["candidates"]]
    assert sorted(seen) == list(range(COUNT))
    assert all(p["algorithm"] == "random" for p in progress)
    assert [p["nfe"] for p in progress] == sorted(p["nfe"] for p in progress)


def test_pick_changes_the_output_and_is_recorded(session):
    results, _, url = session
    chosen = results["picked_index"]
    winner = results["run1"]["panel"]["final"]["winner"]
    assert chosen != winner
    assert results["after_click"]["pick"] == chosen
    assert [c["index"] for c in results["after_click"]["cards"] if c["picked"]] == [chosen]

    run2 = results["run2"]["panel"]
    assert run2["final"]["picked"] == chosen and run2["final"]["winner"] == winner
    assert run2["final"]["top_k"] == results["run1"]["panel"]["final"]["top_k"], "the seed changed between runs: the pick refers to another search"

    prov1, img1 = provenance_of(url, results["run1"]["prompt_id"])
    prov2, img2 = provenance_of(url, results["run2"]["prompt_id"])
    assert prov1["picked_by"] == "verifier" and prov1["output_index"] == winner
    assert prov2["picked_by"] == "user" and prov2["picked"] == chosen and prov2["output_index"] == chosen
    assert prov2["winner_index"] == winner
    assert img1.tobytes() != img2.tobytes(), "the picked candidate's image equals the winner's"


def test_reset_restores_the_verifier_choice(session):
    results, _, _ = session
    assert results["after_reset"]["pick"] == -1
    assert not any(c["picked"] for c in results["after_reset"]["cards"])


def test_cancel_keeps_the_scored_candidates(session):
    results, _, _ = session
    cancel = results["cancel"]
    assert cancel["status"] == "interrupted"
    panel = cancel["panel"]
    assert panel["state"] == "cancelled" and panel["final"] is None
    assert 0 < panel["candidates"] < 120 and panel["chart_points"] == panel["candidates"]


def test_verifier_score_panel(session):
    results, _, _ = session
    panels = results["run1"]["other_panels"]
    assert "8" in panels, f"no Verifier Score panel among {list(panels)}"
    p = panels["8"]
    assert len(p["cards"]) == 3 and all(c["loaded"] for c in p["cards"])
    assert p["chart_points"] == TOP_K and p["final"]["winner"] == p["cards"][0]["index"]


def test_panel_text_fits_in_every_state(session, score_session):
    """Idle, searching, done, picked, re-run, reset, cancelled; search node and Verifier Score: no text box of the
    panel overflows (scrollWidth/scrollHeight beyond its box), the chart's placeholder fits, and the node's size
    never changes (it is right from the moment the node is created)."""
    bad, sizes = {}, {}
    for label, results in (("search", session[0]), ("score", score_session[0])):
        states = {"initial": results["initial"], "after_click": results["after_click"], "after_reset": results["after_reset"]}
        for run in ("run1", "run2"):
            states[run] = results[run]["panel"]
            states.update({f"{run}/other {k}": v for k, v in results[run]["other_panels"].items()})
        if "cancel" in results:
            states["cancel"] = results["cancel"]["panel"]
        for name, panel in states.items():
            if panel["overflow"]:
                bad[f"{label} {name}"] = panel["overflow"]
            if "other" not in name:
                sizes.setdefault(label, set()).add(tuple(panel["size"]))
    assert not bad, json.dumps(bad, indent=1)
    assert all(len(v) == 1 for v in sizes.values()), f"the node changed size between states: {sizes}"
    assert all(w >= 440 for v in sizes.values() for w, _ in v), sizes


def test_help_page_is_served_and_no_page_errors(session):
    results, _, _ = session
    assert results["help_page"]["status"] == 200 and results["help_page"]["head"].startswith("# Random Search")
    # the frontend itself may log unrelated start-up errors; none may come from this pack's scripts
    ours = [e for e in results["page_errors"] + results["console_errors"] if "noise_search" in e or "noise-search" in e]
    assert ours == [], ours


def test_screenshots_written(session):
    _, out, _ = session
    for name in ("01-loaded", "03-run1-done", "03-run1-panel", "04-picked", "06-run2-done", "06-run2-panel"):
        assert (out / f"{name}.png").stat().st_size > 1000, name
    update_readme_screenshot(out / "06-run2-panel.png", "random_search_panel.png")


@pytest.fixture(scope="module")
def score_session(drive, comfy_server):
    results, out = drive("verifier_score", {"api": score_workflow(), "node_id": 9, "pick_rank": 1, "pack_dir_name": "noise_search"})
    return results, out, comfy_server["url"]


def test_verifier_score_gallery_pick_and_reset(score_session):
    results, out, url = score_session
    run1 = results["run1"]["panel"]
    assert run1["state"] == "done" and len(run1["cards"]) == 4 and all(c["loaded"] for c in run1["cards"])
    assert run1["chart_points"] == 4 and run1["final"]["n_candidates"] == 4
    scores = [float(c["score"]) for c in run1["cards"]]
    assert scores == sorted(scores, reverse=True)
    winner, chosen = run1["final"]["winner"], results["picked_index"]
    assert chosen != winner and results["after_click"]["pick"] == chosen
    run2 = results["run2"]["panel"]
    assert run2["final"]["picked"] == chosen and run2["final"]["winner"] == winner
    h = history(url, results["run2"]["prompt_id"])
    assert h["outputs"]["9"]["noise_search"][0]["picked"] == chosen
    assert results["after_reset"]["pick"] == -1
    update_readme_screenshot(out / "06-run2-panel.png", "verifier_score_panel.png")


def update_readme_screenshot(src, name):
    """With NS_UPDATE_SCREENSHOTS=1, copy a panel screenshot to web/screenshots/ (committed, shown in the README)."""
    if not os.environ.get("NS_UPDATE_SCREENSHOTS"):
        return
    dest = Path(__file__).resolve().parents[2] / "web" / "screenshots"
    dest.mkdir(exist_ok=True)
    shutil.copy(src, dest / name)
