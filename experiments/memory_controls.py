"""A memory model's controls (families memory and memsearch) on validation pairs: M = 0, wiped halfway,
a 64-slot memory, 1 vs many steps, and optionally a walker trained identically without memory.

    python -m experiments.memory_controls --model memory-small --pairs 200     # results/memory-controls.json
    python -m experiments.memory_controls --model memory-search --pairs 200 --out results/memory-search-controls.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from citypath.cache import write_atomic
from citypath.evaluate import sample_validation_pairs
from citypath.graph import CityGraph, load_graph
from citypath.models import load_model


def memory_controls(g: CityGraph, name: str, n_pairs: int, seed: int, runs_dir: Path, train_m0: bool) -> dict:
    """The controls of a memory model (families memory and memsearch) on the same held-out pairs: the shipped
    model at 1..max steps and 4x max; the same weights with the memory wiped halfway; with a 64-slot
    memory (when it has more); with no memory (M = 0 at inference); and, with `train_m0`, a model trained
    identically without memory (the shipped card's command plus `--set slots=0`)."""
    import dataclasses
    import shlex

    from citypath.cli import main as cli_main
    from citypath.evaluate import evaluate_model

    model = load_model(name, graph=g)
    top = model.max_steps
    steps, four = sorted({1, 2, 4, top}), sorted({1, 2, 4, top, 4 * top})
    srcs, dsts = sample_validation_pairs(g, n_pairs, seed=seed)   # a design study: never test pairs
    out = {"command": f"python -m experiments.memory_controls --model {name} --pairs {n_pairs}", "model": name,
           "split": "validation", "pairs": n_pairs, "pair_seed": seed, "runs": {}}
    res = evaluate_model(model, g, srcs, dsts, four, progress=False, bootstrap=1000)
    out["runs"]["full"] = {"what": f"{name} as shipped (M = {model.config.slots})", "by_steps": res["by_steps"]}
    wiped = load_model(name, graph=g)
    wiped.net.config = wiped.config = dataclasses.replace(wiped.config, wipe_after=max(top // 2, 1))
    res = evaluate_model(wiped, g, srcs, dsts, steps, progress=False, bootstrap=1000)
    out["runs"]["wiped-halfway"] = {"what": f"the same weights, memory wiped after step {max(top // 2, 1)}",
                                    "by_steps": res["by_steps"]}
    if model.config.slots > 64:
        small = load_model(name, graph=g)
        small.net.config = small.config = dataclasses.replace(small.config, slots=64)
        res = evaluate_model(small, g, srcs, dsts, steps, progress=False, bootstrap=1000)
        out["runs"]["m64-same-weights"] = {"what": "the same weights with a 64-slot memory",
                                           "by_steps": res["by_steps"]}
    blind = load_model(name, graph=g)
    blind.net.config = blind.config = dataclasses.replace(blind.config, slots=0)
    res = evaluate_model(blind, g, srcs, dsts, steps, progress=False, bootstrap=1000)
    out["runs"]["m0-same-weights"] = {"what": "the same weights run without memory (M = 0 at inference)",
                                      "by_steps": res["by_steps"]}
    if not train_m0:
        return out
    argv = shlex.split(model.card["training"]["command"])[3:]   # drop "python -m citypath"
    m0 = f"{name}-m0"
    argv += ["--name", m0, "--checkpoints", str(runs_dir), "--runs", str(runs_dir), "--no-progress",
             "--set", "slots=0", "--set", "card_pairs=0"]
    t0 = time.perf_counter()
    cli_main(argv)
    zero = load_model(m0, directory=runs_dir, graph=g)
    res = evaluate_model(zero, g, srcs, dsts, steps, progress=False, bootstrap=1000)
    out["runs"]["m0"] = {"what": "a walker trained identically without memory (M = 0)", "by_steps": res["by_steps"],
                         "train_seconds": round(time.perf_counter() - t0, 1)}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.memory_controls", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="memory-small")
    p.add_argument("--pairs", type=int, default=200)
    p.add_argument("--seed", type=int, default=0, help="validation pair seed")
    p.add_argument("--runs", default="runs/memory-controls", help="where the M = 0 run's checkpoint goes")
    p.add_argument("--train-m0", action="store_true", help="also train a walker without memory (same budget)")
    p.add_argument("--out", default="results/memory-controls.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    g = load_graph(verbose=False)
    report = memory_controls(g, args.model, args.pairs, args.seed, Path(args.runs), args.train_m0)
    write_atomic(Path(args.out), json.dumps(report, indent=1) + "\n")
    print(json.dumps({t: {k: (v.get("valid"), v.get("length_ratio_mean")) for k, v in r["by_steps"].items()}
                      for t, r in report["runs"].items()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
