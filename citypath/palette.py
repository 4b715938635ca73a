"""Every colour the app draws with, in one place: each model's own colour and line pattern, and the map's fixed ones.

A model keeps one style (a colour and a line pattern) everywhere: the map, the player's strip, legend and step
charts, the Test-time compute, Training and Dataset pages, and the PNG and GIF exports. Every shipped
checkpoint and every row of the evaluation (the classical algorithms and the scaffold controls included) has a
style of its own in `ROWS`, so no two of them share one on any view, whatever is compared; a model not listed
(a checkpoint trained under a new name, a test's stand-in) takes a style that no model of its view uses
(`assign`), the same one on every view where that one is free.

How the palette was made (tests/test_palette.py checks each property):

- 35 colours (the first 26 made at once, the last 9 added one by one by the same rule when ALT and the
  guided family came), none near the colours that mean something else on the map (the optimal path's green, the illegal
  jumps' red, the endpoints' black, the land, the water, the city dots), none too pale for a thin line on the
  land. It starts from four of Okabe & Ito's (blue, orange, reddish purple, sky blue); each next one is the sRGB
  colour farthest, by CIEDE2000, from those taken, in normal vision and under simulated protanopia,
  deuteranopia and tritanopia (Machado et al. 2009, full severity), the first ten weighted to the simulated
  vision. Any two differ by at least 7.5 (CIEDE2000) in normal vision.
- A line pattern for every colour (solid, dashed, dotted), chosen so that two colours closer than 8 under any
  of the three simulations never share a pattern: for a colour-blind reader the pattern tells them apart. The
  solid ones come first and go to the learned models; the classical rows are dashed and the scaffold controls
  dotted, as the Test-time compute page draws those kinds.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# -- the map's fixed colours (not a model's) ----------------------------------------------
OPTIMAL_RGB = (0, 158, 115)          # the optimal (Dijkstra) path: Okabe-Ito bluish green
ILLEGAL_RGB = (220, 38, 38)          # an illegal jump (longer than the radius): red, for nothing else
SOURCE_RGB = (17, 17, 17)
TARGET_RGB = (17, 17, 17)
CITY_RGBA = (90, 100, 120, 70)
STATE_FILL_RGBA = (241, 238, 230, 255)
STATE_LINE_RGBA = (160, 160, 170, 255)
WATER_RGB = (221, 231, 239)

# A line pattern: (dash, gap) in line widths; None is solid. Every renderer reads it from here (deck.gl's
# PathStyleExtension takes it as is; SVG and matplotlib multiply by the line's width).
DASHES: dict[str, tuple[float, float] | None] = {"solid": None, "dashed": (3.0, 1.8), "dotted": (1.0, 1.4)}


@dataclass(frozen=True)
class Style:
    """One model's colour and line pattern."""

    hex: str                     # "#0072b2"
    dash: str = "solid"          # a key of DASHES

    @property
    def rgb(self) -> tuple[int, int, int]:
        return tuple(int(self.hex[i:i + 2], 16) for i in (1, 3, 5))

    @property
    def pattern(self) -> tuple[float, float] | None:
        """(dash, gap) in line widths; None for a solid line."""
        return DASHES[self.dash]

    def dasharray(self, width: float) -> str:
        """The pattern for SVG's stroke-dasharray at a line `width` (px); "" for solid."""
        p = self.pattern
        return "" if p is None else f"{p[0] * width:g} {p[1] * width:g}"

    def linestyle(self) -> str | tuple:
        """The pattern as a matplotlib linestyle (its dashes scale with the line's width)."""
        p = self.pattern
        return "solid" if p is None else (0, p)


PALETTE: tuple[Style, ...] = (
    # solid: the learned models (first the four of Okabe & Ito)
    Style("#0072b2"), Style("#e69f00"), Style("#cc79a7"), Style("#616d0c"), Style("#793d3d"), Style("#613d92"),
    Style("#aab66d"), Style("#006d6d"), Style("#9286f3"), Style("#b6316d"), Style("#f36d86"), Style("#926186"),
    # dashed: the classical rows, then more learned models
    Style("#56b4e9", "dashed"), Style("#9e7955", "dashed"), Style("#aa79c2", "dashed"), Style("#e79eb6", "dashed"),
    Style("#9e499e", "dashed"), Style("#c28618", "dashed"), Style("#92c249", "dashed"), Style("#6d3d6d", "dashed"),
    Style("#b6619e", "dashed"),
    # dotted: the scaffold controls, then two for models not listed in ROWS
    Style("#aa9249", "dotted"), Style("#6d6ddb", "dotted"), Style("#ff79ce", "dotted"), Style("#922455", "dotted"),
    Style("#795586", "dotted"),
    # added for ALT and the guided family, each the candidate farthest (CIEDE2000) from all above under the same
    # constraints: dashed for the ALT rows, solid for the guided checkpoints, dotted for a control, then spares
    Style("#789c90", "dashed"), Style("#545448", "dashed"), Style("#e400fc", "dashed"), Style("#c0b4a8"),
    Style("#0c00fc"), Style("#fc6018", "dotted"), Style("#a8b4cc"), Style("#9c2400", "dashed"),
    Style("#247848", "dotted"),
)

# Who has which style: ROWS[i] draws with PALETTE[i]. Every checkpoint in checkpoints/ and every row of
# results/eval.json is here (a test says which one is missing); the default comparison comes first.
ROWS: tuple[str, ...] = (
    "bellman-tiny", "post-rnn-large", "gru-small", "refiner-small", "gnn-small", "looped-small", "memory-search",
    "memory-small", "gru-large", "post-rnn-small", "refiner-small-long", "gru-small-plain",
    "dijkstra", "astar", "anytime-astar", "bellman-ford", "bellman-ford-dense",
    "depth-lm-small", "depth-lm-large", "depth-lm-small-unlooped", "depth-lm-large-unlooped",
    "bellman-tiny.scaffold", "looped-small.scaffold", "memory-search.scaffold",
    "guided-m4.scaffold", "guided-geo.scaffold", "alt-1", "alt-4", "alt-16", "guided-m4", "guided-geo",
    "guided-m16.scaffold", "guided-m16",
)
FIXED: dict[str, Style] = dict(zip(ROWS, PALETTE))
SPARE: tuple[Style, ...] = PALETTE[len(ROWS):]
_BY_RGB: dict[tuple[int, int, int], Style] = {s.rgb: s for s in PALETTE}


def assign(names: Iterable[str]) -> dict[str, Style]:
    """Each model of one view (in order, repeats ignored) and its style: never two the same while the view has
    no more models than the palette has styles.

    A model of ROWS has its own style; any other takes, from a start fixed by its name, the first style no
    model of the view has: a spare one first, then one of a listed model that is not in the view."""
    names = list(dict.fromkeys(names))
    out = {n: FIXED[n] for n in names if n in FIXED}
    taken = set(out.values())
    for name in names:
        if name in out:
            continue
        start = zlib.crc32(name.encode())
        pools = (SPARE, PALETTE[:len(ROWS)])
        style = next((pool[(start + i) % len(pool)] for pool in pools for i in range(len(pool))
                      if pool[(start + i) % len(pool)] not in taken), None)
        if style is None:                     # more models than styles: repeat, from the same start
            style = PALETTE[start % len(PALETTE)]
        out[name] = style
        taken.add(style)
    return {n: out[n] for n in names}


def style(name: str) -> Style:
    """The style of one model drawn alone (or beside models of ROWS only)."""
    return assign([name])[name]


def colours(names: Iterable[str]) -> dict[str, tuple[int, int, int]]:
    """`assign` as RGB triples (the map layers' and exports' colour of each model)."""
    return {n: s.rgb for n, s in assign(names).items()}


def style_of(rgb: Sequence[int] | None) -> Style:
    """The style a colour of the palette comes with (its line pattern); any other colour is drawn solid."""
    if rgb is None:
        return PALETTE[0]
    key = tuple(int(c) for c in rgb[:3])
    return _BY_RGB.get(key) or Style("#" + "".join(f"{c:02x}" for c in key))


def altair_scale(names: Sequence[str]) -> dict:
    """Altair/Vega-Lite colour scale arguments for a chart whose series are `names` (one view): each its own
    colour, the same as everywhere else. `alt.Scale(**altair_scale(names))`."""
    styles = assign(names)
    return {"domain": list(styles), "range": [s.hex for s in styles.values()]}


def altair_dash(names: Sequence[str], width: float = 2.0) -> dict:
    """Altair/Vega-Lite strokeDash scale arguments: each series' line pattern at a line `width` (px), as on the
    map ([1, 0] is solid). `alt.Scale(**altair_dash(names))`."""
    styles = assign(names)
    return {"domain": list(styles),
            "range": [[p[0] * width, p[1] * width] if (p := s.pattern) else [1, 0] for s in styles.values()]}
