"""``verifiers/weights.py`` and ``python -m noise_search weights`` against a loopback stand-in for the Hugging Face Hub.

The fake hub speaks the part of the Hub's file protocol huggingface_hub's downloader uses (read from its
``file_download.py``): ``HEAD``/``GET /{repo_id}/resolve/{revision}/{filename}`` answering ``X-Repo-Commit``, ``ETag``
(git blob sha1 of a regular file), and for an LFS file a 302 to a blob store on another origin with ``X-Linked-Etag``
(sha256) and ``X-Linked-Size``; the blob store honours ``Range`` (206 + ``Content-Range``). It can drop a connection
mid-file, go down (503), or serve bytes that do not match the advertised hash. Both servers bind 127.0.0.1 only,
answer at most MAX_REQUESTS requests and shut themselves down after LIFETIME_S seconds.
"""

import dataclasses
import hashlib
import json
import os
import re
import socket
import struct
import threading
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

import pytest

from noise_search import cli
from noise_search.verifiers import files, registry
from noise_search.verifiers import weights as W

MAX_REQUESTS = 200
LIFETIME_S = 60
COMMIT = "0123456789abcdef0123456789abcdef01234567"
RESOLVE = re.compile(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")


def git_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


class FakeHub:
    """Two loopback servers (hub + blob store) sharing one state: ``repos[repo_id][filename] = (bytes, is_lfs)``."""

    def __init__(self, repos):
        self.repos = repos
        self.log = []  # (server, method, path, Range header)
        self.drop_after = {}  # sha256 -> bytes sent before the connection is dropped (once)
        self.outage = False  # blob store answers 503
        self.corrupt = set()  # sha256 or git sha1 of files served with a flipped byte
        self.lock = threading.Lock()
        self.servers = [self._start("hub"), self._start("cdn")]
        self.url = f"http://127.0.0.1:{self.servers[0].server_address[1]}"
        self.cdn = f"http://127.0.0.1:{self.servers[1].server_address[1]}"
        self.timer = threading.Timer(LIFETIME_S, self.stop)
        self.timer.daemon = True
        self.timer.start()

    def _start(self, role):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                hub._handle(self, role, head=True)

            def do_GET(self):
                hub._handle(self, role, head=False)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return server

    def stop(self):
        self.timer.cancel()
        for s in self.servers:
            s.shutdown()
            s.server_close()

    def requests(self, server=None, method=None):
        return [e for e in self.log if (server is None or e[0] == server) and (method is None or e[1] == method)]

    # -- protocol --------------------------------------------------------------------------------

    def _handle(self, h, role, head):
        with self.lock:
            self.log.append((role, h.command, h.path, h.headers.get("Range")))
            n = len(self.log)
        if n > MAX_REQUESTS:
            threading.Thread(target=self.stop, daemon=True).start()
            return self._reply(h, 503, {}, b"", head)
        if role == "cdn":
            return self._blob(h, h.path.rsplit("/", 1)[-1], head)
        m = RESOLVE.match(h.path)
        repo = self.repos.get(m.group(1)) if m else None
        if repo is None:
            return self._reply(h, 404, {"X-Error-Code": "RepoNotFound"}, b"", head)
        entry = repo.get(unquote(m.group(3)))
        if entry is None:
            return self._reply(h, 404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT}, b"", head)
        data, lfs = entry
        if lfs:
            return self._reply(h, 302, {"Location": f"{self.cdn}/blobs/{sha256(data)}", "X-Repo-Commit": COMMIT,
                                        "X-Linked-Etag": f'"{sha256(data)}"', "X-Linked-Size": str(len(data)),
                                        "ETag": f'"{git_sha1(data)}"'}, b"", head)
        return self._serve(h, data, git_sha1(data), {"X-Repo-Commit": COMMIT}, head)

    def _blob(self, h, key, head):
        if self.outage and not head:
            return self._reply(h, 503, {}, b"", head)
        for repo in self.repos.values():
            for data, lfs in repo.values():
                if lfs and sha256(data) == key:
                    return self._serve(h, data, key, {}, head)
        return self._reply(h, 404, {}, b"", head)

    def _serve(self, h, data, tag, extra, head):
        body = bytearray(data)
        if tag in self.corrupt and body:
            body[len(body) // 2] ^= 0xFF
        start, status, headers = 0, 200, {"ETag": f'"{tag}"', "Accept-Ranges": "bytes", **extra}
        rng = re.match(r"bytes=(\d+)-(\d*)$", h.headers.get("Range") or "")
        if rng and not head:
            start, end = int(rng.group(1)), int(rng.group(2) or len(body) - 1)
            status, body = 206, body[start:end + 1]
            headers["Content-Range"] = f"bytes {start}-{start + len(body) - 1}/{len(data)}"
        drop = self.drop_after.pop(tag, None) if not head else None
        if drop is not None:
            h.send_response(status)
            for k, v in {**headers, "Content-Length": str(len(body))}.items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(bytes(body[:drop]))
            h.wfile.flush()
            h.connection.shutdown(socket.SHUT_RDWR)  # mid-file: the client saw fewer bytes than Content-Length
            h.close_connection = True
            self.outage = True  # and the blob store stays down until the test says otherwise
            return None
        return self._reply(h, status, headers, bytes(body) if not head else b"", head, length=len(data) if head else None)

    @staticmethod
    def _reply(h, status, headers, body, head, length=None):
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(length if length is not None else len(body)))
        h.end_headers()
        if not head and body:
            h.wfile.write(body)
        return None


# -- fixtures --------------------------------------------------------------------------------------

def tiny_safetensors():
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    return struct.pack("<Q", len(header)) + header + struct.pack("<2f", 1.0, 2.0)


IMAGE_REWARD = os.urandom(256 * 1024)
AESTHETIC_HEAD = os.urandom(8 * 1024)
REPOS = {
    "THUDM/ImageReward": {"ImageReward.pt": (IMAGE_REWARD, True),
                          "med_config.json": (json.dumps({"hidden_size": 768, "num_hidden_layers": 12}).encode(), False)},
    "google-bert/bert-base-uncased": {"vocab.txt": (b"[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\n", False)},
    "trl-lib/ddpo-aesthetic-predictor": {"aesthetic-model.pth": (AESTHETIC_HEAD, True)},
    "openai/clip-vit-large-patch14": {"config.json": (json.dumps({"model_type": "clip"}).encode(), False),
                                      "model.safetensors": (tiny_safetensors(), True),
                                      "preprocessor_config.json": (json.dumps({"crop_size": 224}).encode(), False)},
}


@pytest.fixture
def hub(monkeypatch):
    """A fake hub, with huggingface_hub pointed at it: HF_ENDPOINT in the environment (read at call time by
    weights.py), and huggingface_hub's import-time copies (ENDPOINT, its URL template, HF_HUB_OFFLINE, which
    tests/conftest.py turns on before huggingface_hub is imported) patched to match; telemetry and the implicit
    token off; a fresh HTTP client so no proxy or connection from before applies."""
    import huggingface_hub
    from huggingface_hub import constants, file_download

    fake = FakeHub({r: dict(f) for r, f in REPOS.items()})
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("HF_ENDPOINT", fake.url)
    monkeypatch.setattr(constants, "ENDPOINT", fake.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", fake.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)  # no user-agent registry fetch (GET /api/agent-harnesses)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_IMPLICIT_TOKEN", True)  # no stored token travels, not even to loopback
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 4096)  # partial bytes reach the disk before a drop
    monkeypatch.setattr(file_download, "time", types.SimpleNamespace(sleep=lambda s: None), raising=False)  # http_get's retry pause
    huggingface_hub.close_session()
    yield fake
    fake.stop()
    huggingface_hub.close_session()


def run_cli(capsys, *argv):
    """``python -m noise_search weights ...`` in-process: (exit status, stdout, the error lines on stderr)."""
    try:
        code = cli.main(["weights", *argv])
    except SystemExit as end:  # cli.main ends an error with CommandFailed, after its one line
        code = end.code
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if line.startswith(cli.ERROR_PREFIX)]
    assert "Traceback" not in err
    return code, out, errors


# -- cases -----------------------------------------------------------------------------------------

def test_manifest_covers_every_registry_kind():
    assert W.kinds() == registry.available()
    for kind in W.kinds():
        m = W.manifest(kind)
        assert m.files or m.note, kind
        for f in m.files:
            assert f.repo_id.count("/") == 1 and f.licence and f.revision == "main"
            assert f.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", f.sha256)


def test_normal_download_lands_files_in_the_loader_layout(hub, tmp_path, capsys):
    folder = tmp_path / "image_reward"
    code, out, errors = run_cli(capsys, "get", "image_reward", "--to", str(folder), "--quiet")
    assert code == 0 and not errors
    assert "image_reward: ready in" in out and "3 downloaded" in out and "sha256" in out and "git sha1" in out
    for repo, name in (("THUDM/ImageReward", "ImageReward.pt"), ("THUDM/ImageReward", "med_config.json"),
                       ("google-bert/bert-base-uncased", "vocab.txt")):
        assert (folder / name).read_bytes() == REPOS[repo][name][0]
    assert sorted(os.listdir(folder)) == ["ImageReward.pt", "med_config.json", "vocab.txt"]  # no partial file left
    assert W.status("image_reward", str(folder))["state"] == "ready"
    W.check_folder("image_reward", str(folder))
    # the LFS file came from the blob store (302 from the hub), the regular ones from the hub itself
    assert [e for e in hub.requests("cdn", "GET")] and len(hub.requests("hub", "GET")) == 2

    hub.log.clear()  # a second run keeps everything: metadata only, no byte moves
    code, out, errors = run_cli(capsys, "get", "image_reward", "--to", str(folder), "--quiet")
    assert code == 0 and "0 downloaded, 3 kept" in out
    assert not hub.requests(method="GET") and len(hub.requests("hub", "HEAD")) == 3


def test_two_repositories_a_subfolder_and_a_renamed_file(hub, tmp_path, monkeypatch):
    """aesthetic: trl-lib's aesthetic-model.pth saved as sac+logos+ava1-l14-linearMSE.pth, CLIP ViT-L/14 in clip/."""
    head, *clip = W.MANIFEST["aesthetic"].files
    fake_head = dataclasses.replace(head, size=len(AESTHETIC_HEAD), sha256=sha256(AESTHETIC_HEAD))
    monkeypatch.setitem(W.MANIFEST, "aesthetic", dataclasses.replace(W.MANIFEST["aesthetic"], files=(fake_head, *clip)))
    folder = tmp_path / "aes"
    report = W.download("aesthetic", str(folder))
    assert {r["target"]: r["action"] for r in report} == {"sac+logos+ava1-l14-linearMSE.pth": "downloaded", "clip/config.json": "downloaded",
                                                         "clip/model.safetensors": "downloaded", "clip/preprocessor_config.json": "downloaded"}
    assert (folder / "sac+logos+ava1-l14-linearMSE.pth").read_bytes() == AESTHETIC_HEAD
    assert (folder / "clip" / "model.safetensors").read_bytes() == REPOS["openai/clip-vit-large-patch14"]["model.safetensors"][0]
    assert sorted(os.listdir(folder)) == ["clip", "sac+logos+ava1-l14-linearMSE.pth"]
    paths = {e[2] for e in hub.requests("hub", "HEAD")}
    assert "/trl-lib/ddpo-aesthetic-predictor/resolve/main/aesthetic-model.pth" in paths
    assert "/openai/clip-vit-large-patch14/resolve/main/config.json" in paths


def test_a_recorded_checksum_refuses_a_different_file_before_downloading(hub, tmp_path, capsys):
    """The manifest's size/sha256 of the aesthetic head (the LAION file) do not match the fake hub's bytes."""
    code, _, errors = run_cli(capsys, "get", "aesthetic", "--to", str(tmp_path / "aes"), "--quiet")
    assert code == 1 and len(errors) == 1 and "this pack expects 3714759" in errors[0]
    assert not hub.requests(method="GET")
    assert not (tmp_path / "aes" / "sac+logos+ava1-l14-linearMSE.pth").exists()


def test_a_broken_download_resumes_on_the_next_run(hub, tmp_path, capsys):
    folder = tmp_path / "ir"
    key = sha256(IMAGE_REWARD)
    hub.drop_after[key] = 96 * 1024  # the connection drops mid-file, then the blob store is down (503)
    code, _, errors = run_cli(capsys, "get", "image_reward", "--to", str(folder), "--quiet")
    assert code == 1 and len(errors) == 1 and "interrupted" in errors[0] and "run the same command again to resume" in errors[0]
    assert not (folder / "ImageReward.pt").exists()
    parts = list(folder.glob(".ImageReward.pt.*.part"))
    assert len(parts) == 1
    kept = parts[0].stat().st_size
    assert 0 < kept <= 96 * 1024 and parts[0].read_bytes() == IMAGE_REWARD[:kept]

    hub.outage = False
    hub.log.clear()
    code, out, errors = run_cli(capsys, "get", "image_reward", "--to", str(folder), "--quiet")
    assert code == 0 and not errors
    gets = hub.requests("cdn", "GET")
    assert [e[3] for e in gets] == [f"bytes={kept}-"]  # resumed where the first run stopped, not from 0
    assert (folder / "ImageReward.pt").read_bytes() == IMAGE_REWARD
    assert sorted(os.listdir(folder)) == ["ImageReward.pt", "med_config.json", "vocab.txt"]


@pytest.mark.parametrize("repo,name,check", [("THUDM/ImageReward", "ImageReward.pt", "sha256"),
                                             ("THUDM/ImageReward", "med_config.json", "git sha1")])
def test_a_checksum_mismatch_is_refused_and_nothing_corrupt_is_left(hub, tmp_path, capsys, repo, name, check):
    data, lfs = REPOS[repo][name]
    hub.corrupt.add(sha256(data) if lfs else git_sha1(data))
    folder = tmp_path / "ir"
    code, _, errors = run_cli(capsys, "get", "image_reward", "--to", str(folder), "--quiet")
    assert code == 1 and len(errors) == 1
    assert "corrupt" in errors[0] and check in errors[0] and "deleted" in errors[0]
    assert not (folder / name).exists()
    assert not list(folder.glob(".*.part"))
    with pytest.raises(W.ChecksumError):
        W.download("image_reward", str(folder))


def test_offline_mode_stops_before_any_request(hub, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, errors = run_cli(capsys, "get", "image_reward", "--to", str(tmp_path / "ir"), "--quiet")
    assert code == 1 and len(errors) == 1
    assert "HF_HUB_OFFLINE=1" in errors[0] and "not downloading 3 missing file(s)" in errors[0]
    with pytest.raises(W.OfflineError):
        W.ensure("image_reward", str(tmp_path / "ir"), allow_download=True)
    assert hub.log == []

    monkeypatch.delenv("HF_HUB_OFFLINE")  # a complete folder needs no network: offline 'get' just confirms it
    W.download("image_reward", str(tmp_path / "ir"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.log.clear()
    code, out, errors = run_cli(capsys, "get", "image_reward", "--to", str(tmp_path / "ir"), "--quiet")
    assert code == 0 and not errors and "0 downloaded, 3 kept" in out
    assert hub.log == []


def test_unknown_or_unfetchable_kind_is_a_usage_error(hub, tmp_path, capsys):
    code, _, errors = run_cli(capsys, "get", "nope", "--to", str(tmp_path))
    assert code == 2 and len(errors) == 1
    assert "unknown verifier kind 'nope'" in errors[0] and all(k in errors[0] for k in W.kinds())
    code, _, errors = run_cli(capsys, "get", "classifier")
    assert code == 2 and len(errors) == 1 and "nothing to download" in errors[0]
    assert hub.log == []


def test_a_file_missing_on_the_hub_fails_before_any_download(hub, tmp_path, capsys):
    del hub.repos["google-bert/bert-base-uncased"]["vocab.txt"]
    code, _, errors = run_cli(capsys, "get", "image_reward", "--to", str(tmp_path / "ir"), "--quiet")
    assert code == 1 and len(errors) == 1 and "google-bert/bert-base-uncased/vocab.txt@main" in errors[0] and "404" in errors[0]
    assert not hub.requests(method="GET")


def test_listing_shows_sources_licences_and_presence(hub, tmp_path, capsys):
    W.download("image_reward", str(tmp_path / "image_reward"))
    code, out, errors = run_cli(capsys, "--root", str(tmp_path))
    assert code == 0 and not errors
    for kind in W.kinds():
        assert re.search(rf"^{re.escape(kind)}\s", out, re.M), kind
    block = out.split("\nimage_reward", 1)[1].split("\n\n", 1)[0]
    assert "ready" in block and "THUDM/ImageReward@main  licence: Apache-2.0" in block and "[x] ImageReward.pt" in block
    assert "aesthetic-model.pth -> sac+logos+ava1-l14-linearMSE.pth" in out and "[ ] " in out
    code, out, _ = run_cli(capsys, "--root", str(tmp_path), "--json")
    rows = {r["kind"]: r for r in json.loads(out)}
    assert rows["image_reward"]["state"] == "ready" and rows["clip_score"]["state"] == "missing"
    assert rows["classifier"]["state"] == "manual" and rows["dino_linear"]["manual"]


def test_ensure_is_an_explicit_opt_in(hub, tmp_path):
    folder = tmp_path / "ir"
    folder.mkdir()
    with pytest.raises(files.MissingWeightsError, match="weights get image_reward --to"):
        W.ensure("image_reward", str(folder))  # allow_download defaults to False: never the network
    assert hub.log == []
    seen = []
    assert W.ensure("image_reward", str(folder), allow_download=True, progress=lambda d, t, n: seen.append((d, t, n))) == str(folder)
    assert (folder / "ImageReward.pt").read_bytes() == IMAGE_REWARD
    assert (len(IMAGE_REWARD), len(IMAGE_REWARD), "ImageReward.pt") in seen
    hub.log.clear()
    assert W.ensure("image_reward", str(folder), allow_download=True) == str(folder)  # ready: no request at all
    assert hub.log == []
