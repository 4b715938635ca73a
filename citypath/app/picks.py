"""Choosing a pair: a click on a city, a random held-out pair, the committed interesting pairs.

No streamlit here; `citypath.app.callbacks` applies these to the session.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from citypath.app.url import CLICK_MODES
from citypath.graph import CityGraph, CityNotFound
from citypath.split import sample_pairs


def apply_click(source: int, target: int, city: int, mode: str, next_end: str = "source") -> tuple[int, int, str]:
    """Set one end of the route from a clicked city; returns (source, target, next_end).

    mode "source"/"target" always sets that end; "alternate" sets `next_end` and flips it,
    so two clicks choose a whole new route.
    """
    if mode not in CLICK_MODES:
        raise ValueError(f"click mode {mode!r}: use one of {', '.join(CLICK_MODES)}")
    end = next_end if mode == "alternate" else mode
    if end == "source":
        source = city
    else:
        target = city
    return source, target, ("target" if end == "source" else "source")


def random_heldout_pair(g: CityGraph, rng: np.random.Generator, *, heldout: bool = True,
                        tries: int = 100_000) -> tuple[int, int]:
    """A uniformly random pair of distinct cities, held out from training unless heldout=False."""
    if g.n_cities < 2:
        raise ValueError("a graph needs at least two cities to pick a pair")
    if not heldout:   # any pair of distinct cities, whichever side of the split
        for _ in range(max(1, tries // 1000)):
            a, b = rng.integers(0, g.n_cities, 1000), rng.integers(0, g.n_cities, 1000)
            hit = np.flatnonzero(a != b)
            if len(hit):
                return int(a[hit[0]]), int(b[hit[0]])
    try:
        s, t = sample_pairs(g.n_cities, 1, rng, heldout=True, batch=1000, max_batches=max(1, tries // 1000))
    except ValueError:
        raise ValueError("no held-out pair found in this graph") from None
    return int(s[0]), int(t[0])


def route_text(source: str, target: str) -> str:
    """The sidebar's line for the route (markdown; the labels' markdown characters escaped)."""
    esc = lambda t: re.sub(r"([\\`*_\[\]<>#|$~])", r"\\\1", t)  # noqa: E731
    return f":material/trip_origin: **From** {esc(source)}  \n:material/flag: **To** {esc(target)}"


# -- interesting pairs -------------------------------------------------------------------

INTERESTING_PATH = Path(__file__).resolve().parents[2] / "results" / "interesting-pairs.json"


@dataclass(frozen=True)
class Pick:
    """One interesting pair from `python -m citypath.pairs`, with why it is interesting."""

    kind: str
    source: int
    target: int
    why: str

    def label(self, g: CityGraph) -> str:
        return f"{g.label(self.source)} → {g.label(self.target)}"


def interesting_pairs(g: CityGraph, path: str | Path | None = None) -> tuple[list[Pick], str | None]:
    """The committed interesting pairs that exist on `g` (ids by label), and a reason when there are none."""
    import json

    path = path or INTERESTING_PATH
    try:
        data = json.loads(Path(path).read_text())
        entries = data["interesting"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return [], f"no interesting pairs ({Path(path).name}: {type(e).__name__})"
    picks = []
    for e in entries:
        try:
            src, dst = g.find_city(e["source_label"]), g.find_city(e["target_label"])
        except (CityNotFound, KeyError, TypeError, ValueError):
            continue          # a pair of another graph (e.g. a state subset)
        picks.append(Pick(str(e.get("kind", "")), src, dst, str(e.get("why", ""))))
    return picks, (None if picks else "none of the committed interesting pairs is on this graph")
