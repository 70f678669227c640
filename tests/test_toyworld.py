"""The embedded toy world: data, TrigFlow wrapper math, metrics, committed weights and training scripts."""

import math

import pytest
import torch

from noise_search.samplers.ode import sample_heun
from noise_search.samplers.schedules import karras_sigmas
from noise_search.toyworld import data, evaluate, load, metrics, models


# -- data -------------------------------------------------------------------------------------

def test_digits_shapes_range_and_split():
    x, y = data.load_digits_tensor()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == torch.float32
    assert y.shape == (1797,) and y.dtype == torch.int64
    assert x.min() == -1.0 and x.max() == 1.0
    tr, te = data.stratified_split(y)
    tr2, te2 = data.stratified_split(y)
    assert torch.equal(tr, tr2) and torch.equal(te, te2)  # deterministic
    assert len(set(tr.tolist()) & set(te.tolist())) == 0 and tr.numel() + te.numel() == 1797
    for c in range(10):  # stratified: every class keeps ~20% in the test set
        n_c = int((y == c).sum())
        assert int((y[te] == c).sum()) == round(0.2 * n_c)


# -- models and the denoiser wrapper ------------------------------------------------------------

def test_trigflow_net_shapes_and_zero_init():
    net = models.TrigFlowNet(width=32, blocks=2)
    x = torch.randn(5, 1, 8, 8)
    out = net(x, torch.rand(5), torch.tensor([0, 1, 2, 10, 3]))
    assert out.shape == x.shape
    assert torch.equal(out, torch.zeros_like(out))  # zero-initialised output layer
    assert net(x.flatten(1), torch.tensor(0.3), None).shape == (5, 64)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")  # raised inside torch.func
@pytest.mark.parametrize("arch", [{}, {"time_embedding": "geometric", "max_freq": 64.0, "modulation": "adaln"}],
                         ids=["paper", "legacy"])
def test_trigflow_net_supports_forward_mode_jvp(arch):
    """The sCD student needs torch.func.jvp through F; check it against a central finite difference."""
    torch.manual_seed(0)
    net = models.TrigFlowNet(width=32, blocks=2, **arch).double()
    for p in net.parameters():  # make the zero-initialised layers non-trivial
        p.data.normal_(0, 0.2)
    x, t, y = torch.randn(3, 64, dtype=torch.float64), torch.rand(3, dtype=torch.float64), torch.tensor([1, 4, 10])
    tx, tt = torch.randn_like(x), torch.randn_like(t)
    _, jvp = torch.func.jvp(lambda a, b: net(a, b, y), (x, t), (tx, tt))
    eps = 1e-6
    fd = (net(x + eps * tx, t + eps * tt, y) - net(x - eps * tx, t - eps * tt, y)) / (2 * eps)
    assert torch.allclose(jvp, fd, rtol=1e-5, atol=1e-7)


def test_positional_time_embedding_is_ddpmpp_positional_embedding():
    """The original: EDM's PositionalEmbedding (training/networks.py, endpoint=True, max_positions=10000),
    freqs = (1 / max_positions) ** (arange(n) / (n - 1)), applied to c_noise(t) = t (Lu & Song 2024, Sec. 4.1)."""
    n = 32
    edm = (1 / 10000) ** (torch.arange(n, dtype=torch.float32) / (n - 1))
    assert torch.allclose(models.time_frequencies(n, 1.0, "positional"), edm, rtol=1e-6, atol=0)
    assert torch.allclose(models.time_frequencies(4, 64.0, "geometric"), torch.tensor([1.0, 4.0, 16.0, 64.0]), rtol=1e-6)
    emb = models.TrigFlowNet(width=32, blocks=1).time_emb
    assert torch.equal(emb.freqs, models.time_frequencies(32, 1.0, "positional"))
    with pytest.raises(ValueError, match="time_embedding must be one of"):
        models.TrigFlowNet(time_embedding="fourier")


def test_double_normalisation_pins_the_modulation():
    """y = norm(x) pnorm(1 + scale) + pnorm(shift) (the sCM paper's adaptive double normalisation): equal to plain
    LayerNorm when the modulation is zero, and bounded however large the condition makes scale and shift."""
    g = torch.Generator().manual_seed(0)
    h, scale, shift = (torch.randn(4, 64, generator=g) for _ in range(3))
    ln = torch.nn.functional.layer_norm(h, (64,))
    zero = torch.zeros(4, 64)
    # pnorm(1) = 1 / sqrt(1 + eps): LayerNorm up to the eps
    assert torch.allclose(models.modulate(h, zero, zero, "double"), ln / math.sqrt(1 + models.PNORM_EPS), rtol=1e-6, atol=1e-7)
    assert torch.equal(models.modulate(h, zero, zero, "adaln"), ln)
    big = models.modulate(h, 1e6 * scale, 1e6 * shift, "double")
    # |y| <= |LN(h)| * |pnorm(1 + s)| + |pnorm(b)|, each pnorm with unit RMS: at most sqrt(64) = 8 per coordinate
    assert torch.isfinite(big).all() and big.abs().max() <= ln.abs().max() * 8 + 8
    assert torch.allclose(models.pixel_norm(1e6 * shift).pow(2).mean(-1), torch.ones(4), rtol=1e-6)
    assert models.modulate(h, 1e6 * scale, 1e6 * shift, "adaln").abs().max() > 1e5  # plain AdaLN follows the condition
    # finite at an all-zero shift (eps inside the root): the JVP through pnorm stays finite there too
    _, tangent = torch.func.jvp(models.pixel_norm, (zero,), (torch.ones(4, 64),))
    assert torch.isfinite(tangent).all()
    with pytest.raises(ValueError, match="modulation must be one of"):
        models.TrigFlowNet(modulation="adagn")


def test_dropout_setting_and_a_legacy_weights_file(tmp_path):
    net = models.TrigFlowNet(width=32, blocks=2, dropout=0.2)
    assert [b.drop.p for b in net.blocks] == [0.2, 0.2]
    net.set_dropout(0.0)
    assert [b.drop.p for b in net.blocks] == [0.0, 0.0] and net.config["dropout"] == 0.0
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.5"):
        net.set_dropout(1.5)
    # a file written before the architecture keys existed (the first teacher) loads as what it was built with
    from safetensors.torch import load_file, save_file

    legacy = models.TrigFlowNet(width=32, blocks=2, time_embedding="geometric", max_freq=64.0, modulation="adaln")
    for p in legacy.parameters():
        p.data.normal_(0, 0.1)
    path = load.save_weights(legacy, tmp_path / "old.safetensors", "teacher")
    config = {k: v for k, v in legacy.config.items() if k not in models.LEGACY_CONFIG}
    save_file(load_file(str(path)), str(path), metadata={"format": "pt", "kind": "teacher", "config": __import__("json").dumps(config), "info": "{}"})
    back = load.load_teacher(path)
    assert {k: back.config[k] for k in models.LEGACY_CONFIG} == models.LEGACY_CONFIG
    state = {k: v.float() for k, v in load_file(str(path)).items()}
    as_built, as_today = models.TrigFlowNet(**legacy.config), models.TrigFlowNet(**config)
    as_built.load_state_dict(state)
    as_today.load_state_dict(state)  # the same tensors fit today's default architecture: only the config tells them apart
    x, t, y = torch.randn(3, 64), torch.rand(3), torch.tensor([0, 5, 10])
    with torch.no_grad():
        assert torch.equal(back(x, t, y), as_built(x, t, y))
        assert (back(x, t, y) - as_today(x, t, y)).abs().max() > 1e-2


class PointMassF(torch.nn.Module):
    """The exact TrigFlow F for data concentrated on one image ``a``: F = (cos t z - sin t a) / sigma_d with
    z = (x_t - cos t a) / sin t. A correct wrapper must then denoise every input to ``a``."""

    null_class = 10

    def __init__(self, a, sigma_d=0.5):
        super().__init__()
        self.a, self.sigma_d = a, sigma_d
        self.calls = []

    def forward(self, x_in, t, y):
        self.calls.append((x_in.clone(), t.clone(), y.clone()))
        x_t = x_in * self.sigma_d
        tt = t.reshape(-1, *[1] * (x_t.ndim - 1))
        z = (x_t - torch.cos(tt) * self.a) / torch.sin(tt)
        return (torch.cos(tt) * z - torch.sin(tt) * self.a) / self.sigma_d


def test_denoiser_trigflow_math_with_exact_stub():
    a = torch.linspace(-1, 1, 64, dtype=torch.float64).reshape(1, 1, 8, 8)
    den = models.TrigFlowDenoiser(PointMassF(a))
    sigma = torch.tensor([0.01, 0.5, 3.0, 80.0], dtype=torch.float64)
    x = a + sigma.reshape(-1, 1, 1, 1) * torch.randn(4, 1, 8, 8, dtype=torch.float64)
    x0 = den(x, sigma, class_labels=torch.tensor([1, 2, 3, 4]))
    assert torch.allclose(x0, a.expand_as(x0), atol=1e-9)
    x_in, t, y = den.net.calls[-1]
    assert torch.allclose(t, torch.atan(sigma / 0.5))  # t = atan(sigma / sigma_d)
    assert torch.allclose(x_in, torch.cos(t).reshape(-1, 1, 1, 1) * x / 0.5)  # input x_t / sigma_d, x_t = cos t x
    assert y.tolist() == [1, 2, 3, 4]


def test_denoiser_is_identity_at_sigma_zero():
    """Consistency form f(x, t=0) = cos(0) x - sin(0) sigma_d F = x exactly, whatever F is."""
    net = models.TrigFlowNet(width=32, blocks=2)
    for p in net.parameters():
        p.data.normal_(0, 0.3)
    x = torch.randn(4, 1, 8, 8)
    assert torch.equal(models.TrigFlowDenoiser(net)(x, torch.zeros(4), class_labels=3), x)


def test_cfg_one_is_the_conditional_output_and_cfg_mixes_branches():
    torch.manual_seed(1)
    net = models.TrigFlowNet(width=32, blocks=2)
    for p in net.parameters():
        p.data.normal_(0, 0.3)
    x, sigma, y = torch.randn(6, 1, 8, 8), torch.full((6,), 1.3), torch.arange(6)
    plain = models.TrigFlowDenoiser(net)
    assert plain.cfg_multiplier == 1 and plain.sigma_data == 0.5 and plain.sigma_min == 0.002 and plain.sigma_max == 80
    cond = plain(x, sigma, class_labels=y)
    t = torch.atan(sigma / 0.5).reshape(-1, 1, 1, 1)
    f_c = net(torch.cos(t) * x / 0.5, t.flatten(), y)
    assert torch.equal(cond, torch.cos(t) * (torch.cos(t) * x) - torch.sin(t) * 0.5 * f_c)  # x0 = cos t x_t - sin t sigma_d F
    assert torch.equal(models.TrigFlowDenoiser(net, cfg_scale=1.0)(x, sigma, class_labels=y), cond)
    guided = models.TrigFlowDenoiser(net, cfg_scale=2.0)
    assert guided.cfg_multiplier == 2
    uncond = plain(x, sigma, class_labels=None)
    # x0 is affine in F, so x0_cfg = x0_u + s (x0_c - x0_u)
    assert torch.allclose(guided(x, sigma, class_labels=y), uncond + 2.0 * (cond - uncond), atol=1e-5)
    with pytest.raises(ValueError, match="class labels"):
        plain(x, sigma, class_labels=torch.arange(4))


def test_classifier_shapes():
    clf = models.DigitClassifier()
    x = torch.rand(7, 1, 8, 8) * 2 - 1
    assert clf.features(x).shape == (7, 128) and clf(x).shape == (7, 10)


# -- metrics --------------------------------------------------------------------------------------

def test_frechet_distance_exact_values():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(500, 6, generator=g, dtype=torch.float64)
    assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    # Shifted copy: covariances identical, FD = ||mean shift||^2 exactly.
    shift = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0, 1.0], dtype=torch.float64)
    assert metrics.frechet_distance(a, a + shift) == pytest.approx(float(shift.pow(2).sum()), rel=1e-9)
    # Closed form for commuting diagonal covariances: sum (sqrt(c1) - sqrt(c2))^2 + ||mu1 - mu2||^2.
    mu1, mu2 = torch.zeros(3), torch.tensor([1.0, 2.0, 2.0])
    c1, c2 = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 1.0, 9.0])
    fd = metrics.frechet_distance_from_stats(mu1, torch.diag(c1), mu2, torch.diag(c2))
    assert fd == pytest.approx(9.0 + (1 + 1 + 0), abs=1e-10)
    # Non-commuting covariances: compare with the definition via an explicit matrix square root.
    q = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64))[0]
    s1 = q @ torch.diag(torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)) @ q.T
    s2 = torch.diag(torch.tensor([0.5, 1.0, 5.0, 2.0], dtype=torch.float64))
    w, v = torch.linalg.eig(s1 @ s2)  # eigenvalues of C1 C2 are real positive
    expected = float(torch.trace(s1) + torch.trace(s2) - 2 * w.real.clamp_min(0).sqrt().sum())
    assert metrics.frechet_distance_from_stats(torch.zeros(4), s1, torch.zeros(4), s2) == pytest.approx(expected, rel=1e-9)


def test_precision_recall_exact_values():
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    # k = 1 radii are 1 for every real point: the real manifold is [-1, 4].
    fake_in = torch.tensor([[0.5], [3.9], [-0.9]])
    assert metrics.precision_recall(real, fake_in, k=1)["precision"] == 1.0
    fake = torch.tensor([[0.5], [10.0], [11.0], [-5.0]])
    pr = metrics.precision_recall(real, fake, k=1)
    assert pr["precision"] == 0.25
    # fake radii (k=1): 0.5 -> 5.5, 10 -> 1, 11 -> 1, -5 -> 5.5: reals 0..3 all within 5.5 of 0.5
    assert pr["recall"] == 1.0
    assert metrics.precision_recall(real, real, k=2) == {"precision": 1.0, "recall": 1.0}


def test_class_accuracy_exact():
    class Fixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return torch.nn.functional.one_hot(x.reshape(x.shape[0], -1)[:, 0].long(), 10).float()

    x = torch.tensor([0, 1, 2, 3], dtype=torch.float32).reshape(4, 1, 1, 1).expand(4, 1, 8, 8)
    assert metrics.class_accuracy(Fixed(), x, torch.tensor([0, 1, 5, 3])) == 0.75


# -- committed weights ---------------------------------------------------------------------------

def test_committed_classifier_heldout_accuracy():
    clf = load.load_classifier()
    assert not clf.training and next(clf.parameters()).dtype == torch.float32
    _, _, x_te, y_te = data.digits_split()
    acc = metrics.class_accuracy(clf, x_te, y_te)
    assert acc >= 0.97
    assert acc == pytest.approx(clf.weights_info["heldout_accuracy"], abs=1e-4)  # the recorded number is true


def test_committed_teacher_makes_recognisable_digits():
    den = load.teacher_denoiser()
    assert not den.net.training and den.cfg_multiplier == 1
    labels = torch.arange(10).repeat(5)
    x = evaluate.sample_classes(den, labels, steps=10, method="heun", seed=0)
    assert x.shape == (50, 1, 8, 8) and torch.isfinite(x).all()
    acc = metrics.class_accuracy(load.load_classifier(), x.clamp(-1, 1), labels)
    assert acc >= 0.9


def test_weights_fit_the_size_budget(repo_root):
    sizes = [(repo_root / "toyworld" / "weights" / f).stat().st_size for f in ("teacher.safetensors", "classifier.safetensors")]
    # leave room for a student as large as the teacher within 10 MB
    assert sizes[0] * 2 + sizes[1] <= 10 * 1024 * 1024


def test_missing_and_corrupt_weights_name_file_and_script(tmp_path):
    missing = tmp_path / "nowhere" / "student.safetensors"
    with pytest.raises(FileNotFoundError) as e:
        load.load_student(missing)
    assert "student.safetensors" in str(e.value) and "distill_student" in str(e.value)
    with pytest.raises(FileNotFoundError, match="train_teacher"):
        load.load_teacher(tmp_path / "teacher.safetensors")
    bad = tmp_path / "classifier.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    with pytest.raises(load.WeightsError) as e:
        load.load_classifier(bad)
    assert str(bad) in str(e.value) and "train_classifier" in str(e.value)
    with pytest.raises(load.WeightsError, match="train_teacher"):  # a classifier file is not a teacher
        load.load_teacher(load.default_path("classifier"))


# -- training scripts ------------------------------------------------------------------------------

def test_train_teacher_runs_briefly_and_loads_back(tmp_path):
    from noise_search.toyworld import train_teacher

    before = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
    out = train_teacher.main(["--out", str(tmp_path / "t.safetensors"), "--iterations", "3", "--width", "32",
                              "--blocks", "1", "--batch", "32", "--log-every", "0"])
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == before
    net = load.load_teacher(out)
    assert net.config["width"] == 32 and net.weights_info["args"]["iterations"] == 3
    x0 = models.TrigFlowDenoiser(net)(torch.randn(2, 1, 8, 8), torch.tensor([1.0, 2.0]), class_labels=[0, 1])
    assert x0.shape == (2, 1, 8, 8) and torch.isfinite(x0).all()


def test_train_classifier_runs_briefly_and_loads_back(tmp_path):
    from noise_search.toyworld import train_classifier

    out = train_classifier.main(["--out", str(tmp_path / "c.safetensors"), "--iterations", "5", "--log-every", "0"])
    clf = load.load_classifier(out)
    assert 0.0 <= clf.weights_info["heldout_accuracy"] <= 1.0
    assert clf(torch.zeros(1, 1, 8, 8)).shape == (1, 10)


def test_sampling_grid_matches_the_pack_samplers():
    """sample_classes is sample_heun on karras_sigmas(n, 0.002, 80) from seeded noise."""
    net = models.TrigFlowNet(width=16, blocks=1)
    den = models.TrigFlowDenoiser(net)
    labels = torch.tensor([3, 7])
    got = evaluate.sample_classes(den, labels, steps=3, seed=5)
    sig = karras_sigmas(3, 0.002, 80)
    ref = sample_heun(den, evaluate.sample_noise(2, 5) * sig[0], sig, extra_args={"class_labels": labels})
    assert torch.equal(got, ref)
    assert math.isclose(float(sig[0]), 80.0, rel_tol=1e-6)
