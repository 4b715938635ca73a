"""Is a step worth a parameter? The train-compute / test-compute sweep of the learned families.

    python -m experiments.tradeoff train                  # every sweep checkpoint not yet in checkpoints/sweep/
    python -m experiments.tradeoff evaluate --pairs 1000  # results/tradeoff.json (merges: --models to redo some)
    python -m experiments.tradeoff report                 # recompute the contours from the stored records

The sweep (`SWEEP`): the families whose thinking is learned end to end (no hand-written search decides the
route), each at sizes spanning >= 30x in parameters, trained by one budget rule per family: every size sees
the same number of training paths (regional graphs for gnn), so its training compute grows with its size;
each card records the compute it spent (`training.flops`, citypath.cost's convention, x3 where gradients
flow). Each run is its card's command, into checkpoints/sweep/ (not the app's list):
`load_model(name, directory="checkpoints/sweep")`.

`evaluate` runs every sweep checkpoint through the one harness (`citypath.evaluate.evaluate_model`) on the
same test pairs at its family's step counts and keeps every pair's record; the contours and slopes
(`citypath.tradeoff`) are computed from those records. Test pairs are read here only; nothing was chosen on
them (sizes, budgets and learning rates follow the shipped sizes' presets).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from filelock import FileLock

from citypath.cache import write_atomic
from citypath.evaluate import evaluate_model, sample_heldout_pairs
from citypath.graph import CityGraph, load_graph
from citypath.models import list_models, load_model
from citypath.tradeoff import LEVELS, Run, difficulty_sentences, headline, tradeoff_report

OUT = Path("results/tradeoff.json")
SWEEP_DIR = Path("checkpoints/sweep")
SCHEMA = 1
FLOOR = ("astar",)   # the classical floor read on the same pairs (exact, nothing learned)

# family -> the budget rule (paths every size sees), its sizes, the step counts evaluated (a prefix run: one run
# to the largest count gives every smaller one).
SWEEP = {
    "gru": {"paths": 100_000, "sizes": ("tiny", "mini", "small", "xl"), "steps": (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)},
    "gnn": {"paths": 30_000, "sizes": ("tiny", "small", "large"), "steps": (1, 2, 3, 4, 6, 8, 12, 16)},
}


def run_name(family: str, size: str) -> str:
    return f"sweep-{family}-{size}"


def train_command(family: str, size: str, directory: Path = SWEEP_DIR) -> list[str]:
    """The card's command of one sweep run (the budget in paths, never a clock)."""
    return [sys.executable, "-m", "citypath", "train", "--model", family, "--size", size,
            "--name", run_name(family, size), "--paths", str(SWEEP[family]["paths"]),
            "--checkpoints", str(directory), "--no-progress"]


def sweep_runs() -> list[tuple[str, str, str]]:
    """(family, size, name) of every run of the sweep, in training order (cheapest first)."""
    return [(fam, size, run_name(fam, size)) for fam, spec in SWEEP.items() for size in spec["sizes"]]


def train(directory: Path = SWEEP_DIR, only: list[str] | None = None) -> int:
    """Train the sweep's missing checkpoints one after another (one training at a time on a shared CPU)."""
    have = set(list_models(directory))
    unknown = sorted(set(only or ()) - {name for _, _, name in sweep_runs()})
    if unknown:
        print(f"not in the sweep: {', '.join(unknown)}; its runs: {', '.join(n for _, _, n in sweep_runs())}",
              file=sys.stderr)
        return 2
    for fam, size, name in sweep_runs():
        if (only and name not in only) or (not only and name in have):
            continue
        cmd = train_command(fam, size, directory)
        print("$", " ".join(cmd[1:]), flush=True)
        rc = subprocess.call(cmd)
        if rc:
            print(f"{name}: training exited with {rc}; rerun the same command to resume", file=sys.stderr)
            return rc
    return 0


def run_from_entry(name: str, entry: dict) -> Run:
    return Run.from_per_pair(name, entry["family"], entry["num_parameters"], entry["train_flops"], entry["per_pair"],
                             size=entry.get("size", ""))


def compact(entry: dict) -> dict:
    """What the results file keeps of an evaluate_model entry: the summaries' headline numbers and the per-pair
    valid / length ratio / FLOPs records the contours are computed from (times are in the summaries)."""
    keep = ("valid", "length_ratio_all_mean", "length_ratio_mean", "flops_total", "cpu_ms_total_mean", "ms_total_mean")
    intervals = ("valid", "length_ratio_all_mean")
    by_steps = {k: {**{m: v[m] for m in keep}, "ci95": {m: v["ci95"].get(m) for m in intervals}}
                for k, v in entry["by_steps"].items()}
    per_pair = {k: {m: v[m] for m in ("valid", "length_ratio", "flops")} for k, v in entry["per_pair"].items()}
    return {**{k: entry[k] for k in ("family", "num_parameters", "max_steps", "weights_sha256", "steps")},
            "by_steps": by_steps, "per_pair": per_pair}


def evaluate(g: CityGraph, names: list[str], directory: Path, n_pairs: int, seed: int, out: Path,
             steps: dict[str, tuple[int, ...]] | None = None, *, progress: bool = True, resamples: int = 1000,
             min_points: int = 3) -> dict:
    """Evaluate `names` (checkpoints in `directory`) on `n_pairs` test pairs and merge them into `out` (same
    graph and pairs, else refused), then recompute the report from every stored entry."""
    srcs, dsts = sample_heldout_pairs(g, n_pairs, seed)
    pairs = {"split": "test", "n": int(n_pairs), "seed": int(seed), "graph": g.fingerprint}
    doc = json.loads(out.read_text()) if out.exists() else {}
    if doc and doc.get("pairs") != pairs:
        raise SystemExit(f"{out} was made on other pairs ({doc.get('pairs')}), not {pairs}: pass another --out, "
                         "or re-evaluate every model into a fresh file")
    hops = doc.get("hops") or [len(g.shortest_path(int(s), int(t))) - 1 for s, t in zip(srcs, dsts)]
    models = doc.get("models", {})
    steps = steps or {fam: spec["steps"] for fam, spec in SWEEP.items()}
    for name in names:
        m = load_model(name, directory=directory, graph=g)
        card = m.card
        tr = card.get("training", {})
        if tr.get("flops") is None:
            raise SystemExit(f"{name}: its card records no training compute (training.flops); retrain it with "
                             "its command")
        entry = evaluate_model(m, g, srcs, dsts, steps.get(m.family, SWEEP.get(m.family, {}).get("steps", (1, 2, 4))),
                               bootstrap=1000, progress=progress)
        done = {**compact(entry), "size": card.get("size", ""), "train_flops": float(tr["flops"]),
                "train_seconds": tr.get("seconds"), "train_paths": tr.get("paths_seen"), "command": tr.get("command")}
        with FileLock(out.parent / f".{out.name}.lock"):   # merged into what is there now (another run may write)
            models = json.loads(out.read_text()).get("models", {}) if out.exists() else {}
            doc = write(out, pairs, hops, {**models, name: done}, resamples, min_points)
    if not names:
        doc = write(out, pairs, hops, models, resamples, min_points)
    return doc


def evaluate_floor(g: CityGraph, n_pairs: int, seed: int, out: Path, rows: tuple[str, ...] = FLOOR, *,
                   progress: bool = True) -> dict:
    """The classical floor on the sweep's pairs (shipped rows, nothing learned: A*), kept beside the sweep in
    `out` as each row's valid share, mean ratio over all pairs, FLOPs and CPU ms per query at its last step."""
    srcs, dsts = sample_heldout_pairs(g, n_pairs, seed)
    floor = {}
    for name in rows:
        m = load_model(name, graph=g)
        entry = evaluate_model(m, g, srcs, dsts, (m.max_steps,), bootstrap=0, progress=progress)
        last = entry["by_steps"][str(m.max_steps)]
        floor[name] = {"steps": m.max_steps, **{k: last[k] for k in ("valid", "length_ratio_all_mean", "flops_total",
                                                                      "cpu_ms_total_mean")}}
    with FileLock(out.parent / f".{out.name}.lock"):
        doc = json.loads(out.read_text())
        return write(out, doc["pairs"], doc["hops"], doc["models"], floor=floor)


def write(out: Path, pairs: dict, hops: list[int], models: dict, resamples: int = 1000, min_points: int = 3, *,
          floor: dict | None = None) -> dict:
    """The results file from the stored entries (the floor kept as it is unless given)."""
    if floor is None:
        floor = json.loads(out.read_text()).get("floor", {}) if out.exists() else {}
    runs = {name: run_from_entry(name, e) for name, e in models.items()}
    report = tradeoff_report(runs, hops, LEVELS, resamples=resamples, min_points=min_points) if runs else None
    doc = {"schema_version": SCHEMA, "pairs": pairs, "hops": [int(h) for h in hops], "floor": floor,
           "sweep": {fam: {**spec, "commands": [" ".join(["python", *train_command(fam, size)[1:]])
                                                for size in spec["sizes"]]}
                     for fam, spec in SWEEP.items()},
           "models": models, "report": report,
           "headline": headline(report) if report else [],
           "difficulty": difficulty_sentences(report) if report else []}
    write_atomic(out, (json.dumps(doc, separators=(",", ":")) + "\n").encode())
    return doc


def stale(directory: Path, out: Path) -> list[str]:
    """The checkpoints in `directory` that `out` lacks, or holds for other weights (a retrained size)."""
    have = json.loads(out.read_text()).get("models", {}) if out.exists() else {}
    names = []
    for name in list_models(directory):
        card = json.loads((directory / f"{name}.json").read_text())
        if have.get(name, {}).get("weights_sha256") != card.get("weights_sha256"):
            names.append(name)
    return names


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train the sweep's missing checkpoints, one at a time")
    t.add_argument("--only", nargs="*", help="these runs only (retrained even if present)")
    e = sub.add_parser("evaluate", help="evaluate sweep checkpoints on the test pairs into results/tradeoff.json")
    e.add_argument("--pairs", type=int, default=1000)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--models", nargs="*", help="checkpoints to (re-)evaluate (default: those not in the file yet)")
    e.add_argument("--out", type=Path, default=OUT)
    r = sub.add_parser("report", help="recompute the contours from the stored records")
    r.add_argument("--out", type=Path, default=OUT)
    for q in (t, e):
        q.add_argument("--dir", type=Path, default=SWEEP_DIR)
    args = p.parse_args(argv)
    if args.cmd == "train":
        return train(args.dir, args.only)
    if args.cmd == "report":
        doc = json.loads(args.out.read_text())
        doc = write(args.out, doc["pairs"], doc["hops"], doc["models"])
    else:
        import torch

        torch.set_num_threads(1)   # one core for the harness, one for a training beside it (CPU ms are per thread)
        g = load_graph()
        names = args.models if args.models is not None else stale(args.dir, args.out)
        doc = evaluate(g, names, args.dir, args.pairs, args.seed, args.out)
        if set(doc.get("floor", {})) != set(FLOOR):
            doc = evaluate_floor(g, args.pairs, args.seed, args.out)
    for line in doc["headline"] + doc["difficulty"]:
        print(line)
    print(f"wrote {args.out} ({len(doc['models'])} checkpoints)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
