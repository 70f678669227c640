"""toyworld/distill_student.py: a 3-iteration run writes a loadable, deterministic fp16 student."""

import json

import pytest
import torch

pytest.importorskip("sklearn")
pytest.importorskip("safetensors")

from noise_search.toyworld import distill_student  # noqa: E402
from noise_search.toyworld.load import default_path, load_student, load_teacher, read_weights  # noqa: E402

if not default_path("teacher").is_file() or not default_path("classifier").is_file():
    pytest.skip("the committed toy-world teacher/classifier weights are missing", allow_module_level=True)

ARGS = ["--iterations", "3", "--batch", "16", "--eval-every", "2", "--select-seeds", "5", "--eval-per-class", "10",
        "--tangent-warmup", "2", "--lr", "1e-3", "--ema", "0.9"]


def test_three_iterations_write_a_loadable_deterministic_student(tmp_path):
    out1, out2 = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    info = distill_student.main(["--out", str(out1), "--log", str(tmp_path / "log.jsonl")] + ARGS)
    distill_student.main(["--out", str(out2)] + ARGS)
    student, teacher = load_student(out1), load_teacher()
    assert student.config == teacher.config
    state, meta = read_weights(out1, "student")
    raw = {}
    from safetensors import safe_open

    with safe_open(str(out1), framework="pt") as f:
        raw = {k: f.get_tensor(k) for k in f.keys()}
    assert all(v.dtype == torch.float16 for v in raw.values())
    assert set(raw) == set(teacher.state_dict())
    # monitored at iterations 2 and 3 (the end); the selected row is one of them and has the best 2-step FD
    its = [r["iteration"] for r in info["history"]]
    assert its == [2, 3]
    assert meta["info"]["selected"] == min(info["history"], key=lambda r: r["fd2_clamped"])
    assert [json.loads(line)["iteration"] for line in (tmp_path / "log.jsonl").read_text().splitlines()] == [2, 3]
    # deterministic: the same arguments give bit-identical weights
    state2, _ = read_weights(out2, "student")
    assert all(torch.equal(state[k], state2[k]) for k in state)
    # the student moved away from the teacher (lr 1e-3, 3 iterations, EMA 0.9) but only slightly
    diffs = [(state[k] - teacher.state_dict()[k]).abs().max().item() for k in state]
    assert 0 < max(diffs) < 0.05


def test_sct_with_dropout_runs_and_saves_a_dropout_free_file(tmp_path):
    """sCT (the paper's consistency training on data, CIFAR-10 dropout 0.2): the student trains with dropout and the
    saved EMA is the teacher's architecture with dropout 0 (sampling never drops)."""
    out = tmp_path / "sct.safetensors"
    args = [a for a in ARGS if a not in ("--ema", "0.9")]
    info = distill_student.main(["--out", str(out), "--mode", "sct", "--dropout", "0.2"] + args)
    assert info["method"].startswith("sCT") and info["config"]["mode"] == "sct"
    assert info["config"]["ema_halflife"] == distill_student.DEFAULTS["ema_halflife"] and info["config"]["optimizer"] == "radam"
    student = load_student(out)
    assert student.config == load_teacher().config and student.config["dropout"] == 0.0


@pytest.mark.parametrize("extra, message", [
    (["--iterations", "0"], "--iterations must be >= 1"),
    (["--dropout", "1.0"], "--dropout must be in [0, 1)"),
    (["--ema", "0.9", "--ema-std", "0.05"], "not allowed with argument"),
    (["--ema-std", "0.5"], "ema_std (EDM2 sigma_rel) must be in (0, 0.28]"),
])
def test_bad_arguments_are_refused(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exc:
        distill_student.main(["--out", str(tmp_path / "x.safetensors")] + extra)
    assert message in str(exc.value) + capsys.readouterr().err


@pytest.mark.skipif(not default_path("student").is_file(), reason="no committed student weights")
def test_committed_student_loads_and_samples_the_right_digits():
    from noise_search.toyworld.load import load_classifier

    student, teacher = load_student(), load_teacher()
    assert student.config == teacher.config
    info = student.weights_info
    # the saved EMA is the monitored checkpoint with the best 2-step FD on the selection seeds
    assert info["selected"] == min(info["history"], key=lambda r: r["fd2_clamped"])
    assert info["args"]["select_seeds"] == [100, 101]
    # its recorded arguments are the script's defaults, so the plain command reproduces it
    defaults = vars(distill_student.parse_args(["--out", "x"]))
    assert {k: v for k, v in info["args"].items()} == {k: defaults[k] for k in info["args"]}
    labels = torch.arange(10).repeat_interleave(10)
    with torch.no_grad():
        x = distill_student.student_samples(student, labels, 2, t_mid=info["args"]["t_mid"], seed=3)
        acc = (load_classifier()(x.clamp(-1, 1)).argmax(1) == labels).double().mean().item()
    assert x.shape == (100, 1, 8, 8) and torch.isfinite(x).all()
    assert acc >= 0.9, acc


def test_training_stability_reads_the_monitor():
    """Issue 16's stability target: the 2-step FD at twice the best iteration within 1.3x of the best."""
    rows = [{"iteration": i, "fd2_clamped": f} for i, f in [(500, 9.0), (1000, 5.0), (1500, 5.5), (2000, 6.4), (2500, 7.0)]]
    s = distill_student.training_stability(rows)
    assert (s["selected_iteration"], s["fd2_at_2x"], s["ratio"], s["stable"]) == (1000, 6.4, 1.28, True)
    assert s["max_fd2_after_selected"] == 7.0
    rows[3]["fd2_clamped"] = 6.6  # 1.32x: unstable
    assert distill_student.training_stability(rows)["stable"] is False
    # best in the second half: the run cannot show stability either way
    late = distill_student.training_stability(rows[:3], rows[1] | {"iteration": 1500})
    assert late["ratio"] is None and late["stable"] is None
    with pytest.raises(ValueError, match="no FD monitor rows"):
        distill_student.training_stability([])
