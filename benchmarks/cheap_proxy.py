"""Cheap proxy: search candidates at S/5 steps, render only the winner at S steps. How much of the full
search's gain survives?

Toy world, teacher with Heun at S = 25 steps (49 NFE per sample) and S/5 = 5 steps (9 NFE), classifier-logit
verifier. For every digit and seed block, one random search of N candidates (seeds seed .. seed+N-1):

* full: searched at S, the winner's score;
* proxy: searched at S/5, the proxy winner re-rendered alone at S and scored there;
* none: no search, a candidate drawn at random (the mean full-S score of the N candidates; the block's first
  seed, the "plain KSampler" run, is reported too);
* equal-NFE full search: best of the first n candidates at S, with n * 49 <= the proxy's NFE.

Reported as means over all runs, with fraction retained = (proxy - none) / (full - none), the NFE per sample
of each, and the Spearman correlation of S/5 and S scores over all candidates.

    python benchmarks/cheap_proxy.py
"""

import argparse
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _util import context, emit, import_pack  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=25, help="S: Heun steps of the final render")
    ap.add_argument("--n", type=int, default=16, help="candidates per search")
    ap.add_argument("--digits", default="0,1,2,3,4,5,6,7,8,9")
    ap.add_argument("--blocks", type=int, default=8, help="seed blocks per digit")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    import_pack()
    from noise_search.search.noise import seed_noise
    from noise_search.search.random_search import random_search
    from noise_search.toyworld.fidelity.stats import spearman  # average ranks for ties (verifiers.ensemble.ranks)
    from noise_search.toyworld.load import load_classifier, load_teacher
    from noise_search.toyworld.world import SHAPE, ToyWorld

    s_full, s_proxy = args.steps, max(1, args.steps // 5)
    teacher, clf = load_teacher(), load_classifier()
    runs, all_proxy, all_full = [], [], []
    for d in [int(x) for x in args.digits.split(",")]:
        full_w = ToyWorld(d, steps=s_full, method="heun", teacher=teacher, classifier=clf)
        proxy_w = ToyWorld(d, steps=s_proxy, method="heun", teacher=teacher, classifier=clf)
        nfe_full, nfe_proxy = full_w.nfe_per_candidate, proxy_w.nfe_per_candidate
        for b in range(args.blocks):
            seed = 1000 * d + args.n * b
            full = random_search(full_w.generate, full_w.score, SHAPE, seed=seed, count=args.n, nfe_per_candidate=nfe_full,
                                 chunk_size=args.n, top_k=1)
            proxy = random_search(proxy_w.generate, proxy_w.score, SHAPE, seed=seed, count=args.n,
                                  nfe_per_candidate=nfe_proxy, chunk_size=args.n, top_k=1)
            final = full_w.sample(seed_noise(proxy.winner.recipe.seed, SHAPE))  # only the winner, at S
            proxy_final = float(full_w.score(final)[0])
            full_scores = [c.score for c in full.history]
            n_eq = max(1, (args.n * nfe_proxy + nfe_full) // nfe_full)
            runs.append({"digit": d, "seed": seed, "full": full.winner.score, "proxy": proxy_final,
                         "none_mean": statistics.fmean(full_scores), "none_first_seed": full_scores[0],
                         "equal_nfe_full": max(full_scores[:n_eq]), "proxy_winner_rank_at_S":
                         sorted(full_scores, reverse=True).index(full_scores[proxy.winner.index]) + 1})
            all_proxy += [c.score for c in proxy.history]
            all_full += full_scores
    mean = {k: statistics.fmean(r[k] for r in runs) for k in ("full", "proxy", "none_mean", "none_first_seed", "equal_nfe_full")}
    frac = (mean["proxy"] - mean["none_mean"]) / (mean["full"] - mean["none_mean"])
    frac_first = (mean["proxy"] - mean["none_first_seed"]) / (mean["full"] - mean["none_first_seed"])
    per_run = [(r["proxy"] - r["none_mean"]) / (r["full"] - r["none_mean"]) for r in runs if r["full"] - r["none_mean"] > 1e-9]
    out = {"benchmark": "cheap_proxy", "context": context(),
           "config": {"world": "toy world teacher, Heun", "S": s_full, "S_proxy": s_proxy, "N": args.n, "verifier": "classifier logit",
                      "digits": args.digits, "seed_blocks_per_digit": args.blocks, "runs": len(runs)},
           "mean_score": {"proxy_winner_rendered_at_S": mean["proxy"], "full_S_winner": mean["full"],
                          "no_search_mean_candidate": mean["none_mean"], "no_search_first_seed": mean["none_first_seed"],
                          f"full_S_search_at_equal_NFE_(best_of_{n_eq})": mean["equal_nfe_full"]},
           "fraction_retained": frac, "fraction_retained_vs_first_seed": frac_first,
           "fraction_retained_per_run_median": statistics.median(per_run),
           "proxy_winner_rank_among_N_at_S_mean": statistics.fmean(r["proxy_winner_rank_at_S"] for r in runs),
           "spearman_S_proxy_vs_S_scores": spearman(all_proxy, all_full),
           "nfe_per_sample": {"proxy": args.n * nfe_proxy + nfe_full, "full": args.n * nfe_full, "none": nfe_full,
                              "equal_nfe_full": n_eq * nfe_full},
           "runs": runs}
    emit(out)


if __name__ == "__main__":
    main()
