"""Reports behind the docs' figures that the evaluation harness does not give by itself.

    python -m citypath.reports bellman --pairs 300          # results/bellman-report.json + docs/bellman-steps.png
    python -m citypath.reports postrnn                      # results/postrnn-report.json
    python -m citypath.reports pairs                        # results/interesting-pairs.json (the app's list)
    python -m citypath.reports looped                       # results/looped-report.json (vs gru-large)
    python -m citypath.reports looped-ablations             # results/looped-ablations.json (~25 min; validation pairs)
    python -m citypath.reports memory-controls              # results/memory-controls.json (validation pairs)
    python -m citypath.reports card-metrics --model NAME     # re-measure a card's metrics (weights unchanged)
    python -m citypath.reports control-weight               # results/memsearch-control-weight.json (validation)

`control-weight`: the w of memory-search's attribution control (its search with the learned rating replaced
by weighted A*'s -(g + w h)), chosen on validation pairs, never test pairs: the w whose all-pairs length ratio
(failed routes at the cap) at the most steps is lowest: the strongest hand-set rating for the answer the model
gives after thinking longest, so that what the learned rating adds is measured against the best the scaffold
does without it. (Larger w finds a route in fewer steps and stops at a longer one; the table keeps every w.)

`card-metrics`: the card's `metrics` measured again, as its training run measures them at its end (same
pairs, seed and steps), for when the inference of a family changed but its weights did not; the card
records the command.

`postrnn`: the post's RNNs' greedy routes on the harness's held-out pairs, by the optimal
path's hop count: where "low loss, broken routes" holds and where it does not.

`bellman`: what a trained bellman network learned, compared with Bellman-Ford's exact weights;
per held-out pair the first step whose route is optimal (against the optimal path's hop count);
where the routes that are not optimal at max steps lose their length (rounds, or near-ties
decided by the learned weights' precision); and its FLOPs and measured ms per query beside
`gru-large` best-of-32 on the same pairs, in one run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from citypath.cache import write_atomic
from citypath.evaluate import sample_heldout_pairs, sample_validation_pairs
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


def postrnn_report(g: CityGraph, names: list[str], n_pairs: int, seed: int) -> dict:
    """Where the post's finding holds: greedy routes of the post's RNNs by the optimal path's hop count."""
    srcs, dsts = sample_heldout_pairs(g, n_pairs, seed=seed)
    hops = np.array([len(g.shortest_path(int(s), int(t))) - 1 for s, t in zip(srcs, dsts)])
    buckets = ((1, 5), (6, 10), (11, 20), (21, 30), (31, 100))
    out = {"pairs": int(n_pairs), "seed": seed, "models": {}}
    for name in names:
        m = load_model(name, graph=g)
        paths = [list(m.refine(g, int(s), int(t), steps=1))[0] for s, t in zip(srcs, dsts)]
        df = evaluate_paths(g, paths, srcs, dsts)
        passes = (df["bounded"] & (df["illegal_jumps"] == 0)).to_numpy()
        rows = {}
        for lo, hi in buckets:
            sel = (hops >= lo) & (hops <= hi)
            if sel.any():
                d = df[sel]
                rows[f"{lo}-{hi}"] = {"pairs": int(sel.sum()), "reaches_target": float(d["reaches_target"].mean()),
                                      "passes_three_checks": float(passes[sel].mean()),
                                      "illegal_hop_rate": float(d["illegal_jumps"].sum()
                                                                / max(int(d["hops"].sum()), 1))}
        out["models"][name] = {
            "greedy_reaches_target": float(df["reaches_target"].mean()),
            "greedy_passes_three_checks": float(passes.mean()),
            "greedy_paths_with_an_illegal_jump": float((df["illegal_jumps"] > 0).mean()),
            "greedy_illegal_hop_rate": float(df["illegal_jumps"].sum() / max(int(df["hops"].sum()), 1)),
            "greedy_hops_mean": float(df["hops"].mean()), "optimal_hops_mean": float(hops.mean()),
            "by_optimal_hops": rows,
        }
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


# -- looped transformer against gru-large, side by side ------------------------------------------

def looped_report(g: CityGraph, name: str, n_pairs: int, seed: int, compare: str) -> dict:
    """Per held-out pair, in one run: the looped model's route, FLOPs and measured time at every step
    (with halting: steps actually thought), and `compare` best-of-32 (FLOPs, ms); then the smallest
    step count K whose mean FLOPs per query are within the other's and whose mean length ratio is at
    least as good."""
    model, other = load_model(name, graph=g), load_model(compare, graph=g)
    srcs, dsts = sample_heldout_pairs(g, n_pairs, seed=seed)
    top = model.max_steps
    K = sorted({k for k in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32) if k <= top} | {top})
    lr, valid, cum_flops, step_ms, used, first_ms = [], [], [], [], [], []
    o_flops, o_ms, o_paths = [], [], []
    for s, t in zip(srcs.tolist(), dsts.tolist()):
        t0 = time.perf_counter()
        times, fl, paths = [], [], []
        for path, f in model.refine_with_compute(g, s, t, steps=top):
            times.append((time.perf_counter() - t0) * 1000)
            fl.append(f)
            paths.append(path)
        n_used = model.last_run_steps or 0
        used.append(n_used)
        first_ms.append(times[0])
        step_ms.append(times[max(n_used, 1) - 1] / max(n_used, 1))      # per step actually thought
        df = evaluate_paths(g, [paths[k - 1] for k in K], [s] * len(K), [t] * len(K))
        lr.append(np.where(df["valid"], df["length_ratio"], np.nan))
        valid.append(df["valid"].to_numpy())
        cum_flops.append(np.cumsum(fl)[np.array(K) - 1])
        t0 = time.perf_counter()
        o_paths.append(list(other.refine(g, s, t, steps=32))[-1])
        o_ms.append((time.perf_counter() - t0) * 1000)
        o_flops.append(float(np.sum(other.step_flops(g, s, t, 32))))
    lr, valid, cum_flops = np.array(lr), np.array(valid), np.array(cum_flops)
    df_o = evaluate_paths(g, o_paths, srcs, dsts)
    o_ratio = float(df_o.loc[df_o["valid"], "length_ratio"].mean())
    by_k = {str(k): {"length_ratio_mean": float(np.nanmean(lr[:, i])), "valid": float(valid[:, i].mean()),
                     "flops_per_query_mean": float(cum_flops[:, i].mean())} for i, k in enumerate(K)}
    wins = [k for k in K if by_k[str(k)]["flops_per_query_mean"] <= float(np.mean(o_flops))
            and by_k[str(k)]["length_ratio_mean"] <= o_ratio and by_k[str(k)]["valid"] >= df_o["valid"].mean()]
    used_a = np.array(used)
    return {
        "command": f"python -m citypath.reports looped --pairs {n_pairs} --seed {seed}",
        "model": name, "compare": compare, "pairs": int(n_pairs), "seed": seed, "max_steps": top, "by_steps": by_k,
        "steps_thought": {"mean": float(used_a.mean()), "median": float(np.median(used_a)),
                          "p95": float(np.percentile(used_a, 95)), "max": int(used_a.max()),
                          "share_halted_before_max": float(np.mean(used_a < top))},
        "ms_per_step_thought": {"mean": float(np.mean(step_ms)), "median": float(np.median(step_ms)),
                                "p90": float(np.percentile(step_ms, 90))},
        "ms_first_step": {"mean": float(np.mean(first_ms)), "median": float(np.median(first_ms))},
        "other": {"model": compare, "steps": 32, "length_ratio_mean": o_ratio, "valid": float(df_o["valid"].mean()),
                  "flops_per_query_mean": float(np.mean(o_flops)), "ms_per_query_mean": float(np.mean(o_ms)),
                  "ms_per_query_median": float(np.median(o_ms))},
        "smallest_k_at_equal_or_lower_compute_and_as_good": min(wins) if wins else None,
    }


# -- looped transformer ablations --------------------------------------------------------------

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
    out = {"command": f"python -m citypath.reports looped-ablations --pairs {n_pairs} --graphs {graphs}",
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


# -- card metrics -----------------------------------------------------------------------------

def refresh_card_metrics(g: CityGraph, name: str, directory: str | None = None) -> dict:
    """Measure card `name`'s metrics again as its training run did at its end; its weights are not touched."""
    from citypath.models import checkpoints_dir
    from citypath.models.base import write_card
    from citypath.training import card_metrics

    model = load_model(name, directory=directory, graph=g)
    card = dict(model.card)
    tc = card["training"]["train_config"]
    card["metrics"] = {**card_metrics(model, g, tc["card_pairs"], tc["seed"], tc["steps_for_card"]),
                       "command": f"python -m citypath.reports card-metrics --model {name}"}
    path = Path(directory or checkpoints_dir()) / f"{name}.json"
    write_card(path, card)
    print(f"wrote {path}: " + ", ".join(f"{k} steps: valid {v['valid']:.3f}, ratio {v['length_ratio_mean']:.4f}"
                                        for k, v in card["metrics"]["by_steps"].items()), file=sys.stderr)
    return card


# -- memory controls ------------------------------------------------------------------------

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
    out = {"command": f"python -m citypath.reports memory-controls --model {name} --pairs {n_pairs}", "model": name,
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


# -- interesting pairs ------------------------------------------------------------------------

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
    return {"command": f"python -m citypath.reports pairs --pairs {n_pairs} --seed {seed}", "models": names,
            "pairs": n_pairs, "seed": seed, "interesting": interesting_pairs(rows), "per_pair": rows}


def control_weight(g: CityGraph, name: str, weights: list[float], n_pairs: int, seed: int, steps: list[int]) -> dict:
    """Each w's control on the same validation pairs; the chosen w is the one with the lowest mean all-pairs ratio."""
    from citypath.evaluate import evaluate_model

    model = load_model(name, graph=g)
    srcs, dsts = sample_validation_pairs(g, n_pairs, seed=seed)
    runs = {}
    for w in weights:
        entry = evaluate_model(model.scaffold_control(w), g, srcs, dsts, steps, seed=seed, bootstrap=200)
        runs[f"{w:g}"] = {k: {m: v[m] for m in ("valid", "length_ratio_all_mean", "length_ratio_mean",
                                               "flops_total", "cpu_ms_total_mean")}
                          for k, v in entry["by_steps"].items()}
    top = str(max(steps))
    score = {w: run[top]["length_ratio_all_mean"] for w, run in runs.items()}
    mean = {w: float(np.mean([r["length_ratio_all_mean"] for r in run.values()])) for w, run in runs.items()}
    chosen = min(score, key=lambda w: (score[w], mean[w]))
    return {"command": f"python -m citypath.reports control-weight --model {name} --pairs {n_pairs} --seed {seed}",
            "model": name, "split": "validation", "pairs": n_pairs, "pair_seed": seed, "steps": steps,
            "criterion": f"lowest length_ratio_all_mean (failed routes at the cap) at {top} steps (the answer "
                         "after the most thinking), ties broken by its mean over the step counts",
            "score": score, "mean_over_steps": mean, "chosen_weight": float(chosen), "runs": runs}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m citypath.reports")
    sub = p.add_subparsers(dest="report", required=True)
    b = sub.add_parser("bellman", help="learned weights, steps to optimal vs hops, error sources, compute")
    b.add_argument("--model", default="bellman-tiny")
    b.add_argument("--pairs", type=int, default=300)
    b.add_argument("--seed", type=int, default=1)
    b.add_argument("--compare", default="gru-large", help="a model run best-of-32 on the same pairs ('' for none)")
    b.add_argument("--out", default="results/bellman-report.json")
    b.add_argument("--plot", default="docs/bellman-steps.png")
    r = sub.add_parser("postrnn", help="the post's RNNs' greedy routes by the optimal path's hop count")
    r.add_argument("--models", default="post-rnn-small,post-rnn-large")
    r.add_argument("--pairs", type=int, default=1000)
    r.add_argument("--seed", type=int, default=0, help="held-out pair seed (0: the pairs of results/eval.json)")
    r.add_argument("--out", default="results/postrnn-report.json")
    q = sub.add_parser("pairs", help="interesting held-out pairs for the app, from every shipped model's routes")
    q.add_argument("--models", default="", help="comma-separated (default: every shipped checkpoint)")
    q.add_argument("--pairs", type=int, default=60)
    q.add_argument("--seed", type=int, default=0, help="held-out pair seed (0: the first pairs of results/eval.json)")
    q.add_argument("--out", default="results/interesting-pairs.json")
    q.add_argument("--reuse", action="store_true", help="re-derive from the per-pair outcomes already in --out "
                                                         "(same models, pairs and seed) instead of running the models")
    lp = sub.add_parser("looped", help="the looped transformer against gru-large best-of-32, side by side")
    lp.add_argument("--model", default="looped-small")
    lp.add_argument("--compare", default="gru-large")
    lp.add_argument("--pairs", type=int, default=300)
    lp.add_argument("--seed", type=int, default=1, help="held-out pair seed (1: pairs apart from results/eval.json)")
    lp.add_argument("--out", default="results/looped-report.json")
    a = sub.add_parser("looped-ablations", help="train and evaluate the looped transformer's ablations")
    a.add_argument("--pairs", type=int, default=200)
    a.add_argument("--seed", type=int, default=0, help="validation pair seed")
    a.add_argument("--graphs", type=int, default=24_000, help="training budget of each run, in small graphs")
    a.add_argument("--runs", default="runs/looped-ablations", help="where the short runs' checkpoints go")
    a.add_argument("--only", default="", help="comma-separated tags (default: all)")
    a.add_argument("--out", default="results/looped-ablations.json")
    mc = sub.add_parser("memory-controls", help="a memory model's controls: M = 0, wiped halfway, 1 vs many steps")
    mc.add_argument("--model", default="memory-small")
    mc.add_argument("--pairs", type=int, default=200)
    mc.add_argument("--seed", type=int, default=0, help="validation pair seed")
    mc.add_argument("--runs", default="runs/memory-controls", help="where the M = 0 run's checkpoint goes")
    mc.add_argument("--train-m0", action="store_true", help="also train a walker without memory (same budget)")
    mc.add_argument("--out", default="results/memory-controls.json")
    cm = sub.add_parser("card-metrics", help="re-measure a checkpoint card's metrics (weights unchanged)")
    cm.add_argument("--model", required=True)
    cm.add_argument("--checkpoints", default=None, help="checkpoint directory (default: checkpoints/)")
    cw = sub.add_parser("control-weight", help="memory-search's control: w of -(g + w h), chosen on validation pairs")
    cw.add_argument("--model", default="memory-search")
    cw.add_argument("--weights", default="1,1.25,1.5,2,3,4,6,10")
    cw.add_argument("--pairs", type=int, default=200)
    cw.add_argument("--seed", type=int, default=0, help="validation pair seed")
    cw.add_argument("--steps", default="1,2,4,8,16,32,64")
    cw.add_argument("--out", default="results/memsearch-control-weight.json")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    g = load_graph(verbose=False)
    if args.report == "card-metrics":
        refresh_card_metrics(g, args.model, args.checkpoints)
        return 0
    if args.report == "control-weight":
        report = control_weight(g, args.model, [float(w) for w in args.weights.split(",")], args.pairs, args.seed,
                                [int(k) for k in args.steps.split(",")])
        write_atomic(Path(args.out), json.dumps(report, indent=1) + "\n")
        print(json.dumps(report["score"], indent=1), f"chosen w = {report['chosen_weight']:g}")
        return 0
    if args.report == "looped":
        report = looped_report(g, args.model, args.pairs, args.seed, args.compare)
        write_atomic(Path(args.out), json.dumps(report, indent=1) + "\n")
        print(json.dumps(report, indent=1))
        return 0
    if args.report == "memory-controls":
        report = memory_controls(g, args.model, args.pairs, args.seed, Path(args.runs), args.train_m0)
        write_atomic(Path(args.out), json.dumps(report, indent=1) + "\n")
        print(json.dumps({t: {k: (v.get("valid"), v.get("length_ratio_mean")) for k, v in r["by_steps"].items()}
                          for t, r in report["runs"].items()}, indent=1))
        return 0
    if args.report == "looped-ablations":
        report = looped_ablations(g, args.pairs, args.seed, args.graphs, Path(args.runs),
                                  [t for t in args.only.split(",") if t] or None)
        write_atomic(Path(args.out), json.dumps(report, indent=1) + "\n")
        print(json.dumps({t: {k: r["by_steps"][k].get("length_ratio_mean") for k in r["by_steps"]}
                          for t, r in report["runs"].items()}, indent=1))
        return 0
    if args.report == "pairs":
        from citypath.models import list_models

        names = [m for m in args.models.split(",") if m] or list_models()
        report = pairs_report(g, names, args.pairs, args.seed, Path(args.out) if args.reuse else None)
        write_atomic(Path(args.out), json.dumps(report, indent=1) + "\n")
        print(json.dumps(report["interesting"], indent=1))
        return 0
    if args.report == "postrnn":
        report = postrnn_report(g, [m for m in args.models.split(",") if m], args.pairs, args.seed)
        write_atomic(Path(args.out), json.dumps(report, indent=1) + "\n")
        print(json.dumps(report, indent=1))
        return 0
    report = bellman_report(g, args.model, args.pairs, args.seed, args.compare or None)
    write_atomic(Path(args.out), json.dumps(report, indent=1) + "\n")
    plot_steps_vs_hops(report, Path(args.plot))
    summary = {k: v for k, v in report.items() if k not in ("per_pair",)}
    print(json.dumps(summary, indent=1))
    print(f"wrote {args.out} and {args.plot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
