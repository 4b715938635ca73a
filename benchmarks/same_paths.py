"""Every shipped checkpoint's paths on fixed held-out pairs, to check a refactor changed none of them.

    python -m benchmarks.same_paths OUT.json                 # every checkpoint but the depth-LMs
    python -m benchmarks.same_paths OUT.json --compare OLD.json

Per checkpoint (and per attribution control, `name.scaffold`), `refine(g, src, dst, steps=8)` on 20 held-out
pairs (`sample_heldout_pairs(g, 20, seed=5)`) on the default graph; writes {name: [[path per step] per pair]}.
With --compare, prints which checkpoints give identical paths to OLD.json's (exit 1 if any differ).
Run it from the tree under test (PYTHONPATH pointing at it) to compare two commits.
"""

from __future__ import annotations

import argparse
import json
import sys

PAIRS, STEPS, SEED = 20, 8, 5
SKIP_PREFIX = "depth-lm"   # the depth-recurrent LMs are another change's


def paths_of_every_model() -> dict[str, list[list[list[int]]]]:
    import torch

    from citypath.evaluate import sample_heldout_pairs
    from citypath.graph import load_graph
    from citypath.models import list_models, load_model, scaffolded

    torch.set_num_threads(1)
    g = load_graph()
    srcs, dsts = sample_heldout_pairs(g, PAIRS, seed=SEED)
    names = [n for n in list_models() if not n.startswith(SKIP_PREFIX)]
    names += [n + ".scaffold" for n in scaffolded() if not n.startswith(SKIP_PREFIX)]
    out = {}
    for name in names:
        model = load_model(name, graph=g)
        out[name] = [[list(map(int, p)) for p in model.refine(g, int(s), int(t), steps=STEPS)]
                     for s, t in zip(srcs, dsts)]
        print(name, file=sys.stderr, flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="JSON file to write")
    ap.add_argument("--compare", help="an earlier run's JSON to compare against")
    args = ap.parse_args(argv)
    paths = paths_of_every_model()
    with open(args.out, "w") as f:
        json.dump(paths, f)
    if not args.compare:
        return 0
    with open(args.compare) as f:
        old = json.load(f)
    differ = False
    for name in sorted(set(old) | set(paths)):
        verdict = ("only in one run" if name not in old or name not in paths
                   else "identical" if old[name] == paths[name] else "DIFFERENT")
        differ |= verdict != "identical"
        print(f"{name:32s} {verdict}")
    return int(differ)


if __name__ == "__main__":
    sys.exit(main())
