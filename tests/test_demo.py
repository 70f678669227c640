"""The CLI demo end to end on the committed toy world, at a tiny budget."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageChops

from noise_search.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_demo_writes_grids_plot_and_a_consistent_summary(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--digit", "7", "--steps", "3", "--budget", "50", "--out", str(out), "--quiet",
                 "--neighbours", "2", "--top-k", "4"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["nfe_per_candidate"] == 5  # Heun, 3 steps: 2 + 2 + 1
    for name in ("random", "zero_order", "paths"):
        algo = summary["algorithms"][name]
        assert algo["nfe"] <= 50 and algo["completed"]
        if name != "paths":  # paths' intermediate x0 predictions are scored but cannot win
            assert algo["winner"]["score"] == max(c["score"] for c in algo["history"])
        assert [c["score"] for c in algo["top_k"]] == sorted((c["score"] for c in algo["top_k"]), reverse=True)
        assert Image.open(out / f"{name}_grid.png").size[0] > 0
    assert summary["algorithms"]["random"]["params"]["count"] == 10
    assert summary["algorithms"]["zero_order"]["params"]["iterations"] == 5
    assert Image.open(out / "score_vs_nfe.png").size == (640, 400)


def test_demo_rejects_bad_arguments(tmp_path):
    with pytest.raises(SystemExit, match=r"--algorithms must be a comma-separated subset"):
        main(["demo", "--algorithms", "beam", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"--digit must be in \[0, 9\]"):
        main(["demo", "--digit", "12", "--out", str(tmp_path)])


def _summary(out):
    return json.loads((out / "summary.json").read_text())


def test_summary_names_the_real_verifier_weights_and_grid_labels_tell_candidates_apart(tmp_path):
    """summary.json's verifier weights is the file that was loaded (relative to the pack); every grid label
    is unique within its search (they all read "path from (seed 0)" before) and names how it was made."""
    from noise_search.search.noise import recipe_from_dict
    from noise_search.search.report import candidate_label

    out = tmp_path / "demo"
    assert main(["demo", "--steps", "3", "--budget", "50", "--out", str(out), "--quiet", "--neighbours", "2", "--top-k", "8"]) == 0
    summary = _summary(out)
    weights = summary["verifier"]["weights"]
    assert weights == "toyworld/weights/classifier.safetensors" and (ROOT / weights).is_file()
    first_line = {"random": "seed ", "zero_order": "iter ", "paths": "path of seed "}
    for name, algo in summary["algorithms"].items():
        labels = [candidate_label(recipe_from_dict(c["recipe"])) for c in algo["top_k"]]
        assert len(labels) > 1 and len(set(labels)) == len(labels), (name, labels)
        assert all(label.startswith(first_line[name]) for label in labels), (name, labels)


def test_a_rerun_into_the_same_folder_leaves_no_files_of_the_earlier_run(tmp_path, capsys):
    """Only the demo's own file names are removed: a user's files in --out stay."""
    out = tmp_path / "demo"
    out.mkdir()
    earlier = ["zero_order_grid.png", "paths_winner.pt", "random_interrupted.json", "paths_interrupted_grid.png", "summary.json"]
    mine = ["notes.txt", "random_grid_v1.png", "paths"]
    for name in earlier + mine[:2]:
        (out / name).write_bytes(b"earlier")
    (out / "paths").mkdir()
    assert main(["demo", "--algorithms", "random", "--steps", "2", "--budget", "9", "--out", str(out), "--quiet"]) == 0
    assert f"removed {len(earlier)} files of an earlier demo run" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == sorted(["random_grid.png", "random_winner.pt", "score_vs_nfe.png",
                                                            "summary.json", *mine])
    assert list(_summary(out)["algorithms"]) == ["random"]


def test_student_defaults_to_its_steps_and_the_algorithms_that_fit_it(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--generator", "student", "--budget", "8", "--neighbours", "2", "--top-k", "2", "--out", str(out),
                 "--quiet"]) == 0
    summary = _summary(out)
    assert summary["steps"] == 2 and summary["nfe_per_candidate"] == 2
    assert list(summary["algorithms"]) == ["random", "zero_order"]
    assert "note: search over paths needs an ODE sampler" in capsys.readouterr().out


def _interrupt_on_call(monkeypatch, n):
    """Ctrl-C inside the toy world's n-th generate call (1 = the no-search sample)."""
    from noise_search.toyworld.world import ToyWorld

    calls, real = [], ToyWorld.generate

    def generate(self, candidates):
        calls.append(len(candidates))
        if len(calls) == n:
            raise KeyboardInterrupt
        return real(self, candidates)

    monkeypatch.setattr(ToyWorld, "generate", generate)


@pytest.mark.parametrize("call, said", [
    (1, "interrupted: no candidate was scored yet, so nothing was saved"),
    (2, "interrupted: random had scored no candidate yet, so nothing of it was saved"),
])
def test_ctrl_c_before_the_first_chunk_says_nothing_was_saved(tmp_path, monkeypatch, capsys, call, said):
    _interrupt_on_call(monkeypatch, call)
    out = tmp_path / "demo"
    assert main(["demo", "--algorithms", "random", "--steps", "2", "--budget", "9", "--out", str(out)]) == 130
    stdout, stderr = capsys.readouterr()
    assert said in stdout and "cancelled (Ctrl-C)" in stderr
    assert "saved" not in stderr  # the CLI claims nothing; the demo said what is on disk
    assert sorted(p.name for p in out.iterdir()) == []


def test_ctrl_c_before_the_second_algorithm_scored_keeps_the_first(tmp_path, monkeypatch, capsys):
    _interrupt_on_call(monkeypatch, 3)  # no-search sample, random's one chunk, zero_order's first chunk
    out = tmp_path / "demo"
    assert main(["demo", "--algorithms", "random,zero_order", "--steps", "2", "--budget", "9", "--neighbours", "2",
                 "--out", str(out), "--quiet"]) == 130
    assert "zero_order had scored no candidate yet, so nothing of it was saved; the finished random results" in capsys.readouterr().out
    summary = _summary(out)
    assert list(summary["algorithms"]) == ["random"] and summary["interrupted"] == {"algorithm": "zero_order", "candidates": 0, "nfe": 0}
    assert (out / "random_grid.png").exists() and not (out / "zero_order_interrupted.json").exists()


# ---- the figures ------------------------------------------------------------------------------------------

def test_axis_ticks_are_round_numbers():
    from noise_search.search.report import nice_ticks, tick_text

    ticks, step = nice_ticks(9.03, 17.5)  # the demo's logits: the axis read 9.03, 11.1, 13.2, 15.4, 17.5
    assert step == 2 and [tick_text(t, step) for t in ticks] == ["8", "10", "12", "14", "16", "18"]
    ticks, step = nice_ticks(0, 608, count=8)
    assert step == 100 and [tick_text(t, step) for t in ticks][:3] == ["0", "100", "200"]
    ticks, step = nice_ticks(0.31, 0.42)
    assert step == 0.02 and [tick_text(t, step) for t in ticks] == ["0.30", "0.32", "0.34", "0.36", "0.38", "0.40", "0.42"]


CURVES = {"random": [(19, 9.6), (38, 9.6), (57, 12.0), (76, 16.2)], "zero_order": [(38, 10.9), (76, 15.3)],
          "paths": [(45, 9.7), (90, 16.9)]}


def test_score_plot_writes_nothing_over_the_curves():
    """Inside the frame only the curves, the grid and the dashed no-search line are drawn: the legend and the
    "no search" label sit above the plot (before, both were drawn on it, over the lines)."""
    from noise_search.search.report import PALETTE, score_vs_nfe_plot

    img = score_vs_nfe_plot(CURVES, baseline=9.6)
    allowed = {(255, 255, 255), (235, 235, 235), (120, 120, 120), *PALETTE}
    a = np.asarray(img)
    # the frame: the rectangle drawn in (160, 160, 160), the only long runs of that grey
    grey = (a == (160, 160, 160)).all(-1)
    cols = np.flatnonzero(grey.sum(0) > 100)
    left, right = cols.min(), cols.max()
    rows = np.flatnonzero(grey[:, left])
    top, bottom = rows.min(), rows.max()
    inside = {tuple(p) for p in a[top + 1:bottom, left + 1:right].reshape(-1, 3).tolist()}
    assert inside <= allowed, sorted(inside - allowed)[:5]


def test_score_plot_labels_its_y_axis():
    from noise_search.search.report import score_vs_nfe_plot

    with_label = score_vs_nfe_plot(CURVES, y_label="best classifier logit")
    without = score_vs_nfe_plot(CURVES, y_label="")
    box = ImageChops.difference(with_label, without).getbbox()
    assert box is not None and box[2] < 30 and box[3] - box[1] > 80  # a tall strip at the left edge: vertical text
