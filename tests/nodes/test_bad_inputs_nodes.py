"""Node-layer rows of docs/bad-inputs.md (N..): what a ComfyUI user gets for a bad input, executed
in-process against the real host (skipped without COMFYUI_PATH, see conftest.py).

ComfyUI validates widget ranges (min/max) before a node runs; these cases call ``execute`` directly,
as an API prompt or another node pack could, and check that the node or the core still refuses the
input with a message that names it and its valid range.
"""

import pytest
import torch


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


NODE_CASES = {
    "N01": (lambda m, v: random_search(m, v, latent_image={"samples": torch.zeros(2, 4, 8, 8)}), ValueError,
            ["batch-1 LATENT", "got batch 2", "Latent From Batch"]),
    "N02": (lambda m, v: random_search(m, v, class_id=-1), ValueError, ["classifier verifier scores a class", "set class_id (>= 0)"]),
    "N03": (lambda m, v: random_search(m, v, count=3, top_k=5), ValueError, ["top_k 5 is larger than the 3 candidates", "[1, 3]"]),
    "N04": (lambda m, v: random_search(m, v, pick=99), ValueError, ["pick=99 is not among the kept top-3 candidates", "set pick to -1"]),
    "N05": (lambda m, v: load(name="no_such_verifier"), FileNotFoundError,
            ["verifier 'no_such_verifier' not found in", "models/verifiers", "extra_model_paths.yaml"]),
    "N06": (lambda m, v: load(options="{num_classes: 10"), ValueError, ["options must be a JSON object", "{\"num_classes\": 10}"]),
    "N07": (lambda m, v: paths(m, v, sampler_name="euler_ancestral"), ValueError,
            ["Search over Paths needs a deterministic (ODE) sampler", "euler, heun"]),
    "N08": (lambda m, v: random_search(m, v, sigmas=torch.tensor([1.0])), ValueError, ["SIGMAS must hold at least 2 values (steps + 1)", "(1,)"]),
    "N09": (lambda m, v: random_search(m, v, count=0, budget=0), ValueError, ["give count (an integer >= 1) or an NFE budget"]),
    "N10": (lambda m, v: zero_order(m, v, lambda_=1.0), ValueError, ["lambda", "(0, 1)", "got 1.0"]),
    "N11": (lambda m, v: paths(m, v, delta_f=2, delta_b=2, start_step=2), ValueError, ["delta_b > delta_f", "delta_b=2, delta_f=2"]),
}


@pytest.mark.parametrize("case", sorted(NODE_CASES))
def test_node_bad_input(case, sd15, verifier):
    call, err_type, must = NODE_CASES[case]
    with pytest.raises(err_type) as info:
        call(sd15, verifier)
    msg = str(info.value)
    missing = [s for s in must if s not in msg]
    assert not missing, f"{case}: message {msg!r} lacks {missing}"
