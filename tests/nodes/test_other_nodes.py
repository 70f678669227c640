"""sCM nodes, Verifier Loader / Score, Save Image with Search Provenance."""

import json
import math

import pytest
import torch

from test_search_nodes import custom_advanced, run, search_kwargs


@pytest.mark.parametrize("which", ["sd15", "sd3"])
def test_scm_two_steps_in_sampler_custom_advanced(request, which):
    from noise_search.nodes.scm_nodes import SCMSampler, SCMSigmas
    m = request.getfixturevalue(which)
    sampler = SCMSampler.execute().result[0]
    sig = SCMSigmas.execute(model=m["model"], steps=2, t_max=0.0, t_mid=1.1, sigma_data=0.0).result[0]
    assert sig.shape == (3,) and float(sig[-1]) == 0 and float(sig[0]) > float(sig[1]) > 0
    ms = m["model"].get_model_object("model_sampling")
    if which == "sd3":  # flow space, sigma_data auto = 1: s = sin t / (sin t + cos t) (SANA-Sprint's map)
        assert abs(float(sig[1]) - math.sin(1.1) / (math.sin(1.1) + math.cos(1.1))) < 1e-6
        # an explicit sigma_data is honoured: s = sigma / (1 + sigma) with sigma = sigma_data tan t
        half = SCMSigmas.execute(model=m["model"], steps=2, t_max=0.0, t_mid=1.1, sigma_data=0.5).result[0]
        assert abs(float(half[1]) - 0.5 * math.tan(1.1) / (1 + 0.5 * math.tan(1.1))) < 1e-6
    else:  # discrete SD1.5: clipped to the table's largest sigma, t_mid snapped to the table
        assert abs(float(sig[0]) - float(ms.sigma_max)) < 1e-4
        explicit = SCMSigmas.execute(model=m["model"], steps=2, t_max=0.0, t_mid=1.1, sigma_data=0.5).result[0]
        assert torch.equal(sig, explicit)  # auto is the paper's 0.5 on EDM-type models
    a = custom_advanced(m, 11, sampler, sig)
    b = custom_advanced(m, 11, sampler, sig)
    c = custom_advanced(m, 12, sampler, sig)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_scm_sampler_as_search_generator(sd15, verifier):
    from noise_search.nodes.scm_nodes import SCMSampler, SCMSigmas
    from noise_search.nodes.search_nodes import RandomSearch
    sampler = SCMSampler.execute().result[0]
    sig = SCMSigmas.execute(model=sd15["model"], steps=2, t_max=0.0, t_mid=1.1, sigma_data=0.5).result[0]
    out = run(RandomSearch, **search_kwargs(sd15, verifier, count=4, chunk_size=4, proxy_steps=0, sampler=sampler, sigmas=sig))
    prov = json.loads(out.result[7])
    assert prov["nfe"] == 4 * 2 and prov["params"]["nfe_per_candidate"] == 2
    # the winner reproduces with SamplerCustomAdvanced + RandomNoise(seed): its re-noise is seeded by its own seed
    assert torch.equal(out.result[0]["samples"], custom_advanced(sd15, out.result[2], sampler, sig))
    # candidate 0 (rendered first, to count its model calls) also re-noises with its own seed
    first = run(RandomSearch, **search_kwargs(sd15, verifier, count=2, chunk_size=2, top_k=2, proxy_steps=0, sampler=sampler,
                                              sigmas=sig, pick=0))
    assert first.result[2] == 100 and torch.equal(first.result[0]["samples"], custom_advanced(sd15, 100, sampler, sig))
    # and batched candidates draw the same re-noise as batch-1 runs
    from noise_search.nodes.comfy_adapters import Generator, SamplingSetup
    from noise_search.search.candidates import Candidates
    from noise_search.search.noise import SeedRecipe
    setup = SamplingSetup(sd15["model"], sd15["positive"], sd15["negative"], sd15["latent"], sd15["vae"], sampler, sig, 1.0)
    gen = Generator(setup)
    with torch.inference_mode():
        both = gen(Candidates.of([SeedRecipe(3), SeedRecipe(4)], setup.shape)).extras["latent"]
    assert torch.allclose(both[1:], custom_advanced(sd15, 4, sampler, sig), atol=1e-3, rtol=0)


def test_trigflow_model_sampling(sd15):
    import comfy.model_sampling
    from noise_search.nodes.scm_nodes import TrigFlowModelSampling
    m = TrigFlowModelSampling.execute(model=sd15["model"], sigma_data=0.5, sigma_max=80.0, time_scale=1.0).result[0]
    ms = m.get_model_object("model_sampling")
    assert isinstance(ms, comfy.model_sampling.V_PREDICTION) and ms.sigma_data == 0.5
    assert abs(float(ms.sigma_max) - 80.0) < 1e-3
    t = torch.tensor([0.3, 1.1, 1.5])
    sigma = 0.5 * torch.tan(t)
    assert torch.allclose(ms.timestep(sigma), t, atol=1e-6) and torch.allclose(ms.sigma(t), sigma, atol=1e-5)
    # sCM consistency function: denoised = cos t x_t - sin t sd F, with x = x_t / cos t (ComfyUI V_PREDICTION with sigma_data = sigma_d)
    x_t, F = torch.randn(1, 4, 2, 2), torch.randn(1, 4, 2, 2)
    tt = torch.tensor(1.1)
    s = (0.5 * torch.tan(tt)).reshape(1)
    got = ms.calculate_denoised(s, F, x_t / torch.cos(tt))
    assert torch.allclose(got, torch.cos(tt) * x_t - torch.sin(tt) * 0.5 * F, atol=1e-5)
    assert torch.allclose(ms.calculate_input(s, x_t / torch.cos(tt)), x_t / 0.5, atol=1e-5)
    assert sd15["model"].get_model_object("model_sampling") is not ms  # the input model is untouched


def test_verifier_folder_listing(comfy_env, tmp_path):
    import folder_paths
    from noise_search.nodes.verifier_nodes import VerifierLoader, resolve_entry, verifier_entries
    extra = tmp_path / "more_verifiers"
    (extra / "group" / "PickScore_v1").mkdir(parents=True)
    (extra / "my_clip").mkdir()
    (extra / "my_clip" / "config.json").write_text("{}")
    folder_paths.add_model_folder_path("verifiers", str(extra))
    names = verifier_entries()
    assert {"tiny_cls.pt", "my_clip", "group/PickScore_v1"} <= set(names)
    assert resolve_entry("group/PickScore_v1") == str(extra / "group" / "PickScore_v1")
    opts = VerifierLoader.GET_NODE_INFO_V1()["input"]["required"]["name"][1]["options"]
    assert "my_clip" in opts
    with pytest.raises(FileNotFoundError, match="models/verifiers"):
        resolve_entry("nope")


def test_verifier_loader_uses_a_model_patcher(verifier):
    import comfy.model_patcher
    assert isinstance(verifier.patcher, comfy.model_patcher.ModelPatcher)
    assert verifier.describe()["kind"] == "classifier" and verifier.condition == "class"
    with pytest.raises(ValueError, match="JSON"):
        from noise_search.nodes.verifier_nodes import VerifierLoader
        VerifierLoader.execute(name="tiny_cls.pt", kind="classifier", device="cpu", dtype="fp32", options="{oops")


def test_verifier_score(verifier):
    from noise_search.nodes.verifier_nodes import VerifierScore
    g = torch.Generator().manual_seed(1)
    images = torch.rand(5, 32, 32, 3, generator=g)
    with torch.inference_mode():
        out = VerifierScore.execute(images=images, verifier=verifier, prompt="", class_id=2, top_k=3)
    scores, sorted_images, top, best, table = out.result
    assert len(scores) == 5 and sorted_images.shape == images.shape and top.shape[0] == 3
    order = sorted(range(5), key=lambda i: -scores[i])
    assert best == order[0] and torch.equal(sorted_images[0], images[order[0]])
    assert out.ui["text"] == [table] and out.ui["noise_search"][0]["top_k"] == order[:3]
    with torch.inference_mode():
        picked = VerifierScore.execute(images=images, verifier=verifier, prompt="", class_id=2, top_k=3, pick=order[2])
    assert picked.result[3] == order[2]
    with pytest.raises(ValueError, match="not among the top"):
        VerifierScore.execute(images=images, verifier=verifier, prompt="", class_id=2, top_k=3, pick=order[4])


def test_save_image_with_provenance(sd15, verifier, comfy_env):
    from PIL import Image
    from noise_search.nodes.save_nodes import SaveImageWithProvenance
    from noise_search.nodes.search_nodes import RandomSearch
    res = run(RandomSearch, **search_kwargs(sd15, verifier, count=3, proxy_steps=0)).result
    out = SaveImageWithProvenance.execute(images=res[1], filename_prefix="ns_test/img", provenance=res[7])
    f = out.ui.as_dict()["images"][0]
    img = Image.open(comfy_env["output"] / f["subfolder"] / f["filename"])
    prov = json.loads(img.text["noise_search"])
    assert prov["algorithm"] == "random" and len(prov["candidates"]) == 3
    assert all({"index", "recipe", "score", "nfe"} <= set(c) for c in prov["candidates"])
    assert prov["verifiers"]["verifiers"][0]["kind"] == "classifier" and prov["picked_by"] == "verifier"
    with pytest.raises(ValueError, match="does not parse"):
        SaveImageWithProvenance.execute(images=res[1], filename_prefix="x", provenance="{not json")


def test_verifiers_folder_registration_keeps_yaml_paths(comfy_env, tmp_path, monkeypatch):
    import os
    import folder_paths
    from noise_search.nodes.verifier_nodes import register_folder
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "verifiers", ([str(tmp_path)], set()))  # as a 'verifiers:' yaml entry
    register_folder()
    register_folder()
    paths, exts = folder_paths.folder_names_and_paths["verifiers"]
    assert paths == [str(tmp_path), os.path.join(folder_paths.models_dir, "verifiers")] and exts == set()


def test_verifier_score_ensemble_ranks_over_the_batch(verifier):
    from noise_search.nodes.verifier_nodes import VerifierScore
    from noise_search.verifiers.ensemble import ranks
    g = torch.Generator().manual_seed(2)
    images = torch.rand(4, 32, 32, 3, generator=g)
    with torch.inference_mode():
        single = VerifierScore.execute(images=images, verifier=verifier, prompt="", class_id=1, top_k=2).result[0]
        both = VerifierScore.execute(images=images, verifier=verifier, prompt="", class_id=1, top_k=2, verifier_2=verifier,
                                     ensemble="mean_rank")
    assert both.result[0] == ranks(torch.tensor(single)).tolist()  # two identical members: mean rank = rank
    assert "classifier#2" in both.result[4]


def test_verifier_loader_downloads_only_when_asked(comfy_env, monkeypatch, tmp_path):
    """download_if_missing is an explicit opt-in: off, the loader never calls the downloader; on, it fetches into the
    chosen folder first (verifiers.weights.ensure, tested against a loopback hub in tests/test_weights_download.py),
    and offline it stops with the downloader's one-line error."""
    from noise_search.nodes.verifier_nodes import VerifierLoader
    from noise_search.verifiers import weights
    folder = comfy_env["verifiers"] / "image_reward_empty"
    folder.mkdir(exist_ok=True)
    calls = []
    monkeypatch.setattr(weights, "download", lambda kind, target, **kw: calls.append((kind, target)))
    with pytest.raises(Exception, match="ImageReward.pt"):
        VerifierLoader.execute(name="image_reward_empty", kind="image_reward", device="cpu", dtype="fp32")
    assert calls == []
    with pytest.raises(Exception):  # the mocked download leaves the folder empty: the loader then names what is missing
        VerifierLoader.execute(name="image_reward_empty", kind="image_reward", device="cpu", dtype="fp32", download_if_missing=True)
    assert calls == [("image_reward", str(folder))]
    monkeypatch.undo()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(Exception, match="HF_HUB_OFFLINE"):
        VerifierLoader.execute(name="image_reward_empty", kind="image_reward", device="cpu", dtype="fp32", download_if_missing=True)
