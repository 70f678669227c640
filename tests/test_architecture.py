"""Architecture rules: the framework-free cores never touch the host, the pack root imports
without ComfyUI, and no exception is swallowed silently anywhere in the pack."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE_DIRS = ["search", "samplers", "verifiers", "toyworld", "training", "benchmarks", "cli"]  # benchmarks reach ComfyUI via tests/nodes/host_harness.py
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
    for f in list(_py_files(PACK_DIRS)) + [ROOT / "__init__.py", ROOT / "__main__.py"]:
        if f.exists():
            offenders += [f"{f.relative_to(ROOT)}:{line}: {what}" for line, what in _swallowing_handlers(ast.parse(f.read_text()))]
    assert not offenders, "\n".join(offenders)


def test_swallow_check_catches_offenders():
    src = "try:\n    x()\nexcept:\n    y()\ntry:\n    x()\nexcept Exception:\n    pass\ntry:\n    x()\nexcept ValueError:\n    pass\n"
    assert [w for _, w in _swallowing_handlers(ast.parse(src))] == ["bare except:", "except Exception: pass"]


# ---------------------------------------------------------------------- one seam: nodes hold no ranking or noise logic

CORE_ONLY_NAMES = {"rank_key", "rank_pool", "ranks", "zscores", "make_noise_batch", "seed_noise", "sphere_neighbour",
                   "derive_seed", "Evaluator", "Candidate", "SearchResult"}
NOISE_DRAWS = {"randn", "randn_like", "rand", "rand_like", "normal"}
ALLOWED_DRAWS = {"per_row_noise_sampler"}  # the host's per-candidate generator for a stochastic sampler's own draws


def _node_logic_offences(tree, name):
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for a in node.names:
                if a.name in CORE_ONLY_NAMES or a.name.split(".")[0] == "hashlib":
                    out.append(f"{name}:{node.lineno} imports {a.name} (ranking, noise and search state live in the core)")
        elif isinstance(node, ast.Call):
            fn = node.func
            called = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
            if called in ("sorted", "min", "max", "sort") and any(k.arg == "key" for k in node.keywords):
                out.append(f"{name}:{node.lineno} ranks with {called}(key=...) (ranking lives in search.scoring)")
            if called in CORE_ONLY_NAMES:
                out.append(f"{name}:{node.lineno} calls {called} (a core internal)")
    allowed = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name in ALLOWED_DRAWS for n in ast.walk(f)}
    for fn in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and id(n) not in allowed]:
        for node in ast.walk(fn):
            if isinstance(node, ast.Attribute) and node.attr in NOISE_DRAWS and isinstance(node.value, ast.Name) \
                    and node.value.id == "torch":
                out.append(f"{name}:{node.lineno} draws noise with torch.{node.attr} in {fn.name} (noise comes from recipes)")
    return out


def test_nodes_hold_no_ranking_or_noise_logic():
    offenders = []
    for f in _py_files(["nodes"]):
        offenders += _node_logic_offences(ast.parse(f.read_text()), str(f.relative_to(ROOT)))
    assert not offenders, "\n".join(offenders)


def test_node_logic_check_catches_offenders():
    src = ("import hashlib\nfrom ..search.result import rank_key\nimport torch\n"
           "def f(c):\n    best = sorted(c, key=lambda x: -x.score)\n    return torch.randn(3)\n"
           "def per_row_noise_sampler(g):\n    return torch.randn(3, generator=g)\n")
    got = _node_logic_offences(ast.parse(src), "x.py")
    assert len(got) == 4 and "hashlib" in got[0] and "rank_key" in got[1] and "sorted(key" in got[2] and "torch.randn in f" in got[3]


# ---------------------------------------------------------------------- the pack cites only files it ships

MD_REF = __import__("re").compile(r"[A-Za-z0-9_./-]*[A-Za-z0-9_-]\.md\b")


def _tracked(suffixes):
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        import pytest
        pytest.skip("not a git checkout")
    return [ROOT / p for p in out.stdout.splitlines() if p.endswith(suffixes) and (ROOT / p).exists()]


def _missing_md_refs(text, tracked_names, where):
    missing = []
    for ref in MD_REF.findall(text):
        name = ref.rstrip(".").split("/")[-1]
        if name not in tracked_names and not (ROOT / ref).exists():
            missing.append(f"{where} cites {ref}, which the repository does not contain")
    return missing


def test_code_and_docs_cite_only_files_the_repository_has():
    files = _tracked((".py", ".md", ".js", ".mjs"))
    names = {p.name for p in _tracked(("",))}
    missing = []
    for f in files:
        if f.name == "test_architecture.py":  # its own test of the check names a missing file on purpose
            continue
        missing += _missing_md_refs(f.read_text(errors="replace"), names, str(f.relative_to(ROOT)))
    assert not missing, "\n".join(missing)


def test_citation_check_catches_a_missing_file():
    assert _missing_md_refs("see papers.md 2.3 and README.md", {"README.md"}, "x.py") == [
        "x.py cites papers.md, which the repository does not contain"]


# ---------------------------------------------------------------------- every core package states its public API

CORE_PACKAGES = ["search", "samplers", "verifiers", "training"]


def test_every_core_module_states_its_public_api():
    missing = []
    for f in _py_files(CORE_PACKAGES):
        tree = ast.parse(f.read_text())
        names = {t.id for n in tree.body if isinstance(n, (ast.Assign, ast.AnnAssign))
                 for t in (n.targets if isinstance(n, ast.Assign) else [n.target]) if isinstance(t, ast.Name)}
        if "__all__" not in names:
            missing.append(str(f.relative_to(ROOT)))
    assert not missing, "modules without __all__: " + ", ".join(missing)


def test_the_seam_callables_are_protocols():
    """generate, score, denoise and the callbacks that cross the seam are typing.Protocols (search/protocols.py)."""
    import typing
    from noise_search.search import protocols
    for name in ("Generate", "Score", "Denoise", "Renoise", "OnStep", "OnScored", "OnInterrupt"):
        cls = getattr(protocols, name)
        assert getattr(cls, "_is_protocol", False) and typing.Protocol in cls.__mro__, name
