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
    assert "ComfyUI" not in PYPROJECT["project"]["name"]
    assert PYPROJECT["project"]["urls"]["Repository"]


def test_licence_is_an_spdx_expression_with_its_file_and_authors():
    """PEP 639: ``license`` a SPDX string, ``license-files`` the text (the TOML-table form is deprecated)."""
    project = PYPROJECT["project"]
    assert project["license"] == "GPL-3.0-or-later" and project["license-files"] == ["LICENSE"]
    assert "GNU GENERAL PUBLIC LICENSE" in (ROOT / "LICENSE").read_text()[:200]
    assert project["authors"] and all(a.get("name") for a in project["authors"])


def test_every_shipped_folder_is_a_listed_package():
    """setuptools warns 'Package ... is absent from the packages configuration' for every folder under the
    package root that holds shipped files but is not listed; list them all (data-only ones included)."""
    import subprocess
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if files.returncode != 0:
        pytest.skip("not a git checkout: the shipped files are the tracked ones")
    not_shipped = {"tests", "benchmarks", "docs"}
    folders = set()
    for line in files.stdout.splitlines():
        parts = Path(line).parts
        if len(parts) > 1 and parts[0] not in not_shipped and not parts[0].startswith("."):
            folders.add(".".join(("noise_search",) + parts[:-1]))
    assert folders <= listed, f"not listed in [tool.setuptools] packages: {sorted(folders - listed)}"


def test_the_demo_extra_lists_only_what_the_demo_imports():
    """The demo runs on committed weights; scikit-learn (the digits data set) belongs to the toyworld extra."""
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert extras["demo"] == [] and any(_name(r) == "scikit-learn" for r in extras["toyworld"])
