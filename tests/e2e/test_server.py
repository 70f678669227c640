"""End to end: a real ComfyUI server (``main.py --cpu`` on a free loopback port) with the pack as a custom
node, tiny random models under the model names the example workflows use, the API-format graphs of
tests/e2e/graphs/ posted to /prompt and the results read from /history (plus the pack's websocket
progress events and a cancel). Skipped without COMFYUI_PATH; see tests/README-comfy.md."""

import asyncio
import json
import os
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
COMFY = os.environ.get("COMFYUI_PATH")
sys.path.insert(0, str(ROOT / "tests" / "nodes"))
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
from tiny_models import import_comfy  # noqa: E402
from comfy_server import http, running_server  # noqa: E402

SKIP_REASON = import_comfy(COMFY)
pytestmark = [pytest.mark.e2e, pytest.mark.comfy, pytest.mark.skipif(bool(SKIP_REASON), reason=SKIP_REASON or "")]

GRAPHS = sorted(HERE.glob("graphs/*.json"))
CHECKPOINT_NAMES = {"v1-5-pruned-emaonly-fp16.safetensors": "sd15", "scm_trigflow_student.safetensors": "sd15",
                    "sd3.5_medium_incl_clips.safetensors": "sd3"}
BEYOND_SEARCH = ("FKSteering_NoiseSearch", "EarlyPruning_NoiseSearch")  # search nodes whose id does not end in Search
NODE_IDS = ["NoiseCandidatePool_NoiseSearch", "VerifierLoader_NoiseSearch", "VerifierScore_NoiseSearch", "RandomSearch_NoiseSearch",
            "ZeroOrderSearch_NoiseSearch", "PathSearch_NoiseSearch", "FKSteering_NoiseSearch", "EvolutionarySearch_NoiseSearch",
            "EarlyPruning_NoiseSearch", "SCMSampler_NoiseSearch", "SCMSigmas_NoiseSearch",
            "TrigFlowModelSampling_NoiseSearch", "SaveImageWithProvenance_NoiseSearch"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import torch
    import tiny_models
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("comfy_e2e")
    built = tiny_models.build_all(str(base / "models"))
    ckpts = base / "models" / "checkpoints"
    for name, kind in CHECKPOINT_NAMES.items():
        os.symlink(built[kind], ckpts / name)
    vdir = base / "models" / "verifiers"
    vdir.mkdir()
    from verifiers_support import save_tiny_clip
    save_tiny_clip(str(vdir / "clip-vit-large-patch14"))
    with running_server(COMFY, base, base / "models", ["checkpoints", "vae_approx", "verifiers"]) as srv:
        yield srv


def test_pack_loads_and_registers_every_node(server):
    info = http(server.url + "/object_info")
    missing = [n for n in NODE_IDS if n not in info]
    assert not missing, f"nodes missing: {missing}\n{server.log.read_text()[-3000:]}"
    bad = [ln for ln in server.log.read_text().splitlines() if "noise_search" in ln and ("IMPORT FAILED" in ln or "Cannot import" in ln)]
    assert not bad, bad
    names = info["VerifierLoader_NoiseSearch"]["input"]["required"]["name"][1]["options"]
    assert "clip-vit-large-patch14" in names  # models/verifiers via extra_model_paths.yaml 'verifiers:'
    assert info["RandomSearch_NoiseSearch"]["python_module"].startswith("custom_nodes")


@pytest.mark.parametrize("graph", GRAPHS, ids=[g.stem for g in GRAPHS])
def test_graph_runs(server, graph):
    g = json.loads(graph.read_text())
    pid = server.post(g)["prompt_id"]
    h = server.wait(pid)
    assert h["status"]["status_str"] == "success", json.dumps(h["status"], indent=1)[-3000:]
    outs = h["outputs"]
    search = [k for k, v in g.items() if v["class_type"].endswith("Search_NoiseSearch") or v["class_type"] in BEYOND_SEARCH]
    if search:
        ns = outs[search[0]]["noise_search"][0]
        assert ns["candidates"] and ns["winner"] in [c["index"] for c in ns["candidates"]]
        assert len(ns["images"]) == len(ns["top_k"])
        for f in ns["images"]:
            assert (server.base / "temp" / "temp" / f["subfolder"] / f["filename"]).is_file()
        saved = [k for k, v in g.items() if v["class_type"] == "SaveImageWithProvenance_NoiseSearch"][0]
        f = outs[saved]["images"][0]
        from PIL import Image
        png = Image.open(server.base / "output" / f["subfolder"] / f["filename"])
        prov = json.loads(png.text["noise_search"])
        assert prov["algorithm"] in ("random", "zero_order", "paths", "fk", "evolution", "pruning")
        assert len(prov["candidates"]) == len(ns["candidates"])
        assert "prompt" in png.text  # ComfyUI's own metadata stays
    else:
        images = [v for v in outs.values() if "images" in v]
        assert images and all((server.base / "output" / i["subfolder"] / i["filename"]).is_file() for o in images for i in o["images"])


def test_progress_events_and_cancel_keeps_best(server):
    """Live ``noise-search.progress`` websocket events per chunk; /interrupt stops the search, the best so far
    lands in the temp folder and the prompt ends as interrupted."""
    import aiohttp
    g = json.loads((HERE / "graphs" / "random_search_clipscore_sd15.json").read_text())
    g["6"]["inputs"].update(count=400, chunk_size=1, steps=6, seed=7)
    client = uuid.uuid4().hex
    events = []

    async def listen():
        async with aiohttp.ClientSession() as s:
            async with s.ws_connect(f"{server.url.replace('http', 'ws')}/ws?clientId={client}") as ws:
                pid = (await asyncio.to_thread(server.post, g, client))["prompt_id"]
                interrupted = False
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        continue
                    m = json.loads(msg.data)
                    if m["type"] == "noise-search.progress":
                        events.append(m["data"])
                        if len(events) >= 3 and not interrupted:
                            interrupted = True
                            await asyncio.to_thread(http, server.url + "/interrupt", {})
                    if m["type"] in ("execution_interrupted", "execution_error", "execution_success") and m["data"].get("prompt_id") == pid:
                        return pid, m["type"]

    pid, end = asyncio.run(asyncio.wait_for(listen(), 600))
    assert end == "execution_interrupted"
    e = events[0]
    assert e["node"] == "6" and e["prompt_id"] == pid and e["algorithm"] == "random" and e["budget"] is None
    assert {"index", "score", "nfe", "round", "recipe", "seed"} <= set(e["candidates"][0])
    assert [c["index"] for ev in events for c in ev["candidates"]] == list(range(len(events)))
    dumps = sorted((server.base / "temp" / "temp" / "noise_search").glob("partial_6_*.json"))
    assert dumps, "no best-so-far summary in the temp folder"
    prov = json.loads(dumps[-1].read_text())
    assert prov["completed"] is False and len(prov["candidates"]) >= 3
    from PIL import Image
    png = Image.open(sorted((server.base / "temp" / "temp" / "noise_search").glob("partial_6_*.png"))[-1])
    assert json.loads(png.text["noise_search"])["completed"] is False and "prompt" in png.text


def execution_error(h):
    """The ``execution_error`` a finished prompt's /history reports (it must have failed)."""
    assert h["status"]["status_str"] == "error", json.dumps(h["status"], indent=1)[-3000:]
    errs = [m[1] for m in h["status"]["messages"] if m[0] == "execution_error"]
    assert len(errs) == 1, h["status"]["messages"]
    return errs[0]


def test_a_combo_value_outside_its_list_is_refused(server):
    """This ComfyUI's /prompt lets a V3 combo value outside its options through; the node refuses it before sampling,
    naming the input, the value and the valid values (docs/bad-inputs.md N12)."""
    g = json.loads((HERE / "graphs" / "random_search_clipscore_sd15.json").read_text())
    g["6"]["inputs"]["scheduler"] = "bogus"
    try:
        pid = http(server.url + "/prompt", {"prompt": g, "client_id": uuid.uuid4().hex})["prompt_id"]
    except urllib.error.HTTPError as err:  # a ComfyUI that validates V3 combos refuses it at /prompt: fine too
        body = err.read().decode()
        assert err.code == 400 and "scheduler" in body and "bogus" in body, body
        return
    err = execution_error(server.wait(pid))
    assert err["node_id"] == "6" and err["node_type"] == "RandomSearch_NoiseSearch"
    assert err["exception_type"] == "ValueError"
    msg = err["exception_message"]
    assert msg.startswith("scheduler must be one of [") and "'normal'" in msg and "got 'bogus'" in msg, msg


def test_pack_errors_are_named_without_the_custom_nodes_folder(server):
    """ComfyUI imports the pack under its folder path and reports ``module.qualname`` of an exception: the pack's own
    errors read ``noise_search.<module>.<class>`` (not ``/.../custom_nodes/noise_search.verifiers.files...``)."""
    (server.base / "models" / "verifiers" / "empty_verifier").mkdir(exist_ok=True)
    g = json.loads((HERE / "graphs" / "random_search_clipscore_sd15.json").read_text())
    g["5"]["inputs"]["name"] = "empty_verifier"
    err = execution_error(server.wait(server.post(g)["prompt_id"]))
    assert err["node_type"] == "VerifierLoader_NoiseSearch"
    assert err["exception_type"] == "noise_search.verifiers.files.MissingWeightsError", err["exception_type"]
    assert "clip_score verifier: config.json not found in" in err["exception_message"]


# User-sized values of the example workflows; their API twins here use tiny sizes so the e2e runs on a CPU.
EXAMPLE_OVERRIDES = {
    "random_search_clipscore_sd15": {"4": {"width": 512, "height": 512}, "6": {"steps": 20, "proxy_steps": 8, "count": 16, "chunk_size": 4, "top_k": 4}},
    "zero_order_flow_sd3": {"4": {"width": 1024, "height": 1024}, "6": {"steps": 28, "iterations": 8, "top_k": 4}},
    "scm_two_step_custom_advanced": {"4": {"width": 512, "height": 512}},
    "search_with_scm_generator": {"4": {"width": 512, "height": 512}, "6": {"count": 32, "chunk_size": 8, "top_k": 4}},
    "fk_steering_sd15": {"4": {"width": 512, "height": 512}, "6": {"steps": 20, "resample_every": 2, "top_k": 4}},
}
EXAMPLE_TITLES = {
    "random_search_clipscore_sd15": "Random search (best-of-N) with CLIPScore - SD1.5",
    "zero_order_flow_sd3": "Zero-order search on a flow model - SD3",
    "scm_two_step_custom_advanced": "sCM 2-step sampling - SamplerCustomAdvanced",
    "search_with_scm_generator": "Random search with 2-NFE sCM candidates",
    "fk_steering_sd15": "FK steering (4 particles) with CLIPScore - SD1.5",
}


def test_example_workflows_are_their_api_twins(server):
    """example_workflows/<name>.json (UI format, loads in the frontend) converts back to tests/e2e/graphs/<name>.json
    (which the e2e runs) up to the user-sized values; every workflow has a thumbnail of the same basename.
    NOISE_SEARCH_WRITE_EXAMPLES=1 regenerates them from the twins."""
    sys.path.insert(0, str(HERE))
    from workflow_format import api_to_ui, thumbnail, ui_to_api
    info = http(server.url + "/object_info")
    ex_dir = ROOT / "example_workflows"
    for twin in GRAPHS:
        g = json.loads(twin.read_text())
        over = EXAMPLE_OVERRIDES[twin.stem]
        path = ex_dir / f"{twin.stem}.json"
        if os.environ.get("NOISE_SEARCH_WRITE_EXAMPLES") == "1":
            ui = api_to_ui(g, info, over)
            ui["extra"]["noise_search"] = {"title": EXAMPLE_TITLES[twin.stem]}
            path.write_text(json.dumps(ui, indent=1) + "\n")
            thumbnail(ui, EXAMPLE_TITLES[twin.stem]).save(path.with_suffix(".jpg"), quality=90)
        ui = json.loads(path.read_text())
        want = json.loads(json.dumps(g))
        for nid, vals in over.items():
            want[nid]["inputs"].update(vals)
        got = ui_to_api(ui, info)
        for nid, node in want.items():
            assert got[nid]["class_type"] == node["class_type"]
            for k, v in node["inputs"].items():
                assert got[nid]["inputs"][k] == v, (twin.stem, nid, k)
        assert path.with_suffix(".jpg").is_file()
    family = {p.stem for p in (HERE / "graphs" / "family_examples").glob("*.json")}  # tests/e2e/test_family_examples.py
    assert sorted(p.stem for p in ex_dir.glob("*.json") if p.stem not in family) == sorted(p.stem for p in GRAPHS)
