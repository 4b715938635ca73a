"""Training throughput (paths/s) of each model family, through the project's own training loop.

    python -m benchmarks.bench_train                  # gru, refiner, gnn on the default graph, 40 steps each
    python -m benchmarks.bench_train --families gnn --steps 100
    CITYPATH_STATES=RI,MA python -m benchmarks.bench_train --steps 3 --checkpoints DIR
                                                      # a small graph; keep the checkpoints in DIR

Each family's `training_task` (size `small`, the shipped size) is built as `python -m citypath
train --model <family>` builds it, with a budget of exactly `--steps` optimiser steps
(`total_paths = steps x batch_paths`) and no validation until the end, then `citypath.training.train`
runs it with one torch thread, writing its state and checkpoint to a temporary directory (never
checkpoints/ or runs/). `paths_per_s`: the paths the loop logs as seen (`paths_seen` of its last
curve point) over the time from the first training batch to the end-of-run validation (every
step: making the batch, forward, backward, optimiser; timed around the task's `batch` and
`val_batches` calls, since the loop logs seconds to 0.1 s only: `logged_paths_per_s` is that
figure); `steady_paths_per_s` leaves out the first step (the refiner fills its pool of pairs
there). For the gnn a "path" is one (region, target) training graph, as in its cards. The
shipped `<family>-small` card gives the throughput of its whole real run for comparison
(`shipped_paths_per_s`: validation epochs included, on whatever load that run had).
Prints one JSON object. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Per-family settings that keep a short run short; none changes the cost of a training step.
SMALL_SETTINGS = {
    "gru": ["val_paths=20"],
    "refiner": ["val_paths=10"],
    # the region pool is built up front (320 regions by default); 16 is enough for a few hundred steps
    "gnn": ["val_paths=10", "pool=16", "val_regions=8", "val_pairs=2"],
}


class _Timed:
    """The family's task, with a timestamp at each training batch and at the first validation call."""

    def __init__(self, task):
        self._task, self.batch_at, self.paths, self.val_at = task, [], [], None

    def __getattr__(self, name):
        return getattr(self._task, name)

    def batch(self, step: int, rank: int, world: int):
        self.batch_at.append(time.perf_counter())
        batch, n = self._task.batch(step, rank, world)
        self.paths.append(n)
        return batch, n

    def val_batches(self):
        if self.val_at is None:
            self.val_at = time.perf_counter()
        return self._task.val_batches()


def train_family(family: str, g, steps: int, checkpoints: Path, runs: Path, spd_paths: int | None) -> dict:
    import importlib

    from citypath.training import task_factory, train

    sets = [*SMALL_SETTINGS.get(family, []), "card_pairs=0", f"epoch_paths={10**12}"]
    if spd_paths:
        sets.append(f"spd_paths={spd_paths}")
    args = argparse.Namespace(size="small", name=f"{family}-bench", seed=0, max_minutes=60.0, paths=None,
                              batch_paths=None, lr=None, threads=1, epoch_paths=None, checkpoints=str(checkpoints),
                              runs=str(runs), set=sets, no_progress=True, command_line="benchmarks/bench_train.py")
    batch_paths = importlib.import_module(f"citypath.tasks.{family}").TRAIN_DEFAULTS["small"]["batch_paths"]
    args.paths = steps * batch_paths   # the budget ends the run after exactly `steps` steps
    t0 = time.perf_counter()
    task, cfg = task_factory(family)(g, args)
    setup_s = time.perf_counter() - t0
    timed = _Timed(task)
    t0 = time.perf_counter()
    train(timed, g, cfg, fresh=True)
    total_s = time.perf_counter() - t0
    card = json.loads((checkpoints / f"{cfg.name}.json").read_text())
    last = card["curves"][-1]
    n = card["training"]["steps"]
    assert len(timed.batch_at) == n and last["step"] == n, (family, len(timed.batch_at), n)
    seconds = timed.val_at - timed.batch_at[0]
    row = {"size": "small", "batch_paths": cfg.batch_paths, "steps": n, "paths_seen": last["paths_seen"],
           "train_seconds": seconds, "paths_per_s": last["paths_seen"] / seconds,
           "steady_paths_per_s": (sum(timed.paths[1:]) / (timed.val_at - timed.batch_at[1])) if n > 1 else None,
           "logged_seconds": last["seconds"],
           "logged_paths_per_s": last["paths_seen"] / last["seconds"] if last["seconds"] else None,
           "task_setup_s": setup_s, "train_call_s": total_s, "parameters": card["num_parameters"]}
    shipped = REPO / "checkpoints" / f"{family}-small.json"
    if shipped.is_file():
        t = json.loads(shipped.read_text())["training"]
        row["shipped_paths_per_s"] = t["paths_seen"] / t["seconds"]
    return row


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="gru,refiner,gnn")
    ap.add_argument("--steps", type=int, default=40, help="optimiser steps per family (default 40)")
    ap.add_argument("--spd-paths", type=int, default=None,
                    help="SPD size for the gru (default: the default 2,000,000, cached; small graphs: 5,000)")
    ap.add_argument("--checkpoints", help="keep the checkpoints here (default: a temporary directory)")
    args = ap.parse_args(argv)

    import torch

    from citypath.graph import graph_kwargs_from_env, load_graph

    torch.set_num_threads(1)
    states = graph_kwargs_from_env()["states"]
    g = load_graph(states=states)
    spd_paths = args.spd_paths or (5000 if states else None)
    out = {"graph": {"cities": g.n_cities, "states": states or "contiguous US"}, "steps": args.steps,
           "torch_threads": 1, "families": {}}
    with tempfile.TemporaryDirectory(prefix="citypath-bench-train-") as tmp:
        ck = Path(args.checkpoints) if args.checkpoints else Path(tmp) / "checkpoints"
        for family in args.families.split(","):
            row = train_family(family, g, args.steps, ck, Path(tmp) / "runs", spd_paths)
            out["families"][family] = row
            print(f"{family}: {row['paths_per_s']:.1f} paths/s ({row['steps']} steps of {row['batch_paths']})",
                  file=sys.stderr)
    out["load_average"] = os.getloadavg()[0]
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
