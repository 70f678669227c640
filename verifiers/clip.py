"""CLIP-family verifiers on transformers' ``CLIPModel``: CLIPScore, PickScore, HPSv2/v2.1, LAION aesthetic,
CLIP zero-shot class logits; and the open_clip -> ``CLIPModel`` state-dict conversion (HPSv2 checkpoints).

Scores, as the sources report them:
- ``clip_score``: cosine of the CLIP image and text embeddings on one of three scales (``scale=``, see
  docs/verifier-scales.md): ``cosine`` (default, raw), ``hessel`` (``2.5 * max(cos, 0)``, Hessel et al. 2021 Sec. 3;
  the scale of the CLIPScore values Ma et al. report, 0.7-0.8) or ``torchmetrics`` (``max(100 * cos, 0)``).
- ``pick_score``: ``logit_scale.exp() * cosine`` (PickScore paper, ~20 for a good match).
- ``hpsv2`` / ``hpsv2.1``: raw cosine (``hpsv2.score``: ``image_features @ text_features.T``).
- ``aesthetic``: LAION MLP on the L2-normalised CLIP ViT-L/14 image embedding (1..10 scale).
- ``clip_zero_shot``: ``logit_scale.exp() * cosine(image, class embedding)``, the class embedding being the
  normalised mean of the normalised template embeddings ("a photo of a {}." ...); optionally log-softmax.

Prompt text, as each original tokenises it (docs/verifier-scales.md, "Prompt text"): HPSv2 (open_clip) and
CLIPScore ``hessel`` (OpenAI CLIP) clean the prompt like open_clip's ``SimpleTokenizer`` (``open_clip_clean``);
the others use the folder's transformers tokenizer as is. A prompt longer than the text encoder's 77 tokens keeps
its first 76 tokens and the end-of-text token (open_clip, OpenAI CLIP, transformers ``truncation=True``), except
under CLIPScore ``torchmetrics``, which keeps the first 77 ids as torchmetrics does; both warn.
"""

from __future__ import annotations

import html
import json
import os
import re
import unicodedata
import warnings
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import files
from .base import CLIP_MEAN, CLIP_STD, PIL_BICUBIC, ImagePreprocess, Verifier, class_ids
from .imagenet import IMAGENET_CLASSES, IMAGENET_TEMPLATES, SIMPLE_TEMPLATES

if TYPE_CHECKING:  # the types only (transformers is imported where a loader needs it)
    from transformers import CLIPConfig, CLIPModel, PreTrainedTokenizerBase

__all__ = ['CLIP_SOURCE', 'PICKSCORE_SOURCE', 'HPS_SOURCE', 'AESTHETIC_SOURCE', 'CLIP_TOKENIZER_FILES',
           'image_processor_config', 'preprocess_from_folder', 'load_tokenizer', 'load_clip_folder', 'ftfy_fix_text',
           'HTML_ENTITY', 'fix_text_without_ftfy', 'open_clip_clean', 'ftfy_may_change', 'use_open_clip_text',
           'CLIPBase', 'CLIP_SCORE_SCALES', 'HESSEL_W', 'check_clip_score_scale', 'CLIPScoreVerifier',
           'PickScoreVerifier', 'HPSVerifier', 'CLIPZeroShotVerifier', 'resolve_class_names', 'resolve_templates',
           'RewardMLP', 'load_reward_mlp', 'AestheticVerifier', 'AESTHETIC_FILE', 'load_aesthetic', 'VIT_H14_HEADS',
           'clip_config_from_open_clip', 'vit_h14_config', 'convert_open_clip_state_dict', 'clip_from_open_clip',
           'HPS_FILES', 'load_hps', 'load_clip_score', 'load_pick_score', 'load_clip_zero_shot']

CLIP_SOURCE = "huggingface.co/openai/clip-vit-large-patch14 (or any CLIP model saved with save_pretrained)"
PICKSCORE_SOURCE = "huggingface.co/yuvalkirstain/PickScore_v1 (model) and huggingface.co/laion/CLIP-ViT-H-14-laion2B-s32B-b79K (tokenizer and preprocessor files)"
HPS_SOURCE = "huggingface.co/xswu/HPSv2 (HPS_v2_compressed.pt / HPS_v2.1_compressed.pt) and the tokenizer files of huggingface.co/laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
AESTHETIC_SOURCE = ("github.com/christophschuhmann/improved-aesthetic-predictor (sac+logos+ava1-l14-linearMSE.pth) "
                    "and huggingface.co/openai/clip-vit-large-patch14 (the CLIP folder)")

CLIP_TOKENIZER_FILES = ["tokenizer.json (or vocab.json + merges.txt)", "tokenizer_config.json"]


# -- folders -------------------------------------------------------------------------------------

def image_processor_config(folder: str) -> dict:
    """The image-processor settings of a transformers folder: ``preprocessor_config.json`` (4.x) or the
    ``image_processor`` entry of ``processor_config.json`` (5.x); {} when it has neither."""
    for n in ("preprocessor_config.json", "processor_config.json"):
        p = os.path.join(folder, n)
        if os.path.isfile(p):
            with open(p, encoding="utf-8") as f:
                cfg = json.load(f)
            return cfg.get("image_processor", cfg) or {}
    return {}


def preprocess_from_folder(folder: str, default_size: int = 224, mean: Sequence[float] = CLIP_MEAN,
                           std: Sequence[float] = CLIP_STD, crop_offset: str = "floor") -> ImagePreprocess:
    """The folder's transformers image processor (its PIL backend: CLIPImageProcessor, BitImageProcessor...) as an
    ``ImagePreprocess``: ``size`` {"shortest_edge"} (or a bare int, the legacy CLIP form) resizes the shorter side,
    {"height", "width"} squashes to that square; then a centre crop to ``crop_size`` unless ``do_center_crop`` is
    false; ``resample`` (Pillow filter code, default bicubic), ``image_mean`` / ``image_std``. Without a config: shorter
    side and crop ``default_size`` with ``mean`` / ``std``. ``crop_offset`` "floor" is transformers' centre crop;
    loaders whose original scoring code uses torchvision's transforms instead pass "round"."""
    cfg = image_processor_config(folder)
    size = cfg.get("size") or default_size
    if isinstance(size, dict) and not size.get("shortest_edge") and size.get("height"):
        mode, resize = "squash", size["height"]
    else:
        mode, resize = "crop", (size.get("shortest_edge") if isinstance(size, dict) else size) or default_size
    crop = cfg.get("crop_size")
    crop = crop.get("height") if isinstance(crop, dict) else crop
    if not crop or cfg.get("do_center_crop") is False:
        crop = resize
    return ImagePreprocess(crop, resize, cfg.get("image_mean", mean), cfg.get("image_std", std), mode, crop_offset,
                           cfg.get("resample", PIL_BICUBIC))


def load_tokenizer(folder: str, verifier: str, source: str) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    expected = CLIP_TOKENIZER_FILES
    t = files.find_file(folder, files.TOKENIZER_FILES, verifier, expected, source, what="tokenizer.json (or vocab.json + merges.txt)")
    files.check_json(t, verifier, expected, source)
    if t.endswith("vocab.json"):
        files.find_file(folder, ["merges.txt"], verifier, expected, source)
    return files.from_pretrained(AutoTokenizer, folder, verifier, source)


def load_clip_folder(path: Union[str, os.PathLike], verifier: str = "clip_score", source: str = CLIP_SOURCE,
                     need_text: bool = True,
                     crop_offset: str = "floor") -> tuple[nn.Module, Optional[PreTrainedTokenizerBase], ImagePreprocess]:
    """A transformers CLIP folder (``CLIPModel``, or ``CLIPVisionModelWithProjection`` when ``need_text`` is
    False) -> (model, tokenizer or None, preprocess); ``crop_offset`` as in ``preprocess_from_folder``."""
    from transformers import CLIPModel, CLIPVisionModelWithProjection

    extra = ["preprocessor_config.json (optional)"]
    folder = files.as_folder(path, verifier, ["config.json", "model.safetensors"] + (CLIP_TOKENIZER_FILES if need_text else []), source)
    cfg = files.check_hf_folder(folder, verifier, source, need_tokenizer=False, extra_expected=extra)
    mt = cfg.get("model_type")
    if mt != "clip" and not (mt == "clip_vision_model" and not need_text):
        raise files.CorruptWeightsError(
            f"{verifier} verifier: {os.path.join(folder, 'config.json')} has model_type {mt!r}; expected 'clip'"
            f"{' or clip_vision_model' if not need_text else ''} (a CLIP model saved with save_pretrained; get one from {source})")
    if need_text:
        files.check_hf_folder(folder, verifier, source, need_tokenizer=True, extra_expected=extra)
    model = files.from_pretrained(CLIPModel if mt == "clip" else CLIPVisionModelWithProjection, folder, verifier, source)
    tok = load_tokenizer(folder, verifier, source) if need_text else None
    size = model.config.vision_config.image_size if hasattr(model.config, "vision_config") else model.config.image_size
    return model, tok, preprocess_from_folder(folder, size, crop_offset=crop_offset)


# -- prompt text ---------------------------------------------------------------------------------

try:  # open_clip and OpenAI CLIP run ftfy.fix_text on every prompt; here ftfy is optional (not a dependency)
    import ftfy as _ftfy
except ImportError:
    _ftfy = None


def ftfy_fix_text() -> Optional[Callable[[str], str]]:
    """``ftfy.fix_text`` when ftfy is installed, else None."""
    return _ftfy.fix_text if _ftfy is not None else None


HTML_ENTITY = re.compile(r"&#?[0-9A-Za-z]{1,24};")  # the entities ftfy.fix_text decodes (ftfy.chardata.HTML_ENTITY_RE)


def fix_text_without_ftfy(text: str) -> str:
    """The two steps of ``ftfy.fix_text`` (ftfy 6, default settings) that touch any text, for when ftfy is absent:
    decode HTML entities ``&...;`` until none is left, unless the text holds a ``<`` (ftfy then takes it for HTML),
    then Unicode NFC. ftfy's other fixes (mojibake, curly quotes, ligatures, full-width forms, control characters)
    are left out: ``ftfy_may_change`` flags the text they could change."""
    if "<" not in text:
        prev = None
        while prev != text:
            prev, text = text, HTML_ENTITY.sub(lambda m: html.unescape(m.group(0)), text)
    return unicodedata.normalize("NFC", text)


def open_clip_clean(text: str, fix_text: Union[str, Callable[[str], str], None] = "auto") -> str:
    """A prompt as open_clip's ``SimpleTokenizer.encode`` (clean='lower', HPSv2's tokenizer) and OpenAI CLIP's
    ``clip.tokenize`` (Hessel's CLIPScore) hand it to the BPE: ``whitespace_clean(basic_clean(text)).lower()``, where
    ``basic_clean`` is ``ftfy.fix_text``, ``html.unescape`` twice and ``strip``, and ``whitespace_clean`` turns every
    run of whitespace into one space. ``fix_text``: "auto" = ``ftfy.fix_text`` when ftfy is installed, else
    ``fix_text_without_ftfy``; None = ``fix_text_without_ftfy``; or any callable."""
    fix = (ftfy_fix_text() if fix_text == "auto" else fix_text) or fix_text_without_ftfy
    text = html.unescape(html.unescape(fix(text))).strip()
    return " ".join(text.split()).strip().lower()


def ftfy_may_change(text: str) -> bool:
    """True when ``ftfy.fix_text`` might clean ``text`` otherwise than ``fix_text_without_ftfy``: a character outside
    printable ASCII and ``\\t \\n \\r \\f``, or an HTML entity left over (an all-caps one such as ``&EACUTE;``)."""
    if any(not (" " <= c <= "~" or c in "\t\n\r\f") for c in text):
        return True
    return HTML_ENTITY.search(html.unescape(html.unescape(fix_text_without_ftfy(text)))) is not None


def use_open_clip_text(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Prepare a transformers CLIP tokenizer for ``open_clip_clean``-ed prompts: drop its own normalizer (NFC,
    whitespace, lowercase), which ``open_clip_clean`` already applies in open_clip's order (the tokenizer's NFC
    would otherwise run after ``html.unescape``, where open_clip has none). Changes ``tokenizer`` in place."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        backend.normalizer = None
    return tokenizer


# -- verifiers -----------------------------------------------------------------------------------

class CLIPBase(Verifier):
    """Shared CLIP towers: normalised image embeddings (batched) and normalised text embeddings (LRU-cached).

    Text: ``text_clean`` "open_clip" runs ``open_clip_clean`` on each prompt first (None: the tokenizer alone). A
    prompt longer than ``max_length`` tokens (with start and end tokens) keeps its first ``max_length - 1`` tokens
    and the end-of-text token when ``keep_eot`` (open_clip / OpenAI CLIP ``tokenize``, transformers
    ``truncation=True``), else its first ``max_length`` ids (torchmetrics' CLIPScore); a warning says so."""

    condition = "prompt"
    text_clean = None
    keep_eot = True

    def __init__(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, preprocess: ImagePreprocess,
                 weights_id: str = "", device: Union[str, torch.device] = "cpu", dtype: torch.dtype = torch.float32,
                 batch_size: int = 16, cache_size: int = 256) -> None:
        super().__init__(weights_id, device, dtype, batch_size, cache_size)
        self.model = model.to(self.device, dtype).eval()
        self.tokenizer, self.preprocess = tokenizer, preprocess
        tc = getattr(model.config, "text_config", None)
        self.max_length = int(getattr(tc, "max_position_embeddings", 77)) if tc is not None else 77

    @torch.no_grad()
    def image_embeds(self, images: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(images, self.device, self.dtype)
        pooled = self.model.vision_model(pixel_values=x).pooler_output
        return F.normalize(self.model.visual_projection(pooled).float(), dim=-1)

    def clean_prompt(self, text: str) -> str:
        if self.text_clean != "open_clip":
            return text
        if _ftfy is None and not getattr(self, "_ftfy_warned", False) and ftfy_may_change(text):
            self._ftfy_warned = True
            warnings.warn(f"{self.name}: ftfy is not installed, so prompts are cleaned without ftfy.fix_text, which the "
                          "original (open_clip / OpenAI CLIP tokenizer) runs on every prompt; this prompt has characters "
                          "ftfy may change (non-ASCII, control characters or HTML entities), so its tokens may differ from "
                          "the original's. pip install ftfy for exact parity (docs/verifier-scales.md).", UserWarning, stacklevel=2)
        return open_clip_clean(text)

    def token_ids(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask) of ``texts``, cleaned, cut to ``max_length`` as the class docstring says, padded."""
        L = self.max_length
        ids = self.tokenizer([self.clean_prompt(t) for t in texts], verbose=False)["input_ids"]
        long = [len(x) for x in ids if len(x) > L]
        if long:
            how = (f"its first {L - 1} tokens and the end-of-text token (as open_clip, OpenAI CLIP and transformers' "
                   "truncation=True do)" if self.keep_eot else
                   f"its first {L} ids, without the end-of-text token (as torchmetrics' CLIPScore does)")
            warnings.warn(f"{self.name}: {len(long)} prompt(s) longer than the text encoder's {L} tokens (up to {max(long)}) "
                          f"were cut: each keeps {how}", UserWarning, stacklevel=2)
            eot = self.tokenizer.eos_token_id
            ids = [(x[: L - 1] + [eot] if self.keep_eot else x[:L]) if len(x) > L else x for x in ids]
        tok = self.tokenizer.pad({"input_ids": ids}, padding=True, return_tensors="pt")
        return tok["input_ids"], tok["attention_mask"]

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Normalised text embeddings of ``texts`` (no cache); padding is harmless (causal mask, EOS pooling)."""
        ids, mask = self.token_ids(list(texts))
        out = self.model.text_model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device))
        return F.normalize(self.model.text_projection(out.pooler_output).float(), dim=-1)

    def text_embeds(self, prompts: Sequence[str]) -> torch.Tensor:
        return self.cache.get_many(list(prompts), self.encode_texts)

    def logit_scale(self) -> float:
        return float(self.model.logit_scale.detach().exp())

    def cosine(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        return (self.image_embeds(images) * self.text_embeds(prompts)).sum(-1)


CLIP_SCORE_SCALES = ("cosine", "hessel", "torchmetrics")
HESSEL_W = 2.5  # Hessel et al. 2021, Sec. 3: CLIP-S(c, v) = w * max(cos(c, v), 0) with w = 2.5


def check_clip_score_scale(scale: Any, what: str = "clip_score scale") -> str:
    if not isinstance(scale, str) or scale not in CLIP_SCORE_SCALES:
        raise ValueError(f"{what} must be one of {', '.join(repr(s) for s in CLIP_SCORE_SCALES)}, got {scale!r}")
    return scale


class CLIPScoreVerifier(CLIPBase):
    """CLIPScore: the cosine of CLIP image and text embeddings, on the scale ``scale`` (docs/verifier-scales.md):

    - "cosine" (default): the raw cosine, in [-1, 1];
    - "hessel": ``2.5 * max(cos, 0)`` (Hessel et al. 2021, Sec. 3), the scale of the CLIPScore values Ma et al. 2025
      report (0.7-0.8 with ViT-L/14); prompts cleaned as OpenAI CLIP's tokenizer does (``open_clip_clean``; the
      loader also drops the tokenizer's own normalizer, ``use_open_clip_text``);
    - "torchmetrics": ``max(100 * cos, 0)`` per image (torchmetrics ``clip_score`` of one image); a prompt past 77
      tokens keeps its first 77 ids, as torchmetrics does.

    The scales are monotone in the cosine, so they rank images alike (the clamped ones tie at 0)."""

    name = "clip_score"

    def __init__(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, preprocess: ImagePreprocess,
                 scale: str = "cosine", **kw: Any) -> None:
        self.scale = check_clip_score_scale(scale)
        super().__init__(model, tokenizer, preprocess, **kw)
        self.text_clean = "open_clip" if scale == "hessel" else None
        self.keep_eot = scale != "torchmetrics"

    def _score(self, images, conditions, early):
        cos = self.cosine(images, conditions)
        if self.scale == "hessel":
            return HESSEL_W * cos.clamp(min=0)
        if self.scale == "torchmetrics":
            return (100 * cos).clamp(min=0)
        return cos


class PickScoreVerifier(CLIPBase):
    """PickScore: ``logit_scale.exp() * cosine`` of the PickScore CLIP-H model."""

    name = "pick_score"

    def _score(self, images, conditions, early):
        return self.logit_scale() * self.cosine(images, conditions)


class HPSVerifier(CLIPBase):
    """HPSv2 / v2.1: open_clip ViT-H-14 finetuned; score = raw cosine, on HPSv2's pad-to-square preprocessing;
    prompts cleaned as open_clip's tokenizer does (``open_clip_clean``)."""

    name = "hpsv2"
    text_clean = "open_clip"

    def _score(self, images, conditions, early):
        return self.cosine(images, conditions)


class CLIPZeroShotVerifier(CLIPBase):
    """Prompt-engineered CLIP zero-shot classifier; score = the generation class's logit
    (``logit_scale.exp() * cos``), or its log-probability over all classes with ``output="log_prob"``.
    Class embeddings are computed once per class id (LRU cache) from ``templates``."""

    name = "clip_zero_shot"
    condition = "class"

    def __init__(self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, preprocess: ImagePreprocess,
                 class_names: Union[Sequence[str], str, os.PathLike, None] = None,
                 templates: Union[str, Sequence[str], None] = None, output: str = "logit", **kw: Any) -> None:
        super().__init__(model, tokenizer, preprocess, **kw)
        if output not in ("logit", "log_prob"):
            raise ValueError(f"output must be 'logit' or 'log_prob', got {output!r}")
        self.class_names = resolve_class_names(class_names)
        self.templates = resolve_templates(templates)
        self.output = output
        self.num_classes = len(self.class_names)

    def check_conditions(self, conds: list) -> list:
        class_ids(conds, self.num_classes)
        return conds

    def class_embedding_of(self, ids: Sequence[int]) -> torch.Tensor:
        out = []
        for c in ids:
            e = self.encode_texts([t.format(self.class_names[c]) for t in self.templates]).mean(0)
            out.append(F.normalize(e, dim=-1))
        return torch.stack(out)

    def class_embeds(self, ids: Sequence[int]) -> torch.Tensor:
        return self.cache.get_many([int(i) for i in ids], self.class_embedding_of)

    def _score(self, images, conditions, early):
        ids = class_ids(conditions, self.num_classes)
        img = self.image_embeds(images)
        if self.output == "logit":
            return self.logit_scale() * (img * self.class_embeds(ids)).sum(-1)
        logits = self.logit_scale() * img @ self.class_embeds(range(self.num_classes)).T
        return logits.log_softmax(-1)[torch.arange(len(ids)), torch.tensor(ids)]


def resolve_class_names(class_names: Union[Sequence[str], str, os.PathLike, None]) -> list[str]:
    """None -> the 1000 ImageNet names; a list/tuple of names; or a path to a text file (one name per line)."""
    if class_names is None:
        return list(IMAGENET_CLASSES)
    if isinstance(class_names, (str, os.PathLike)):
        if not os.path.isfile(class_names):
            raise FileNotFoundError(f"class names file {class_names} not found (one class name per line, line i = class id i)")
        with open(class_names, encoding="utf-8") as f:
            class_names = [ln.strip() for ln in f if ln.strip()]
    names = [str(n) for n in class_names]
    if not names:
        raise ValueError("class_names is empty; give at least one class name")
    return names


def resolve_templates(templates: Union[str, Sequence[str], None]) -> list[str]:
    if templates is None or templates == "imagenet80":
        return list(IMAGENET_TEMPLATES)
    if templates == "simple":
        return list(SIMPLE_TEMPLATES)
    if isinstance(templates, str):
        templates = [templates]
    templates = list(templates)
    bad = [t for t in templates if "{}" not in t]
    if not templates or bad:
        raise ValueError(f"templates must be 'imagenet80', 'simple' or strings with a '{{}}' for the class name; bad: {bad or templates}")
    return templates


# -- LAION aesthetic -----------------------------------------------------------------------------

class RewardMLP(nn.Module):
    """The LAION aesthetic / ImageReward head: Linear(d,1024)-Drop-Linear(1024,128)-Drop-Linear(128,64)-Drop-
    Linear(64,16)-Linear(16,1), no activations; keys ``layers.0/2/4/6/7``."""

    def __init__(self, input_size: int = 768) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(input_size, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
            nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def load_reward_mlp(sd: Mapping[str, torch.Tensor], path: str, verifier: str, expected: Sequence[str], source: str,
                    prefix: str = "") -> RewardMLP:
    """A ``RewardMLP`` from the ``{prefix}layers.*`` entries of a state dict (other keys ignored, all head keys required)."""
    head = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix + "layers.")}
    need = [f"layers.{i}.{p}" for i in (0, 2, 4, 6, 7) for p in ("weight", "bias")]
    miss = [prefix + k for k in need if k not in head]
    if miss:
        raise files.corrupt_error(verifier, path, f"missing the head keys {miss}", expected, source)
    mlp = RewardMLP(head["layers.0.weight"].shape[1])
    try:
        mlp.load_state_dict({k: head[k] for k in need})
    except RuntimeError as err:
        raise files.corrupt_error(verifier, path, f"head shapes do not match: {str(err).splitlines()[-1]}", expected, source) from err
    return mlp.eval()


class AestheticVerifier(Verifier):
    """LAION aesthetic predictor: MLP on the L2-normalised CLIP ViT-L/14 image embedding."""

    name = "aesthetic"
    condition = None

    def __init__(self, model: nn.Module, mlp: RewardMLP, preprocess: ImagePreprocess, weights_id: str = "",
                 device: Union[str, torch.device] = "cpu", dtype: torch.dtype = torch.float32, batch_size: int = 16,
                 cache_size: int = 0) -> None:
        super().__init__(weights_id, device, dtype, batch_size, cache_size)
        self.model = model.to(self.device, dtype).eval()
        self.mlp = mlp.to(self.device, dtype).eval()
        self.preprocess = preprocess

    @torch.no_grad()
    def image_embeds(self, images: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(images, self.device, self.dtype)
        pooled = self.model.vision_model(pixel_values=x).pooler_output
        return F.normalize(self.model.visual_projection(pooled).float(), dim=-1)

    def _score(self, images, conditions, early):
        return self.mlp(self.image_embeds(images).to(self.dtype)).float().flatten()


AESTHETIC_FILE = "sac+logos+ava1-l14-linearMSE.pth"


def load_aesthetic(path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu",
                   dtype: torch.dtype = torch.float32, clip_path: Optional[str] = None, head: Optional[str] = None,
                   batch_size: int = 16, **_: Any) -> AestheticVerifier:
    """Folder layout: ``<path>/sac+logos+ava1-l14-linearMSE.pth`` and the CLIP ViT-L/14 folder either in
    ``<path>/clip/`` or the CLIP files in ``<path>`` itself (or ``clip_path=``). ``path`` may be the .pth file."""
    name = "aesthetic"
    expected = [AESTHETIC_FILE, "clip/ (a CLIP ViT-L/14 folder: config.json, model.safetensors)"]
    folder = files.as_folder(path, name, expected, AESTHETIC_SOURCE)
    if head is None and os.path.isfile(str(path)):
        head = str(path)
    head = head or files.find_file(folder, [AESTHETIC_FILE, "aesthetic.safetensors", "aesthetic.pth"], name, expected, AESTHETIC_SOURCE, what=AESTHETIC_FILE)
    if clip_path is None:
        clip_path = os.path.join(folder, "clip") if os.path.isdir(os.path.join(folder, "clip")) else folder
    if not os.path.isfile(os.path.join(clip_path, "config.json")):
        raise files.missing_error(name, "the CLIP ViT-L/14 folder (config.json)", clip_path, expected, AESTHETIC_SOURCE)
    sd = files.load_torch_file(head, name, expected, AESTHETIC_SOURCE)
    mlp = load_reward_mlp(sd, head, name, expected, AESTHETIC_SOURCE)
    # the predictor's simple_inference.py scores with openai CLIP's clip.load("ViT-L/14") preprocess: torchvision
    # Resize + CenterCrop on the PIL image (rounded crop offset)
    model, _, pre = load_clip_folder(clip_path, name, AESTHETIC_SOURCE, need_text=False, crop_offset="round")
    dim = model.config.projection_dim
    if mlp.layers[0].in_features != dim:
        raise files.corrupt_error(name, head, f"the head takes {mlp.layers[0].in_features}-d embeddings but the CLIP model in {clip_path} gives {dim}-d "
                                  "(the LAION predictor needs CLIP ViT-L/14)", expected, AESTHETIC_SOURCE)
    return AestheticVerifier(model, mlp, pre, weights_id=head, device=device, dtype=dtype, batch_size=batch_size)


# -- open_clip -> transformers CLIPModel ---------------------------------------------------------

def _blocks(sd, prefix):
    idx = {int(m.group(1)) for k in sd for m in [re.match(re.escape(prefix) + r"(\d+)\.", k)] if m}
    return sorted(idx)


VIT_H14_HEADS = {"vision": 16, "text": 16}  # open_clip ViT-H-14: vision head_width 80 (1280/80), text heads 16


def clip_config_from_open_clip(sd: Mapping[str, torch.Tensor], vision_heads: Optional[int] = None,
                               text_heads: Optional[int] = None, hidden_act: str = "gelu", layer_norm_eps: float = 1e-5,
                               bos_token_id: int = 49406, eos_token_id: int = 49407) -> CLIPConfig:
    """A transformers ``CLIPConfig`` matching an open_clip ViT state dict (dims read from the shapes).
    Heads are not in the weights: default ViT-H-14's (16 / 16) when widths are 1280 / 1024, else width // 64.
    The text tower pools at the first ``eos_token_id`` (CLIP BPE: 49407, also the highest id, so this equals
    open_clip's argmax pooling; pass the tokenizer's ids for other vocabularies)."""
    from transformers import CLIPConfig

    vw = sd["visual.class_embedding"].shape[0]
    tw = sd["token_embedding.weight"].shape[1]
    patch = sd["visual.conv1.weight"].shape[-1]
    grid = int(round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5))
    vl = len(_blocks(sd, "visual.transformer.resblocks."))
    tl = len(_blocks(sd, "transformer.resblocks."))
    if vision_heads is None:
        vision_heads = VIT_H14_HEADS["vision"] if vw == 1280 else max(1, vw // 64)
    if text_heads is None:
        text_heads = VIT_H14_HEADS["text"] if tw == 1024 else max(1, tw // 64)
    vision = dict(hidden_size=vw, intermediate_size=sd["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
                  num_hidden_layers=vl, num_attention_heads=vision_heads, image_size=grid * patch, patch_size=patch,
                  hidden_act=hidden_act, layer_norm_eps=layer_norm_eps, projection_dim=sd["visual.proj"].shape[1])
    text = dict(vocab_size=sd["token_embedding.weight"].shape[0], hidden_size=tw,
                intermediate_size=sd["transformer.resblocks.0.mlp.c_fc.weight"].shape[0], num_hidden_layers=tl,
                num_attention_heads=text_heads, max_position_embeddings=sd["positional_embedding"].shape[0],
                hidden_act=hidden_act, layer_norm_eps=layer_norm_eps, bos_token_id=bos_token_id, eos_token_id=eos_token_id,
                pad_token_id=0, projection_dim=sd["text_projection"].shape[1])
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=sd["text_projection"].shape[1])


def vit_h14_config() -> CLIPConfig:
    """The ``CLIPConfig`` of open_clip ViT-H-14 (HPSv2's backbone), built in code."""
    from transformers import CLIPConfig

    return CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                         max_position_embeddings=77, hidden_act="gelu", layer_norm_eps=1e-5, bos_token_id=49406, eos_token_id=49407,
                         pad_token_id=0, projection_dim=1024),
        vision_config=dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16, image_size=224,
                           patch_size=14, hidden_act="gelu", layer_norm_eps=1e-5, projection_dim=1024),
        projection_dim=1024)


def convert_open_clip_state_dict(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """open_clip ViT CLIP state dict -> transformers ``CLIPModel`` state dict (the key map below; tests/test_verifiers_conversion.py checks it)."""
    out = {}
    if "logit_scale" in sd:
        out["logit_scale"] = sd["logit_scale"].reshape(())
    V, T = "vision_model.", "text_model."
    simple = {
        "visual.class_embedding": V + "embeddings.class_embedding",
        "visual.conv1.weight": V + "embeddings.patch_embedding.weight",
        "visual.positional_embedding": V + "embeddings.position_embedding.weight",
        "visual.ln_pre.weight": V + "pre_layrnorm.weight", "visual.ln_pre.bias": V + "pre_layrnorm.bias",
        "visual.ln_post.weight": V + "post_layernorm.weight", "visual.ln_post.bias": V + "post_layernorm.bias",
        "token_embedding.weight": T + "embeddings.token_embedding.weight",
        "positional_embedding": T + "embeddings.position_embedding.weight",
        "ln_final.weight": T + "final_layer_norm.weight", "ln_final.bias": T + "final_layer_norm.bias",
    }
    for k, v in simple.items():
        out[v] = sd[k]
    out["visual_projection.weight"] = sd["visual.proj"].T.contiguous()
    out["text_projection.weight"] = sd["text_projection"].T.contiguous()
    for src, dst in (("visual.transformer.resblocks.", V + "encoder.layers."), ("transformer.resblocks.", T + "encoder.layers.")):
        for i in _blocks(sd, src):
            s, d = f"{src}{i}.", f"{dst}{i}."
            for kind in ("weight", "bias"):
                q, k_, v_ = sd[f"{s}attn.in_proj_{kind}"].chunk(3, dim=0)
                out[f"{d}self_attn.q_proj.{kind}"] = q.contiguous()
                out[f"{d}self_attn.k_proj.{kind}"] = k_.contiguous()
                out[f"{d}self_attn.v_proj.{kind}"] = v_.contiguous()
                out[f"{d}self_attn.out_proj.{kind}"] = sd[f"{s}attn.out_proj.{kind}"]
                out[f"{d}layer_norm1.{kind}"] = sd[f"{s}ln_1.{kind}"]
                out[f"{d}layer_norm2.{kind}"] = sd[f"{s}ln_2.{kind}"]
                out[f"{d}mlp.fc1.{kind}"] = sd[f"{s}mlp.c_fc.{kind}"]
                out[f"{d}mlp.fc2.{kind}"] = sd[f"{s}mlp.c_proj.{kind}"]
    return out


def clip_from_open_clip(sd: Mapping[str, torch.Tensor], config: Optional[CLIPConfig] = None,
                        dtype: torch.dtype = torch.float32, **config_kw: Any) -> CLIPModel:
    """Build a ``CLIPModel`` from an open_clip state dict (missing/unexpected keys raise ``ValueError``)."""
    from transformers import CLIPModel

    config = config or clip_config_from_open_clip(sd, **config_kw)
    hf = convert_open_clip_state_dict(sd)
    model = CLIPModel(config)
    res = model.load_state_dict(hf, strict=False)
    missing = [k for k in res.missing_keys if not k.endswith("position_ids")]
    unexpected = list(res.unexpected_keys)
    if missing or unexpected:
        raise ValueError(f"open_clip -> CLIPModel conversion: missing {missing[:8]}, unexpected {unexpected[:8]}")
    return model.to(dtype).eval()


HPS_FILES = {"hpsv2": "HPS_v2_compressed.pt", "hpsv2.1": "HPS_v2.1_compressed.pt"}


def load_hps(path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu", dtype: torch.dtype = torch.float32,
             version: Optional[str] = None, batch_size: int = 16, allow_pickle: bool = False,
             tokenizer_path: Optional[str] = None, vision_heads: Optional[int] = None, text_heads: Optional[int] = None,
             **_: Any) -> HPSVerifier:
    """HPSv2 (``version='hpsv2'``) or v2.1 (``'hpsv2.1'``). Layout: ``<path>/HPS_v2_compressed.pt`` and/or
    ``HPS_v2.1_compressed.pt``, with a CLIP tokenizer beside it (tokenizer.json or vocab.json + merges.txt, in the
    folder or in ``tokenizer/``). ``path`` may also be the .pt file itself."""
    version = version or "hpsv2"
    name = version
    ckpt_name = HPS_FILES[version]
    expected = [ckpt_name, "tokenizer.json (or vocab.json + merges.txt) and tokenizer_config.json, here or in tokenizer/"]
    folder = files.as_folder(path, name, expected, HPS_SOURCE)
    ckpt = str(path) if os.path.isfile(str(path)) else files.find_file(folder, [ckpt_name], name, expected, HPS_SOURCE)
    if tokenizer_path is None:
        sub = os.path.join(folder, "tokenizer")
        tokenizer_path = sub if os.path.isdir(sub) else folder
    if not any(os.path.isfile(os.path.join(tokenizer_path, f)) for f in files.TOKENIZER_FILES):
        raise files.missing_error(name, "the CLIP tokenizer (tokenizer.json or vocab.json + merges.txt)", tokenizer_path, expected, HPS_SOURCE)
    raw = files.load_torch_file(ckpt, name, expected, HPS_SOURCE, allow_pickle=allow_pickle)
    sd = raw.get("state_dict", raw) if isinstance(raw, dict) else None
    if not isinstance(sd, dict) or "visual.class_embedding" not in {k.replace("module.", "", 1) for k in sd}:
        raise files.corrupt_error(name, ckpt, "not an open_clip checkpoint (no state_dict with visual.class_embedding)", expected, HPS_SOURCE)
    sd = {k[7:] if k.startswith("module.") else k: v for k, v in sd.items()}
    tok = use_open_clip_text(load_tokenizer(tokenizer_path, name, HPS_SOURCE))  # hpsv2.score tokenises with open_clip
    try:
        model = clip_from_open_clip(sd, vision_heads=vision_heads, text_heads=text_heads, bos_token_id=tok.bos_token_id,
                                    eos_token_id=tok.eos_token_id)
    except (KeyError, ValueError, RuntimeError) as err:
        raise files.corrupt_error(name, ckpt, f"open_clip -> CLIPModel conversion failed: {err}", expected, HPS_SOURCE) from err
    # hpsv2.score: open_clip image_transform(resize_longest_max=True): ToTensor, then ResizeMaxSize on the float image
    pre = ImagePreprocess(model.config.vision_config.image_size, mode="pad")
    v = HPSVerifier(model, tok, pre, weights_id=ckpt, device=device, dtype=dtype, batch_size=batch_size)
    v.name = version
    return v


def load_clip_score(path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu",
                    dtype: torch.dtype = torch.float32, batch_size: int = 16, cache_size: int = 256, scale: str = "cosine",
                    **_: Any) -> CLIPScoreVerifier:
    """Layout: a CLIP folder saved with ``save_pretrained`` (config.json, model.safetensors, tokenizer files,
    preprocessor_config.json optional). ``scale``: "cosine" (default), "hessel" or "torchmetrics" (``CLIPScoreVerifier``;
    checked before any file is read). Pixels as the scale's original computes them: "torchmetrics", the folder's
    transformers CLIPImageProcessor (PIL backend; torchmetrics runs CLIPProcessor); "hessel" and "cosine", OpenAI
    CLIP's preprocess as Hessel's clipscore.py writes it (torchvision Resize + CenterCrop on the PIL image, rounded
    crop offset), the pipeline of the CLIPScore figures Ma et al. report."""
    check_clip_score_scale(scale)
    crop_offset = "floor" if scale == "torchmetrics" else "round"
    model, tok, pre = load_clip_folder(path, "clip_score", CLIP_SOURCE, crop_offset=crop_offset)
    if scale == "hessel":  # Hessel's clipscore.py tokenises with OpenAI CLIP's clip.tokenize
        use_open_clip_text(tok)
    return CLIPScoreVerifier(model, tok, pre, scale=scale, weights_id=str(path), device=device, dtype=dtype, batch_size=batch_size,
                             cache_size=cache_size)


def load_pick_score(path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu",
                    dtype: torch.dtype = torch.float32, batch_size: int = 16, cache_size: int = 256,
                    **_: Any) -> PickScoreVerifier:
    """Layout: the PickScore_v1 ``CLIPModel`` folder with the CLIP-H tokenizer and preprocessor files copied in.
    Pixels as PickScore's scoring code computes them: ``AutoProcessor`` of laion/CLIP-ViT-H-14, a transformers
    CLIPImageProcessor (PIL backend)."""
    model, tok, pre = load_clip_folder(path, "pick_score", PICKSCORE_SOURCE)
    return PickScoreVerifier(model, tok, pre, weights_id=str(path), device=device, dtype=dtype, batch_size=batch_size, cache_size=cache_size)


def load_clip_zero_shot(path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu",
                        dtype: torch.dtype = torch.float32, class_names: Union[Sequence[str], str, os.PathLike, None] = None,
                        templates: Union[str, Sequence[str], None] = None, output: str = "logit", batch_size: int = 16,
                        cache_size: int = 1024, **_: Any) -> CLIPZeroShotVerifier:
    """Layout: a CLIP folder (as ``clip_score``); ``class_names`` (list or text file; default the ImageNet names;
    a ``classnames.txt`` in the folder is used when present), ``templates`` ('imagenet80', 'simple' or a list).
    Pixels as OpenAI CLIP's zero-shot ImageNet notebook computes them: ``clip.load``'s preprocess, torchvision Resize +
    CenterCrop on the PIL image (rounded crop offset)."""
    model, tok, pre = load_clip_folder(path, "clip_zero_shot", CLIP_SOURCE, crop_offset="round")
    folder = files.as_folder(path, "clip_zero_shot", [], CLIP_SOURCE)
    if class_names is None and os.path.isfile(os.path.join(folder, "classnames.txt")):
        class_names = os.path.join(folder, "classnames.txt")
    return CLIPZeroShotVerifier(model, tok, pre, class_names=class_names, templates=templates, output=output, weights_id=str(path),
                                device=device, dtype=dtype, batch_size=batch_size, cache_size=cache_size)
