"""GRU decoding speed against the issue's targets: greedy <= 30 ms, 32 samples batched <= 200 ms.

    python -m benchmarks.bench_gru                      # shipped gru-small and gru-large, 50 held-out pairs
    python -m benchmarks.bench_gru --models gru-small --pairs 20

Times one greedy decode (`refine(steps=1)`) and one batch of 32 samples (`refine(steps=33)`
minus the greedy step) per pair, one torch thread, and prints one JSON object of medians and
95th percentiles. Nothing here asserts a time (timings depend on the machine's load).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    import torch

    import citypath
    from citypath.evaluate import sample_heldout_pairs

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="gru-small,gru-large")
    p.add_argument("--pairs", type=int, default=50)
    args = p.parse_args()
    torch.set_num_threads(1)
    g = citypath.load_graph()
    srcs, dsts = sample_heldout_pairs(g, args.pairs, seed=123)
    out = {}
    for name in args.models.split(","):
        m = citypath.load_model(name, graph=g)
        list(m.refine(g, int(srcs[0]), int(dsts[0]), steps=33))          # warm-up
        greedy, samples, hops = [], [], []
        for s, t in zip(srcs.tolist(), dsts.tolist()):
            t0 = time.perf_counter()
            gen = m.refine(g, s, t, steps=33)
            first = next(gen)
            t1 = time.perf_counter()
            for _ in gen:
                pass
            t2 = time.perf_counter()
            greedy.append((t1 - t0) * 1000)
            samples.append((t2 - t1) * 1000)
            hops.append(len(first) - 1)
        out[name] = {
            "pairs": args.pairs, "mean_hops": float(np.mean(hops)),
            "greedy_ms_median": float(np.median(greedy)), "greedy_ms_p95": float(np.percentile(greedy, 95)),
            "samples32_ms_median": float(np.median(samples)), "samples32_ms_p95": float(np.percentile(samples, 95)),
        }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
