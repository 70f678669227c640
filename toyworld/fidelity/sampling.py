"""The toy world's pieces the fidelity study measures with: the committed models, Heun samples of many digits at
once, seeded noise and the classifier logit of each sample's own digit."""

import torch

from ...samplers.ode import SAMPLERS
from ...search.noise import seed_noise
from ..load import load_classifier, load_teacher
from ..models import TrigFlowDenoiser
from ..world import SHAPE, classifier_verifier
from .config import grid


def require_scikit_learn():
    """Fail in one line before anything is loaded or measured: every part compares with the real 8x8 digits, which
    ship inside scikit-learn, an optional dependency (the pack's ``demo`` and ``test`` extras)."""
    try:
        import sklearn.datasets  # noqa: F401
    except ImportError as err:
        raise ImportError("bench fidelity needs scikit-learn, which ships the real 8x8 digits every part compares with: "
                          "pip install scikit-learn (or pip install -e \".[demo]\")") from err


def load_models(teacher=None, classifier=None):
    teacher = teacher if teacher is not None else load_teacher()
    classifier = classifier if classifier is not None else load_classifier()
    return {"teacher": teacher, "denoiser": TrigFlowDenoiser(teacher).eval(), "classifier": classifier.eval(),
            "verifier": classifier_verifier(classifier)}



@torch.no_grad()
def heun_samples(denoiser, noise, labels, steps, batch_size=2000):
    """Raw samples [N, 1, 8, 8] of Heun-``steps`` from unit noise [N, 1, 8, 8], one label each."""
    sig = grid(steps)
    out = []
    for i in range(0, noise.shape[0], batch_size):
        x = noise[i:i + batch_size] * sig[0]
        out.append(SAMPLERS["heun"](denoiser, x, sig, extra_args={"class_labels": labels[i:i + batch_size]}))
    return torch.cat(out)


def seed_batch(seeds):
    return torch.cat([seed_noise(s, SHAPE) for s in seeds])


@torch.no_grad()
def logits_of(classifier, x, labels):
    """Classifier logit of each sample's own label; x raw [N, 1, 8, 8] (clamped like an image, as the verifier sees it)."""
    lg = classifier(x.clamp(-1, 1))
    return lg[torch.arange(x.shape[0]), torch.as_tensor(labels).long()]

