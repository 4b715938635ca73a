"""The evaluation harness: one ruler for every model, on held-out pairs, at several step counts.

A model is run only through the routing protocol (`load_model(name).refine(g, src, dst,
steps=K)`), never through its family's internals. Each pair is asked for max(steps) steps
once; the answer at k steps is the k-th path yielded, timed from the call to that yield. Per
model and step count the harness reports path quality (metrics of `citypath.metrics`),
wall-clock and single-thread CPU time and the models' FLOPs counts, with 95% intervals (Wilson
for rates, bootstrap over pairs for the rest), and keeps every pair's record so that two models
can be compared pair by pair later (`paired_bootstrap`, `learned_gain`). Results go to a JSON
file (schema in docs/evaluation.md) that is merged, not overwritten: re-running it for one
model keeps the other models' entries.

    python -m citypath evaluate --models gru-small,gru-large --steps 1,2,4,8,16,32 --pairs 1000
    results = load_results("results/eval.json")       # what the app reads
    learned_gain(results, "gnn-small", "gru-small")["verdict"]
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import shlex
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from filelock import FileLock
from tqdm.auto import tqdm

from citypath.cache import write_atomic
from citypath.graph import CityGraph
from citypath.metrics import METRICS, evaluate_paths
from citypath.models.base import RoutingModel
from citypath.split import sample_pairs

SCHEMA_VERSION = 2

# Every yes/no metric of the metric table (`citypath.metrics.METRICS`), summarised as the share of pairs where it holds.
FLAGS = tuple(name for name, m in METRICS.items() if m.kind == "flag")
# Shares of pairs (the flags, and the post's checks on top of them): Wilson score intervals (never zero-width at
# 0% or 100%).
RATES = (*FLAGS, "illegal_jump_rate", "passes_three_checks")
# The length ratio charged to a failed (not valid) route in `length_ratio_all_*`: a stated, conservative
# penalty (twice the optimal length, worse than almost any valid route), so that a model cannot look
# short by failing its hard pairs. Valid routes keep their own ratio, even above the cap.
FAILED_RATIO_CAP = 2.0


def statistic_names() -> dict[str, str]:
    """How the summary statistics `summarise` writes read, for a chart's axis or a picker: each flag's share of
    pairs from the metric table, then the statistics over a distribution or over several metrics."""
    def share(name: str) -> str:
        m = METRICS[name]
        return f"{m.label.lower()} (share of pairs, {m.better} is better)" if m.better else f"{m.label.lower()} (share)"

    return {
        **{name: share(name) for name in FLAGS},
        "length_ratio_mean": "mean length vs optimal (×, lower is better)",
        "length_ratio_all_mean": f"mean length vs optimal over all pairs, a failed route as {FAILED_RATIO_CAP:g}× "
                                 "(lower is better)",
        "length_ratio_coverage": "share of pairs the valid-route length ratios are over",
        "length_ratio_p95": "95th percentile length vs optimal (×, lower is better)",
        "illegal_jump_rate": "paths with an illegal jump (share, lower is better)",
        "flops_total": "compute per query (operations, one convention for every row)",
        "ms_total_mean": "measured wall time per query (ms)",
        "cpu_ms_total_mean": "measured CPU time per query, one thread (ms)",
        "steps": "refinement steps",
    }


def sample_heldout_pairs(g: CityGraph, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` distinct-city held-out (src, dst) pairs of `g`, drawn uniformly and deterministically from `seed`."""
    return sample_pairs(g.n_cities, n, np.random.default_rng([seed, 0x5E1D]), heldout=True, batch=max(1024, 40 * n))


def sample_train_pairs(g: CityGraph, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` pairs of `g` that are not held out (training or validation pairs, the training side as it was before
    the validation split; the same pairs as then). For choices, prefer `sample_validation_pairs`."""
    return sample_pairs(g.n_cities, n, np.random.default_rng([seed, 0x7A1D]), heldout=False, batch=max(1024, 2 * n))


def sample_validation_pairs(g: CityGraph, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` distinct-city validation pairs of `g` (`citypath.split.is_validation`), drawn uniformly and
    deterministically from `seed`: for choosing checkpoints and settings without looking at test pairs."""
    return sample_pairs(g.n_cities, n, np.random.default_rng([seed, 0x7A11D]), split="validation",
                        batch=max(1024, 40 * n))


def wilson_interval(k: int, n: int, z: float = 1.96) -> list[float] | None:
    """Wilson score interval of a share `k`/`n` (95% at z=1.96); None if n == 0.

    Unlike a percentile bootstrap it is never zero-width at 0% or 100%:
    `wilson_interval(200, 200)` -> [0.981, 1.0] (a percentile bootstrap: [1.0, 1.0]).
    """
    if n <= 0:
        return None
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return [float(max(0.0, centre - half)) if k > 0 else 0.0, float(min(1.0, centre + half)) if k < n else 1.0]


def poisson_mean_interval(count: int, n: int) -> list[float] | None:
    """Exact (Garwood) 95% interval of a mean count per pair from `count` events over `n` pairs: never zero-width,
    so 0 illegal jumps on 500 pairs reads 0 [0, 0.0074] per pair.

        >>> [round(x, 4) for x in poisson_mean_interval(0, 500)]
        [0.0, 0.0074]
    """
    from scipy.stats import chi2

    if n <= 0:
        return None
    lo = 0.0 if count == 0 else float(chi2.ppf(0.025, 2 * count)) / 2
    return [lo / n, float(chi2.ppf(0.975, 2 * count + 2)) / 2 / n]


def _bootstrap(values: np.ndarray, mask: np.ndarray | None, stat: str, idx: np.ndarray) -> list[float] | None:
    """95% percentile interval of a statistic over pair resamples `idx` (B, n)."""
    if idx.size == 0:
        return None
    x = values[idx].astype(np.float64)
    if mask is not None:
        x = np.where(mask[idx], x, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"), _quiet():
        if stat == "mean":
            s = np.nanmean(x, axis=1)
        elif stat == "median":
            s = np.nanmedian(x, axis=1)
        else:
            s = np.nanpercentile(x, 95, axis=1)
    s = s[np.isfinite(s)]
    if not len(s):
        return None
    return [float(np.percentile(s, 2.5)), float(np.percentile(s, 97.5))]


def _quiet() -> warnings.catch_warnings:
    """Silence numpy's all-NaN-slice warnings (a resample may have no valid path)."""
    return warnings.catch_warnings(action="ignore", category=RuntimeWarning)


def summarise(df: pd.DataFrame, ms: np.ndarray, steps: int, flops: np.ndarray, *, cpu_ms: np.ndarray | None = None,
              bootstrap: int = 1000, seed: int = 0) -> dict:
    """One model at one step count: metric values and their 95% intervals.

    `flops` holds, per pair, the FLOPs of the first `steps` steps together (what they processed);
    `ms` and `cpu_ms` the wall-clock and calling-thread CPU time to the step-`steps` answer.
    Rates get Wilson intervals (always, they cost nothing); the other statistics a percentile
    bootstrap over pairs with `bootstrap` resamples (none if 0).
    """
    n = len(df)
    valid = df["valid"].to_numpy(bool)
    ratio = df["length_ratio"].to_numpy(np.float64)
    ratio_all = np.where(valid, ratio, FAILED_RATIO_CAP)
    cpu_ms = np.full(n, np.nan) if cpu_ms is None else np.asarray(cpu_ms, np.float64)
    columns = {name: df[name].to_numpy(np.float64) for name in FLAGS} | {
        "illegal_jump_rate": (df["illegal_jumps"] > 0).to_numpy(np.float64),
        "illegal_jumps_mean": df["illegal_jumps"].to_numpy(np.float64),
        "passes_three_checks": df["passes_three_checks"].to_numpy(np.float64),
    }
    out: dict = {k: float(v.mean()) for k, v in columns.items()}
    # Illegal hops as a rate over all hops (as the training curves count it), so it gets a Wilson interval.
    hops_total, jumps_total = int(df["hops"].sum()), int(df["illegal_jumps"].sum())
    out["illegal_hop_rate"] = jumps_total / hops_total if hops_total else 0.0
    with _quiet():
        out.update({
            "length_ratio_all_mean": float(ratio_all.mean()) if n else None,   # failed routes at FAILED_RATIO_CAP
            "length_ratio_coverage": float(valid.mean()) if n else None,      # share of pairs the next three cover
            "length_ratio_mean": float(ratio[valid].mean()) if valid.any() else None,
            "length_ratio_median": float(np.median(ratio[valid])) if valid.any() else None,
            "length_ratio_p95": float(np.percentile(ratio[valid], 95)) if valid.any() else None,
            "frechet_km_mean": float(np.nanmean(df["frechet_km"])) if n else None,
            "frechet_km_median": float(np.nanmedian(df["frechet_km"])) if n else None,
            "hops_mean": float(df["hops"].mean()),
        })
    has_cpu = bool(np.isfinite(cpu_ms).any())
    out.update({
        "ms_total_mean": float(ms.mean()),
        "ms_per_step": float(ms.mean() / steps),
        "cpu_ms_total_mean": float(np.nanmean(cpu_ms)) if has_cpu else None,
        "cpu_ms_per_step": float(np.nanmean(cpu_ms) / steps) if has_cpu else None,
        "flops_per_step": float(np.nanmean(flops) / steps) if np.isfinite(flops).any() else None,
        "flops_total": float(np.nanmean(flops)) if np.isfinite(flops).any() else None,
        "n": int(n),
        "n_valid": int(valid.sum()),
    })
    ci = {k: wilson_interval(int(round(columns[k].sum())), n) for k in RATES}
    ci["illegal_hop_rate"] = wilson_interval(jumps_total, hops_total)
    ci["illegal_jumps_mean"] = poisson_mean_interval(jumps_total, n)
    if bootstrap and n:
        idx = np.random.default_rng([seed, steps, 0xB007]).integers(0, n, size=(bootstrap, n))
        ci["length_ratio_all_mean"] = _bootstrap(ratio_all, None, "mean", idx)
        ci["length_ratio_mean"] = _bootstrap(ratio, valid, "mean", idx)
        ci["length_ratio_median"] = _bootstrap(ratio, valid, "median", idx)
        ci["length_ratio_p95"] = _bootstrap(ratio, valid, "p95", idx)
        ci["frechet_km_mean"] = _bootstrap(df["frechet_km"].to_numpy(np.float64), None, "mean", idx)
        ci["ms_per_step"] = _bootstrap(ms / steps, None, "mean", idx)
        if has_cpu:
            ci["cpu_ms_per_step"] = _bootstrap(cpu_ms / steps, None, "mean", idx)
    out["ci95"] = ci
    return out


def per_pair_record(df: pd.DataFrame, ms: np.ndarray, cpu_ms: np.ndarray, flops: np.ndarray) -> dict:
    """Every pair's outcome at one step count, in pair order, as compact JSON lists.

    `valid` 0/1, `length_ratio` (7 significant digits; null where the route is not valid), wall
    `ms` and thread `cpu_ms` to the answer (0.01 ms), `flops` (4 significant digits; null if not counted).
    """
    valid = df["valid"].to_numpy(bool)
    ratio = df["length_ratio"].to_numpy(np.float64)
    return {
        "valid": [int(v) for v in valid],
        "length_ratio": [_significant(r, 7) if v else None for r, v in zip(ratio, valid)],
        "ms": [_rounded(x, 2) for x in ms],
        "cpu_ms": [_rounded(x, 2) for x in cpu_ms],
        "flops": [_significant(x, 4) for x in flops],
    }


def _significant(x: float, digits: int) -> float | int | None:
    if not np.isfinite(x):
        return None
    r = float(f"{x:.{digits}g}")
    return int(r) if r.is_integer() and abs(r) < 2**53 and abs(r) >= 10**digits else r


def _rounded(x: float, decimals: int) -> float | None:
    return round(float(x), decimals) if np.isfinite(x) else None


# -- comparing two models on the same pairs ------------------------------------------------------

PAIRED_METRICS = ("valid", "length_ratio_all", "length_ratio")
# Which way is better for each paired metric: +1 higher, -1 lower.
_BETTER = {"valid": 1, "length_ratio_all": -1, "length_ratio": -1}


def _per_pair(entry: dict, steps: int | str) -> dict:
    records = entry.get("per_pair") if isinstance(entry, dict) else None
    if not isinstance(records, dict) or str(steps) not in records:
        raise ResultsError(f"no per-pair records at {steps} steps in this entry (schema_version "
                           f"{SCHEMA_VERSION} entries have them for every step count evaluated)")
    return records[str(steps)]


def paired_bootstrap(a: dict, b: dict, steps: int | str, metric: str, *, resamples: int = 2000,
                     seed: int = 0) -> dict:
    """Mean difference a - b of `metric` over the same pairs, with a 95% paired bootstrap interval.

    `a` and `b` are two model entries of one results file (the same pairs, in the same order).
    Pairs are resampled jointly, so what both models find hard cancels. `metric` is "valid" (a
    rate), "length_ratio_all" (failed routes at FAILED_RATIO_CAP) or "length_ratio" (only the
    pairs valid in both; `pairs` says how many).

        paired_bootstrap(r["models"]["gnn-small"], r["models"]["gru-small"], 1, "valid")["ci95"]
    """
    if metric not in PAIRED_METRICS:
        raise ValueError(f"metric={metric!r}: one of {', '.join(PAIRED_METRICS)}")
    ra, rb = _per_pair(a, steps), _per_pair(b, steps)
    if len(ra["valid"]) != len(rb["valid"]) or a.get("pairs") != b.get("pairs") or a.get("seed") != b.get("seed"):
        raise ResultsError(f"the two entries were not scored on the same pairs ({a.get('pairs')} pairs, seed "
                           f"{a.get('seed')} against {b.get('pairs')} pairs, seed {b.get('seed')})")

    def values(r: dict) -> np.ndarray:
        valid = np.asarray(r["valid"], bool)
        ratio = np.array([np.nan if x is None else x for x in r["length_ratio"]], np.float64)
        if metric == "valid":
            return valid.astype(np.float64)
        return np.where(valid, ratio, FAILED_RATIO_CAP if metric == "length_ratio_all" else np.nan)

    xa, xb = values(ra), values(rb)
    keep = np.isfinite(xa) & np.isfinite(xb)
    xa, xb = xa[keep], xb[keep]
    out = {"metric": metric, "steps": int(steps), "pairs": int(keep.sum()), "resamples": int(resamples),
           "a_mean": None, "b_mean": None, "difference": None, "ci95": None}
    if not len(xa):
        return out
    diff = xa - xb
    out.update(a_mean=float(xa.mean()), b_mean=float(xb.mean()), difference=float(diff.mean()))
    if resamples:
        idx = np.random.default_rng([seed, int(steps), 0x9A1D]).integers(0, len(diff), size=(resamples, len(diff)))
        means = diff[idx].mean(axis=1)
        out["ci95"] = [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]
    return out


def learned_gain(results: dict, model: str, control: str, steps: Sequence[int] | None = None, *,
                 resamples: int = 2000, seed: int = 0) -> dict:
    """Does `model` beat `control` on the same pairs? Paired differences (model - control) of
    PAIRED_METRICS at every step count both were evaluated at (or those of `steps`), and a verdict:
    "none measurable" when every 95% interval includes 0, else which way and where.

        learned_gain(load_results(), "gnn-small", "gru-small")["verdict"]
    """
    try:
        a, b = results["models"][model], results["models"][control]
    except KeyError as e:
        raise ResultsError(f"no entry for {e.args[0]!r} in these results") from None
    common = sorted(set(a.get("per_pair") or {}) & set(b.get("per_pair") or {}), key=int)
    if steps is not None:
        common = [k for k in common if int(k) in {int(s) for s in steps}]
    by_steps, better, worse = {}, {}, {}   # metric -> the step counts where its interval excludes 0
    for k in common:
        row = {m: paired_bootstrap(a, b, k, m, resamples=resamples, seed=seed) for m in PAIRED_METRICS}
        here_better, here_worse = [], []
        for m, d in row.items():
            lo, hi = d["ci95"] or (0.0, 0.0)
            if lo > 0 or hi < 0:
                (here_better if (1 if lo > 0 else -1) == _BETTER[m] else here_worse).append(m)
        for m in here_better:
            better.setdefault(m, []).append(k)
        for m in here_worse:
            worse.setdefault(m, []).append(k)
        row["verdict"] = _verdict(model, control, here_better, here_worse)
        by_steps[k] = row
    overall = _verdict(model, control, [f"{m} at {'/'.join(s)} steps" for m, s in better.items()],
                       [f"{m} at {'/'.join(s)} steps" for m, s in worse.items()])
    return {"model": model, "control": control, "steps": [int(k) for k in common], "by_steps": by_steps,
            "verdict": overall}


def _verdict(model: str, control: str, better: list[str], worse: list[str]) -> str:
    """"none measurable", or which way the intervals that exclude 0 point."""
    if not better and not worse:
        return "none measurable"
    parts = ([f"{model} better than {control} ({', '.join(better)})"] if better else []) + \
            ([f"{model} worse than {control} ({', '.join(worse)})"] if worse else [])
    return ("mixed: " if better and worse else "") + "; ".join(parts)


def evaluate_model(model: RoutingModel, g: CityGraph, srcs: Sequence[int], dsts: Sequence[int],
                   steps: Sequence[int] = (1, 2, 4, 8, 16, 32), *, seed: int = 0, bootstrap: int = 1000,
                   progress: bool = True) -> dict:
    """Run `model` on every pair for max(steps) steps and summarise each requested step count.

    Uses only the protocol: refine_with_compute() (refine's paths with each step's FLOPs, one run),
    path_nll(), name, family, num_parameters. Beside the summaries (`by_steps`) the entry keeps
    every pair's record (`per_pair`, see `per_pair_record`) for paired comparisons later.
    Times run from the `refine` call to the k-th yield: wall clock (`ms`) and the calling thread's
    CPU time (`cpu_ms`, `time.thread_time`: work in other threads is not counted).
    Language-model families also get `nll_per_city`: the mean NLL per predicted city of the pairs'
    optimal paths (teacher forced), the number the post reports.
    """
    steps = sorted({int(k) for k in steps})
    if not steps or steps[0] < 1:
        raise ValueError(f"steps={steps}: step counts must be positive")
    top = steps[-1]
    model.check_graph(g)
    n = len(srcs)
    paths = {k: [] for k in steps}
    ms = {k: np.zeros(n) for k in steps}
    cpu_ms = {k: np.zeros(n) for k in steps}
    flops = np.full((n, top), np.nan)   # per pair, FLOPs of each step (families report what each step processed)
    bar = tqdm(total=n, desc=f"evaluate {model.name}", unit="pair", disable=not progress, dynamic_ncols=True)
    for i, (s, t) in enumerate(zip(srcs, dsts)):
        s, t = int(s), int(t)
        t0, cpu0 = time.perf_counter(), time.thread_time()
        got = 0
        for k, (path, f) in enumerate(model.refine_with_compute(g, s, t, steps=top, seed=seed), start=1):
            got = k
            if k <= top:
                flops[i, k - 1] = f
            if k in paths:
                ms[k][i] = (time.perf_counter() - t0) * 1000
                cpu_ms[k][i] = (time.thread_time() - cpu0) * 1000
                paths[k].append(list(path))
        if got != top:
            raise RuntimeError(f"model {model.name!r} yielded {got} paths for steps={top} on pair ({s}, {t}); "
                               "the protocol requires exactly `steps`")
        bar.update(1)
    bar.close()
    # One evaluate_paths call, pair-major, so each source's Dijkstra is computed once (LRU-cached).
    order = [(k, i) for i in range(n) for k in steps]
    df_all = evaluate_paths(g, [paths[k][i] for k, i in order], [int(srcs[i]) for _, i in order],
                            [int(dsts[i]) for _, i in order])
    df_all["steps"] = [k for k, _ in order]
    by_steps, per_pair = {}, {}
    for k in steps:
        df = df_all[df_all["steps"] == k].reset_index(drop=True)
        flops_k = flops[:, :k].sum(axis=1)
        by_steps[str(k)] = summarise(df, ms[k], k, flops_k, cpu_ms=cpu_ms[k], bootstrap=bootstrap, seed=seed)
        per_pair[str(k)] = per_pair_record(df, ms[k], cpu_ms[k], flops_k)
    weights_sha = model.card.get("weights_sha256") if isinstance(model.card, dict) else None
    extra = {}
    optimal = [g.shortest_path(int(s), int(t)) for s, t in zip(srcs, dsts)]
    scored = [(p, model.path_nll(g, p)) for p in optimal[:1] if len(p) > 1]
    if scored and scored[0][1] is not None:   # a language-model family: NLL per predicted city, token-weighted
        scored += [(p, model.path_nll(g, p)) for p in optimal[1:] if len(p) > 1]
        cities = np.array([len(p) - 1 for p, _ in scored], dtype=np.float64)
        extra = {"nll_per_city": float(np.dot(cities, [v for _, v in scored]) / cities.sum()),
                 "nll_pairs": len(scored)}
    card = model.card if isinstance(model.card, dict) else {}
    # What decides the route: a row with nothing learned (a classical algorithm, a scaffold control), and which
    # model a control stands beside (learned gain = that model against this row, on the same pairs).
    extra |= {"learned": bool(card.get("learned", True)), "control_of": card.get("control_of"),
              "about": card.get("about")}
    return {**extra,
        "family": model.family, "num_parameters": model.num_parameters, "max_steps": model.max_steps,
        "weights_sha256": weights_sha, "pairs": n, "seed": seed, "steps": steps,
        "evaluated_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "by_steps": by_steps, "per_pair": per_pair,
    }


# -- the results file ---------------------------------------------------------------------------

class ResultsError(ValueError):
    """A results file that cannot be read, or does not fit the evaluation being merged into it."""


def load_results(path: str | Path = "results/eval.json") -> dict:
    """The harness's results (schema in docs/evaluation.md), or ResultsError naming the file."""
    path = Path(path)
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ResultsError(f"results file {path} cannot be read: {e}") from e
    if not isinstance(results, dict) or not isinstance(results.get("models"), dict):
        raise ResultsError(f"results file {path} is not a citypath results file")
    if results.get("schema_version") != SCHEMA_VERSION:
        raise ResultsError(f"results file {path} has schema_version {results.get('schema_version')}; this citypath "
                           f"reads {SCHEMA_VERSION}: evaluate again with `python -m citypath evaluate`")
    return results


def merge_results(path: Path, g: CityGraph, pairs: dict, models: dict[str, dict]) -> dict:
    """Add `models` to the results at `path` (creating it); entries of other models are kept.

    Refuses to mix graphs or pair samples in one file: compare models on the same pairs.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # Several sessions may merge into one file at once: read-modify-write under an exclusive lock.
    with FileLock(path.with_name(f".{path.name}.lock")):
        return _merge_locked(path, g, pairs, models)


def _merge_locked(path: Path, g: CityGraph, pairs: dict, models: dict[str, dict]) -> dict:
    base = {"schema_version": SCHEMA_VERSION,
            "graph": {"fingerprint": g.fingerprint, "config": dataclasses.asdict(g.config)},
            "pairs": pairs, "models": {}}
    if path.exists():
        old = load_results(path)
        if old["graph"]["fingerprint"] != g.fingerprint:
            raise ResultsError(f"{path} holds results on another graph ({old['graph']['config']}); "
                               "write to another --out")
        if old.get("pairs") != pairs:
            raise ResultsError(f"{path} holds results on other pairs ({old.get('pairs')}, here {pairs}); "
                               "evaluate with the same --pairs/--seed or write to another --out")
        base["models"] = old["models"]
    base["models"].update(models)
    base["models"] = dict(sorted(base["models"].items()))
    write_atomic(path, _results_json(base) + "\n")
    return base


def _results_json(obj, indent: int = 0) -> str:
    """JSON indented like `json.dumps(indent=1)`, but a list of numbers stays on one line (per-pair records)."""
    pad = " " * (indent + 1)
    if isinstance(obj, dict) and obj:
        items = (f"{pad}{json.dumps(str(k))}: {_results_json(v, indent + 1)}" for k, v in obj.items())
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    if isinstance(obj, (list, tuple)) and any(isinstance(v, (dict, list, tuple)) for v in obj):
        return "[\n" + ",\n".join(pad + _results_json(v, indent + 1) for v in obj) + "\n" + " " * indent + "]"
    return json.dumps(obj, separators=(",", ":"))


def main(args) -> int:
    """`python -m citypath evaluate ...`."""
    import torch

    from citypath.graph import load_graph
    from citypath.models import load_model

    # One thread: on a shared 2-core machine a second OpenMP thread spin-waits and slows everyone.
    torch.set_num_threads(args.threads or 1)
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    steps = [int(k) for k in args.steps.split(",") if k.strip()]
    g = load_graph(args.radius_km, args.min_population, args.states, verbose=False)
    models = [load_model(name, directory=args.checkpoints, graph=g) for name in names]
    split = getattr(args, "split", "heldout")
    sample, out, label = {"heldout": (sample_heldout_pairs, "results/eval.json", "held-out"),
                          "train": (sample_train_pairs, "results/eval-train.json", "training-split"),
                          "validation": (sample_validation_pairs, "results/eval-validation.json", "validation")}[split]
    srcs, dsts = sample(g, args.pairs, seed=args.seed)
    pairs = {"n": int(args.pairs), "seed": int(args.seed), "heldout": split == "heldout"}
    if split == "validation":   # the held-out and train samples keep the record their files were written with
        pairs["split"] = split
    out = args.out or out
    entries = {}
    for m in models:
        entries[m.name] = evaluate_model(m, g, srcs, dsts, steps, seed=args.seed, bootstrap=args.bootstrap,
                                         progress=not args.no_progress)
        entries[m.name]["command"] = "python -m citypath " + shlex.join(sys.argv[1:])   # what made this entry
        _print_summary(m.name, entries[m.name], label)
    merge_results(Path(out), g, pairs, entries)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _print_summary(name: str, entry: dict, split: str = "held-out") -> None:
    print(f"\n{name} ({entry['num_parameters']:,} parameters, {entry['pairs']} {split} pairs)")
    print(f"{'steps':>5} {'valid':>6} {'reach':>6} {'illegal':>7} {'exact':>6} {'ratio':>6} {'median':>6} "
          f"{'p95':>6} {'frechet':>8} {'ms/step':>8}")
    for k, m in entry["by_steps"].items():
        fmt = lambda v, spec: format(v, spec) if v is not None else "-"
        print(f"{k:>5} {m['valid']:6.3f} {m['reaches_target']:6.3f} {m['illegal_jump_rate']:7.3f} "
              f"{m['exact_match']:6.3f} {fmt(m['length_ratio_mean'], '6.3f')} {fmt(m['length_ratio_median'], '6.3f')} "
              f"{fmt(m['length_ratio_p95'], '6.3f')} {fmt(m['frechet_km_mean'], '8.1f')} {m['ms_per_step']:8.1f}")
