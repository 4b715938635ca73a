"""The post RNN's decoding with the city table stored transposed (`PostRNN.decode_logits`, what `decode` uses) vs
the transposed view of the embedding (`PostRNN.logits`, what it used before), side by side in one run.

    python -m benchmarks.bench_postrnn                          # post-rnn-large, 30 validation pairs, 16 steps
    python -m benchmarks.bench_postrnn --models post-rnn-large,post-rnn-small --pairs 30 --steps 64

For each validation pair (never a test pair) both ways run the pair's `refine` to `--steps`, in turns (the
first way alternates from pair to pair), one torch thread; the CPU seconds of each query are read from the
process clock. Prints one JSON object: CPU per query each way, their ratio, and how many step paths differ
between the two ways (the scores differ in float32's last bits when 1-3 rows decode together, which could
change a choice on a near tie). Nothing here asserts a time.
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
    from citypath.models.postrnn import PostRNN
    from citypath.split import sample_pairs

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="post-rnn-large")
    p.add_argument("--pairs", type=int, default=30)
    p.add_argument("--steps", type=int, default=16)
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
        out["models"][name] = {
            "cpu_s_per_query": {way: statistics.fmean(v) for way, v in cpu.items()},
            "cpu_ratio_view_over_copy": statistics.fmean(cpu["transposed_view"]) / statistics.fmean(cpu["stored_copy"]),
            "step_paths": sum(len(x) for x in a),
            "step_paths_differing": sum(p != q for x, y in zip(a, b) for p, q in zip(x, y)),
        }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
