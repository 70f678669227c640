"""Every verifier on tiny random models saved with save_pretrained and loaded back offline through the registry;
scores checked against direct computations with the same transformers modules."""

import os
import sys

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "fixtures"))
import verifiers_support as S  # noqa: E402

from noise_search.verifiers import load_verifier  # noqa: E402
from noise_search.verifiers.base import ImagePreprocess  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    yield from S.one_thread()

PROMPTS = ["a photo of a cat", "a dog", "a photo of a cat"]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip")
    model, tok = S.save_tiny_clip(str(folder))
    return folder, model, tok


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(0)
    return torch.rand(3, 40, 56, 3)


def direct_clip(model, tok, images, prompts, size=32):
    px = ImagePreprocess(size)(images)
    with torch.no_grad():
        i = F.normalize(model.visual_projection(model.vision_model(pixel_values=px).pooler_output), dim=-1)
        t = tok(prompts, padding=True, return_tensors="pt")
        t = F.normalize(model.text_projection(model.text_model(**t).pooler_output), dim=-1)
    return i, t


def test_clip_score_is_raw_cosine_and_caches_prompts(clip_dir, images):
    folder, model, tok = clip_dir
    v = load_verifier("clip_score", folder)
    assert v.describe() == {"name": "clip_score", "weights": str(folder), "device": "cpu", "dtype": "float32", "condition": "prompt",
                            "needs_early": False}
    i, t = direct_clip(model, tok, images, PROMPTS)
    got = v.score(images, PROMPTS)
    assert (got - (i * t).sum(-1)).abs().max() < 1e-5
    assert got.abs().max() <= 1.0
    assert len(v.cache) == 2 and v.cache.misses == 2 and v.cache.hits == 1  # 2 distinct prompts embedded once
    v.score(images, "a dog")
    assert v.cache.misses == 2 and v.cache.hits == 4
    # padding within a batch of prompts does not change an embedding (causal mask, EOS pooling)
    alone = v.encode_texts(["a photo of a cat"])
    assert (alone - v.encode_texts(["a photo of a cat", "a"])[:1]).abs().max() < 1e-5


def test_cache_is_lru_and_bounded(clip_dir, images):
    folder, _, _ = clip_dir
    v = load_verifier("clip_score", folder, cache_size=2)
    v.score(images[:1], "a")
    v.score(images[:1], "b")
    v.score(images[:1], "a")  # refresh a
    v.score(images[:1], "c")  # evicts b
    assert list(v.cache.data) == ["a", "c"]
    off = load_verifier("clip_score", folder, cache_size=0)
    assert torch.equal(off.score(images, PROMPTS), v.score(images, PROMPTS)) and len(off.cache) == 0


def test_pick_score_is_logit_scale_times_cosine(clip_dir, images):
    folder, model, tok = clip_dir
    v = load_verifier("pick_score", folder)
    i, t = direct_clip(model, tok, images, PROMPTS)
    expected = model.logit_scale.exp().item() * (i * t).sum(-1)
    assert (v.score(images, PROMPTS) - expected).abs().max() < 1e-4
    assert v.logit_scale() == pytest.approx(1 / 0.07, rel=1e-4)


def test_preprocessor_config_sets_crop_and_normalisation(tmp_path, clip_dir, images):
    folder, model, tok = clip_dir
    import shutil

    d = tmp_path / "clip_pp"
    shutil.copytree(folder, d)
    S.write_json(d / "preprocessor_config.json", {"crop_size": {"height": 32, "width": 32}, "size": {"shortest_edge": 40},
                                                   "image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25]})
    v = load_verifier("clip_score", d)
    assert (v.preprocess.crop, v.preprocess.resize, v.preprocess.mean, v.preprocess.std) == (32, 40, (0.5,) * 3, (0.25,) * 3)
    px = v.preprocess(torch.full((1, 80, 120, 3), 0.75))
    # 0.75 is 191 in 8 bits (SaveImage truncates), as the original pipeline reads the saved PNG
    assert px.shape == (1, 3, 32, 32) and torch.allclose(px, torch.full_like(px, (191 / 255 - 0.5) / 0.25), atol=1e-5)


def test_clip_zero_shot_logit_of_class(tmp_path, clip_dir, images):
    folder, model, tok = clip_dir
    names = ["cat", "dog", "red car"]
    templates = ["a photo of a {}.", "a drawing of a {}."]
    v = load_verifier("clip_zero_shot", folder, class_names=names, templates=templates)
    assert v.condition == "class" and v.num_classes == 3
    i, _ = direct_clip(model, tok, images, ["x"])
    cls = []
    for n in names:
        _, t = direct_clip(model, tok, images[:1], [tp.format(n) for tp in templates])
        cls.append(F.normalize(t.mean(0), dim=-1))
    logits = model.logit_scale.exp().item() * i @ torch.stack(cls).T
    got = v.score(images, [0, 2, 1])
    assert (got - logits[torch.arange(3), torch.tensor([0, 2, 1])]).abs().max() < 1e-4
    assert sorted(v.cache.data) == [0, 1, 2]  # one embedding per class id, computed once
    lp = load_verifier("clip_zero_shot", folder, class_names=names, templates=templates, output="log_prob").score(images, 1)
    assert (lp - logits.log_softmax(-1)[:, 1]).abs().max() < 1e-4
    with pytest.raises(ValueError, match=r"class id must be an integer in \[0, 2\], got 3"):
        v.score(images, 3)
    # class names from a file in the folder; default: the 1000 ImageNet names and 80 templates
    assert load_verifier("clip_zero_shot", folder).num_classes == 1000
    assert len(load_verifier("clip_zero_shot", folder).templates) == 80


def test_aesthetic_mlp_on_normalised_embedding(tmp_path, clip_dir, images):
    from noise_search.verifiers.clip import AESTHETIC_FILE, RewardMLP

    folder, model, tok = clip_dir
    d = tmp_path / "aesthetic"
    d.mkdir()
    import shutil

    shutil.copytree(folder, d / "clip")
    torch.manual_seed(5)
    mlp = RewardMLP(16).eval()
    torch.save(mlp.state_dict(), d / AESTHETIC_FILE)
    v = load_verifier("aesthetic", d)
    assert v.condition is None
    i, _ = direct_clip(model, tok, images, ["x"])
    with torch.no_grad():
        expected = mlp(i).flatten()
    got = v.score(images)
    assert (got - expected).abs().max() < 1e-5
    assert torch.equal(v.score(images, PROMPTS), got)  # prompts are ignored


@pytest.fixture(scope="module")
def dino_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dino")
    model = S.save_tiny_dino(str(folder))
    return folder, model


def test_dino_linear_head_layouts(tmp_path, dino_dir, images):
    import shutil

    folder, model = dino_dir
    pre = ImagePreprocess(224, 256, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    with torch.no_grad():
        out = model(pixel_values=pre(images), output_hidden_states=True)
    last = out.last_hidden_state
    feats = {
        "linear": torch.cat([last[:, 0], last[:, 1:].mean(1)], -1),
        "linear4": torch.cat([model.layernorm(h)[:, 0] for h in out.hidden_states[-4:]] + [last[:, 1:].mean(1)], -1),
        "cls": last[:, 0],
    }
    for kind, f in feats.items():
        d = tmp_path / kind
        shutil.copytree(folder, d)
        torch.manual_seed(1)
        head = torch.nn.Linear(f.shape[1], 10)
        torch.save(head.state_dict(), d / f"dinov2_tiny_{kind}_head.pth")
        v = load_verifier("dino_linear", d)
        with torch.no_grad():
            expected = head(f)[torch.arange(3), torch.tensor([4, 0, 9])]
        assert (v.score(images, [4, 0, 9]) - expected).abs().max() < 1e-5, kind


def test_self_supervised_dino_and_clip(dino_dir, clip_dir, images):
    folder, model = dino_dir
    v = load_verifier("self_supervised", folder)
    assert v.needs_early and v.condition is None
    early = images.flip(1)
    pre = ImagePreprocess(224, 256, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    with torch.no_grad():
        fe, fi = model(pixel_values=pre(early)).pooler_output, model(pixel_values=pre(images)).pooler_output
    assert (v.score(images, None, early) - F.cosine_similarity(fe, fi)).abs().max() < 1e-5
    assert torch.allclose(v.score(images, None, images), torch.ones(3), atol=1e-5)
    with pytest.raises(ValueError, match="needs the early x0 prediction"):
        v.score(images)
    cfolder, cmodel, tok = clip_dir
    vc = load_verifier("self_supervised", cfolder)
    i1, _ = direct_clip(cmodel, tok, images, ["x"])
    i2, _ = direct_clip(cmodel, tok, early, ["x"])
    assert (vc.score(images, None, early) - (i1 * i2).sum(-1)).abs().max() < 1e-5


def test_classifier_from_transformers_folder(tmp_path, images):
    from transformers import Dinov2Config, Dinov2ForImageClassification

    torch.manual_seed(0)
    m = Dinov2ForImageClassification(Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, mlp_ratio=2, image_size=32,
                                                  patch_size=8, num_labels=5)).eval()
    m.save_pretrained(tmp_path)
    v = load_verifier("classifier", tmp_path, size=32)
    assert v.num_classes == 5
    with torch.no_grad():
        logits = m(pixel_values=v.preprocess(images)).logits
    assert (v.score(images, [1, 2, 4]) - logits[torch.arange(3), torch.tensor([1, 2, 4])]).abs().max() < 1e-5
    assert v.preprocess.crop == 32


def test_classifier_from_exported_program(tmp_path, images):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 4)).eval()
    batch = torch.export.Dim("batch", min=1, max=64)
    torch.export.save(torch.export.export(net, (torch.rand(2, 3, 16, 16),), dynamic_shapes=({0: batch},)), tmp_path / "net.pt2")
    v = load_verifier("classifier", tmp_path / "net.pt2", num_classes=4, size=16, resize=16)
    with torch.no_grad():
        expected = net(v.preprocess(images))[:, 3]
    assert (v.score(images, 3) - expected).abs().max() < 1e-6


def test_bfloat16_dtype_runs(clip_dir, images):
    folder, _, _ = clip_dir
    v = load_verifier("clip_score", folder, dtype="bfloat16")
    ref = load_verifier("clip_score", folder).score(images, PROMPTS)
    got = v.score(images, PROMPTS)
    assert got.dtype == torch.float32 and v.describe()["dtype"] == "bfloat16"
    assert (got - ref).abs().max() < 0.05


def test_vlm_grader_yes_probability(tmp_path, images):
    model, tok, ip = S.save_tiny_qwen2vl(str(tmp_path))
    v = load_verifier("vlm_grader", tmp_path)
    assert v.condition == "prompt" and v.yes_ids == [tok.encode("Yes", add_special_tokens=False)[0], tok.encode("yes", add_special_tokens=False)[0]]
    text = v.text_for("a cat")
    assert text.endswith("Does this image show a cat? Answer yes or no.<|im_end|>\n<|im_start|>assistant\n")
    from noise_search.verifiers.vlm import to_pil

    # by hand: expand the image token, mark it in mm_token_type_ids, read the last position's logits
    vis = ip(images=to_pil(images[:1]), return_tensors="pt")
    n = int(vis["image_grid_thw"].prod()) // 4
    ids = tok(text.replace("<|image_pad|>", "<|image_pad|>" * n), return_tensors="pt")
    mm = (ids["input_ids"] == model.config.image_token_id).int()
    with torch.no_grad():
        lt = model(**ids, mm_token_type_ids=mm, **vis).logits[0, -1]
    expected = torch.sigmoid(lt[v.yes_ids].logsumexp(-1) - lt[v.no_ids].logsumexp(-1))
    one = v.score(images[:1], "a cat")
    assert (one - expected).abs().max() < 1e-5 and 0 < float(one) < 1
    # in a batch with a longer prompt (padding) the score is unchanged
    both = v.score(images[:2], ["a cat", "a very much longer prompt about a dog"])
    assert (both[0] - one[0]).abs() < 1e-4
