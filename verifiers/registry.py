"""Verifier registry: ``available()`` and ``load_verifier(name, path, device='cpu', dtype=torch.float32, **opts)``.

Every verifier loads offline from a local folder or file (inside ComfyUI: ``models/verifiers/<name>/``; the node
layer resolves that path). Folder layouts (see each loader's docstring):

=================  ======================================================================================
clip_score         CLIP folder saved with save_pretrained: config.json, model.safetensors, tokenizer files;
                   scale='cosine' (default) | 'hessel' | 'torchmetrics' (docs/verifier-scales.md)
pick_score         PickScore_v1 CLIPModel folder + the CLIP-H tokenizer / preprocessor files
hpsv2, hpsv2.1     HPS_v2_compressed.pt / HPS_v2.1_compressed.pt + CLIP tokenizer files (here or tokenizer/)
aesthetic          sac+logos+ava1-l14-linearMSE.pth + CLIP ViT-L/14 folder in clip/ (or the same folder)
image_reward       ImageReward.pt + med_config.json + vocab.txt (bert-base-uncased; here or tokenizer/)
clip_zero_shot     CLIP folder (as clip_score); class_names= (default ImageNet), templates=
dino_linear        Dinov2Model folder + linear head file (*head*.pth / .safetensors)
self_supervised    Dinov2Model or CLIP folder (features for cos(early x0, final))
classifier         transformers image-classification folder (AutoModelForImageClassification), .pt2 or TorchScript file
vlm_grader         image-text-to-text folder (e.g. Qwen2-VL): model + processor + tokenizer
ensemble           members=[verifier objects or (name, path[, opts])], rule='mean_rank'|'zscore', weights=
=================  ======================================================================================
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence, Union

import torch

from . import files
from .base import IMAGENET_MEAN, IMAGENET_STD, ClassifierVerifier
from .clip import (CLIP_SCORE_SCALES, load_aesthetic, load_clip_score, load_clip_zero_shot, load_hps, load_pick_score,
                   preprocess_from_folder)
from .ensemble import EnsembleVerifier
from .features import load_dino_linear, load_self_supervised
from .imagereward import load_image_reward
from .vlm import load_vlm_grader

if TYPE_CHECKING:  # the types only
    from .base import Verifier

__all__ = ['CLASSIFIER_SOURCE', 'load_classifier', 'load_ensemble', 'LOADERS', 'SOURCES', 'SCALES', 'available',
           'load_verifier']

CLASSIFIER_SOURCE = "any transformers image classifier saved with save_pretrained, or torch.export.save / torch.jit.save of a torch classifier"


def load_classifier(path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu",
                    dtype: torch.dtype = torch.float32, num_classes: Optional[int] = None, size: int = 224,
                    resize: Optional[int] = None, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                    output: str = "logit", batch_size: int = 64, **_: Any) -> ClassifierVerifier:
    """Layout: a transformers ``*ForImageClassification`` folder (config.json, model.safetensors, preprocessor_config.json
    optional), or a file: ``torch.export.save`` program (``.pt2``) or TorchScript (``.pt``/``.ts``); for a file give
    ``num_classes``, ``size``, ``mean``, ``std``."""
    from transformers import AutoModelForImageClassification

    name = "classifier"
    expected = ["config.json + model.safetensors (an image classifier saved with save_pretrained)",
                "or a torch.export .pt2 / TorchScript .pt file"]
    p = os.path.abspath(os.path.expanduser(str(path)))
    if os.path.isfile(p):
        try:
            if p.endswith(".pt2"):
                model = torch.export.load(p).module()
            else:
                model = torch.jit.load(p, map_location="cpu")
        except Exception as err:  # noqa: BLE001
            raise files.corrupt_error(name, p, f"not a torch.export / TorchScript file: {type(err).__name__}: "
                                      f"{str(err).splitlines()[0] if str(err) else ''}", expected, CLASSIFIER_SOURCE) from err
        if num_classes is None:
            raise ValueError("classifier verifier: a TorchScript classifier needs num_classes=")
        from .base import ImagePreprocess
        pre = ImagePreprocess(size, resize or int(round(size * 256 / 224)), mean, std)
        return ClassifierVerifier(model, pre, num_classes, weights_id=p, device=device, dtype=dtype, batch_size=batch_size, output=output)
    folder = files.as_folder(p, name, expected, CLASSIFIER_SOURCE)
    files.check_hf_folder(folder, name, CLASSIFIER_SOURCE)
    model = files.from_pretrained(AutoModelForImageClassification, folder, name, CLASSIFIER_SOURCE)
    pre = preprocess_from_folder(folder, size, mean, std)
    return ClassifierVerifier(model, pre, model.config.num_labels, weights_id=folder, device=device, dtype=dtype, batch_size=batch_size,
                              output=output)


def load_ensemble(path: Optional[Union[str, os.PathLike]] = None, device: Union[str, torch.device] = "cpu",
                  dtype: torch.dtype = torch.float32, members: Sequence[Union[Verifier, tuple, list]] = (),
                  rule: str = "mean_rank", weights: Optional[Mapping[str, float]] = None, **_: Any) -> EnsembleVerifier:
    """``members``: verifier objects, or ``(name, path)`` / ``(name, path, opts)`` tuples loaded here."""
    built = []
    for m in members:
        if isinstance(m, (tuple, list)):
            n, p, *rest = m
            built.append(load_verifier(n, p, device=device, dtype=dtype, **(rest[0] if rest else {})))
        else:
            built.append(m)
    return EnsembleVerifier(built, rule=rule, weights=weights)


LOADERS = {
    "clip_score": load_clip_score,
    "pick_score": load_pick_score,
    "hpsv2": lambda path, **kw: load_hps(path, version="hpsv2", **kw),
    "hpsv2.1": lambda path, **kw: load_hps(path, version="hpsv2.1", **kw),
    "aesthetic": load_aesthetic,
    "image_reward": load_image_reward,
    "clip_zero_shot": load_clip_zero_shot,
    "dino_linear": load_dino_linear,
    "self_supervised": load_self_supervised,
    "classifier": load_classifier,
    "vlm_grader": load_vlm_grader,
    "ensemble": load_ensemble,
}

SOURCES = {
    "clip_score": "huggingface.co/openai/clip-vit-large-patch14",
    "pick_score": "huggingface.co/yuvalkirstain/PickScore_v1",
    "hpsv2": "huggingface.co/xswu/HPSv2", "hpsv2.1": "huggingface.co/xswu/HPSv2",
    "aesthetic": "github.com/christophschuhmann/improved-aesthetic-predictor",
    "image_reward": "huggingface.co/THUDM/ImageReward",
    "clip_zero_shot": "huggingface.co/openai/clip-vit-large-patch14",
    "dino_linear": "huggingface.co/facebook/dinov2-small + github.com/facebookresearch/dinov2",
    "self_supervised": "huggingface.co/facebook/dinov2-small",
    "classifier": "any image classifier", "vlm_grader": "huggingface.co/Qwen/Qwen2-VL-2B-Instruct", "ensemble": "(built from other verifiers)",
}


SCALES = {"clip_score": CLIP_SCORE_SCALES}  # verifiers with a ``scale=`` option, and its values


def available() -> list[str]:
    """Names ``load_verifier`` accepts."""
    return list(LOADERS)


def load_verifier(name: str, path: Optional[Union[str, os.PathLike]] = None, device: Union[str, torch.device] = "cpu",
                  dtype: Union[torch.dtype, str] = torch.float32, **opts: Any) -> Verifier:
    """Load verifier ``name`` from a local folder or file ``path`` (never from a hub).

    Raises ``ValueError`` for an unknown name (listing the valid ones) or a ``scale=`` the verifier does not have,
    ``MissingWeightsError`` / ``CorruptWeightsError`` (``OSError``) naming the file, its folder, the expected files
    and where to get them."""
    key = str(name).strip().lower().replace("-", "_")
    key = {"hpsv2_1": "hpsv2.1", "hpsv21": "hpsv2.1", "imagereward": "image_reward", "pickscore": "pick_score", "clipscore": "clip_score"}.get(key, key)
    if key not in LOADERS:
        raise ValueError(f"unknown verifier {name!r}; valid names: {', '.join(available())}")
    if "scale" in opts and key not in SCALES:
        have = "; ".join(f"{k}: {', '.join(v)}" for k, v in SCALES.items())
        raise ValueError(f"verifier {key!r} has no scale option (scale={opts['scale']!r} given); only {have}")
    if path is None and key != "ensemble":
        raise ValueError(f"verifier {key!r} needs a path to its weights (a folder or file; get them from {SOURCES[key]})")
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    return LOADERS[key](path, device=device, dtype=dtype, **opts)
