"""Import the pack as ``noise_search`` from the repository root, as ComfyUI's loader does
(the checkout folder may be named anything, e.g. ``noise-search``)."""

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

if "noise_search" not in sys.modules:
    spec = importlib.util.spec_from_file_location("noise_search", ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["noise_search"] = module
    spec.loader.exec_module(module)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def repo_root():
    return ROOT
