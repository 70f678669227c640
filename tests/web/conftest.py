"""Browser tests: a real ComfyUI server with this pack, driven by headless Chromium (playwright-core).

They run only when everything is there, and skip cleanly (with the reason) otherwise:

* ``COMFYUI_PATH``: a ComfyUI checkout (v0.3.64+); the server runs with ``NS_COMFY_PYTHON`` or the
  Python running pytest, which must have ComfyUI's requirements (torch, torchvision importable, the
  ``comfyui-frontend-package``, ``requests``);
* a Chromium (``NS_CHROMIUM``, else ``chromium`` / ``chromium-browser`` on PATH);
* ``node`` and the npm package ``playwright-core`` (pinned in tests/web/package.json): taken from
  ``NS_WEB_NODE_MODULES`` (a folder holding ``node_modules/playwright-core``) or installed once with
  ``npm ci`` into ``NS_WEB_CACHE`` (default ``~/.cache/noise-search/web-tests``), never into the repo.

Tiny random checkpoints come from tests/nodes/tiny_models.py (cached in the same cache folder).
Artifacts (screenshots, results.json, server log) go to tests/artifacts/web/ (git-ignored).
"""

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts" / "web"
CACHE = Path(os.environ.get("NS_WEB_CACHE", Path.home() / ".cache" / "noise-search" / "web-tests"))
SERVER_PYTHON = os.environ.get("NS_COMFY_PYTHON", sys.executable)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if Path(str(item.fspath)).name == "test_browser.py":
            item.add_marker(pytest.mark.web)


def _chromium():
    exe = os.environ.get("NS_CHROMIUM")
    if exe:
        return exe if os.path.isfile(exe) else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _playwright_dir(node):
    """A folder whose node_modules holds playwright-core, or (None, reason)."""
    given = os.environ.get("NS_WEB_NODE_MODULES")
    if given:
        d = Path(given)
        return (d, None) if (d / "node_modules" / "playwright-core").is_dir() else (None, f"NS_WEB_NODE_MODULES={given} has no node_modules/playwright-core")
    lock = (HERE / "package-lock.json").read_bytes()
    d = CACHE / ("node-" + hashlib.sha256(lock).hexdigest()[:12])
    if (d / "node_modules" / "playwright-core").is_dir():
        return d, None
    npm = shutil.which("npm")
    if not npm:
        return None, "npm is not installed (needed once to install playwright-core)"
    d.mkdir(parents=True, exist_ok=True)
    for f in ("package.json", "package-lock.json"):
        shutil.copy(HERE / f, d / f)
    env = dict(os.environ, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1")
    r = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=d, env=env, capture_output=True, text=True, timeout=300)
    if r.returncode != 0 or not (d / "node_modules" / "playwright-core").is_dir():
        return None, f"npm ci of playwright-core failed: {(r.stderr or r.stdout)[-400:]}"
    return d, None


def _server_python_ok():
    code = "import torch, torchvision, aiohttp, requests, comfyui_frontend_package"
    try:
        r = subprocess.run([SERVER_PYTHON, "-c", code], capture_output=True, text=True, timeout=180)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"{SERVER_PYTHON} cannot run: {err}"
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["?"])[-1]
        return f"{SERVER_PYTHON} lacks ComfyUI's requirements ({last}); set NS_COMFY_PYTHON to a ComfyUI venv"
    return None


@pytest.fixture(scope="session")
def web_env():
    """Checks the prerequisites once; skips the browser tests with the reason when one is missing."""
    comfy = os.environ.get("COMFYUI_PATH")
    if not comfy:
        pytest.skip("COMFYUI_PATH is not set (browser tests need a ComfyUI checkout)")
    if not (Path(comfy) / "main.py").is_file():
        pytest.skip(f"COMFYUI_PATH={comfy} is not a ComfyUI checkout")
    chromium = _chromium()
    if not chromium:
        pytest.skip("no Chromium found (apt-get install chromium, or set NS_CHROMIUM)")
    node = shutil.which("node")
    if not node:
        pytest.skip("node is not installed")
    pw, why = _playwright_dir(node)
    if pw is None:
        pytest.skip(why)
    why = _server_python_ok()
    if why:
        pytest.skip(why)
    return {"comfy": Path(comfy), "chromium": chromium, "node": node, "playwright_dir": pw}


def _tiny_models():
    """tests/nodes/tiny_models.py checkpoints + a TorchScript 10-class classifier verifier, cached by source hash."""
    src = (ROOT / "tests" / "nodes" / "tiny_models.py").read_bytes()
    d = CACHE / ("models-" + hashlib.sha256(src).hexdigest()[:12])
    done = d / "done.json"
    if done.is_file():
        return json.loads(done.read_text())
    d.mkdir(parents=True, exist_ok=True)
    script = f"""
import json, sys, torch
sys.path[:0] = [{str(os.environ['COMFYUI_PATH'])!r}, {str(ROOT / 'tests' / 'nodes')!r}]
import comfy.cli_args
comfy.cli_args.args.cpu = True
import tiny_models
paths = tiny_models.build_all({str(d)!r})
g = torch.Generator().manual_seed(0)
net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                          torch.nn.Flatten(), torch.nn.Linear(8, 10))
with torch.no_grad():
    for p in net.parameters():
        p.copy_(torch.randn(p.shape, generator=g) * 0.5)
import os
os.makedirs({str(d / 'verifiers')!r}, exist_ok=True)
torch.jit.save(torch.jit.script(net.eval()), {str(d / 'verifiers' / 'tiny_cls.pt')!r})
paths["verifier"] = {str(d / 'verifiers' / 'tiny_cls.pt')!r}
print(json.dumps(paths))
"""
    r = subprocess.run([SERVER_PYTHON, "-c", script], capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    if r.returncode != 0:
        raise RuntimeError(f"building the tiny models failed:\n{r.stderr[-2000:]}")
    paths = json.loads(r.stdout.strip().splitlines()[-1])
    done.write_text(json.dumps(paths))
    return paths


PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")


def _photos(folder, size=128):
    """Four input images ns_photo_<i>.png for the Verifier Score workflow: scikit-image's bundled sample
    photos when it is installed (a test extra), else drawn gradients and shapes."""
    from PIL import Image, ImageDraw
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import skimage.data as data
        arrays = [getattr(data, name)() for name in PHOTOS]
        images = [Image.fromarray(a).convert("RGB") for a in arrays]
    except ImportError:
        images = []
        for i, (c1, c2) in enumerate([((230, 120, 40), (40, 60, 160)), ((30, 140, 90), (240, 220, 90)),
                                      ((120, 40, 160), (250, 160, 190)), ((20, 30, 40), (90, 200, 240))]):
            im = Image.linear_gradient("L").resize((size, size))
            im = Image.merge("RGB", [im.point(lambda v, a=a, b=b: a + (b - a) * v // 255) for a, b in zip(c1, c2)])
            ImageDraw.Draw(im).ellipse([20 + 8 * i, 24, 90 + 6 * i, 100], fill=c2[::-1])
            images.append(im)
    for i, im in enumerate(images):
        w, h = im.size
        side = min(w, h)
        im = im.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)).resize((size, size))
        im.save(folder / f"ns_photo_{i}.png")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


@pytest.fixture(scope="session")
def comfy_server(web_env, tmp_path_factory):
    """A ComfyUI server on a free loopback port with the pack (symlinked into a temp custom_nodes) and tiny models."""
    models = _tiny_models()
    base = tmp_path_factory.mktemp("comfy_base")
    (base / "custom_nodes").mkdir()
    (base / "custom_nodes" / "noise_search").symlink_to(ROOT, target_is_directory=True)
    for sub in ("checkpoints", "verifiers", "vae_approx"):
        (base / "models" / sub).mkdir(parents=True)
    (base / "models" / "checkpoints" / "tiny_sd15.safetensors").symlink_to(models["sd15"])
    (base / "models" / "verifiers" / "tiny_cls.pt").symlink_to(models["verifier"])
    _photos(base / "input")
    settings = base / "user" / "default" / "comfy.settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_text(json.dumps({"Comfy.TutorialCompleted": True}))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log_path = ARTIFACTS / "server.log"
    log = open(log_path, "w")
    cmd = [SERVER_PYTHON, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--disable-auto-launch",
           "--preview-method", "none", "--base-directory", str(base)]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, cwd=web_env["comfy"], stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if _get(url + "/system_stats")[0] == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError(f"ComfyUI did not answer within 180 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        status, body = _get(url + "/object_info/RandomSearch_NoiseSearch", timeout=30)
        if status != 200 or b"RandomSearch_NoiseSearch" not in body:
            raise RuntimeError(f"the pack's nodes did not load:\n{log_path.read_text()[-3000:]}")
        yield {"url": url, "base": base, "log": log_path, "proc": proc}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="session")
def drive(web_env, comfy_server):
    """Run tests/web/drive.mjs with a config; returns (results dict, artifacts dir)."""

    def run(name, config, timeout=540):
        out = ARTIFACTS / name
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        cfg = dict(config, url=comfy_server["url"] + "/", out_dir=str(out), chromium=web_env["chromium"],
                   profile_root=str(out))
        cfg_path = out / "config.json"
        cfg_path.write_text(json.dumps(cfg, indent=1))
        script = web_env["playwright_dir"] / "drive.mjs"
        shutil.copy(HERE / "drive.mjs", script)  # resolve playwright-core from that folder's node_modules
        r = subprocess.run([web_env["node"], str(script), str(cfg_path)], capture_output=True, text=True, timeout=timeout)
        (out / "drive.log").write_text(r.stdout + "\n--- stderr ---\n" + r.stderr)
        results_path = out / "results.json"
        results = json.loads(results_path.read_text()) if results_path.is_file() else {}
        if r.returncode != 0:
            pytest.fail(f"browser driver failed ({r.returncode}): {results.get('error') or r.stderr[-2000:]}\n"
                        f"artifacts: {out}\nserver log tail:\n{comfy_server['log'].read_text()[-2000:]}")
        return results, out

    return run
