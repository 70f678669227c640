"""Paper fidelity: reproduce the findings of Ma, Tong et al. 2025 (search over noise with verifiers) and
Lu & Song 2024 (sCM) on the embedded toy world, with numbers.

- F1 scaling: the classifier-verifier score of the winner against NFE for random, zero-order and path
  search, against spending the same NFE on more Heun steps for one sample.
- F2 diversity: k-NN precision / recall (classifier features, vs the 1797 real digits) of independent
  search winners, against no search at Heun-10 and at equal NFE (the paper's "verifier hacking").
- F3 the self-supervised verifier: Spearman correlation with the classifier verifier over candidates,
  and whether selecting by it raises the classifier's score.
- F4 sCM: the distilled student's Frechet distance at 1 and 2 steps against the teacher's.
- F5 beyond the paper (``experiments_beyond``, run on its own by ``run_f5`` / ``benchmarks/beyond_paper.py --curve``):
  F1's curve and F2's diversity for FK steering, evolutionary search and early pruning next to the paper's three.

Everything is fixed up front (``CONFIGS``, seed bases in ``unit_seed``); nothing is tuned to the outcome.
Scores are the classifier logit of the wanted digit. NFE = model evaluations per final sample, Heun's
second evaluation counted (Heun-10 = 19 NFE); a search's winner is one of its candidates, so a search
of N Heun-10 candidates costs 19 N NFE in all (no re-generation step).

Many searches run side by side in threads whose model calls are merged into one batched forward per
round (``Lockstep``): the searches are the pack's own ``random_search`` / ``zero_order_search`` /
``path_search`` unchanged, called as the demo calls them (``toyworld.search.run_search``), only their network
calls are batched. Batch composition is deterministic, so a run is reproducible on one machine.
Framework-free: torch and PIL only.

The modules: ``config`` (settings and NFE budgets), ``stats``, ``scheduler`` (the batching), ``sampling`` (models
and samples), ``experiments`` (F1-F4), ``experiments_beyond`` (F5, with its own tables, plots and ``run_f5``),
``claims`` (verdicts), ``tables`` (Markdown), ``plots`` (PNGs); this module runs F1-F4 (``run_fidelity``) and names
what the CLI, the benchmarks and the tests use.

    report = run_fidelity("quick")          # or python -m noise_search bench fidelity --quick
"""

import json
import os
import time
from pathlib import Path

import torch

from ...search.paths import path_search_nfe  # noqa: F401 - tests check the paths budgets with it
from .claims import claims, summary_text
from .config import (ALGORITHMS, CONFIGS, STEPS_PER_CANDIDATE, _heun_step_nfe, feasible, grid, heun_nfe,  # noqa: F401
                     log, path_params, paths_width, steps_for_nfe)
from .experiments import Reference, f1_scaling, f2_diversity, f3_self_supervised, f4_scm
from .experiments_beyond import F5_CONFIGS, f5_curve, f5_diversity, f5_tables, run_f5
from .plots import draw_plots
from .sampling import load_models, require_scikit_learn
from .stats import best_at, mean_se, ranks, spearman
from .tables import markdown_tables

# what the CLI (cli/bench.py), benchmarks/fidelity.py and the tests use; the rest is importable from its module
__all__ = ["run_fidelity", "markdown_tables", "summary_text", "claims", "load_models", "require_scikit_learn", "Reference",
           "f1_scaling", "f2_diversity", "f3_self_supervised", "f4_scm", "CONFIGS", "ALGORITHMS", "feasible", "grid",
           "heun_nfe", "path_params", "paths_width", "steps_for_nfe", "best_at", "mean_se", "ranks", "spearman", "draw_plots",
           "run_f5", "f5_curve", "f5_diversity", "f5_tables", "F5_CONFIGS"]


def run_fidelity(config="quick", out=None, parts=("f1", "f2", "f3", "f4"), models=None, threads=1, merge=False):
    """Measure F1-F4 for the named configuration (or a config dict); write fidelity.json and PNGs to ``out``.

    ``merge``: when ``out`` already holds a fidelity.json of the same configuration, keep its parts that this
    run does not measure (e.g. add F4 once the student is committed: ``parts=("f4",), merge=True``).
    ``threads``: torch intra-op threads. 1 by default: the network is small and the batched searches call
    torch from many Python threads; on a shared 2-core machine 2 intra-op threads made Heun sampling of
    200 digits 28x slower in wall time (115 s vs 4.2 s, OpenMP workers spinning against each other)."""
    cfg = CONFIGS[config] if isinstance(config, str) else dict(config)
    name = config if isinstance(config, str) else "custom"
    bad = [p for p in parts if p not in ("f1", "f2", "f3", "f4")]
    if bad or not parts:
        raise ValueError(f"parts must be a non-empty subset of f1, f2, f3, f4, got {list(parts)}")
    require_scikit_learn()
    old = {}
    if merge and out is not None and (Path(out) / "fidelity.json").is_file():
        old = json.loads((Path(out) / "fidelity.json").read_text())
        if old.get("config") != name or old.get("settings") != json.loads(json.dumps(cfg)):
            raise ValueError(f"{Path(out) / 'fidelity.json'} was measured with configuration {old.get('config')!r}, not {name!r}; "
                             "merge only into a report of the same configuration")
    if threads:
        torch.set_num_threads(int(threads))
    t0, c0 = time.perf_counter(), time.process_time()
    models = models or load_models()
    ref = Reference(models["classifier"])
    report = {"config": name, "settings": cfg, "nfe_per_candidate": heun_nfe(STEPS_PER_CANDIDATE), "torch": torch.__version__,
              "threads": torch.get_num_threads()}
    steps = {"f1": lambda: f1_scaling(cfg, models), "f2": lambda: f2_diversity(cfg, models, ref),
             "f3": lambda: f3_self_supervised(cfg, models), "f4": lambda: f4_scm(cfg, models, ref)}
    for p in parts:
        log(f"fidelity: {p} ...")
        report[p] = steps[p]()
        log(f"fidelity: {p} done in {report[p].get('seconds', 0)} s")
    report["seconds"] = round(time.perf_counter() - t0, 1)
    report["cpu_seconds"] = round(time.process_time() - c0, 1)  # wall time depends on what else runs
    report["loadavg_1m"] = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        report["plots"] = draw_plots(report, out)
    if report.get("f3"):
        report["f3"].pop("points", None)  # every candidate's score pair: plotted, too long for the JSON
    if report.get("f2"):
        report["f2"].pop("pictures", None)  # samples, drawn as f2_winners.png
    kept = [p for p in ("f1", "f2", "f3", "f4") if p not in parts and p in old]
    if kept:
        for p in kept:
            report[p] = old[p]
        report["plots"] = sorted(set(report.get("plots", [])) | set(old.get("plots", [])))
        report["merged"] = {"kept_from_previous_run": kept}  # each part keeps its own "seconds"
    report["claims"] = claims(report)
    if out is not None:
        (out / "fidelity.json").write_text(json.dumps(report, indent=1))
    return report
