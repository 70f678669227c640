"""Help pages and web-extension hygiene: runs everywhere, needs no ComfyUI.

* every node id defined in nodes/*.py (string literals ending in ``_NoiseSearch``, found by parsing
  the source, so ComfyUI need not import) has ``web/docs/<NodeId>/en.md`` with the required sections: the path
  ComfyUI's frontend asks for first (``docs/<NodeId>/<locale>.md``, then ``docs/<NodeId>.md``), so its first
  request answers 200; one source per page (no ``web/docs/<NodeId>.md`` copy);
* pages read at the help sidebar's default width (about 220 px of text): no tables of three or more columns
  (inputs and outputs are lists);
* no file under web/ imports the legacy ``/scripts/ui*`` or ``/extensions/core/*`` modules
  (ComfyUI logs a deprecation warning for those since late 2025);
* the frontend extension targets exactly the pack's search nodes and Verifier Score;
* with a ComfyUI checkout in COMFYUI_PATH, every input and output of every node is named on its page.
"""

import ast
import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NODES_DIR = ROOT / "nodes"
WEB = ROOT / "web"
DOCS = WEB / "docs"
LOCALE = "en"  # the frontend's default locale; other locales would sit beside it as docs/<NodeId>/<locale>.md


def help_page(node_id):
    return DOCS / node_id / f"{LOCALE}.md"

NODE_ID = re.compile(r"^[A-Z][A-Za-z0-9]*_NoiseSearch$")
REQUIRED_SECTIONS = {
    "inputs": re.compile(r"^##\s+Inputs\b", re.M | re.I),
    "outputs": re.compile(r"^##\s+Outputs\b", re.M | re.I),
    "recommended settings": re.compile(r"^##\s+Recommended settings?\b", re.M | re.I),
    "paper": re.compile(r"^##\s+Paper behind it\b", re.M | re.I),
}
LEGACY_IMPORT = re.compile(
    r"""(?:\bimport\b[^;'"]*?\bfrom\s*|\bimport\s*\(?\s*|\bimport\s+)['"]([^'"]*(?:/scripts/ui|/extensions/core/)[^'"]*)['"]""")
LEGACY_PATH = re.compile(r"""['"`][^'"`\n]*(?:/scripts/ui(?:\.js|/)|/extensions/core/)[^'"`\n]*['"`]""")
COMMENTS = re.compile(r"""/\*.*?\*/|(?<![:'"\\])//[^\n]*""", re.S)


def node_ids_from_source():
    """Node ids defined in nodes/*.py: every string constant that looks like a pack node id."""
    ids = set()
    for path in sorted(NODES_DIR.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and NODE_ID.match(node.value):
                ids.add(node.value)
    return sorted(ids)


def test_node_ids_are_found():
    ids = node_ids_from_source()
    if not ids:
        pytest.skip("nodes/ defines no node yet")
    assert all(i.endswith("_NoiseSearch") for i in ids)


@pytest.mark.parametrize("node_id", node_ids_from_source() or ["<none>"])
def test_every_node_has_a_help_page(node_id):
    if node_id == "<none>":
        pytest.skip("nodes/ defines no node yet")
    page = help_page(node_id)
    assert page.is_file(), f"missing help page web/docs/{node_id}/{LOCALE}.md (ComfyUI shows it in the node's help panel)"
    text = page.read_text(encoding="utf-8")
    name = f"{node_id}/{page.name}"
    assert text.startswith("# "), f"{name}: must start with a '# Title' line"
    missing = [sec for sec, rx in REQUIRED_SECTIONS.items() if not rx.search(text)]
    assert not missing, f"{name}: missing sections {missing}"
    assert f"`{node_id}`" in text, f"{name}: should name its node id"
    assert "arXiv" in text.split("Paper behind it", 1)[-1], f"{name}: the paper section should cite the arXiv paper"


def test_no_orphan_help_pages():
    ids = set(node_ids_from_source())
    if not ids:
        pytest.skip("nodes/ defines no node yet")
    pages = {p.parent.name for p in DOCS.glob(f"*/{LOCALE}.md")}
    assert pages <= ids, f"help pages for unknown node ids: {sorted(pages - ids)}"


def test_one_source_per_help_page():
    """web/docs/<NodeId>/en.md only: a flat web/docs/<NodeId>.md would be a second copy to keep in step
    (the frontend falls back to it only when the locale page is missing)."""
    flat = sorted(p.name for p in DOCS.glob("*.md"))
    assert not flat, f"help pages belong in web/docs/<NodeId>/{LOCALE}.md, not {flat}"
    links = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*") if p.is_symlink())
    assert not links, f"symlinks do not survive packaging: {links}"


TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$")


def test_help_pages_have_no_wide_tables():
    """The help sidebar is about 220 px wide by default: a table of three or more columns is cut off there."""
    wide = []
    for page in sorted(DOCS.glob(f"*/{LOCALE}.md")):
        for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            if TABLE_ROW.match(line) and line.strip().strip("|").count("|") >= 2:
                wide.append(f"{page.parent.name}/{page.name}:{n}: {line[:60]}")
    assert not wide, "tables of 3+ columns (use lists):\n" + "\n".join(wide)


def web_sources():
    return sorted(p for p in WEB.rglob("*") if p.is_file() and p.suffix in {".js", ".mjs", ".ts", ".html", ".vue"})


def test_web_has_the_extension():
    assert (WEB / "js" / "noise_search.js").is_file()


@pytest.mark.parametrize("path", web_sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_legacy_frontend_imports(path):
    text = COMMENTS.sub("", path.read_text(encoding="utf-8"))
    assert not LEGACY_IMPORT.search(text), f"{path.relative_to(ROOT)} imports a deprecated /scripts/ui or /extensions/core module"
    assert not LEGACY_PATH.search(text), f"{path.relative_to(ROOT)} references a deprecated /scripts/ui or /extensions/core path"


def test_legacy_import_check_catches_the_usual_forms():
    bad = [
        'import { app } from "../../scripts/ui.js";',
        "import { ComfyDialog } from '/scripts/ui/dialog.js'",
        'import "../../extensions/core/widgetInputs.js";',
        'const m = await import("/extensions/core/groupNode.js");',
    ]
    for line in bad:
        assert LEGACY_IMPORT.search(line) or LEGACY_PATH.search(line), line
    assert not LEGACY_IMPORT.search('const { app } = window.comfyAPI.app;')


def test_extension_targets_the_pack_nodes():
    text = (WEB / "js" / "noise_search.js").read_text(encoding="utf-8")
    ids = set(node_ids_from_source())
    targets = set(re.findall(r'"([A-Za-z0-9]+_NoiseSearch)"', text))
    assert targets == {"RandomSearch_NoiseSearch", "ZeroOrderSearch_NoiseSearch", "PathSearch_NoiseSearch", "VerifierScore_NoiseSearch"}
    if ids:
        assert targets <= ids, f"the extension names node ids nodes/ does not define: {sorted(targets - ids)}"
    assert "window.comfyAPI" in text and "registerExtension" in text
    assert '"noise-search.progress"' in text


# ----------------------------------------------------------------------------- with ComfyUI

def _comfy_nodes():
    comfy = os.environ.get("COMFYUI_PATH")
    if not comfy or not os.path.isfile(os.path.join(comfy, "comfy", "sd.py")):
        pytest.skip("COMFYUI_PATH is not set to a ComfyUI checkout")
    if comfy not in sys.path:
        sys.path.insert(0, comfy)
    try:
        import comfy.cli_args
        comfy.cli_args.args.cpu = True
        import comfy_api.latest  # noqa: F401
        import noise_search.nodes.extension as ext
    except Exception as err:  # noqa: BLE001
        pytest.skip(f"ComfyUI or the pack's nodes do not import: {type(err).__name__}: {err}")
    return ext.all_nodes()


def test_help_pages_name_every_input_and_output():
    nodes = _comfy_nodes()
    problems = []
    for node in nodes:
        schema = node.GET_SCHEMA()
        page = help_page(schema.node_id)
        if not page.is_file():
            problems.append(f"{schema.node_id}: no help page")
            continue
        text = page.read_text(encoding="utf-8")
        for inp in schema.inputs:
            names = {inp.id, getattr(inp, "display_name", None) or inp.id}
            if not any(f"`{n}`" in text for n in names):
                problems.append(f"{schema.node_id}: input {inp.id!r} not documented")
        for out in schema.outputs:
            names = {n for n in (getattr(out, "display_name", None), getattr(out, "id", None)) if n}
            if names and not any(f"`{n}`" in text for n in names):
                problems.append(f"{schema.node_id}: output {sorted(names)} not documented")
    assert not problems, "\n".join(problems)
