"""A real ComfyUI server for the end-to-end tests: started on a free loopback port in a temporary base folder,
with the pack symlinked into its custom_nodes and models found through an ``extra_model_paths.yaml``."""

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url, data=None, timeout=30):
    req = urllib.request.Request(url, data=None if data is None else json.dumps(data).encode(),
                                 headers={"Content-Type": "application/json"} if data is not None else {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        body = r.read()
    return json.loads(body) if body else None


class Server:
    """A running server: ``post`` a graph, ``wait`` for it, or ``run`` both; ``ok`` asserts success."""

    def __init__(self, url, base, log, proc, **extra):
        self.url, self.base, self.log, self.proc = url, base, log, proc
        self.__dict__.update(extra)

    def post(self, graph, client_id=None):
        try:
            return http(self.url + "/prompt", {"prompt": graph, "client_id": client_id or uuid.uuid4().hex})
        except urllib.error.HTTPError as err:
            raise AssertionError(f"/prompt refused the graph: {err.read().decode()}") from err

    def wait(self, prompt_id, timeout=600):
        end = time.time() + timeout
        while time.time() < end:
            h = http(f"{self.url}/history/{prompt_id}")
            if prompt_id in h and h[prompt_id].get("status", {}).get("status_str") in ("success", "error"):
                return h[prompt_id]
            if self.proc.poll() is not None:
                raise AssertionError(f"the server died:\n{self.log.read_text()[-4000:]}")
            time.sleep(0.5)
        raise AssertionError(f"prompt {prompt_id} did not finish in {timeout} s:\n{self.log.read_text()[-3000:]}")

    def run(self, graph, timeout=900):
        """Post ``graph`` and wait for it; returns its /history entry (finished, successfully or not)."""
        return self.wait(self.post(graph)["prompt_id"], timeout)

    def ok(self, graph):
        h = self.run(graph)
        assert h["status"]["status_str"] == "success", json.dumps(h["status"], indent=1)[-3000:]
        return h["outputs"]

    def output(self, entry):
        return self.base / "output" / entry["subfolder"] / entry["filename"]


@contextlib.contextmanager
def running_server(comfy, base, models, folders, name="noise_search_e2e", **extra):
    """Start ComfyUI from the checkout ``comfy`` with ``base`` as its base folder; ``models`` is the models root and
    ``folders`` the model kinds under it (e.g. ``["checkpoints", "vae_approx", "verifiers"]``). Yields a Server
    (``extra`` become its attributes); the server is stopped afterwards."""
    custom = base / "custom_nodes"
    custom.mkdir()
    os.symlink(ROOT, custom / "noise_search")
    for d in ("output", "temp", "input", "user"):
        (base / d).mkdir()
    yaml = base / "extra_model_paths.yaml"
    yaml.write_text(f"{name}:\n  base_path: {models}\n" + "".join(f"  {k}: {k}\n" for k in folders) + f"  custom_nodes: {custom}\n")
    port, log = free_port(), base / "server.log"
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    cmd = [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--disable-auto-launch",
           "--preview-method", "none", "--output-directory", str(base / "output"), "--temp-directory", str(base / "temp"),
           "--input-directory", str(base / "input"), "--user-directory", str(base / "user"),
           "--database-url", f"sqlite:///{base / 'comfyui.db'}", "--extra-model-paths-config", str(yaml)]
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=comfy, stdout=fh, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        end = time.time() + 180
        while True:
            try:
                http(url + "/system_stats", timeout=5)
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if proc.poll() is not None or time.time() > end:
                    raise AssertionError(f"ComfyUI did not start:\n{log.read_text()[-4000:]}") from None
                time.sleep(1)
        yield Server(url, base, log, proc, **extra)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
