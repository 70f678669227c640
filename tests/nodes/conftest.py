"""ComfyUI node tests: run in-process against a real ComfyUI checkout named by COMFYUI_PATH.

Without COMFYUI_PATH (or when ComfyUI does not import) every test here is skipped, so CI stays
green without ComfyUI. Set-up of a suitable environment: tests/README-comfy.md.
"""

import asyncio
import os
import sys

import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
COMFY = os.environ.get("COMFYUI_PATH")


def _import_comfy():
    if not COMFY:
        return "COMFYUI_PATH is not set (see tests/README-comfy.md)"
    if not os.path.isfile(os.path.join(COMFY, "comfy", "sd.py")):
        return f"COMFYUI_PATH={COMFY} is not a ComfyUI checkout"
    if COMFY not in sys.path:
        sys.path.insert(0, COMFY)
    try:
        import comfy.cli_args
        comfy.cli_args.args.cpu = True  # before anything imports comfy.model_management
        import comfy.sd  # noqa: F401
        import comfy_api.latest  # noqa: F401
        import folder_paths  # noqa: F401
    except Exception as err:  # noqa: BLE001 - any import failure means: skip, with the reason
        return f"ComfyUI at {COMFY} does not import: {type(err).__name__}: {err}"
    return None


SKIP_REASON = _import_comfy()


def pytest_collection_modifyitems(config, items):
    for item in items:
        if str(item.fspath).startswith(HERE):
            item.add_marker(pytest.mark.comfy)
            if SKIP_REASON:
                item.add_marker(pytest.mark.skip(reason=SKIP_REASON))


@pytest.fixture(scope="session")
def comfy_env(tmp_path_factory):
    """ComfyUI imported, tiny models built, folder_paths pointed at temp dirs. Returns a dict of paths."""
    if SKIP_REASON:
        pytest.skip(SKIP_REASON)
    torch.set_num_threads(1)
    import folder_paths
    import tiny_models
    root = tmp_path_factory.mktemp("comfy_models")
    paths = tiny_models.build_all(str(root))
    for kind in ("checkpoints", "vae_approx"):
        folder_paths.add_model_folder_path(kind, str(root / kind), is_default=True)
    vdir = root / "verifiers"
    vdir.mkdir()
    make_tiny_classifier(str(vdir / "tiny_cls.pt"))
    out, temp = tmp_path_factory.mktemp("output"), tmp_path_factory.mktemp("temp")
    folder_paths.set_output_directory(str(out))
    folder_paths.set_temp_directory(str(temp))
    import noise_search.nodes.extension as ext
    asyncio.run(ext.comfy_entrypoint())  # registers models/verifiers
    folder_paths.add_model_folder_path("verifiers", str(vdir), is_default=True)
    return {"root": root, "sd15": paths["sd15"], "sd3": paths["sd3"], "verifiers": vdir, "output": out, "temp": temp}


def make_tiny_classifier(path, seed=0):
    """A TorchScript 10-class CNN with random weights: a real 'classifier' verifier that needs no download."""
    g = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(8, 10))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    torch.jit.save(torch.jit.script(net.eval()), path)
    return path


@pytest.fixture(scope="session")
def nodes_mod(comfy_env):
    import noise_search.nodes.extension as ext
    return ext


@pytest.fixture(scope="session")
def sd15(comfy_env):
    import comfy.sd
    model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(str(comfy_env["sd15"]), output_vae=True, output_clip=True)
    with torch.inference_mode():
        pos = clip.encode_from_tokens_scheduled(clip.tokenize("a photo of a cat"))
        neg = clip.encode_from_tokens_scheduled(clip.tokenize(""))
    return {"model": model, "clip": clip, "vae": vae, "positive": pos, "negative": neg,
            "latent": {"samples": torch.zeros(1, 4, 8, 8)}}


@pytest.fixture(scope="session")
def sd3(comfy_env):
    import comfy.sd
    model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(str(comfy_env["sd3"]), output_vae=True, output_clip=True)
    with torch.inference_mode():
        pos = clip.encode_from_tokens_scheduled(clip.tokenize("a photo of a cat"))
        neg = clip.encode_from_tokens_scheduled(clip.tokenize(""))
    return {"model": model, "clip": clip, "vae": vae, "positive": pos, "negative": neg,
            "latent": {"samples": torch.zeros(1, 4, 8, 8)}}


@pytest.fixture(scope="session")
def verifier(comfy_env):
    from noise_search.nodes.verifier_nodes import VerifierLoader
    with torch.inference_mode():
        out = VerifierLoader.execute(name="tiny_cls.pt", kind="classifier", device="cpu", dtype="fp32",
                                     options='{"num_classes": 10, "size": 32}')
    return out.result[0]
