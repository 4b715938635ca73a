"""Is a step worth a parameter? The train-compute / test-compute trade-off of the learned families."""

from __future__ import annotations

import streamlit as st

from citypath.app import tradeoff

st.set_page_config(page_title="citypath · a step or a parameter", page_icon="🗺️", layout="wide")
st.title("Is a step worth a parameter?")
st.caption("Each learned family trained at several sizes under one budget rule (every size sees the same number "
           "of training paths), then run for more and more steps on the same test pairs. For a quality level, a "
           "checkpoint's point is the least test-time compute per query at which it reaches the level; along a "
           "family's line, going right buys training compute, going down saves test-time compute.")

report, why = tradeoff.load_report()
if why:
    st.info(f"No sweep figures yet: {why}.")
    st.stop()

pairs = report["pairs"]
st.markdown("**What the sweep found** (all test pairs, the strictest level a line fits):")
for line in report.get("headline", []):
    st.markdown(f"- {line}")
for name, f in report.get("floor", {}).items():
    st.markdown(f"- The classical floor, **{name}** (nothing learned): {100 * f['valid']:.1f}% valid, mean ratio "
                f"{f['length_ratio_all_mean']:.4f}, at {f['flops_total']:.3g} FLOPs ({f['cpu_ms_total_mean']:.1f} "
                "CPU ms) a query on the same pairs.")
st.caption(f"{pairs['n']:,} {pairs['split']} pairs (seed {pairs['seed']}); FLOPs by citypath.cost's one convention, "
           "set-up included; 95% intervals from one bootstrap over pairs shared by every checkpoint. "
           "`python -m experiments.tradeoff evaluate`.")

contours = tradeoff.contour_table(report)
if contours.empty or contours["test FLOPs"].isna().all():
    st.warning("No checkpoint reaches any quality level within its step budget yet.")
else:
    st.altair_chart(tradeoff.contour_chart(contours), width="content")
    st.caption("A level a checkpoint never reaches within its steps has no point; an interval's open end "
               "(some resamples never reach the level) is left undrawn. The same against parameters:")
    st.altair_chart(tradeoff.contour_chart(tradeoff.contour_table(report, x="parameters"), x="parameters"),
                    width="content")

st.subheader("Short routes against long ones")
st.caption("The same contours on each third of the test pairs by optimal hop count "
           + ", ".join(f"({name}: {d['hops'][0]}-{d['hops'][1]} hops)" for name, d in
                       report["report"]["difficulty"].items())
           + ". Does thinking longer stand in for size on short routes but not on long ones?")
for line in report.get("difficulty", []):
    st.markdown(f"- {line}")
by_difficulty = tradeoff.contour_table(report, subsets=("short", "medium", "long"))
for fam in sorted(by_difficulty["family"].unique()) if not by_difficulty.empty else []:
    st.markdown(f"**{fam}**")
    st.altair_chart(tradeoff.contour_chart(by_difficulty[by_difficulty["family"] == fam], column="pairs", width=240),
                    width="content")

st.subheader("Every fit")
st.dataframe(tradeoff.slope_table(report), hide_index=True, width="stretch")

st.subheader("The curves the contours are cut from")
curves = tradeoff.curve_table(report)
c1, c2 = st.columns(2)
c1.altair_chart(tradeoff.curve_chart(curves, "valid", width=260), width="content")
c2.altair_chart(tradeoff.curve_chart(curves, "mean ratio (all pairs)", width=260), width="content")

st.subheader("Every point, by checkpoint")
st.dataframe(contours, hide_index=True, width="stretch")
sweep = report.get("sweep", {})
st.caption("Each checkpoint is its card's command, into checkpoints/sweep/: "
           + "; ".join(f"{fam}: every size {spec['paths']:,} training paths" for fam, spec in sweep.items())
           + ". `load_model(name, directory='checkpoints/sweep')` loads one.")
with st.expander("Commands"):
    st.code("\n".join(cmd for spec in sweep.values() for cmd in spec.get("commands", [])), language="bash")
