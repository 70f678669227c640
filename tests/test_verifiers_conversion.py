"""HPSv2 (open_clip ViT -> CLIPModel) and ImageReward (BLIP -> BlipForImageTextRetrieval) conversions, checked
against independent re-implementations of the published module structures on random weights, saved in the
published file formats (``{'state_dict': ...}`` .pt; plain ImageReward.pt + med_config.json + vocab.txt)."""

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "fixtures"))
import verifiers_support as S  # noqa: E402

from noise_search.verifiers import load_verifier  # noqa: E402
from noise_search.verifiers.clip import convert_open_clip_state_dict, vit_h14_config  # noqa: E402
from noise_search.verifiers.imagereward import MAX_LENGTH, convert_image_reward_state_dict  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    yield from S.one_thread()

PROMPTS = ["a photo of a cat", "a red dog on the blue cat", "cat"]


@pytest.fixture(scope="module")
def hps_folder(tmp_path_factory):
    tok = S.synthetic_clip_tokenizer()
    torch.manual_seed(0)
    ref = S.randomize_(S.RefOpenCLIP(len(tok)), seed=1).eval()
    folder = tmp_path_factory.mktemp("hps")
    torch.save({"state_dict": ref.state_dict()}, folder / "HPS_v2_compressed.pt")
    torch.save({"state_dict": {"module." + k: v for k, v in ref.state_dict().items()}}, folder / "HPS_v2.1_compressed.pt")
    tok.save_pretrained(folder / "tokenizer")
    return folder, ref, tok


def test_open_clip_key_map_is_complete_and_shapes_match(hps_folder):
    from transformers import CLIPModel

    _, ref, _ = hps_folder
    sd = ref.state_dict()
    hf = convert_open_clip_state_dict(sd)
    from noise_search.verifiers.clip import clip_config_from_open_clip

    model = CLIPModel(clip_config_from_open_clip(sd, vision_heads=3, text_heads=2))
    target = {k: v.shape for k, v in model.state_dict().items() if not k.endswith("position_ids")}
    assert set(hf) == set(target)
    assert all(tuple(hf[k].shape) == tuple(target[k]) for k in hf)
    # every source tensor is used: parameter count is preserved exactly
    assert sum(v.numel() for v in hf.values()) == sum(v.numel() for v in sd.values())


def test_hpsv2_conversion_matches_open_clip_reference(hps_folder):
    folder, ref, tok = hps_folder
    v = load_verifier("hpsv2", folder, vision_heads=3, text_heads=2)
    assert v.name == "hpsv2" and v.weights_id.endswith("HPS_v2_compressed.pt")
    torch.manual_seed(2)
    images = torch.rand(3, 40, 52, 3)
    pixels = v.preprocess(images)
    assert pixels.shape == (3, 3, 32, 32)
    with torch.no_grad():
        ri = torch.nn.functional.normalize(ref.encode_image(pixels), dim=-1)
        rt = torch.nn.functional.normalize(ref.encode_text(ref.tokenize(tok, PROMPTS)), dim=-1)
        hi = v.image_embeds(images)
        ht = v.text_embeds(PROMPTS)
    assert (hi - ri).abs().max() < 2e-6
    assert (ht - rt).abs().max() < 2e-6
    expected = (ri * rt).sum(-1)
    got = v.score(images, PROMPTS)
    assert got.dtype == torch.float32 and got.shape == (3,)
    assert (got - expected).abs().max() < 2e-6
    assert v.model.logit_scale.item() == pytest.approx(ref.logit_scale.item(), abs=0)


def test_hpsv21_reads_module_prefixed_checkpoint_and_pads_to_square(hps_folder):
    folder, ref, tok = hps_folder
    v2 = load_verifier("hpsv2", folder, vision_heads=3, text_heads=2)
    v21 = load_verifier("hpsv2.1", folder / "HPS_v2.1_compressed.pt", vision_heads=3, text_heads=2)
    assert v21.name == "hpsv2.1"
    img = torch.rand(2, 16, 32, 3)
    assert torch.equal(v2.score(img, "a cat"), v21.score(img, "a cat"))
    # HPSv2's transform pads (ResizeMaxSize): a 16x32 image keeps its aspect, 8 rows of padding each side
    px = v2.preprocess(img)
    mean = torch.tensor(v2.preprocess.mean).view(3, 1, 1)
    std = torch.tensor(v2.preprocess.std).view(3, 1, 1)
    pad = (0 - mean) / std
    assert torch.allclose(px[0, :, :8, :], pad.expand(3, 8, 32)) and torch.allclose(px[0, :, 24:, :], pad.expand(3, 8, 32))


def test_vit_h14_config_matches_published_shapes():
    c = vit_h14_config()
    v, t = c.vision_config, c.text_config
    assert (v.hidden_size, v.num_hidden_layers, v.num_attention_heads, v.intermediate_size, v.patch_size, v.image_size) == (1280, 32, 16, 5120, 14, 224)
    assert (t.hidden_size, t.num_hidden_layers, t.num_attention_heads, t.intermediate_size, t.vocab_size, t.max_position_embeddings) == (1024, 24, 16, 4096, 49408, 77)
    assert c.projection_dim == 1024 and v.hidden_act == "gelu" and t.eos_token_id == 49407


@pytest.fixture(scope="module")
def ir_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imagereward")
    vocab = S.synthetic_bert_vocab(str(folder / "vocab_src.txt"))  # the real vocab is tested in test_verifiers_real
    with open(vocab, encoding="utf-8") as f:
        n = sum(1 for _ in f)
    (folder / "vocab.txt").write_text(open(vocab, encoding="utf-8").read(), encoding="utf-8")
    med = S.tiny_med_config(n + 2)
    S.write_json(folder / "med_config.json", med)
    torch.manual_seed(0)
    ref = S.randomize_(S.RefImageReward(n + 2, med), seed=3).eval()
    torch.save(ref.state_dict(), folder / "ImageReward.pt")
    return folder, ref


def test_image_reward_key_conversion(ir_folder):
    _, ref = ir_folder
    sd = ref.state_dict()
    assert "blip.text_encoder.embeddings.position_ids" in sd  # the original keeps this buffer
    blip, head = convert_image_reward_state_dict(sd)
    assert sorted(head) == [f"layers.{i}.{p}" for i in (0, 2, 4, 6, 7) for p in ("bias", "weight")]
    assert "vision_model.embeddings.class_embedding" in blip and "vision_model.post_layernorm.weight" in blip
    assert "vision_model.encoder.layers.1.self_attn.qkv.weight" in blip and "vision_model.encoder.layers.1.self_attn.projection.bias" in blip
    assert "vision_model.encoder.layers.0.layer_norm2.bias" in blip and "text_encoder.encoder.layer.1.crossattention.self.key.weight" in blip
    assert not any(k.startswith(("blip.", "visual_encoder.")) for k in blip) and "text_encoder.embeddings.position_ids" not in blip
    assert len(blip) + len(head) == len(sd) - 1


def test_image_reward_matches_blip_reference(ir_folder):
    folder, ref = ir_folder
    v = load_verifier("image_reward", folder, vision_heads=3)
    torch.manual_seed(4)
    images = torch.rand(3, 48, 40, 3)
    ids, mask = v.tokenize(PROMPTS)
    assert ids.shape == (3, MAX_LENGTH) and int(mask[2].sum()) < int(mask[1].sum())
    with torch.no_grad():
        expected = ref.score(v.preprocess(images), ids, mask)
    got = v.score(images, PROMPTS)
    assert got.shape == (3,) and torch.allclose(got, expected, rtol=1e-5, atol=1e-5), (got, expected)
    assert got.abs().min() > 0.01  # the reward is not trivially ~0
    # batching and the token cache leave scores unchanged
    v.batch_size = 1
    assert torch.allclose(v.score(images, PROMPTS), got, rtol=1e-5, atol=1e-5)
    assert v.cache.hits >= 3


def test_image_reward_med_config_mismatch_is_reported(ir_folder, tmp_path):
    import shutil

    from noise_search.verifiers import CorruptWeightsError

    folder, _ = ir_folder
    for f in ("ImageReward.pt", "vocab.txt"):
        shutil.copy(folder / f, tmp_path / f)
    with open(folder / "med_config.json", encoding="utf-8") as fh:
        med = __import__("json").load(fh)
    med["intermediate_size"] = 80
    S.write_json(tmp_path / "med_config.json", med)
    with pytest.raises(CorruptWeightsError, match=r"ImageReward.pt in .* \(shapes do not match med_config.json: .*intermediate"):
        load_verifier("image_reward", tmp_path, vision_heads=3)
