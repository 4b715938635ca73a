"""Building a new pair's player: the server time between a link to a pair and the player's first arguments.

    python -m benchmarks.bench_payload                  # default graph, the app's default comparison, 16 steps
    python -m benchmarks.bench_payload --pairs 12 --steps 32 --states RI,MA

For each of `--pairs` held-out pairs (their routes computed, or read from the replay store, before any
timing), builds what the app sends a visitor of a pair this process has not shown yet:
`citypath.view.player.comparison` (the map's layers, every step's route layers, the strip and the charts) and
`frames_to_file` (the steps' layers written to one JSON file, in a temporary directory). Prints one JSON
object: per-pair milliseconds, median and max. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--states", default="", help="a regional graph (e.g. RI,MA); default: the full graph")
    args = ap.parse_args(argv)
    if args.states:
        os.environ["CITYPATH_STATES"] = args.states
    import numpy as np

    from citypath.app import picks, replays, resources, url
    from citypath.replay import Question
    from citypath.view.maplayers import model_rgb
    from citypath.view.player import payload

    g = resources.graph()
    mset = resources.models(g)
    rng = np.random.default_rng(11)
    pairs = [picks.random_heldout_pair(g, rng) for _ in range(args.pairs)]
    models = list(url.default_models(mset.names, {n: m.num_parameters for n, m in mset.models.items()}))
    colours = {name: model_rgb(i) for i, name in enumerate(models)}
    computed = []
    for src, dst in pairs:
        view = url.ViewState(source=src, target=dst, models=tuple(models), steps=args.steps, seed=0)
        computed.append({name: replays.replay(mset, g, name, view.question()) for name in models})
    build_ms, write_ms = [], []
    with tempfile.TemporaryDirectory() as static:
        for (src, dst), reps in zip(pairs, computed):
            t0 = time.perf_counter()
            args_ = payload.comparison(g, Question(src, dst, tuple(reps), args.steps), g.shortest_path(src, dst), reps,
                                       colours, {}, cities="app/static/cities.json")
            t1 = time.perf_counter()
            payload.frames_to_file(args_, static)
            build_ms.append((t1 - t0) * 1e3)
            write_ms.append((time.perf_counter() - t1) * 1e3)
    total = [b + w for b, w in zip(build_ms, write_ms)]
    out = {"graph": args.states or "default", "models": models, "steps": args.steps, "pairs": len(pairs),
           "build_ms": [round(x, 1) for x in build_ms], "write_ms": [round(x, 1) for x in write_ms],
           "total_ms_median": round(statistics.median(total), 1), "total_ms_max": round(max(total), 1),
           "load_average": round(os.getloadavg()[0], 2)}
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
