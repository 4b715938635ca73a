"""The gnn's test-time-compute profile: raw per-step decodes by pair distance, and time per step.

    python -m benchmarks.bench_gnn [--model gnn-small] [--pairs 200] [--steps 64]

Runs the model's raw decodes (`GNNModel.decodes`: the path after k steps of rounds, no
best-so-far) on held-out pairs of the default graph (the harness's sample, seed 0), and
reports valid rate and length ratio per step count, overall and by straight-line distance,
plus milliseconds per step of `refine`. Writes results/gnn-rounds.json (read by docs, not the app).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

import citypath
from citypath.cache import write_atomic
from citypath.evaluate import sample_heldout_pairs

BUCKETS_KM = (0, 500, 1500, 3000, 10_000)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="gnn-small")
    ap.add_argument("--pairs", type=int, default=200)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--out", default="results/gnn-rounds.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    g = citypath.load_graph()
    m = citypath.load_model(args.model, graph=g)
    srcs, dsts = sample_heldout_pairs(g, args.pairs, seed=0)
    list(m.refine(g, int(srcs[0]), int(dsts[0]), steps=1))          # builds the message graph once
    report_steps = [k for k in (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128) if k <= args.steps]
    raw = {k: [] for k in report_steps}
    ms_per_step = []
    for s, t in zip(srcs.tolist(), dsts.tolist()):
        t0 = time.perf_counter()
        paths = list(m.decodes(g, s, t, steps=args.steps))
        ms_per_step.append((time.perf_counter() - t0) * 1000 / args.steps)
        for k in report_steps:
            raw[k].append(paths[k - 1])
    straight = np.array([g.distance_km(s, t) for s, t in zip(srcs.tolist(), dsts.tolist())])
    bucket = np.digitize(straight, BUCKETS_KM[1:-1])
    out = {"model": args.model, "pairs": args.pairs, "pair_seed": 0, "rounds_per_step": m.config.rounds_per_step,
           "ms_per_step_mean": float(np.mean(ms_per_step)), "ms_per_step_p95": float(np.percentile(ms_per_step, 95)),
           "load_average": [round(x, 2) for x in os.getloadavg()], "by_steps": {}}
    print(f"{args.model}: {np.mean(ms_per_step):.1f} ms per step (mean), load average {out['load_average']}")
    for k in report_steps:
        df = citypath.evaluate_paths(g, raw[k], srcs, dsts)
        row = {"valid": float(df["valid"].mean()),
               "length_ratio_mean": float(df.loc[df["valid"], "length_ratio"].mean()),
               "length_ratio_p95": float(df.loc[df["valid"], "length_ratio"].quantile(0.95)),
               "illegal_jumps": int(df["illegal_jumps"].sum()), "by_distance_km": {}}
        for b in range(len(BUCKETS_KM) - 1):
            sel = (bucket == b) & df["valid"].to_numpy()
            row["by_distance_km"][f"{BUCKETS_KM[b]}-{BUCKETS_KM[b + 1]}"] = {
                "pairs": int((bucket == b).sum()), "valid": float(df["valid"][bucket == b].mean()),
                "length_ratio_mean": float(df["length_ratio"][sel].mean()) if sel.any() else None}
        out["by_steps"][str(k)] = row
        dist = "  ".join(f"{key}: {v['valid']:.2f}/{v['length_ratio_mean'] or float('nan'):.3f}"
                         for key, v in row["by_distance_km"].items())
        print(f"steps {k:4d} ({k * m.config.rounds_per_step:4d} rounds): valid {row['valid']:.3f} "
              f"ratio {row['length_ratio_mean']:.4f} p95 {row['length_ratio_p95']:.4f} | {dist}")
    write_atomic(Path(args.out), json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
