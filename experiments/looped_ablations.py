"""The looped transformer's ablations: each trained for a short budget and evaluated on validation pairs.

A design study (never test pairs): each ablation is trained with the same seed and batches through
`python -m citypath train`, then scored by the harness; plus the full run's weights at one loop per
step, and its attribution control (the min head alone). About 25 minutes.

    python -m experiments.looped_ablations --pairs 200 --graphs 16000     # results/looped-ablations.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from citypath.cache import write_atomic
from citypath.evaluate import sample_validation_pairs
from citypath.graph import CityGraph, load_graph

LOOPED_ABLATIONS = {
    # tag: (what is changed, --set overrides of the training run)
    "full": ("the shipped design, same short budget", []),
    "no-injection": ("geography injected at the first loop only", ["injection=false"]),
    "no-global": ("no global source/target tokens", ["global_tokens=false"]),
    "no-progressive": ("every loop from the first carries gradient (no loops without gradient)",
                       ["progressive=false"]),
    "softmax-only": ("no min head: softmax heads and MLP only", ["min_head=false"]),
    "no-softmax": ("min head, injection and detour read-out only: no softmax heads, no MLP", ["softmax=false"]),
}


def looped_ablations(g: CityGraph, n_pairs: int, seed: int, graphs: int, runs_dir: Path,
                     only: list[str] | None = None) -> dict:
    """Train each ablation of the looped transformer for `graphs` small graphs (same seed, same batches)
    and evaluate it on the same `n_pairs` validation pairs (a design study: never test pairs); plus one loop
    per step (the full run's weights, loops_per_step=1, twice the steps: the same loops at max steps)."""
    import dataclasses

    from citypath.cli import main as cli_main
    from citypath.evaluate import evaluate_model
    from citypath.models import load_model as load

    srcs, dsts = sample_validation_pairs(g, n_pairs, seed=seed)
    out = {"command": f"python -m experiments.looped_ablations --pairs {n_pairs} --graphs {graphs}",
           "split": "validation", "pairs": n_pairs, "pair_seed": seed, "graphs": graphs, "runs": {}}
    for tag, (what, overrides) in LOOPED_ABLATIONS.items():
        if only and tag not in only:
            continue
        name = f"looped-ablation-{tag}"
        argv = ["train", "--model", "looped", "--size", "small", "--name", name, "--paths", str(graphs),
                "--checkpoints", str(runs_dir), "--runs", str(runs_dir), "--no-progress", "--set", "card_pairs=0"]
        for o in overrides:
            argv += ["--set", o]
        t0 = time.perf_counter()
        cli_main(argv)
        seconds = time.perf_counter() - t0
        m = load(name, directory=runs_dir, graph=g)
        res = evaluate_model(m, g, srcs, dsts, (1, 2, 4, 8, 16, 32, 48), progress=False, bootstrap=1000)
        out["runs"][tag] = {"what": what, "set": overrides, "train_seconds": round(seconds, 1),
                            "card_seconds": m.card["training"]["seconds"], "num_parameters": m.num_parameters,
                            "by_steps": res["by_steps"]}
        print(f"{tag}: trained in {seconds:.0f} s", file=sys.stderr)
        if tag == "full":
            one = load(name, directory=runs_dir, graph=g)
            one.net.config = one.config = dataclasses.replace(one.config, loops_per_step=1, max_steps=96)
            res = evaluate_model(one, g, srcs, dsts, (1, 2, 4, 8, 16, 32, 64, 96), progress=False, bootstrap=1000)
            out["runs"]["one-loop-per-step"] = {"what": "the full run's weights, one loop per step (96 steps = "
                                                        "the same 96 loops)", "set": ["loops_per_step=1"],
                                                "by_steps": res["by_steps"]}
            # The attribution control: the full run's min head alone, the block removed (no training).
            res = evaluate_model(m.scaffold_control(), g, srcs, dsts, (1, 2, 4, 8, 16, 32, 48), progress=False,
                                 bootstrap=1000)
            out["runs"]["min-head-only"] = {"what": "the full run's min head alone, run as bellman runs it: the "
                                                    "block removed (looped's scaffold control)", "set": [],
                                            "by_steps": res["by_steps"]}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.looped_ablations", description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=200)
    p.add_argument("--seed", type=int, default=0, help="validation pair seed")
    p.add_argument("--graphs", type=int, default=24_000, help="training budget of each run, in small graphs")
    p.add_argument("--runs", default="runs/looped-ablations", help="where the short runs' checkpoints go")
    p.add_argument("--only", default="", help="comma-separated tags (default: all)")
    p.add_argument("--out", default="results/looped-ablations.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    g = load_graph(verbose=False)
    report = looped_ablations(g, args.pairs, args.seed, args.graphs, Path(args.runs),
                              [t for t in args.only.split(",") if t] or None)
    write_atomic(Path(args.out), json.dumps(report, indent=1) + "\n")
    print(json.dumps({t: {k: r["by_steps"][k].get("length_ratio_mean") for k in r["by_steps"]}
                      for t, r in report["runs"].items()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
