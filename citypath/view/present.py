"""How a replay's numbers read: metric cards, compute text, equal-compute budgets, halting text, the legend.

One presentation for the app's player strip, the exports and the CLI: a number is formatted here once.
Nothing here imports streamlit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from citypath.cost import human as human_flops
from citypath.metrics import METRICS, Metric
from citypath.replay import Replay


@dataclass(frozen=True)
class MetricCard:
    """One `st.metric`: label, value, delta vs the previous step, and whether down is good."""

    label: str
    value: str
    delta: str | None
    delta_color: str  # "normal" (up is good), "inverse" (down is good) or "off"
    help: str


# The cards of a step, in order: what a model's route is like at that step (`citypath.metrics.METRICS`).
CARDS = ("valid", "illegal_jumps", "reaches_target", "hops", "length_km", "length_pct", "frechet_km", "ms")


def metric_cards_by_step(metrics: pd.DataFrame, steps: Iterable[int], *,
                         rows: list[dict] | None = None) -> list[list[MetricCard]]:
    """The cards of each step k of `steps` (1-based, clamped), with deltas against step k-1 (none at step 1),
    reading the table once (not a pandas row per card);
    `rows`: `records(metrics)` if the caller has them already."""
    if metrics is None or len(metrics) == 0:
        return [[] for _ in steps]
    rows = records(metrics) if rows is None else rows
    out = []
    for k in steps:
        k = min(max(k, 1), len(rows))
        out.append(_cards(rows[k - 1], rows[k - 2] if k > 1 else None))
    return out


def records(df: pd.DataFrame) -> list[dict]:
    """The rows of `df` as dicts of Python values, like `df.to_dict("records")` at a fraction of its cost
    (a column at a time, not a pandas row at a time)."""
    cols = [str(c) for c in df.columns]
    return [dict(zip(cols, values)) for values in zip(*(df[c].tolist() for c in df.columns))]


def _cards(row, prev) -> list[MetricCard]:
    """The cards of a metrics row (a pandas row or a dict) against the previous step's (None at step 1)."""
    return [_card(METRICS[name], row, prev) for name in CARDS]


def _card(m: Metric, row, prev) -> MetricCard:
    """A metric's card: its value as `Metric.read` writes it (NOT_ARRIVED for a figure against the optimal route
    when the route did not arrive) and its change since the step before, where `Metric.shows_change` allows."""
    value = m.read(row)
    if m.kind == "ms":                   # a step's own time: nothing to compare with the step before
        return MetricCard(m.label, value, None, "off", m.description)
    delta = None
    if m.kind == "flag":
        same = prev is None or bool(row[m.name]) == bool(prev[m.name])
        delta = None if same else ("+ now yes" if bool(row[m.name]) else "- now no")
    elif m.shows_change(row, prev):
        a, b = float(row[m.name]), float(prev[m.name])
        if np.isfinite(a) and np.isfinite(b):
            text = m.change(a - b)
            # No delta that reads as nothing at the shown precision ("-0 km", "+0.0 pt").
            delta = text if any(ch in "123456789" for ch in text) else None
    if m.judged_valid_only:
        judged = prev is not None and bool(row["valid"]) and bool(prev["valid"])
        colour = ({"lower": "inverse", "higher": "normal"}.get(m.better, "off")) if judged else "off"
    else:
        colour = {"lower": "inverse", "higher": "normal"}.get(m.better, "off")
    return MetricCard(m.label, value, delta, colour, m.description)


def compute_text(row) -> str:
    """'12.3 Mops · 45 ms': cumulative compute of a metrics row."""
    fl = float(row["flops_total"]) if "flops_total" in row else float("nan")
    ms = float(row["ms_total"]) if "ms_total" in row else float("nan")
    return f"{human_flops(fl)} · {ms:,.0f} ms" if np.isfinite(ms) else human_flops(fl)


# -- equal compute ------------------------------------------------------------------------

BUDGETS = (1e6, 3e6, 1e7, 3e7, 1e8, 3e8, 1e9, 3e9, 1e10, 3e10)   # FLOPs per query, log scale


@dataclass(frozen=True)
class BudgetStep:
    """How far one model gets on a compute budget: the steps that fit and what they spent."""

    step: int            # 0 when not even step 1 fits
    flops: float         # FLOPs spent by those steps (step 1's cost when step is 0)
    capped: bool         # every computed step fits: more steps might fit too
    text: str


def steps_within(replay: Replay, budget_flops: float) -> BudgetStep:
    """The most steps of `replay` whose summed FLOPs stay within `budget_flops`."""
    m = replay.metrics
    if m is None or not len(m) or "flops_total" not in m or not np.isfinite(m["flops_total"]).any():
        return BudgetStep(0, float("nan"), False, "this model does not report its compute")
    total = m["flops_total"].to_numpy(dtype=np.float64)
    fits = np.flatnonzero(np.isfinite(total) & (total <= budget_flops))
    if not len(fits):
        return BudgetStep(0, float(total[0]), False,
                          f"even one step costs {human_flops(total[0])}, "
                          f"over the budget of {human_flops(budget_flops)}")
    k = int(fits[-1]) + 1
    capped = k == len(total)
    more = f" (all {k} computed steps; more may fit)" if capped else ""
    return BudgetStep(k, float(total[k - 1]), capped,
                      f"{k} step{'s' if k != 1 else ''} fit in {human_flops(budget_flops)}: "
                      f"{human_flops(total[k - 1])} spent{more}")


def budget_note(budget_flops: float) -> str:
    """The player's note in equal-compute mode."""
    return (f"Equal compute: {human_flops(budget_flops)} per query. Each model shows the most refinement steps that "
            "fit in the budget (operations, one count for every model); turn Equal compute off in the sidebar to "
            "play steps.")


# -- halting ------------------------------------------------------------------------------

def halted_at(replay: Replay) -> int | None:
    """The last step that spent compute when later ones spent none (the model stopped thinking), else None."""
    f = np.asarray(replay.step_flops, dtype=np.float64)
    if not len(f) or not np.isfinite(f).all():
        return None
    working = np.flatnonzero(f > 0)
    if not len(working) or working[-1] == len(f) - 1:
        return None
    return int(working[-1]) + 1


def halting_text(replay: Replay) -> str | None:
    """'converged at step 7: steps 8-48 repeat its answer and spend nothing', or None."""
    k = halted_at(replay)
    if k is None:
        return None
    rest = f"step {k + 1}" if k + 1 == len(replay.step_flops) else f"steps {k + 1}–{len(replay.step_flops)}"
    return f"stopped thinking after step {k}: {rest} repeat its answer and spend nothing"


def legend_html(entries: list[tuple[str, str, str]]) -> str:
    """A one-line legend: (css colour, label, style) where style is 'line', 'ghost', 'dash' or 'dot'."""
    chips = []
    for colour, label, style in entries:
        if style == "dot":
            mark = f'<span style="display:inline-block;width:10px;height:10px;border-radius:50%;background:{colour};' \
                   'border:2px solid white;box-shadow:0 0 0 1px #999;margin-right:5px"></span>'
        else:
            border = {"line": "solid", "ghost": "solid", "dash": "dashed"}[style]
            opacity = "0.35" if style == "ghost" else "1"
            mark = f'<span style="display:inline-block;width:22px;height:0;border-top:4px {border} {colour};' \
                   f'opacity:{opacity};vertical-align:middle;margin-right:5px"></span>'
        chips.append(f'<span style="margin-right:16px;white-space:nowrap">{mark}{label}</span>')
    return f'<div style="font-size:0.85rem;line-height:1.8">{"".join(chips)}</div>'
