"""Quality vs refinement steps and vs compute, for every model (results/eval.json or a fresh run)."""

from __future__ import annotations

import altair as alt
import streamlit as st

from citypath import dashboards, ui

st.set_page_config(page_title="citypath · test-time compute", page_icon="🗺️", layout="wide")
g = ui.graph()
mset = ui.models(g)

st.title("Does thinking longer help?")
st.caption("Each model answers held-out pairs (never seen in training) with 1, 2, 4, … refinement steps. "
           "If test-time compute helps, the curves rise (valid, reaches target) or fall (length vs optimal) "
           "as steps grow. A bigger model is worth it only if it sits above the small one at equal compute.")

results, problem = dashboards.load_results_table()
source = "results/eval.json (the committed evaluation)"
if results.empty:
    results = dashboards.card_table(mset.models)
    source = "the checkpoint cards (results/eval.json " + (problem or "has no rows") + ")"

with st.expander("Re-run the harness on fresh held-out pairs", expanded=results.empty):
    c1, c2, c3 = st.columns([1, 2, 1])
    n_pairs = c1.number_input("Pairs", 1, 500, 20, help="Random held-out pairs; a few seconds per 10 pairs.")
    chosen = c2.multiselect("Models", mset.names, default=mset.names)
    seed = c3.number_input("Seed", 0, 2**31 - 1, 0)
    steps = [k for k in (1, 2, 4, 8, 16, 32, 64) if k <= ui.catalog().steps_max]
    if st.button("Run", type="primary", disabled=not chosen):
        bar = st.progress(0.0, "starting…")
        fresh = dashboards.quick_eval({n: mset.models[n] for n in chosen}, g, int(n_pairs), steps, seed=int(seed),
                                      progress=lambda f, text: bar.progress(min(f, 1.0), text))
        bar.empty()
        st.session_state["fresh_eval"] = fresh
    if "fresh_eval" in st.session_state:
        results = st.session_state["fresh_eval"]
        source = f"a fresh run on {int(results['pairs'].iloc[0])} held-out pairs (this session)"

if results.empty:
    st.info("No evaluation results yet: no results/eval.json and no model metrics. Run the harness above "
            "once a checkpoint exists, or `python -m citypath evaluate`.")
    st.stop()

st.markdown(f"Showing **{source}**.")
metrics = [c for c in ("valid", "reaches_target", "length_ratio_median", "length_ratio_mean", "length_ratio",
                       "illegal_jumps", "bounded", "exact_match") if c in results.columns]
metric = st.selectbox("Metric", metrics, index=0)
x_options = ["steps"] + [c for c in ("flops", "ms") if c in results.columns and results[c].notna().any()]
x_axis = st.radio("Against", x_options, horizontal=True,
                  format_func={"steps": "refinement steps", "flops": "compute (FLOPs per query)",
                               "ms": "measured ms per query"}.get)
chart = (alt.Chart(results).mark_line(point=True)
         .encode(x=alt.X(f"{x_axis}:Q", scale=alt.Scale(type="log", base=2 if x_axis == "steps" else 10),
                         title=x_axis),
                 y=alt.Y(f"{metric}:Q", title=metric), color="model:N",
                 tooltip=["model", "steps", alt.Tooltip(metric, format=".3f")])
         .properties(height=380))
st.altair_chart(chart, width="stretch")
st.dataframe(results, width="stretch", hide_index=True)
