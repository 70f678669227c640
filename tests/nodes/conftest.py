"""ComfyUI node tests: run in-process against a real ComfyUI checkout named by COMFYUI_PATH.

Without COMFYUI_PATH (or when ComfyUI does not import) every test here is skipped, so CI stays
green without ComfyUI. Set-up of a suitable environment: tests/README-comfy.md.
"""

import asyncio
import os

import pytest
import torch

from host_harness import load_checkpoint
from tiny_models import import_comfy, make_tiny_classifier

HERE = os.path.dirname(os.path.abspath(__file__))
COMFY = os.environ.get("COMFYUI_PATH")


SKIP_REASON = import_comfy(COMFY)


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


@pytest.fixture(scope="session")
def nodes_mod(comfy_env):
    import noise_search.nodes.extension as ext
    return ext


@pytest.fixture(scope="session")
def sd15(comfy_env):
    return load_checkpoint(comfy_env["sd15"])


@pytest.fixture(scope="session")
def sd3(comfy_env):
    return load_checkpoint(comfy_env["sd3"])


@pytest.fixture(scope="session")
def verifier(comfy_env):
    from noise_search.nodes.verifier_nodes import VerifierLoader
    with torch.inference_mode():
        out = VerifierLoader.execute(name="tiny_cls.pt", kind="classifier", device="cpu", dtype="fp32",
                                     options='{"num_classes": 10, "size": 32}')
    return out.result[0]


@pytest.fixture(scope="session")
def family_root(comfy_env, tmp_path_factory):
    """A models folder for the tiny families of tiny_families.py, registered with ComfyUI's loaders (built lazily;
    several GB once the big ones are built, deleted at the end of the session)."""
    import shutil
    import folder_paths
    root = tmp_path_factory.mktemp("comfy_families")
    for kind in ("checkpoints", "diffusion_models", "text_encoders", "vae"):
        (root / kind).mkdir()
        folder_paths.add_model_folder_path(kind, str(root / kind))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_family(family_root):
    """``tiny_family(name)`` -> the family built (once per session) and loaded through ComfyUI's loader nodes:
    {"model", "clip", "vae", "positive", "negative", "latent", "cfg", "family"} (tiny_families.load). Names:
    tiny_families.FAMILIES (flux_dev, flux_schnell, sdxl, pixart_sigma, sd35_medium, sd35_large, wan21_t2v, wan22_ti2v)."""
    import tiny_families
    cache = {}

    def get(name):
        if name not in cache:
            fam = tiny_families.build(str(family_root), name, check=True)
            cache[name] = tiny_families.load(fam)
            cache[name]["detected"] = fam.detected
        return cache[name]
    return get
