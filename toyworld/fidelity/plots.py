"""The fidelity study's PNG plots, drawn with the pack's charting module (``search/report.py``: ``chart`` and
``image_rows``)."""

from pathlib import Path

from ...search.report import chart, image_rows
from ..world import to_images
from .config import ALGORITHMS, PATHS_N, ZO_N


def winners_grid(rows, title, cell=40, label_w=120):
    """Rows of 8x8 samples (raw model space) with a label each, scaled up with nearest neighbour."""
    return image_rows({name: to_images(x) for name, x in rows.items()}, title, cell=cell, label_w=label_w)


def draw_plots(report, out):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    f1 = report.get("f1")
    if f1:
        c = f1["curves"]
        pe = lambda rows: {"points": [(r["nfe"], r["mean"]) for r in rows], "err": [r["se"] for r in rows]}
        series = [{"name": "random search", **pe(c["random"])},
                  {"name": f"zero-order ZO-{ZO_N}", **pe(c["zero_order"])},
                  {"name": f"paths Paths-{PATHS_N}", **pe(c["paths"])},
                  {"name": "1 sample, more steps", **pe(c["more_steps"]), "dashed": True}]
        chart([s for s in series if s["points"]], f"F1: winner's classifier logit vs NFE (mean +- se of {f1['units']} searches)",
              "NFE per final sample", "logit", logx=True).save(out / "f1_scaling.png")
        files.append("f1_scaling.png")
    f2 = report.get("f2")
    if f2:
        series = []
        for key, r in f2["rows"].items():
            series.append({"name": key, "points": [(r["recall"], r["precision"])], "line": False, "radius": 5})
        chart(series, f"F2: precision vs recall of {f2['winners_per_algorithm']} winners (k-NN, classifier features)",
              "recall (diversity)", "precision").save(out / "f2_precision_recall.png")
        files.append("f2_precision_recall.png")
        # the trade-off: recall against how far each method raised the verifier score
        rows = f2["rows"]
        base = (rows["no_search"]["mean_logit"], rows["no_search"]["recall"])
        series = [{"name": name, "points": [base] + [(rows[f"{name}@{c}"]["mean_logit"], rows[f"{name}@{c}"]["recall"])
                                                      for c in f2["candidates"] if f"{name}@{c}" in rows]}
                  for name in ALGORITHMS + ("more_steps",)]
        chart(series, "F2: recall vs mean winner logit (from no search through each budget)", "mean classifier logit of the winners",
              "recall").save(out / "f2_recall_vs_logit.png")
        files.append("f2_recall_vs_logit.png")
        if f2.get("pictures"):
            winners_grid(f2["pictures"], f"F2: the {f2['per_digit']} winners for digit {f2['grid_digit']}, one row per method"
                         ).save(out / "f2_winners.png")
            files.append("f2_winners.png")
    f3 = report.get("f3")
    if f3:
        pts = f3["points"]
        a = chart([{"name": f"digit {k}", "points": [(s, c) for s, c, d in pts if d == k], "line": False, "radius": 2}
                   for k in sorted({d for _, _, d in pts})],
                  f"F3: self-supervised score vs classifier logit (Spearman {f3['spearman_mean_over_digits']:.2f} within digit)",
                  "self-supervised score cos(phi(x0 at SiT 0.4), phi(x))", "logit", width=720)
        a.save(out / "f3_ssl_vs_logit.png")
        files.append("f3_ssl_vs_logit.png")
        rows = [r for r in f3["by_early_sigma"] if r["rho_mean"] is not None]
        chart([{"name": "Spearman", "points": [(r["sit_time"], r["rho_mean"]) for r in rows]}],
              "F3: within-digit Spearman vs the SiT time of the early x0 prediction", "SiT time of the early prediction",
              "Spearman rho").save(out / "f3_rho_by_time.png")
        files.append("f3_rho_by_time.png")
    return files

