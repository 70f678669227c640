"""Node-layer rows of docs/bad-inputs.md (N..): what a ComfyUI user gets for a bad input, executed
in-process against the real host (skipped without COMFYUI_PATH, see conftest.py).

ComfyUI validates widget ranges (min/max) before a node runs; these cases call ``execute`` directly,
as an API prompt or another node pack could, and check that the node or the core still refuses the
input with a message that names it and its valid range.
"""

import ast
import builtins
import contextlib
import importlib
import importlib.util
import logging
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
MIB, GIB = 1024 ** 2, 1024 ** 3


def search_kwargs(m, verifier, **kw):
    base = dict(model=m["model"], positive=m["positive"], negative=m["negative"], latent_image=m["latent"], vae=m["vae"],
                verifier=verifier, verifier_prompt="", class_id=3, seed=100, sampler_name="euler", scheduler="normal",
                steps=2, cfg=1.0, denoise=1.0, budget=0, chunk_size=3, top_k=3)
    base.update(kw)
    return base


def random_search(m, verifier, **kw):
    from noise_search.nodes.search_nodes import RandomSearch
    with torch.inference_mode():
        return RandomSearch.execute(**search_kwargs(m, verifier, **{"count": 3, "proxy_steps": 0, **kw}))


def zero_order(m, verifier, **kw):
    from noise_search.nodes.search_nodes import ZeroOrderSearch
    with torch.inference_mode():
        return ZeroOrderSearch.execute(**search_kwargs(m, verifier, **{"neighbours": 2, "iterations": 1, "lambda_": 0.9,
                                                                      "score_pivot": False, "proxy_steps": 0, **kw}))


def paths(m, verifier, **kw):
    from noise_search.nodes.search_nodes import PathSearch
    with torch.inference_mode():
        return PathSearch.execute(**search_kwargs(m, verifier, **{"steps": 4, "paths": 2, "width": 2, "start_step": 1,
                                                                 "delta_f": 1, "delta_b": 2, **kw}))


def load(**kw):
    from noise_search.nodes.verifier_nodes import VerifierLoader
    base = dict(name="tiny_cls.pt", kind="classifier", device="cpu", dtype="fp32", options='{"num_classes": 10, "size": 32}')
    base.update(kw)
    with torch.inference_mode():
        return VerifierLoader.execute(**base)


def score(images, verifier, **kw):
    from noise_search.nodes.verifier_nodes import VerifierScore
    with torch.inference_mode():
        return VerifierScore.execute(**{"images": images, "verifier": verifier, "prompt": "", "class_id": 1, "top_k": 1, **kw})


@contextlib.contextmanager
def free_memory(nbytes):
    """The host's free memory seen by the search's chunk plan (nodes/memory.py), as a fixed figure."""
    from noise_search.nodes import memory
    saved = memory.free_bytes
    memory.free_bytes = lambda device, model=None: int(nbytes)
    try:
        yield
    finally:
        memory.free_bytes = saved


def with_free_memory(nbytes, call):
    with free_memory(nbytes):
        return call()


NODE_CASES = {
    "N01": (lambda m, v: random_search(m, v, latent_image={"samples": torch.zeros(2, 4, 8, 8)}), ValueError,
            ["batch-1 LATENT", "got batch 2", "Latent From Batch"]),
    "N02": (lambda m, v: random_search(m, v, class_id=-1), ValueError, ["classifier verifier scores a class", "set class_id (>= 0)"]),
    "N03": (lambda m, v: random_search(m, v, count=3, top_k=5), ValueError, ["top_k 5 is larger than the 3 candidates", "[1, 3]"]),
    "N04": (lambda m, v: random_search(m, v, pick=99), ValueError, ["pick=99 is not among the kept top-3 candidates", "set pick to -1"]),
    "N05": (lambda m, v: load(name="no_such_verifier"), ValueError,
            ["name must be one of [", "'tiny_cls.pt'", "got 'no_such_verifier'", "models/verifiers", "extra_model_paths.yaml"]),
    "N06": (lambda m, v: load(options="{num_classes: 10"), ValueError, ["options must be a JSON object", "{\"num_classes\": 10}"]),
    "N07": (lambda m, v: paths(m, v, sampler_name="euler_ancestral"), ValueError,
            ["Search over Paths needs a deterministic (ODE) sampler", "use one of", "euler"]),
    "N08": (lambda m, v: random_search(m, v, sigmas=torch.tensor([1.0])), ValueError, ["SIGMAS must hold at least 2 values (steps + 1)", "(1,)"]),
    "N09": (lambda m, v: random_search(m, v, count=0, budget=0), ValueError, ["give count (an integer >= 1) or an NFE budget"]),
    "N10": (lambda m, v: zero_order(m, v, lambda_=1.0), ValueError, ["lambda", "(0, 1)", "got 1.0"]),
    "N11": (lambda m, v: paths(m, v, delta_f=2, delta_b=2, start_step=2), ValueError, ["delta_b > delta_f", "delta_b=2, delta_f=2"]),
    # a V3 combo value outside its list passes ComfyUI's /prompt validation: every node checks its combos itself
    "N12": (lambda m, v: random_search(m, v, scheduler="bogus"), ValueError,
            ["scheduler must be one of [", "'normal'", "'karras'", "got 'bogus'"]),
    "N13": (lambda m, v: zero_order(m, v, sampler_name="not_a_sampler"), ValueError,
            ["sampler_name must be one of [", "'euler'", "'dpmpp_2m'", "got 'not_a_sampler'"]),
    "N14": (lambda m, v: random_search(m, v, steps=4, proxy_steps=10), ValueError,
            ["proxy_steps must be in [0, 3]", "below steps=4", "0 = off", "got 10"]),
    "N15": (lambda m, v: score(torch.rand(1, 32, 32, 3), v, top_k=4), ValueError,
            ["top_k must be in [1, 1]", "the number of images to score", "got 4"]),
    "N16": (lambda m, v: with_free_memory(11.5 * GIB, lambda: random_search(m, v, cfg=7.0, chunk_size=4, top_k=3, latent_image={
                "samples": torch.zeros(1, 4, 512, 512)})), ValueError,
            ["Random Search at 4096x4096 (latent 1x4x512x512) cannot fit one candidate", "sampling it needs about 38.40 GiB",
             "cpu has 11.50 GiB free", "chunk_size 4", "lower the resolution"]),
    "N17": (lambda m, v: with_free_memory(20 * MIB, lambda: random_search(m, v)), ValueError,
            ["Random Search at 64x64 (latent 1x4x8x8) cannot fit one candidate", "decoding it on the CPU needs about 34.0 MiB",
             "20.0 MiB is free", "chunk_size 3"]),
    "N18": (lambda m, v: load(kind="not_a_kind"), ValueError, ["kind must be one of [", "'clip_score'", "got 'not_a_kind'"]),
}


@pytest.mark.parametrize("case", sorted(NODE_CASES))
def test_node_bad_input(case, sd15, verifier):
    call, err_type, must = NODE_CASES[case]
    with pytest.raises(err_type) as info:
        call(sd15, verifier)
    msg = str(info.value)
    missing = [s for s in must if s not in msg]
    assert not missing, f"{case}: message {msg!r} lacks {missing}"


# --------------------------------------------------------------------------- combos: every node, every COMBO input

VALID = {  # valid inputs of every node that has a COMBO input (a COMBO input left out here gets its default)
    "NoiseCandidatePool_NoiseSearch": lambda m, v: dict(seed=0, count=2, mode="seeds", lambda_=0.9),
    "VerifierLoader_NoiseSearch": lambda m, v: dict(name="tiny_cls.pt", kind="classifier", device="cpu", dtype="fp32",
                                                    options='{"num_classes": 10, "size": 32}'),
    "VerifierScore_NoiseSearch": lambda m, v: dict(images=torch.rand(2, 32, 32, 3), verifier=v, prompt="", class_id=1, top_k=2,
                                                   ensemble="mean_rank"),
    "RandomSearch_NoiseSearch": lambda m, v: search_kwargs(m, v, count=3, proxy_steps=0, ensemble="mean_rank"),
    "ZeroOrderSearch_NoiseSearch": lambda m, v: search_kwargs(m, v, neighbours=2, iterations=1, lambda_=0.9, score_pivot=False,
                                                              proxy_steps=0, ensemble="mean_rank"),
    "PathSearch_NoiseSearch": lambda m, v: search_kwargs(m, v, steps=4, paths=2, width=2, start_step=1, delta_f=1, delta_b=2,
                                                         ensemble="mean_rank"),
    "FKSteering_NoiseSearch": lambda m, v: search_kwargs(m, v, steps=3, particles=2, potential="max", lambda_=10.0,
                                                         resample_every=1, resample_start=0, resample_end=0, ess_threshold=0.0,
                                                         eta=1.0, top_k=2, ensemble="mean_rank"),
    "EvolutionarySearch_NoiseSearch": lambda m, v: search_kwargs(m, v, population=2, elites=1, lambda_=0.9, tournament=1,
                                                                 generations=1, proxy_steps=0, top_k=2, ensemble="mean_rank"),
    "EarlyPruning_NoiseSearch": lambda m, v: search_kwargs(m, v, count=2, checkpoints="1", keep=0.5, top_k=1,
                                                           ensemble="mean_rank"),
}


def combo_nodes(nodes_mod):
    from noise_search.nodes.validation import combo_inputs
    return {n.define_schema().node_id: n for n in nodes_mod.all_nodes() if combo_inputs(n)}


def valid_kwargs(node_id, node, m, v):
    from noise_search.nodes.validation import combo_inputs
    kw = VALID[node_id](m, v)
    for inp in combo_inputs(node):
        kw.setdefault(inp.id, inp.default if inp.default is not None else inp.options[0])
    return kw


def test_every_combo_input_of_every_node_is_checked(nodes_mod, sd15, verifier):
    """A value outside a COMBO's options is refused by the node itself, naming the input, the value and the options."""
    from noise_search.nodes.validation import check_combos, combo_inputs
    nodes = combo_nodes(nodes_mod)
    assert set(nodes) == set(VALID), "every node with a COMBO input needs valid inputs in VALID"
    checked = []
    for node_id, node in sorted(nodes.items()):
        good = valid_kwargs(node_id, node, sd15, verifier)
        check_combos(node, good)  # the valid values pass: the refusals below are the bad value's
        for inp in combo_inputs(node):
            with torch.inference_mode(), pytest.raises(ValueError) as info:
                node.execute(**dict(good, **{inp.id: "not_an_option"}))
            msg = str(info.value)
            assert msg.startswith(f"{inp.id} must be one of ["), (node_id, msg)
            assert "got 'not_an_option'" in msg and repr(good[inp.id]) in msg and "\n" not in msg, (node_id, msg)
            checked.append((node_id, inp.id))
    assert len(checked) >= 15 and ("RandomSearch_NoiseSearch", "scheduler") in checked
    assert ("PathSearch_NoiseSearch", "sampler_name") in checked and ("VerifierLoader_NoiseSearch", "dtype") in checked


def test_combos_are_checked_on_comfyuis_execution_path(nodes_mod, verifier):
    """ComfyUI runs a clone of the node class through a locked copy (execution.py): the check survives both, and every
    node of the pack can still be cloned and locked."""
    from comfy_api.internal import make_locked_method_func
    from noise_search.nodes.validation import is_checked
    for node in nodes_mod.all_nodes():
        clone = node.PREPARE_CLASS_CLONE({})
        make_locked_method_func(node, "EXECUTE_NORMALIZED", clone)
        assert is_checked(clone)
    from noise_search.nodes.verifier_nodes import VerifierScore
    run = make_locked_method_func(VerifierScore, "EXECUTE_NORMALIZED", VerifierScore.PREPARE_CLASS_CLONE({}))
    with torch.inference_mode(), pytest.raises(ValueError, match=r"^ensemble must be one of \['mean_rank', 'zscore'\], got 'median'$"):
        run(images=torch.rand(2, 32, 32, 3), verifier=verifier, prompt="", class_id=1, top_k=2, ensemble="median")
    with torch.inference_mode():
        out = run(images=torch.rand(2, 32, 32, 3), verifier=verifier, prompt="", class_id=1, top_k=2, ensemble="zscore")
    assert len(out.result[0]) == 2


# --------------------------------------------------------------------------- memory: the chunk that fits

def test_a_search_shrinks_its_chunk_to_what_fits(sd15, verifier, caplog):
    """Free memory between ComfyUI's estimates for chunks of 2 and 3 candidates (cfg 2: two rows each): the search
    samples in chunks of 2, says so in a log line and in the provenance, and scores every candidate."""
    import json
    from noise_search.nodes import memory
    cond = memory.conds(sd15["positive"], sd15["negative"], 2)
    two, three = (memory.sampling_bytes(sd15["model"], (1, 4, 8, 8), c, cond, 2) for c in (2, 3))
    assert three > two == memory.sampling_bytes(sd15["model"], (1, 4, 8, 8), 4, memory.conds(sd15["positive"], None, 1), 1)
    free = (two + three) // 2
    assert memory.decode_bytes(sd15["vae"], (1, 4, 8, 8)) < free
    with free_memory(free), caplog.at_level(logging.WARNING):
        out = random_search(sd15, verifier, cfg=2.0, count=3, chunk_size=3, top_k=3)
    prov = json.loads(out.result[7])
    assert prov["memory"]["chunk_size_asked"] == 3 and prov["memory"]["chunk_size"] == 2
    assert prov["memory"]["rows_per_candidate"] == 2 and prov["memory"]["free_bytes"] == free
    assert prov["params"]["chunk_size"] == 2 and len(prov["candidates"]) == 3
    assert any("chunk_size 3 needs about" in r.getMessage() and "using chunk_size 2" in r.getMessage() for r in caplog.records)
    out = random_search(sd15, verifier, cfg=1.0, count=3, chunk_size=3, top_k=3)  # the real host: no shrink
    prov = json.loads(out.result[7])
    assert prov["memory"]["chunk_size"] == 3 and prov["memory"]["rows_per_candidate"] == 1 and prov["params"]["chunk_size"] == 3


def test_free_memory_is_comfyuis_figure():
    import comfy.model_management as mm
    from noise_search.nodes import memory
    cpu = torch.device("cpu")
    free = memory.free_bytes(cpu)
    assert isinstance(free, int) and free > 0
    assert abs(free - mm.get_free_memory(cpu)) < 0.25 * free


# --------------------------------------------------------------------------- the pack's exception classes

def _exception_base(base):
    """A base-class expression of a class statement that makes it an exception ComfyUI reports (an Exception)."""
    name = base.id if isinstance(base, ast.Name) else getattr(base, "attr", "")
    builtin = getattr(builtins, name, None)
    if isinstance(builtin, type) and issubclass(builtin, BaseException):
        return issubclass(builtin, Exception)
    return name == "PackError" or name.endswith(("Error", "Exception"))


def _exception_classes():
    """(module inside the pack, class name) of every exception class the pack defines (found in the source)."""
    found = []
    files = [p for d in ("search", "samplers", "verifiers", "toyworld", "training", "nodes") for p in sorted((ROOT / d).rglob("*.py"))]
    for f in files + sorted(ROOT.glob("*.py")):
        parts = f.relative_to(ROOT).with_suffix("").parts
        if parts[-1] in ("__init__", "__main__"):
            continue
        for node in ast.parse(f.read_text()).body:
            if isinstance(node, ast.ClassDef) and any(_exception_base(b) for b in node.bases):
                found.append((".".join(parts), node.name))
    return found


@pytest.mark.parametrize("folder", ["noise-search", "noise-search-main"])
def test_pack_exceptions_name_no_folder(tmp_path, folder):
    """ComfyUI imports the pack under its folder path and prints ``module.qualname`` (execution.full_type_name): the
    pack's own exceptions read ``noise_search.<module>.<class>`` whatever that path is."""
    import traceback
    from execution import full_type_name
    classes = _exception_classes()
    assert {("verifiers.files", "MissingWeightsError"), ("verifiers.files", "CorruptWeightsError"),
            ("toyworld.load", "WeightsError"), ("toyworld.load", "MissingWeightsError")} <= set(classes)
    name = str(tmp_path / "custom_nodes" / folder)  # as ComfyUI's loader names a custom-node folder
    spec = importlib.util.spec_from_file_location(name, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    pack = importlib.util.module_from_spec(spec)
    sys.modules[name] = pack
    try:
        spec.loader.exec_module(pack)
        for module, cls_name in classes:
            cls = getattr(importlib.import_module(f"{name}.{module}"), cls_name)
            assert cls.__module__ != f"{name}.{module}"  # really imported under the folder's name, then renamed
            assert full_type_name(cls) == f"noise_search.{module}.{cls_name}"
        files = importlib.import_module(f"{name}.verifiers.files")
        err = files.missing_error("hpsv2", "the folder x", str(tmp_path), ["HPS_v2_compressed.pt"], "huggingface.co/xswu/HPSv2")
        line = traceback.format_exception_only(type(err), err)[-1]
        assert line.startswith("noise_search.verifiers.files.MissingWeightsError: hpsv2 verifier:") and str(tmp_path / "custom_nodes") not in line
        assert isinstance(err, FileNotFoundError) and isinstance(err, OSError)
    finally:
        for k in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[k]
    from noise_search.verifiers.files import MissingWeightsError
    assert full_type_name(MissingWeightsError) == "noise_search.verifiers.files.MissingWeightsError"
