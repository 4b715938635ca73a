"""Interesting held-out pairs for the app: where a model fails at step 1 and recovers, where models
disagree most, where refinement helps most, and where every model stays far from optimal.

`pair_outcomes` runs every shipped model on the harness's held-out pairs (step 1 and max steps);
`interesting_pairs` picks from those outcomes; `pairs_report` is the file the app reads
(`results/interesting-pairs.json`, through `citypath.app.picks`).

    python -m citypath.pairs --pairs 60 --seed 0        # results/interesting-pairs.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from citypath.cache import write_atomic
from citypath.evaluate import sample_heldout_pairs
from citypath.graph import CityGraph, load_graph
from citypath.metrics import evaluate_paths
from citypath.models import load_model


def pair_outcomes(g: CityGraph, names: list[str], n_pairs: int, seed: int) -> list[dict]:
    """Per held-out pair (the harness's sampler and seed), each model's route at step 1 and at its max steps."""
    srcs, dsts = sample_heldout_pairs(g, n_pairs, seed=seed)
    models = {n: load_model(n, graph=g) for n in names}
    rows = []
    for s, t in zip(srcs.tolist(), dsts.tolist()):
        entry = {"source": s, "target": t, "source_label": g.label(s), "target_label": g.label(t),
                 "optimal_km": g.shortest_path_length_km(s, t), "optimal_hops": len(g.shortest_path(s, t)) - 1,
                 "models": {}}
        for name, m in models.items():
            paths = list(m.refine(g, s, t, m.max_steps))
            df = evaluate_paths(g, [paths[0], paths[-1]], [s, s], [t, t])
            entry["models"][name] = {
                "max_steps": m.max_steps,
                **{f"{k}_{tag}": (bool(df.iloc[i][k]) if k == "valid" else float(df.iloc[i][k]))
                   for i, tag in ((0, "first"), (1, "last")) for k in ("valid", "length_ratio")}}
        rows.append(entry)
    return rows


def _ratio(v: float) -> str:
    return "invalid" if not np.isfinite(v) else f"{(v - 1) * 100:+.1f}%"


def interesting_pairs(rows: list[dict], per_kind: int = 3) -> list[dict]:
    """Derived from `pair_outcomes`: pairs where a model fails at step 1 and recovers, where models disagree
    most at their max steps, where refinement helps most, and where every model stays far from optimal."""
    picks: list[dict] = []
    seen: set[tuple[int, int]] = set()

    def take(kind: str, scored: list[tuple[float, dict, str]]) -> None:
        n = 0
        for score, r, why in sorted(scored, key=lambda x: -x[0]):
            key = (r["source"], r["target"])
            if n >= per_kind or score <= 0:
                break
            if key in seen:
                continue
            seen.add(key)
            picks.append({"kind": kind, "source": r["source"], "target": r["target"], "source_label": r["source_label"],
                          "target_label": r["target_label"], "why": why, "score": round(float(score), 6)})
            n += 1

    recover, disagree, helps, far = [], [], [], []
    for r in rows:
        ms = r["models"]
        rec = [n for n, m in ms.items() if not m["valid_first"] and m["valid_last"]]
        if rec:
            n = max(rec, key=lambda n: -ms[n]["length_ratio_last"])
            recover.append((len(rec) + 1 / (1 + r["optimal_hops"]), r,
                            f"{', '.join(rec)} miss{'es' if len(rec) == 1 else ''} the target at step 1 and "
                            f"recover{'s' if len(rec) == 1 else ''} by max steps ({n}: "
                            f"{_ratio(ms[n]['length_ratio_last'])} vs optimal)"))
        last = {n: (m["length_ratio_last"] if m["valid_last"] else np.inf) for n, m in ms.items()}
        finite = {n: v for n, v in last.items() if np.isfinite(v)}
        if len(finite) >= 2:   # spread among the models that arrive (most pairs have an invalid post-RNN route)
            best, worst = min(finite, key=finite.get), max(finite, key=finite.get)
            missing = sorted(set(last) - set(finite))
            disagree.append((finite[worst] - finite[best], r,
                             f"at max steps {best} is {_ratio(finite[best])} vs optimal while {worst} is "
                             f"{_ratio(finite[worst])}" + (f" ({len(missing)} model(s) do not arrive)" if missing
                                                           else "")))
        gains = {n: (m["length_ratio_first"] - m["length_ratio_last"]) for n, m in ms.items()
                 if m["valid_first"] and m["valid_last"]}
        if gains:
            n = max(gains, key=gains.get)
            helps.append((gains[n], r, f"{n} goes from {_ratio(ms[n]['length_ratio_first'])} at step 1 to "
                                       f"{_ratio(ms[n]['length_ratio_last'])} at step {ms[n]['max_steps']}"))
        if finite and min(finite.values()) > 1.01:   # "far": even the best arriving model is over 1% longer
            best = min(finite, key=finite.get)
            far.append((finite[best] - 1.0, r, f"the best model at max steps, {best}, is still "
                                               f"{_ratio(finite[best])} vs optimal"))
    take("fails at step 1, then recovers", recover)
    take("models disagree most", disagree)
    take("refinement helps most", helps)
    take("every model stays far from optimal", far)
    return picks


def pairs_report(g: CityGraph, names: list[str], n_pairs: int, seed: int, reuse: Path | None = None) -> dict:
    """`reuse`: an earlier report of the same models, pairs and seed whose per-pair outcomes are re-derived."""
    rows = None
    if reuse is not None and reuse.is_file():
        old = json.loads(reuse.read_text())
        if (old.get("models"), old.get("pairs"), old.get("seed")) == (names, n_pairs, seed):
            rows = old["per_pair"]
    rows = rows or pair_outcomes(g, names, n_pairs, seed)
    return {"command": f"python -m citypath.pairs --pairs {n_pairs} --seed {seed}", "models": names,
            "pairs": n_pairs, "seed": seed, "interesting": interesting_pairs(rows), "per_pair": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m citypath.pairs", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="", help="comma-separated (default: every shipped checkpoint)")
    p.add_argument("--pairs", type=int, default=60)
    p.add_argument("--seed", type=int, default=0, help="held-out pair seed (0: the first pairs of results/eval.json)")
    p.add_argument("--out", default="results/interesting-pairs.json")
    p.add_argument("--reuse", action="store_true", help="re-derive from the per-pair outcomes already in --out "
                                                         "(same models, pairs and seed) instead of running the models")
    args = p.parse_args(argv)
    import torch

    from citypath.models import list_models

    torch.set_num_threads(1)
    g = load_graph(verbose=False)
    names = [m for m in args.models.split(",") if m] or list_models()
    report = pairs_report(g, names, args.pairs, args.seed, Path(args.out) if args.reuse else None)
    write_atomic(Path(args.out), json.dumps(report, indent=1) + "\n")
    print(json.dumps(report["interesting"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
