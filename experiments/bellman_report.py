"""What a trained bellman network learned, compared with Bellman-Ford's exact weights.

Per held-out pair the first step whose route is optimal (against the optimal path's hop count);
where the routes that are not optimal at max steps lose their length (rounds, or near-ties
decided by the learned weights' precision); and its FLOPs and measured ms per query beside
`gru-large` best-of-32 on the same pairs, in one run.

    python -m experiments.bellman_report --pairs 300     # results/bellman-report.json + docs/bellman-steps.png
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from citypath.cache import write_atomic
from citypath.evaluate import sample_heldout_pairs
from citypath.graph import CityGraph, load_graph
from citypath.metrics import evaluate_paths
from citypath.models import load_model


def learned_vs_bellman_ford(model) -> list[dict]:
    """Every learned weight beside the value that makes the network exactly Bellman-Ford.

    With one channel, Bellman-Ford is: sender 1, edge weight = 1 / readout (so the read-out of
    a message is sender's estimate + hop length), edge bias 0, recall 0, and the target's
    initial read-out 0. Scale is free (h may be any multiple of km), so products are compared.
    """
    w = model.weights
    r = float(w.r[0])
    target_state = float((np.array([1.0, 0.0]) @ w.encode_w + w.encode_b)[0])
    rows = [
        ("sender weight A (state passed on)", float(w.A[0, 0]), 1.0),
        ("edge weight a x read-out r (km per km of hop)", float(w.a[0]) * r, 1.0),
        ("edge bias b x read-out r (radii added per hop)", float(w.b[0]) * r, 0.0),
        ("recall: is-target x r", float(w.B[0, 0]) * r, 0.0),
        ("recall: is-source x r", float(w.B[1, 0]) * r, 0.0),
        ("target's initial estimate r h_t + r0 (radii)", r * target_state + w.r0, 0.0),
        ("read-out offset r0 x (1 - A) (radii added per round)", w.r0 * (1 - float(w.A[0, 0])), 0.0),
    ]
    return [{"weight": k, "learned": v, "bellman_ford": e, "difference": v - e} for k, v, e in rows]


def bellman_report(g: CityGraph, name: str, n_pairs: int, seed: int, compare: str | None) -> dict:
    model = load_model(name, graph=g)
    srcs, dsts = sample_heldout_pairs(g, n_pairs, seed=seed)
    top = model.max_steps
    first_exact, hops, lost_m, converged_later = [], [], [], []
    flops_q = []
    for s, t in zip(srcs.tolist(), dsts.tolist()):
        paths = list(model.refine(g, s, t, steps=4 * top))
        df = evaluate_paths(g, paths, [s] * len(paths), [t] * len(paths))
        ok = df["optimal_length"].to_numpy()
        first_exact.append(int(np.argmax(ok)) + 1 if ok.any() else None)
        hops.append(len(g.shortest_path(s, t)) - 1)
        lost_m.append(float(df["length_km"].iloc[top - 1] - df["optimal_km"].iloc[top - 1]) * 1000)
        converged_later.append(bool(not ok[top - 1] and ok[-1]))
        flops_q.append(float(np.sum(model.step_flops(g, s, t, top))))
    # Measured ms per query at max steps, timed on its own (the loop above also ran 4x max steps).
    ms_top = []
    for s, t in zip(srcs.tolist(), dsts.tolist()):
        t0 = time.perf_counter()
        for _ in model.refine(g, s, t, steps=top):
            pass
        ms_top.append((time.perf_counter() - t0) * 1000)
    first = np.array([np.nan if f is None else f for f in first_exact], dtype=float)
    lost = np.array(lost_m)
    not_exact = ~(first <= top)
    by_hops = {}
    for lo, hi in ((1, 10), (11, 20), (21, 30), (31, 45), (46, 100)):
        sel = (np.array(hops) >= lo) & (np.array(hops) <= hi)
        if sel.any():
            f = first[sel]
            by_hops[f"{lo}-{hi}"] = {"pairs": int(sel.sum()), "median_steps_to_optimal": float(np.nanmedian(f))
                                     if np.isfinite(f).any() else None,
                                     "max_steps_to_optimal": float(np.nanmax(f)) if np.isfinite(f).any() else None,
                                     "optimal_at_max_steps": float(np.mean(f[np.isfinite(f)] <= top)
                                                                   * np.isfinite(f).mean())}
    out = {
        "model": name, "pairs": int(n_pairs), "seed": seed, "max_steps": top,
        "weights": learned_vs_bellman_ford(model),
        "optimal_at_max_steps": float(np.mean(~not_exact)),
        "optimal_at_4x_max_steps": float(np.mean(np.isfinite(first))),
        "not_optimal_at_max_steps": {
            "pairs": int(not_exact.sum()),
            "optimal_later_within_4x_steps (rounds)": int(np.sum(converged_later)),
            "km_lost_median_m": float(np.median(lost[not_exact])) if not_exact.any() else None,
            "km_lost_max_m": float(np.max(lost[not_exact])) if not_exact.any() else None,
            "lost_under_1_m (near-ties)": int(np.sum(not_exact & (lost < 1.0))),
            "lost_under_100_m": int(np.sum(not_exact & (lost < 100.0))),
        },
        "steps_to_optimal_by_hops": by_hops,
        "per_pair": [{"src": int(s), "dst": int(t), "hops": h, "first_optimal_step": f, "lost_m_at_max": lm}
                     for s, t, h, f, lm in zip(srcs.tolist(), dsts.tolist(), hops, first_exact, lost_m)],
        "flops_per_query_at_max_steps": {"mean": float(np.mean(flops_q)), "median": float(np.median(flops_q)),
                                         "p95": float(np.percentile(flops_q, 95))},
        "ms_per_query_at_max_steps": {"mean": float(np.mean(ms_top)), "median": float(np.median(ms_top))},
        "ms_per_step": {"mean": float(np.mean(ms_top)) / top, "median": float(np.median(ms_top)) / top},
    }
    if compare:
        other = load_model(compare, graph=g)
        f_o, ms_o, paths_o = [], [], []
        for s, t in zip(srcs.tolist(), dsts.tolist()):
            t0 = time.perf_counter()
            last = list(other.refine(g, s, t, steps=32))[-1]
            ms_o.append((time.perf_counter() - t0) * 1000)
            paths_o.append(last)
            f_o.append(float(np.sum(other.step_flops(g, s, t, 32))))
        df_o = evaluate_paths(g, paths_o, srcs, dsts)
        out["compare"] = {"model": compare, "steps": 32,
                          "flops_per_query": {"mean": float(np.mean(f_o)), "median": float(np.median(f_o))},
                          "ms_per_query": {"mean": float(np.mean(ms_o)), "median": float(np.median(ms_o))},
                          "optimal_length": float(df_o["optimal_length"].mean()),
                          "length_ratio_mean": float(df_o.loc[df_o["valid"], "length_ratio"].mean())}
    return out


def plot_steps_vs_hops(report: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    rows = report["per_pair"]
    hops = np.array([p["hops"] for p in rows])
    first = np.array([np.nan if p["first_optimal_step"] is None else p["first_optimal_step"] for p in rows], float)
    fig = Figure(figsize=(6.5, 3.8))
    ax = fig.add_subplot()
    ok = np.isfinite(first)
    ax.scatter(hops[ok], first[ok], s=9, alpha=0.5, color="#1f6f8b", label="first step with an optimal route")
    if (~ok).any():
        ax.scatter(hops[~ok], np.full((~ok).sum(), 4 * report["max_steps"] + 2), s=12, marker="x", color="#c0392b",
                   label=f"not optimal within {4 * report['max_steps']} steps")
    ax.axhline(report["max_steps"], color="#888", lw=0.8, ls="--")
    ax.text(1, report["max_steps"] + 0.5, f"max steps ({report['max_steps']})", fontsize=8, color="#555")
    ax.set_xlabel("hops of the optimal (Dijkstra) route")
    ax.set_ylabel("steps (4 rounds each)")
    ax.set_title(f"{report['model']}: steps until the route is optimal, {report['pairs']} held-out pairs", fontsize=10)
    ax.legend(fontsize=8, loc="center left")
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.bellman_report", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="bellman-tiny")
    p.add_argument("--pairs", type=int, default=300)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--compare", default="gru-large", help="a model run best-of-32 on the same pairs ('' for none)")
    p.add_argument("--out", default="results/bellman-report.json")
    p.add_argument("--plot", default="docs/bellman-steps.png")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    g = load_graph(verbose=False)
    report = bellman_report(g, args.model, args.pairs, args.seed, args.compare or None)
    write_atomic(Path(args.out), json.dumps(report, indent=1) + "\n")
    plot_steps_vs_hops(report, Path(args.plot))
    summary = {k: v for k, v in report.items() if k not in ("per_pair",)}
    print(json.dumps(summary, indent=1))
    print(f"wrote {args.out} and {args.plot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
