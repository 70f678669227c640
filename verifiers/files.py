"""Local weight files: check them BEFORE loading, load them offline, explain what is missing.

Every loader takes a path (a folder, or a file inside one); nothing is ever fetched from a hub
(``local_files_only=True`` everywhere). A missing file raises :class:`MissingWeightsError`, an
unreadable one :class:`CorruptWeightsError`; both name the file, the folder, the files expected
there and where users obtain them.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any, Optional, Sequence, Union

import torch

from ..errors import PackError

__all__ = ['VerifierWeightsError', 'MissingWeightsError', 'CorruptWeightsError', 'missing_error', 'corrupt_error',
           'as_folder', 'find_file', 'check_safetensors', 'check_json', 'ZIP_MAGIC', 'is_zip_checkpoint',
           'load_torch_file', 'HF_WEIGHTS', 'TOKENIZER_FILES', 'check_hf_folder', 'from_pretrained']


class VerifierWeightsError(PackError, OSError):
    """Base class of the weight errors (an ``OSError``, like transformers' own)."""


class MissingWeightsError(VerifierWeightsError, FileNotFoundError):
    pass


class CorruptWeightsError(VerifierWeightsError):
    pass


def _expected(expected):
    return ", ".join(expected) if expected else "(nothing listed)"


def missing_error(verifier: str, what: str, folder: str, expected: Sequence[str], source: str) -> MissingWeightsError:
    return MissingWeightsError(
        f"{verifier} verifier: {what} not found in {folder} (expected there: {_expected(expected)}; get them from {source})")


def corrupt_error(verifier: str, path: str, reason: Union[str, BaseException], expected: Sequence[str],
                  source: str) -> CorruptWeightsError:
    folder = os.path.dirname(os.path.abspath(path))
    return CorruptWeightsError(
        f"{verifier} verifier: {os.path.basename(path)} in {folder} is corrupt or unreadable ({reason}); "
        f"expected there: {_expected(expected)}; download it again from {source}")


def as_folder(path: Union[str, os.PathLike], verifier: str, expected: Sequence[str], source: str) -> str:
    """The folder ``path`` names (or holds ``path`` when it is a file); it must exist."""
    path = os.path.abspath(os.path.expanduser(str(path)))
    if os.path.isdir(path):
        return path
    if os.path.isfile(path):
        return os.path.dirname(path)
    raise missing_error(verifier, f"the folder {os.path.basename(path) or path}", os.path.dirname(path), expected, source)


def find_file(folder: str, names: Sequence[str], verifier: str, expected: Sequence[str], source: str,
              what: Optional[str] = None) -> str:
    """First of ``names`` present in ``folder`` (names may contain ``/`` for sub-folders)."""
    for n in names:
        p = os.path.join(folder, n)
        if os.path.isfile(p):
            return p
    raise missing_error(verifier, what or " or ".join(names), folder, expected, source)


def check_safetensors(path: str, verifier: str, expected: Sequence[str], source: str) -> str:
    """Header and size check of a .safetensors file (catches truncated downloads) without reading tensors."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) < 8:
                raise ValueError("file shorter than the 8-byte header length")
            n = struct.unpack("<Q", raw)[0]
            if n > size - 8:
                raise ValueError(f"header length {n} exceeds the file size {size}")
            header = json.loads(f.read(n))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        if 8 + n + end > size:
            raise ValueError(f"truncated: tensors end at byte {8 + n + end}, file has {size}")
    except (ValueError, KeyError, TypeError, OSError, UnicodeDecodeError) as err:
        raise corrupt_error(verifier, path, err, expected, source) from err
    return path


def check_json(path: str, verifier: str, expected: Sequence[str], source: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (ValueError, OSError, UnicodeDecodeError) as err:
        raise corrupt_error(verifier, path, f"not valid JSON: {err}", expected, source) from err


ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default (zip) format since torch 1.6


def is_zip_checkpoint(path: str) -> bool:
    """True when ``path`` starts with the zip magic, i.e. ``torch.save``'s zip format (the only one ``mmap`` can
    read); False for the legacy format (``_use_new_zipfile_serialization=False``, torch < 1.6) or anything else."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == ZIP_MAGIC
    except OSError:
        return False


def load_torch_file(path: str, verifier: str, expected: Sequence[str], source: str, allow_pickle: bool = False) -> Any:
    """``torch.load`` of a .pt/.pth/.bin (``weights_only=True`` unless ``allow_pickle``) or a .safetensors file.
    Zip-format files are memory-mapped; legacy (non-zip) files, which ``mmap`` cannot read, load without it,
    under the same ``weights_only`` rule."""
    if path.endswith(".safetensors"):
        check_safetensors(path, verifier, expected, source)
        from safetensors.torch import load_file
        return load_file(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=not allow_pickle, mmap=is_zip_checkpoint(path))
    except Exception as err:  # noqa: BLE001 - every failure is reported as a corrupt file
        reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        if not allow_pickle and "weights_only" in str(err):
            reason += " (it holds more than tensors; pass allow_pickle=True only if you trust the file)"
        raise corrupt_error(verifier, path, reason, expected, source) from err


HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.json")


def check_hf_folder(folder: str, verifier: str, source: str, need_tokenizer: bool = False,
                    extra_expected: Sequence[str] = ()) -> dict:
    """Check a transformers ``save_pretrained`` folder: config.json, weights (sharded too), tokenizer files."""
    expected = ["config.json", "model.safetensors (or pytorch_model.bin)"]
    if need_tokenizer:
        expected.append("tokenizer.json (or vocab.json + merges.txt), tokenizer_config.json")
    expected += list(extra_expected)
    if not os.path.isdir(folder):
        raise missing_error(verifier, f"the folder {os.path.basename(folder)}", os.path.dirname(folder), expected, source)
    cfg = check_json(find_file(folder, ["config.json"], verifier, expected, source), verifier, expected, source)
    w = find_file(folder, HF_WEIGHTS, verifier, expected, source, what="model.safetensors (or pytorch_model.bin)")
    if w.endswith(".index.json"):
        index = check_json(w, verifier, expected, source)
        for shard in sorted(set(index.get("weight_map", {}).values())):
            p = find_file(folder, [shard], verifier, expected, source)
            if p.endswith(".safetensors"):
                check_safetensors(p, verifier, expected, source)
    elif w.endswith(".safetensors"):
        check_safetensors(w, verifier, expected, source)
    if need_tokenizer:
        t = find_file(folder, TOKENIZER_FILES, verifier, expected, source, what="tokenizer.json (or vocab.json + merges.txt)")
        if t.endswith("vocab.json"):
            find_file(folder, ["merges.txt"], verifier, expected, source)
        check_json(t, verifier, expected, source)
    return cfg


def from_pretrained(cls: Any, folder: str, verifier: str, source: str, **kw: Any) -> Any:
    """``cls.from_pretrained(folder, local_files_only=True)`` with transformers' misleading errors rewritten."""
    try:
        return cls.from_pretrained(folder, local_files_only=True, **kw)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as err:
        files = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
        raise CorruptWeightsError(
            f"{verifier} verifier: could not load {cls.__name__} from {folder} (files there: {', '.join(files) or 'none'}): "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}; get a complete copy from {source}") from err
