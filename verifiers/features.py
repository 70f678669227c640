"""DINOv2 verifiers and the self-supervised verifier.

- ``dino_linear``: a transformers ``Dinov2Model`` + a torch ``Linear`` head (DINOv2's published ImageNet linear
  heads, ``dinov2_vit*14_linear_head.pth`` / ``..._linear4_head.pth``): score = the generation class's logit.
  Head input by its width: D -> CLS; 2D -> [CLS, mean patch token] (the published ``linear`` heads);
  5D -> [CLS of the last 4 layers (layer-normed), mean patch token] (the ``linear4`` heads).
- ``self_supervised`` (Ma et al.): ``cos(phi(x0_hat at sigma ~ 0.4), phi(final sample))`` in the feature space of
  DINO, CLIP or any feature extractor; ``needs_early = True``: the search core hands it ``Batch.early``.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import files
from .base import IMAGENET_MEAN, IMAGENET_STD, ImagePreprocess, Verifier, class_ids
from .clip import CLIP_SOURCE, image_processor_config, load_clip_folder, preprocess_from_folder

__all__ = ['DINO_SOURCE', 'DINO_EXPECTED', 'dino_preprocess', 'load_dino_folder', 'DinoFeatures', 'head_layout',
           'load_linear_head', 'DinoLinearVerifier', 'find_head', 'load_dino_linear', 'SelfSupervisedVerifier',
           'DinoCLS', 'CLIPImageEmbeds', 'load_self_supervised']

DINO_SOURCE = ("huggingface.co/facebook/dinov2-small (or -base/-large/-giant; the backbone) and "
               "github.com/facebookresearch/dinov2 (the ImageNet linear head, e.g. dinov2_vits14_linear_head.pth)")
DINO_EXPECTED = ["config.json", "model.safetensors", "a linear head file (*linear*head*.pth or head.safetensors: weight [classes, D|2D|5D], bias)"]


def dino_preprocess(folder: str) -> ImagePreprocess:
    """DINOv2's evaluation transform (``make_classification_eval_transform`` of facebookresearch/dinov2, which its
    linear heads were evaluated with): torchvision ``Resize(256, BICUBIC)`` and ``CenterCrop(224)`` on the PIL image
    (rounded crop offset), ImageNet mean/std. Sizes, mean, std and filter come from the folder's image-processor
    config when it has one (facebook/dinov2-*: the same 256 / 224 / bicubic / ImageNet values)."""
    if image_processor_config(folder):
        return preprocess_from_folder(folder, 224, IMAGENET_MEAN, IMAGENET_STD, crop_offset="round")
    return ImagePreprocess(224, 256, IMAGENET_MEAN, IMAGENET_STD, crop_offset="round")


def load_dino_folder(path: Union[str, os.PathLike], verifier: str = "dino_linear", source: str = DINO_SOURCE,
                     expected: Optional[Sequence[str]] = None) -> tuple[nn.Module, ImagePreprocess]:
    from transformers import Dinov2Model

    folder = files.as_folder(path, verifier, expected or DINO_EXPECTED, source)
    cfg = files.check_hf_folder(folder, verifier, source)
    if cfg.get("model_type") != "dinov2":
        raise files.CorruptWeightsError(f"{verifier} verifier: {os.path.join(folder, 'config.json')} has model_type {cfg.get('model_type')!r}; "
                                        f"expected 'dinov2' (a Dinov2Model saved with save_pretrained; get one from {source})")
    return files.from_pretrained(Dinov2Model, folder, verifier, source), dino_preprocess(folder)


class DinoFeatures(nn.Module):
    """Dinov2Model -> head input: ``blocks=1`` CLS; ``avgpool`` adds the mean patch token; ``blocks=4`` concatenates
    the layer-normed CLS of the last 4 layers (DINOv2's ``create_linear_input``)."""

    def __init__(self, model: nn.Module, blocks: int = 1, avgpool: bool = True) -> None:
        super().__init__()
        self.model, self.blocks, self.avgpool = model, int(blocks), bool(avgpool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=x, output_hidden_states=self.blocks > 1)
        last = out.last_hidden_state
        if self.blocks > 1:
            cls = [self.model.layernorm(h)[:, 0] for h in out.hidden_states[-self.blocks:]]
        else:
            cls = [last[:, 0]]
        if self.avgpool:
            cls.append(last[:, 1:].mean(1))
        return torch.cat(cls, dim=-1)


def head_layout(in_features: int, dim: int) -> tuple[int, bool]:
    """(blocks, avgpool) from a head's input width and the backbone width."""
    layouts = {dim: (1, False), 2 * dim: (1, True), 5 * dim: (4, True), 4 * dim: (4, False)}
    if in_features not in layouts:
        raise ValueError(f"head input width {in_features} fits none of D, 2D, 4D, 5D for the backbone width D = {dim}")
    return layouts[in_features]


def load_linear_head(path: str, verifier: str, expected: Sequence[str], source: str) -> nn.Linear:
    sd = files.load_torch_file(path, verifier, expected, source)
    if isinstance(sd, nn.Module):
        sd = sd.state_dict()
    if not isinstance(sd, dict):
        raise files.corrupt_error(verifier, path, f"expected a state dict with weight/bias, got {type(sd).__name__}", expected, source)
    sd = sd.get("state_dict", sd)
    w = [k for k, v in sd.items() if k.endswith("weight") and torch.is_tensor(v) and v.ndim == 2]
    if len(w) != 1:
        raise files.corrupt_error(verifier, path, f"expected exactly one 2-D weight (a torch Linear), found {w or 'none'}", expected, source)
    weight = sd[w[0]]
    bias = sd.get(w[0][: -len("weight")] + "bias")
    head = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        head.weight.copy_(weight)
        if bias is not None:
            head.bias.copy_(bias)
    return head.eval()


class DinoLinearVerifier(Verifier):
    name = "dino_linear"
    condition = "class"

    def __init__(self, model: nn.Module, head: nn.Linear, preprocess: ImagePreprocess, weights_id: str = "",
                 device: Union[str, torch.device] = "cpu", dtype: torch.dtype = torch.float32, batch_size: int = 16,
                 output: str = "logit") -> None:
        super().__init__(weights_id, device, dtype, batch_size, 0)
        if output not in ("logit", "log_prob"):
            raise ValueError(f"output must be 'logit' or 'log_prob', got {output!r}")
        blocks, avgpool = head_layout(head.in_features, model.config.hidden_size)
        self.features = DinoFeatures(model, blocks, avgpool).to(self.device, dtype).eval()
        self.head = head.to(self.device, dtype).eval()
        self.preprocess, self.output, self.num_classes = preprocess, output, head.out_features

    def check_conditions(self, conds: list) -> list:
        class_ids(conds, self.num_classes)
        return conds

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.preprocess(images, self.device, self.dtype))).float()

    def _score(self, images, conditions, early):
        ids = class_ids(conditions, self.num_classes)
        logits = self.logits(images)
        if self.output == "log_prob":
            logits = logits.log_softmax(-1)
        return logits[torch.arange(len(ids)), torch.tensor(ids, device=logits.device)]


def find_head(folder: str, verifier: str, expected: Sequence[str], source: str) -> str:
    names = sorted(n for n in os.listdir(folder) if "head" in n and n.endswith((".pth", ".pt", ".safetensors")))
    if not names:
        raise files.missing_error(verifier, "a linear head file (*head*.pth / *head*.safetensors)", folder, expected, source)
    if len(names) > 1:
        raise ValueError(f"{verifier} verifier: several head files in {folder}: {names}; choose one with head=<file name>")
    return os.path.join(folder, names[0])


def load_dino_linear(path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu",
                     dtype: torch.dtype = torch.float32, head: Optional[str] = None, output: str = "logit",
                     batch_size: int = 16, **_: Any) -> DinoLinearVerifier:
    """Layout: a Dinov2Model folder (config.json, model.safetensors) holding the linear head file
    (``dinov2_vits14_linear_head.pth`` or any ``*head*.pth``/``.safetensors``; choose with ``head=``)."""
    name = "dino_linear"
    folder = files.as_folder(path, name, DINO_EXPECTED, DINO_SOURCE)
    if head is None:
        head = find_head(folder, name, DINO_EXPECTED, DINO_SOURCE)
    elif not os.path.isabs(head):
        head = files.find_file(folder, [head], name, DINO_EXPECTED, DINO_SOURCE)
    elif not os.path.isfile(head):
        raise files.missing_error(name, os.path.basename(head), os.path.dirname(head), DINO_EXPECTED, DINO_SOURCE)
    lin = load_linear_head(head, name, DINO_EXPECTED, DINO_SOURCE)
    model, pre = load_dino_folder(folder, name)
    try:
        head_layout(lin.in_features, model.config.hidden_size)
    except ValueError as err:
        raise files.corrupt_error(name, head, str(err), DINO_EXPECTED, DINO_SOURCE) from err
    return DinoLinearVerifier(model, lin, pre, weights_id=head, device=device, dtype=dtype, batch_size=batch_size, output=output)


# -- self-supervised -----------------------------------------------------------------------------

class SelfSupervisedVerifier(Verifier):
    """Ma et al.'s self-supervised verifier: ``cos(features(early x0 prediction), features(final sample))``.

    ``features`` maps IMAGE [B,H,W,C] to [B, D] (any extractor: DINO CLS, CLIP image embedding, a classifier's
    penultimate layer...). Higher = the sample stayed closer to what the model predicted at sigma ~ 0.4."""

    name = "self_supervised"
    condition = None
    needs_early = True

    def __init__(self, features: Callable[[torch.Tensor], torch.Tensor], weights_id: str = "",
                 device: Union[str, torch.device] = "cpu", dtype: torch.dtype = torch.float32, batch_size: int = 16) -> None:
        super().__init__(weights_id, device, dtype, batch_size, 0)
        self.features = features

    def _score(self, images, conditions, early):
        if early.shape == images.shape:
            f = self.features(torch.cat([early, images])).float()
            fe, fi = f[: images.shape[0]], f[images.shape[0]:]
        else:
            fe, fi = self.features(early).float(), self.features(images).float()
        return F.cosine_similarity(fe.flatten(1), fi.flatten(1), dim=-1)


class DinoCLS(nn.Module):
    """IMAGE -> DINOv2 CLS feature (layer-normed, the backbone's ``pooler_output``)."""

    def __init__(self, model: nn.Module, preprocess: ImagePreprocess, device: Union[str, torch.device],
                 dtype: torch.dtype) -> None:
        super().__init__()
        self.model, self.preprocess, self.device, self.dtype = model.to(device, dtype).eval(), preprocess, device, dtype

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=self.preprocess(images, self.device, self.dtype)).pooler_output


class CLIPImageEmbeds(nn.Module):
    """IMAGE -> CLIP image embedding (projected)."""

    def __init__(self, model: nn.Module, preprocess: ImagePreprocess, device: Union[str, torch.device],
                 dtype: torch.dtype) -> None:
        super().__init__()
        self.model, self.preprocess, self.device, self.dtype = model.to(device, dtype).eval(), preprocess, device, dtype

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pooled = self.model.vision_model(pixel_values=self.preprocess(images, self.device, self.dtype)).pooler_output
        return self.model.visual_projection(pooled)


def load_self_supervised(path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu",
                         dtype: torch.dtype = torch.float32, batch_size: int = 16, **_: Any) -> SelfSupervisedVerifier:
    """Layout: a DINOv2 folder (``Dinov2Model``: CLS features, the paper's DINO space) or a CLIP folder
    (``CLIPModel`` / ``CLIPVisionModelWithProjection``: image embeddings); the kind is read from config.json.
    Ma et al. publish no code for this verifier, so each backbone sees its own reference preprocessing: DINOv2's
    evaluation transform (``dino_preprocess``), the CLIP folder's transformers CLIPImageProcessor."""
    name = "self_supervised"
    expected = ["config.json (model_type dinov2 or clip)", "model.safetensors"]
    source = "huggingface.co/facebook/dinov2-small (DINO features) or " + CLIP_SOURCE
    folder = files.as_folder(path, name, expected, source)
    cfg = files.check_json(files.find_file(folder, ["config.json"], name, expected, source), name, expected, source)
    dev = torch.device(device)
    if cfg.get("model_type") == "dinov2":
        model, pre = load_dino_folder(folder, name, source, expected)
        feats = DinoCLS(model, pre, dev, dtype)
    elif cfg.get("model_type") in ("clip", "clip_vision_model"):
        model, _, pre = load_clip_folder(folder, name, source, need_text=False)
        feats = CLIPImageEmbeds(model, pre, dev, dtype)
    else:
        raise files.CorruptWeightsError(f"{name} verifier: {os.path.join(folder, 'config.json')} has model_type {cfg.get('model_type')!r}; "
                                        f"expected 'dinov2' or 'clip' (get one from {source})")
    return SelfSupervisedVerifier(feats, weights_id=folder, device=device, dtype=dtype, batch_size=batch_size)
