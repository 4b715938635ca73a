"""Is a step worth a parameter? Iso-quality contours of training compute against test-time compute.

A sweep trains each learned family at several sizes under one budget rule (the same number of training paths
for every size of a family, so training compute grows with the size: experiments/tradeoff.py) and evaluates
every checkpoint at several step counts on the same test pairs. For a quality level (valid >= 95%, mean
length ratio over all pairs <= 1.01, ...) a checkpoint's *contour point* is the least test-time compute per
query at which it reaches the level: the mean FLOPs per query (`citypath.cost`'s one convention, set-up
included) at the first step count whose statistic meets it. Plotted against the checkpoint's training
compute, a family's points trace the contour; its log-log slope says how much test-time compute ten times
the training compute removes (Jones 2021: ~15x per 10x on Hex).

Intervals come from one bootstrap over pairs shared by every checkpoint (the pairs are the same): a point's
interval is the spread of its least compute over resamples (open above when some resamples never reach the
level), the slope's the spread of the refitted slope. Nothing here runs a model: it reads per-pair records
(valid, length ratio, FLOPs at each step count), so a hand-worked example checks it (tests/test_tradeoff.py).

    report = tradeoff_report(runs, hops)          # runs: {name: Run}, hops: optimal hop count per pair
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from citypath.evaluate import FAILED_RATIO_CAP

RESAMPLES = 1000
TERCILES = ("short", "medium", "long")


@dataclass(frozen=True)
class Level:
    """A quality level: `metric` ("valid": share of valid routes; "ratio_all": mean length ratio over all pairs,
    a failed route counted at `FAILED_RATIO_CAP`) compared with `value` by `op` (">=" or "<=")."""

    metric: str
    op: str
    value: float

    def __post_init__(self):
        if self.metric not in ("valid", "ratio_all") or self.op not in (">=", "<="):
            raise ValueError(f"a level compares 'valid' or 'ratio_all' with '>=' or '<=', not {self}")

    @property
    def key(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"

    @property
    def label(self) -> str:
        if self.metric == "valid":
            return f"valid >= {100 * self.value:g}%"
        return f"mean ratio <= {self.value:g}"

    def met(self, stat: np.ndarray | float) -> np.ndarray | bool:
        # A hair of tolerance so that 0.95 of 20 pairs (a float sum) meets 0.95.
        return stat >= self.value - 1e-12 if self.op == ">=" else stat <= self.value + 1e-12


LEVELS = (Level("valid", ">=", 0.95), Level("valid", ">=", 0.99), Level("ratio_all", "<=", 1.05),
          Level("ratio_all", "<=", 1.01), Level("ratio_all", "<=", 1.003))


@dataclass
class Run:
    """One checkpoint of a sweep: what it cost to train, and per step count every pair's outcome."""

    name: str
    family: str
    parameters: int
    train_flops: float
    steps: list[int]
    valid: dict[int, np.ndarray]          # step -> (n,) 0/1
    ratio_all: dict[int, np.ndarray]      # step -> (n,) length ratio, FAILED_RATIO_CAP where not valid
    flops: dict[int, np.ndarray]          # step -> (n,) FLOPs of the query up to that step (set-up included)
    size: str = ""

    @classmethod
    def from_per_pair(cls, name: str, family: str, parameters: int, train_flops: float,
                      per_pair: Mapping[str, Mapping[str, Sequence]], **kw) -> Run:
        """From `citypath.evaluate.evaluate_model`'s `per_pair` records (valid, length_ratio, flops per step)."""
        steps = sorted(int(k) for k in per_pair)
        valid, ratio, flops = {}, {}, {}
        for k in steps:
            rec = per_pair[str(k)]
            v = np.asarray(rec["valid"], dtype=np.float64)
            r = np.array([np.nan if x is None else x for x in rec["length_ratio"]], dtype=np.float64)
            valid[k] = v
            ratio[k] = np.where(v > 0, r, FAILED_RATIO_CAP)
            flops[k] = np.array([np.nan if x is None else x for x in rec["flops"]], dtype=np.float64)
        return cls(name, family, int(parameters), float(train_flops), steps, valid, ratio, flops, **kw)

    def stat(self, level: Level, k: int, idx: np.ndarray) -> np.ndarray:
        """The level's statistic at step k over pair index rows `idx` ((B, n) -> (B,), or (n,) -> scalar)."""
        values = self.valid[k] if level.metric == "valid" else self.ratio_all[k]
        return values[idx].mean(axis=-1)


def least_compute(run: Run, level: Level, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of pair indices `idx` (B, n): the first step count whose statistic meets `level`, and the mean
    FLOPs per query at it; (0, inf) where no step count does."""
    idx = np.atleast_2d(idx)
    step = np.zeros(len(idx), dtype=np.int64)
    compute = np.full(len(idx), np.inf)
    for k in run.steps:
        hit = (step == 0) & level.met(run.stat(level, k, idx))
        step[hit] = k
        compute[hit] = run.flops[k][idx[hit]].mean(axis=-1)
    return step, compute


def _interval(samples: np.ndarray) -> list[float | None]:
    """2.5/97.5 percentiles (order statistics) of `samples`; an end that falls on a resample where the level is
    not reached (inf) is None: the interval is open there."""
    ordered = np.sort(np.asarray(samples, dtype=np.float64))
    b = len(ordered)
    lo, hi = ordered[int(np.floor(0.025 * (b - 1)))], ordered[int(np.ceil(0.975 * (b - 1)))]
    return [float(lo) if np.isfinite(lo) else None, float(hi) if np.isfinite(hi) else None]


def fit_loglog(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of log10 y on log10 x."""
    lx, ly = np.log10(x), np.log10(y)
    lx = lx - lx.mean()
    return float(np.dot(lx, ly - ly.mean()) / np.dot(lx, lx))


def contour(runs: Sequence[Run], level: Level, subset: np.ndarray, boot: np.ndarray, *,
            x: str = "train_flops", min_points: int = 3) -> dict:
    """One family's iso-quality contour at `level` on pairs `subset`, with `boot` (B, len(subset)) resampled
    positions into the subset: each run's point (least step, mean FLOPs per query, interval) and the log-log
    slope of test-time against `x` ("train_flops" or "parameters") over the runs that reach the level."""
    runs = sorted(runs, key=lambda r: getattr(r, x))
    full = subset[None, :]
    resampled = subset[boot]
    points, samples = [], []
    for r in runs:
        step, comp = least_compute(r, level, full)
        _, comp_b = least_compute(r, level, resampled)
        reached = bool(step[0])
        points.append({"name": r.name, "size": r.size, "parameters": r.parameters, "train_flops": r.train_flops,
                       "step": int(step[0]) if reached else None, "max_step": max(r.steps),
                       "test_flops": float(comp[0]) if reached else None, "ci95": _interval(comp_b),
                       "reached_share": float(np.isfinite(comp_b).mean())})
        samples.append(comp_b)
    fit_on = [i for i, p in enumerate(points) if p["test_flops"] is not None]
    out = {"level": level.key, "label": level.label, "x": x, "points": points}
    xs = np.array([getattr(runs[i], x) for i in fit_on], dtype=np.float64)
    if len(fit_on) < min_points or len(set(xs.tolist())) < 2:
        missing = [p["name"] for p in points if p["test_flops"] is None]
        out["fit"] = None
        out["why_no_fit"] = (f"{len(fit_on)} of {len(points)} sizes reach {level.label} within their step budget"
                             + (f" ({', '.join(missing)} never do)" if missing else "")
                             + f"; a slope needs {min_points}")
        return out
    ys = np.array([points[i]["test_flops"] for i in fit_on])
    slope = fit_loglog(xs, ys)
    boot_y = np.stack([samples[i] for i in fit_on], axis=1)            # (B, points)
    ok = np.isfinite(boot_y).all(axis=1)
    slopes = np.array([fit_loglog(xs, row) for row in boot_y[ok]]) if ok.any() else np.array([])
    ci = [float(v) for v in np.percentile(slopes, [2.5, 97.5])] if len(slopes) else [None, None]
    # Saturated: every size already meets the level at its first step count, so the slope only says how the
    # first step's cost grows with size.
    saturated = all(points[i]["step"] == runs[i].steps[0] for i in fit_on)
    out["fit"] = {"slope": slope, "ci95": ci, "resamples_defined": float(ok.mean()),
                  "factor_per_10x": 10 ** -slope,
                  "factor_ci95": [10 ** -c if c is not None else None for c in ci[::-1]],
                  "points": len(fit_on), "saturated": saturated,
                  "sentence": slope_sentence(slope, ci, x, level, saturated, float(ok.mean()))}
    return out


def slope_sentence(slope: float, ci: Sequence[float | None], x: str, level: Level, saturated: bool,
                   defined: float = 1.0) -> str:
    """The fitted slope in words: what 10x more `x` does to the test-time compute needed at `level`; `defined` is
    the share of resamples in which every size reaches the level (the interval is over those alone)."""
    what = "training compute" if x == "train_flops" else "parameters"
    lo, hi = ci
    text = _slope_words(slope, lo, hi, what, level, saturated)
    if lo is not None and defined < 0.95:
        text += (f" (the interval is over the {100 * defined:.0f}% of resamples in which every size reaches the "
                 "level, so it may understate the uncertainty)")
    return text


def _slope_words(slope: float, lo: float | None, hi: float | None, what: str, level: Level, saturated: bool) -> str:
    if saturated:
        return (f"at {level.label} every size already reaches the level at its first step, so the slope "
                f"({slope:+.2f}) only tracks what one step costs at each size")
    if lo is None or hi is None:
        return (f"at {level.label}, 10x more {what} changes the test-time compute needed {10 ** slope:.3g}x "
                "(no interval: too few resamples reach the level at every size)")
    if lo <= 0 <= hi:
        return (f"at {level.label}, 10x more {what} changes the test-time compute needed {10 ** slope:.3g}x "
                f"(95% interval {10 ** lo:.3g}x-{10 ** hi:.3g}x): the interval holds 1x, so neither more steps "
                "nor more size is shown to be the cheaper way there")
    if slope < 0:
        return (f"at {level.label}, 10x more {what} removes {10 ** -slope:.3g}x of the test-time compute "
                f"(95% interval {10 ** -hi:.3g}x-{10 ** -lo:.3g}x)")
    return (f"at {level.label}, 10x more {what} costs {10 ** slope:.3g}x more test-time compute "
            f"(95% interval {10 ** lo:.3g}x-{10 ** hi:.3g}x): a smaller model thinking longer is the cheaper way")


def terciles(hops: np.ndarray) -> dict[str, np.ndarray]:
    """Pair indices split into three equal groups by optimal hop count (ties broken by pair order)."""
    order = np.argsort(np.asarray(hops), kind="stable")
    parts = np.array_split(order, 3)
    return {name: np.sort(p) for name, p in zip(TERCILES, parts)}


def tradeoff_report(runs: Mapping[str, Run], hops: Sequence[int], levels: Sequence[Level] = LEVELS, *,
                    resamples: int = RESAMPLES, seed: int = 0, min_points: int = 3) -> dict:
    """Contours per family and level (against training compute and against parameters), on all pairs and on
    each tercile of optimal hop count; one bootstrap over pairs is shared by every family and level."""
    hops = np.asarray(hops)
    n = len(hops)
    for r in runs.values():
        if any(len(r.valid[k]) != n for k in r.steps):
            raise ValueError(f"{r.name}: its records cover {len(r.valid[r.steps[0]])} pairs, the sweep {n}")
    rng = np.random.default_rng([seed, 0x7AD0])
    families = sorted({r.family for r in runs.values()})
    subsets = {"all": np.arange(n), **terciles(hops)}
    boots = {name: rng.integers(0, len(s), size=(resamples, len(s))) for name, s in subsets.items()}
    out: dict = {"levels": [lv.key for lv in levels], "resamples": resamples, "seed": seed, "min_points": min_points,
                 "difficulty": {name: {"pairs": int(len(s)),
                                       "hops": [int(hops[s].min()), int(hops[s].max())] if len(s) else None}
                                for name, s in subsets.items() if name != "all"},
                 "families": {}}
    for fam in families:
        members = [r for r in runs.values() if r.family == fam]
        fam_out: dict = {"runs": [r.name for r in sorted(members, key=lambda r: r.train_flops)]}
        for sub, s in subsets.items():
            fam_out[sub] = {lv.key: contour(members, lv, s, boots[sub], min_points=min_points) for lv in levels}
        fam_out["by_parameters"] = {lv.key: contour(members, lv, subsets["all"], boots["all"], x="parameters",
                                                    min_points=min_points) for lv in levels}
        out["families"][fam] = fam_out
    return out


def substitution(report: Mapping) -> dict:
    """Per family, level and third of the pairs by hop count: can the smallest size, thinking longer, reach what
    the largest reaches, and at how much of the largest's test-time compute? (Snell et al. 2024: test-time
    compute stands in for size on easy questions, not on hard ones.)"""
    out: dict = {}
    for fam, f in report["families"].items():
        fam_out = {}
        for sub in TERCILES:
            rows = {}
            for key, c in f[sub].items():
                small, large = c["points"][0], c["points"][-1]
                if large["test_flops"] is None:
                    verdict = "the largest size does not reach it either"
                elif small["test_flops"] is None:
                    verdict = f"the smallest never reaches it within {small['max_step']} steps: no substitute"
                else:
                    steps = f"{small['step']} step{'s' if small['step'] != 1 else ''}"
                    verdict = (f"the smallest reaches it at {steps}, "
                               f"{small['test_flops'] / large['test_flops']:.3g}x the largest's test-time FLOPs")
                rows[key] = {"smallest": small["name"], "largest": large["name"], "verdict": verdict,
                             "smallest_step": small["step"], "largest_step": large["step"],
                             "compute_ratio": (small["test_flops"] / large["test_flops"]
                                               if small["test_flops"] and large["test_flops"] else None)}
            fam_out[sub] = rows
        out[fam] = fam_out
    return out


def difficulty_sentences(report: Mapping, levels: Sequence[Level] = LEVELS) -> list[str]:
    """Per family, the strictest level the largest size reaches on every third of the pairs, and on each third
    whether the smallest size reaches it by thinking longer."""
    sub = substitution(report)
    lines = []
    for fam, by in sub.items():
        keys = [lv.key for lv in levels if all(by[t][lv.key]["largest_step"] is not None for t in TERCILES)]
        if not keys:
            lines.append(f"{fam}: its largest size reaches no level on every third of the pairs.")
            continue
        # The level that tells thirds apart: the smallest size reaches it on some thirds and not on others.
        telling = [k for k in keys if len({by[t][k]["smallest_step"] is None for t in TERCILES}) == 2]
        key = (telling or keys)[-1]
        label = next(lv.label for lv in levels if lv.key == key)
        why = "the strictest level its largest size reaches on every third" + \
            (" and its smallest on some" if telling else "")
        parts = [f"{t} routes: {by[t][key]['verdict']}" for t in TERCILES]
        lines.append(f"{fam} at {label} ({why}): " + "; ".join(parts) + ".")
    return lines


def headline(report: Mapping) -> list[str]:
    """One sentence per family: the fitted slope at the strictest level that has one (all pairs), else why none."""
    lines = []
    for fam, f in report["families"].items():
        contours = list(f["all"].values())
        fitted = [c for c in contours if c.get("fit") and not c["fit"]["saturated"]]
        if fitted:
            line = f"{fam}: {fitted[-1]['fit']['sentence']}"
            unreached = []
            for c in contours[contours.index(fitted[-1]) + 1:]:       # the stricter levels
                reach = [f"{p['name']} (at {p['step']} step{'s' if p['step'] != 1 else ''})" for p in c["points"]
                         if p["test_flops"] is not None]
                if reach:
                    line += f"; only {', '.join(reach)} reach{'es' if len(reach) == 1 else ''} {c['label']}"
                else:
                    unreached.append(c["label"])
            if unreached:
                line += f"; no size reaches {' or '.join(unreached)} within its steps"
            lines.append(line + ".")
            continue
        sizes = len(contours[0]["points"]) if contours else 0
        reached = {c["label"]: sum(p["test_flops"] is not None for p in c["points"]) for c in contours}
        most = max(reached.values(), default=0)
        never = [label for label, k in reached.items() if k == 0]
        line = f"{fam}: no line fits: at most {most} of its {sizes} sizes reach a level within their steps"
        line += f" (a line needs {report.get('min_points', 3)})"
        if any(c.get("fit") for c in contours):
            line = (f"{fam}: no line beyond the first step: at each level all its sizes reach, each does so at its "
                    "first step")
        if never:
            line += f"; none reaches {', '.join(never)}"
        lines.append(line + ".")
    return lines
