"""Packaging rules from the Comfy Registry and ComfyUI-Manager: requirements.txt equals the
declared dependencies, the host's own packages are never listed, [tool.comfy] is complete."""

import re
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
HOST_PACKAGES = {"torch", "torchvision", "torchaudio", "torchsde"}
FORBIDDEN = HOST_PACKAGES | {"open-clip-torch", "open_clip_torch", "timm", "image-reward", "hpsv2"}


def _name(req):
    return re.split(r"[<>=!~;\[ ]", req.strip(), maxsplit=1)[0].lower()


def test_requirements_txt_equals_project_dependencies():
    lines = [l.strip() for l in (ROOT / "requirements.txt").read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert lines == PYPROJECT["project"]["dependencies"]


def test_no_host_or_torchvision_pulling_dependencies():
    every = list(PYPROJECT["project"]["dependencies"])
    for extra in PYPROJECT["project"].get("optional-dependencies", {}).values():
        every += extra
    assert not {_name(r) for r in every} & FORBIDDEN
    for r in PYPROJECT["project"]["dependencies"]:
        assert "==" not in r and "<" not in r, f"runtime dependency {r!r} must have a lower bound only"


def test_registry_metadata():
    comfy = PYPROJECT["tool"]["comfy"]
    for key in ("PublisherId", "DisplayName", "Icon", "requires-comfyui"):
        assert comfy.get(key), key
    assert PYPROJECT["project"]["license"] == {"file": "LICENSE"}
    assert "GNU GENERAL PUBLIC LICENSE" in (ROOT / "LICENSE").read_text()[:200]
    assert "ComfyUI" not in PYPROJECT["project"]["name"]
    assert PYPROJECT["project"]["urls"]["Repository"]
