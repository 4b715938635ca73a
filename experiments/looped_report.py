"""The looped transformer against gru-large best-of-32, side by side, on the same held-out pairs.

    python -m experiments.looped_report --pairs 300 --seed 1     # results/looped-report.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from citypath.cache import write_atomic
from citypath.evaluate import sample_heldout_pairs
from citypath.graph import CityGraph, load_graph
from citypath.metrics import evaluate_paths
from citypath.models import load_model


def looped_report(g: CityGraph, name: str, n_pairs: int, seed: int, compare: str) -> dict:
    """Per held-out pair, in one run: the looped model's route, FLOPs and measured time at every step
    (with halting: steps actually thought), and `compare` best-of-32 (FLOPs, ms); then the smallest
    step count K whose mean FLOPs per query are within the other's and whose mean length ratio is at
    least as good."""
    model, other = load_model(name, graph=g), load_model(compare, graph=g)
    srcs, dsts = sample_heldout_pairs(g, n_pairs, seed=seed)
    top = model.max_steps
    K = sorted({k for k in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32) if k <= top} | {top})
    lr, valid, cum_flops, step_ms, used, first_ms = [], [], [], [], [], []
    o_flops, o_ms, o_paths = [], [], []
    for s, t in zip(srcs.tolist(), dsts.tolist()):
        t0 = time.perf_counter()
        times, fl, paths = [], [], []
        for path, f in model.refine_with_compute(g, s, t, steps=top):
            times.append((time.perf_counter() - t0) * 1000)
            fl.append(f)
            paths.append(path)
        n_used = model.last_run_steps or 0
        used.append(n_used)
        first_ms.append(times[0])
        step_ms.append(times[max(n_used, 1) - 1] / max(n_used, 1))      # per step actually thought
        df = evaluate_paths(g, [paths[k - 1] for k in K], [s] * len(K), [t] * len(K))
        lr.append(np.where(df["valid"], df["length_ratio"], np.nan))
        valid.append(df["valid"].to_numpy())
        cum_flops.append(np.cumsum(fl)[np.array(K) - 1])
        t0 = time.perf_counter()
        o_paths.append(list(other.refine(g, s, t, steps=32))[-1])
        o_ms.append((time.perf_counter() - t0) * 1000)
        o_flops.append(float(np.sum(other.step_flops(g, s, t, 32))))
    lr, valid, cum_flops = np.array(lr), np.array(valid), np.array(cum_flops)
    df_o = evaluate_paths(g, o_paths, srcs, dsts)
    o_ratio = float(df_o.loc[df_o["valid"], "length_ratio"].mean())
    by_k = {str(k): {"length_ratio_mean": float(np.nanmean(lr[:, i])), "valid": float(valid[:, i].mean()),
                     "flops_per_query_mean": float(cum_flops[:, i].mean())} for i, k in enumerate(K)}
    wins = [k for k in K if by_k[str(k)]["flops_per_query_mean"] <= float(np.mean(o_flops))
            and by_k[str(k)]["length_ratio_mean"] <= o_ratio and by_k[str(k)]["valid"] >= df_o["valid"].mean()]
    used_a = np.array(used)
    return {
        "command": f"python -m experiments.looped_report --pairs {n_pairs} --seed {seed}",
        "model": name, "compare": compare, "pairs": int(n_pairs), "seed": seed, "max_steps": top, "by_steps": by_k,
        "steps_thought": {"mean": float(used_a.mean()), "median": float(np.median(used_a)),
                          "p95": float(np.percentile(used_a, 95)), "max": int(used_a.max()),
                          "share_halted_before_max": float(np.mean(used_a < top))},
        "ms_per_step_thought": {"mean": float(np.mean(step_ms)), "median": float(np.median(step_ms)),
                                "p90": float(np.percentile(step_ms, 90))},
        "ms_first_step": {"mean": float(np.mean(first_ms)), "median": float(np.median(first_ms))},
        "other": {"model": compare, "steps": 32, "length_ratio_mean": o_ratio, "valid": float(df_o["valid"].mean()),
                  "flops_per_query_mean": float(np.mean(o_flops)), "ms_per_query_mean": float(np.mean(o_ms)),
                  "ms_per_query_median": float(np.median(o_ms))},
        "smallest_k_at_equal_or_lower_compute_and_as_good": min(wins) if wins else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.looped_report", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="looped-small")
    p.add_argument("--compare", default="gru-large")
    p.add_argument("--pairs", type=int, default=300)
    p.add_argument("--seed", type=int, default=1, help="held-out pair seed (1: pairs apart from results/eval.json)")
    p.add_argument("--out", default="results/looped-report.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    g = load_graph(verbose=False)
    report = looped_report(g, args.model, args.pairs, args.seed, args.compare)
    write_atomic(Path(args.out), json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
