"""The Test-time compute page's loops section: the depth-recurrent LMs' NLL and pass rate against loops, beside
best-of-N of the post's RNN and of the unlooped control at equal operations (results/depthlm-loops.json, made
by `python -m experiments.depthlm_loops`)."""

from __future__ import annotations

from pathlib import Path

import altair as alt
import pandas as pd

from citypath import palette
from citypath.app import reports
from citypath.app.tables import compute_axis, compute_domain

REPORT = Path("results/depthlm-loops.json")


def load_report(path: Path = REPORT) -> tuple[dict, str | None]:
    """The report, or ({}, why not)."""
    return reports.load_report(path, "python -m experiments.depthlm_loops", "sizes")


def loops_table(report: dict) -> pd.DataFrame:
    """One row per (model, loop count): NLL per city and the three-check pass rate with their intervals, and the
    operations of one decode."""
    rows = []
    for e in report.get("sizes", {}).values():
        for r in e["loops"]:
            nll, ok = r["nll_per_city"], r["passes_three_checks"]
            rows.append({"model": e["model"], "loops": r["loops"], "nll": nll["value"], "nll_lo": nll["ci95"][0],
                         "nll_hi": nll["ci95"][1], "passes": ok["value"], "passes_lo": ok["ci95"][0],
                         "passes_hi": ok["ci95"][1], "ops": r["ops_mean"], "how": "loops (greedy)"})
    return pd.DataFrame(rows)


def best_of_table(report: dict) -> pd.DataFrame:
    """One row per (model, N) of best-of-N: the pass rate and the operations of the N decodes together."""
    rows = []
    for e in report.get("sizes", {}).values():
        for name, curve in e["best_of"].items():
            for r in curve:
                ok = r["passes_three_checks"]
                rows.append({"model": f"{name}{SAMPLES}", "n": r["n"], "passes": ok["value"],
                             "passes_lo": ok["ci95"][0], "passes_hi": ok["ci95"][1], "ops": r["ops_mean"],
                             "how": "samples (best of N)"})
    return pd.DataFrame(rows)


SAMPLES = " best-of-N"


def colour_scale(series: pd.Series) -> alt.Scale:
    """Each line in its model's own colour (citypath.palette): "post-rnn-small best-of-N" is post-rnn-small's, and
    no two lines of the chart share one."""
    labels = sorted(set(series.tolist()))
    styles = palette.assign([label.removesuffix(SAMPLES) for label in labels])
    return alt.Scale(domain=labels, range=[styles[label.removesuffix(SAMPLES)].hex for label in labels])


def nll_chart(loops: pd.DataFrame, height: int = 280) -> alt.Chart:
    """NLL per city on the optimal paths against loops (log x), one line per model, its 95% band."""
    base = alt.Chart(loops).encode(
        x=alt.X("loops:Q", scale=alt.Scale(type="log", base=2), title="loops per token"),
        color=alt.Color("model:N", title=None, scale=colour_scale(loops["model"])))
    band = base.mark_area(opacity=0.15).encode(y=alt.Y("nll_lo:Q", title="NLL per city (nats)"), y2="nll_hi:Q")
    line = base.mark_line(point=True).encode(
        y="nll:Q", tooltip=["model", "loops", alt.Tooltip("nll:Q", format=".3f")])
    return (band + line).properties(height=height)


def passes_chart(loops: pd.DataFrame, best_of: pd.DataFrame, height: int = 280) -> alt.Chart:
    """The three-check pass rate against operations per query (log x): loops solid, best-of-N dashed."""
    both = pd.concat([loops.assign(label=loops["loops"].astype(str) + " loops"),
                      best_of.assign(label="N=" + best_of["n"].astype(str))], ignore_index=True)
    base = alt.Chart(both).encode(
        x=alt.X("ops:Q", scale=alt.Scale(type="log", domain=compute_domain(both["ops"]), nice=False),
                title="operations per query (one cost)", axis=alt.Axis(**compute_axis(both["ops"], "flops_total"))),
        color=alt.Color("model:N", title=None, scale=colour_scale(both["model"])),
        strokeDash=alt.StrokeDash("how:N", title=None, sort=["loops (greedy)", "samples (best of N)"]))
    rule = base.mark_rule(opacity=0.4).encode(y=alt.Y("passes_lo:Q", axis=alt.Axis(format="%"),
                                                      title="passes all three checks"), y2="passes_hi:Q")
    line = base.mark_line(point=True).encode(
        y="passes:Q", tooltip=["model", "label", alt.Tooltip("passes:Q", format=".1%"),
                               alt.Tooltip("ops:Q", format=".3s")])
    return (rule + line).properties(height=height)
