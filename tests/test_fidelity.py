"""Paper-fidelity measurements (toyworld/fidelity/) on a tiny configuration: JSON structure and invariants."""

import json

import pytest
import torch

from noise_search.toyworld import fidelity as F

TINY = {"digits": [0, 1], "f1_seeds": [0], "f1_candidates": [4, 8], "f2_per_digit": 2, "f2_candidates": [8],
        "f3_pools": [0], "f3_candidates": 8, "f4_per_class": 0, "f4_seeds": [0], "f4_teacher_steps": [10]}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("fidelity")
    rep = F.run_fidelity(TINY, out=out)
    return rep, out


def test_report_is_json_with_every_part_and_the_plots(report):
    rep, out = report
    saved = json.loads((out / "fidelity.json").read_text())
    assert saved == json.loads(json.dumps(rep))
    for part in ("f1", "f2", "f3", "f4", "claims"):
        assert part in saved
    assert saved["f4"]["status"] == "skipped"
    for name in saved["plots"]:
        assert (out / name).stat().st_size > 1000 and name.endswith(".png")
    assert {"f1_scaling.png", "f2_precision_recall.png", "f3_ssl_vs_logit.png"} <= set(saved["plots"])
    ids = {c["id"] for c in saved["claims"]}
    assert {"F1-random", "F1-zero_order", "F1-paths", "F1-steps", "F2-hacking", "F3-corr", "F4"} <= ids
    assert all(c["holds"] in (True, False, None) for c in saved["claims"])


def test_f1_nfe_accounting_and_monotone_curves(report):
    f1 = report[0]["f1"]
    per = 19
    assert f1["nfe_per_candidate"] == per and f1["units"] == 2
    c = f1["curves"]
    assert [r["nfe"] for r in c["random"]] == [4 * per, 8 * per]
    assert [r["nfe"] for r in c["zero_order"]] == [4 * per, 8 * per]  # ZO-4: 1 and 2 iterations
    # paths: 4 candidates (76 NFE) is below one round; 8 candidates fits width 2 exactly
    sig = F.grid()
    kw = F.path_params(sig)
    assert [r["candidates"] for r in c["paths"]] == [8]
    p = c["paths"][0]
    assert p["nfe"] == F.path_search_nfe(sig, paths=2, width=p["width"], step_nfe=F._heun_step_nfe, **kw) <= 8 * per
    assert F.path_search_nfe(sig, paths=2, width=p["width"] + 1, step_nfe=F._heun_step_nfe, **kw) > 8 * per
    # more steps at equal NFE: 2N - 1 <= budget < 2N + 1
    for r in c["more_steps"]:
        assert r["nfe"] == 2 * r["steps"] - 1 and r["nfe"] <= r["candidates"] * per < r["nfe"] + 2
    for name in ("random", "zero_order"):  # mean of best-so-far curves never falls
        m = [r["mean"] for r in c[name]]
        assert all(b >= a for a, b in zip(m, m[1:]))
    # a random search's first candidate is the no-search sample (same seed, same sampler; batching may move
    # the last float digits), so its best of 4 is never below it
    assert c["random"][0]["mean"] >= f1["no_search"]["mean"] - 1e-3


def test_best_so_far_helpers():
    curve = [(19, 1.0), (38, 1.0), (57, 2.5)]
    assert F.best_at(curve, 18) is None and F.best_at(curve, 40) == 1.0 and F.best_at(curve, 57) == 2.5
    assert F.steps_for_nfe(19) == 10 and F.steps_for_nfe(1216) == 608 and F.heun_nfe(608) == 1215
    assert F.feasible("zero_order", 4) and not F.feasible("zero_order", 2) and not F.feasible("paths", 4)


def test_f2_precision_recall_in_unit_interval(report):
    f2 = report[0]["f2"]
    rows = f2["rows"]
    assert {"no_search", "no_search_rerun", "more_steps@8", "random@8", "zero_order@8", "paths@8"} == set(rows)
    for r in rows.values():
        assert r["n"] == 4 and 0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1 and 0 <= r["accuracy"] <= 1
        assert r["spread"] > 0 and r["fd"] >= 0
    assert rows["random@8"]["nfe"] == 8 * 19 and rows["zero_order@8"]["nfe"] == 8 * 19
    # the search winners beat a plain sample on the verifier they were selected with
    assert rows["random@8"]["mean_logit"] > rows["no_search"]["mean_logit"]


def test_f3_spearman_in_range(report):
    f3 = report[0]["f3"]
    for v in list(f3["spearman_per_digit"].values()) + [f3["spearman_pooled"], f3["spearman_mean_over_digits"]]:
        assert v is None or -1 <= v <= 1
    assert [r["sigma"] for r in f3["by_early_sigma"]] == sorted((r["sigma"] for r in f3["by_early_sigma"]), reverse=True)
    assert sum(r["is_adapter_early"] for r in f3["by_early_sigma"]) == 1
    sel = f3["selection"]
    assert sel["1"]["ssl_selected"] == sel["1"]["classifier_selected"] == sel["1"]["random_pick"]
    for s in sel.values():
        assert s["classifier_selected"] >= s["ssl_selected"] - 1e-6 and s["classifier_selected"] >= s["random_pick"] - 1e-6
    assert "points" not in f3


def test_spearman_and_ranks():
    assert F.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert F.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert F.spearman([1, 1, 1], [1, 2, 3]) is None
    assert F.ranks([3.0, 1.0, 3.0, 2.0]).tolist() == [3.5, 1.0, 3.5, 2.0]
    torch.manual_seed(0)
    a, b = torch.randn(50), torch.randn(50)
    assert F.spearman(a, b) == pytest.approx(F.spearman(a.exp(), b ** 3), abs=1e-12)  # rank-invariant


def test_merge_keeps_the_parts_not_measured_again(report, tmp_path):
    rep, out = report
    (tmp_path / "fidelity.json").write_text((out / "fidelity.json").read_text())
    merged = F.run_fidelity(TINY, out=tmp_path, parts=("f4",), merge=True)
    assert merged["merged"]["kept_from_previous_run"] == ["f1", "f2", "f3"]
    assert merged["f1"] == json.loads(json.dumps(rep["f1"])) and merged["f4"]["status"] == "skipped"
    assert [c["id"] for c in merged["claims"]] == [c["id"] for c in rep["claims"]]
    with pytest.raises(ValueError, match="configuration"):
        F.run_fidelity(dict(TINY, f2_per_digit=3), out=tmp_path, parts=("f4",), merge=True)
    with pytest.raises(ValueError, match="subset"):
        F.run_fidelity(TINY, parts=("f5",))


def test_f4_measures_a_student_when_one_is_committed(tmp_path, monkeypatch):
    """F4 on a stand-in student (the teacher's weights saved as a student file): the table and its claims."""
    from noise_search.toyworld import load

    load.save_weights(load.load_teacher(), tmp_path / "student.safetensors", "student", info={"args": {"t_mid": 1.0}})
    monkeypatch.setattr(F.experiments, "WEIGHTS_DIR", tmp_path)  # where F4 looks for the student
    models = F.load_models()
    cfg = dict(TINY, f4_per_class=5, f4_teacher_steps=[10])
    f4 = F.f4_scm(cfg, models, F.Reference(models["classifier"]))
    assert f4["status"] == "measured" and f4["student_t_mid"] == 1.0 and f4["samples"] == 50
    assert [r["sampler"] for r in f4["table"]] == ["teacher Heun-10", "student sCM 1 step", "student sCM 2 steps (t_mid 1.1)",
                                                   "student sCM 2 steps (t_mid 1)"]
    assert [r["nfe"] for r in f4["table"]] == [19, 1, 2, 2]
    for r in f4["table"]:
        assert r["fd_clamped"] >= 0 and 0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1
    ids = {c["id"]: c for c in F.claims({"f4": f4})}
    assert ids["F4"]["holds"] in (True, False) and "t_mid 1)" in ids["F4"]["measured"] and "F4-steps" in ids


# -- F5: the searches beyond the paper on F1's and F2's protocols (toyworld/fidelity/experiments_beyond.py) ---------

F5_TINY = {"digits": [0, 1], "seeds": [0], "candidates": [4, 8], "per_digit": 2, "diversity_candidates": [8]}


@pytest.fixture(scope="module")
def f5(tmp_path_factory):
    out = tmp_path_factory.mktemp("f5")
    return F.run_f5(F5_TINY, out=out), out


def test_f5_writes_json_tables_and_plots(f5):
    rep, out = f5
    saved = json.loads((out / "f5_beyond.json").read_text())
    assert saved["experiment"] == "F5" and saved["settings"] == F5_TINY and {"curve", "diversity"} <= set(saved)
    assert set(saved["plots"]) == {"f5_logit_vs_nfe.png", "f5_precision_recall.png"}
    for name in saved["plots"]:
        assert (out / name).stat().st_size > 1000
    md = (out / "f5_beyond.md").read_text()
    assert md == F.f5_tables(saved) and "FK steering" in md and "early pruning" in md and "| 8 | 152 |" in md
    with pytest.raises(ValueError, match="subset"):
        F.run_f5(F5_TINY, parts=("f1",))


def test_f5_curve_budgets_and_invariants(f5):
    cur = f5[0]["curve"]
    per = 19
    c = cur["curves"]
    assert cur["units"] == 2 and set(c) == {"random", "zero_order", "paths", "fk", "evolution", "pruning", "fk_no_resampling"}
    assert [r["candidates"] for r in c["paths"]] == [8]  # 76 NFE is below one round of Paths-2
    for name in ("random", "zero_order", "fk", "evolution", "pruning", "fk_no_resampling"):
        assert [r["candidates"] for r in c[name]] == [4, 8], name
    for name, rows in c.items():
        for r in rows:  # within budget; every search's best-so-far curve never falls
            assert r["budget"] == r["candidates"] * per and 0 < r["nfe_mean"] <= r["nfe"] <= r["budget"], (name, r)
            assert r["curves_monotone"] and r["n"] == 2 and r["se"] >= 0
    for name in ("random", "zero_order"):  # read off one search's best-so-far curve: the mean never falls
        m = [r["mean"] for r in c[name]]
        assert all(b >= a for a, b in zip(m, m[1:]))
    assert [r["nfe"] for r in c["random"]] == [76, 152] and [r["nfe"] for r in c["zero_order"]] == [76, 152]
    # the budget rules: FK k = B // 28 particles (Heun-10: 28 NFE each), evolution 4 then 3 children, pruning's seeds
    assert [r["size"] for r in c["fk"]] == [76 // 28, 152 // 28] and [r["nfe"] for r in c["fk"]] == [56, 140]
    assert [r["size"] for r in c["evolution"]] == [[4], [4, 3, 1]]
    # the control: FK's sampler without resampling takes no previews, so one particle per candidate's worth
    assert [(r["size"], r["nfe"], r["verifier_calls"]) for r in c["fk_no_resampling"]] == [(4, 76, 4), (8, 152, 8)]
    assert all(r["size"][0] > r["candidates"] and r["size"][-1] >= 1 for r in c["pruning"])
    # one generation of 4 is a random search of the same 4 seeds: the same winner
    assert c["evolution"][0]["gain_over_random"]["mean"] == pytest.approx(0.0, abs=1e-4)
    assert "gain_over_random" not in c["random"][0]


def test_f5_reuses_f1_and_f2(f5, report):
    """Random / ZO / paths in F5 are F1's and F2's searches (same seeds, same code; batching moves only float digits)."""
    f1, f2, cur, div = report[0]["f1"], report[0]["f2"], f5[0]["curve"], f5[0]["diversity"]
    for name in ("random", "zero_order", "paths"):
        a = {r["candidates"]: r["mean"] for r in f1["curves"][name]}
        for r in cur["curves"][name]:
            assert r["mean"] == pytest.approx(a[r["candidates"]], abs=1e-3), name
        assert div["rows"][f"{name}@8"]["mean_logit"] == pytest.approx(f2["rows"][f"{name}@8"]["mean_logit"], abs=1e-3)
    assert div["rows"]["no_search"]["mean_logit"] == pytest.approx(f2["rows"]["no_search"]["mean_logit"], abs=1e-4)


def test_f5_diversity_in_unit_interval(f5):
    div = f5[0]["diversity"]
    rows = div["rows"]
    assert set(rows) == {"no_search"} | {f"{n}@8" for n in ("random", "zero_order", "paths", "fk", "evolution", "pruning",
                                                            "fk_no_resampling")}
    for r in rows.values():
        assert r["n"] == 4 and 0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1 and r["fd"] >= 0
        assert r["nfe"] <= r["candidates"] * 19
