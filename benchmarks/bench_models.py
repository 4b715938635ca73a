"""One refinement step of each model against one Dijkstra query on the same held-out pairs.

    python -m benchmarks.bench_models                       # every shipped checkpoint, default graph
    python -m benchmarks.bench_models --models gnn-small --pairs 20 --steps 8
    CITYPATH_STATES=RI,MA python -m benchmarks.bench_models --checkpoints DIR   # checkpoints of that graph

Per pair, in one process with one torch thread (as the app runs them):
- `dijkstra_ms`: `g.shortest_path(src, dst)` with its per-source cache cleared first (one
  scipy Dijkstra from src over the whole graph, then the walk back along predecessors);
- `first_step_ms`: from calling `refine(g, src, dst, steps=K)` to its first path;
- `later_step_ms`: each further step (paths 2..K); `mean_step_ms`: all K steps' time / K.
One warm-up query per model comes first and is reported apart (`first_call_ms`: per-graph
tables a model builds once). Ratios are model ms / Dijkstra ms (means over pairs).
Prints one JSON object. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", help="comma-separated checkpoint names (default: every one listed)")
    ap.add_argument("--checkpoints", help="checkpoints directory (default: checkpoints/ or $CITYPATH_CHECKPOINTS)")
    ap.add_argument("--pairs", type=int, default=30, help="held-out pairs (default 30)")
    ap.add_argument("--steps", type=int, default=8, help="refinement steps K per query (default 8)")
    ap.add_argument("--seed", type=int, default=123, help="seed of the pair sample (default 123)")
    args = ap.parse_args(argv)

    import torch

    import citypath
    from citypath.evaluate import sample_heldout_pairs
    from citypath.graph import graph_kwargs_from_env

    torch.set_num_threads(1)
    states = graph_kwargs_from_env()["states"]
    g = citypath.load_graph(states=states)
    srcs, dsts = sample_heldout_pairs(g, args.pairs + 1, seed=args.seed)
    warm, pairs = (int(srcs[0]), int(dsts[0])), list(zip(srcs[1:].tolist(), dsts[1:].tolist()))
    names = args.models.split(",") if args.models else citypath.list_models(args.checkpoints)
    if not names:
        raise SystemExit("no checkpoints to benchmark")

    g.shortest_path(*warm)
    dijkstra_ms, hops = [], []
    for s, t in pairs:
        g.clear_distances()
        t0 = time.perf_counter()
        path = g.shortest_path(s, t)
        dijkstra_ms.append((time.perf_counter() - t0) * 1e3)
        hops.append(len(path) - 1)
    g.clear_distances()
    dij = statistics.fmean(dijkstra_ms)
    out = {"graph": {"cities": g.n_cities, "states": states or "contiguous US"}, "pairs": len(pairs),
           "pair_seed": args.seed, "torch_threads": torch.get_num_threads(),
           "mean_optimal_hops": statistics.fmean(hops),
           "dijkstra_ms_mean": dij, "dijkstra_ms_median": statistics.median(dijkstra_ms), "models": {}}

    for name in names:
        t0 = time.perf_counter()
        m = citypath.load_model(name, directory=args.checkpoints, graph=g)
        load_ms = (time.perf_counter() - t0) * 1e3
        k = max(1, min(args.steps, m.max_steps))
        t0 = time.perf_counter()
        list(m.refine(g, *warm, steps=k))
        first_call_ms = (time.perf_counter() - t0) * 1e3
        first, later, mean = [], [], []
        for s, t in pairs:
            stamps = [time.perf_counter()]
            for _ in m.refine(g, s, t, steps=k):
                stamps.append(time.perf_counter())
            steps_ms = [(b - a) * 1e3 for a, b in zip(stamps, stamps[1:])]
            assert len(steps_ms) == k, (name, len(steps_ms), k)
            first.append(steps_ms[0])
            later.extend(steps_ms[1:])
            mean.append(sum(steps_ms) / k)
        row = {"family": m.family, "parameters": m.num_parameters, "steps": k, "load_ms": load_ms,
               "first_call_ms": first_call_ms,
               "first_step_ms_mean": statistics.fmean(first), "first_step_ms_median": statistics.median(first),
               "later_step_ms_mean": statistics.fmean(later) if later else None,
               "mean_step_ms": statistics.fmean(mean)}
        row["first_step_vs_dijkstra"] = row["first_step_ms_mean"] / dij
        row["mean_step_vs_dijkstra"] = row["mean_step_ms"] / dij
        out["models"][name] = row
        print(f"{name}: first step {row['first_step_ms_mean']:.1f} ms ({row['first_step_vs_dijkstra']:.1f}x Dijkstra), "
              f"mean step {row['mean_step_ms']:.1f} ms ({row['mean_step_vs_dijkstra']:.1f}x) over {k} steps",
              file=sys.stderr)
    out["load_average"] = os.getloadavg()[0]
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
