"""ImageReward (Xu et al. 2023) on transformers' BLIP modules, from the published ``ImageReward.pt``.

``ImageReward.pt`` is the original BLIP (ViT-L/16 + BERT-base with cross-attention) state dict plus the reward
head ``mlp.layers.*``. It is converted at load time to ``BlipForImageTextRetrieval`` (the key map is below; tests/test_verifiers_conversion.py checks it against the original):
strip ``blip.``; ``visual_encoder.cls_token/pos_embed/patch_embed.proj`` -> ``vision_model.embeddings.
class_embedding/position_embedding/patch_embedding``; ``visual_encoder.norm`` -> ``vision_model.post_layernorm``;
``visual_encoder.blocks.i`` -> ``vision_model.encoder.layers.i`` with ``norm1/2`` -> ``layer_norm1/2``,
``attn.qkv`` -> ``self_attn.qkv``, ``attn.proj`` -> ``self_attn.projection``; ``text_encoder.*`` as is
(minus the ``embeddings.position_ids`` buffer). Only ``itm_head.*`` is absent (unused).

Loading follows ``ImageReward.load`` (``load_state_dict(strict=False)``) where that is harmless: keys the model
does not have (e.g. ``text_encoder.pooler.*``, momentum encoders ``*_m.*``, a ViT head) are ignored with a warning
that lists them; ``itm_head``, ``vision_proj`` and ``text_proj``, which the reward never runs, may be absent.
Refused, as ``CorruptWeightsError`` (see ``check_keys``): a missing key the reward needs, a shape that does not
match, and text-encoder layers beyond ``med_config.json``'s ``num_hidden_layers`` (the original would silently drop
them and score with a shallower network). docs/verifier-scales.md, "Checkpoints".

Score, as ``ImageReward.score``: the text encoder runs on the prompt (BERT-base-uncased + ``[DEC]``/``[ENC]``,
padded to 35 tokens) cross-attending to the image tokens; ``(mlp(CLS) - 0.16717362830052426) / 1.0333394966054072``.
"""

from __future__ import annotations

import os
import re
import warnings
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence, Union

import torch

from . import files
from .base import CLIP_MEAN, CLIP_STD, ImagePreprocess, Verifier
from .clip import load_reward_mlp

if TYPE_CHECKING:  # the types only (transformers is imported where a loader needs it)
    from transformers import BertTokenizer, BlipConfig, PreTrainedTokenizerBase

    from .clip import RewardMLP

__all__ = ['SOURCE', 'EXPECTED', 'MAX_LENGTH', 'UNUSED', 'HEAD_KEYS', 'VISION_FIXED', 'BLOCK_RENAMES', 'convert_key',
           'original_key', 'convert_image_reward_state_dict', 'blip_config', 'build_tokenizer',
           'ImageRewardVerifier', 'check_keys', 'load_image_reward']

SOURCE = ("huggingface.co/THUDM/ImageReward (ImageReward.pt, med_config.json) and huggingface.co/bert-base-uncased "
          "(vocab.txt)")
EXPECTED = ["ImageReward.pt", "med_config.json", "vocab.txt (bert-base-uncased; here or in tokenizer/)"]
MEAN, STD = 0.16717362830052426, 1.0333394966054072
MAX_LENGTH = 35
UNUSED = ("itm_head.", "vision_proj.", "text_proj.")  # BlipForImageTextRetrieval modules the reward never runs
HEAD_KEYS = [f"layers.{i}.{p}" for i in (0, 2, 4, 6, 7) for p in ("weight", "bias")]


VISION_FIXED = {"cls_token": "embeddings.class_embedding", "pos_embed": "embeddings.position_embedding",
                "patch_embed.proj.weight": "embeddings.patch_embedding.weight", "patch_embed.proj.bias": "embeddings.patch_embedding.bias",
                "norm.weight": "post_layernorm.weight", "norm.bias": "post_layernorm.bias"}
BLOCK_RENAMES = (("norm1.", "layer_norm1."), ("norm2.", "layer_norm2."), ("attn.qkv.", "self_attn.qkv."), ("attn.proj.", "self_attn.projection."))


def convert_key(k: str) -> Optional[str]:
    """One ``ImageReward.pt`` key -> its ``BlipForImageTextRetrieval`` key (None: dropped); a ``visual_encoder`` key
    the ViT does not have comes back as ``visual_encoder.<key>`` (then unexpected, ignored as the original does)."""
    if k.startswith("blip."):
        k = k[5:]
    if k == "text_encoder.embeddings.position_ids":
        return None
    if k.startswith("visual_encoder."):
        k = k[len("visual_encoder."):]
        if k in VISION_FIXED:
            return "vision_model." + VISION_FIXED[k]
        m = re.match(r"blocks\.(\d+)\.(.*)", k)
        if not m:
            return "visual_encoder." + k
        rest = m.group(2)
        for a, b in BLOCK_RENAMES:
            if rest.startswith(a):
                rest = b + rest[len(a):]
        return f"vision_model.encoder.layers.{m.group(1)}.{rest}"
    return k


def original_key(k: str) -> str:
    """The ``ImageReward.pt`` name of a ``BlipForImageTextRetrieval`` key (the inverse of ``convert_key``)."""
    if k.startswith("vision_model."):
        k = k[len("vision_model."):]
        inv = {v: o for o, v in VISION_FIXED.items()}
        if k in inv:
            return "blip.visual_encoder." + inv[k]
        m = re.match(r"encoder\.layers\.(\d+)\.(.*)", k)
        if m:
            rest = m.group(2)
            for a, b in BLOCK_RENAMES:
                if rest.startswith(b):
                    rest = a + rest[len(b):]
            return f"blip.visual_encoder.blocks.{m.group(1)}.{rest}"
        return "blip.visual_encoder." + k
    return "blip." + k


def convert_image_reward_state_dict(sd: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """-> (blip_sd for ``BlipForImageTextRetrieval``, head_sd with ``layers.*`` of the reward MLP)."""
    blip, head = {}, {}
    for k, v in sd.items():
        if k.startswith("mlp."):
            head[k[4:]] = v
            continue
        nk = convert_key(k)
        if nk is not None:
            blip[nk] = v
    return blip, head


def blip_config(sd: Mapping[str, torch.Tensor], med_config: Mapping[str, Any],
                vision_heads: Optional[int] = None) -> BlipConfig:
    """``BlipConfig`` for ImageReward: text from ``med_config.json``, vision dims read from the weights
    (ViT-L/16 for the published model: 1024 wide, 24 layers, 16 heads, eps 1e-6)."""
    from transformers import BlipConfig

    vw = sd["blip.visual_encoder.cls_token"].shape[-1]
    patch = sd["blip.visual_encoder.patch_embed.proj.weight"].shape[-1]
    grid = int(round((sd["blip.visual_encoder.pos_embed"].shape[1] - 1) ** 0.5))
    layers = len({int(m.group(1)) for k in sd for m in [re.match(r"blip\.visual_encoder\.blocks\.(\d+)\.", k)] if m})
    vision = dict(hidden_size=vw, intermediate_size=sd["blip.visual_encoder.blocks.0.mlp.fc1.weight"].shape[0], num_hidden_layers=layers,
                  num_attention_heads=vision_heads or max(1, vw // 64), image_size=grid * patch, patch_size=patch, layer_norm_eps=1e-6,
                  hidden_act="gelu")
    m = med_config
    text = dict(vocab_size=m["vocab_size"], hidden_size=m["hidden_size"], num_hidden_layers=m["num_hidden_layers"],
                num_attention_heads=m["num_attention_heads"], intermediate_size=m["intermediate_size"],
                max_position_embeddings=m["max_position_embeddings"], layer_norm_eps=m.get("layer_norm_eps", 1e-12),
                hidden_act=m.get("hidden_act", "gelu"), pad_token_id=m.get("pad_token_id", 0), encoder_hidden_size=vw,
                hidden_dropout_prob=m.get("hidden_dropout_prob", 0.1), attention_probs_dropout_prob=m.get("attention_probs_dropout_prob", 0.1),
                is_decoder=True)
    proj = sd["blip.vision_proj.weight"].shape[0] if "blip.vision_proj.weight" in sd else 256
    return BlipConfig(text_config=text, vision_config=vision, image_text_hidden_size=proj, projection_dim=proj)


def build_tokenizer(vocab_file: str) -> BertTokenizer:
    """bert-base-uncased + bos ``[DEC]`` + additional special ``[ENC]`` (BLIP's ``init_tokenizer``)."""
    from transformers import BertTokenizer

    tok = BertTokenizer(vocab_file, do_lower_case=True)
    tok.add_special_tokens({"bos_token": "[DEC]"})
    tok.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    return tok


class ImageRewardVerifier(Verifier):
    name = "image_reward"
    condition = "prompt"

    def __init__(self, model: torch.nn.Module, mlp: RewardMLP, tokenizer: PreTrainedTokenizerBase,
                 preprocess: Optional[ImagePreprocess] = None, weights_id: str = "",
                 device: Union[str, torch.device] = "cpu", dtype: torch.dtype = torch.float32, batch_size: int = 8,
                 cache_size: int = 256) -> None:
        super().__init__(weights_id, device, dtype, batch_size, cache_size)
        self.model = model.to(self.device, dtype).eval()
        self.mlp = mlp.to(self.device, dtype).eval()
        self.tokenizer = tokenizer
        # ImageReward.ImageReward._transform: torchvision Resize(224, BICUBIC) + CenterCrop(224) on the PIL image, CLIP mean/std
        self.preprocess = preprocess or ImagePreprocess(model.config.vision_config.image_size, mean=CLIP_MEAN, std=CLIP_STD, crop_offset="round")

    def tokenize(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and masks of distinct prompts, cached (the text runs with the image, so only tokens are cached)."""
        def enc(ps):
            t = self.tokenizer(list(ps), padding="max_length", truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
            return torch.stack([t["input_ids"], t["attention_mask"]], dim=1)
        both = self.cache.get_many(list(prompts), enc).to(self.device)
        return both[:, 0], both[:, 1]

    @torch.no_grad()
    def reward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        emb = self.model.vision_model(pixel_values=pixel_values)[0]
        atts = torch.ones(emb.shape[:-1], dtype=torch.long, device=emb.device)
        out = self.model.text_encoder(input_ids=input_ids, attention_mask=attention_mask, encoder_hidden_states=emb,
                                      encoder_attention_mask=atts)
        cls = out.last_hidden_state[:, 0]
        return ((self.mlp(cls).float() - MEAN) / STD).flatten()

    def _score(self, images, conditions, early):
        ids, mask = self.tokenize(conditions)
        return self.reward(self.preprocess(images, self.device, self.dtype), ids, mask)


def check_keys(res: Any, sd: Mapping[str, torch.Tensor], head_sd: Mapping[str, torch.Tensor], config: BlipConfig,
               ckpt: str) -> None:
    """Missing / unexpected keys of the converted checkpoint, judged as the module docstring says (names as in the file)."""
    name = "image_reward"
    original = {convert_key(k): k for k in sd if not k.startswith("mlp.")}
    missing = [original_key(k) for k in res.missing_keys if not k.startswith(UNUSED) and not k.endswith("position_ids")]
    if missing:
        raise files.corrupt_error(name, ckpt, f"missing {len(missing)} key(s) the reward needs: {missing[:6]}", EXPECTED, SOURCE)
    n_layers = config.text_config.num_hidden_layers
    deeper = sorted({int(m.group(1)) for k in res.unexpected_keys for m in [re.match(r"text_encoder\.encoder\.layer\.(\d+)\.", k)]
                     if m and int(m.group(1)) >= n_layers})
    if deeper:
        raise files.corrupt_error(name, ckpt, f"it has text-encoder layers {deeper} beyond med_config.json's num_hidden_layers = {n_layers}; "
                                  "use the med_config.json that came with this checkpoint", EXPECTED, SOURCE)
    ignored = [original.get(k, k) for k in res.unexpected_keys] + ["mlp." + k for k in head_sd if k not in HEAD_KEYS]
    if ignored:
        warnings.warn(f"{name} verifier: {os.path.basename(ckpt)} holds {len(ignored)} key(s) the reward does not use, ignored as "
                      f"ImageReward's own loader ignores them (load_state_dict(strict=False)): {ignored[:6]}"
                      f"{' ...' if len(ignored) > 6 else ''}", UserWarning, stacklevel=3)


def load_image_reward(path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu",
                      dtype: torch.dtype = torch.float32, batch_size: int = 8, vision_heads: Optional[int] = None,
                      vocab: Optional[str] = None, **_: Any) -> ImageRewardVerifier:
    """Layout: ``<path>/ImageReward.pt``, ``<path>/med_config.json``, ``<path>/vocab.txt`` (or ``tokenizer/vocab.txt``);
    ``path`` may be the .pt file itself."""
    from transformers import BlipForImageTextRetrieval

    name = "image_reward"
    folder = files.as_folder(path, name, EXPECTED, SOURCE)
    ckpt = str(path) if os.path.isfile(str(path)) else files.find_file(folder, ["ImageReward.pt"], name, EXPECTED, SOURCE)
    med_path = files.find_file(folder, ["med_config.json"], name, EXPECTED, SOURCE)
    vocab = vocab or files.find_file(folder, ["vocab.txt", "tokenizer/vocab.txt"], name, EXPECTED, SOURCE, what="vocab.txt (bert-base-uncased)")
    med = files.check_json(med_path, name, EXPECTED, SOURCE)
    miss = [k for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "max_position_embeddings")
            if k not in med]
    if miss:
        raise files.corrupt_error(name, med_path, f"missing the BERT fields {miss}", EXPECTED, SOURCE)
    sd = files.load_torch_file(ckpt, name, EXPECTED, SOURCE)
    if not isinstance(sd, dict) or "blip.visual_encoder.cls_token" not in sd:
        raise files.corrupt_error(name, ckpt, "not an ImageReward state dict (no blip.visual_encoder.cls_token)", EXPECTED, SOURCE)
    blip_sd, head_sd = convert_image_reward_state_dict(sd)
    mlp = load_reward_mlp(head_sd, ckpt, name, EXPECTED, SOURCE)
    try:
        config = blip_config(sd, med, vision_heads)
    except KeyError as err:
        raise files.corrupt_error(name, ckpt, f"missing the key {err} that the vision encoder needs", EXPECTED, SOURCE) from err
    model = BlipForImageTextRetrieval(config)
    try:
        res = model.load_state_dict(blip_sd, strict=False)
    except RuntimeError as err:  # shape mismatch: med_config.json does not describe this checkpoint
        lines = [ln.strip() for ln in str(err).splitlines() if "mismatch" in ln] or [str(err).strip()]
        raise files.corrupt_error(name, ckpt, f"shapes do not match med_config.json: {lines[0]} ({len(lines)} tensors differ)",
                                  EXPECTED, SOURCE) from err
    check_keys(res, sd, head_sd, config, ckpt)
    try:
        tok = build_tokenizer(vocab)
    except Exception as err:  # noqa: BLE001
        raise files.corrupt_error(name, vocab, f"{type(err).__name__}: {err}", EXPECTED, SOURCE) from err
    if len(tok) != config.text_config.vocab_size:
        raise files.corrupt_error(name, vocab, f"tokenizer has {len(tok)} tokens with [DEC]/[ENC], the model {config.text_config.vocab_size} "
                                  "(use bert-base-uncased's vocab.txt)", EXPECTED, SOURCE)
    return ImageRewardVerifier(model, mlp, tok, weights_id=ckpt, device=device, dtype=dtype, batch_size=batch_size)
