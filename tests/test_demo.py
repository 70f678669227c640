"""The CLI demo end to end on the committed toy world, at a tiny budget."""

import json

import pytest
from PIL import Image

from noise_search.cli import main


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
