"""The tables behind the app's pages: quality vs test-time compute, training curves, dataset statistics.

Each function turns something citypath already has (evaluation results, checkpoint cards,
the graph) into a tidy DataFrame that a page plots as is, so the pages stay layout only.

- `results_table(results)`: one row per (model, steps) from results/eval.json, accepting the
  harness's documented layout and falling back gracefully on older ones.
- `card_table(models)`: the same rows from the checkpoint cards' `metrics.by_steps`.
- `quick_eval(...)`: re-runs the evaluation harness on N fresh held-out pairs, with a progress callback.
- `curves_table(models)`: training curves from the cards, long format.
- `degree_counts`, `component_sizes`, `path_length_sample`: the Dataset page.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from citypath.cost import human as human_ops
from citypath.evaluate import statistic_names
from citypath.graph import CityGraph
from citypath.models import RoutingModel
from citypath.registry import FAMILIES

RESULTS_PATH = Path(__file__).resolve().parents[2] / "results" / "eval.json"


# -- quality vs steps -------------------------------------------------------------------------

def _rows_from_by_steps(model: str, by_steps: Mapping, extra: Mapping | None = None) -> list[dict]:
    rows = []
    for k, metrics in by_steps.items():
        try:
            steps = int(k)
        except (TypeError, ValueError):
            continue
        if isinstance(metrics, Mapping):
            rows.append({"model": model, "steps": steps, **(extra or {}),
                         **{m: v for m, v in metrics.items() if isinstance(v, (int, float)) or v is None}})
    return rows


def results_table(results: Mapping | list | None) -> pd.DataFrame:
    """One row per (model, steps) with every numeric metric the results hold.

    Accepts {"models": {name: {"by_steps": {k: {...}}, ...}}}, {name: {"by_steps": ...}},
    or a list of flat rows with "model" and "steps". Unknown layouts give an empty table.
    """
    rows: list[dict] = []
    if isinstance(results, Mapping):
        models = results.get("models", results)
        if isinstance(models, Mapping):
            for name, entry in models.items():
                if isinstance(entry, Mapping) and isinstance(entry.get("by_steps"), Mapping):
                    extra = {k: entry[k] for k in ("family", "num_parameters", "flops_per_step", "nll_per_city")
                             if k in entry}
                    # a row with nothing learned (the classical floor) or a scaffold control: drawn apart
                    extra["kind"] = ("control" if entry.get("control_of") else
                                     "learned" if entry.get("learned", True) else "no learning")
                    rows += _rows_from_by_steps(str(name), entry["by_steps"], extra)
        elif isinstance(models, list):
            rows = [r for r in models if isinstance(r, Mapping) and "model" in r and "steps" in r]
        if not rows and isinstance(results.get("rows"), list):
            rows = [r for r in results["rows"] if isinstance(r, Mapping) and "model" in r and "steps" in r]
    elif isinstance(results, list):
        rows = [r for r in results if isinstance(r, Mapping) and "model" in r and "steps" in r]
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=["model", "steps"])
    df["steps"] = df["steps"].astype(int)
    return df.sort_values(["model", "steps"]).reset_index(drop=True)


def load_results_table(path: str | Path = RESULTS_PATH) -> tuple[pd.DataFrame, str | None]:
    """results/eval.json as a table, and a reason if it could not be read (missing, broken)."""
    path = Path(path)
    if not path.is_file():
        return results_table(None), f"{path.name} does not exist yet"
    try:
        from citypath.evaluate import load_results

        return results_table(load_results(path)), None
    except Exception as e:  # a broken results file must not break the page
        return results_table(None), f"{path.name} cannot be read: {type(e).__name__}: {e}"


def card_table(models: Mapping[str, RoutingModel]) -> pd.DataFrame:
    """Quality vs steps as measured on each checkpoint's card (metrics.by_steps)."""
    rows = []
    for name, m in models.items():
        by_steps = (m.card.get("metrics") or {}).get("by_steps") or {}
        rows += _rows_from_by_steps(name, by_steps, {"family": m.family, "num_parameters": m.num_parameters})
    return results_table(rows)


class _Counted:
    """A model seen through the harness, counting finished queries for a progress bar (protocol only)."""

    def __init__(self, model: RoutingModel, on_query: Callable[[], None]):
        self._model, self._on_query = model, on_query

    def __getattr__(self, name):
        return getattr(self._model, name)

    def refine(self, g, src, dst, steps=1, *, seed=0):
        yield from self._model.refine(g, src, dst, steps=steps, seed=seed)
        self._on_query()

    def refine_with_compute(self, g, src, dst, steps=1, *, seed=0):
        yield from self._model.refine_with_compute(g, src, dst, steps=steps, seed=seed)
        self._on_query()


def quick_eval(models: Mapping[str, RoutingModel], g: CityGraph, n_pairs: int, steps: Iterable[int], *,
               seed: int = 1, progress: Callable[[float, str], None] | None = None,
               bootstrap: int = 200) -> pd.DataFrame:
    """Re-run the evaluation harness (`citypath.evaluate`) on `n_pairs` held-out pairs drawn with `seed`.

    The same ruler as results/eval.json (`evaluate_model`, `sample_heldout_pairs`); a seed other
    than the committed run's gives fresh pairs. One row per (model, steps), as `results_table`.
    A model that fails is left out and reported through `progress`.
    """
    from citypath.evaluate import evaluate_model, sample_heldout_pairs

    steps = sorted({int(k) for k in steps if int(k) >= 1})
    if not steps or n_pairs < 1 or not models:
        return pd.DataFrame(columns=["model", "steps"])
    srcs, dsts = sample_heldout_pairs(g, int(n_pairs), seed)
    total, done = len(models) * len(srcs), [0]
    entries = {}
    for name, model in models.items():
        def tick(name=name):
            done[0] += 1
            if progress:
                progress(done[0] / total, f"{name}: {done[0]} of {total} queries")
        try:
            entries[name] = evaluate_model(_Counted(model, tick), g, srcs, dsts, steps, seed=seed,
                                           bootstrap=bootstrap, progress=False)
        except Exception as e:  # one broken model must not cost the others their run
            if progress:
                progress(done[0] / total, f"{name} failed: {type(e).__name__}: {e}")
    df = results_table({"models": entries})
    if len(df):
        df["pairs"] = len(srcs)
    return df


# -- training ---------------------------------------------------------------------------------

def curves_table(models: Mapping[str, RoutingModel]) -> pd.DataFrame:
    """Every checkpoint's training curve in long format: model, paths_seen, metric, value."""
    rows = []
    for name, m in models.items():
        for point in m.card.get("curves") or []:
            if not isinstance(point, Mapping):
                continue
            x = point.get("paths_seen", point.get("step"))
            for key, value in point.items():
                if key not in {"epoch", "step", "seconds", "paths_seen"} and isinstance(value, (int, float)):
                    rows.append({"model": name, "family": m.family, "paths_seen": x, "metric": key,
                                 "value": float(value)})
    return pd.DataFrame(rows, columns=["model", "family", "paths_seen", "metric", "value"])


# What each family's training loss means (losses are compared only within one meaning), and the families whose
# validation loss is the post's language-modelling NLL (the headline chart's lines): the registry says both.
LOSS_MEANING = {name: f.loss for name, f in FAMILIES.items() if f.loss}
POST_FAMILIES = tuple(name for name, f in FAMILIES.items() if f.post_nll)
RATE_CURVES = {"val_passes_three_checks": "passes all three checks", "val_reaches_target": "reaches the target",
               "val_valid": "valid", "val_illegal_jump_rate": "has an illegal jump"}
RATIO_CURVES = {"val_length_ratio": "length / optimal (valid routes)"}


def headline_curve(models: Mapping[str, RoutingModel]) -> pd.DataFrame:
    """The post's finding as one curve per post model: validation NLL against the share of greedy
    validation routes that pass all three checks, one row per validation point (in training order)."""
    rows = []
    for name, m in models.items():
        if m.family not in POST_FAMILIES:
            continue
        for point in m.card.get("curves") or []:
            nll, ok = point.get("val_loss"), point.get("val_passes_three_checks")
            if isinstance(nll, (int, float)) and isinstance(ok, (int, float)):
                rows.append({"model": name, "paths_seen": point.get("paths_seen"), "val_nll": float(nll),
                             "passes": float(ok), "reaches": float(point.get("val_reaches_target") or 0.0)})
    return pd.DataFrame(rows, columns=["model", "paths_seen", "val_nll", "passes", "reaches"])


HEADLINE_MIN_TOP = 0.05   # the pass-rate panel's axis reaches at least 5% (its own scale: the rates are near 0)


def headline_chart(head: pd.DataFrame, height: int = 260):
    """The post's finding as two panels over training (paths seen): the validation loss falls (left), while the
    share of routes passing all three checks stays near zero (right), on its own scale with the 100% a working
    router would reach named at the top (on a 0-100% axis the lines lie flat on 0 and the picture is empty)."""
    import altair as alt

    from citypath import palette

    names = sorted(head["model"].unique().tolist())
    legend = alt.Legend(title=None, orient="top", symbolType="stroke", symbolStrokeWidth=2.5)
    colour = alt.Color("model:N", scale=alt.Scale(**palette.altair_scale(names)), legend=legend)
    dash = alt.StrokeDash("model:N", scale=alt.Scale(**palette.altair_dash(names)), legend=legend)
    x = alt.X("paths_seen:Q", title="training paths seen",
              axis=alt.Axis(labelExpr="format(datum.value, '~s')", tickCount=6))
    base = alt.Chart(head).encode(x=x, color=colour, strokeDash=dash)
    loss = base.mark_line(point=True).encode(
        y=alt.Y("val_nll:Q", scale=alt.Scale(type="log"), title="validation loss (NLL per city; log scale)",
                axis=alt.Axis(tickCount=6)),
        tooltip=["model", alt.Tooltip("paths_seen:Q", format=","), alt.Tooltip("val_nll:Q", format=".3f")]
    ).properties(title="the loss falls", height=height)
    top = max(HEADLINE_MIN_TOP, float(head["passes"].max()) * 1.3 if len(head) else 0.0)
    passes = base.mark_line(point=True).encode(
        y=alt.Y("passes:Q", scale=alt.Scale(domain=[0, top], nice=False),
                title=f"routes passing all three checks (axis to {top:.0%})",
                axis=alt.Axis(format=".1%" if top < 0.1 else "%", tickCount=6)),
        tooltip=["model", alt.Tooltip("paths_seen:Q", format=","), alt.Tooltip("passes:Q", format=".1%"),
                 alt.Tooltip("reaches:Q", format=".1%", title="reaches the target")])
    reference = alt.Chart(pd.DataFrame({"y": [top], "text": [f"↑ a router that works: 100% (far above this {top:.0%} "
                                                               "axis)"]})).mark_text(
        align="left", baseline="top", dx=4, dy=4, fontSize=11, color="#5f6371").encode(
        x=alt.value(0), y=alt.Y("y:Q", scale=alt.Scale(domain=[0, top], nice=False)), text="text:N")
    right = alt.layer(passes, reference).properties(title="the routes still fail", height=height)
    return alt.hconcat(loss, right).resolve_scale(color="shared", y="independent").properties(padding=CHART_PADDING)


def curve_sentence(name: str, m: RoutingModel) -> str:
    """One sentence with the model's last validation point: what its curves end at."""
    points = [p for p in m.card.get("curves") or [] if isinstance(p, Mapping)]
    if not points:
        return f"`{name}`: no training curves in its card."
    last = points[-1]
    seen = last.get("paths_seen")
    parts = []
    if isinstance(last.get("val_loss"), (int, float)):
        parts.append(f"validation loss {last['val_loss']:.3g}")
    if isinstance(last.get("val_passes_three_checks"), (int, float)):
        parts.append(f"{last['val_passes_three_checks']:.0%} of its validation routes pass all three checks")
    elif isinstance(last.get("val_valid"), (int, float)):
        parts.append(f"{last['val_valid']:.0%} of its validation routes are valid")
    if isinstance(last.get("val_illegal_jump_rate"), (int, float)) and last["val_illegal_jump_rate"] > 0:
        parts.append(f"{last['val_illegal_jump_rate']:.0%} have an illegal jump")
    seen_text = f" after {seen:,.0f} training paths" if isinstance(seen, (int, float)) else ""
    return f"`{name}`: " + ", ".join(parts) + seen_text + "."


def heldout_sentence(name: str, results: pd.DataFrame) -> str | None:
    """What the harness measured for a model on held-out pairs (results/eval.json), in one sentence."""
    if results.empty or "model" not in results:
        return None
    mine = results[results["model"] == name].sort_values("steps")
    if mine.empty:
        return None
    first, last = mine.iloc[0], mine.iloc[-1]
    n = int(first["n"]) if "n" in mine and pd.notna(first["n"]) else None
    parts = []
    if "nll_per_city" in mine and pd.notna(first.get("nll_per_city")):
        parts.append(f"NLL {first['nll_per_city']:.2f} per city on their optimal paths")
    for row, label in ((first, f"{int(first['steps'])} step"), (last, f"{int(last['steps'])} steps")):
        if "passes_three_checks" in row and pd.notna(row["passes_three_checks"]):
            parts.append(f"at {label}, {row['reaches_target']:.1%} of routes reach the target and "
                         f"{row['passes_three_checks']:.1%} pass all three checks")
    if not parts:
        return None
    where = f"the {n:,} held-out pairs" if n else "held-out pairs"
    return f"`{name}` on {where} of `results/eval.json`: " + "; ".join(parts) + "."


# -- the dataset ------------------------------------------------------------------------------

def left_out(g: CityGraph) -> tuple[int, str]:
    """How many places of the city table the graph leaves out, and why, in words: the count the Dataset page shows
    (everything left out) beside the one README.md and docs/data.md give (the places beyond the radius only)."""
    summary = g.summary()
    far, groups = summary["dropped_disconnected"], summary["dropped_components"]
    outside = summary["outside_contiguous_us"]
    states = g.outside.loc[g.outside["reason_code"] == "not_contiguous", "state"].value_counts() \
        if len(g.outside) and "state" in g.outside else pd.Series(dtype=int)
    names = {"AK": "Alaska", "HI": "Hawaii", "PR": "Puerto Rico"}
    where = ", ".join(f"{names.get(st, st)} {n:,}" for st, n in states.items())
    text = (f"{far + outside:,} places of the city table are left out: {outside:,} outside the contiguous US"
            + (f" ({where})" if where else "") + ", which no distance graph of the lower 48 can join, and "
            f"{far:,} in {groups:,} group{'s' if groups != 1 else ''} farther than {g.radius_km:g} km from the rest.")
    if g.config.states is None:
        text += (f" README.md and docs/data.md count only these {far:,}: the places in reach of the lower 48 that "
                 "the radius still leaves out.")
    return far + outside, text


def degree_counts(g: CityGraph) -> pd.DataFrame:
    """How many cities have each number of neighbours (binned for the plot)."""
    deg = np.diff(g.adjacency.indptr)
    edges = np.unique(np.linspace(deg.min(), deg.max() + 1, 41).round()).astype(int)
    counts, _ = np.histogram(deg, bins=edges)
    return pd.DataFrame({"degree_from": edges[:-1], "degree_to": edges[1:] - 1, "cities": counts})


def component_sizes(g: CityGraph) -> pd.DataFrame:
    """The graph's component (kept) and the groups of cities left out as disconnected, by size."""
    rows = [{"component": "main (kept)", "cities": g.n_cities}]
    dropped = g.dropped
    if len(dropped):
        for _, grp in dropped.groupby("component"):
            rows.append({"component": f"{grp['label'].iloc[0]} group", "cities": len(grp)})
    return pd.DataFrame(rows).sort_values("cities", ascending=False).reset_index(drop=True)


def path_length_sample(g: CityGraph, sources: int = 12, seed: int = 0) -> pd.DataFrame:
    """Optimal path lengths (km and hops) from a few random sources to every city.

    Hops come from the Dijkstra predecessor tree: visiting cities in order of distance, a city's
    hop count is its predecessor's plus one (the predecessor is always nearer).
    """
    rng = np.random.default_rng(seed)
    out = []
    for s in rng.choice(g.n_cities, size=min(sources, g.n_cities), replace=False).tolist():
        dist, pred = g.distances_from(s)
        order = np.argsort(dist, kind="stable")
        hops = np.zeros(g.n_cities, np.int64)
        for c in order[1:]:
            hops[c] = hops[pred[c]] + 1 if pred[c] >= 0 else 0
        keep = np.arange(g.n_cities) != s
        out.append(pd.DataFrame({"source": s, "km": dist[keep], "hops": hops[keep]}))
    return pd.concat(out, ignore_index=True)


# -- the equal-compute frontier ---------------------------------------------------------------

# The harness's summary statistics as the pages name them (`evaluate.STATISTICS`, from the metric table).
METRIC_NAMES = statistic_names()
FRONTIER_MIN_VALID = 0.99   # a point counts for the finding only if it routes this share of pairs validly


FRONTIER_COSTS = {"flops_total": "counted operations per query", "cpu_ms_total_mean": "measured CPU ms per query"}


def frontier_table(results: pd.DataFrame) -> pd.DataFrame:
    """Rows with a compute figure and a length ratio, with the step count as a label; sorted for lines.

    The ratio charted is over **all** pairs (a failed route at the cap) where the results have it, so a model
    whose routes do not arrive cannot look short; cards measured before that key existed fall back to the
    ratio over valid routes.
    """
    need = {"model", "steps", "flops_total", "length_ratio_mean"}
    if results.empty or not need <= set(results.columns):
        return pd.DataFrame(columns=sorted(need | {"ratio"}))
    df = results.dropna(subset=["flops_total", "length_ratio_mean"]).copy()
    df = df[df["flops_total"] > 0]
    df["ratio"] = df["length_ratio_all_mean"].fillna(df["length_ratio_mean"]) if "length_ratio_all_mean" in df \
        else df["length_ratio_mean"]
    if "kind" not in df:
        df["kind"] = "learned"
    df["kind"] = df["kind"].fillna("learned")
    df["label"] = df["steps"].map(lambda k: f"{k}")
    return df.sort_values(["model", "flops_total"]).reset_index(drop=True)


def best_at_budget(frontier: pd.DataFrame, budget: float, *, min_valid: float = FRONTIER_MIN_VALID,
                   cost: str = "flops_total", learned_only: bool = False):
    """The (model, steps) row with the lowest all-pairs length ratio among points that spend at most `budget`
    of `cost` per query and route at least `min_valid` of pairs validly (learned models only if asked); None
    if there is none."""
    if frontier.empty or cost not in frontier:
        return None
    ok = frontier[(frontier[cost] <= budget) & (frontier.get("valid", 1.0) >= min_valid)].copy()
    if learned_only:
        ok = ok[ok["kind"] == "learned"]
    if ok.empty:
        return None
    # Mean ratios equal to 1e-6 are a tie (they differ by millimetres): then more optimal routes, then less compute.
    ok["_ratio"] = ok["ratio"].round(6)
    ok["_optimal"] = -ok["optimal_length"].fillna(0.0) if "optimal_length" in ok else 0.0
    return ok.sort_values(["_ratio", "_optimal", cost]).iloc[0]


def frontier_findings(frontier: pd.DataFrame, budgets: Iterable[float] | None = None,
                      cost: str = "flops_total") -> list[str]:
    """One sentence per compute budget, from the table: which row gives the shortest routes there, and, where that
    row learned nothing, the best learned model at the same budget beside it."""
    if budgets is None:
        budgets = (1e7, 1e8, 1e9, 1e10) if cost == "flops_total" else (10.0, 100.0, 1000.0)
    out = []
    for b in budgets:
        row = best_at_budget(frontier, b, cost=cost)
        if row is None:
            out.append(f"At {_cost(b, cost)} per query no row routes {FRONTIER_MIN_VALID:.0%} of pairs validly.")
            continue
        text = f"At {_cost(b, cost)} per query the shortest routes come from {_point(row, cost)}"
        if row["kind"] != "learned":
            best = best_at_budget(frontier, b, cost=cost, learned_only=True)
            text += (f"; the best learned model there is {_point(best, cost)}" if best is not None else
                     f"; no learned model routes {FRONTIER_MIN_VALID:.0%} of pairs validly there")
        out.append(text + ".")
    return out


def _point(row, cost: str) -> str:
    opt = row.get("optimal_length")
    opt_text = f", the optimal length on {opt:.1%}" if opt is not None and np.isfinite(opt) else ""
    kind = " (no learning)" if row["kind"] == "no learning" else " (scaffold control)" if row["kind"] == "control" \
        else ""
    return (f"**{row['model']}**{kind} at {int(row['steps'])} step{'s' if int(row['steps']) != 1 else ''}: "
            f"{row['ratio']:.4f}× optimal over all pairs{opt_text}, {row.get('valid', float('nan')):.1%} valid, "
            f"spending {_cost(row[cost], cost)}")


def _cost(v: float, cost: str) -> str:
    return human_ops(v) if cost == "flops_total" else f"{v:.3g} CPU ms"


FRONTIER_CHART_MIN_VALID = 0.9   # the length chart leaves out points whose length ratio rests on few valid routes


def length_points(frontier: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Points for the length chart (valid >= FRONTIER_CHART_MIN_VALID), with % longer than optimal over all pairs,
    and the models left out entirely (mostly routes that never arrive, each counted at the cap)."""
    if frontier.empty:
        return frontier, []
    ok = frontier[frontier.get("valid", 1.0) >= FRONTIER_CHART_MIN_VALID].copy()
    ok["length_pct_mean"] = (ok["ratio"] - 1.0) * 100.0
    left_out = sorted(set(frontier["model"]) - set(ok["model"]))
    return ok, left_out


CHART_PADDING = {"left": 8, "top": 6, "right": 6, "bottom": 6}   # px around a chart: no label at its edge

# SI prefixes for a compute axis: 1 M, 10 M, 1 G operations.
SI_PREFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""))


def si_label(value: float, unit: str = "") -> str:
    """A round tick value with an SI prefix: si_label(1e7) == "10 M", si_label(3e9) == "3 G", si_label(0.5) == "0.5"."""
    for scale, prefix in SI_PREFIXES:
        if abs(value) >= scale:
            text = f"{value / scale:.3g}"
            return f"{text} {prefix}{unit}".rstrip() if prefix or unit else text
    return f"{value:.3g}" + (f" {unit}" if unit else "")


def log_ticks(lo: float, hi: float, *, least: int = 4) -> list[float]:
    """Tick values for a log axis over lo..hi: the powers of ten inside it, then 3, then 2 and 5, ... times them too
    while that gives fewer than `least` ticks (a short span still gets enough labels)."""
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo <= 0 or hi < lo:
        return []
    first, last = int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi)))
    for multiples in ((1,), (1, 3), (1, 2, 5), (1, 2, 3, 5, 7), tuple(range(1, 10))):
        ticks = [m * 10.0 ** e for e in range(first, last + 1) for m in multiples if lo <= m * 10.0 ** e <= hi]
        if len(ticks) >= least:
            break
    return ticks


def label_expr(labels: Mapping[float, str]) -> str:
    """A Vega expression that writes each of `labels`' tick values as its text (the axis's `values` are these)."""
    expr = "''"
    for value, text in reversed(list(labels.items())):
        expr = f"abs(datum.value - {value!r}) <= {abs(value) * 1e-9!r} ? {json_str(text)} : {expr}"
    return expr


def json_str(text: str) -> str:
    import json

    return json.dumps(text)


# % longer than optimal spans 0.001% to 20%: a symmetric log scale shows both ends (and 0), with ticks at each.
PCT_TICKS = (0.0, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)


def compute_domain(values) -> list[float] | None:
    """A log axis's domain over the data with a little room each side (no empty decade before the first point)."""
    v = np.asarray([float(a) for a in values if a is not None and np.isfinite(a) and a > 0])
    return [float(v.min()) / 1.5, float(v.max()) * 1.5] if len(v) else None


def compute_axis(values, x: str) -> dict:
    """Altair axis arguments for a compute axis (log scale over `compute_domain`): round ticks over the data,
    written with SI prefixes (1 M, 10 M, 1 G) for operations, in ms or s for CPU time."""
    domain = compute_domain(values)
    if domain is None:
        return {}
    lo, hi = domain
    ticks = log_ticks(lo, hi, least=6)        # 1 M, 3 M, 10 M, ... unless the span has six decades
    if x == "flops_total":
        labels = {t: si_label(t) for t in ticks}
    else:
        labels = {t: (f"{t / 1000:g} s" if t >= 1000 else f"{t:g} ms") for t in ticks}
    return {"values": ticks, "labelExpr": label_expr(labels), "grid": True, "labelOverlap": False}


def frontier_chart(frontier: pd.DataFrame, y: str = "length_pct_mean", x: str = "flops_total",
                   height: int = 420, labels: bool = True, models: list[str] | None = None):
    """Altair: `y` against `x` (log), one line per model in its own colour (citypath.palette), dashed for the
    classical rows and dotted for the scaffold controls, and a legend naming each line.

    Click a model in the legend: its line stands out and its points say their number of steps (shown for one
    model at a time, they never overlap another's). `labels=False`: no step numbers. `models` fixes the colour of
    each model across charts (default: the models in `frontier`)."""
    import altair as alt

    from citypath import palette

    domain = sorted(models or frontier["model"].unique().tolist())
    scale = alt.Scale(**palette.altair_scale(domain))
    title = {"length_pct_mean": "% longer than optimal, mean of all pairs (lower is better)"}.get(
        y, METRIC_NAMES.get(y, y))
    if y in ("valid", "exact_match"):
        y_scale, y_axis = alt.Scale(domain=[0, 1]), alt.Axis(format="%", values=[0, 0.2, 0.4, 0.6, 0.8, 1.0])
    elif y == "length_pct_mean":
        top = max(float(frontier[y].max()) if len(frontier) else 1.0, 0.1) * 1.15
        ticks = [t for t in PCT_TICKS if t <= top]
        y_scale = alt.Scale(type="symlog", constant=0.05, domain=[0, top], nice=False)
        y_axis = alt.Axis(values=ticks, labelExpr="format(datum.value, '~g') + '%'")
    else:
        y_scale, y_axis = alt.Scale(zero=False), alt.Axis(tickCount=6)
    x_title = {"flops_total": "operations per query (one count for every row; log scale)",
               "cpu_ms_total_mean": "measured CPU time per query (one thread; log scale)"}.get(
        x, METRIC_NAMES.get(x, x))
    pick = alt.selection_point(fields=["model"], bind="legend", empty=False)
    highlight = alt.when(pick, empty=True)
    base = alt.Chart(frontier).encode(
        x=alt.X(f"{x}:Q", scale=alt.Scale(type="log", domain=compute_domain(frontier[x]), nice=False)
                if x in frontier and compute_domain(frontier[x]) else alt.Scale(type="log"), title=x_title,
                axis=alt.Axis(**compute_axis(frontier[x], x)) if x in frontier else alt.Axis()),
        y=alt.Y(f"{y}:Q", scale=y_scale, title=title, axis=y_axis),
        color=alt.Color("model:N", scale=scale,
                        legend=alt.Legend(title="model (click to pick out)", symbolType="stroke", symbolStrokeWidth=3,
                                          # two columns once one would be taller than the plot
                                          columns=1 if len(domain) <= 16 else 2, labelLimit=220,
                                          orient="right") if labels else None),
        # the classical floor dashed, scaffold controls dotted: a glance tells learned from hand-written
        strokeDash=alt.StrokeDash("kind:N", scale=alt.Scale(domain=["learned", "no learning", "control"],
                                                             range=[[1, 0], [6, 3], [2, 2]]),
                                  legend=None),          # the caption above the chart says which is which
        tooltip=["model", "kind", "steps", alt.Tooltip(y, format=".4f"), alt.Tooltip(x, format=".3s"),
                 *[alt.Tooltip(c, format=".3f") for c in ("length_ratio_mean", "length_ratio_all_mean", "valid",
                                                         "exact_match")
                   if c in frontier.columns and c != y]])
    lines = base.mark_line(point=True).encode(
        opacity=highlight.then(alt.value(1.0)).otherwise(alt.value(0.2)),
        strokeWidth=highlight.then(alt.value(2.2)).otherwise(alt.value(1.5)))
    layers = [lines.add_params(pick) if labels else lines]
    if labels:
        layers.append(base.mark_text(dy=-10, fontSize=10, fontWeight="bold").encode(text="label:N")
                      .transform_filter(pick))
    # room around the plot for the axis titles' glyphs (Vega's bounds leave a rotated title's ascenders at the edge)
    return alt.layer(*layers).properties(height=height, padding=CHART_PADDING)
