"""Each checkpoint's training curves: loss against path quality (the post's loss-vs-quality gap)."""

from __future__ import annotations

import altair as alt
import streamlit as st

from citypath import dashboards, ui

st.set_page_config(page_title="citypath · training", page_icon="🗺️", layout="wide")
g = ui.graph()
mset = ui.models(g)

st.title("Low loss is not a good route")
st.caption("The post that started this found that a path model's loss can fall while its paths still fail the "
           "three checks: no illegal jumps, bounded length, reaching the target. Left: loss. Right: path quality "
           "on validation pairs, measured during training. Both against the number of training paths seen.")

curves = dashboards.curves_table(mset.models)
if curves.empty:
    st.info("No checkpoint has training curves yet.")
    st.stop()

chosen = st.multiselect("Models", sorted(curves["model"].unique()), default=sorted(curves["model"].unique()))
curves = curves[curves["model"].isin(chosen)]
loss = curves[curves["metric"].str.contains("loss")]
quality = curves[curves["metric"].str.startswith("val_") & ~curves["metric"].str.contains("loss")]


def plot(df, title: str, log_y: bool = False) -> alt.Chart:
    return (alt.Chart(df, title=title).mark_line(point=True)
            .encode(x=alt.X("paths_seen:Q", title="training paths seen"),
                    y=alt.Y("value:Q", scale=alt.Scale(type="log" if log_y else "linear", zero=False), title=None),
                    color="metric:N", strokeDash="model:N", tooltip=["model", "metric", "paths_seen", "value"])
            .properties(height=340))


c1, c2 = st.columns(2)
c1.altair_chart(plot(loss, "loss (cross-entropy)"), width="stretch")
c2.altair_chart(plot(quality, "path quality on validation pairs"), width="stretch")
with st.expander("The cards"):
    for name in chosen:
        m = mset.models[name]
        st.markdown(f"**{name}** · {m.family} · {m.num_parameters:,} parameters · max_steps {m.max_steps}")
        st.json({k: v for k, v in m.card.items() if k not in ("curves",)}, expanded=False)
