"""Learning that pays? The guided checkpoints against A*, ALT at equal bytes a city and their own controls, on
the same pairs: expansions and single-thread CPU ms per query, exact share, bytes a city, parameters.

    python -m experiments.guided_frontier --pairs 1000                     # results/guided-frontier.json
    python -m experiments.guided_frontier --split validation --pairs 200 --out /tmp/v.json   # design checks

Every row runs the one search (`citypath.models.classical.BestFirst`) to its end on each pair, timed with
`time.thread_time` (set-up of the bound included; a table's once-per-graph preprocessing is reported apart);
the rows take turns pair by pair, after a few untimed warm-up pairs, so their CPU ms are paired.
Rows: `astar`; `alt-1/4/16` (4, 16, 64 bytes a city); each guided checkpoint; its memory dropped
(`network-only`) and shuffled across cities; its scaffold with ALT's table in place of the learned one is the
`alt-<columns>` row (the same table); weighted A* (uncertified: stops at its first solution, expands a city
at most once) at the weight whose mean expansions on validation pairs are nearest the checkpoint's. Ratios of
means against A* and against ALT at equal bytes come with 95% paired bootstrap intervals over pairs; a gain
whose interval holds 1 is reported as none.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from citypath.bounds import landmark_table
from citypath.cache import write_atomic
from citypath.evaluate import sample_heldout_pairs, sample_validation_pairs, wilson_interval
from citypath.graph import CityGraph, load_graph
from citypath.models import list_models, load_model
from citypath.models.classical import BestFirst, best_first_run

OUT = Path("results/guided-frontier.json")
WEIGHTS = (1.0, 1.002, 1.005, 1.01, 1.02, 1.05, 1.1, 1.2, 1.5, 2.0, 3.0)
ALT_COLUMNS = (1, 4, 16)


def one_query(make, s: int, t: int, first_solution: bool) -> tuple[float, float, float, float]:
    """One query to its end: (cities expanded, CPU ms by thread time with the bound's set-up, route km, ops)."""
    c0 = time.thread_time()
    search = make(s, t)
    if first_solution:            # weighted A*: its first solution is its answer
        while search.incumbent is None and not search.done:
            search.expand(1)
    else:
        for _ in best_first_run(search, [None]):
            pass
    return search.expanded, (time.thread_time() - c0) * 1e3, search.incumbent_km, search.ops


def run_search(make, g: CityGraph, srcs, dsts, *, first_solution: bool = False, desc: str = "") -> dict:
    """Per pair: cities expanded, CPU ms (thread time, set-up included), route km, operations."""
    out = {k: np.zeros(len(srcs)) for k in ("expansions", "ms", "km", "ops")}
    for i, (s, t) in enumerate(tqdm(list(zip(srcs.tolist(), dsts.tolist())), desc=desc, unit="pair",
                                    file=sys.stderr, leave=False)):
        out["expansions"][i], out["ms"][i], out["km"][i], out["ops"][i] = one_query(make, s, t, first_solution)
    return out


def run_interleaved(rows: dict[str, tuple], srcs, dsts, warmup: int = 5) -> dict[str, dict]:
    """Every row on every pair, the rows taken in turn on each pair and the first of them rotating (so a busy moment
    of the machine, or the cache a row leaves to the next, falls on all rows alike: the CPU ms are paired), after
    `warmup` untimed pairs per row."""
    for make, first in rows.values():
        for s, t in zip(srcs[:warmup].tolist(), dsts[:warmup].tolist()):
            one_query(make, s, t, first)
    out = {name: {k: np.zeros(len(srcs)) for k in ("expansions", "ms", "km", "ops")} for name in rows}
    pairs = list(zip(srcs.tolist(), dsts.tolist()))
    names = list(rows)
    for i, (s, t) in enumerate(tqdm(pairs, desc="all rows", unit="pair", file=sys.stderr)):
        for name in names[i % len(names):] + names[:i % len(names)]:     # who goes first rotates
            make, first = rows[name]
            r = out[name]
            r["expansions"][i], r["ms"][i], r["km"][i], r["ops"][i] = one_query(make, s, t, first)
    return out


def ratio(a: np.ndarray, b: np.ndarray, resamples: int = 2000, seed: int = 0) -> dict:
    """mean(a) / mean(b) over the same pairs with a 95% paired bootstrap interval; `gain` when it excludes 1."""
    idx = np.random.default_rng(seed).integers(0, len(a), size=(resamples, len(a)))
    boot = a[idx].mean(axis=1) / b[idx].mean(axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {"value": float(a.mean() / b.mean()), "ci95": [float(lo), float(hi)], "below_1": bool(hi < 1.0),
            "above_1": bool(lo > 1.0)}


def mean_ci(x: np.ndarray, resamples: int = 2000, seed: int = 0) -> dict:
    idx = np.random.default_rng(seed).integers(0, len(x), size=(resamples, len(x)))
    lo, hi = np.percentile(x[idx].mean(axis=1), [2.5, 97.5])
    return {"value": float(x.mean()), "ci95": [float(lo), float(hi)]}


def summary(run: dict, optimal_km: np.ndarray) -> dict:
    exact = np.isclose(run["km"], optimal_km, rtol=1e-9, atol=1e-9)
    return {"expansions": mean_ci(run["expansions"]), "ms": mean_ci(run["ms"]), "ops": mean_ci(run["ops"]),
            "exact": {"value": float(exact.mean()), "ci95": wilson_interval(int(exact.sum()), len(exact))},
            "length_ratio_mean": float(np.mean(run["km"] / np.maximum(optimal_km, 1e-9)))}


def matched_weight(g: CityGraph, target_expansions: float, srcs, dsts) -> float:
    """The weight of weighted A* whose mean expansions on these (validation) pairs are nearest the target."""
    best, gap = WEIGHTS[0], np.inf
    for w in WEIGHTS:
        e = run_search(lambda s, t, w=w: BestFirst(g, s, t, w, reopen=False), g, srcs, dsts, first_solution=True,
                       desc=f"w={w}")["expansions"].mean()
        if abs(e - target_expansions) < gap:
            best, gap = w, abs(e - target_expansions)
    return best


def frontier(g: CityGraph, n_pairs: int, split: str, seed: int, names: list[str], val_pairs: int) -> dict:
    srcs, dsts = (sample_heldout_pairs if split == "test" else sample_validation_pairs)(g, n_pairs, seed=seed)
    vs, vd = sample_validation_pairs(g, val_pairs, seed=seed + 1)
    from scipy.sparse.csgraph import dijkstra

    optimal = np.array([dijkstra(g.adjacency, indices=int(s))[int(t)] for s, t in zip(srcs, dsts)])
    rows: dict[str, dict] = {}
    makers: dict[str, tuple] = {}

    def add(name: str, make, meta: dict, first_solution: bool = False) -> None:
        makers[name] = (make, first_solution)
        rows[name] = meta

    add("astar", lambda s, t: BestFirst(g, s, t, 1.0),
        {"kind": "classical", "certified": True, "bytes_per_city": 0, "stored_bytes_per_city": 0, "parameters": 0,
         "preprocessing_ms": 0.0})
    for k in ALT_COLUMNS:
        c0 = time.thread_time()
        table = landmark_table(g, k)
        prep = (time.thread_time() - c0) * 1e3
        add(f"alt-{k}", lambda s, t, table=table: BestFirst(g, s, t, 1.0, table_m=table),
            {"kind": "classical", "certified": True, "bytes_per_city": 4 * k, "stored_bytes_per_city": 4 * k,
             "parameters": 0, "preprocessing_ms": prep})
    for name in names:
        m = load_model(name, graph=g)
        variants = [(name, m)] + ([(f"{name}.{c}", m.with_control(c)) for c in ("network-only", "shuffled-memory")]
                                  if m.net.memory is not None else [])
        for label, v in variants:
            c0 = time.thread_time()
            table = v.table(g)
            prep = (time.thread_time() - c0) * 1e3
            add(label, lambda s, t, table=table: BestFirst(g, s, t, 1.0, table_m=table),
                {"kind": "guided" if label == name else "control", "control_of": None if label == name else name,
                 "certified": True, "bytes_per_city": v.bytes_per_city(),
                 "stored_bytes_per_city": v.stored_bytes_per_city(), "parameters": v.num_parameters,
                 "columns": v.config.columns, "preprocessing_ms": prep,
                 "preprocessing_ops": v.preprocessing_ops(g)})
        table = m.table(g)
        val_expansions = run_search(lambda s, t, table=table: BestFirst(g, s, t, 1.0, table_m=table), g, vs, vd,
                                    desc=f"{name} (validation)")["expansions"].mean()
        w = matched_weight(g, val_expansions, vs, vd)
        add(f"weighted-astar@{name}", lambda s, t, w=w: BestFirst(g, s, t, w, reopen=False),
            {"kind": "control", "control_of": name, "certified": False, "weight": w, "bytes_per_city": 0,
             "stored_bytes_per_city": 0, "parameters": 0, "preprocessing_ms": 0.0,
             "weight_chosen_on": f"{val_pairs} validation pairs: of the grid {list(WEIGHTS)}, the weight whose mean "
                                 f"expansions were nearest {name}'s ({val_expansions:.1f})"}, first_solution=True)
    runs = run_interleaved(makers, srcs, dsts)
    for name in rows:
        rows[name].update(summary(runs[name], optimal))
    for name, row in rows.items():
        row["vs_astar"] = {k: ratio(runs[name][k], runs["astar"][k]) for k in ("expansions", "ms")}
        alt = f"alt-{row['bytes_per_city'] // 4}"
        if row["kind"] != "classical" and alt in runs and row["bytes_per_city"]:
            row["vs_alt_equal_bytes"] = {"row": alt, **{k: ratio(runs[name][k], runs[alt][k])
                                                        for k in ("expansions", "ms")}}
    return {"command": " ".join(["python -m experiments.guided_frontier"] + sys.argv[1:]),
            "split": split, "pairs": n_pairs, "pair_seed": seed, "graph": g.fingerprint,
            "threads": "one (time.thread_time per query)",
            "timing": "rows interleaved pair by pair, the first rotating, after 5 untimed warm-up pairs each",
            "rows": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=1000)
    p.add_argument("--split", choices=("test", "validation"), default="test")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-pairs", type=int, default=100, help="validation pairs the weighted-A* weight is chosen on")
    p.add_argument("--models", nargs="*", help="guided checkpoints (default: every shipped one)")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    g = load_graph()
    names = args.models if args.models is not None else [n for n in list_models() if n.startswith("guided-")]
    report = frontier(g, args.pairs, args.split, args.seed, names, args.val_pairs)
    write_atomic(args.out, (json.dumps(report, indent=1) + "\n").encode())
    for name, row in report["rows"].items():
        r = row["vs_astar"]["expansions"]
        print(f"{name:34s} {row['bytes_per_city']:3d} B/city  expansions {row['expansions']['value']:8.1f} "
              f"({r['value']:.3f}x A* [{r['ci95'][0]:.3f}-{r['ci95'][1]:.3f}])  ms {row['ms']['value']:6.2f}  "
              f"exact {100 * row['exact']['value']:.1f}%")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
