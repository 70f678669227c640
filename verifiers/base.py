"""The verifier protocol: score a batch of images against their conditions; higher is better.

Images are ComfyUI IMAGE tensors: float [B, H, W, C] in 0..1 (any size; C = 1 or 3).
Conditions are one prompt string or class id per image (or one shared by all, or None).
A verifier returns a float32 CPU tensor of B scores.
"""

from collections import OrderedDict

import torch
import torch.nn.functional as F

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def check_images(images, name="images"):
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


def broadcast_conditions(conditions, batch, name="conditions"):
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


def to_rgb_nchw(images):
    """IMAGE [B,H,W,C] (C = 1, 3 or 4) -> float [B,3,H,W] in 0..1 (grey repeated, alpha dropped)."""
    x = images[..., :3] if images.shape[-1] >= 3 else images[..., :1].expand(*images.shape[:-1], 3)
    return x.permute(0, 3, 1, 2).float()


def resize_shortest(x, size):
    """Bicubic+antialias resize of [B,C,H,W] so the shorter side is ``size`` (torchvision ``Resize(int)``
    rounding: the longer side is ``int(size * long / short)``); clamped to 0..1 like a uint8 image."""
    h, w = x.shape[-2:]
    if min(h, w) == size:
        return x
    if h <= w:
        nh, nw = size, int(size * w / h)
    else:
        nh, nw = int(size * h / w), size
    return F.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False).clamp_(0, 1)


def center_crop(x, size):
    """torchvision ``CenterCrop``: offsets ``round((H - size) / 2)``; pads with 0 when the image is smaller."""
    h, w = x.shape[-2:]
    if h < size or w < size:
        ph, pw = max(size - h, 0), max(size - w, 0)
        x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        h, w = x.shape[-2:]
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return x[..., top: top + size, left: left + size]


def resize_max_pad(x, size, fill=0.0):
    """open_clip ``ResizeMaxSize`` (HPSv2's evaluation transform): longer side to ``size``, pad to a square."""
    h, w = x.shape[-2:]
    scale = size / float(max(h, w))
    nh, nw = round(h * scale), round(w * scale)
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False).clamp_(0, 1)
    ph, pw = size - nh, size - nw
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=fill)


class ImagePreprocess:
    """Torch preprocessing of IMAGE tensors of any size: resize (bicubic, antialias), centre crop (or pad),
    normalise. ``mode``: "crop" (CLIP/DINO style: shorter side to ``resize``, centre crop ``crop``),
    "pad" (longer side to ``crop`` then pad, HPSv2) or "squash" (resize straight to ``crop`` x ``crop``)."""

    def __init__(self, crop=224, resize=None, mean=CLIP_MEAN, std=CLIP_STD, mode="crop"):
        if mode not in ("crop", "pad", "squash"):
            raise ValueError(f"preprocess mode must be 'crop', 'pad' or 'squash', got {mode!r}")
        self.crop, self.resize = int(crop), int(resize or crop)
        self.mean, self.std, self.mode = tuple(float(m) for m in mean), tuple(float(s) for s in std), mode

    def __call__(self, images, device=None, dtype=torch.float32):
        x = to_rgb_nchw(check_images(images))
        if device is not None:
            x = x.to(device)
        if self.mode == "crop":
            x = center_crop(resize_shortest(x, self.resize), self.crop)
        elif self.mode == "pad":
            x = resize_max_pad(x, self.crop)
        elif tuple(x.shape[-2:]) != (self.crop, self.crop):
            x = F.interpolate(x, size=(self.crop, self.crop), mode="bicubic", antialias=True, align_corners=False).clamp_(0, 1)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return ((x - mean) / std).to(dtype)

    def __repr__(self):
        return f"ImagePreprocess(crop={self.crop}, resize={self.resize}, mode={self.mode!r})"


class EmbeddingCache:
    """LRU dict keyed by prompt (or class id): each distinct condition is embedded once.
    ``get_many(keys, compute)`` calls ``compute(missing_keys) -> Tensor[len(missing), ...]`` once per call."""

    def __init__(self, maxsize=256):
        self.maxsize = int(maxsize)
        self.data = OrderedDict()
        self.hits = self.misses = 0

    def get_many(self, keys, compute):
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

    def clear(self):
        self.data.clear()
        self.hits = self.misses = 0

    def __len__(self):
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

    def __init__(self, weights_id="", device="cpu", dtype=torch.float32, batch_size=16, cache_size=256):
        self.weights_id = str(weights_id)
        self.device = torch.device(device)
        self.dtype = dtype
        if isinstance(batch_size, bool) or int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.cache = EmbeddingCache(cache_size)

    def describe(self):
        return {"name": self.name, "weights": self.weights_id, "device": str(self.device), "dtype": str(self.dtype).replace("torch.", ""),
                "condition": self.condition, "needs_early": self.needs_early}

    def __repr__(self):
        return f"{type(self).__name__}(weights={self.weights_id!r}, device={self.device}, dtype={self.dtype})"

    def check_conditions(self, conds):
        """Validate per-image conditions for this verifier's condition kind (prompt / class / none)."""
        if self.condition == "prompt":
            for c in conds:
                if not isinstance(c, str):
                    raise ValueError(f"{self.name} verifier needs a text prompt per image, got {c!r}")
        return conds

    @torch.no_grad()
    def score(self, images, conditions=None, early=None):
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


def class_ids(conditions, num_classes, name="class id"):
    """Per-image class ids as ints in [0, num_classes); bools, strings and None are refused."""
    ids = []
    for c in conditions:
        ok = c is not None and not isinstance(c, (str, bool)) and float(c) == int(c) and 0 <= int(c) < num_classes
        if not ok:
            raise ValueError(f"{name} must be an integer in [0, {num_classes - 1}], got {c!r}")
        ids.append(int(c))
    return ids


def logits_of(out):
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

    def __init__(self, model, preprocess, num_classes, weights_id="", device="cpu", dtype=torch.float32, batch_size=64, output="logit"):
        super().__init__(weights_id, device, dtype, batch_size)
        if output not in ("logit", "log_prob"):
            raise ValueError(f"output must be 'logit' or 'log_prob', got {output!r}")
        self.model = model.to(self.device, dtype)
        try:
            self.model.eval()
        except NotImplementedError:  # torch.export modules are fixed in the mode they were exported in
            pass
        self.preprocess, self.num_classes, self.output = preprocess, int(num_classes), output

    def check_conditions(self, conds):
        class_ids(conds, self.num_classes)
        return conds

    def _score(self, images, conditions, early):
        ids = class_ids(conditions, self.num_classes)
        logits = logits_of(self.model(self.preprocess(images).to(self.device, self.dtype))).float()
        if self.output == "log_prob":
            logits = logits.log_softmax(-1)
        return logits[torch.arange(len(ids)), torch.tensor(ids, device=logits.device)]
