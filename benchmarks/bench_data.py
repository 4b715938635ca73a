"""Data-layer speed, measured side by side in one run: graph build, cache load, SPD vs networkx.

    python -m benchmarks.bench_data                 # the default graph, 2,000,000 SPD paths
    python -m benchmarks.bench_data --quick         # a small graph, seconds (what the test runs)
    python -m benchmarks.bench_data --states RI,MA --graph-only   # only build that graph from scratch

Prints one JSON object; figures are recorded in docs/benchmarks.md. Nothing here asserts a time.
`spd_peak_tree_pss_mb` is the peak memory of this process and its SPD worker processes together,
sampled while the SPD is generated (benchmarks/measure.py); `benchmarks/run.py` runs this script
in a fresh process as part of the whole suite.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time

import networkx as nx
import numpy as np

from benchmarks.measure import TreeSampler


def peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small graph and few paths")
    parser.add_argument("--paths", type=int, default=None, help="SPD paths (default 2,000,000; quick: 20,000)")
    parser.add_argument("--nx-pairs", type=int, default=None, help="pairs timed with networkx (default 20; quick: 20)")
    parser.add_argument("--states", help="comma-separated states (default: contiguous US; quick: RI,MA,CT)")
    parser.add_argument("--graph-only", action="store_true", help="only build the graph from scratch (a temp cache)")
    args = parser.parse_args(argv)

    from citypath import cities, graph
    from citypath.spd import SPDConfig, generate

    states = [x.strip().upper() for x in args.states.split(",") if x.strip()] if args.states else \
        (["RI", "MA", "CT"] if args.quick else None)
    n_paths = args.paths or (20_000 if args.quick else 2_000_000)
    nx_pairs = args.nx_pairs or 20
    out: dict = {"machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores, "
                            f"Python {platform.python_version()}", "states": states or "contiguous US"}

    with tempfile.TemporaryDirectory() as tmp:
        cities.us_cities.cache_clear()
        graph._LOADED.clear()
        t = time.perf_counter()
        g = graph.load_graph(states=states, cache_dir=tmp)
        out["graph_build_from_scratch_s"] = time.perf_counter() - t
        graph._LOADED.clear()
        t = time.perf_counter()
        g = graph.load_graph(states=states, cache_dir=tmp)
        out["graph_load_from_cache_s"] = time.perf_counter() - t
    out["graph"] = {"cities": g.n_cities, "edges": int(g.adjacency.nnz // 2), "radius_km": g.radius_km}
    out["peak_rss_after_graph_mb"] = peak_rss_mb()
    if args.graph_only:
        print(json.dumps(out, indent=2))
        return out

    with TreeSampler() as mem:
        t = time.perf_counter()
        data = generate(g, SPDConfig(n_paths=n_paths), progress=not args.quick)
        spd_s = time.perf_counter() - t
    out["spd_peak_tree_pss_mb"] = mem.peak_pss_mb
    out["spd_peak_tree_rss_mb"] = mem.peak_rss_mb
    out["spd_processes"] = mem.peak_processes
    out["spd_paths"] = n_paths
    out["spd_seconds"] = spd_s
    out["spd_paths_per_s"] = n_paths / spd_s
    out["peak_rss_after_spd_mb"] = peak_rss_mb()

    # The same pairs through a plain networkx Dijkstra loop (graph conversion not timed).
    ng = nx.from_scipy_sparse_array(g.adjacency, edge_attribute="weight")
    train = data["train"]
    idx = np.random.default_rng(0).choice(len(train["src"]), size=min(nx_pairs, len(train["src"])), replace=False)
    t = time.perf_counter()
    for i in idx:
        path = nx.dijkstra_path(ng, int(train["src"][i]), int(train["dst"][i]), weight="weight")
    nx_s = time.perf_counter() - t
    assert path[-1] == int(train["dst"][idx[-1]])
    out["networkx_seconds_per_path"] = nx_s / len(idx)
    out["spd_seconds_per_path"] = spd_s / n_paths
    out["spd_speedup_vs_networkx"] = out["networkx_seconds_per_path"] / out["spd_seconds_per_path"]
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
