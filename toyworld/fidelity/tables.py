"""The measured numbers as Markdown tables (F1 curve, F2 sets, F3 sweep, F4), generated from a report."""


def markdown_tables(report):
    """The measured numbers as Markdown tables (F1 curve, F2 sets, F3 sweep, F4), generated from the report."""
    out = []
    f1 = report.get("f1")
    if f1:
        c = f1["curves"]
        by = {n: {r["candidates"]: r for r in c[n]} for n in ("random", "zero_order", "paths", "more_steps")}
        out += [f"F1: mean winner logit +- se over {f1['units']} searches (digits x seeds); NFE per final sample",
                "", "| candidates | NFE | random | zero-order ZO-4 | paths Paths-2 (NFE) | 1 sample, more steps (steps) |",
                "|---|---|---|---|---|---|"]
        cell = lambda r: "-" if r is None else f"{r['mean']:.2f} +- {r['se']:.2f}"
        for k in sorted(by["random"]):
            p, m = by["paths"].get(k), by["more_steps"].get(k)
            out.append(f"| {k} | {k * f1['nfe_per_candidate']} | {cell(by['random'].get(k))} | {cell(by['zero_order'].get(k))} | "
                       f"{cell(p)}{'' if p is None else ' (' + str(p['nfe']) + ')'} | {cell(m)}{'' if m is None else ' (' + str(m['steps']) + ')'} |")
        out.append("")
    f2 = report.get("f2")
    if f2:
        out += [f"F2: {f2['winners_per_algorithm']} samples per set ({f2['per_digit']} per digit, each winner from its own search) vs the 1797 real digits",
                "", "| set | NFE | precision | recall | FD | class accuracy | mean logit | within-digit spread |", "|---|---|---|---|---|---|---|---|"]
        for k, r in f2["rows"].items():
            fd = "-" if r["fd"] is None else f"{r['fd']:.1f}"
            out.append(f"| {k} | {r['nfe']} | {r['precision']:.3f} | {r['recall']:.3f} | {fd} | {r['accuracy']:.3f} | "
                       f"{r['mean_logit']:.2f} | {r['spread']:.1f} |")
        out.append(f"| real digits | - | - | - | - | - | - | {next(iter(f2['rows'].values()))['spread_real']:.1f} |")
        out.append("")
    f3 = report.get("f3")
    if f3:
        rows = f3["by_early_sigma"]
        out += ["F3: within-digit Spearman (SSL score vs classifier logit) with the early x0 prediction taken at each grid point",
                "", "| SiT time of the early prediction | " + " | ".join(
                    (f"**{r['sit_time']:.2f}** (adapter)" if r["is_adapter_early"] else f"{r['sit_time']:.2f}") for r in rows) + " |",
                "|---|" + "---|" * len(rows),
                "| Spearman | " + " | ".join("-" if r["rho_mean"] is None else f"{r['rho_mean']:.2f}" for r in rows) + " |",
                "| mean SSL score | " + " | ".join(f"{r['ssl_mean']:.3f}" for r in rows) + " |", ""]
        sel = f3["selection"]
        out += ["F3: classifier logit of the best-of-k chosen by each verifier", "",
                "| k | " + " | ".join(sel) + " |", "|---|" + "---|" * len(sel)]
        for key, name in (("ssl_selected", "self-supervised"), ("classifier_selected", "classifier"), ("random_pick", "random pick (mean)")):
            out.append(f"| {name} | " + " | ".join(f"{v[key]:.2f}" for v in sel.values()) + " |")
        out.append("")
    f4 = report.get("f4")
    if f4 and f4.get("status") == "measured":
        out += [f"F4: FD over {f4['samples']} samples (200 per digit), mean of seeds {f4['seeds']}", "",
                "| sampler | NFE | FD clamped | FD raw | class accuracy | precision | recall |", "|---|---|---|---|---|---|---|"]
        for r in f4["table"]:
            out.append(f"| {r['sampler']} | {r['nfe']} | {r['fd_clamped']:.2f} | {r['fd_raw']:.2f} | {r['accuracy']:.3f} | "
                       f"{r['precision']:.3f} | {r['recall']:.3f} |")
        out.append("")
    return "\n".join(out)
