"""The toy world as the search core sees it: plain ``generate``, ``score``, ``denoise`` callables
for one digit class, over the committed TrigFlow teacher (deterministic Heun/Euler ODE) or the
distilled sCM student (1-4 steps with seeded re-noising), and the classifier-logit verifier.

Samples are ComfyUI-style IMAGE tensors [B, 8, 8, 1] in 0..1; latents are the model's [-1, 1]
space. The self-supervised verifier reads ``Batch.early``: the x0 prediction when the ODE passes
SiT time 0.4 (Ma et al.'s sigma = 0.4 with 0 = data, 1 = noise), i.e. EDM sigma 0.4 / 0.6: the first step
at or below it. The sCM student has no such prediction before its last step and refuses that verifier.
"""

import torch

from ..samplers.noise_space import EDM
from ..samplers.ode import STEPS, sampler_nfe, step_nfe
from ..samplers.schedules import early_prediction_call, karras_sigmas, sigma_to_rf_time
from ..search.evaluate import LATENT, Batch
from ..verifiers.base import ClassifierVerifier
from .load import load_classifier, load_teacher, load_student
from .models import TrigFlowDenoiser

SHAPE = (1, 1, 8, 8)


def to_images(x):
    """Model space [B, 1, 8, 8] in [-1, 1] -> IMAGE [B, 8, 8, 1] in 0..1."""
    return ((x.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).contiguous()


def from_images(images):
    """IMAGE [B, H, W, C] in 0..1 -> classifier input [B, 1, 8, 8] in [-1, 1]."""
    x = images.permute(0, 3, 1, 2)[:, :1] * 2 - 1
    if x.shape[-2:] != (8, 8):
        x = torch.nn.functional.interpolate(x, size=(8, 8), mode="area")
    return x


def classifier_verifier(classifier=None, output="logit"):
    """The supervised class-logit verifier of the toy world (Ma et al. Sec. 3.1)."""
    clf = classifier if classifier is not None else load_classifier()
    return ClassifierVerifier(clf, from_images, 10, weights_id="toyworld/classifier", output=output)


class ToyWorld:
    """One digit class of the toy world, exposed as the search core's callables.

    ``generator='teacher'`` integrates the PF-ODE with ``method`` over ``steps`` EDM/Karras steps;
    ``generator='student'`` samples the sCM student in ``steps`` (1-4) consistency steps whose
    re-noising is seeded from the candidate's own noise, so a candidate stays a pure function of it.
    """

    def __init__(self, digit, steps=10, method="heun", generator="teacher", cfg_scale=1.0, t_mid=1.1,
                 verifier=None, teacher=None, student=None, classifier=None):
        if isinstance(digit, bool) or not (0 <= int(digit) <= 9):
            raise ValueError(f"digit (class id) must be an integer in [0, 9], got {digit!r}")
        if method not in STEPS:
            raise ValueError(f"method must be one of {sorted(STEPS)}, got {method!r}")
        if generator not in ("teacher", "student"):
            raise ValueError(f"generator must be 'teacher' or 'student', got {generator!r}")
        self.digit, self.method, self.generator = int(digit), method, generator
        self.shape = SHAPE
        if generator == "teacher":
            if int(steps) < 1:
                raise ValueError(f"steps must be >= 1, got {steps}")
            self.denoiser = TrigFlowDenoiser(teacher if teacher is not None else load_teacher(), cfg_scale=cfg_scale)
            self.sigmas = karras_sigmas(int(steps), self.denoiser.sigma_min, self.denoiser.sigma_max)
            self.nfe_per_candidate = sampler_nfe(method, self.sigmas)
        else:
            from ..samplers.scm import scm_sigmas

            self.denoiser = TrigFlowDenoiser(student if student is not None else load_student(), cfg_scale=cfg_scale)
            self.sigmas = scm_sigmas(int(steps), sigma_data=self.denoiser.sigma_data, t_mid=t_mid)
            self.nfe_per_candidate = int(steps)
        self.cfg_multiplier = self.denoiser.cfg_multiplier
        self.verifier = verifier if verifier is not None else classifier_verifier(classifier)
        self.model_calls = 0  # model evaluations per sample, counted at the network boundary

    # -- the model -----------------------------------------------------------------------------
    @torch.no_grad()
    def model(self, x, sigma):
        self.model_calls += x.shape[0]
        return self.denoiser(x, sigma, class_labels=self.digit)

    def denoise(self, x, sigma_from, sigma_to):
        """One solver step of the teacher's ODE (the stepwise callable of search over paths)."""
        return STEPS[self.method](self.model, x, float(sigma_from), float(sigma_to))[0]

    def step_nfe(self, sigma_from, sigma_to):
        return step_nfe(self.method, sigma_to)

    # -- the search core's callables -------------------------------------------------------------
    @torch.no_grad()
    def generate(self, candidates):
        """The core's ``generate``: Candidates (recipes + noise [B, 1, 8, 8]) -> Batch of images, latents and the
        early x0 prediction. The student's re-noising draws are seeded by each candidate's ``sampler_seed``."""
        return self.sample(candidates.noise, candidates.sampler_seeds)

    @torch.no_grad()
    def sample(self, noise, sampler_seeds=None):
        """Unit Gaussian noise [B, 1, 8, 8] -> Batch. The student needs one seed per row for its re-noising."""
        if tuple(noise.shape[1:]) != SHAPE[1:]:
            raise ValueError(f"toy-world noise must have shape [B, 1, 8, 8], got {tuple(noise.shape)}")
        if self.generator == "student":
            return self._sample_student(noise, sampler_seeds)
        sig = self.sigmas.tolist()
        early_step = self.early_step()
        x, early = noise * sig[0], None
        for i in range(len(sig) - 1):
            x, den = STEPS[self.method](self.model, x, sig[i], sig[i + 1])
            if i == early_step:
                early = den
        return self.decode(x, early=early)

    def early_step(self):
        """The teacher step whose x0 prediction becomes ``Batch.early`` (-1: none, for the student)."""
        needed = getattr(self.verifier, "needs_early", False)
        if self.generator == "student":
            if needed:
                raise ValueError("the self-supervised verifier needs an x0 prediction before the final one, and the sCM "
                                 "student's only prediction at low noise is its final sample; use the teacher as generator")
            return -1
        times = [sigma_to_rf_time(s) for s in self.sigmas[:-1].tolist()]
        return early_prediction_call(times, rule="first_below", allow_last=not needed)[0]

    def _sample_student(self, noise, sampler_seeds):
        from ..samplers.scm import sample_scm

        self.early_step()
        if sampler_seeds is None or len(sampler_seeds) != noise.shape[0]:
            raise ValueError(f"the sCM student re-noises between its steps and needs one sampler seed per candidate "
                             f"({noise.shape[0]}), got {None if sampler_seeds is None else len(sampler_seeds)}")
        outs = []
        for k, seed in enumerate(sampler_seeds):  # one generator per candidate: independent of chunking
            g = torch.Generator().manual_seed(int(seed))
            ns = lambda s, s_next, _g=g, _n=noise[k:k + 1]: torch.randn(_n.shape, generator=_g)
            outs.append(sample_scm(self.model, noise[k:k + 1] * self.sigmas[0], self.sigmas, noise_sampler=ns, disable=True,
                                   space=EDM))
        return self.decode(torch.cat(outs))

    def decode(self, x, early=None):
        return Batch(to_images(x), {LATENT: x}, None if early is None else to_images(early))

    def score(self, batch):
        return self.verifier.score(batch.samples, self.digit, early=batch.early)
