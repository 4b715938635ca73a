"""The post RNN's decoding, side by side in one run: (1) with the city table stored transposed
(`PostRNN.decode_logits`, what `decode` uses) vs the transposed view of the embedding (`PostRNN.logits`, what it
used before); (2) a crowd's queries decoded together (`refine_many`, what the app's workers do, in batches of
`--batch`) vs one at a time; (3) decoded together, the scores' product by blocks of the table's columns from
`BLOCKS_FROM_ROWS` rows (what `decode_logits` does) vs the whole product at every size.

    python -m benchmarks.bench_postrnn                          # post-rnn-large, 32 validation pairs, 16 steps
    python -m benchmarks.bench_postrnn --models post-rnn-large,post-rnn-small --pairs 32 --steps 64 --batch 8

Validation pairs only (never a test pair), one torch thread; CPU seconds are read from the process clock.
(1): for each pair both ways run its `refine` to `--steps`, in turns (the first way alternates from pair to
pair). (2) and (3): the pairs in groups of `--batch`, each group both ways, in turns. Prints one
JSON object: CPU per query each way, their ratios, and how many step paths (and counted operations) differ
between the ways: the scores differ in float32's last bits where a product of 1-3 rows meets one of more
rows, which could change a choice on a near tie. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np


def main(argv: list[str] | None = None) -> None:
    import torch

    import citypath
    from citypath.models import postrnn
    from citypath.models.postrnn import PostRNN
    from citypath.split import sample_pairs

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="post-rnn-large")
    p.add_argument("--pairs", type=int, default=32)
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--batch", type=int, default=8)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    g = citypath.load_graph()
    srcs, dsts = sample_pairs(g.n_cities, args.pairs, np.random.default_rng(31), split="validation")
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
        cpu, runs = {"alone": 0.0, "together": 0.0}, {"alone": [], "together": []}
        for i in range(0, len(pairs), args.batch):
            group = pairs[i:i + args.batch]
            for way in (("alone", "together") if (i // args.batch) % 2 == 0 else ("together", "alone")):
                t0 = time.process_time()
                got = ([list(m.refine_with_compute(g, s, t, args.steps)) for s, t in group] if way == "alone"
                       else m.refine_many(g, group, args.steps))
                cpu[way] += time.process_time() - t0
                runs[way].extend(got)
        batched = {"batch": args.batch, **compared(cpu, runs, len(pairs), "together", "alone")}
        blocks_from = postrnn.BLOCKS_FROM_ROWS
        cpu, runs = {"blocks": 0.0, "whole": 0.0}, {"blocks": [], "whole": []}
        try:
            for i in range(0, len(pairs), args.batch):
                group = pairs[i:i + args.batch]
                for way in (("blocks", "whole") if (i // args.batch) % 2 == 0 else ("whole", "blocks")):
                    postrnn.BLOCKS_FROM_ROWS = blocks_from if way == "blocks" else 1 << 62
                    t0 = time.process_time()
                    runs[way].extend(m.refine_many(g, group, args.steps))
                    cpu[way] += time.process_time() - t0
        finally:
            postrnn.BLOCKS_FROM_ROWS = blocks_from
        blocks = {"blocks_from_rows": blocks_from, "block_cols": postrnn.BLOCK_COLS,
                  **compared(cpu, runs, len(pairs), "blocks", "whole")}
        out["models"][name] = {"layout": layout, "batched": batched, "blocks": blocks}
    print(json.dumps(out, indent=1))


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
