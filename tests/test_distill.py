"""sCD / sCT (training/scm_distill.py): the JVP tangent against finite differences (Lu & Song 2024, Eq. 6 and Algorithm 1)
and a short run that makes the student measurably more consistent."""

import math

import pytest
import torch

from noise_search.training import scm_distill as sd_mod
from noise_search.training.scm_distill import (AdaptiveWeight, SCMConfig, SCMDistiller, consistency_error, consistency_fn,
                                               consistency_tangent, normalize_tangent, sample_t, scd_tangent, sct_tangent)

SD = 0.5
D64 = torch.float64


class Net(torch.nn.Module):
    """A tiny class-conditional TrigFlow net F(x / sigma_d, t, class_labels) (Linear, SiLU, Embedding, sin/cos)."""

    def __init__(self, d=16, width=64, classes=3, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.null_class = classes
        self.l1 = torch.nn.Linear(d + 4, width)
        self.l2 = torch.nn.Linear(width, width)
        self.l3 = torch.nn.Linear(width, d)
        self.emb = torch.nn.Embedding(classes + 1, width)

    def forward(self, x, t, class_labels=None):
        f = torch.stack([torch.sin(t), torch.cos(t), torch.sin(4 * t), torch.cos(4 * t)], 1)
        h = self.l1(torch.cat([x, f], 1))
        if class_labels is not None:
            h = h + self.emb(class_labels)
        h = torch.nn.functional.silu(h)
        return self.l3(torch.nn.functional.silu(self.l2(h)))


def _batch(d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.tensor([0.05, 0.3, 0.7, 1.1, 1.4, 1.55], dtype=D64)
    x0 = torch.randn(len(t), d, generator=g, dtype=D64) * SD
    z = torch.randn(len(t), d, generator=g, dtype=D64) * SD
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    x_t = torch.cos(t)[:, None] * x0 + torch.sin(t)[:, None] * z
    return t, x0, z, y, x_t


def test_jvp_tangent_matches_finite_differences_float64():
    """g (r = 1, unnormalised) = cos t df/dt along the teacher's PF-ODE (Lu & Song 2024, Eq. 6)."""
    teacher, student = Net(seed=1).double(), Net(seed=2).double()
    t, _, _, y, x_t = _batch()
    dxdt = scd_tangent(teacher, x_t, t, SD, y)
    assert torch.allclose(dxdt, SD * teacher(x_t / SD, t, y), rtol=0, atol=0)
    F_minus, g = consistency_tangent(student, x_t, t, dxdt, SD, 1.0, y)
    assert torch.equal(F_minus, student(x_t / SD, t, y).detach())

    def f(x, tt):
        return consistency_fn(student, x, tt, SD, y).detach()

    # central difference along the tangent line (x_t + h dxdt, t + h): O(h^2)
    h = 1e-5
    fd = torch.cos(t)[:, None] * (f(x_t + h * dxdt, t + h) - f(x_t - h * dxdt, t - h)) / (2 * h)
    assert ((g - fd).abs().max() / g.abs().max()).item() < 1e-8
    # the finite-difference form (Lu & Song 2024, App. E): x_{t-h} from a tiny teacher DDIM step, one-sided difference: O(h)
    h = 1e-6
    x_prev = math.cos(h) * x_t - math.sin(h) * SD * teacher(x_t / SD, t, y).detach()
    fd2 = torch.cos(t)[:, None] * (f(x_t, t) - f(x_prev, t - h)) / h
    assert ((g - fd2).abs().max() / g.abs().max()).item() < 1e-5
    # r scales only the second term: g(r) = g(0) + r (g(1) - g(0))
    _, g0 = consistency_tangent(student, x_t, t, dxdt, SD, 0.0, y)
    _, gh = consistency_tangent(student, x_t, t, dxdt, SD, 0.25, y)
    assert torch.allclose(gh, g0 + 0.25 * (g - g0), rtol=0, atol=1e-14)
    assert torch.allclose(g0, -torch.cos(t)[:, None] ** 2 * (SD * F_minus - dxdt), rtol=0, atol=1e-15)


def test_sct_tangent_is_the_time_derivative_of_x_t():
    """The tangent of Lu & Song 2024, Eq. 6, against finite differences."""
    t, x0, z, _, _ = _batch(seed=4)
    h = 1e-6
    fd = ((torch.cos(t + h)[:, None] * x0 + torch.sin(t + h)[:, None] * z)
          - (torch.cos(t - h)[:, None] * x0 + torch.sin(t - h)[:, None] * z)) / (2 * h)
    assert torch.allclose(sct_tangent(x0, z, t), fd, rtol=0, atol=1e-9)


def test_cfg_tangent_mixes_conditional_and_null():
    teacher = Net(seed=1).double()
    t, _, _, y, x_t = _batch()
    fc = teacher(x_t / SD, t, y)
    fu = teacher(x_t / SD, t, torch.full_like(y, 3))
    got = scd_tangent(teacher, x_t, t, SD, y, cfg_scale=1.5)
    assert torch.allclose(got, SD * (fu + 1.5 * (fc - fu)), rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="class labels"):
        scd_tangent(teacher, x_t, t, SD, None, cfg_scale=1.5)


def test_normalisation_and_time_proposal():
    g = torch.tensor([[3.0, 4.0], [0.0, 0.0]], dtype=D64)
    assert torch.allclose(normalize_tangent(g, 0.1), torch.tensor([[3 / 5.1, 4 / 5.1], [0.0, 0.0]], dtype=D64))
    assert torch.equal(normalize_tangent(g, 0), g)
    # Lu & Song 2024, Algorithm 1's time proposal: EDM sigma = sigma_d tan t = e^tau exactly, so the median EDM sigma is exp(P_mean)
    t = sample_t(4001, p_mean=-0.8, p_std=1.6, sigma_data=SD, generator=torch.Generator().manual_seed(0), dtype=D64)
    tau = torch.randn(4001, generator=torch.Generator().manual_seed(0), dtype=D64) * 1.6 - 0.8
    assert ((t > 0) & (t < math.pi / 2)).all()
    assert torch.allclose(torch.log(SD * torch.tan(t)), tau, rtol=0, atol=1e-12)
    assert sample_t(1, p_mean=-0.8, p_std=1e-12, sigma_data=SD, dtype=D64).item() == pytest.approx(math.atan(math.exp(-0.8) / SD), abs=1e-11)
    assert math.exp(-0.8) == pytest.approx(0.449, abs=1e-3)


def test_regression_gradient_equals_the_consistency_gradient():
    """Lu & Song 2024, Sec. 4.2: d/dtheta of ||F - F^- + y||^2 / 2 at F^- = F equals d/dtheta of F^T y."""
    net = Net(seed=5).double()
    t, _, _, y, x_t = _batch()
    direction = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(1), dtype=D64)
    F = net(x_t / SD, t, y)
    (0.5 * (F - F.detach() + direction).pow(2).sum()).backward()
    g1 = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    (net(x_t / SD, t, y) * direction).sum().backward()
    for a, p in zip(g1, net.parameters()):
        assert torch.allclose(a, p.grad, rtol=0, atol=1e-12)


def test_adaptive_weight_starts_flat_and_loss_form():
    w = AdaptiveWeight(16, seed=0)
    t = torch.linspace(0.1, 1.5, 7)
    assert torch.equal(w(t), torch.zeros(7))
    mse_theta = torch.zeros(3, 4, requires_grad=True)
    loss, mse = sd_mod.scm_loss(mse_theta, torch.zeros(3, 4), torch.full((3, 4), 2.0), torch.log(torch.full((3,), 4.0)))
    # mse = 4 per sample, e^u = 4: loss = 1 + log 4
    assert mse.tolist() == [4.0, 4.0, 4.0]
    assert loss.item() == pytest.approx(1 + math.log(4), abs=1e-6)


def test_config_validation():
    with pytest.raises(ValueError, match="mode must be one of"):
        SCMConfig(mode="cd")
    with pytest.raises(ValueError, match="tangent_warmup"):
        SCMConfig(tangent_warmup=-1)
    with pytest.raises(ValueError, match="sCD needs a teacher"):
        SCMDistiller(None, SCMConfig())


def _mixture(n, g, means):
    y = torch.randint(0, len(means), (n,), generator=g)
    return means[y] + 0.1 * torch.randn(n, means.shape[1], generator=g), y


def test_short_scd_run_makes_the_student_more_consistent():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    means = torch.randn(3, 16, generator=g) * 0.5
    teacher = Net(seed=0)
    opt = torch.optim.Adam(teacher.parameters(), 1e-3)
    for _ in range(100):  # a quick diffusion teacher on a 3-class Gaussian mixture
        x0, y = _mixture(64, g, means)
        t = sample_t(64, -1.0, 1.4, SD, g)
        z = torch.randn(64, 16, generator=g) * SD
        x_t = torch.cos(t)[:, None] * x0 + torch.sin(t)[:, None] * z
        v = torch.cos(t)[:, None] * z - torch.sin(t)[:, None] * x0
        loss = (SD * teacher(x_t / SD, t, y) - v).pow(2).mean() / SD ** 2
        opt.zero_grad()
        loss.backward()
        opt.step()

    cfg = SCMConfig(lr=2e-3, tangent_warmup=10, ema_decay=0.9, seed=3)
    dist = SCMDistiller(teacher, cfg)
    assert all(torch.equal(a, b) for a, b in zip(dist.student.state_dict().values(), teacher.state_dict().values()))
    ge = torch.Generator().manual_seed(5)
    xe, ye = _mixture(256, ge, means)
    te = sample_t(256, -1.0, 1.4, SD, ge)
    ze = torch.randn(256, 16, generator=ge) * SD
    before = consistency_error(dist.student, teacher, xe, te, ze, SD, ye)
    stats = [dist.step(*_mixture(64, g, means)) for _ in range(30)]
    after = consistency_error(dist.student, teacher, xe, te, ze, SD, ye)
    after_ema = consistency_error(dist.ema, teacher, xe, te, ze, SD, ye)
    assert [s["r"] for s in stats[:3]] == [0.0, 0.1, 0.2] and stats[-1]["r"] == 1.0
    assert dist.iteration == 30
    assert all(math.isfinite(s["loss"]) for s in stats)
    # measured: after / before = 0.64 (student), 0.66 (EMA); the normalised loss itself says little (toyworld/README.md)
    assert after < 0.8 * before, (before, after)
    assert after_ema < 0.85 * before, (before, after_ema)
    # the teacher is untouched; the student moved
    assert not any(p.requires_grad for p in teacher.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(dist.student.parameters(), teacher.parameters()))


def test_short_sct_run_is_deterministic():
    def run():
        torch.manual_seed(0)
        net = Net(d=8, width=16, seed=0)
        dist = SCMDistiller(None, SCMConfig(mode="sct", lr=1e-3, tangent_warmup=0, seed=2), student=net)
        g = torch.Generator().manual_seed(0)
        out = [dist.step(torch.randn(32, 8, generator=g) * SD, torch.randint(0, 3, (32,), generator=g))["loss"] for _ in range(3)]
        return out, [p.detach().clone() for p in dist.ema.parameters()]

    (l1, p1), (l2, p2) = run(), run()
    assert l1 == l2
    assert all(torch.equal(a, b) for a, b in zip(p1, p2))


# -- the paper's recipe pieces: EMA profiles, optimiser, dropout-RNG sync (Lu & Song 2024, App. G) ----------------

def test_power_ema_exponent_inverts_edm2_sigma_rel():
    """EDM2 (Karras et al. 2024, Eq. 3) defines sigma_rel = sqrt((g + 1) / ((g + 2)^2 (g + 3))) for exponent g."""
    for std in (0.01, 0.05, 0.1, 0.2):
        g = sd_mod.power_ema_exponent(std)
        assert math.sqrt((g + 1) / ((g + 2) ** 2 * (g + 3))) == pytest.approx(std, rel=1e-9)
    # the pairs EDM2 quotes (Sec. 3.1): sigma_rel 0.05 <-> gamma 16.97, 0.10 <-> 6.94
    assert sd_mod.power_ema_exponent(0.05) == pytest.approx(16.97, abs=0.005)
    assert sd_mod.power_ema_exponent(0.10) == pytest.approx(6.94, abs=0.005)
    with pytest.raises(ValueError, match="sigma_rel must be < 0.2887"):
        sd_mod.power_ema_exponent(0.3)


def test_ema_decay_profiles():
    power = SCMConfig(ema_std=0.05)
    g = sd_mod.power_ema_exponent(0.05)
    # EDM2's power_function_beta: (1 - 1/t)^(g + 1); the first iteration copies the student
    assert sd_mod.ema_decay_at(power, 1, 512) == 0.0
    assert sd_mod.ema_decay_at(power, 1000, 512) == pytest.approx((1 - 1 / 1000) ** (g + 1), rel=1e-12)
    halflife = SCMConfig()  # the paper's CIFAR-10 default: half-life 0.5 M images
    assert halflife.ema_halflife == 500_000
    assert sd_mod.ema_decay_at(halflife, 7, 500) ** 1000 == pytest.approx(0.5, rel=1e-9)  # 1000 x 500 images: one half-life
    assert sd_mod.ema_decay_at(SCMConfig(ema_decay=0.99), 5, 64) == 0.99
    with pytest.raises(ValueError, match="give one of ema_decay, ema_halflife, ema_std, not ema_decay and ema_std"):
        SCMConfig(ema_decay=0.9, ema_std=0.05)
    with pytest.raises(ValueError, match=r"ema_std \(EDM2 sigma_rel\) must be in \(0, 0.28\]"):
        SCMConfig(ema_std=0.5)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        SCMConfig(optimizer="sgd")


def test_ema_follows_the_power_profile_and_radam_is_the_default():
    net = Net(d=8, width=16, seed=0)
    dist = SCMDistiller(None, SCMConfig(mode="sct", lr=1e-3, tangent_warmup=0, ema_std=0.1, seed=2), student=net)
    assert type(dist.optimizer) is torch.optim.RAdam
    assert type(SCMDistiller(None, SCMConfig(mode="sct", optimizer="adam"), student=Net(d=8, width=16)).optimizer) is torch.optim.Adam
    g = torch.Generator().manual_seed(0)
    ema = [p.detach().clone() for p in dist.student.parameters()]
    for it in range(1, 4):
        s = dist.step(torch.randn(16, 8, generator=g) * SD, torch.randint(0, 3, (16,), generator=g))
        beta = (1 - 1 / it) ** (sd_mod.power_ema_exponent(0.1) + 1)
        assert s["ema_decay"] == pytest.approx(beta, rel=1e-12)
        ema = [beta * e + (1 - beta) * p.detach() for e, p in zip(ema, dist.student.parameters())]
    assert all(torch.allclose(a, b, rtol=0, atol=1e-6) for a, b in zip(ema, dist.ema.parameters()))


class DropoutNet(Net):
    """Net with dropout on the hidden layer: two forward passes draw two different masks unless replayed."""

    def __init__(self, p=0.5, **kw):
        super().__init__(**kw)
        self.drop = torch.nn.Dropout(p)

    def forward(self, x, t, class_labels=None):
        f = torch.stack([torch.sin(t), torch.cos(t), torch.sin(4 * t), torch.cos(4 * t)], 1)
        h = torch.nn.functional.silu(self.l1(torch.cat([x, f], 1)) + self.emb(class_labels))
        return self.l3(self.drop(torch.nn.functional.silu(self.l2(h))))


def test_dropout_masks_are_shared_by_the_jvp_and_the_loss_pass(monkeypatch):
    """Algorithm 1's F_theta - F^- is zero at theta = theta^-; with dropout that holds only if both passes use one
    mask. With batch 1 the first step's per-sample mse is then exactly ||g / (||g|| + c)||^2 / D."""
    t, x0, z, y, x_t = _batch(d=16)
    net = DropoutNet(p=0.5, seed=1).float().train()
    dxdt = torch.randn(6, 16)
    restore = sd_mod.rng_replay("cpu")
    F_minus, _ = consistency_tangent(net, x_t.float(), t.float(), dxdt, SD, 1.0, y)
    restore()
    assert torch.equal(F_minus, net(x_t.float() / SD, t.float(), y).detach())
    assert not torch.equal(F_minus, net(x_t.float() / SD, t.float(), y).detach())  # a fresh pass draws a new mask

    def first_step_mse_ratio():
        dist = SCMDistiller(None, SCMConfig(mode="sct", tangent_warmup=0, adaptive_weight=False, seed=4),
                            student=DropoutNet(p=0.5, seed=1))
        torch.manual_seed(11)
        s = dist.step(x0[:1].float(), y[:1])
        expected = (s["g_norm"] / (s["g_norm"] + 0.1)) ** 2 / 16
        return s["mse"] / expected

    assert first_step_mse_ratio() == pytest.approx(1.0, rel=1e-5)
    monkeypatch.setattr(sd_mod, "rng_replay", lambda device: (lambda: None))  # the unsynchronised step
    assert first_step_mse_ratio() > 1.5
