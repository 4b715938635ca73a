"""The Test-time compute page's effort view: how much work exact search does per query against the bytes a city
it reads, for A*, ALT and the learned lower bounds with their controls (results/guided-frontier.json, made by
`python -m experiments.guided_frontier`)."""

from __future__ import annotations

from pathlib import Path

import altair as alt
import pandas as pd

from citypath.app import reports

REPORT = Path("results/guided-frontier.json")
KINDS = {"classical": "classical (nothing learned)", "guided": "learned bound", "control": "control"}


def load_report(path: Path = REPORT) -> tuple[dict, str | None]:
    """The report, or ({}, why not)."""
    return reports.load_report(path, "python -m experiments.guided_frontier", "rows")


def effort_table(report: dict) -> pd.DataFrame:
    """One row per search: bytes a city, expansions and CPU ms per query (means with 95% intervals), exact share."""
    rows = []
    for name, r in report.get("rows", {}).items():
        e, ms, ok = r["expansions"], r["ms"], r["exact"]
        rows.append({"row": name, "kind": KINDS.get(r["kind"], r["kind"]), "bytes a city": r["bytes_per_city"],
                     "stored bytes a city": r["stored_bytes_per_city"], "parameters": r["parameters"],
                     "expansions": e["value"], "expansions_lo": e["ci95"][0], "expansions_hi": e["ci95"][1],
                     "x A* expansions": r["vs_astar"]["expansions"]["value"], "CPU ms": ms["value"],
                     "exact": ok["value"], "certified": r.get("certified", True)})
    return pd.DataFrame(rows)


def effort_chart(table: pd.DataFrame, y: str = "expansions", height: int = 300) -> alt.Chart:
    """Expansions (or CPU ms) per query against bytes a city, one point per search, its 95% interval."""
    base = alt.Chart(table).encode(
        x=alt.X("bytes a city:Q", scale=alt.Scale(type="symlog"), title="bytes a city the query reads"),
        color=alt.Color("kind:N", title=None), shape=alt.Shape("certified:N", title="certified exact"))
    points = base.mark_point(size=90, filled=True).encode(
        y=alt.Y(f"{y}:Q", title=f"{y} per query (mean)", axis=alt.Axis(format="~s")),
        tooltip=["row", "kind", "bytes a city", "stored bytes a city", "parameters",
                 alt.Tooltip("expansions:Q", format=".1f"), alt.Tooltip("x A* expansions:Q", format=".3f"),
                 alt.Tooltip("CPU ms:Q", format=".2f"), alt.Tooltip("exact:Q", format=".1%")])
    out = points
    if y == "expansions":
        out = base.mark_rule().encode(y="expansions_lo:Q", y2="expansions_hi:Q") + points
    labels = base.mark_text(align="left", dx=7, dy=-7, fontSize=11).encode(y=f"{y}:Q", text="row:N")
    return (out + labels).properties(height=height)
