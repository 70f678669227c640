"""Loading checkpoints as the originals do: legacy (non-zip) ``torch.save`` files, and ImageReward checkpoints
with keys the original loader ignores. Tiny random checkpoints in the published key layouts
(``tests/fixtures/verifiers_support.py``); the expected scores come from the same weights saved cleanly."""

import json
import os
import shutil
import sys
import warnings

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "fixtures"))
import verifiers_support as S  # noqa: E402

from noise_search.verifiers import CorruptWeightsError, load_verifier  # noqa: E402
from noise_search.verifiers import files  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    yield from S.one_thread()


PROMPTS = ["a photo of a cat", "a red dog on the blue cat"]


@pytest.fixture(scope="module")
def images():
    return torch.rand(2, 40, 44, 3, generator=torch.Generator().manual_seed(5))


@pytest.fixture(scope="module")
def ir_parts(tmp_path_factory):
    """An ImageReward folder (ImageReward.pt as ``torch.save`` writes it today, med_config.json, vocab.txt) and its
    state dict, in the original ``blip.* / mlp.*`` layout."""
    folder = tmp_path_factory.mktemp("imagereward")
    S.synthetic_bert_vocab(str(folder / "vocab.txt"))
    with open(folder / "vocab.txt", encoding="utf-8") as f:
        n = sum(1 for _ in f) + 2  # + [DEC], [ENC]
    med = S.tiny_med_config(n)
    S.write_json(folder / "med_config.json", med)
    torch.manual_seed(0)
    sd = S.randomize_(S.RefImageReward(n, med), seed=3).eval().state_dict()
    torch.save(sd, folder / "ImageReward.pt")
    return folder, sd, med


def ir_copy(ir_parts, dst, sd=None, med=None, **save_kw):
    """A copy of the ImageReward folder in ``dst`` with another state dict / med_config / torch.save format."""
    folder, sd0, med0 = ir_parts
    shutil.copy(folder / "vocab.txt", dst / "vocab.txt")
    S.write_json(dst / "med_config.json", med0 if med is None else med)
    torch.save(sd0 if sd is None else sd, dst / "ImageReward.pt", **save_kw)
    return dst


@pytest.fixture(scope="module")
def ir_reference(ir_parts, images):
    """Scores of the cleanly saved checkpoint (the expected values for every variant below)."""
    folder, _, _ = ir_parts
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the published layout loads without any warning
        v = load_verifier("image_reward", folder, vision_heads=3)
    return v.score(images, PROMPTS)


# -- legacy torch.save format ---------------------------------------------------------------------

def test_legacy_checkpoint_loads_without_mmap(tmp_path):
    """Stands for ``torch.load(path, map_location='cpu')`` of the originals (ImageReward.load, hpsv2.score), which
    reads both torch.save formats: a legacy (non-zip) file loads too, a zip file is memory-mapped."""
    sd = {"w": torch.randn(3, 4), "nested": {"b": torch.arange(5)}}
    torch.save(sd, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    torch.save(sd, tmp_path / "zip.pt")
    assert not files.is_zip_checkpoint(str(tmp_path / "legacy.pt")) and files.is_zip_checkpoint(str(tmp_path / "zip.pt"))
    with pytest.raises(RuntimeError, match="mmap"):  # why the fallback exists
        torch.load(tmp_path / "legacy.pt", weights_only=True, mmap=True)
    for name in ("legacy.pt", "zip.pt"):
        got = files.load_torch_file(str(tmp_path / name), "test", [], "test")
        assert torch.equal(got["w"], sd["w"]) and torch.equal(got["nested"]["b"], sd["nested"]["b"])


class _NotATensor:
    pass


def test_legacy_checkpoint_keeps_weights_only(tmp_path):
    """Stands for torch's ``weights_only=True`` loader: a legacy file holding a pickled object is refused as a zip
    one is, and loads only with ``allow_pickle=True``."""
    p = tmp_path / "legacy_obj.pt"
    torch.save({"w": torch.ones(2), "obj": _NotATensor()}, p, _use_new_zipfile_serialization=False)
    with pytest.raises(CorruptWeightsError, match=r"legacy_obj.pt .*allow_pickle=True only if you trust the file"):
        files.load_torch_file(str(p), "test", [], "test")
    assert isinstance(files.load_torch_file(str(p), "test", [], "test", allow_pickle=True)["obj"], _NotATensor)


def test_legacy_image_reward_checkpoint_scores_as_the_zip_one(ir_parts, ir_reference, images, tmp_path):
    """Stands for ImageReward.load (``torch.load`` then ``load_state_dict``): the same weights saved in the legacy
    format give the same scores."""
    folder = ir_copy(ir_parts, tmp_path, _use_new_zipfile_serialization=False)
    assert not files.is_zip_checkpoint(str(folder / "ImageReward.pt"))
    v = load_verifier("image_reward", folder, vision_heads=3)
    assert torch.equal(v.score(images, PROMPTS), ir_reference)


def test_legacy_hps_checkpoint_loads(tmp_path, images):
    """Stands for hpsv2.score (``torch.load(cp)['state_dict']``): a legacy-format HPS file scores as the zip one."""
    tok = S.synthetic_clip_tokenizer()
    torch.manual_seed(0)
    ref = S.randomize_(S.RefOpenCLIP(len(tok)), seed=1).eval()
    scores = []
    for sub, kw in (("zip", {}), ("legacy", {"_use_new_zipfile_serialization": False})):
        (tmp_path / sub).mkdir()
        torch.save({"state_dict": ref.state_dict()}, tmp_path / sub / "HPS_v2_compressed.pt", **kw)
        tok.save_pretrained(tmp_path / sub / "tokenizer")
        scores.append(load_verifier("hpsv2", tmp_path / sub, vision_heads=3, text_heads=2).score(images, "a photo of a cat"))
    assert torch.equal(scores[0], scores[1])


# -- ImageReward: keys the original ignores, keys it needs ------------------------------------------

def test_image_reward_ignores_unused_keys_like_the_original(ir_parts, ir_reference, images, tmp_path):
    """Stands for ImageReward.load's ``model.load_state_dict(state_dict, strict=False)``: keys the model does not
    use (a BERT pooler, a momentum encoder, a ViT classifier head, an extra head tensor) are ignored, with a
    warning naming them, and the scores are those of the clean checkpoint (an ITM head, which the transformers
    model has but the reward never runs, is loaded into it without a word)."""
    _, sd, med = ir_parts
    h, w = med["hidden_size"], 48
    extra = {"blip.text_encoder.pooler.dense.weight": torch.randn(h, h), "blip.text_encoder.pooler.dense.bias": torch.randn(h),
             "blip.itm_head.weight": torch.randn(2, h), "blip.itm_head.bias": torch.randn(2),
             "blip.visual_encoder_m.cls_token": torch.randn(1, 1, w), "blip.visual_encoder.head.weight": torch.randn(10, w),
             "mlp.layers.8.weight": torch.randn(1, 1)}
    folder = ir_copy(ir_parts, tmp_path, sd={**sd, **extra})
    with pytest.warns(UserWarning, match=r"ImageReward.pt holds 5 key\(s\) the reward does not use, ignored .*strict=False") as rec:
        v = load_verifier("image_reward", folder, vision_heads=3)
    msg = str(rec[0].message)
    assert all((k in msg) != k.startswith("blip.itm_head.") for k in extra)  # named as in the file
    assert torch.equal(v.score(images, PROMPTS), ir_reference)


def test_image_reward_without_unused_projections_loads(ir_parts, ir_reference, images, tmp_path):
    """Stands for ImageReward.score, which never runs ``blip.vision_proj`` / ``blip.text_proj``: a checkpoint
    without them loads (strict=False leaves them at init there) and scores as the full one."""
    _, sd, _ = ir_parts
    folder = ir_copy(ir_parts, tmp_path, sd={k: v for k, v in sd.items() if not k.startswith(("blip.vision_proj.", "blip.text_proj."))})
    v = load_verifier("image_reward", folder, vision_heads=3)
    assert torch.equal(v.score(images, PROMPTS), ir_reference)


@pytest.mark.parametrize("drop", ["blip.text_encoder.encoder.layer.1.crossattention.self.key.weight",
                                  "blip.text_encoder.embeddings.word_embeddings.weight",
                                  "blip.visual_encoder.blocks.1.attn.qkv.bias",
                                  "blip.visual_encoder.blocks.0.mlp.fc1.weight",
                                  "mlp.layers.4.bias"])
def test_image_reward_refuses_a_missing_needed_key(ir_parts, tmp_path, drop):
    """Unlike ``strict=False`` in the original (which would leave the tensor at its random init), a key the reward
    needs that is absent is refused, naming it."""
    _, sd, _ = ir_parts
    folder = ir_copy(ir_parts, tmp_path, sd={k: v for k, v in sd.items() if k != drop})
    with pytest.raises(CorruptWeightsError) as info:
        load_verifier("image_reward", folder, vision_heads=3)
    msg = str(info.value)
    assert "ImageReward.pt" in msg and "missing" in msg and "huggingface.co/THUDM/ImageReward" in msg
    assert (drop if drop.startswith("blip.") else drop[len("mlp."):]) in msg, msg  # the file's own name (the head's without mlp.)


def test_image_reward_refuses_a_wrong_shape(ir_parts, tmp_path):
    """As ``load_state_dict`` in the original (strict=False does not excuse a size mismatch): refused, naming it."""
    _, sd, _ = ir_parts
    key = "blip.text_encoder.encoder.layer.0.output.dense.weight"
    folder = ir_copy(ir_parts, tmp_path, sd={**sd, key: sd[key][:, :-1].clone()})
    with pytest.raises(CorruptWeightsError, match=r"shapes do not match med_config.json: .*encoder.layer.0.output.dense.weight"):
        load_verifier("image_reward", folder, vision_heads=3)


def test_image_reward_refuses_text_layers_beyond_med_config(ir_parts, tmp_path):
    """The original would drop the extra layers silently (strict=False) and score with a shallower text encoder;
    here it is an error naming the layers and med_config.json."""
    _, _, med = ir_parts
    folder = ir_copy(ir_parts, tmp_path, med={**med, "num_hidden_layers": 1})
    with pytest.raises(CorruptWeightsError, match=r"text-encoder layers \[1\] beyond med_config.json's num_hidden_layers = 1"):
        load_verifier("image_reward", folder, vision_heads=3)
    with open(folder / "med_config.json", encoding="utf-8") as f:
        assert json.load(f)["num_hidden_layers"] == 1
