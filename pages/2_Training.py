"""Training curves: the post's finding (low loss, broken routes) first, then every checkpoint's curves."""

from __future__ import annotations

import altair as alt
import streamlit as st

from citypath.app import resources, tables
from citypath.view import present

st.set_page_config(page_title="citypath · training", page_icon="🗺️", layout="wide")
g = resources.graph()
mset = resources.models(g)

st.title("Low loss is not a good route")
st.caption("The post that started this trained an RNN on shortest paths as language modelling and found that its "
           "loss fell while its routes still failed three checks: no illegal jumps, bounded length (within 5% of "
           "optimal), reaching the target. Every number here is measured during training on fixed validation "
           "pairs (never trained on) and stored in the checkpoint's card.")

head = tables.headline_curve(mset.models)
if len(head):
    st.subheader("The post's RNN: validation loss against routes that pass all three checks")
    st.caption("Two panels over the same training: the loss on its own scale (left), and the share of validation "
               "routes that pass all three checks on a scale of its own (right): near zero throughout, where a "
               "router that works would stand at 100%.")
    st.altair_chart(tables.headline_chart(head), width="stretch")
    results, _ = tables.load_results_table()
    for name in sorted(head["model"].unique()):
        st.caption(tables.curve_sentence(name, mset.models[name]))
        held = tables.heldout_sentence(name, results)
        if held:
            st.caption(held)
    st.caption("The validation pairs of these curves are the last 200 paths of the SPD's training split, which "
               "share two source cities: an easier, narrower sample than the held-out pairs (whose figures are "
               "given beside them).")
else:
    st.info("No checkpoint of the post's RNN (family `postrnn`) is installed: train one with "
            "`python -m citypath train --model postrnn --size small`.")

curves = tables.curves_table(mset.models)
if curves.empty:
    st.info("No checkpoint has training curves yet.")
    st.stop()

st.subheader("Every checkpoint's curves")
st.caption("One panel per model. Left: rates on validation routes (0-100%). Right: loss, whose meaning depends on "
           "the family (named under it): compare losses only between models of the same family.")


RATE_COLOURS = dict(zip(tables.RATE_CURVES.values(), ["#1b7837", "#2166ac", "#92c5de", "#d6604d"]))
st.markdown(present.legend_html([(c, name, "line") for name, c in RATE_COLOURS.items()]), unsafe_allow_html=True)


def rates_chart(df, title: str) -> alt.Chart:
    return (alt.Chart(df, title=title).mark_line(point=True)
            .encode(x=alt.X("paths_seen:Q", title="training paths seen"),
                    y=alt.Y("value:Q", title="share of routes", axis=alt.Axis(format="%", tickCount=5),
                            scale=alt.Scale(domain=[0, 1])),
                    color=alt.Color("curve:N", legend=None, scale=alt.Scale(domain=list(RATE_COLOURS),
                                                                            range=list(RATE_COLOURS.values()))),
                    tooltip=["curve", "paths_seen", alt.Tooltip("value:Q", format=".1%")])
            .properties(height=200))


def value_chart(df, title: str, y_title: str) -> alt.Chart:
    return (alt.Chart(df, title=title).mark_line(point=True, color="#555")
            .encode(x=alt.X("paths_seen:Q", title="training paths seen"),
                    y=alt.Y("value:Q", title=y_title, scale=alt.Scale(zero=False)),
                    tooltip=["metric", "paths_seen", "value"])
            .properties(height=200))


for name in sorted(curves["model"].unique()):
    m = mset.models[name]
    mine = curves[curves["model"] == name]
    st.markdown(f"**{name}** · {m.family} · {m.num_parameters:,} parameters")
    c1, c2, c3 = st.columns(3)
    rates = mine[mine["metric"].isin(list(tables.RATE_CURVES))].assign(
        curve=lambda d: d["metric"].map(tables.RATE_CURVES))
    if len(rates):
        c1.altair_chart(rates_chart(rates, "validation routes"), width="stretch")
    ratio = mine[mine["metric"].isin(list(tables.RATIO_CURVES))]
    if len(ratio):
        c2.altair_chart(value_chart(ratio, "length / optimal (valid routes)", "ratio"),
                        width="stretch")
    loss = mine[mine["metric"] == "val_loss"]
    if len(loss):
        c3.altair_chart(value_chart(loss, "validation loss", "loss"), width="stretch")
        c3.caption(tables.LOSS_MEANING.get(m.family, "loss as defined by the family"))
    st.caption(tables.curve_sentence(name, m))

with st.expander("The cards"):
    for name in sorted(curves["model"].unique()):
        m = mset.models[name]
        st.markdown(f"**{name}** · {m.family} · {m.num_parameters:,} parameters · max_steps {m.max_steps}")
        st.json({k: v for k, v in m.card.items() if k not in ("curves",)}, expanded=False)
