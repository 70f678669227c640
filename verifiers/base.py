"""The verifier protocol: score a batch of images against their conditions; higher is better.

Images are ComfyUI IMAGE tensors: float [B, H, W, C] in 0..1 (any size; C = 1 or 3).
Conditions are one prompt string or class id per image (or one shared by all, or None).
A verifier returns a float32 CPU tensor of B scores.
"""

import torch


def check_images(images, name="images"):
    if not torch.is_tensor(images) or images.ndim != 4:
        raise ValueError(f"{name} must be a float tensor [B, H, W, C] in 0..1, got {type(images).__name__} of shape {getattr(images, 'shape', None)}")
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


class Verifier:
    """Base class. Subclasses implement ``_score(images, conditions, early) -> Tensor[B]``.

    ``name`` is the verifier kind, ``weights_id`` identifies its weights (a path or a name),
    ``needs_early`` marks verifiers that read the x0 prediction at sigma ~ 0.4 (self-supervised).
    """

    name = "verifier"
    condition = None  # "prompt", "class" or None
    needs_early = False

    def __init__(self, weights_id="", device="cpu", dtype=torch.float32, batch_size=16):
        self.weights_id = str(weights_id)
        self.device = torch.device(device)
        self.dtype = dtype
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)

    def describe(self):
        return {"name": self.name, "weights": self.weights_id, "device": str(self.device), "dtype": str(self.dtype).replace("torch.", "")}

    @torch.no_grad()
    def score(self, images, conditions=None, early=None):
        images = check_images(images)
        conds = broadcast_conditions(conditions, images.shape[0])
        if self.needs_early:
            if early is None:
                raise ValueError(f"{self.name} verifier needs the early x0 prediction (early=...), none was given")
            early = check_images(early, "early")
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


class ClassifierVerifier(Verifier):
    """Class-logit verifier over any torch classifier: the score is the logit of the wanted class
    (Ma et al.'s supervised verifiers). ``preprocess`` maps IMAGE [B,H,W,C] to the model's input."""

    name = "classifier"
    condition = "class"

    def __init__(self, model, preprocess, num_classes, weights_id="", device="cpu", dtype=torch.float32, batch_size=64, output="logit"):
        super().__init__(weights_id, device, dtype, batch_size)
        if output not in ("logit", "log_prob"):
            raise ValueError(f"output must be 'logit' or 'log_prob', got {output!r}")
        self.model = model.to(self.device, dtype).eval()
        self.preprocess, self.num_classes, self.output = preprocess, int(num_classes), output

    def _score(self, images, conditions, early):
        ids = []
        for c in conditions:
            if c is None or isinstance(c, str) or isinstance(c, bool) or not (0 <= int(c) < self.num_classes):
                raise ValueError(f"class id must be an integer in [0, {self.num_classes - 1}], got {c!r}")
            ids.append(int(c))
        logits = self.model(self.preprocess(images).to(self.device, self.dtype)).float()
        if self.output == "log_prob":
            logits = logits.log_softmax(-1)
        return logits[torch.arange(len(ids)), torch.tensor(ids, device=logits.device)]
