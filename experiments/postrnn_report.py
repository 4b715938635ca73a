"""Where the post's finding holds: the post's RNNs' greedy routes on the harness's held-out pairs, by the
optimal path's hop count ("low loss, broken routes" where it holds and where it does not).

    python -m experiments.postrnn_report                 # results/postrnn-report.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from citypath.cache import write_atomic
from citypath.evaluate import sample_heldout_pairs
from citypath.graph import CityGraph, load_graph
from citypath.metrics import evaluate_paths
from citypath.models import load_model


def postrnn_report(g: CityGraph, names: list[str], n_pairs: int, seed: int) -> dict:
    """Where the post's finding holds: greedy routes of the post's RNNs by the optimal path's hop count."""
    srcs, dsts = sample_heldout_pairs(g, n_pairs, seed=seed)
    hops = np.array([len(g.shortest_path(int(s), int(t))) - 1 for s, t in zip(srcs, dsts)])
    buckets = ((1, 5), (6, 10), (11, 20), (21, 30), (31, 100))
    out = {"pairs": int(n_pairs), "seed": seed, "models": {}}
    for name in names:
        m = load_model(name, graph=g)
        paths = [list(m.refine(g, int(s), int(t), steps=1))[0] for s, t in zip(srcs, dsts)]
        df = evaluate_paths(g, paths, srcs, dsts)
        passes = df["passes_three_checks"].to_numpy()
        rows = {}
        for lo, hi in buckets:
            sel = (hops >= lo) & (hops <= hi)
            if sel.any():
                d = df[sel]
                rows[f"{lo}-{hi}"] = {"pairs": int(sel.sum()), "reaches_target": float(d["reaches_target"].mean()),
                                      "passes_three_checks": float(passes[sel].mean()),
                                      "illegal_hop_rate": float(d["illegal_jumps"].sum()
                                                                / max(int(d["hops"].sum()), 1))}
        out["models"][name] = {
            "greedy_reaches_target": float(df["reaches_target"].mean()),
            "greedy_passes_three_checks": float(passes.mean()),
            "greedy_paths_with_an_illegal_jump": float((df["illegal_jumps"] > 0).mean()),
            "greedy_illegal_hop_rate": float(df["illegal_jumps"].sum() / max(int(df["hops"].sum()), 1)),
            "greedy_hops_mean": float(df["hops"].mean()), "optimal_hops_mean": float(hops.mean()),
            "by_optimal_hops": rows,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.postrnn_report", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="post-rnn-small,post-rnn-large")
    p.add_argument("--pairs", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0, help="held-out pair seed (0: the pairs of results/eval.json)")
    p.add_argument("--out", default="results/postrnn-report.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    g = load_graph(verbose=False)
    report = postrnn_report(g, [m for m in args.models.split(",") if m], args.pairs, args.seed)
    write_atomic(Path(args.out), json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
