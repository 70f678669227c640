"""Every node's schema: stable ids with the pack suffix, one category tree, descriptions and a tooltip
on every input and output."""

import asyncio

import pytest

EXPECTED = {
    "NoiseCandidatePool_NoiseSearch": "noise-search/noise",
    "VerifierLoader_NoiseSearch": "noise-search/verifiers",
    "VerifierScore_NoiseSearch": "noise-search/verifiers",
    "RandomSearch_NoiseSearch": "noise-search/search",
    "ZeroOrderSearch_NoiseSearch": "noise-search/search",
    "PathSearch_NoiseSearch": "noise-search/search",
    "FKSteering_NoiseSearch": "noise-search/search",
    "EvolutionarySearch_NoiseSearch": "noise-search/search",
    "EarlyPruning_NoiseSearch": "noise-search/search",
    "SCMSampler_NoiseSearch": "noise-search/samplers",
    "SCMSigmas_NoiseSearch": "noise-search/samplers",
    "TrigFlowModelSampling_NoiseSearch": "noise-search/samplers",
    "SaveImageWithProvenance_NoiseSearch": "noise-search",
}


@pytest.fixture(scope="module")
def node_list(nodes_mod):
    ext = asyncio.run(nodes_mod.comfy_entrypoint())
    return asyncio.run(ext.get_node_list())


def test_ids_and_categories(node_list):
    infos = {n.GET_NODE_INFO_V1()["name"]: n.GET_NODE_INFO_V1() for n in node_list}
    assert {k: v["category"] for k, v in infos.items()} == EXPECTED


@pytest.mark.parametrize("node_id", sorted(EXPECTED))
def test_tooltips_everywhere(node_list, node_id):
    node = next(n for n in node_list if n.GET_NODE_INFO_V1()["name"] == node_id)
    info = node.GET_NODE_INFO_V1()
    assert info["display_name"] and len(info["description"]) > 40
    for group in ("required", "optional"):
        for name, (_, opts) in info["input"].get(group, {}).items():
            assert opts.get("tooltip"), f"{node_id}: input {name} has no tooltip"
    assert all(info["output_tooltips"]), f"{node_id}: outputs without tooltip: {info['output_name']}"
    schema = node.GET_SCHEMA()
    schema.validate()


def test_search_nodes_share_inputs(node_list):
    infos = {n.GET_NODE_INFO_V1()["name"]: n.GET_NODE_INFO_V1() for n in node_list}
    shared = ["model", "positive", "negative", "latent_image", "vae", "verifier", "verifier_prompt", "class_id", "seed",
              "sampler_name", "scheduler", "steps", "cfg", "denoise", "budget", "chunk_size", "top_k"]
    optional = ["sampler", "sigmas", "verifier_2", "verifier_3", "ensemble", "pick"]
    for nid in ("RandomSearch_NoiseSearch", "ZeroOrderSearch_NoiseSearch", "PathSearch_NoiseSearch", "FKSteering_NoiseSearch",
                "EvolutionarySearch_NoiseSearch", "EarlyPruning_NoiseSearch"):
        req, opt = infos[nid]["input"]["required"], infos[nid]["input"]["optional"]
        assert all(k in req for k in shared), nid
        assert all(k in opt for k in optional), nid
        assert infos[nid]["output"] == ["LATENT", "IMAGE", "INT", "STRING", "IMAGE", "STRING", "IMAGE", "STRING"]
    assert "proxy_steps" in infos["RandomSearch_NoiseSearch"]["input"]["required"]
    assert "proxy_steps" not in infos["PathSearch_NoiseSearch"]["input"]["required"]
    assert "proxy_steps" in infos["EvolutionarySearch_NoiseSearch"]["input"]["required"]
    assert not {"FKSteering_NoiseSearch", "EarlyPruning_NoiseSearch"} & {n for n in infos if "proxy_steps" in infos[n]["input"]["required"]}


def test_seed_inputs_control_after_generate(node_list):
    for n in node_list:
        info = n.GET_NODE_INFO_V1()
        seed = info["input"]["required"].get("seed")
        if seed:
            assert seed[1].get("control_after_generate") is True, info["name"]


def test_sampler_combo_is_comfys(node_list):
    import comfy.samplers
    info = next(n for n in node_list if n.GET_NODE_INFO_V1()["name"] == "RandomSearch_NoiseSearch").GET_NODE_INFO_V1()
    assert info["input"]["required"]["sampler_name"][1]["options"] == comfy.samplers.KSampler.SAMPLERS
    assert info["input"]["required"]["scheduler"][1]["options"] == comfy.samplers.KSampler.SCHEDULERS


GOLDEN = __import__("pathlib").Path(__file__).with_name("golden_schema.json")


def _signature(info):
    ins = {g: [[k, v[0] if isinstance(v[0], str) else "COMBO"] for k, v in info["input"].get(g, {}).items()]
           for g in ("required", "optional")}
    return {"display_name": info["display_name"], "category": info["category"], "inputs": ins,
            "outputs": [[n, t] for n, t in zip(info["output_name"], info["output"])], "output_node": info["output_node"]}


def test_golden_schema(node_list):
    """Saved workflows address inputs by name and outputs by position: renaming, re-typing or re-ordering them
    breaks users' graphs. Change deliberately: NOISE_SEARCH_WRITE_GOLDEN=1 rewrites tests/nodes/golden_schema.json."""
    import json
    import os
    got = {n.GET_NODE_INFO_V1()["name"]: _signature(n.GET_NODE_INFO_V1()) for n in node_list}
    if os.environ.get("NOISE_SEARCH_WRITE_GOLDEN") == "1":
        GOLDEN.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    assert got == json.loads(GOLDEN.read_text())
