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
from citypath.evaluate import FAILED_RATIO_CAP, FLAGS
from citypath.graph import CityGraph
from citypath.metrics import METRICS
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

def _share_name(name: str) -> str:
    """How a page names the share of pairs where a yes/no metric holds, from the metric table."""
    m = METRICS[name]
    return f"{m.label.lower()} (share of pairs, {m.better} is better)" if m.better else f"{m.label.lower()} (share)"


# The harness's summary statistics as the pages name them: each flag's share from the metric table; the
# statistics over several metrics or over a distribution (the harness's own, `evaluate.summarise`) by hand.
METRIC_NAMES = {
    **{name: _share_name(name) for name in FLAGS},
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


def frontier_chart(frontier: pd.DataFrame, y: str = "length_pct_mean", x: str = "flops_total",
                   height: int = 420, labels: bool = True, models: list[str] | None = None):
    """Altair: `y` against `x` (log), one line per model, step counts on the points, names in place.

    `models` fixes the colour of each model across charts (default: the models in `frontier`)."""
    import altair as alt

    domain = sorted(models or frontier["model"].unique().tolist())
    title = {"length_pct_mean": "mean % longer than optimal, all pairs (lower is better)"}.get(
        y, METRIC_NAMES.get(y, y))
    # % longer than optimal spans 0.001% to 20%: a symmetric log scale shows both ends (and 0).
    y_scale = alt.Scale(domain=[0, 1]) if y in ("valid", "exact_match") else \
        alt.Scale(type="symlog", constant=0.05) if y == "length_pct_mean" else alt.Scale(zero=False)
    base = alt.Chart(frontier).encode(
        x=alt.X(f"{x}:Q", scale=alt.Scale(type="log"), title=METRIC_NAMES.get(x, x)),
        y=alt.Y(f"{y}:Q", scale=y_scale, title=title),
        color=alt.Color("model:N", scale=alt.Scale(domain=domain), legend=None),
        # the classical floor dashed, scaffold controls dotted: a glance tells learned from hand-written
        strokeDash=alt.StrokeDash("kind:N", scale=alt.Scale(domain=["learned", "no learning", "control"],
                                                             range=[[1, 0], [6, 3], [2, 2]]),
                                  legend=None),          # the caption above the chart says which is which
        tooltip=["model", "kind", "steps", alt.Tooltip(y, format=".4f"), alt.Tooltip(x, format=".3s"),
                 *[alt.Tooltip(c, format=".3f") for c in ("length_ratio_mean", "length_ratio_all_mean", "valid",
                                                         "exact_match")
                   if c in frontier.columns and c != y]])
    layers = [base.mark_line(point=True)]
    if labels:
        layers.append(base.mark_text(dy=-9, fontSize=9, color="#555").encode(text="label:N"))
    last = frontier.loc[frontier.groupby("model")[x].idxmax()] if not frontier.empty else frontier
    layers.append(alt.Chart(last).mark_text(align="left", dx=7, fontSize=11 if labels else 9,
                                            fontWeight="bold").encode(
        x=f"{x}:Q", y=f"{y}:Q", text="model:N", color=alt.Color("model:N", scale=alt.Scale(domain=domain),
                                                               legend=None)))
    return alt.layer(*layers).properties(height=height)
