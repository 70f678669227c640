"""Unit tests of the web UI's pure JS modules (state and chart), run with node's own test runner.

Needs only ``node`` (no browser, no ComfyUI); skipped when node is not installed."""

import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def test_js_unit_tests_pass():
    node = shutil.which("node")
    if not node:
        pytest.skip("node is not installed")
    r = subprocess.run([node, "--test", str(HERE / "unit")], capture_output=True, text=True, timeout=120, cwd=HERE.parents[1])
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "# fail 0" in r.stdout
