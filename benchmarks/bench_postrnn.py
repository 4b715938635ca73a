"""The post RNN's decoding, side by side in one run: (1) with the city table stored transposed
(`PostRNN.decode_logits`, what `decode` uses) vs the transposed view of the embedding (`PostRNN.logits`, what it
used before); (2) a crowd's queries decoded together (`refine_many`, what the app's workers do, in batches of
`--batch`) vs one at a time; (3) decoded together, the scores' product by blocks of the table's columns from
`BLOCKS_FROM_ROWS` rows (what `decode_logits` does) vs the whole product at every size; (4) decoded together, the
queries' greedy steps as one batch (`PostRNNModel._decode_greedy_many`, what `refine_many` does) vs one query at a
time; and a profile of one group decoded together (the torch operators' shares of its CPU).

    python -m benchmarks.bench_postrnn                          # post-rnn-large, 32 validation pairs, 16 steps
    python -m benchmarks.bench_postrnn --models post-rnn-large,post-rnn-small --pairs 32 --steps 64 --batch 8

Validation pairs only (never a test pair), one torch thread; CPU seconds are read from the process clock.
(1): for each pair both ways run its `refine` to `--steps`, in turns (the first way alternates from pair to
pair). (2)-(4): the pairs in groups of `--batch`, each group both ways, in turns. Prints one
JSON object: CPU per query each way, their ratios, and how many step paths (and counted operations) differ
between the ways: the scores differ in float32's last bits where a product of 1-3 rows meets one of more
rows, which could change a choice on a near tie. Nothing here asserts a time.
"""

from __future__ import annotations

import json
import statistics
import time
from functools import partial

from benchmarks.measure import models_bench_args, validation_setup


def main(argv: list[str] | None = None) -> None:
    import citypath
    from citypath.models.postrnn import PostRNN

    p = models_bench_args(__doc__.splitlines()[0], "post-rnn-large", 32)
    p.add_argument("--batch", type=int, default=8)
    args = p.parse_args(argv)
    g, srcs, dsts = validation_setup(args.pairs)
    stored = PostRNN.decode_logits
    ways = {"stored_copy": stored, "transposed_view": PostRNN.logits}
    out = {"pairs": args.pairs, "steps": args.steps, "split": "validation", "models": {}}
    for name in args.models.split(","):
        m = citypath.load_model(name, graph=g)
        cpu = {way: [] for way in ways}
        paths = {way: [] for way in ways}
        list(m.refine(g, int(srcs[0]), int(dsts[0]), steps=2))             # warm-up (and the stored copy)
        try:
            for i, (s, t) in enumerate(zip(srcs.tolist(), dsts.tolist())):
                for way in (list(ways) if i % 2 == 0 else list(ways)[::-1]):
                    PostRNN.decode_logits = ways[way]
                    t0 = time.process_time()
                    paths[way].append(list(m.refine(g, s, t, steps=args.steps)))
                    cpu[way].append(time.process_time() - t0)
        finally:
            PostRNN.decode_logits = stored
        a, b = paths["stored_copy"], paths["transposed_view"]
        layout = {
            "cpu_s_per_query": {way: statistics.fmean(v) for way, v in cpu.items()},
            "cpu_ratio_view_over_copy": statistics.fmean(cpu["transposed_view"]) / statistics.fmean(cpu["stored_copy"]),
            "step_paths": sum(len(x) for x in a),
            "step_paths_differing": sum(p != q for x, y in zip(a, b) for p, q in zip(x, y)),
        }
        pairs = list(zip(srcs.tolist(), dsts.tolist()))
        out["models"][name] = {"layout": layout, **batched_ways(m, g, pairs, args.steps, args.batch)}
    print(json.dumps(out, indent=1))


def batched_ways(m, g, pairs: list, steps: int, batch: int) -> dict:
    """Comparisons (2)-(4) of `m` on `pairs` in groups of `batch`, and a profile of one group decoded together."""
    from citypath.models import postrnn
    from citypath.models.base import BestOfNModel

    def alone(group):
        return [list(m.refine_with_compute(g, s, t, steps)) for s, t in group]

    def together(group):
        return m.refine_many(g, group, steps)

    def whole(group):
        blocks_from, postrnn.BLOCKS_FROM_ROWS = postrnn.BLOCKS_FROM_ROWS, 1 << 62
        try:
            return together(group)
        finally:
            postrnn.BLOCKS_FROM_ROWS = blocks_from

    def greedy_alone(group):
        m._decode_greedy_many = partial(BestOfNModel._decode_greedy_many, m)
        try:
            return together(group)
        finally:
            del m._decode_greedy_many

    return {"batched": {"batch": batch, **in_turns(pairs, batch, {"together": together, "alone": alone})},
            "blocks": {"blocks_from_rows": postrnn.BLOCKS_FROM_ROWS, "block_cols": postrnn.BLOCK_COLS,
                       **in_turns(pairs, batch, {"blocks": together, "whole": whole})},
            "greedy": in_turns(pairs, batch, {"greedy_together": together, "greedy_alone": greedy_alone}),
            "profile": profiled(lambda: together(pairs[:batch]))}


def in_turns(pairs: list, batch: int, ways: dict) -> dict:
    """Two ways (name -> a function of a group of pairs returning its runs), the pairs in groups of `batch`, each
    group both ways in turns (the first way first in even groups); compared as `compared` (the first way new)."""
    cpu, runs = {way: 0.0 for way in ways}, {way: [] for way in ways}
    for i in range(0, len(pairs), batch):
        group = pairs[i:i + batch]
        for way in (list(ways) if (i // batch) % 2 == 0 else list(ways)[::-1]):
            t0 = time.process_time()
            runs[way].extend(ways[way](group))
            cpu[way] += time.process_time() - t0
    new, old = ways
    return compared(cpu, runs, len(pairs), new, old)


def profiled(run, top: int = 8) -> dict:
    """The torch operators that took most of `run`'s CPU (their own time, excluding what they called), as shares."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in rows)
    return {"self_cpu_s": total / 1e6, "shares": {e.key: round(e.self_cpu_time_total / total, 4) for e in rows[:top]}}


def compared(cpu: dict[str, float], runs: dict[str, list], queries: int, new: str, old: str) -> dict:
    """CPU per query of two ways, their ratio, and the step paths (and counted operations) that differ."""
    a = [step for run in runs[old] for step in run]
    b = [step for run in runs[new] for step in run]
    return {"cpu_s_per_query": {way: v / queries for way, v in cpu.items()},
            f"cpu_ratio_{new}_over_{old}": cpu[new] / cpu[old],
            "step_paths": len(a),
            "step_paths_differing": sum(p != q for (p, _), (q, _) in zip(a, b)),
            "step_operations_differing": sum(f != e for (_, f), (_, e) in zip(a, b))}


if __name__ == "__main__":
    main()
