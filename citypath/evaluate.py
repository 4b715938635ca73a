"""The evaluation harness: one ruler for every model, on held-out pairs, at several step counts.

A model is run only through the routing protocol (`load_model(name).refine(g, src, dst,
steps=K)`), never through its family's internals. Each pair is asked for max(steps) steps
once; the answer at k steps is the k-th path yielded, timed from the call to that yield. Per
model and step count the harness reports path quality (metrics of `citypath.metrics`),
wall-clock and estimated FLOPs, with bootstrap 95% intervals over pairs. Results go to a
JSON file (schema in docs/evaluation.md) that is merged, not overwritten: re-running it for
one model keeps the other models' entries.

    python -m citypath evaluate --models gru-small,gru-large --steps 1,2,4,8,16,32 --pairs 1000
    results = load_results("results/eval.json")       # what the app reads
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
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
from citypath.metrics import evaluate_paths
from citypath.models.base import RoutingModel
from citypath.split import sample_pairs

SCHEMA_VERSION = 1


def sample_heldout_pairs(g: CityGraph, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` distinct-city held-out (src, dst) pairs of `g`, drawn uniformly and deterministically from `seed`."""
    return sample_pairs(g.n_cities, n, np.random.default_rng([seed, 0x5E1D]), heldout=True, batch=max(1024, 40 * n))


def sample_train_pairs(g: CityGraph, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` training-split pairs of `g` (never held out), for choices that must not look at held-out pairs."""
    return sample_pairs(g.n_cities, n, np.random.default_rng([seed, 0x7A1D]), heldout=False, batch=max(1024, 2 * n))


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


def summarise(df: pd.DataFrame, ms: np.ndarray, steps: int, flops: np.ndarray, *, bootstrap: int = 1000,
              seed: int = 0) -> dict:
    """One model at one step count: metric values and their bootstrap 95% intervals.

    `flops` holds, per pair, the FLOPs of the first `steps` steps together (what they processed).
    """
    valid = df["valid"].to_numpy(bool)
    ratio = df["length_ratio"].to_numpy(np.float64)
    columns = {
        "valid": df["valid"].to_numpy(np.float64),
        "reaches_target": df["reaches_target"].to_numpy(np.float64),
        "starts_at_source": df["starts_at_source"].to_numpy(np.float64),
        "illegal_jump_rate": (df["illegal_jumps"] > 0).to_numpy(np.float64),
        "illegal_jumps_mean": df["illegal_jumps"].to_numpy(np.float64),
        "exact_match": df["exact_match"].to_numpy(np.float64),
        "optimal_length": df["optimal_length"].to_numpy(np.float64),
        "illegal_hop_rate": np.where(df["hops"] > 0, df["illegal_jumps"] / df["hops"].clip(lower=1), 0.0),
        "passes_three_checks": (df["bounded"] & (df["illegal_jumps"] == 0)).to_numpy(np.float64),
        "bounded": df["bounded"].to_numpy(np.float64),
    }
    out: dict = {k: float(v.mean()) for k, v in columns.items()}
    with _quiet():
        out.update({
            "length_ratio_mean": float(ratio[valid].mean()) if valid.any() else None,
            "length_ratio_median": float(np.median(ratio[valid])) if valid.any() else None,
            "length_ratio_p95": float(np.percentile(ratio[valid], 95)) if valid.any() else None,
            "frechet_km_mean": float(np.nanmean(df["frechet_km"])) if len(df) else None,
            "frechet_km_median": float(np.nanmedian(df["frechet_km"])) if len(df) else None,
            "hops_mean": float(df["hops"].mean()),
        })
    out.update({
        "ms_total_mean": float(ms.mean()),
        "ms_per_step": float(ms.mean() / steps),
        "flops_per_step": float(np.nanmean(flops) / steps) if np.isfinite(flops).any() else None,
        "flops_total": float(np.nanmean(flops)) if np.isfinite(flops).any() else None,
        "n": int(len(df)),
        "n_valid": int(valid.sum()),
    })
    rng = np.random.default_rng([seed, steps, 0xB007])
    idx = rng.integers(0, len(df), size=(bootstrap, len(df))) if bootstrap and len(df) else np.zeros((0, 0), int)
    ci = {k: _bootstrap(v, None, "mean", idx) for k, v in columns.items()}
    ci["length_ratio_mean"] = _bootstrap(ratio, valid, "mean", idx)
    ci["length_ratio_median"] = _bootstrap(ratio, valid, "median", idx)
    ci["length_ratio_p95"] = _bootstrap(ratio, valid, "p95", idx)
    ci["frechet_km_mean"] = _bootstrap(df["frechet_km"].to_numpy(np.float64), None, "mean", idx)
    ci["ms_per_step"] = _bootstrap(ms / steps, None, "mean", idx)
    out["ci95"] = ci if bootstrap else {}
    return out


def evaluate_model(model: RoutingModel, g: CityGraph, srcs: Sequence[int], dsts: Sequence[int],
                   steps: Sequence[int] = (1, 2, 4, 8, 16, 32), *, seed: int = 0, bootstrap: int = 1000,
                   progress: bool = True) -> dict:
    """Run `model` on every pair for max(steps) steps and summarise each requested step count.

    Uses only the protocol: refine_with_compute() (refine's paths with each step's FLOPs, one run),
    path_nll(), name, family, num_parameters.
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
    flops = np.full((n, top), np.nan)   # per pair, FLOPs of each step (families report what each step processed)
    bar = tqdm(total=n, desc=f"evaluate {model.name}", unit="pair", disable=not progress, dynamic_ncols=True)
    for i, (s, t) in enumerate(zip(srcs, dsts)):
        s, t = int(s), int(t)
        t0 = time.perf_counter()
        got = 0
        for k, (path, f) in enumerate(model.refine_with_compute(g, s, t, steps=top, seed=seed), start=1):
            got = k
            if k <= top:
                flops[i, k - 1] = f
            if k in paths:
                ms[k][i] = (time.perf_counter() - t0) * 1000
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
    by_steps = {}
    for k in steps:
        df = df_all[df_all["steps"] == k].reset_index(drop=True)
        by_steps[str(k)] = summarise(df, ms[k], k, flops[:, :k].sum(axis=1), bootstrap=bootstrap, seed=seed)
    weights_sha = model.card.get("weights_sha256") if isinstance(model.card, dict) else None
    extra = {}
    optimal = [g.shortest_path(int(s), int(t)) for s, t in zip(srcs, dsts)]
    scored = [(p, model.path_nll(g, p)) for p in optimal[:1] if len(p) > 1]
    if scored and scored[0][1] is not None:   # a language-model family: NLL per predicted city, token-weighted
        scored += [(p, model.path_nll(g, p)) for p in optimal[1:] if len(p) > 1]
        cities = np.array([len(p) - 1 for p, _ in scored], dtype=np.float64)
        extra = {"nll_per_city": float(np.dot(cities, [v for _, v in scored]) / cities.sum()),
                 "nll_pairs": len(scored)}
    return {**extra,
        "family": model.family, "num_parameters": model.num_parameters, "max_steps": model.max_steps,
        "weights_sha256": weights_sha, "pairs": n, "seed": seed, "steps": steps,
        "evaluated_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "by_steps": by_steps,
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
    if not isinstance(results, dict) or results.get("schema_version") != SCHEMA_VERSION \
            or not isinstance(results.get("models"), dict):
        raise ResultsError(f"results file {path} is not a schema_version {SCHEMA_VERSION} citypath results file")
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
    write_atomic(path, json.dumps(base, indent=1) + "\n")
    return base


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
    heldout = getattr(args, "split", "heldout") != "train"
    sample = sample_heldout_pairs if heldout else sample_train_pairs
    srcs, dsts = sample(g, args.pairs, seed=args.seed)
    pairs = {"n": int(args.pairs), "seed": int(args.seed), "heldout": heldout}
    out = args.out or ("results/eval.json" if heldout else "results/eval-train.json")
    entries = {}
    for m in models:
        entries[m.name] = evaluate_model(m, g, srcs, dsts, steps, seed=args.seed, bootstrap=args.bootstrap,
                                         progress=not args.no_progress)
        _print_summary(m.name, entries[m.name], "held-out" if heldout else "training-split")
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
