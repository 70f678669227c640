"""Verifier weights: which published files each verifier kind needs, and fetching them into the folder its loader reads.

Why this module exists: the loaders never touch the network (``files.py``: ``local_files_only`` everywhere), yet a
verifier's files come from one or two Hub repositories and must land in the layout the loader expects (PickScore's
model beside the CLIP-H tokenizer, the LAION aesthetic head beside a ``clip/`` folder, ...). :data:`MANIFEST` is the
one place that says which files those are; ``weights_cli.py`` (``python -m noise_search weights``) and the Verifier
Loader node's opt-in download both go through :func:`download` / :func:`ensure`, so the two can never disagree.

Integrity. A size or sha256 recorded in the manifest is checked when known; every other file is checked against the
Hub's own metadata, read (HEAD ``/{repo}/resolve/{revision}/{file}``) right before the download: ``X-Linked-Size`` /
``Content-Length`` for the size, ``X-Linked-Etag`` / ``ETag`` for the content (the sha256 of an LFS file, the git blob
sha1 of a regular one). A file that fails the check is deleted, never moved into the folder.

Resume. ``hf_hub_download`` (huggingface_hub 2.x) verifies the size only and deletes its process-unique partial file
when a download fails, so a broken multi-GB download would start over. Here the lower-level public pieces are used
instead (``get_hf_file_metadata`` + ``file_download.http_get``) with a partial file that outlives the process:
``<folder>/.<target>.<etag>.part`` (hidden, beside the files: a folder left with only a partial file is still listed
by the Verifier Loader); the next run continues it with an HTTP ``Range`` request (``http_get`` itself still retries a
dropped connection a few times within one run).

Offline. ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is read at call time, not only at import as huggingface_hub
does, and stops before any request is made. ``HF_ENDPOINT`` is read at call time too (a mirror, or a test server).

Pure Python + huggingface_hub: no ComfyUI import; the node layer passes the folder and a progress callback.
"""

from __future__ import annotations

import glob
import hashlib
import importlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from . import files

__all__ = ["WeightFile", "KindWeights", "MANIFEST", "WeightsDownloadError", "OfflineError", "ChecksumError", "kinds",
           "canonical_kind", "manifest", "default_root", "default_folder", "offline_reason", "hub_endpoint", "check_folder",
           "status", "download", "ensure", "human_size"]

Progress = Callable[[int, "int | None", str], None]  # (bytes done, total bytes or None, target name)

LIBRARY = "noise-search"


# -- manifest ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WeightFile:
    """One published file: ``filename`` in ``repo_id`` at ``revision``, saved as ``target`` inside the verifier folder.

    ``size`` / ``sha256`` are exact values where they are known and then enforced; None means "not recorded here",
    and the Hub's own metadata is checked at download time instead. ``listed`` is the size the Hub's file page shows
    (rounded, for display only)."""

    repo_id: str
    filename: str
    target: str = ""
    size: int | None = None
    sha256: str | None = None
    licence: str = ""
    listed: str = ""
    revision: str = "main"

    @property
    def dest(self) -> str:
        """Path of the file inside the verifier folder (``/``-separated)."""
        return self.target or self.filename

    @property
    def source(self) -> str:
        return f"huggingface.co/{self.repo_id}"


@dataclass(frozen=True)
class KindWeights:
    """What one verifier kind needs: ``files`` fetched from the Hub, and ``manual`` (a file the Hub does not have,
    with where to get it) or ``note`` (why nothing is fetched)."""

    kind: str
    files: tuple[WeightFile, ...] = ()
    manual: str = ""
    note: str = ""


MIT_OPENAI = "MIT (github.com/openai/CLIP)"
MIT = "MIT"
APACHE = "Apache-2.0"
NO_TAG = "no licence tag on the Hub (see the model card)"

CLIP_L = "openai/clip-vit-large-patch14"
CLIP_H = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
DINO_S = "facebook/dinov2-small"
TOKENIZER = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")  # tokenizer.json alone builds the fast tokenizer


def _clip_l(prefix: str = "", text: bool = True) -> tuple[WeightFile, ...]:
    names = ("config.json", "model.safetensors", "preprocessor_config.json") + (TOKENIZER if text else ())
    return tuple(WeightFile(CLIP_L, n, prefix + n, licence=MIT_OPENAI, listed="1.71 GB" if n == "model.safetensors" else "")
                 for n in names)


def _clip_h_tokenizer(preprocessor: bool = False) -> tuple[WeightFile, ...]:
    names = (("preprocessor_config.json",) if preprocessor else ()) + TOKENIZER
    return tuple(WeightFile(CLIP_H, n, licence=MIT) for n in names)


def _dino_small() -> tuple[WeightFile, ...]:
    return (WeightFile(DINO_S, "config.json", licence=APACHE), WeightFile(DINO_S, "model.safetensors", licence=APACHE, listed="88.2 MB"),
            WeightFile(DINO_S, "preprocessor_config.json", licence=APACHE))


def _hps(ckpt: str) -> tuple[WeightFile, ...]:
    return (WeightFile("xswu/HPSv2", ckpt, licence=APACHE),) + _clip_h_tokenizer()


QWEN = "Qwen/Qwen2-VL-2B-Instruct"

MANIFEST: dict[str, KindWeights] = {
    "clip_score": KindWeights("clip_score", _clip_l()),
    "pick_score": KindWeights("pick_score", (
        WeightFile("yuvalkirstain/PickScore_v1", "config.json", licence=NO_TAG),
        WeightFile("yuvalkirstain/PickScore_v1", "model.safetensors", licence=NO_TAG, listed="3.94 GB"),
    ) + _clip_h_tokenizer(preprocessor=True)),
    "hpsv2": KindWeights("hpsv2", _hps("HPS_v2_compressed.pt")),
    "hpsv2.1": KindWeights("hpsv2.1", _hps("HPS_v2.1_compressed.pt")),
    # The LAION predictor's head (github.com/christophschuhmann/improved-aesthetic-predictor) is not on the Hub under its
    # own repository; trl-lib's copy (renamed aesthetic-model.pth) has the sha256 and size every Hub copy of the original
    # sac+logos+ava1-l14-linearMSE.pth shows (LFS pointer: oid sha256:21dd590f..., size 3714759).
    "aesthetic": KindWeights("aesthetic", (
        WeightFile("trl-lib/ddpo-aesthetic-predictor", "aesthetic-model.pth", "sac+logos+ava1-l14-linearMSE.pth", size=3714759,
                   sha256="21dd590f3ccdc646f0d53120778b296013b096a035a2718c9cb0d511bff0f1e0",
                   licence="Apache-2.0 (improved-aesthetic-predictor)", listed="3.71 MB"),
    ) + _clip_l("clip/", text=False)),
    "image_reward": KindWeights("image_reward", (
        WeightFile("THUDM/ImageReward", "ImageReward.pt", licence=APACHE, listed="1.79 GB"),
        WeightFile("THUDM/ImageReward", "med_config.json", licence=APACHE, listed="485 B"),
        WeightFile("google-bert/bert-base-uncased", "vocab.txt", licence=APACHE),
    )),
    "clip_zero_shot": KindWeights("clip_zero_shot", _clip_l()),
    "dino_linear": KindWeights("dino_linear", _dino_small(),
                               manual="dinov2_vits14_linear_head.pth (the ImageNet linear head of ViT-S/14, linked from "
                                      "github.com/facebookresearch/dinov2; not on the Hugging Face Hub)"),
    "self_supervised": KindWeights("self_supervised", _dino_small()),
    "classifier": KindWeights("classifier", note="bring your own: any transformers image classifier saved with save_pretrained, "
                                                 "or a torch.export (.pt2) / TorchScript file"),
    "vlm_grader": KindWeights("vlm_grader", tuple(WeightFile(QWEN, n, licence=APACHE, listed=s) for n, s in (
        ("config.json", ""), ("model.safetensors.index.json", ""), ("model-00001-of-00002.safetensors", "3.99 GB"),
        ("model-00002-of-00002.safetensors", "429 MB"), ("preprocessor_config.json", ""), ("tokenizer.json", ""),
        ("tokenizer_config.json", ""), ("chat_template.json", "")))),
    "ensemble": KindWeights("ensemble", note="built from other verifiers: fetch each member's weights"),
}

ALIASES = {"hpsv2_1": "hpsv2.1", "hpsv21": "hpsv2.1", "imagereward": "image_reward", "pickscore": "pick_score", "clipscore": "clip_score"}


def kinds() -> list[str]:
    """Every verifier kind, in the registry's order."""
    return list(MANIFEST)


def canonical_kind(name: str) -> str:
    """``name`` as a manifest key (the registry's aliases accepted); ``ValueError`` listing the valid kinds."""
    key = str(name).strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in MANIFEST:
        raise ValueError(f"unknown verifier kind {name!r}; valid kinds: {', '.join(kinds())}")
    return key


def manifest(kind: str) -> KindWeights:
    return MANIFEST[canonical_kind(kind)]


# -- where ---------------------------------------------------------------------------------------

def default_root() -> str:
    """``<ComfyUI>/models/verifiers`` when this pack sits in a ComfyUI ``custom_nodes`` folder (found from the pack's
    own location, so it works from any working directory), else ``./models/verifiers`` under the current directory:
    the folder the Verifier Loader lists, or one next to where the user runs the command."""
    pack = Path(__file__).resolve().parents[1]
    comfy = pack.parent.parent
    if pack.parent.name == "custom_nodes" and (comfy / "models").is_dir():
        return str(comfy / "models" / "verifiers")
    return os.path.abspath(os.path.join("models", "verifiers"))


def default_folder(kind: str) -> str:
    """``default_root()/<kind>``: the folder named after the kind, as the Verifier Loader lists it."""
    return os.path.join(default_root(), canonical_kind(kind))


def offline_reason() -> str | None:
    """The setting that forbids network access (``HF_HUB_OFFLINE=1`` ...), or None. Read now, not at import."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
            return f"{var}={os.environ[var]}"
    from huggingface_hub import constants

    if getattr(constants, "HF_HUB_OFFLINE", False):
        return "HF_HUB_OFFLINE (set when huggingface_hub was imported)"
    return None


def hub_endpoint() -> str:
    """``HF_ENDPOINT`` read now (huggingface_hub reads it once, at import), else huggingface_hub's endpoint."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


# -- errors --------------------------------------------------------------------------------------

class WeightsDownloadError(files.VerifierWeightsError):
    """A download could not complete (network, Hub error, disk); what was downloaded so far is kept for a resume."""


class OfflineError(WeightsDownloadError):
    """Files are missing and offline mode forbids fetching them; raised before any request."""


class ChecksumError(WeightsDownloadError, files.CorruptWeightsError):
    """Downloaded bytes do not match the recorded or Hub-reported size / sha256; the bytes were deleted."""


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


def _transport_errors() -> tuple[type[BaseException], ...]:
    """OSError plus the HTTP client's transport errors (httpx2 for huggingface_hub 2.x, httpx for 1.x; requests'
    errors of 0.x are OSErrors), found without depending on any of them."""
    errs: list[type[BaseException]] = [OSError]
    for mod in ("httpx2", "httpx"):
        try:
            errs.append(importlib.import_module(mod).HTTPError)
        except (ImportError, AttributeError):
            continue
    return tuple(errs)


# -- folder checks (the loaders' own file checks, without loading a model) -------------------------

SOURCES = {k: (" and ".join(dict.fromkeys(f.source for f in m.files)) or m.note) for k, m in MANIFEST.items()}


def check_folder(kind: str, folder: str) -> None:
    """Check ``folder`` as the kind's loader does before loading (files present, JSON valid, safetensors headers and
    sizes consistent), with the pack's own checks in ``files.py``; raises ``MissingWeightsError`` /
    ``CorruptWeightsError`` naming the file. Loads no model."""
    kind = canonical_kind(kind)
    src = SOURCES[kind]
    folder = os.path.abspath(os.path.expanduser(str(folder)))
    if kind in ("clip_score", "clip_zero_shot", "pick_score", "vlm_grader"):
        files.check_hf_folder(folder, kind, src, need_tokenizer=True)
    elif kind == "self_supervised":
        files.check_hf_folder(folder, kind, src)
    elif kind == "dino_linear":
        from .features import DINO_EXPECTED, DINO_SOURCE, find_head

        files.check_hf_folder(folder, kind, src)
        find_head(folder, kind, DINO_EXPECTED, DINO_SOURCE)
    elif kind in ("hpsv2", "hpsv2.1"):
        from .clip import HPS_FILES, HPS_SOURCE

        expected = [HPS_FILES[kind], "tokenizer.json (or vocab.json + merges.txt), here or in tokenizer/"]
        files.find_file(folder, [HPS_FILES[kind]], kind, expected, HPS_SOURCE)
        tok = os.path.join(folder, "tokenizer") if os.path.isdir(os.path.join(folder, "tokenizer")) else folder
        t = files.find_file(tok, list(files.TOKENIZER_FILES), kind, expected, HPS_SOURCE, what="the CLIP tokenizer (tokenizer.json)")
        files.check_json(t, kind, expected, HPS_SOURCE)
    elif kind == "aesthetic":
        from .clip import AESTHETIC_FILE, AESTHETIC_SOURCE

        expected = [AESTHETIC_FILE, "clip/ (a CLIP ViT-L/14 folder: config.json, model.safetensors)"]
        files.find_file(folder, [AESTHETIC_FILE, "aesthetic.safetensors", "aesthetic.pth"], kind, expected, AESTHETIC_SOURCE, what=AESTHETIC_FILE)
        clip = os.path.join(folder, "clip") if os.path.isdir(os.path.join(folder, "clip")) else folder
        files.check_hf_folder(clip, kind, AESTHETIC_SOURCE)
    elif kind == "image_reward":
        from .imagereward import EXPECTED, SOURCE

        files.find_file(folder, ["ImageReward.pt"], kind, EXPECTED, SOURCE)
        files.check_json(files.find_file(folder, ["med_config.json"], kind, EXPECTED, SOURCE), kind, EXPECTED, SOURCE)
        files.find_file(folder, ["vocab.txt", "tokenizer/vocab.txt"], kind, EXPECTED, SOURCE, what="vocab.txt (bert-base-uncased)")
    else:  # classifier, ensemble: no published layout to check here; the loader checks what it is given
        files.as_folder(folder, kind, [], src)


# -- status --------------------------------------------------------------------------------------

def human_size(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.3g} {unit}"
        size /= 1000
    return f"{size:.3g} GB"


def _local(folder: str, f: WeightFile) -> str:
    return os.path.join(folder, *f.dest.split("/"))


def _present(folder: str, f: WeightFile) -> bool:
    p = _local(folder, f)
    return os.path.isfile(p) and (f.size is None or os.path.getsize(p) == f.size)


def status(kind: str, folder: str | None = None) -> dict:
    """What the kind needs and what ``folder`` (default :func:`default_folder`) holds: ``state`` is "ready" (the
    folder passes :func:`check_folder`), "partial" (some listed files present), "missing", or "manual" (nothing on
    the Hub to fetch); ``files`` lists each published file with ``present``."""
    kind = canonical_kind(kind)
    m = MANIFEST[kind]
    folder = os.path.abspath(os.path.expanduser(folder or default_folder(kind)))
    rows = [dict(repo_id=f.repo_id, filename=f.filename, revision=f.revision, target=f.dest, size=f.size, sha256=f.sha256,
                 licence=f.licence, listed=f.listed, present=_present(folder, f)) for f in m.files]
    if not m.files:
        state = "manual"
    else:
        try:
            check_folder(kind, folder)
            state = "ready"
        except (files.VerifierWeightsError, ValueError):
            state = "partial" if any(r["present"] for r in rows) else "missing"
    return dict(kind=kind, folder=folder, state=state, files=rows, manual=m.manual, note=m.note)


# -- download ------------------------------------------------------------------------------------

HEX64 = re.compile(r"^[0-9a-f]{64}$")
HEX40 = re.compile(r"^[0-9a-f]{40}$")


@dataclass
class _Remote:
    file: WeightFile
    url: str
    location: str
    etag: str
    size: int | None
    commit: str | None


class _CountingFile:
    """The partial file handed to ``http_get``: forwards everything, reports each write to the progress callback
    (works with every huggingface_hub version, whatever its own progress-bar arguments)."""

    def __init__(self, f, total: int | None, name: str, progress: Progress | None):
        self._f, self._total, self._name, self._progress = f, total, name, progress

    def write(self, data):
        n = self._f.write(data)
        if self._progress is not None:
            self._progress(self._f.tell(), self._total, self._name)
        return n

    def __getattr__(self, attr):
        return getattr(self._f, attr)


def _headers() -> dict:
    from huggingface_hub.utils import build_hf_headers

    from .. import __version__

    return build_hf_headers(library_name=LIBRARY, library_version=__version__)


def _metadata(f: WeightFile, endpoint: str) -> _Remote:
    """HEAD the file on the Hub: where to GET it, its ETag (sha256 / git sha1), size and commit."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    url = hf_hub_url(f.repo_id, f.filename, revision=f.revision, endpoint=endpoint)
    where = f"{f.repo_id}/{f.filename}@{f.revision} on {endpoint}"
    try:
        meta = get_hf_file_metadata(url, library_name=LIBRARY)
    except _transport_errors() as err:
        status_code = getattr(getattr(err, "response", None), "status_code", None)
        if status_code in (401, 403, 404):
            raise WeightsDownloadError(f"{where}: not available (HTTP {status_code}, {_first_line(err)})") from err
        raise WeightsDownloadError(f"cannot reach {endpoint} for {f.repo_id}/{f.filename} ({_first_line(err)}); check the connection "
                                   "(or HF_ENDPOINT) and run again: finished files are kept and a partial one resumes") from err
    etag = (meta.etag or "").strip('"').lower()
    if not etag and not f.sha256:
        raise WeightsDownloadError(f"{where}: the server sent no ETag, so the download could not be verified; is HF_ENDPOINT a Hub "
                                   "(or a mirror that forwards X-Linked-Etag / ETag)?")
    if f.size is not None and meta.size is not None and meta.size != f.size:
        raise ChecksumError(f"{where} is {meta.size} bytes, but this pack expects {f.size} (the file this verifier was checked with); "
                            "refusing to download a different file")
    if f.sha256 and HEX64.match(etag) and etag != f.sha256:
        raise ChecksumError(f"{where} has sha256 {etag}, but this pack expects {f.sha256}; refusing to download a different file")
    location = url if getattr(meta, "xet_file_data", None) is not None else (meta.location or url)
    return _Remote(f, url, location, etag, f.size if f.size is not None else meta.size, meta.commit_hash)


def _partial(folder: str, r: _Remote) -> str:
    """``<folder>/.<target>.<etag>.part``: keyed by the Hub's ETag, so only the same version of the file resumes."""
    tag = re.sub(r"[^0-9a-zA-Z]", "", r.etag or r.file.sha256 or "")[:16] or "noetag"
    return os.path.join(folder, f".{r.file.dest.replace('/', '__')}.{tag}.part")


def _verify(path: str, r: _Remote) -> str:
    """Size and content check of the downloaded bytes; returns what was verified. Deletes them on a mismatch."""
    f = r.file
    size = os.path.getsize(path)
    want_sha256 = f.sha256 or (r.etag if HEX64.match(r.etag) else None)
    want_sha1 = r.etag if HEX40.match(r.etag) and not want_sha256 else None
    problem, checked = None, "size"
    if r.size is not None and size != r.size:
        problem = f"{size} bytes instead of {r.size}"
    elif want_sha256 or want_sha1:
        h = hashlib.sha256() if want_sha256 else hashlib.sha1(b"blob %d\0" % size)
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        got, want = h.hexdigest(), want_sha256 or want_sha1
        checked = "sha256" if want_sha256 else "git sha1"
        if got != want:
            origin = "this pack's manifest" if f.sha256 else "the Hub's ETag"
            problem = f"{checked} {got} does not match {want} ({origin})"
    if problem:
        os.remove(path)
        raise ChecksumError(f"{f.repo_id}/{f.filename}: the downloaded file is corrupt ({problem}); it was deleted and nothing was "
                            "written to the verifier folder; run again to download it afresh")
    return checked


def _fetch(folder: str, r: _Remote, progress: Progress | None, log: Callable[[str], None] | None) -> str:
    from huggingface_hub.file_download import http_get

    f = r.file
    part = _partial(folder, r)
    os.makedirs(folder, exist_ok=True)
    stem = os.path.basename(part).rsplit(".", 2)[0]
    for old in Path(folder).glob(f"{glob.escape(stem)}.*.part"):  # partial files of another version of this file
        if str(old) != part:
            old.unlink()
    done = os.path.getsize(part) if os.path.isfile(part) else 0
    if r.size is not None and done > r.size:
        os.remove(part)
        done = 0
    if log:
        what = f"resuming at {human_size(done)} of {human_size(r.size)}" if done else human_size(r.size)
        log(f"{f.dest}: {f.repo_id}/{f.filename} ({what})")
    headers = _headers()
    if urlsplit(r.location).netloc != urlsplit(r.url).netloc:
        headers.pop("authorization", None)  # a CDN location: the token stays with the Hub
    try:
        with open(part, "r+b" if done else "wb") as fh:
            fh.seek(0, os.SEEK_END)
            http_get(r.location, _CountingFile(fh, r.size, f.dest, progress), resume_size=done, headers=headers,
                     expected_size=r.size, displayed_filename=f.dest)
    except _transport_errors() as err:
        kept = os.path.getsize(part) if os.path.isfile(part) else 0
        raise WeightsDownloadError(f"download of {f.repo_id}/{f.filename} interrupted at {human_size(kept)} of {human_size(r.size)} "
                                   f"({_first_line(err)}); run the same command again to resume") from err
    checked = _verify(part, r)
    dest = _local(folder, f)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    os.replace(part, dest)
    return checked


def download(kind: str, folder: str | None = None, *, force: bool = False, progress: Progress | None = None,
             log: Callable[[str], None] | None = None) -> list[dict]:
    """Fetch the kind's published files into ``folder`` (default :func:`default_folder`), then check the folder as the
    loader will. Files already there with the Hub's size are kept (``force`` fetches them again); a partial file from
    an earlier run resumes. Returns one dict per file: ``target``, ``action`` ("downloaded" / "kept"), ``checked``.

    Raises ``ValueError`` (unknown kind, or a kind with nothing to fetch), :class:`OfflineError` (files missing and
    offline mode on: no request is made), :class:`ChecksumError`, :class:`WeightsDownloadError`, and the folder
    check's ``MissingWeightsError`` / ``CorruptWeightsError``."""
    kind = canonical_kind(kind)
    m = MANIFEST[kind]
    if not m.files:
        raise ValueError(f"{kind}: nothing to download ({m.note})")
    folder = os.path.abspath(os.path.expanduser(folder or default_folder(kind)))
    present = {f: _present(folder, f) for f in m.files}
    offline = offline_reason()
    if offline:
        missing = [f.dest for f in m.files if force or not present[f]]
        if missing:
            raise OfflineError(f"{offline}: not downloading {len(missing)} missing file(s) of {kind} ({', '.join(missing)}) into {folder}; "
                               "unset it to download, or copy the files there")
        report = [dict(target=f.dest, action="kept", checked="present (offline: not compared with the Hub)") for f in m.files]
    else:
        endpoint = hub_endpoint()
        remotes = [_metadata(f, endpoint) for f in m.files]  # every HEAD first: a missing file fails before any GB moves
        todo = [r for r in remotes if force or not present[r.file]
                or (r.size is not None and os.path.getsize(_local(folder, r.file)) != r.size)]
        need = sum(r.size or 0 for r in todo)
        os.makedirs(folder, exist_ok=True)
        free = shutil.disk_usage(folder).free
        if need > free:
            raise WeightsDownloadError(f"{kind}: {human_size(need)} to download but only {human_size(free)} free in {folder}")
        report = []
        for r in remotes:
            if r in todo:
                report.append(dict(target=r.file.dest, action="downloaded", checked=_fetch(folder, r, progress, log)))
            else:
                report.append(dict(target=r.file.dest, action="kept", checked="size matches the Hub"))
    try:
        check_folder(kind, folder)
    except files.MissingWeightsError as err:
        if m.manual:
            raise files.MissingWeightsError(f"{kind}: the Hub files are in {folder}; still needed by hand: {m.manual}") from err
        raise
    return report


def ensure(kind: str, folder: str, allow_download: bool = False, progress: Progress | None = None,
           log: Callable[[str], None] | None = None) -> str:
    """Make ``folder`` loadable as ``kind`` and return the path to hand to the loader (``folder`` itself; a file is
    checked through its folder and returned as given).

    A folder that already passes :func:`check_folder` is returned untouched (no network, whatever its layout). Else,
    with ``allow_download`` (the Verifier Loader's explicit ``download_if_missing``), the missing files are fetched as
    :func:`download` does; without it, the check's ``MissingWeightsError`` is raised with how to fetch them. Kinds with
    nothing published (classifier, ensemble) are returned as given: their loader reports what is missing."""
    kind = canonical_kind(kind)
    path = os.path.abspath(os.path.expanduser(str(folder)))
    target = os.path.dirname(path) if os.path.isfile(path) else path
    if not MANIFEST[kind].files:
        return path
    try:
        check_folder(kind, target)
        return path
    except (files.MissingWeightsError, files.CorruptWeightsError) as err:
        if not allow_download:
            raise type(err)(f"{err}; or fetch them: python -m noise_search weights get {kind} --to {target} "
                            "(in ComfyUI: the Verifier Loader's download_if_missing)") from err
    download(kind, target, progress=progress, log=log)
    return path
