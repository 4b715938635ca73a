"""bellman-tiny's rounds, side by side in one run: a round's frontier edges read from the corridor's edges
gathered once per corridor (`CorridorEdges`, what the rounds use) vs every frontier edge gathered from the graph
and those leaving the corridor dropped (`FrontierEdges`, what they did up to session 21).

    python -m benchmarks.bench_bellman                               # 40 validation pairs, 16 steps
    python -m benchmarks.bench_bellman --models bellman-tiny --pairs 40 --steps 16

Validation pairs only (never a test pair), one torch thread, CPU seconds from the process clock. Per model
(each checkpoint, and its scaffold with Bellman-Ford's hand-set weights, `name.scaffold`), for each pair both
ways run `refine_with_compute` to `--steps` in turns (the first way alternating from pair to pair). Prints one
JSON object: CPU per query each way, their ratio, and how many step paths and counted operations differ between
the ways (the counted operations are those of the reference's gathering, both ways). Nothing here asserts a
time.
"""

from __future__ import annotations

import json
import statistics
import time

from benchmarks.measure import models_bench_args, validation_setup


def main(argv: list[str] | None = None) -> None:
    import citypath
    from citypath.models.bellman import CorridorEdges, FrontierEdges

    args = models_bench_args(__doc__.splitlines()[0], "bellman-tiny", 40).parse_args(argv)
    g, srcs, dsts = validation_setup(args.pairs)
    ways = {"corridor_edges": CorridorEdges, "frontier_edges": FrontierEdges}
    out = {"pairs": args.pairs, "steps": args.steps, "split": "validation", "models": {}}
    for name in args.models.split(","):
        learned = citypath.load_model(name, graph=g)
        for m in (learned, learned.scaffold_control()):
            cpu = {way: [] for way in ways}
            runs = {way: [] for way in ways}
            list(m.refine(g, int(srcs[0]), int(dsts[0]), steps=2))             # warm-up
            for i, (s, t) in enumerate(zip(srcs.tolist(), dsts.tolist())):
                for way in (list(ways) if i % 2 == 0 else list(ways)[::-1]):
                    m.edges = ways[way]
                    t0 = time.process_time()
                    runs[way].append(list(m.refine_with_compute(g, s, t, steps=args.steps)))
                    cpu[way].append(time.process_time() - t0)
            a, b = runs["corridor_edges"], runs["frontier_edges"]
            steps = [(x, y) for qa, qb in zip(a, b) for x, y in zip(qa, qb)]
            out["models"][name if m is learned else f"{name}.scaffold"] = {
                "cpu_s_per_query": {way: statistics.fmean(v) for way, v in cpu.items()},
                "cpu_s_per_query_max": {way: max(v) for way, v in cpu.items()},
                "cpu_ratio_corridor_over_frontier": statistics.fmean(cpu["corridor_edges"])
                / statistics.fmean(cpu["frontier_edges"]),
                "step_paths": len(steps),
                "step_paths_differing": sum(x[0] != y[0] for x, y in steps),
                "step_operations_differing": sum(x[1] != y[1] for x, y in steps),
            }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
