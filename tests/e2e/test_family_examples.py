"""The per-family example workflows (issue 15): the paper's set-ups (Ma, Tong et al. 2025) at user scale, run end to end
on tiny stand-ins.

* ``example_workflows/flux_dev_ensemble_search.json``: FLUX.1-dev (cfg 1 + FluxGuidance 3.5), Random Search ranked by
  the Table 2 ensemble (LAION aesthetic + CLIPScore + ImageReward, mean rank);
* ``example_workflows/sdxl_pickscore_imagereward_search.json``: SDXL with PickScore + ImageReward (Table 3's
  verifiers; an SDXL-DPO checkpoint drops in for ``sd_xl_base_1.0.safetensors``);
* ``example_workflows/pixart_sigma_ensemble_search.json``: PixArt-Sigma with the ensemble (Table 4).

Each UI workflow's API twin is ``tests/e2e/graphs/family_examples/<name>.json`` (the real model file names, user sizes).
Here the twin is posted to a real ComfyUI server with the names swapped for the tiny models of
``tests/nodes/tiny_families.py`` (T5-XXL, which ComfyUI only builds at full size, replaced by CLIP-L through the SD3 text
encoder as there) and tiny random verifiers in the folders ``python -m noise_search weights get KIND`` creates (named
after the kind), at 64 px (PixArt 320 px), 2 steps, 3 candidates. The UI workflows must convert back to their twins,
list the model files they need in their loader nodes' ``properties.models`` (what ComfyUI's frontend offers to download;
it offers a download for .safetensors / .sft URLs only, so PixArt's .pth is listed but fetched by hand) and have a
thumbnail. ``NOISE_SEARCH_WRITE_EXAMPLES=1`` regenerates them (and the thumbnails) from the twins; lay them out again
afterwards with ``NS_WRITE_EXAMPLE_LAYOUT=1 ... pytest tests/web/test_layout.py`` (tests/README-comfy.md). Skipped
without COMFYUI_PATH. About 1 minute on 2 CPU cores, 3 GB of temporary disk (deleted after).

* ``example_workflows/wan21_video_keyframe_search.json``: Wan 2.1 text-to-video (1.3B), Random Search over 8 seeds
  scored by CLIPScore on the keyframes (first, middle, last frame; mean), the winner's frames into CreateVideo +
  SaveVideo (and Save Image with Search Provenance). Run here on the tiny Wan 2.1 at 64 px, 5 frames.
"""

import copy
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
COMFY = os.environ.get("COMFYUI_PATH")
sys.path.insert(0, str(ROOT / "tests" / "nodes"))
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
sys.path.insert(0, str(HERE))
from tiny_models import import_comfy  # noqa: E402
from comfy_server import http, running_server  # noqa: E402

SKIP_REASON = import_comfy(COMFY)
pytestmark = [pytest.mark.e2e, pytest.mark.comfy, pytest.mark.skipif(bool(SKIP_REASON), reason=SKIP_REASON or "")]

TWINS = HERE / "graphs" / "family_examples"
EXAMPLES = ROOT / "example_workflows"
# example -> (tiny family, its search node's cfg multiplier, the verifier kinds in the order verifier, verifier_2, ...)
CASES = {
    "flux_dev_ensemble_search": ("flux_dev", 1, ["aesthetic", "clip_score", "image_reward"]),
    "sdxl_pickscore_imagereward_search": ("sdxl", 2, ["pick_score", "image_reward"]),
    "pixart_sigma_ensemble_search": ("pixart_sigma", 2, ["aesthetic", "clip_score", "image_reward"]),
    "wan21_video_keyframe_search": ("wan21_t2v", 2, ["clip_score"]),
}
TITLES = {
    "flux_dev_ensemble_search": "FLUX.1-dev: random search, aesthetic + CLIPScore + ImageReward",
    "sdxl_pickscore_imagereward_search": "SDXL: random search, PickScore + ImageReward",
    "pixart_sigma_ensemble_search": "PixArt-Sigma: random search, verifier ensemble",
    "wan21_video_keyframe_search": "Wan 2.1 video: random search, CLIPScore on keyframes",
}
DESCRIPTIONS = {
    "flux_dev_ensemble_search": "Ma, Tong et al. 2025, Table 2 set-up at small scale: FLUX.1-dev (cfg 1, FluxGuidance 3.5), "
                                "best of 16 seeds ranked by the mean rank of the LAION aesthetic predictor, CLIPScore and ImageReward.",
    "sdxl_pickscore_imagereward_search": "Ma, Tong et al. 2025, Table 3 set-up at small scale: SDXL (or an SDXL-DPO checkpoint in "
                                         "its place), best of 16 seeds ranked by the mean rank of PickScore and ImageReward.",
    "pixart_sigma_ensemble_search": "Ma, Tong et al. 2025, Table 4 set-up at small scale: PixArt-Sigma, best of 16 seeds ranked by "
                                    "the mean rank of the LAION aesthetic predictor, CLIPScore and ImageReward.",
    "wan21_video_keyframe_search": "Wan 2.1 text-to-video (1.3B): best of 8 seeds, each candidate video scored by CLIPScore on "
                                   "its keyframes (first, middle, last frame) averaged; the winner saved as a video.",
}

# The model files the examples load, as the ComfyUI frontend lists them (properties.models of the loader node:
# the official templates' convention, e.g. comfyui_workflow_templates' flux_dev_full_text_to_image.json).
HF = "https://huggingface.co/"
WAN = "Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files/"
MODELS = {
    "flux1-dev.safetensors": (HF + "Comfy-Org/flux1-dev/resolve/main/flux1-dev.safetensors", "diffusion_models"),
    "clip_l.safetensors": (HF + "comfyanonymous/flux_text_encoders/resolve/main/clip_l.safetensors", "text_encoders"),
    "t5xxl_fp16.safetensors": (HF + "comfyanonymous/flux_text_encoders/resolve/main/t5xxl_fp16.safetensors", "text_encoders"),
    "ae.safetensors": (HF + "Comfy-Org/Lumina_Image_2.0_Repackaged/resolve/main/split_files/vae/ae.safetensors", "vae"),
    "sd_xl_base_1.0.safetensors": (HF + "stabilityai/stable-diffusion-xl-base-1.0/resolve/main/sd_xl_base_1.0.safetensors", "checkpoints"),
    "PixArt-Sigma-XL-2-1024-MS.pth": (HF + "PixArt-alpha/PixArt-Sigma/resolve/main/PixArt-Sigma-XL-2-1024-MS.pth", "diffusion_models"),
    "sdxl_vae.safetensors": (HF + "stabilityai/sdxl-vae/resolve/main/sdxl_vae.safetensors", "vae"),
    # comfyui_workflow_templates' text_to_video_wan.json (its "?download=true" dropped)
    "wan2.1_t2v_1.3B_fp16.safetensors": (HF + WAN + "diffusion_models/wan2.1_t2v_1.3B_fp16.safetensors", "diffusion_models"),
    "umt5_xxl_fp8_e4m3fn_scaled.safetensors": (HF + WAN + "text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors", "text_encoders"),
    "wan_2.1_vae.safetensors": (HF + WAN + "vae/wan_2.1_vae.safetensors", "vae"),
}
MODEL_INPUTS = {"UNETLoader": ["unet_name"], "CheckpointLoaderSimple": ["ckpt_name"], "VAELoader": ["vae_name"],
                "CLIPLoader": ["clip_name"], "DualCLIPLoader": ["clip_name1", "clip_name2"]}

# real file -> the tiny stand-in (tests/nodes/tiny_families.py)
TINY = {"flux1-dev.safetensors": "tiny_flux_dev.safetensors", "ae.safetensors": "tiny_flux_ae.safetensors",
        "sd_xl_base_1.0.safetensors": "tiny_sdxl.safetensors", "PixArt-Sigma-XL-2-1024-MS.pth": "tiny_pixart_sigma.safetensors",
        "sdxl_vae.safetensors": "tiny_sdxl_vae.safetensors",
        "wan2.1_t2v_1.3B_fp16.safetensors": "tiny_wan21_t2v.safetensors", "wan_2.1_vae.safetensors": "tiny_wan21_vae.safetensors"}
TINY_TEXT_ENCODER = {"class_type": "CLIPLoader", "inputs": {"clip_name": "tiny_clip_l.safetensors", "type": "sd3", "device": "default"}}
IMAGE_REWARD_OPTIONS = '{"vision_heads": 3}'  # the tiny BLIP ViT of verifiers_support (48 wide, 3 heads)


def twin(name):
    return json.loads((TWINS / f"{name}.json").read_text())


def tiny(g, family):
    """The example's API twin with the tiny models, tiny sizes and a 3-candidate, 2-step search."""
    g = copy.deepcopy(g)
    for nid, node in g.items():
        ct, inp = node["class_type"], node["inputs"]
        if ct == "DualCLIPLoader" or (ct == "CLIPLoader" and ("t5xxl" in inp["clip_name"] or "umt5" in inp["clip_name"])):
            g[nid] = copy.deepcopy(TINY_TEXT_ENCODER)
            continue
        for key in MODEL_INPUTS.get(ct, []):
            inp[key] = TINY[inp[key]]
        if ct in ("EmptyLatentImage", "EmptySD3LatentImage"):
            size = 320 if family == "pixart_sigma" else 64  # PixArt's position embedding needs >= 264 px
            inp.update(width=size, height=size)
        if ct == "EmptyHunyuanLatentVideo":
            inp.update(width=64, height=64, length=5)
        if ct == "VerifierLoader_NoiseSearch" and inp["kind"] == "image_reward":
            inp["options"] = IMAGE_REWARD_OPTIONS
        if ct == "RandomSearch_NoiseSearch":
            inp.update(steps=2, count=3, chunk_size=3, top_k=2)
        if ct in ("SaveImageWithProvenance_NoiseSearch", "SaveVideo"):
            inp["filename_prefix"] = f"family_examples/{family}"
    return g


def save_tiny_verifiers(vdir):
    """Tiny random verifiers in the folders ``noise_search weights get KIND`` fills (named after the kind)."""
    import torch
    import verifiers_support as S
    from noise_search.verifiers.clip import AESTHETIC_FILE, RewardMLP

    S.save_tiny_clip(str(vdir / "clip_score"))
    S.save_tiny_clip(str(vdir / "pick_score"), seed=1)
    S.save_tiny_clip(str(vdir / "aesthetic" / "clip"), seed=2)
    torch.manual_seed(5)
    torch.save(RewardMLP(16).state_dict(), vdir / "aesthetic" / AESTHETIC_FILE)  # 16: the tiny CLIP's projection
    ir = vdir / "image_reward"
    ir.mkdir()
    S.synthetic_bert_vocab(str(ir / "vocab.txt"))
    with open(ir / "vocab.txt", encoding="utf-8") as f:
        n = sum(1 for _ in f) + 2  # + [DEC], [ENC]
    med = S.tiny_med_config(n)
    S.write_json(ir / "med_config.json", med)
    torch.manual_seed(0)
    torch.save(S.randomize_(S.RefImageReward(n, med), seed=3).eval().state_dict(), ir / "ImageReward.pt")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import torch
    import tiny_families
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("comfy_family_examples")
    models = base / "models"
    for family in sorted({c[0] for c in CASES.values()}):
        tiny_families.build(str(models), family)
    vdir = models / "verifiers"
    vdir.mkdir()
    save_tiny_verifiers(vdir)
    try:
        with running_server(COMFY, base, models, ["checkpoints", "diffusion_models", "text_encoders", "vae", "verifiers"],
                            name="noise_search_family_examples") as srv:
            yield srv
    finally:
        shutil.rmtree(models, ignore_errors=True)


@pytest.mark.parametrize("name", list(CASES))
def test_example_runs_on_the_tiny_family(server, name):
    from PIL import Image
    family, cfg_rows, kinds = CASES[name]
    g = tiny(twin(name), family)
    out = server.ok(g)
    search = [k for k, v in g.items() if v["class_type"] == "RandomSearch_NoiseSearch"][0]
    saved = [k for k, v in g.items() if v["class_type"] == "SaveImageWithProvenance_NoiseSearch"][0]
    png = Image.open(server.output(out[saved]["images"][0]))
    p = json.loads(png.text["noise_search"])
    assert p["algorithm"] == "random" and len(p["candidates"]) == 3
    assert p["nfe"] == 3 * 2 and p["cfg_multiplier"] == cfg_rows
    described = json.dumps(p["verifiers"])
    assert all(k in described for k in kinds), described
    if len(kinds) > 1:
        assert "mean_rank" in described, described
    ns = out[search]["noise_search"][0]
    assert ns["winner"] in [c["index"] for c in ns["candidates"]] and len(ns["images"]) == 2


def test_wan_example_scores_keyframes_and_saves_a_video(server):
    """The Wan example's search scores the keyframes (first, middle, last of the 5 tiny frames), averaged, as its
    provenance records; all 5 winner frames are saved, and made into a video by CreateVideo + SaveVideo."""
    from PIL import Image
    name = "wan21_video_keyframe_search"
    g = tiny(twin(name), CASES[name][0])
    out = server.ok(g)
    saved = [k for k, v in g.items() if v["class_type"] == "SaveImageWithProvenance_NoiseSearch"][0]
    video = [k for k, v in g.items() if v["class_type"] == "SaveVideo"][0]
    assert len(out[saved]["images"]) == 5
    p = json.loads(Image.open(server.output(out[saved]["images"][0])).text["noise_search"])
    assert p["sampling"]["video"] == {"frames": "keyframes", "aggregate": "mean", "num_frames": 5, "scored_frames": [0, 2, 4]}
    files = out[video]["images"]
    assert len(files) == 1 and server.output(files[0]).stat().st_size > 0, out[video]


def test_examples_are_their_api_twins_and_list_their_models(server):
    """example_workflows/<name>.json converts back to graphs/family_examples/<name>.json (every
    input the twin sets); every loader node lists
    its model file(s) in properties.models (name, url, directory) with a URL the frontend accepts; a .jpg thumbnail."""
    from workflow_format import api_to_ui, thumbnail, ui_to_api
    info = http(server.url + "/object_info")
    for name in CASES:
        g = twin(name)
        path = EXAMPLES / f"{name}.json"
        if os.environ.get("NOISE_SEARCH_WRITE_EXAMPLES") == "1":
            ui = api_to_ui(g, info)
            for n in ui["nodes"]:
                files = [g[str(n["id"])]["inputs"][k] for k in MODEL_INPUTS.get(n["type"], [])]
                if files:
                    n["properties"]["models"] = [{"name": f, "url": MODELS[f][0], "directory": MODELS[f][1]} for f in files]
            verifiers = [v["inputs"] for v in g.values() if v["class_type"] == "VerifierLoader_NoiseSearch"]
            ui["extra"]["noise_search"] = {
                "title": TITLES[name], "description": DESCRIPTIONS[name],
                "verifiers": [{"name": v["name"], "kind": v["kind"], "get": f"python -m noise_search weights get {v['kind']}"}
                              for v in verifiers]}
            path.write_text(json.dumps(ui, indent=1) + "\n")
            thumbnail(ui, TITLES[name]).save(path.with_suffix(".jpg"), quality=90)
        ui = json.loads(path.read_text())
        got = ui_to_api(ui, info)
        assert set(got) == set(g), name
        for nid, node in g.items():  # the UI also holds the optional widgets the twin leaves at their defaults
            assert got[nid]["class_type"] == node["class_type"], (name, nid)
            assert {k: got[nid]["inputs"].get(k) for k in node["inputs"]} == node["inputs"], (name, nid)
        for n in ui["nodes"]:
            files = [g[str(n["id"])]["inputs"][k] for k in MODEL_INPUTS.get(n["type"], [])]
            models = n["properties"].get("models", [])
            assert [m["name"] for m in models] == files, (name, n["type"])
            for m in models:
                assert (m["url"], m["directory"]) == MODELS[m["name"]]
                assert m["url"].startswith(HF) and m["url"].rsplit("/", 1)[1] == m["name"]
        assert ui["extra"]["noise_search"]["title"] == TITLES[name]
        assert path.with_suffix(".jpg").is_file()


def test_every_example_workflow_has_an_api_twin():
    """Each example_workflows/*.json is either a graphs/ twin (test_server.py) or a graphs/family_examples/ twin (here)."""
    twins = {p.stem for p in (HERE / "graphs").glob("*.json")} | {p.stem for p in TWINS.glob("*.json")}
    assert {p.stem for p in EXAMPLES.glob("*.json")} == twins
    assert set(CASES) == {p.stem for p in TWINS.glob("*.json")}
