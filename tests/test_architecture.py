"""Architecture rules: the framework-free cores never touch the host, the pack root imports
without ComfyUI, and no exception is swallowed silently anywhere in the pack."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE_DIRS = ["search", "samplers", "verifiers", "toyworld", "training", "benchmarks"]  # benchmarks reach ComfyUI via tests/nodes/host_harness.py
HOST_MODULES = {"comfy", "comfy_api", "comfy_extras", "comfy_execution", "folder_paths", "nodes", "server", "latent_preview"}
PACK_DIRS = CORE_DIRS + ["nodes"]


def _py_files(dirs):
    for d in dirs:
        yield from sorted((ROOT / d).rglob("*.py"))


def _imported_roots(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name.split(".")[0], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0], node.lineno


def test_core_folders_never_import_the_host():
    offenders = []
    for f in _py_files(CORE_DIRS):
        for mod, line in _imported_roots(ast.parse(f.read_text(), str(f))):
            if mod in HOST_MODULES:
                offenders.append(f"{f.relative_to(ROOT)}:{line} imports {mod}")
    assert not offenders, "core folders must stay framework-free:\n" + "\n".join(offenders)


def test_boundary_check_catches_a_host_import(tmp_path):
    tree = ast.parse("import os\nfrom comfy.samplers import KSAMPLER\nimport folder_paths\n")
    assert {m for m, _ in _imported_roots(tree)} & HOST_MODULES == {"comfy", "folder_paths"}


def test_pack_root_imports_without_comfyui():
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('pack_under_test', r'{ROOT / '__init__.py'}', submodule_search_locations=[r'{ROOT}'])\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['pack_under_test'] = m; spec.loader.exec_module(m)\n"
        "import pack_under_test.search.random_search, pack_under_test.search.paths, pack_under_test.samplers.ode\n"
        "assert callable(m.comfy_entrypoint) and m.WEB_DIRECTORY == './web'\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in {'comfy', 'comfy_api', 'folder_paths', 'nodes'})\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def _swallowing_handlers(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.ExceptHandler):
            if node.type is None:
                yield node.lineno, "bare except:"
            elif isinstance(node.type, ast.Name) and node.type.id in ("Exception", "BaseException") \
                    and all(isinstance(s, ast.Pass) for s in node.body):
                yield node.lineno, f"except {node.type.id}: pass"


def test_no_swallowed_exceptions_in_the_pack():
    offenders = []
    for f in list(_py_files(PACK_DIRS)) + [ROOT / "__init__.py", ROOT / "cli.py", ROOT / "demo.py", ROOT / "__main__.py"]:
        if f.exists():
            offenders += [f"{f.relative_to(ROOT)}:{line}: {what}" for line, what in _swallowing_handlers(ast.parse(f.read_text()))]
    assert not offenders, "\n".join(offenders)


def test_swallow_check_catches_offenders():
    src = "try:\n    x()\nexcept:\n    y()\ntry:\n    x()\nexcept Exception:\n    pass\ntry:\n    x()\nexcept ValueError:\n    pass\n"
    assert [w for _, w in _swallowing_handlers(ast.parse(src))] == ["bare except:", "except Exception: pass"]
