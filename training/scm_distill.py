"""sCD / sCT: continuous-time consistency training of a TrigFlow network (Lu & Song 2024, Algorithm 1).

Works with any torch TrigFlow network ``F(x_t / sigma_d, t, class_labels)`` (``class_labels`` may be
None for an unconditional net): the student starts as a copy of the teacher and is trained so that
its consistency function ``f(x_t, t) = cos t x_t - sin t sigma_d F`` is constant along the teacher's
PF-ODE (sCD) or along the forward process (sCT). Per iteration (Lu & Song 2024, Sec. 4 and Algorithm 1):

1. ``tau ~ N(P_mean, P_std^2)``, ``t = atan(e^tau / sigma_d)``; ``x_t = cos t x0 + sin t z``, ``z ~ N(0, sigma_d^2 I)``;
2. ``dx_t/dt``: the teacher's ``sigma_d F_teacher(x_t / sigma_d, t)`` (sCD; with classifier-free guidance
   ``F_u + s (F_c - F_u)`` when ``cfg_scale != 1``) or ``cos t z - sin t x0`` (sCT);
3. one forward-mode JVP of the (stop-gradient) student with tangents ``(cos t sin t dxdt / sigma_d, cos t sin t)``,
   which returns ``cos t sin t dF/dt``; ``g = -cos^2 t (sigma_d F^- - dxdt) - r (cos t sin t x_t + sigma_d JVP)``
   (= ``cos t df^-/dt`` at r = 1), normalised per sample ``g / (||g|| + c)``, tangent warm-up ``r = min(1, it / H)``;
4. loss ``||F_theta - F^- - g||^2 / D`` weighted adaptively: ``mse / e^u + u`` with ``u = logvar(t)`` from a
   small Fourier-feature + linear head (EDM2-style; ``u = -w_phi`` of the paper); RAdam (the paper's CIFAR-10
   optimiser, App. G) or Adam; an EMA of the student by half-life in images (CIFAR-10: 0.5 M) or by EDM2's
   power function (``ema_std`` = sigma_rel, ImageNet), which scales with the run's length.

The JVP pass (F^-) and the loss pass (F_theta) replay the same random draws, so a student with dropout uses
one dropout mask for both and ``F_theta - F^-`` vanishes at theta = theta^- as Algorithm 1 assumes.

Framework-free (torch and the standard library only).
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from typing import Optional, Union

import torch
import torch.nn as nn

__all__ = ['MODES', 'OPTIMIZERS', 'SCMConfig', 'sample_t', 'sct_tangent', 'scd_tangent', 'consistency_tangent',
           'normalize_tangent', 'consistency_fn', 'AdaptiveWeight', 'scm_loss', 'ema_update', 'SCMDistiller',
           'consistency_error', 'power_ema_exponent', 'ema_decay_at', 'rng_replay']

MODES = ("scd", "sct")
OPTIMIZERS = ("radam", "adam")
PAPER_EMA_HALFLIFE = 500_000  # images (Lu & Song 2024, App. G, CIFAR-10)


@dataclass
class SCMConfig:
    """Hyper-parameters of Algorithm 1 (defaults: the paper's CIFAR-10 sCD values, Lu & Song 2024, App. G, except H).

    The EMA is set by at most one of ``ema_decay`` (fixed per iteration), ``ema_halflife`` (images; the paper's
    CIFAR-10 0.5 M, the default when none is given) or ``ema_std`` (EDM2's power-function EMA with relative
    width sigma_rel, e.g. 0.05 as the paper's ImageNet sampling EMA: its averaging window grows with the run).
    """

    mode: str = "scd"  # "scd" (distil the teacher's PF-ODE) or "sct" (consistency training on data)
    sigma_data: float = 0.5
    p_mean: float = -1.0  # log-normal time proposal: tau ~ N(p_mean, p_std^2), t = atan(e^tau / sigma_d)
    p_std: float = 1.4
    lr: float = 1e-4  # the paper's CIFAR-10 rate at batch 512
    betas: tuple = (0.9, 0.99)
    adam_eps: float = 1e-8
    optimizer: str = "radam"  # "radam" (the paper's CIFAR-10 choice) or "adam" (its ImageNet choice)
    tangent_c: float = 0.1  # g / (||g|| + c); None or 0 disables the normalisation
    tangent_warmup: int = 10_000  # H: r = min(1, iteration / H); 0 = no warm-up
    ema_decay: Optional[float] = None  # fixed EMA decay per iteration
    ema_halflife: Optional[float] = None  # EMA half-life in images (default PAPER_EMA_HALFLIFE when nothing is set)
    ema_std: Optional[float] = None  # EDM2 power-function EMA, sigma_rel in (0, 0.28]
    cfg_scale: float = 1.0  # sCD teacher guidance F_u + s (F_c - F_u) (1 = no guidance)
    null_class: int = None  # class id the teacher reads as "unconditional" (default: teacher.null_class)
    class_dropout: float = 0.0  # probability of training the student on the null class
    adaptive_weight: bool = True
    weight_features: int = 128
    grad_clip: float = None
    seed: int = 0
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not self.sigma_data > 0:
            raise ValueError(f"sigma_data must be > 0, got {self.sigma_data}")
        if not self.p_std > 0:
            raise ValueError(f"p_std must be > 0, got {self.p_std}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        chosen = [k for k in ("ema_decay", "ema_halflife", "ema_std") if getattr(self, k) is not None]
        if len(chosen) > 1:
            raise ValueError(f"give one of ema_decay, ema_halflife, ema_std, not {' and '.join(chosen)}")
        if not chosen:
            self.ema_halflife = float(PAPER_EMA_HALFLIFE)
        if self.ema_decay is not None and not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.ema_halflife is not None and not self.ema_halflife > 0:
            raise ValueError(f"ema_halflife (images) must be > 0, got {self.ema_halflife}")
        if self.ema_std is not None and not 0 < self.ema_std <= 0.28:
            raise ValueError(f"ema_std (EDM2 sigma_rel) must be in (0, 0.28], got {self.ema_std}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if int(self.tangent_warmup) < 0:
            raise ValueError(f"tangent_warmup (H, iterations) must be >= 0, got {self.tangent_warmup}")
        if not 0 <= self.class_dropout <= 1:
            raise ValueError(f"class_dropout must be in [0, 1], got {self.class_dropout}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d


def _bc(t, x):
    """Per-sample [B] values broadcast against x [B, ...]."""
    return t.reshape((-1,) + (1,) * (x.ndim - 1))


def sample_t(n: int, p_mean: float = -1.0, p_std: float = 1.4, sigma_data: float = 0.5,
             generator: Optional[torch.Generator] = None, dtype: torch.dtype = torch.float32,
             device: Union[str, torch.device] = "cpu") -> torch.Tensor:
    """Log-normal time proposal: tau ~ N(p_mean, p_std^2), t = atan(exp(tau) / sigma_d) (median EDM sigma = e^p_mean)."""
    tau = torch.randn(n, generator=generator, dtype=torch.float64, device=device) * p_std + p_mean
    return torch.atan(torch.exp(tau) / sigma_data).to(dtype)


def sct_tangent(x0: torch.Tensor, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """sCT tangent dx_t/dt = cos t z - sin t x0 (exact derivative of x_t = cos t x0 + sin t z)."""
    t = _bc(t, x0)
    return torch.cos(t) * z - torch.sin(t) * x0


def _call(net, x, t, class_labels):
    return net(x, t) if class_labels is None else net(x, t, class_labels)


@torch.no_grad()
def scd_tangent(teacher: nn.Module, x_t: torch.Tensor, t: torch.Tensor, sigma_data: float = 0.5,
                class_labels: Optional[torch.Tensor] = None, cfg_scale: float = 1.0,
                null_class: Optional[int] = None) -> torch.Tensor:
    """sCD tangent: the teacher's PF-ODE dx_t/dt = sigma_d F(x_t / sigma_d, t[, y]), with CFG when cfg_scale != 1."""
    F_c = _call(teacher, x_t / sigma_data, t, class_labels)
    if cfg_scale != 1.0:
        if class_labels is None:
            raise ValueError("cfg_scale != 1 needs class labels (guidance mixes conditional and unconditional predictions)")
        null = getattr(teacher, "null_class", None) if null_class is None else null_class
        if null is None:
            raise ValueError("cfg_scale != 1 needs null_class (the teacher's unconditional label)")
        F_u = teacher(x_t / sigma_data, t, torch.full_like(class_labels, int(null)))
        F_c = F_u + cfg_scale * (F_c - F_u)
    return sigma_data * F_c


def consistency_tangent(net: nn.Module, x_t: torch.Tensor, t: torch.Tensor, dxdt: torch.Tensor, sigma_data: float = 0.5,
                        r: float = 1.0, class_labels: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(F^-, g) of Algorithm 1 for the stop-gradient network ``net`` (unnormalised g).

    One forward-mode JVP of ``(x, t) -> net(x, t, class_labels)`` at ``(x_t / sigma_d, t)`` with tangents
    ``(cos t sin t dxdt / sigma_d, cos t sin t)`` gives ``cos t sin t dF/dt``; then
    ``g = -cos^2 t (sigma_d F^- - dxdt) - r (cos t sin t x_t + sigma_d JVP)``, which at r = 1 is ``cos t df/dt``.
    """
    cos, sin = torch.cos(t), torch.sin(t)
    cs = cos * sin
    csb = _bc(cs, x_t)

    def fn(x_in, t_in):
        return _call(net, x_in, t_in, class_labels)

    with torch.no_grad():
        F_minus, jvp = torch.func.jvp(fn, (x_t / sigma_data, t), (csb * dxdt / sigma_data, cs))
    F_minus, jvp = F_minus.detach(), jvp.detach()
    cosb = _bc(cos, x_t)
    g = -cosb * cosb * (sigma_data * F_minus - dxdt) - r * (csb * x_t + sigma_data * jvp)
    return F_minus, g


def normalize_tangent(g: torch.Tensor, c: Optional[float] = 0.1) -> torch.Tensor:
    """Per-sample tangent normalisation g / (||g||_2 + c) (Lu & Song 2024, Sec. 4.2, Algorithm 1); c None or 0 returns g."""
    if not c:
        return g
    norm = g.flatten(1).norm(dim=1)
    return g / _bc(norm + c, g)


def consistency_fn(net: nn.Module, x_t: torch.Tensor, t: torch.Tensor, sigma_data: float = 0.5,
                   class_labels: Optional[torch.Tensor] = None) -> torch.Tensor:
    """f(x_t, t) = cos t x_t - sin t sigma_d F(x_t / sigma_d, t[, y])."""
    F = _call(net, x_t / sigma_data, t, class_labels)
    return _bc(torch.cos(t), x_t) * x_t - _bc(torch.sin(t), x_t) * sigma_data * F


class AdaptiveWeight(nn.Module):
    """Adaptive loss weight u(t) = logvar (EDM2 style): fixed random Fourier features of t, then a linear head.

    cos(2 pi (f t + phi)) * sqrt(2) with f ~ N(0, 1), phi ~ U[0, 1) (fixed, from ``seed``); the head starts at
    zero (u = 0, weight 1). The loss ``mse / e^u + u`` is minimised at ``e^u = mse``.
    """

    def __init__(self, features: int = 128, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(int(seed))
        self.register_buffer("freqs", torch.randn(features, generator=g, dtype=torch.float64).float())
        self.register_buffer("phases", torch.rand(features, generator=g, dtype=torch.float64).float())
        self.linear = nn.Linear(features, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        arg = 2 * math.pi * (t.reshape(-1, 1).to(self.freqs.dtype) * self.freqs + self.phases)
        return self.linear(torch.cos(arg) * math.sqrt(2)).reshape(-1)


def scm_loss(F_theta: torch.Tensor, F_minus: torch.Tensor, g: torch.Tensor,
             logvar: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-batch loss: mean over samples of ||F_theta - F^- - g||^2 / D, divided by e^u plus u when ``logvar`` u is given.

    Returns (loss, per-sample mse)."""
    mse = (F_theta - F_minus - g).pow(2).flatten(1).mean(dim=1)
    if logvar is None:
        return mse.mean(), mse
    return (mse / torch.exp(logvar) + logvar).mean(), mse


def power_ema_exponent(std: float) -> float:
    """EDM2's power-function EMA exponent gamma for a relative width sigma_rel (Karras et al. 2024, Eq. 3):
    the largest root of gamma^3 + 7 gamma^2 + (16 - s) gamma + (12 - s) with s = sigma_rel^-2 (bisection)."""
    s = float(std) ** -2
    if s <= 12:
        raise ValueError(f"sigma_rel must be < 0.2887 (1/sqrt(12)), got {std}")

    def f(g):
        return ((g + 7) * g + (16 - s)) * g + (12 - s)

    lo, hi = 0.0, s  # f(0) = 12 - s < 0 and f(s) > 0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if f(mid) < 0 else (lo, mid)
    return 0.5 * (lo + hi)


def ema_decay_at(config: "SCMConfig", iteration: int, batch: int) -> float:
    """The EMA decay applied after ``iteration`` (1-based) with ``batch`` images per iteration.

    Fixed ``ema_decay``; half-life in images: 0.5^(batch / half-life); power function (EDM2,
    ``power_function_beta``): (1 - 1 / iteration)^(gamma + 1), which is 0 at the first iteration."""
    if config.ema_decay is not None:
        return float(config.ema_decay)
    if config.ema_std is not None:
        return (1.0 - 1.0 / max(1, int(iteration))) ** (power_ema_exponent(config.ema_std) + 1.0)
    return 0.5 ** (int(batch) / float(config.ema_halflife))


def rng_replay(device: Union[str, torch.device]) -> "callable":
    """Snapshot the global random state that dropout draws from on ``device``; the returned function restores it.

    Algorithm 1 evaluates the student twice per iteration (the JVP pass for F^- and the loss pass for F_theta);
    restoring the state between them gives both passes the same dropout masks, so F_theta - F^- is 0 at
    theta = theta^- (as for a network without dropout) instead of the difference of two random masks."""
    device = torch.device(device)
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    def restore() -> None:
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state(cuda, device)

    return restore


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm.detach(), 1.0 - decay)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)


class SCMDistiller:
    """Algorithm 1 (sCD or sCT) over a TrigFlow teacher. ``step(x0, class_labels)`` makes one iteration.

    ``student`` defaults to a deep copy of ``teacher`` (the paper initialises every consistency model, sCT
    included, from the teacher's EMA weights); ``ema`` is an EMA copy of the student (use it for sampling).
    Random draws come from ``self.generator`` (seeded with ``config.seed``), so a run is deterministic on a
    given machine and thread count.
    """

    def __init__(self, teacher: Optional[nn.Module], config: Optional[SCMConfig] = None,
                 student: Optional[nn.Module] = None) -> None:
        self.config = config or SCMConfig()
        cfg = self.config
        if cfg.mode == "scd" and teacher is None:
            raise ValueError("sCD needs a teacher network")
        self.teacher = teacher
        if teacher is not None:
            teacher.eval()
            for p in teacher.parameters():
                p.requires_grad_(False)
        if student is None:
            if teacher is None:
                raise ValueError("give a student network (or a teacher to copy it from)")
            student = copy.deepcopy(teacher)
        self.student = student.train()
        for p in self.student.parameters():
            p.requires_grad_(True)
        self.ema = copy.deepcopy(self.student).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.weight = AdaptiveWeight(cfg.weight_features, seed=cfg.seed) if cfg.adaptive_weight else None
        params = list(self.student.parameters()) + (list(self.weight.parameters()) if self.weight is not None else [])
        opt = torch.optim.RAdam if cfg.optimizer == "radam" else torch.optim.Adam
        self.optimizer = opt(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.adam_eps)
        self.generator = torch.Generator().manual_seed(int(cfg.seed))
        self.iteration = 0
        null = cfg.null_class
        if null is None:
            null = getattr(teacher if teacher is not None else student, "null_class", None)
        self.null_class = null

    def warmup_r(self, iteration: Optional[int] = None) -> float:
        it = self.iteration if iteration is None else iteration
        H = int(self.config.tangent_warmup)
        return 1.0 if H == 0 else min(1.0, it / H)

    def step(self, x0: torch.Tensor, class_labels: Optional[torch.Tensor] = None) -> dict[str, float]:
        """One sCD / sCT iteration on a batch of clean data ``x0`` (and labels). Returns float statistics."""
        cfg, gen = self.config, self.generator
        sd = cfg.sigma_data
        B = x0.shape[0]
        t = sample_t(B, cfg.p_mean, cfg.p_std, sd, gen, x0.dtype, x0.device)
        z = torch.randn(x0.shape, generator=gen, dtype=x0.dtype, device=x0.device) * sd
        labels = class_labels
        if labels is not None and cfg.class_dropout > 0:
            if self.null_class is None:
                raise ValueError("class_dropout needs null_class")
            drop = torch.rand(B, generator=gen, device=x0.device) < cfg.class_dropout
            labels = torch.where(drop, torch.full_like(labels, int(self.null_class)), labels)
        tb = _bc(t, x0)
        x_t = torch.cos(tb) * x0 + torch.sin(tb) * z
        if cfg.mode == "sct":
            dxdt = sct_tangent(x0, z, t)
        else:
            dxdt = scd_tangent(self.teacher, x_t, t, sd, labels, cfg.cfg_scale, self.null_class)
        r = self.warmup_r()
        replay = rng_replay(x0.device)
        F_minus, g = consistency_tangent(self.student, x_t, t, dxdt, sd, r, labels)
        g_norm = g.flatten(1).norm(dim=1)
        g = normalize_tangent(g, cfg.tangent_c)
        replay()  # the loss pass draws the JVP pass's dropout masks again
        F_theta = _call(self.student, x_t / sd, t, labels)
        logvar = self.weight(t) if self.weight is not None else None
        loss, mse = scm_loss(F_theta, F_minus, g, logvar)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.student.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.iteration += 1
        decay = ema_decay_at(cfg, self.iteration, B)
        ema_update(self.ema, self.student, decay)
        return {"iteration": self.iteration, "ema_decay": decay, "loss": float(loss.detach()), "mse": float(mse.detach().mean()),
                "g_norm": float(g_norm.mean()), "r": r, "logvar": float(logvar.detach().mean()) if logvar is not None else 0.0}


@torch.no_grad()
def consistency_error(net: nn.Module, teacher: nn.Module, x0: torch.Tensor, t: torch.Tensor, z: torch.Tensor,
                      sigma_data: float = 0.5, class_labels: Optional[torch.Tensor] = None) -> float:
    """Mean per-sample ||cos t df/dt||^2 / D along the teacher's PF-ODE at fixed (x0, z, t): g of Algorithm 1
    at r = 1, unnormalised. Zero for a perfect consistency model of the teacher; a training monitor that,
    unlike the normalised loss, says how consistent the student is."""
    tb = _bc(t, x0)
    x_t = torch.cos(tb) * x0 + torch.sin(tb) * z
    dxdt = scd_tangent(teacher, x_t, t, sigma_data, class_labels)
    _, g = consistency_tangent(net, x_t, t, dxdt, sigma_data, 1.0, class_labels)
    return float(g.pow(2).flatten(1).mean(dim=1).mean())
