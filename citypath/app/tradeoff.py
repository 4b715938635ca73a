"""The "Is a step worth a parameter?" page's figures: iso-quality contours of test-time against training compute
(results/tradeoff.json, made by `python -m experiments.tradeoff evaluate`), one small multiple per family, and
the curves they are cut from."""

from __future__ import annotations

from pathlib import Path

import altair as alt
import pandas as pd

from citypath.app import reports

REPORT = Path("results/tradeoff.json")
SUBSETS = {"all": "all pairs", "short": "short routes", "medium": "medium routes", "long": "long routes"}


def load_report(path: Path = REPORT) -> tuple[dict, str | None]:
    """The sweep's results, or ({}, why not)."""
    return reports.load_report(path, "python -m experiments.tradeoff evaluate", "models")


def contour_table(report: dict, subsets: tuple[str, ...] = ("all",), x: str = "train_flops") -> pd.DataFrame:
    """One row per (family, pairs, level, checkpoint): its training compute and parameters, the least step
    count reaching the level and the test-time FLOPs per query there with its 95% interval (an open end is
    None). A checkpoint that never reaches a level within its steps has no test-time value."""
    rows = []
    rep = report.get("report") or {}
    levels = rep.get("levels", [])
    for fam, f in (rep.get("families") or {}).items():
        for sub in subsets:
            block = f["by_parameters"] if x == "parameters" else f.get(sub, {})
            for order, key in enumerate(levels):
                c = block.get(key)
                if not c:
                    continue
                for p in c["points"]:
                    lo, hi = p["ci95"]
                    rows.append({"family": fam, "pairs": SUBSETS.get(sub, sub), "level": c["label"],
                                 "level_order": order, "checkpoint": p["name"], "size": p["size"],
                                 "parameters": p["parameters"], "training FLOPs": p["train_flops"],
                                 "step": p["step"], "max step": p["max_step"], "test FLOPs": p["test_flops"],
                                 "test_lo": lo, "test_hi": hi, "reached in resamples": p["reached_share"]})
    return pd.DataFrame(rows)


def slope_table(report: dict, subsets: tuple[str, ...] = ("all", "short", "medium", "long")) -> pd.DataFrame:
    """Per family, pairs and level: the fitted log-log slope with its interval and the sentence, or why none."""
    rows = []
    rep = report.get("report") or {}
    for fam, f in (rep.get("families") or {}).items():
        for sub in subsets:
            for key in rep.get("levels", []):
                c = f.get(sub, {}).get(key)
                if not c:
                    continue
                fit = c.get("fit")
                rows.append({"family": fam, "pairs": SUBSETS.get(sub, sub), "level": c["label"],
                             "slope": fit["slope"] if fit else None,
                             "slope 95%": f"{fit['ci95'][0]:+.2f} to {fit['ci95'][1]:+.2f}"
                             if fit and fit["ci95"][0] is not None else "",
                             "in words": fit["sentence"] if fit else c.get("why_no_fit", "")})
    return pd.DataFrame(rows)


def curve_table(report: dict) -> pd.DataFrame:
    """The raw curves: every checkpoint at every step count, valid share and mean ratio over all pairs against
    test-time FLOPs per query."""
    rows = []
    for name, m in (report.get("models") or {}).items():
        for k, s in m["by_steps"].items():
            rows.append({"family": m["family"], "checkpoint": name, "parameters": m["num_parameters"],
                         "training FLOPs": m["train_flops"], "step": int(k), "test FLOPs": s["flops_total"],
                         "valid": s["valid"], "mean ratio (all pairs)": s["length_ratio_all_mean"],
                         "CPU ms": s.get("cpu_ms_total_mean")})
    return pd.DataFrame(rows)


def contour_chart(table: pd.DataFrame, x: str = "training FLOPs", column: str = "family",
                  width: int = 300, height: int = 260) -> alt.Chart:
    """Least test-time FLOPs per query against `x`, a line per quality level, small multiples by `column`."""
    reached = table.dropna(subset=["test FLOPs"])
    base = alt.Chart(reached).encode(
        x=alt.X(f"{x}:Q", scale=alt.Scale(type="log"), axis=alt.Axis(format="~s"),
                title=x if x != "training FLOPs" else "training compute (FLOPs)"),
        color=alt.Color("level:N", sort=alt.SortField("level_order"), title="quality level",
                        scale=alt.Scale(scheme="tableau10")))
    lines = base.mark_line(point=alt.OverlayMarkDef(size=60, filled=True)).encode(
        y=alt.Y("test FLOPs:Q", scale=alt.Scale(type="log"), axis=alt.Axis(format="~s"),
                title="least test-time FLOPs per query"),
        tooltip=["checkpoint", "size", alt.Tooltip("parameters:Q", format=","),
                 alt.Tooltip("training FLOPs:Q", format=".3~s"), "level", "step",
                 alt.Tooltip("test FLOPs:Q", format=".3~s"), alt.Tooltip("test_lo:Q", format=".3~s"),
                 alt.Tooltip("test_hi:Q", format=".3~s")])
    bars = base.mark_rule(opacity=0.6).encode(y="test_lo:Q", y2="test_hi:Q")
    return (bars + lines).properties(width=width, height=height).facet(
        column=alt.Column(f"{column}:N", title=None)).resolve_scale(x="independent")


def curve_chart(table: pd.DataFrame, y: str = "mean ratio (all pairs)", width: int = 300,
                height: int = 240) -> alt.Chart:
    """Quality against test-time FLOPs per query, one line per checkpoint (its step counts), by family."""
    return alt.Chart(table).mark_line(point=True).encode(
        x=alt.X("test FLOPs:Q", scale=alt.Scale(type="log"), axis=alt.Axis(format="~s"),
                title="test-time FLOPs per query"),
        y=alt.Y(f"{y}:Q", scale=alt.Scale(zero=False), title=y),
        color=alt.Color("checkpoint:N", sort=alt.SortField("training FLOPs")),
        tooltip=["checkpoint", "step", alt.Tooltip("test FLOPs:Q", format=".3~s"), alt.Tooltip(f"{y}:Q", format=".4f"),
                 alt.Tooltip("CPU ms:Q", format=".1f")],
    ).properties(width=width, height=height).facet(column=alt.Column("family:N", title=None)).resolve_scale(
        x="independent", color="independent")
