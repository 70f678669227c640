"""The toy world's networks: a class-conditional TrigFlow teacher, its k-diffusion denoiser wrapper,
and a small CNN digit classifier (the verifier and the feature extractor for FD).

TrigFlow (Lu & Song 2024, Sec. 2 and App. B.2): x_t = cos(t) x0 + sin(t) z, z ~ N(0, sigma_d^2 I);
the network F predicts v = cos(t) z - sin(t) x0 from (x_t / sigma_d, c_noise(t) = t, class).
The same F serves the teacher's PF-ODE and an sCM student, so everything here is plain
Linear / LayerNorm / SiLU / Embedding / sin / cos with no in-place ops: torch.func.jvp works.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F_

from .data import IMAGE_SHAPE, NUM_CLASSES

SIGMA_DATA = 0.5
NULL_CLASS = NUM_CLASSES  # class id 10 = "no class", used for classifier-free guidance

# The teacher's architecture. time_embedding "positional" and modulation "double" follow the sCM paper
# (Lu & Song 2024, Sec. 4.1: c_noise(t) = t with positional time embeddings; adaptive double normalisation).
TEACHER_CONFIG = {"width": 256, "blocks": 4, "hidden_mult": 1, "time_freqs": 32, "max_freq": 1.0,
                  "num_classes": NUM_CLASSES, "in_dim": 64, "time_embedding": "positional", "modulation": "double",
                  "dropout": 0.0}

# What a weights file written before these keys existed was built with (its config lacks them).
LEGACY_CONFIG = {"time_embedding": "geometric", "modulation": "adaln", "dropout": 0.0}

TIME_EMBEDDINGS = ("geometric", "positional")
MODULATIONS = ("adaln", "double")


def sigma_to_t(sigma, sigma_data=SIGMA_DATA):
    """EDM sigma -> TrigFlow time t = atan(sigma / sigma_d) (Lu & Song 2024, App. B.2, Eq. 30)."""
    return torch.atan(torch.as_tensor(sigma) / sigma_data)


def t_to_sigma(t, sigma_data=SIGMA_DATA):
    """TrigFlow time -> EDM sigma = sigma_d tan(t)."""
    return sigma_data * torch.tan(torch.as_tensor(t))


def time_frequencies(n, max_freq, kind):
    """The ``n`` frequencies f of the sin/cos(t f) time embedding, highest ``max_freq``.

    ``positional``: DDPM++ / EDM's positional embedding, f = max_freq * (1/10000)^(i / (n - 1)), i = 0..n-1
    (max_freq 1 with c_noise(t) = t is the sCM paper's choice, Lu & Song 2024, Sec. 4.1: the embedding
    varies slowly in t, so dF/dt, which the consistency tangent differentiates, does not oscillate).
    ``geometric``: geomspace(1, max_freq), the toy world's first teacher (max_freq 64: fast in t).
    """
    if kind == "positional":
        return max_freq * torch.logspace(0.0, -4.0, n) if n > 1 else torch.tensor([float(max_freq)])
    if kind == "geometric":
        return torch.logspace(0.0, math.log10(max_freq), n)
    raise ValueError(f"time_embedding must be one of {TIME_EMBEDDINGS}, got {kind!r}")


class TimeEmbedding(nn.Module):
    """sin/cos(t * f) for ``n`` frequencies (``time_frequencies``), then a 2-layer MLP. c_noise(t) = t.

    The frequencies are a fixed buffer rebuilt from the config.
    """

    def __init__(self, width, n=32, max_freq=1.0, kind="positional"):
        super().__init__()
        # Not persistent: recomputed from the config in fp32, so fp16 weight files cannot round them.
        self.register_buffer("freqs", time_frequencies(int(n), float(max_freq), kind), persistent=False)
        self.mlp = nn.Sequential(nn.Linear(2 * n, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t):
        arg = t.reshape(-1, 1).to(self.freqs.dtype) * self.freqs
        return self.mlp(torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1))


PNORM_EPS = 1e-4


def pixel_norm(v, eps=PNORM_EPS):
    """v / sqrt(mean(v^2) + eps) over the last axis: unit RMS per sample (pnorm of the sCM paper, Sec. 4.1).
    The eps sits inside the root so the map and its derivatives stay finite at v = 0 (JVP-safe)."""
    return v * torch.rsqrt(v.pow(2).mean(dim=-1, keepdim=True) + eps)


def modulate(h, scale, shift, kind):
    """Adaptive normalisation of h [B, W] by the condition's (scale, shift).

    ``adaln``: LN(h) (1 + scale) + shift (AdaGN/AdaLN; scale and shift can grow without bound).
    ``double``: LN(h) pnorm(1 + scale) + pnorm(shift), the sCM paper's adaptive double normalisation
    (Lu & Song 2024, Sec. 4.1, y = norm(x) pnorm(s(t)) + pnorm(b(t)) with s(t) = 1 + scale as in DDPM++'s
    adaptive scale): the modulation's RMS is pinned to 1, so the time condition cannot blow activations up.
    Both are LN(h) when scale = shift = 0 (how the zero-initialised layers start; ``double`` up to the factor
    1 / sqrt(1 + eps) of pnorm(1)).
    """
    u = F_.layer_norm(h, h.shape[-1:])
    if kind == "adaln":
        return u * (1 + scale) + shift
    if kind == "double":
        return u * pixel_norm(1 + scale) + pixel_norm(shift)
    raise ValueError(f"modulation must be one of {MODULATIONS}, got {kind!r}")


class AdaLNBlock(nn.Module):
    """Residual MLP block: LayerNorm without affine, modulated by the condition (``modulate``),
    then Linear-SiLU-(Dropout)-Linear. The second Linear starts at zero, so every block starts as identity."""

    def __init__(self, width, hidden, modulation="adaln", dropout=0.0):
        super().__init__()
        self.modulation = modulation
        self.mod = nn.Linear(width, 2 * width)
        self.fc1 = nn.Linear(width, hidden)
        self.drop = nn.Dropout(float(dropout))
        self.fc2 = nn.Linear(hidden, width)
        nn.init.zeros_(self.mod.weight)
        nn.init.zeros_(self.mod.bias)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, h, c):
        shift, scale = self.mod(c).chunk(2, dim=-1)
        u = modulate(h, scale, shift, self.modulation)
        return h + self.fc2(self.drop(F_.silu(self.fc1(u))))


class TrigFlowNet(nn.Module):
    """F_theta(x_t / sigma_d, t, class): class-conditional TrigFlow v-prediction on the flattened 8x8 image.

    ``forward(x, t, class_labels)``: x [B, 1, 8, 8] or [B, 64] (already divided by sigma_d),
    t [B] (or scalar) in [0, pi/2], class_labels [B] int64 in 0..10 (10 = null class) or None (null).
    Returns F with x's shape. The output layer is zero-initialised (F = 0 at start).
    """

    def __init__(self, width=256, blocks=4, hidden_mult=1, time_freqs=32, max_freq=1.0, num_classes=NUM_CLASSES, in_dim=64,
                 time_embedding="positional", modulation="double", dropout=0.0):
        super().__init__()
        if time_embedding not in TIME_EMBEDDINGS:
            raise ValueError(f"time_embedding must be one of {TIME_EMBEDDINGS}, got {time_embedding!r}")
        if modulation not in MODULATIONS:
            raise ValueError(f"modulation must be one of {MODULATIONS}, got {modulation!r}")
        if not 0 <= float(dropout) < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.config = {"width": int(width), "blocks": int(blocks), "hidden_mult": int(hidden_mult), "time_freqs": int(time_freqs),
                       "max_freq": float(max_freq), "num_classes": int(num_classes), "in_dim": int(in_dim),
                       "time_embedding": time_embedding, "modulation": modulation, "dropout": float(dropout)}
        self.num_classes = int(num_classes)
        self.null_class = int(num_classes)
        self.in_dim = int(in_dim)
        self.modulation = modulation
        self.time_emb = TimeEmbedding(width, time_freqs, max_freq, time_embedding)
        self.class_emb = nn.Embedding(num_classes + 1, width)
        self.inp = nn.Linear(in_dim, width)
        self.blocks = nn.ModuleList([AdaLNBlock(width, hidden_mult * width, modulation, dropout) for _ in range(blocks)])
        self.out_mod = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, in_dim)
        nn.init.zeros_(self.out_mod.weight)
        nn.init.zeros_(self.out_mod.bias)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x, t, class_labels=None):
        shape = x.shape
        h = x.reshape(shape[0], -1)
        if h.shape[1] != self.in_dim:
            raise ValueError(f"TrigFlowNet expects {self.in_dim} values per sample (8x8), got shape {tuple(shape)}")
        t = torch.as_tensor(t, dtype=h.dtype, device=h.device)
        if t.ndim == 0:
            t = t.expand(shape[0])
        if class_labels is None:
            class_labels = torch.full((shape[0],), self.null_class, dtype=torch.long, device=h.device)
        c = F_.silu(self.time_emb(t) + self.class_emb(class_labels))
        h = self.inp(h)
        for blk in self.blocks:
            h = blk(h, c)
        shift, scale = self.out_mod(c).chunk(2, dim=-1)
        return self.out(modulate(h, scale, shift, self.modulation)).reshape(shape)

    def set_dropout(self, p):
        """Set the blocks' dropout probability (an sCT student may train with dropout its teacher lacked)."""
        if not 0 <= float(p) < 1:
            raise ValueError(f"dropout must be in [0, 1), got {p}")
        for blk in self.blocks:
            blk.drop.p = float(p)
        self.config["dropout"] = float(p)


def _labels(class_labels, batch, null_class, device):
    """Class ids as int64 [B]: None -> null class; a scalar or a 1-element tensor is shared by the batch."""
    if class_labels is None:
        return torch.full((batch,), null_class, dtype=torch.long, device=device)
    y = torch.as_tensor(class_labels, device=device).long().flatten()
    if y.numel() == 1:
        y = y.expand(batch)
    if y.numel() != batch:
        raise ValueError(f"got {y.numel()} class labels for a batch of {batch}; give one per sample or one for all")
    if ((y < 0) | (y > null_class)).any():
        raise ValueError(f"class labels must be in 0..{null_class} ({null_class} = unconditional), got {y.tolist()}")
    return y


class TrigFlowDenoiser(nn.Module):
    """k-diffusion-style denoiser over a TrigFlowNet: ``model(x, sigma, class_labels=None, cfg_scale=None) -> x0``.

    x lives in EDM space (x = x0 + sigma * eps, sigma per batch item [B]), which is what the pack's
    samplers integrate. Conversion (Lu & Song 2024, App. B.2): t = atan(sigma / sigma_d), x_t = cos(t) x,
    F = net(x_t / sigma_d, t, y), x0 = cos(t) x_t - sin(t) sigma_d F (the consistency-model form,
    so sigma = 0 returns x exactly). CFG: F = F_u + s (F_c - F_u) with the null class, 2 passes.
    """

    sigma_min = 0.002
    sigma_max = 80.0

    def __init__(self, net, cfg_scale=1.0, sigma_data=SIGMA_DATA):
        super().__init__()
        self.net = net
        self.cfg_scale = float(cfg_scale)
        self.sigma_data = float(sigma_data)

    @property
    def cfg_multiplier(self):
        """Network passes per call: CFG evaluates the conditional and the unconditional branch."""
        return 2 if self.cfg_scale != 1.0 else 1

    def velocity(self, x_t, t, class_labels=None, cfg_scale=None):
        """F (guided when cfg_scale != 1) at TrigFlow state x_t, time t [B]."""
        s = self.cfg_scale if cfg_scale is None else float(cfg_scale)
        y = _labels(class_labels, x_t.shape[0], self.net.null_class, x_t.device)
        inp = x_t / self.sigma_data
        if s == 1.0:
            return self.net(inp, t, y)
        null = torch.full_like(y, self.net.null_class)
        both = self.net(torch.cat([inp, inp]), torch.cat([t, t]), torch.cat([y, null]))
        f_c, f_u = both.chunk(2)
        return f_u + s * (f_c - f_u)

    def forward(self, x, sigma, class_labels=None, cfg_scale=None):
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        if sigma.ndim == 0:
            sigma = sigma.expand(x.shape[0])
        sigma = sigma.reshape(-1)
        if sigma.numel() != x.shape[0]:
            raise ValueError(f"sigma must be a scalar or one per sample ({x.shape[0]}), got shape {tuple(sigma.shape)}")
        t = torch.atan(sigma / self.sigma_data)
        bshape = (-1,) + (1,) * (x.ndim - 1)
        cos_t, sin_t = torch.cos(t).reshape(bshape), torch.sin(t).reshape(bshape)
        x_t = cos_t * x
        f = self.velocity(x_t, t, class_labels, cfg_scale)
        return cos_t * x_t - sin_t * self.sigma_data * f


class DigitClassifier(nn.Module):
    """Small CNN on [B, 1, 8, 8] in [-1, 1]: 2 conv (32, 64) + max-pool + fc128 + fc10 (~151 k params).

    ``features`` (the 128-d post-ReLU penultimate layer) is the embedding for the Frechet distance;
    ``forward`` gives logits for the class-logit verifier and the accuracy of generated digits.
    """

    def __init__(self, c1=32, c2=64, hidden=128, num_classes=NUM_CLASSES):
        super().__init__()
        self.config = {"c1": int(c1), "c2": int(c2), "hidden": int(hidden), "num_classes": int(num_classes)}
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.fc1 = nn.Linear(c2 * 16, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def features(self, x):
        x = x.reshape(-1, *IMAGE_SHAPE)
        h = F_.relu(self.conv1(x))
        h = F_.max_pool2d(F_.relu(self.conv2(h)), 2)
        return F_.relu(self.fc1(h.flatten(1)))

    def forward(self, x):
        return self.fc2(self.features(x))
