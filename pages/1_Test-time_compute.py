"""Quality vs refinement steps and vs compute, for every model (results/eval.json or a fresh run)."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from citypath import palette
from citypath.app import effort, harness, loops, resources, tables

st.set_page_config(page_title="citypath · test-time compute", page_icon="🗺️", layout="wide")
g = resources.graph()
mset = resources.models(g)

st.title("Does thinking longer help? Only compute can say")
results, problem = tables.load_results_table()
source = "results/eval.json (the committed evaluation)"
if results.empty:
    results = tables.card_table(mset.models)
    source = "the checkpoint cards (results/eval.json " + (problem or "has no rows") + ")"

with st.expander("Re-run the harness on fresh held-out pairs", expanded=results.empty):
    c1, c2, c3 = st.columns([1, 2, 1])
    n_pairs = c1.number_input("Pairs", 1, 500, 20, key="harness-pairs",
                              help="Random held-out pairs; the estimated CPU time is said below before it starts.")
    chosen = c2.multiselect("Models", mset.names, default=mset.names, key="harness-models")
    seed = c3.number_input("Seed", 0, 2**31 - 1, 1, key="harness-seed",
                           help="Pairs are drawn with this seed; the committed evaluation used seed 2, so any other "
                                "seed gives other pairs.")
    steps = [k for k in (1, 2, 4, 8, 16, 32, 64) if k <= resources.catalog().steps_max]
    costs = tables.load_results_table()[0]
    harness.panel(harness.plan({n: mset.models[n] for n in chosen}, int(n_pairs), steps, int(seed), costs))
    if harness.K_RESULT in st.session_state:
        results = st.session_state[harness.K_RESULT]
        source = f"a fresh run on {int(results['pairs'].iloc[0])} held-out pairs (this session)"

if results.empty:
    st.info("No evaluation results yet: no results/eval.json and no model metrics. Run the harness above "
            "once a checkpoint exists, or `python -m citypath evaluate`.")
    st.stop()

frontier = tables.frontier_table(results)
st.markdown(f"Showing **{source}**.")
if not frontier.empty:
    st.markdown("**Route length against compute per query.** Each line is a row of the ruler in its own colour, each "
                "point a number of refinement steps (click a model in the legend to pick it out and number its "
                "points; hover a point for its figures); lower is better (shorter routes, a route that never "
                "arrives counted at the cap), further left is cheaper. Solid lines learned, dashed lines the "
                "classical algorithms (no learning: the floor), dotted lines a learned model's scaffold with the "
                "learned part replaced by its hand-set equivalent. A model that thinks longer moves right along its "
                "line; it beats another where its line runs below the other's at the same compute.")
    costs = [c for c in tables.FRONTIER_COSTS if c in frontier and frontier[c].notna().all()]
    cost = st.radio("Compute", costs, horizontal=True, format_func=tables.FRONTIER_COSTS.get,
                    help="Counted operations: one convention for every row, set-up, search bookkeeping and the "
                         "verifier included (docs/evaluation.md, One cost); machine-independent, so the default. "
                         "CPU ms: measured single-thread CPU time of the whole query in the same run.")
    points, left_out = tables.length_points(frontier)
    everyone = sorted(frontier["model"].unique().tolist())
    st.altair_chart(tables.frontier_chart(points, x=cost, models=everyone), width="stretch")
    st.markdown("\n".join(f"- {line}" for line in tables.frontier_findings(frontier, cost=cost)))
    st.caption(f"Points where under {tables.FRONTIER_CHART_MIN_VALID:.0%} of routes are "
               "valid are left out of the length chart"
               + (f"; no point of {', '.join(left_out)} qualifies" if left_out else "") +
               f". A point counts for the sentences only if at least {tables.FRONTIER_MIN_VALID:.0%} of its "
               "routes are valid. Operations are counted by one convention for every row (docs/evaluation.md).")
    c1, c2 = st.columns(2)
    for col, metric in ((c1, "valid"), (c2, "exact_match")):
        if metric in frontier.columns:
            col.altair_chart(tables.frontier_chart(frontier, y=metric, x=cost, height=260, labels=False,
                                                       models=everyone), width="stretch")
    st.divider()
    st.subheader("Explore any metric")
headline = ("valid", "length_ratio_mean", "length_ratio_all_mean", "length_ratio_median", "reaches_target", "bounded",
            "illegal_jump_rate", "illegal_jumps_mean", "exact_match", "frechet_km_mean", "hops_mean")
numeric = [c for c in results.columns if c not in ("model", "steps", "family", "num_parameters", "pairs", "n",
                                                     "n_valid") and pd.api.types.is_numeric_dtype(results[c])]
metrics = [c for c in headline if c in numeric] + [c for c in numeric if c not in headline]
c1, c2 = st.columns([1, 2])
metric = c1.selectbox("Metric", metrics, index=0, format_func=lambda c: tables.METRIC_NAMES.get(c, c),
                      help="Length-ratio statistics are over valid paths only: read them next to `valid`; "
                           "the all-pairs mean counts a failed route at a stated cap.")
x_names = {"steps": "refinement steps", "flops_total": "compute (counted operations per query)",
           "ms_total_mean": "measured ms per query", "cpu_ms_total_mean": "measured CPU ms per query (one thread)"}
x_options = [c for c in x_names if c in results.columns and results[c].notna().any()]
x_axis = c2.radio("Against", x_options, horizontal=True, format_func=x_names.get)
everyone_rows = sorted(results["model"].unique().tolist())    # each its own colour and line, as everywhere
chart = (alt.Chart(results).mark_line(point=True)
         .encode(x=alt.X(f"{x_axis}:Q", scale=alt.Scale(type="log", base=2 if x_axis == "steps" else 10),
                         title=x_names[x_axis]),
                 y=alt.Y(f"{metric}:Q", title=tables.METRIC_NAMES.get(metric, metric), scale=alt.Scale(zero=False)),
                 color=alt.Color("model:N", scale=alt.Scale(**palette.altair_scale(everyone_rows)),
                                 legend=alt.Legend(columns=1, labelLimit=220, symbolType="stroke")),
                 strokeDash=alt.StrokeDash("model:N", scale=alt.Scale(**palette.altair_dash(everyone_rows)),
                                           legend=alt.Legend(columns=1, labelLimit=220, symbolType="stroke")),
                 tooltip=["model", "steps", alt.Tooltip(metric, format=".3f")])
         .properties(height=380))
st.altair_chart(chart, width="stretch")
st.dataframe(results, width="stretch", hide_index=True)

st.divider()
st.subheader("The post's first avenue: a transformer that loops its depth")
report, why_not = loops.load_report()
if not report:
    st.info(f"No loops curves yet: {why_not}.")
else:
    st.markdown("A causal transformer LM over city tokens (the post RNN's tokens and full-vocabulary softmax) whose "
                "core runs r times per token. Left: NLL per city of the optimal routes against loops (lower is "
                "better). Right: the share of greedy routes passing all three checks against the operations of one "
                "query, loops solid, best-of-N samples dashed (the post's RNN and the unlooped control), so a loop "
                "and a sample meet at equal compute. Bands and bars: 95% intervals. "
                f"{report['pairs']['n']} held-out test pairs; `{report['command']}`.")
    curve, samples = loops.loops_table(report), loops.best_of_table(report)
    c1, c2 = st.columns(2)
    c1.altair_chart(loops.nll_chart(curve), width="stretch")
    c2.altair_chart(loops.passes_chart(curve, samples), width="stretch")

st.subheader("Effort: does a learned part make exact search do less work?")
effort_report, effort_why = effort.load_report()
if effort_why:
    st.info(f"No effort figures yet: {effort_why}.")
else:
    st.caption("Every row is the same A* run to its end (exact), with a lower bound on the road km to the target: "
               "the straight line (A*), ALT's landmark table, or a learned table certified on the graph. Left: "
               "cities expanded per query against the bytes a city the bound reads; right: single-thread CPU ms. "
               "Weighted A* (uncertified, matched to a learned row's expansions) shows what giving up exactness "
               f"buys. {effort_report['pairs']} {effort_report['split']} pairs; "
               f"`{effort_report['command']}`.")
    effort_rows = effort.effort_table(effort_report)
    c1, c2 = st.columns(2)
    c1.altair_chart(effort.effort_chart(effort_rows, "expansions"), width="stretch")
    c2.altair_chart(effort.effort_chart(effort_rows, "CPU ms"), width="stretch")
    st.dataframe(effort_rows.drop(columns=["expansions_lo", "expansions_hi"]), hide_index=True, width="stretch")
