"""The verifier protocol: score a batch of images against their conditions; higher is better.

Images are ComfyUI IMAGE tensors: float [B, H, W, C] in 0..1 (any size; C = 1 or 3).
Conditions are one prompt string or class id per image (or one shared by all, or None).
A verifier returns a float32 CPU tensor of B scores.
"""

from __future__ import annotations

from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Callable, Hashable, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = ['CLIP_MEAN', 'CLIP_STD', 'IMAGENET_MEAN', 'IMAGENET_STD', 'PIL_BICUBIC', 'check_images',
           'broadcast_conditions', 'to_rgb_nchw', 'quantize_8bit', 'to_uint8', 'shortest_side_size', 'pil_resize',
           'resize_shortest', 'CROP_OFFSETS', 'center_crop', 'resize_max_pad', 'ImagePreprocess', 'EmbeddingCache',
           'Verifier', 'class_ids', 'logits_of', 'ClassifierVerifier']

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PIL_BICUBIC = int(Image.BICUBIC)  # 3, as transformers' preprocessor configs write ``resample``


def check_images(images: torch.Tensor, name: str = "images") -> torch.Tensor:
    if not torch.is_tensor(images) or images.ndim != 4:
        shape = tuple(images.shape) if hasattr(images, "shape") else None
        raise ValueError(f"{name} must be a float tensor [B, H, W, C] in 0..1, got {type(images).__name__} of shape {shape}")
    if images.shape[-1] not in (1, 3, 4):
        raise ValueError(f"{name} must have 1, 3 or 4 channels last ([B, H, W, C]), got shape {tuple(images.shape)}")
    if images.shape[0] < 1 or images.shape[1] < 1 or images.shape[2] < 1:
        raise ValueError(f"{name} must hold at least one image of at least 1x1 pixels, got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"{name} must be floating point in 0..1, got dtype {images.dtype}")
    return images


def broadcast_conditions(conditions: Union[str, int, Sequence, torch.Tensor, None], batch: int,
                         name: str = "conditions") -> list:
    """One condition per image: a single value is shared by the whole batch, a list must match it."""
    if conditions is None or isinstance(conditions, (str, int)):
        return [conditions] * batch
    if torch.is_tensor(conditions):
        conditions = conditions.flatten().tolist()
    conditions = list(conditions)
    if len(conditions) == 1:
        return conditions * batch
    if len(conditions) != batch:
        raise ValueError(f"got {len(conditions)} {name} for {batch} images; give one per image or one for all")
    return conditions


def to_rgb_nchw(images: torch.Tensor) -> torch.Tensor:
    """IMAGE [B,H,W,C] (C = 1, 3 or 4) -> float [B,3,H,W] in 0..1 (grey repeated, alpha dropped)."""
    x = images[..., :3] if images.shape[-1] >= 3 else images[..., :1].expand(*images.shape[:-1], 3)
    return x.permute(0, 3, 1, 2).float()


def quantize_8bit(images: torch.Tensor) -> torch.Tensor:
    """IMAGE [B,H,W,C] -> float [B,3,H,W] holding the whole 8-bit levels 0..255 that ComfyUI's ``SaveImage`` writes
    to PNG: ``np.clip(255. * i, 0, 255).astype(np.uint8)``, a float32 product truncated, not rounded. The verifiers'
    original scoring code reads such a PNG with ``Image.open``, so every pipeline starts from these values (an RGBA
    IMAGE is taken as its RGB, grey is repeated: ComfyUI's IMAGE carries no alpha). Kept in float so that HPSv2's
    float pipeline skips a uint8 round trip."""
    return (to_rgb_nchw(images) * 255.0).clamp_(0, 255).trunc_()


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """IMAGE [B,H,W,C] -> uint8 [B,3,H,W]: the pixels of the PNG ComfyUI's ``SaveImage`` writes (``quantize_8bit``)."""
    return quantize_8bit(images).to(torch.uint8)


def shortest_side_size(h: int, w: int, size: int) -> tuple[int, int]:
    """(height, width) with the shorter side ``size`` and the longer ``int(size * long / short)``: torchvision's
    ``Resize(int)`` and transformers' ``get_resize_output_image_size(default_to_square=False)`` alike."""
    return (size, int(size * w / h)) if h <= w else (int(size * h / w), size)


def _pil_resize_one(a, size_wh, resample):
    """One [C,H,W] array through Pillow's ``Image.resize``: 8-bit RGB as one "RGB" image (as the originals hold
    a PNG), anything else one channel at a time ("L" for uint8, "F" for float32); -> [C,h,w]."""
    if a.dtype == np.uint8 and a.shape[0] == 3:
        return np.asarray(Image.fromarray(np.ascontiguousarray(a.transpose(1, 2, 0))).resize(size_wh, resample)).transpose(2, 0, 1)
    return np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(c)).resize(size_wh, resample)) for c in a])


def pil_resize(x: torch.Tensor, size: Sequence[int], resample: int = PIL_BICUBIC) -> torch.Tensor:
    """Resize [B,C,H,W] to ``size`` = (height, width) with Pillow, as the originals resize the PIL image of a PNG
    (torchvision's ``Resize`` on a PIL image calls ``img.resize(size, resample)``; transformers' PIL image
    processors likewise). Pillow resamples in two separable passes through a clipped, rounded 8-bit intermediate,
    which torch's float bicubic does not reproduce (tens of 8-bit levels apart at hard edges). A tensor already of
    that size is returned as is (so does torchvision); otherwise the result is a CPU tensor (uint8 stays uint8,
    other dtypes float32)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    a = x.detach().cpu().numpy()
    if a.dtype != np.uint8:
        a = a.astype(np.float32)
    work = partial(_pil_resize_one, size_wh=(size[1], size[0]), resample=resample)
    workers = min(len(a), torch.get_num_threads())
    if workers > 1:  # Pillow releases the GIL while it resamples: one image per thread
        with ThreadPoolExecutor(workers) as pool:
            return torch.from_numpy(np.stack(list(pool.map(work, a))))
    return torch.from_numpy(np.stack([work(img) for img in a]))


def resize_shortest(x: torch.Tensor, size: int, resample: int = PIL_BICUBIC) -> torch.Tensor:
    """Pillow resize of [B,C,H,W] so the shorter side is ``size`` (see ``shortest_side_size``, ``pil_resize``)."""
    return pil_resize(x, shortest_side_size(*x.shape[-2:], size), resample)


CROP_OFFSETS = {
    "round": lambda excess: int(round(excess / 2.0)),  # torchvision CenterCrop (Python round: halves to even)
    "floor": lambda excess: excess // 2,  # transformers' image_transforms.center_crop
}


def center_crop(x: torch.Tensor, size: int, offset: str = "round") -> torch.Tensor:
    """Centre crop [..., H, W] to ``size`` x ``size``. ``offset`` "round": torchvision's ``CenterCrop`` (openai CLIP,
    ImageReward, DINOv2), top = ``int(round((H - size) / 2.0))``; "floor": transformers' ``center_crop``
    (CLIPImageProcessor, BitImageProcessor), top = ``(H - size) // 2``: they differ by a pixel when H - size is
    3 mod 4 (e.g. SDXL's 832x1216 at 224). A smaller image is zero-padded first, torchvision putting the odd
    pixel after the image, transformers before it."""
    rule = CROP_OFFSETS[offset]
    h, w = x.shape[-2:]
    if h < size or w < size:
        ph, pw = max(size - h, 0), max(size - w, 0)
        top, left = (ph // 2, pw // 2) if offset == "round" else (ph - ph // 2, pw - pw // 2)
        x = F.pad(x, (left, pw - left, top, ph - top))
        h, w = x.shape[-2:]
    top, left = rule(h - size), rule(w - size)
    return x[..., top: top + size, left: left + size]


def resize_max_pad(x: torch.Tensor, size: int, fill: float = 0.0) -> torch.Tensor:
    """open_clip's ``ResizeMaxSize`` as HPSv2's evaluation transform applies it: after ``ToTensor``, so on the float
    image [B,C,H,W]: longer side to ``size`` (``round(dim * scale)``) with torchvision's tensor resize (bicubic,
    antialias, the torchvision >= 0.17 default; no clamp, so the bicubic overshoot below 0 and above 1 is kept),
    then padded to a square with ``fill`` (0: black, before ``Normalize``). Unlike the original, an image whose
    longer side is already ``size`` is padded too (the original passes it through non-square, which the ViT rejects)."""
    h, w = x.shape[-2:]
    scale = size / float(max(h, w))
    nh, nw = round(h * scale), round(w * scale)
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False)
    ph, pw = size - nh, size - nw
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=fill)


class ImagePreprocess:
    """IMAGE tensors of any size -> normalised model pixels, computed as each verifier's original scoring code
    computes them from the PNG ComfyUI would save (``to_uint8``). ``mode``:

    - "crop": Pillow resize (``resample``) of the 8-bit image to the shorter side ``resize``, centre crop ``crop``
      with ``crop_offset`` ("round": torchvision's ``Resize`` + ``CenterCrop`` on a PIL image, as openai CLIP,
      ImageReward and DINOv2 do; "floor": transformers' PIL image processors, CLIPImageProcessor / BitImageProcessor);
    - "squash": Pillow resize of the 8-bit image to ``resize`` x ``resize`` (transformers' size {height, width}),
      then the same centre crop (none when ``crop == resize``);
    - "pad": HPSv2 (open_clip ``ToTensor`` then ``ResizeMaxSize``): the 8-bit image as floats, ``resize_max_pad``.

    Then ``/ 255`` (``ToTensor`` / ``rescale``) and ``(x - mean) / std``. Pillow runs on the CPU (as in the
    originals); the crop, the "pad" resize and the normalisation run on ``device``."""

    def __init__(self, crop: int = 224, resize: Optional[int] = None, mean: Sequence[float] = CLIP_MEAN,
                 std: Sequence[float] = CLIP_STD, mode: str = "crop", crop_offset: str = "round",
                 resample: int = PIL_BICUBIC) -> None:
        if mode not in ("crop", "pad", "squash"):
            raise ValueError(f"preprocess mode must be 'crop', 'pad' or 'squash', got {mode!r}")
        if crop_offset not in CROP_OFFSETS:
            raise ValueError(f"crop_offset must be one of {tuple(CROP_OFFSETS)}, got {crop_offset!r}")
        self.crop, self.resize = int(crop), int(resize or crop)
        self.mean, self.std, self.mode = tuple(float(m) for m in mean), tuple(float(s) for s in std), mode
        self.crop_offset, self.resample = crop_offset, int(resample)

    def pixels_8bit(self, u8: torch.Tensor) -> torch.Tensor:
        """The 8-bit steps of "crop" / "squash" (Pillow resize, centre crop): uint8 [B,3,H,W] -> [B,3,crop,crop]."""
        if self.mode == "squash":
            x = pil_resize(u8, (self.resize, self.resize), self.resample)
        else:
            x = resize_shortest(u8, self.resize, self.resample)
        return center_crop(x, self.crop, self.crop_offset)

    def __call__(self, images: torch.Tensor, device: Optional[Union[str, torch.device]] = None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
        images = check_images(images)
        device = images.device if device is None else device
        rows = images.split(1)  # quantised one image at a time: the float temporaries stay one image large
        if self.mode == "pad":
            x = torch.cat([resize_max_pad(quantize_8bit(r.to(device)).div_(255), self.crop) for r in rows])
        else:
            x = self.pixels_8bit(torch.cat([to_uint8(r) for r in rows])).to(device).float().div_(255)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return ((x - mean) / std).to(dtype)

    def __repr__(self) -> str:
        return (f"ImagePreprocess(crop={self.crop}, resize={self.resize}, mode={self.mode!r}, crop_offset={self.crop_offset!r}, "
                f"resample={self.resample})")


class EmbeddingCache:
    """LRU dict keyed by prompt (or class id): each distinct condition is embedded once.
    ``get_many(keys, compute)`` calls ``compute(missing_keys) -> Tensor[len(missing), ...]`` once per call."""

    def __init__(self, maxsize: int = 256) -> None:
        self.maxsize = int(maxsize)
        self.data = OrderedDict()
        self.hits = self.misses = 0

    def get_many(self, keys: Sequence[Hashable], compute: Callable[[list], torch.Tensor]) -> torch.Tensor:
        missing = []
        for k in keys:
            if k in self.data:
                self.data.move_to_end(k)
            elif k not in missing:
                missing.append(k)
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        fresh = {}
        if missing:
            vals = compute(missing)
            for k, v in zip(missing, vals):
                fresh[k] = v
                if self.maxsize > 0:
                    self.data[k] = v
                    self.data.move_to_end(k)
            while len(self.data) > self.maxsize:
                self.data.popitem(last=False)
        return torch.stack([fresh[k] if k in fresh else self.data[k] for k in keys])

    def clear(self) -> None:
        self.data.clear()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self.data)


class Verifier:
    """Base class. Subclasses implement ``_score(images, conditions, early) -> Tensor[B]``.

    ``name`` is the verifier kind, ``weights_id`` identifies its weights (a path or a name),
    ``needs_early`` marks verifiers that read the x0 prediction at sigma ~ 0.4 (self-supervised).
    ``score`` splits the batch into ``batch_size`` pieces; text / class embeddings go through
    ``self.cache`` (an LRU :class:`EmbeddingCache` keyed by prompt; ``cache_size=0`` disables it).
    """

    name = "verifier"
    condition = None  # "prompt", "class" or None
    needs_early = False
    higher_is_better = True

    def __init__(self, weights_id: str = "", device: Union[str, torch.device] = "cpu", dtype: torch.dtype = torch.float32,
                 batch_size: int = 16, cache_size: int = 256) -> None:
        self.weights_id = str(weights_id)
        self.device = torch.device(device)
        self.dtype = dtype
        if isinstance(batch_size, bool) or int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.cache = EmbeddingCache(cache_size)

    def describe(self) -> dict:
        return {"name": self.name, "weights": self.weights_id, "device": str(self.device), "dtype": str(self.dtype).replace("torch.", ""),
                "condition": self.condition, "needs_early": self.needs_early}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(weights={self.weights_id!r}, device={self.device}, dtype={self.dtype})"

    def check_conditions(self, conds: list) -> list:
        """Validate per-image conditions for this verifier's condition kind (prompt / class / none)."""
        if self.condition == "prompt":
            for c in conds:
                if not isinstance(c, str):
                    raise ValueError(f"{self.name} verifier needs a text prompt per image, got {c!r}")
        return conds

    @torch.no_grad()
    def score(self, images: torch.Tensor, conditions: Union[str, int, Sequence, torch.Tensor, None] = None,
              early: Optional[torch.Tensor] = None) -> torch.Tensor:
        # any float dtype is accepted and preprocessed in float32 (fp16/bf16 pixels are upcast first, so a
        # half-precision IMAGE scores exactly like its float32 copy); the model then runs on self.device in self.dtype
        images = check_images(images).float()
        conds = self.check_conditions(broadcast_conditions(conditions, images.shape[0]))
        if self.needs_early:
            if early is None:
                raise ValueError(f"{self.name} verifier needs the early x0 prediction (early=...), none was given")
            early = check_images(early, "early").float()
            if early.shape[0] != images.shape[0]:
                raise ValueError(f"early has {early.shape[0]} images for {images.shape[0]} final images")
        out = []
        for i in range(0, images.shape[0], self.batch_size):
            sl = slice(i, i + self.batch_size)
            s = self._score(images[sl], conds[sl], None if early is None else early[sl])
            out.append(torch.as_tensor(s).detach().float().cpu().flatten())
        return torch.cat(out)

    __call__ = score

    def _score(self, images, conditions, early):  # pragma: no cover - abstract
        raise NotImplementedError


def class_ids(conditions: Sequence[Any], num_classes: int, name: str = "class id") -> list[int]:
    """Per-image class ids as ints in [0, num_classes); bools, strings and None are refused."""
    ids = []
    for c in conditions:
        ok = c is not None and not isinstance(c, (str, bool)) and float(c) == int(c) and 0 <= int(c) < num_classes
        if not ok:
            raise ValueError(f"{name} must be an integer in [0, {num_classes - 1}], got {c!r}")
        ids.append(int(c))
    return ids


def logits_of(out: Any) -> torch.Tensor:
    """A classifier's output as a logits tensor (plain tensors, HF outputs with ``.logits``, tuples)."""
    if torch.is_tensor(out):
        return out
    if hasattr(out, "logits"):
        return out.logits
    if isinstance(out, (tuple, list)):
        return out[0]
    raise TypeError(f"classifier returned {type(out).__name__}; expected logits [B, num_classes]")


class ClassifierVerifier(Verifier):
    """Class-logit verifier over any torch classifier: the score is the logit of the wanted class
    (Ma et al.'s supervised verifiers). ``preprocess`` maps IMAGE [B,H,W,C] to the model's input."""

    name = "classifier"
    condition = "class"

    def __init__(self, model: torch.nn.Module, preprocess: Callable[[torch.Tensor], torch.Tensor], num_classes: int,
                 weights_id: str = "", device: Union[str, torch.device] = "cpu", dtype: torch.dtype = torch.float32,
                 batch_size: int = 64, output: str = "logit") -> None:
        super().__init__(weights_id, device, dtype, batch_size)
        if output not in ("logit", "log_prob"):
            raise ValueError(f"output must be 'logit' or 'log_prob', got {output!r}")
        self.model = model.to(self.device, dtype)
        try:
            self.model.eval()
        except NotImplementedError:  # torch.export modules are fixed in the mode they were exported in
            pass
        self.preprocess, self.num_classes, self.output = preprocess, int(num_classes), output

    def check_conditions(self, conds: list) -> list:
        class_ids(conds, self.num_classes)
        return conds

    def _score(self, images, conditions, early):
        ids = class_ids(conditions, self.num_classes)
        logits = logits_of(self.model(self.preprocess(images).to(self.device, self.dtype))).float()
        if self.output == "log_prob":
            logits = logits.log_softmax(-1)
        return logits[torch.arange(len(ids)), torch.tensor(ids, device=logits.device)]
