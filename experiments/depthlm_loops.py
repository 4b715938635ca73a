"""The post's first avenue measured: does a depth-recurrent LM over city tokens route better when it loops
longer, and is a loop worth more than a sample?

For each depth-recurrent LM (`depth-lm-*`) on the final harness's pairs (held-out test pairs, never read by
training, tuning or selection): per loop count r of its schedule, NLL per city on the optimal paths (teacher
forced, full softmax) and the greedy route's three checks, with the operations and single-thread CPU time of
that one decode. Beside them, best-of-N (greedy + N - 1 samples, the exact verifier choosing) for the post's
RNNs, the unlooped controls and the looped models at their training mean, with the cumulative operations of
the N decodes, so that loops and samples are compared at equal compute. Paired comparisons on the same pairs:
r_max against r = 1, 4x the training mean against the mean (overthinking), the looped model against its
unlooped control of equal parameters.

    python -m experiments.depthlm_loops --pairs 500 --seed 2        # writes results/depthlm-loops.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from citypath import cost
from citypath.cache import write_atomic
from citypath.evaluate import sample_heldout_pairs, wilson_interval
from citypath.graph import CityGraph, load_graph
from citypath.metrics import evaluate_paths
from citypath.models import list_models, load_model
from citypath.models.depthlm import decode
from citypath.models.postrnn import hop_cap

BEST_OF = (1, 2, 4, 8, 16, 32)
OUT = Path("results/depthlm-loops.json")


def passes(df) -> np.ndarray:
    """The post's three checks: no illegal jump, reaches the target, within the length bound."""
    return df["passes_three_checks"].to_numpy(bool)


def rate(x: np.ndarray) -> dict:
    k, n = int(np.sum(x)), len(x)
    return {"value": k / n if n else None, "ci95": wilson_interval(k, n)}


def paired(a: np.ndarray, b: np.ndarray, resamples: int = 2000, seed: int = 0) -> dict:
    """Mean of a - b over the same pairs with a 95% paired bootstrap interval; `significant` when it excludes 0."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    idx = np.random.default_rng(seed).integers(0, len(d), size=(resamples, len(d)))
    lo, hi = np.percentile(d[idx].mean(axis=1), [2.5, 97.5])
    return {"difference": float(d.mean()), "ci95": [float(lo), float(hi)], "significant": bool(lo > 0 or hi < 0)}


def nll_per_pair(model, g: CityGraph, optimal: list[list[int]], loops: int | None) -> np.ndarray:
    """Per pair, (summed NLL, predicted cities) of its optimal path (at `loops` loops; None: a model without)."""
    out = np.zeros((len(optimal), 2))
    for i, p in enumerate(optimal):
        nll = model.path_nll(g, p) if loops is None else model.path_nll(g, p, loops=loops)
        out[i] = (nll * (len(p) - 1), len(p) - 1)
    return out


def nll_summary(per_pair: np.ndarray, resamples: int = 1000, seed: int = 0) -> dict:
    """Token-weighted NLL per city with a bootstrap interval over pairs."""
    value = per_pair[:, 0].sum() / per_pair[:, 1].sum()
    idx = np.random.default_rng(seed).integers(0, len(per_pair), size=(resamples, len(per_pair)))
    boot = per_pair[idx, 0].sum(axis=1) / per_pair[idx, 1].sum(axis=1)
    return {"value": float(value), "ci95": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))]}


def run_steps(model, g: CityGraph, srcs, dsts, steps: int) -> tuple[list[list[list[int]]], np.ndarray, np.ndarray]:
    """Per pair the `steps` paths of refine_with_compute, each step's own operations, and CPU ms per step."""
    paths, ops, cpu = [], np.zeros((len(srcs), steps)), np.zeros((len(srcs), steps))
    for i, (s, t) in enumerate(tqdm(list(zip(srcs, dsts)), desc=model.name, unit="pair", file=sys.stderr)):
        row, c0 = [], time.thread_time()
        for k, (p, f) in enumerate(model.refine_with_compute(g, int(s), int(t), steps)):
            row.append(p)
            ops[i, k] = f
            c1 = time.thread_time()
            cpu[i, k], c0 = (c1 - c0) * 1000, c1
        paths.append(row)
    return paths, ops, cpu


def checks(g: CityGraph, paths: list[list[int]], srcs, dsts) -> dict:
    df = evaluate_paths(g, paths, srcs, dsts)
    hops = int(df["hops"].sum())
    return {"passes": passes(df), "valid": df["valid"].to_numpy(bool),
            "reaches": df["reaches_target"].to_numpy(bool),
            "illegal_hop_rate": {"value": float(df["illegal_jumps"].sum() / max(hops, 1)),
                                 "ci95": wilson_interval(int(df["illegal_jumps"].sum()), hops)}}


def batched_steps(model, g: CityGraph, srcs, dsts, chunk: int = 100
                  ) -> tuple[list[list[list[int]]], np.ndarray, np.ndarray]:
    """`run_steps` for a model in mode "loops", its greedy decodes run `chunk` pairs at a time: per pair and loop
    count the path, its operations (as `refine_with_compute` counts them) and its share of the batch's CPU
    time (apportioned by operations)."""
    schedule = model.config.loop_schedule
    n = len(srcs)
    paths = [[None] * len(schedule) for _ in range(n)]
    ops, cpu = np.zeros((n, len(schedule))), np.zeros((n, len(schedule)))
    caps = np.array([hop_cap(g, int(s), int(t), model.config.max_hops) for s, t in zip(srcs, dsts)])
    for k, r in enumerate(tqdm(schedule, desc=f"{model.name} loops", file=sys.stderr)):
        for lo in range(0, n, chunk):
            sl = slice(lo, min(lo + chunk, n))
            spent = np.zeros(sl.stop - lo)
            c0 = time.thread_time()
            with torch.inference_mode():
                out = decode(model.net, np.asarray(srcs[sl]), np.asarray(dsts[sl]), loops=r, hop_caps=caps[sl],
                             ops=spent)
            elapsed = (time.thread_time() - c0) * 1000
            spent += cost.haversine(1) if k == 0 else 0.0
            ops[sl, k], cpu[sl, k] = spent, elapsed * spent / spent.sum()
            for i, p in enumerate(out):
                paths[lo + i][k] = p
    return paths, ops, cpu


def loops_curve(model, g: CityGraph, srcs, dsts, optimal) -> dict:
    """Per loop count of the model's schedule: NLL, the greedy route's checks, the decode's cost. Decoded in
    batches; the first pairs are decoded again one by one through `refine_with_compute`, and the share whose
    paths agree and whose operations agree within 0.1% is recorded (a batch shares its per-hop bookkeeping
    among its rows; batched and single matrix products may differ in the last bits)."""
    schedule = model.config.loop_schedule
    paths, ops, cpu = batched_steps(model, g, srcs, dsts)
    probe = min(10, len(srcs))
    single, single_ops, _ = run_steps(model, g, srcs[:probe], dsts[:probe], len(schedule))
    agree = float(np.mean([paths[i][k] == single[i][k] and np.isclose(ops[i, k], single_ops[i, k], rtol=1e-3)
                           for i in range(probe) for k in range(len(schedule))]))
    rows, keep = [], {}
    for k, r in enumerate(schedule):
        c = checks(g, [p[k] for p in paths], srcs, dsts)
        nll = nll_per_pair(model, g, optimal, r)
        keep[r] = (c["passes"], nll)
        rows.append({"loops": r, "nll_per_city": nll_summary(nll), "passes_three_checks": rate(c["passes"]),
                     "valid": rate(c["valid"]), "reaches_target": rate(c["reaches"]),
                     "illegal_hop_rate": c["illegal_hop_rate"],
                     "ops_mean": float(ops[:, k].mean()), "cpu_ms_mean": float(cpu[:, k].mean())})
    return {"rows": rows, "_keep": keep, "agree_with_refine": agree}


def best_of_curve(model, g: CityGraph, srcs, dsts, best_of=BEST_OF) -> dict:
    """Best-of-N (greedy + N - 1 samples, verifier's best) with the cumulative operations of the N decodes."""
    top = max(best_of)
    paths, ops, cpu = run_steps(model, g, srcs, dsts, top)
    rows, keep = [], {}
    for n in best_of:
        c = checks(g, [p[n - 1] for p in paths], srcs, dsts)
        keep[n] = c["passes"]
        rows.append({"n": n, "passes_three_checks": rate(c["passes"]), "valid": rate(c["valid"]),
                     "ops_mean": float(ops[:, :n].sum(axis=1).mean()),
                     "cpu_ms_mean": float(cpu[:, :n].sum(axis=1).mean())})
    return {"rows": rows, "_keep": keep}


def equal_compute(looped: dict, sampled: dict, sampled_name: str) -> list[dict]:
    """For each loop count, the best-of-N row of `sampled` with the most operations not above the loops' own
    (None where even N = 1 costs more): pass rates side by side."""
    out = []
    for row in looped["rows"]:
        under = [b for b in sampled["rows"] if b["ops_mean"] <= row["ops_mean"]]
        match = max(under, key=lambda b: b["ops_mean"]) if under else None
        out.append({"loops": row["loops"], "loops_ops": row["ops_mean"],
                    "loops_passes": row["passes_three_checks"]["value"], "against": sampled_name,
                    "n": match["n"] if match else None, "n_ops": match["ops_mean"] if match else None,
                    "n_passes": match["passes_three_checks"]["value"] if match else None})
    return out


CACHE = Path("runs/depthlm-loops")      # finished curves, so an interrupted or split study resumes (git-ignored)


def cached(kind: str, model, srcs, dsts, compute, directory: Path | None = CACHE):
    """`compute()` (a curve: its "rows", its "_keep" per loop count or N, other plain values), or what an earlier
    run stored for the same model weights, kind and pairs (a study of the large size runs for tens of minutes:
    its curves can be computed in separate runs, e.g. the looped model's while its control still trains)."""
    import hashlib

    if directory is None:
        return compute()
    key = hashlib.sha256(json.dumps([kind, model.name, model.card.get("weights_sha256", ""),
                                     np.asarray(srcs).tolist(), np.asarray(dsts).tolist()]).encode()).hexdigest()
    path = directory / f"{model.name}-{kind}-{key[:16]}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            keep = {k: (tuple(z[f"keep-{k}-{i}"] for i in range(n)) if n else z[f"keep-{k}"])
                    for k, n in meta.pop("_keep")}
            return {**meta, "_keep": keep}
    out = compute()
    arrays, shape = {}, []
    for k, v in out["_keep"].items():
        if isinstance(v, tuple):
            arrays |= {f"keep-{k}-{i}": np.asarray(a) for i, a in enumerate(v)}
            shape.append([k, len(v)])
        else:
            arrays[f"keep-{k}"] = np.asarray(v)
            shape.append([k, 0])
    meta = {k: v for k, v in out.items() if k != "_keep"} | {"_keep": shape}
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(path, meta=np.array(json.dumps(meta)), **arrays)
    return out


def measure(g: CityGraph, srcs, dsts, model, ctrl, post, *, own_samples: bool = True,
            control_best_of=BEST_OF, cache: Path | None = None) -> dict:
    """One size's entry: `model`'s loops curve, best-of-N of `post`, of `ctrl` (N in `control_best_of`; its
    greedy route at least) and, with `own_samples`, of `model` at its training mean; the paired checks and the
    equal-compute table."""
    name, rnn = model.name, post.name
    optimal = [g.shortest_path(int(s), int(t)) for s, t in zip(srcs, dsts)]
    curve = cached("loops", model, srcs, dsts, lambda: loops_curve(model, g, srcs, dsts, optimal), cache)
    mean = max(1, round(model.config.loops_mean))
    samples = {post.name: cached("best-of", post, srcs, dsts, lambda: best_of_curve(post, g, srcs, dsts), cache)}
    if ctrl is not None:
        samples[ctrl.name] = cached(f"best-of-{max(control_best_of)}", ctrl, srcs, dsts,
                                    lambda: best_of_curve(ctrl, g, srcs, dsts, control_best_of), cache)
    if own_samples:
        own = model.variant("samples", mean)
        samples[f"{name}.samples"] = cached("samples", model, srcs, dsts,
                                            lambda: best_of_curve(own, g, srcs, dsts), cache)
    keep = curve.pop("_keep")
    r1, rmax = min(keep), max(keep)
    r4 = max(r for r in keep if r <= 4 * mean)
    nll_diff = lambda a, b: paired(a[:, 0] / a[:, 1], b[:, 0] / b[:, 1])  # noqa: E731  (per pair, nats)
    checks_ = {
        "passes_rmax_minus_r1": {"loops": [rmax, r1], **paired(keep[rmax][0], keep[r1][0])},
        "nll_rmax_minus_r1": {"loops": [rmax, r1], **nll_diff(keep[rmax][1], keep[r1][1])},
        "passes_4x_mean_minus_mean": {"loops": [r4, mean], **paired(keep[r4][0], keep[mean][0])},
        "nll_4x_mean_minus_mean": {"loops": [r4, mean], **nll_diff(keep[r4][1], keep[mean][1])},
    }
    entry = {
        "model": name, "control": ctrl.name if ctrl is not None else None, "post_rnn": rnn,
        "loops_mean": model.config.loops_mean,
        "parameters": {m.name: m.num_parameters for m in (model, ctrl, post) if m is not None},
        "loops": curve["rows"],
        "batched_agrees_with_refine": curve["agree_with_refine"],
        "post_rnn_nll_per_city": nll_summary(nll_per_pair(post, g, optimal, None)),
        "best_of": {k: v["rows"] for k, v in samples.items()},
        "paired": checks_,
        "equal_compute": {k: equal_compute({"rows": curve["rows"]}, v, k) for k, v in samples.items()},
    }
    if ctrl is not None:   # the unlooped control: greedy (its step 1) against the loops, and its NLL
        control_nll = nll_per_pair(ctrl, g, optimal, 1)
        ctrl_greedy = samples[ctrl.name]["_keep"][1]
        entry["control_nll_per_city"] = nll_summary(control_nll)
        checks_ |= {
            "passes_looped_rmax_minus_control": {"loops": [rmax, 1], **paired(keep[rmax][0], ctrl_greedy)},
            "passes_looped_mean_minus_control": {"loops": [mean, 1], **paired(keep[mean][0], ctrl_greedy)},
            "nll_looped_mean_minus_control": {"loops": [mean, 1], **nll_diff(keep[mean][1], control_nll)},
        }
    for v in samples.values():
        v.pop("_keep")
    return entry


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.depthlm_loops", description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=500)
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--sizes", default="small,large")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--cache", type=Path, default=CACHE,
                    help=f"finished curves are kept here and reused for the same weights and pairs (default {CACHE})")
    ap.add_argument("--lean", action="store_true", help="best-of-N for the post RNN only (the unlooped control "
                    "greedy, the looped model's own samples left out): for the large size on a 2-core CPU")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    g = load_graph(verbose=False)
    srcs, dsts = sample_heldout_pairs(g, args.pairs, seed=args.seed)
    available = set(list_models())
    command = "python -m experiments.depthlm_loops " + " ".join(sys.argv[1:] if argv is None else argv)
    pairs = {"n": args.pairs, "seed": args.seed, "heldout": True}
    report = {"command": command, "pairs": pairs, "sizes": {}}
    if args.out.is_file():      # sizes measured by an earlier run on the same pairs are kept
        earlier = json.loads(args.out.read_text())
        if earlier.get("pairs") == pairs:
            report["sizes"] = earlier.get("sizes", {})
    for size in [s.strip() for s in args.sizes.split(",") if s.strip()]:
        name, control, rnn = f"depth-lm-{size}", f"depth-lm-{size}-unlooped", f"post-rnn-{size}"
        missing = [m for m in (name, rnn) if m not in available]
        if missing:
            print(f"skipping {size}: no checkpoint {', '.join(missing)}", file=sys.stderr)
            continue
        if control not in available:
            print(f"{size}: no unlooped control {control} yet; measured without it", file=sys.stderr)
        model, post = load_model(name, graph=g), load_model(rnn, graph=g)
        ctrl = load_model(control, graph=g) if control in available else None
        lean = dict(own_samples=False, control_best_of=(1,)) if args.lean else {}
        entry = {**measure(g, srcs, dsts, model, ctrl, post, **lean, cache=args.cache), "command": command}
        report["sizes"][size] = entry
        print(json.dumps({k: entry[k] for k in ("model", "paired")}, indent=1), file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out, json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
