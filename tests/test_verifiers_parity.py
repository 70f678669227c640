"""Image-preprocessing parity of every verifier with its ORIGINAL scoring pipeline.

The originals score a PNG: ComfyUI's ``SaveImage`` writes the IMAGE tensor to 8 bits (``comfy_png`` below), their
code opens it with Pillow and runs its own transform. Each reference here is that original, either called
(transformers' PIL image processors) or transcribed line by line from the library as it runs on a PIL image
(torchvision is not installed here): nothing in this file calls the pack's resize or crop code.

- ComfyUI ``nodes.SaveImage.save_images``: ``comfy_png``;
- torchvision 0.17+ ``Resize(int, BICUBIC)`` + ``CenterCrop`` + ``ToTensor`` + ``Normalize`` on a PIL image
  (``torchvision_resize_crop``), as composed by openai CLIP ``clip/clip.py::_transform`` (the LAION aesthetic
  predictor's ``simple_inference.py``, OpenAI's zero-shot notebook), Hessel et al.'s ``clipscore.py::
  CLIPImageDataset._transform_test``, ImageReward ``ImageReward/ImageReward.py::_transform`` and DINOv2
  ``dinov2/data/transforms.py::make_classification_eval_transform``;
- HPSv2 (github tgxs002/HPSv2) ``hpsv2/src/open_clip/transform.py::image_transform(is_train=False,
  resize_longest_max=True)``: ``ToTensor`` then ``ResizeMaxSize`` on the float tensor (``hps_transform``);
- transformers 5.x ``CLIPImageProcessorPil`` (torchmetrics' ``CLIPScore`` runs ``CLIPProcessor``; PickScore's
  README uses ``AutoProcessor``) and ``ViTImageProcessorPil`` (a transformers classifier folder), called.

Pixel tests ask for the same 8-bit values (float rounding only); score tests ask for a relative difference
<= 1e-4 and the same ranking, on tiny random models at the real 224 px input size. ``benchmarks/verifier_parity.py``
prints the measured figures from the same zoo and references.
"""

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "fixtures"))
import verifiers_support as S  # noqa: E402

from noise_search.verifiers import load_verifier  # noqa: E402

OPENAI_MEAN, OPENAI_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SIZES = [(200, 300), (300, 200), (512, 512), (64, 96), (224, 227), (227, 224), (1216, 832), (832, 1216), (1024, 1024),
         (517, 333), (333, 517), (64, 64)]  # (height, width); 64 px and 64x96 are upscales; 1216x832: crop rules differ
SCORE_SIZES = [(1216, 832), (517, 333), (64, 96)]
PROMPT = "a photo of a cat"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    yield from S.one_thread()


# -- the originals ---------------------------------------------------------------------------------

def comfy_png(image, path):
    """ComfyUI ``nodes.SaveImage.save_images`` for one IMAGE row ([H, W, 3] float), then ``PIL.Image.open``: the
    file the originals read."""
    i = 255. * image.cpu().numpy()
    img = Image.fromarray(np.clip(i, 0, 255).astype(np.uint8))
    img.save(path, compress_level=4)
    return Image.open(path)


def to_tensor(pil):
    """torchvision ``ToTensor`` on an 8-bit PIL image: HWC bytes -> CHW float32 ``/ 255``."""
    return torch.from_numpy(np.array(pil, np.uint8, copy=True)).permute(2, 0, 1).contiguous().float().div(255)


def normalize(x, mean, std):
    """torchvision ``Normalize``: ``(x - mean) / std`` per channel, float32."""
    return (x - torch.as_tensor(mean).view(-1, 1, 1)) / torch.as_tensor(std).view(-1, 1, 1)


def torchvision_resize_crop(pil, resize, crop, mean, std):
    """torchvision (0.17+) ``Compose([Resize(resize, BICUBIC), CenterCrop(crop), convert('RGB'), ToTensor(),
    Normalize(mean, std)])`` on a PIL image, as it executes: ``Resize`` sizes the shorter side
    (``_compute_resized_output_size``), returns the image when the size is unchanged, else ``img.resize((w, h),
    Image.BICUBIC)``; ``CenterCrop`` crops at ``int(round((h - crop) / 2.0))``."""
    w, h = pil.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = resize, int(resize * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_h, new_w) != (h, w):
        pil = pil.resize((new_w, new_h), Image.BICUBIC)
    w, h = pil.size
    top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
    pil = pil.crop((left, top, left + crop, top + crop)).convert("RGB")
    return normalize(to_tensor(pil), mean, std)


def openai_clip_transform(pil):
    """openai CLIP ``clip.clip._transform(224)`` (also ImageReward's ``_transform(224)``)."""
    return torchvision_resize_crop(pil, 224, 224, OPENAI_MEAN, OPENAI_STD)


def dinov2_eval_transform(pil):
    """DINOv2 ``dinov2.data.transforms.make_classification_eval_transform()``: Resize(256), CenterCrop(224), ImageNet."""
    return torchvision_resize_crop(pil, 256, 224, IMAGENET_MEAN, IMAGENET_STD)


def hps_transform(pil, size=224):
    """HPSv2's ``image_transform(is_train=False, resize_longest_max=True)``: ``_convert_to_rgb_or_rgba``, ``ToTensor``,
    ``ResizeMaxSize(size, fill=0)``, ``MaskAwareNormalize``. ``ResizeMaxSize`` calls torchvision's ``F.resize`` on the
    tensor (``F_t.resize``: ``interpolate(bicubic, align_corners=False, antialias=True)``, no clamp for floats) and
    ``F.pad(padding=[left, top, right, bottom], fill)``, only when ``scale != 1.0``."""
    x = to_tensor(pil.convert("RGB"))
    height, width = x.shape[1:]
    scale = size / float(max(height, width))
    if scale != 1.0:
        new_size = tuple(round(dim * scale) for dim in (height, width))
        x = F.interpolate(x[None], size=new_size, mode="bicubic", align_corners=False, antialias=True)[0]
        pad_h, pad_w = size - new_size[0], size - new_size[1]
        x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2], value=0)
    return normalize(x, OPENAI_MEAN, OPENAI_STD)


def transformers_processor(processor):
    """A transformers image processor (PIL backend) as a PIL image -> pixels [3, H, W] function."""
    return lambda pil: processor(images=pil, return_tensors="pt")["pixel_values"][0]


# -- test images -----------------------------------------------------------------------------------

def sample_images(h, w, n=1, seed=0):
    """IMAGE [n, h, w, 3]: noise off the 8-bit grid, a hard black/white band (where Pillow's clipped 8-bit
    intermediate matters most) and a ramp past 0 and 1 (clipped by SaveImage)."""
    g = torch.Generator().manual_seed(seed * 1000 + h * 7 + w)
    x = torch.rand(n, h, w, 3, generator=g)
    band = max(1, h // 3)
    x[:, :band] = (x[:, :band] > 0.5).float()
    x[:, :, : max(1, w // 5)] = torch.linspace(-0.1, 1.1, h).view(1, h, 1, 1)
    return x



def pngs(images, folder):
    folder.mkdir(parents=True, exist_ok=True)
    return [comfy_png(images[i], folder / f"{i}.png") for i in range(images.shape[0])]


# -- the zoo: each verifier on tiny random weights at 224 px, with its original pipeline ------------

class Entry:
    """A loaded verifier, its original pipeline (``reference``: PIL image -> pixels; ``original`` names it), the std
    that pipeline divides by, and ``score(pixels, early_pixels, conditions)``: the verifier's score computed by the
    verifier's own model from reference pixels (the weight conversions and the text/class side are tested elsewhere,
    so only the pixels differ between the two scores)."""

    def __init__(self, verifier, preprocess, reference, std, score, original, conditions=PROMPT):
        self.verifier, self.preprocess, self.reference, self.std = verifier, preprocess, reference, std
        self.score, self.original, self.conditions = score, original, conditions


def clip_image(model, px):
    return F.normalize(model.visual_projection(model.vision_model(pixel_values=px).pooler_output), dim=-1)


def of_class(logits, ids):
    return logits[torch.arange(len(ids)), torch.tensor(ids)]


def save_clip(folder, tok):
    from transformers import CLIPImageProcessorPil, CLIPModel

    torch.manual_seed(0)
    model = CLIPModel(S.tiny_clip_config(tok, image=224, patch=32)).eval()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    CLIPImageProcessorPil().save_pretrained(folder)  # openai/clip-vit-large-patch14's preprocessor_config.json values
    return model


def laion_preprocessor_config(folder):
    """laion/CLIP-ViT-H-14-laion2B-s32B-b79K's preprocessor_config.json (legacy int sizes), which PickScore uses."""
    S.write_json(Path(folder) / "preprocessor_config.json", {
        "crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True, "feature_extractor_type": "CLIPFeatureExtractor",
        "image_mean": list(OPENAI_MEAN), "image_std": list(OPENAI_STD), "resample": 3, "size": 224})


def build_zoo(root):
    """{name: Entry} for every verifier with an image pipeline, saved under ``root`` and loaded via ``load_verifier``."""
    from transformers import (BitImageProcessorPil, CLIPImageProcessorPil, Dinov2Config, Dinov2Model, ViTConfig,
                              ViTForImageClassification, ViTImageProcessorPil)

    from noise_search.verifiers.clip import AESTHETIC_FILE, RewardMLP

    root = Path(root)
    tok = S.synthetic_clip_tokenizer()
    zoo = {}
    clip_dir = root / "clip"
    save_clip(clip_dir, tok)
    clip_ref = transformers_processor(CLIPImageProcessorPil.from_pretrained(clip_dir))

    v = load_verifier("clip_score", clip_dir)
    zoo["clip_score"] = Entry(v, v.preprocess, openai_clip_transform, OPENAI_STD,
                              lambda px, e, c, v=v: (clip_image(v.model, px) * v.text_embeds(c)).sum(-1),
                              "Hessel et al.'s clipscore.py (scales cosine, hessel): openai CLIP preprocess")
    v = load_verifier("clip_score", clip_dir, scale="torchmetrics")
    zoo["clip_score_torchmetrics"] = Entry(v, v.preprocess, clip_ref, OPENAI_STD,
                                           lambda px, e, c, v=v: (100 * (clip_image(v.model, px) * v.text_embeds(c)).sum(-1)).clamp(min=0),
                                           "torchmetrics CLIPScore: transformers CLIPImageProcessor (PIL backend) of the CLIP folder")

    pick_dir = root / "pick"
    shutil.copytree(clip_dir, pick_dir)
    laion_preprocessor_config(pick_dir)
    v = load_verifier("pick_score", pick_dir)
    zoo["pick_score"] = Entry(v, v.preprocess, transformers_processor(CLIPImageProcessorPil.from_pretrained(pick_dir)), OPENAI_STD,
                              lambda px, e, c, v=v: v.logit_scale() * (clip_image(v.model, px) * v.text_embeds(c)).sum(-1),
                              "PickScore README: AutoProcessor of laion/CLIP-ViT-H-14 (transformers CLIPImageProcessor, PIL backend)")

    v = load_verifier("clip_zero_shot", clip_dir, class_names=["cat", "dog", "red car"], templates=["a photo of a {}."])
    zoo["clip_zero_shot"] = Entry(v, v.preprocess, openai_clip_transform, OPENAI_STD,
                                  lambda px, e, c, v=v: v.logit_scale() * (clip_image(v.model, px) * v.class_embeds(c)).sum(-1),
                                  "OpenAI CLIP zero-shot notebook: clip.load preprocess (torchvision Resize + CenterCrop on PIL)", conditions=2)

    aes_dir = root / "aesthetic"
    shutil.copytree(clip_dir, aes_dir / "clip")
    torch.manual_seed(5)
    torch.save(RewardMLP(16).state_dict(), aes_dir / AESTHETIC_FILE)
    v = load_verifier("aesthetic", aes_dir)
    zoo["aesthetic"] = Entry(v, v.preprocess, openai_clip_transform, OPENAI_STD,
                             lambda px, e, c, v=v: v.mlp(clip_image(v.model, px)).flatten(),
                             "improved-aesthetic-predictor simple_inference.py: openai CLIP clip.load preprocess", conditions=None)

    hps_dir = root / "hps"
    hps_dir.mkdir()
    torch.manual_seed(0)
    hps = S.randomize_(S.RefOpenCLIP(len(tok), image=224, patch=32), seed=1).eval()
    torch.save({"state_dict": hps.state_dict()}, hps_dir / "HPS_v2_compressed.pt")
    tok.save_pretrained(hps_dir / "tokenizer")
    v = load_verifier("hpsv2", hps_dir, vision_heads=3, text_heads=2)
    zoo["hpsv2"] = Entry(v, v.preprocess, hps_transform, OPENAI_STD,
                         lambda px, e, c, v=v: (clip_image(v.model, px) * v.text_embeds(c)).sum(-1),
                         "hpsv2.score: open_clip image_transform(resize_longest_max=True): ToTensor, ResizeMaxSize on floats")

    ir_dir = root / "image_reward"
    ir_dir.mkdir()
    n = sum(1 for _ in open(S.synthetic_bert_vocab(str(ir_dir / "vocab.txt")), encoding="utf-8"))
    med = S.tiny_med_config(n + 2)
    S.write_json(ir_dir / "med_config.json", med)
    torch.manual_seed(0)
    ir = S.RefImageReward(n + 2, med)
    ir.blip.visual_encoder = S.RefBlipViT(image=224, patch=32)
    ir = S.randomize_(ir, seed=3).eval()
    torch.save(ir.state_dict(), ir_dir / "ImageReward.pt")
    v = load_verifier("image_reward", ir_dir, vision_heads=3)
    zoo["image_reward"] = Entry(v, v.preprocess, openai_clip_transform, OPENAI_STD,
                                lambda px, e, c, v=v: v.reward(px, *v.tokenize(c)),
                                "ImageReward._transform: torchvision Resize(224) + CenterCrop(224) on PIL")

    dino_dir = root / "dino"
    torch.manual_seed(0)
    dino = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2, image_size=224, patch_size=32)
    Dinov2Model(dino).save_pretrained(dino_dir)
    BitImageProcessorPil(size={"shortest_edge": 256}, image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD)).save_pretrained(dino_dir)
    torch.manual_seed(1)
    torch.save(torch.nn.Linear(64, 10).state_dict(), dino_dir / "dinov2_tiny_linear_head.pth")
    v = load_verifier("dino_linear", dino_dir)
    zoo["dino_linear"] = Entry(v, v.preprocess, dinov2_eval_transform, IMAGENET_STD,
                               lambda px, e, c, v=v: of_class(v.head(v.features(px)), c),
                               "DINOv2 make_classification_eval_transform: torchvision Resize(256) + CenterCrop(224) on PIL", conditions=7)

    def cosine_of(feature):
        return lambda px, early_px, c: F.cosine_similarity(feature(early_px), feature(px), dim=-1)

    v = load_verifier("self_supervised", dino_dir)
    zoo["self_supervised_dino"] = Entry(v, v.features.preprocess, dinov2_eval_transform, IMAGENET_STD,
                                        cosine_of(lambda px, m=v.features.model: m(pixel_values=px).pooler_output),
                                        "DINOv2 make_classification_eval_transform (no published code for Ma et al.'s verifier)", conditions=None)
    v = load_verifier("self_supervised", clip_dir)
    zoo["self_supervised_clip"] = Entry(v, v.features.preprocess, clip_ref, OPENAI_STD,
                                        cosine_of(lambda px, m=v.features.model: clip_image(m, px)),
                                        "transformers CLIPImageProcessor (PIL backend) of the CLIP folder", conditions=None)

    vit_dir = root / "vit"
    torch.manual_seed(0)
    ViTForImageClassification(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=224,
                                         patch_size=32, num_labels=5)).save_pretrained(vit_dir)
    ViTImageProcessorPil().save_pretrained(vit_dir)  # size {height, width} 224, bilinear, mean/std 0.5
    v = load_verifier("classifier", vit_dir)
    zoo["classifier_vit"] = Entry(v, v.preprocess, transformers_processor(ViTImageProcessorPil.from_pretrained(vit_dir)), (0.5, 0.5, 0.5),
                                  lambda px, e, c, v=v: of_class(v.model(pixel_values=px).logits, c),
                                  "the folder's transformers image processor (here ViTImageProcessor, PIL backend)", conditions=3)
    return zoo


def max_level_difference(entry, images, pils):
    """Max |pack - original| over the batch, in 8-bit levels (pixels de-normalised with the original's std)."""
    with torch.no_grad():
        ours = entry.preprocess(images)
    ref = torch.stack([entry.reference(p) for p in pils])
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return float(((ours - ref).abs() * torch.tensor(entry.std).view(1, 3, 1, 1)).max() * 255)


def score_pair(entry, images, pils, early, early_pils):
    """(pack scores on the IMAGE tensors, the same model's scores on the original pipeline's pixels)."""
    v = entry.verifier
    with torch.no_grad():
        ours = v.score(images, entry.conditions, early=early if v.needs_early else None)
        px = torch.stack([entry.reference(p) for p in pils])
        epx = torch.stack([entry.reference(p) for p in early_pils])
        conds = [entry.conditions] * images.shape[0]
        ref = entry.score(px, epx, conds).float().flatten()
    return ours, ref


def relative_difference(ours, ref):
    return float(((ours - ref).abs() / ref.abs().clamp_min(1e-6)).max())


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return build_zoo(tmp_path_factory.mktemp("zoo"))


@pytest.fixture(scope="module")
def png_cache(tmp_path_factory):
    root, cache = tmp_path_factory.mktemp("png"), {}

    def get(h, w, n=1, seed=0):
        key = (h, w, n, seed)
        if key not in cache:
            images = sample_images(h, w, n, seed)
            cache[key] = (images, pngs(images, root / f"{h}x{w}_{n}_{seed}"))
        return cache[key]
    return get


# -- tests ------------------------------------------------------------------------------------------

def test_to_uint8_is_comfy_save_image(tmp_path):
    """The pack's 8-bit quantisation against ComfyUI's ``SaveImage`` (``np.clip(255. * i, 0, 255).astype(np.uint8)``,
    truncating) round-tripped through a PNG file; includes values past 0 and 1 and every 8-bit level k / 255."""
    from noise_search.verifiers.base import to_uint8

    images = sample_images(40, 64, n=2)
    images[1, 0, :, 0] = torch.arange(64) / 255.0  # 8-bit levels survive the round trip
    images[1, 1, :, 0] = torch.arange(64) / 255.0 + 0.999 / 255  # just below the next level: truncated, not rounded
    got = to_uint8(images)
    for i, pil in enumerate(pngs(images, tmp_path)):
        assert torch.equal(got[i], torch.from_numpy(np.array(pil)).permute(2, 0, 1))
    assert torch.equal(got[1, 0, 1, :], torch.arange(64, dtype=torch.uint8))


@pytest.mark.parametrize("size", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
def test_pixels_equal_the_originals(zoo, png_cache, size):
    """Every verifier's pixels against its original pipeline on the PNG (see the module docstring for which
    original each one stands for): the same 8-bit values (up to float rounding of ``/ 255`` and ``Normalize``)."""
    images, pils = png_cache(*size)
    worst = {name: max_level_difference(e, images, pils) for name, e in zoo.items()}
    assert max(worst.values()) < 1e-3, worst


def test_crop_offset_rules_differ_where_expected(zoo, png_cache):
    """CLIPScore on the same CLIP folder: torchmetrics' transformers ``CLIPImageProcessorPil`` (floor offset) and
    Hessel's openai-CLIP ``CenterCrop`` (round): at 1216x832 the resized 327x224 image has 103 rows to drop, 3 mod 4,
    so the two originals crop one row apart, and each scale follows its own."""
    images, pils = png_cache(1216, 832)
    hessel, torchmetrics = zoo["clip_score"], zoo["clip_score_torchmetrics"]
    assert not torch.equal(hessel.reference(pils[0]), torchmetrics.reference(pils[0]))
    assert not torch.equal(hessel.preprocess(images), torchmetrics.preprocess(images))
    assert max_level_difference(hessel, images, pils) < 1e-3 and max_level_difference(torchmetrics, images, pils) < 1e-3


def test_hps_keeps_the_bicubic_overshoot(zoo, png_cache):
    """HPSv2 resizes the float tensor after ``ToTensor`` (open_clip ``ResizeMaxSize``): the bicubic overshoot at the
    black/white band stays outside 0..1, as in the original; the pad is exact 0 (black) before Normalize."""
    images, pils = png_cache(1024, 1024)
    e = zoo["hpsv2"]
    px = e.preprocess(images) * torch.tensor(OPENAI_STD).view(1, 3, 1, 1) + torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1)
    assert float(px.min()) < -0.01 and float(px.max()) > 1.01
    wide, wide_pils = png_cache(200, 300)
    pad = e.preprocess(wide) * torch.tensor(OPENAI_STD).view(1, 3, 1, 1) + torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1)
    assert float(pad[..., :37, :].abs().max()) < 1e-6  # 224 * 200 / 300 = 149 rows, 75 padded: 37 above, 38 below
    assert max_level_difference(e, wide, wide_pils) < 1e-3


@pytest.mark.parametrize("size", SCORE_SIZES, ids=[f"{h}x{w}" for h, w in SCORE_SIZES])
def test_scores_match_the_originals(zoo, png_cache, size):
    """End to end: four IMAGE tensors scored by each verifier vs the same model on the original pipeline's pixels of
    the saved PNGs: relative difference <= 1e-4 and the same ranking."""
    images, pils = png_cache(*size, n=4, seed=1)
    early, early_pils = png_cache(*size, n=4, seed=2)
    for name, e in zoo.items():
        ours, ref = score_pair(e, images, pils, early, early_pils)
        assert relative_difference(ours, ref) <= 1e-4, (name, ours, ref)
        assert torch.equal(ours.argsort(stable=True), ref.argsort(stable=True)), (name, ours, ref)
