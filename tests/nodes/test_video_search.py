"""Video search on the tiny Wan 2.1 text-to-video family (tests/nodes/tiny_families.py), loaded by ComfyUI's own
UNETLoader + CLIPLoader + VAELoader: 5-frame 64x64 videos (latent 1x16x2x8x8)."""

import json

import pytest

from host_harness import snapshot, written_since
import torch

FRAMES = 5


@pytest.fixture(scope="module")
def wan(tiny_family):
    return tiny_family("wan21_t2v")


def kwargs(m, verifier, **kw):
    base = dict(model=m["model"], positive=m["positive"], negative=m["negative"], latent_image=m["latent"], vae=m["vae"],
                verifier=verifier, verifier_prompt="", class_id=3, seed=7, sampler_name="euler", scheduler="simple",
                steps=2, cfg=1.0, denoise=1.0, budget=0, chunk_size=3, top_k=3, count=3, proxy_steps=0)
    base.update(kw)
    return base


def run(node, **kw):
    with torch.inference_mode():
        return node.execute(**kw)


class CountingVAE:
    """The family's VAE, recording the batch of every decode call."""

    def __init__(self, vae):
        self.vae, self.batches = vae, []

    def decode(self, samples, *a, **k):
        self.batches.append(int(samples.shape[0]))
        return self.vae.decode(samples, *a, **k)

    def __getattr__(self, name):
        return getattr(self.vae, name)


def test_random_search_on_wan_outputs_frames_strips_and_provenance(wan, verifier):
    from noise_search.nodes.search_nodes import RandomSearch
    vae = CountingVAE(wan["vae"])
    out = run(RandomSearch, **kwargs(wan, verifier, vae=vae))
    latent, image, seed, recipe, topk, table, plot, prov = out.result
    p = json.loads(prov)
    assert latent["samples"].shape == (1, 16, 2, 8, 8)
    assert image.shape == (FRAMES, 64, 64, 3)  # the winner's frames: an IMAGE batch for SaveAnimatedWEBP / CreateVideo
    assert topk.shape == (3, 64, 3 * 64, 3)  # each kept candidate's keyframes 0, 2, 4 side by side
    assert p["algorithm"] == "random" and len(p["candidates"]) == 3 and p["nfe"] == 3 * 2
    assert p["sampling"]["video"] == {"frames": "keyframes", "aggregate": "mean", "num_frames": FRAMES, "scored_frames": [0, 2, 4]}
    assert p["verifiers"]["video"]["scored_frames"] == [0, 2, 4]
    assert "random search: 3 candidates" in table
    # memory: the VAE decodes one candidate at a time, once per candidate (plus the winner's final render unless kept exact)
    assert set(vae.batches) == {1}
    assert len(vae.batches) == 3 + (p["output_index"] != 0)
    # the winner's frames are exactly its kept latent decoded, and the strip holds its keyframes
    with torch.inference_mode():
        frames = wan["vae"].decode(latent["samples"])
    assert torch.equal(image, frames.reshape(-1, 64, 64, 3).float().cpu())
    # (the kept top-K were sampled in a chunk: equal to the batch-1 render up to float rounding)
    assert torch.allclose(topk[0, :, 64:128], image[2], atol=1e-3)


def test_the_winner_reproduces_in_ksampler_with_its_seed(wan, verifier):
    import nodes
    from noise_search.nodes.search_nodes import RandomSearch
    out = run(RandomSearch, **kwargs(wan, verifier, chunk_size=2, cfg=2.0))
    latent, seed = out.result[0]["samples"], out.result[2]
    with torch.inference_mode():
        ref = nodes.common_ksampler(wan["model"], seed, 2, 2.0, "euler", "simple", wan["positive"], wan["negative"], wan["latent"])[0]
    assert torch.equal(latent, ref["samples"])


def test_every_k_and_min_are_recorded_and_min_is_the_worst_frame(wan, verifier):
    from noise_search.nodes.search_nodes import RandomSearch
    mean = json.loads(run(RandomSearch, **kwargs(wan, verifier, video_frames="every_k", video_every_k=2)).result[7])
    worst = json.loads(run(RandomSearch, **kwargs(wan, verifier, video_frames="every_k", video_every_k=2,
                                                  video_aggregate="min")).result[7])
    assert worst["sampling"]["video"] == {"frames": "every_k", "aggregate": "min", "every_k": 2, "num_frames": FRAMES,
                                          "scored_frames": [0, 2, 4]}
    assert mean["sampling"]["video"]["aggregate"] == "mean"
    for a, b in zip(mean["candidates"], worst["candidates"]):
        assert a["recipe"] == b["recipe"] and b["score"] <= a["score"] + 1e-6


def test_zero_order_and_path_search_run_on_video(wan, verifier):
    from noise_search.nodes.search_nodes import PathSearch, ZeroOrderSearch
    zo = run(ZeroOrderSearch, **kwargs(wan, verifier, neighbours=2, iterations=1, lambda_=0.9, score_pivot=False, top_k=2,
                                       video_frames="list", video_frame_list="-1"))
    assert zo.result[1].shape == (FRAMES, 64, 64, 3) and zo.result[4].shape == (2, 64, 64, 3)  # one scored frame: the last
    assert json.loads(zo.result[7])["sampling"]["video"]["scored_frames"] == [4]
    kw = kwargs(wan, verifier, steps=3, paths=1, width=2, start_step=1, delta_f=1, delta_b=2, top_k=1)
    kw.pop("count"), kw.pop("proxy_steps")
    paths = run(PathSearch, **kw)
    assert paths.result[1].shape == (FRAMES, 64, 64, 3) and paths.result[0]["samples"].shape == (1, 16, 2, 8, 8)


def test_the_self_supervised_verifier_scores_videos_per_frame(wan):
    from noise_search.nodes.search_nodes import RandomSearch
    from noise_search.nodes.types import HostVerifier
    from noise_search.verifiers.features import SelfSupervisedVerifier
    seen = []

    def features(images):
        seen.append(tuple(images.shape))
        return images.flatten(1)
    v = HostVerifier(SelfSupervisedVerifier(features), kind="self_supervised")
    p = json.loads(run(RandomSearch, **kwargs(wan, v, steps=20, count=2, top_k=2, chunk_size=2, video_aggregate="min")).result[7])
    assert len({c["score"] for c in p["candidates"]}) == 2 and all(-1 <= c["score"] <= 1 for c in p["candidates"])
    assert all(s[0] % 3 == 0 and s[1:] == (64, 64, 3) for s in seen)  # keyframes of early and final, frame by frame
    assert p["sampling"]["video"]["aggregate"] == "min" and p["early_time"] is not None


@pytest.fixture
def no_sampling(monkeypatch):
    import comfy.sample

    def boom(*a, **k):
        raise AssertionError("sampled before refusing the input")
    monkeypatch.setattr(comfy.sample, "sample_custom", boom)


@pytest.mark.parametrize("case,match", [
    ("image_vae", r"^vae: an image VAE with a video model \(WAN21_T2V\)"),
    ("image_latent", r"^latent_image: an image latent \[1, 16, 8, 8\] for a video model"),
    ("frame_past_end", r"^video_frame_list: frame 5 is past the end of the 5-frame video"),
    ("every_k_past_end", r"^video_every_k 5 is past the end of the 5-frame video"),
    ("bad_aggregate", r"video_aggregate"),
])
def test_bad_video_inputs_are_refused_before_sampling(wan, sd15, verifier, no_sampling, case, match):
    from noise_search.nodes.search_nodes import RandomSearch
    kw = {"image_vae": dict(vae=sd15["vae"]), "image_latent": dict(latent_image={"samples": torch.zeros(1, 16, 8, 8)}),
          "frame_past_end": dict(video_frames="list", video_frame_list="0, 5"),
          "every_k_past_end": dict(video_frames="every_k", video_every_k=5),
          "bad_aggregate": dict(video_aggregate="median")}[case]
    with pytest.raises(ValueError, match=match) as err:
        run(RandomSearch, **kwargs(wan, verifier, **kw))
    assert "\n" not in str(err.value)


def test_a_video_vae_or_latent_with_an_image_model_is_refused(wan, sd15, verifier, no_sampling):
    from noise_search.nodes.search_nodes import RandomSearch
    with pytest.raises(ValueError, match=r"^vae: a video VAE with an image model"):
        run(RandomSearch, **kwargs(sd15, verifier, vae=wan["vae"]))
    with pytest.raises(ValueError, match=r"^latent_image: a video latent \[1, 4, 2, 8, 8\] for an image model"):
        run(RandomSearch, **kwargs(sd15, verifier, latent_image={"samples": torch.zeros(1, 4, 2, 8, 8)}))


def test_progress_per_candidate_and_cancel_saves_the_best_frames(wan, verifier, comfy_env, monkeypatch):
    """A video chunk is decoded one candidate at a time: the bar advances (with a preview) per candidate, and each
    decode is an interruption point; a cancel there saves the best so far's frames and summary."""
    import comfy.model_management as mm
    import comfy.utils
    from noise_search.nodes.search_nodes import RandomSearch
    seen = []
    monkeypatch.setattr(comfy.utils, "PROGRESS_BAR_HOOK", lambda v, t, p, node_id=None: seen.append((v, t)))
    run(RandomSearch, **kwargs(wan, verifier, count=4, chunk_size=2))
    values = [v for v, t in seen if t == 4]
    assert values[0] == 2 and 3 in values and values.index(3) < values.index(4)  # candidate 2 decoded: 3 of 4

    class Interrupting(CountingVAE):
        def decode(self, samples, *a, **k):
            out = super().decode(samples, *a, **k)
            if len(self.batches) == 2:  # candidate 1 (candidate 0 was the calibration's, reused)
                mm.interrupt_current_processing(True)
            return out
    before = snapshot(comfy_env["temp"] / "noise_search", "partial_*")
    try:
        with pytest.raises(mm.InterruptProcessingException):
            run(RandomSearch, **kwargs(wan, verifier, vae=Interrupting(wan["vae"]), count=4, chunk_size=1, seed=11))
    finally:
        mm.interrupt_current_processing(False)
    new = written_since(comfy_env["temp"] / "noise_search", "partial_*", before)
    summary = [f for f in new if f.suffix == ".json"]
    assert len(summary) == 1 and len(json.loads(summary[0].read_text())["candidates"]) == 1
    assert len([f for f in new if f.suffix == ".png"]) == FRAMES  # the best so far: all its frames
