"""Path-quality metrics: the post's three (illegal jumps, bounded length, reaching the target) and more.

A path is a sequence of city ids. Anything else in it (a negative or out-of-range id, a
float, None) is an *unknown id*: kept in the count of cities, never a legal hop. Every
metric has a one-sentence definition below; `evaluate_paths` computes all of them for a
batch at once (vectorised), and `evaluate_path` is that for one path.

    >>> m = evaluate_path(g, g.shortest_path(s, t), s, t)  # doctest: +SKIP
    >>> m["valid"], m["length_ratio"]                       # doctest: +SKIP
    (True, 1.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import shapely

from citypath.geo import haversine_km, midpoint, project_aeqd_km
from citypath.graph import CityGraph

DEFAULT_TOLERANCE = 0.05
# Relative slack under which a route counts as optimal: float rounding of km sums, not a real detour.
OPTIMAL_RTOL = 1e-9
# GEOS's discrete Fréchet needs memory for every pair of points; no real route has this many.
FRECHET_MAX_CITIES = 5_000
# What a figure that compares a route with the optimal one reads when the route does not arrive: its length and
# shape are computed (`evaluate_paths`), but against the optimal route they would read as a route shorter than
# the shortest (a walk that stops half way is "-50%", one through unknown ids "-100%"). Shown as this instead,
# everywhere (the app's strip and charts, the exports, the CLI).
NOT_ARRIVED = "—, did not arrive"
NOT_ARRIVED_SHORT = "—"   # in a table's cell (its footnote says why: NOT_ARRIVED_NOTE)
NOT_ARRIVED_NOTE = "—: the route did not arrive at the target, so it is not compared with the optimal route"


def _field(row, name: str, default):
    try:
        return row[name]
    except (KeyError, IndexError, TypeError):
        return default


def arrived(row) -> bool:
    """The route of a metrics row (a dict, a pandas row) arrives: it starts at the source, ends at the target and
    every entry is a city of the graph (a column the row lacks is taken as met). Only such a route is compared
    with the optimal one (`Metric.arrived_only`); one with illegal jumps arrives, and its cards say so."""
    return (bool(_field(row, "reaches_target", True)) and bool(_field(row, "starts_at_source", True))
            and not _field(row, "unknown_ids", 0))


@dataclass(frozen=True)
class Metric:
    """One metric, once: its column, how it reads and which way is better. Everything that shows a metric (the
    app's cards, the player's strip and charts, the PNG's table, the docs) reads it from `METRICS`."""

    name: str                 # the column of `evaluate_paths` (or of a replay's metrics)
    label: str                # on a card: "Length"
    short: str                # a table's column: "km"
    kind: str                 # how a value reads: "flag" (yes/no), "count", "km", "pct", "ms" or "ratio"
    better: str               # "higher", "lower" or "" (neither)
    description: str          # one sentence: the definition
    judged_valid_only: bool = False   # better or worse only between valid routes (a garbage path shrinking
    #                                   is not progress)
    chart: str = ""           # the player's chart title, if the player charts it over the steps
    decimals: int = 0         # the chart's y-axis decimals
    arrived_only: bool = False        # compares the route with the optimal one: shown (value, delta, chart point)
    #                                   only for a route that reaches the target, else NOT_ARRIVED
    delta_arrived_only: bool = False  # its change between two steps is shown only when both routes arrive

    def text(self, value, *, unit: bool = True) -> str:
        """The value as it reads ("1,234 km", "+3.1%", "yes"); "–" when undefined."""
        if self.kind == "flag":
            return "yes" if value else "no"
        v = float(value)
        if not np.isfinite(v):
            return "–"
        if self.kind == "count":
            return f"{int(v)}"
        if self.kind == "km":
            return f"{v:,.0f} km" if unit else f"{v:,.0f}"
        if self.kind == "pct":
            return f"{v:+.1f}%"
        if self.kind == "ms":
            return f"{v:.1f} ms" if unit else f"{v:.1f}"
        return f"{v:.3f}"

    def read(self, row, *, unit: bool = True, short: bool = False) -> str:
        """The value of a metrics row as it reads, with the arrival rule: NOT_ARRIVED (NOT_ARRIVED_SHORT in a
        table's cell) for a metric that compares with the optimal route when the route did not arrive."""
        if self.arrived_only and not arrived(row):
            return NOT_ARRIVED_SHORT if short else NOT_ARRIVED
        return self.text(row[self.name], unit=unit)

    def value(self, row) -> float:
        """The value of a metrics row as a number, NaN where `read` says it did not arrive."""
        if self.arrived_only and not arrived(row):
            return float("nan")
        return float(row[self.name])

    def shows_change(self, row, prev) -> bool:
        """Whether a change from `prev` to `row` is shown at all (the arrival rule: both routes arrive)."""
        if prev is None:
            return False
        if self.arrived_only or self.delta_arrived_only:
            return arrived(row) and arrived(prev)
        return True

    def change(self, delta: float) -> str:
        """A change between two steps as it reads ("+2", "-120 km", "+0.4 pt")."""
        return {"count": f"{delta:+.0f}", "km": f"{delta:+,.0f} km", "pct": f"{delta:+.1f} pt"}.get(
            self.kind, f"{delta:+.3f}")


METRICS = {m.name: m for m in [
    Metric("cities", "Cities", "cities", "count", "", "Number of entries in the path."),
    Metric("hops", "Hops", "hops", "count", "",
           "Number of consecutive pairs in the path (cities - 1, or 0 for an empty path)."),
    Metric("unknown_ids", "Unknown ids", "unknown", "count", "lower",
           "Number of entries that are not city ids of the graph."),
    Metric("illegal_jumps", "Illegal jumps", "illegal", "count", "lower",
           "Number of hops between cities farther apart than the graph's radius_km, "
           "counting every hop to or from an unknown id as illegal.", chart="illegal jumps", decimals=0),
    Metric("starts_at_source", "Starts at source", "starts", "flag", "higher",
           "The path's first entry is the source city."),
    Metric("reaches_target", "Reaches target", "reaches", "flag", "higher",
           "The path's last entry is the target city."),
    Metric("valid", "Valid", "valid", "flag", "higher",
           "The path starts at the source, reaches the target and has no illegal jumps."),
    Metric("length_km", "Length", "km", "km", "lower",
           "Sum of the great-circle lengths of the path's hops between known cities, in km.", judged_valid_only=True,
           delta_arrived_only=True),
    Metric("optimal_km", "Optimal", "optimal km", "km", "",
           "Length of the optimal (Dijkstra) path from source to target, in km."),
    Metric("length_ratio", "Length ratio", "ratio", "ratio", "lower",
           "length_km / optimal_km (1.0 for the optimal path; for src == dst, 1.0 if the path "
           "has no length, else inf); shown only for a route that reaches the target.", judged_valid_only=True,
           arrived_only=True),
    Metric("length_pct", "vs optimal", "vs optimal", "pct", "lower",
           "How much longer than the optimal (Dijkstra) path, in % ((length_ratio - 1) x 100); shown only for a route "
           "that reaches the target (one that stops short is not shorter than optimal).",
           judged_valid_only=True, chart="length vs optimal (%)", decimals=3, arrived_only=True),
    Metric("bounded", "Bounded", "bounded", "flag", "higher",
           "The path starts at the source, reaches the target and length_ratio <= 1 + tolerance."),
    Metric("exact_match", "Exact", "exact", "flag", "higher",
           "The path is identical to the optimal path, city by city."),
    Metric("optimal_length", "Optimal length", "optimal", "flag", "higher",
           "The path is valid and no longer than the optimal path (length_ratio <= 1 + 1e-9): "
           "an equally short route counts, so ties between optimal routes do not."),
    Metric("frechet_km", "Fréchet", "Fréchet km", "km", "lower",
           "Discrete Fréchet distance in km between the path's known cities and the optimal path "
           "(azimuthal equidistant projection about the pair's midpoint; NaN for no known city, or over 5,000); "
           "shown only for a route that reaches the target.",
           judged_valid_only=True, chart="Fréchet distance (km)", decimals=3, arrived_only=True),
    Metric("ms", "Step time", "ms", "ms", "",
           "Measured wall time of this step; a batch computed for several steps is split over the "
           "steps it served, in proportion to their operations."),
]}
# The per-path metrics `evaluate_paths` computes (the others are a replay's: per step).
METRIC_DEFINITIONS = {name: m.description for name, m in METRICS.items() if name not in ("length_pct", "ms")}


def as_ids(path, n_cities: int) -> np.ndarray:
    """A path as int64 ids, with -1 for every entry that is not a city id in 0..n_cities-1."""
    try:
        arr = path if isinstance(path, np.ndarray) else np.asarray(list(path))
    except (ValueError, TypeError, OverflowError, UnicodeError):
        arr = np.zeros(0, dtype=object)  # ragged or undecodable: checked entry by entry below
    if arr.ndim == 1 and arr.dtype.kind in "iu" and len(arr) == len(path):
        ids = arr.astype(np.int64, copy=True)
    else:
        ids = np.array([int(c) if isinstance(c, (int, np.integer)) and not isinstance(c, (bool, np.bool_))
                        and -2**62 < int(c) < 2**62 else -1 for c in list(path)], dtype=np.int64)
    ids[(ids < 0) | (ids >= n_cities)] = -1
    return ids


def hop_legality(g: CityGraph, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(km, illegal) of hops a[i] -> b[i] given as ids with -1 for unknown entries (see `as_ids`).

    km is the great-circle length where both ends are known cities (0 otherwise); a hop is
    illegal when an end is unknown or it is longer than the graph's radius_km. The one
    definition of a legal hop: metrics, map layers and the verifier all use it.
    """
    both = (a >= 0) & (b >= 0)
    km = np.zeros(len(a))
    km[both] = haversine_km(g.lat[a[both]], g.lon[a[both]], g.lat[b[both]], g.lon[b[both]])
    return km, ~both | (km > g.radius_km)


def _frechet_km(g: CityGraph, paths: list[np.ndarray], refs: list[np.ndarray],
                centres: np.ndarray) -> np.ndarray:
    """Discrete Fréchet distance per (path, reference) pair, in km, via shapely in a local projection."""
    def lines(seqs):
        idx, pid = [], []
        for i, s in enumerate(seqs):
            s = s[s >= 0]
            if len(s) > FRECHET_MAX_CITIES:
                s = s[:0]                        # far too long to be a route: NaN, not gigabytes
            if len(s) == 1:
                s = np.r_[s, s]                  # a one-city path is a degenerate line
            idx.append(s)
            pid.append(np.full(len(s), i))
        idx, pid = np.concatenate(idx), np.concatenate(pid)
        x, y = project_aeqd_km(g.lat[idx], g.lon[idx], centres[pid, 0], centres[pid, 1])
        out = np.full(len(seqs), None, dtype=object)
        present = np.unique(pid)
        if len(present):
            _, compact = np.unique(pid, return_inverse=True)
            out[present] = shapely.linestrings(np.column_stack([x, y]), indices=compact)
        return out

    with np.errstate(invalid="ignore"):
        return np.asarray(shapely.frechet_distance(lines(paths), lines(refs)), dtype=np.float64)


def evaluate_paths(g: CityGraph, paths: Sequence, srcs: Sequence[int], dsts: Sequence[int], *,
                   tolerance: float = DEFAULT_TOLERANCE) -> pd.DataFrame:
    """All metrics for a batch of paths, one row per path (columns as in METRIC_DEFINITIONS)."""
    if not (len(paths) == len(srcs) == len(dsts)):
        raise ValueError(f"got {len(paths)} paths for {len(srcs)} sources and {len(dsts)} targets")
    srcs = np.array([g.check_id(s) for s in srcs], dtype=np.int64)
    dsts = np.array([g.check_id(t) for t in dsts], dtype=np.int64)
    n = len(paths)
    ids = [as_ids(p, g.n_cities) for p in paths]
    lens = np.array([len(p) for p in ids], dtype=np.int64)
    flat = np.concatenate(ids) if n else np.zeros(0, np.int64)
    owner = np.repeat(np.arange(n), lens)

    known = flat >= 0
    a, b = flat[:-1], flat[1:]
    is_hop = owner[:-1] == owner[1:]
    both = is_hop & known[:-1] & known[1:]
    d, bad = hop_legality(g, a, b)
    illegal = is_hop & bad
    hop_owner = owner[:-1]

    illegal_jumps = np.bincount(hop_owner[illegal], minlength=n)
    length_km = np.bincount(hop_owner[both], weights=d[both], minlength=n).astype(np.float64)
    unknown_ids = np.bincount(owner[~known], minlength=n)
    first = np.array([p[0] if len(p) else -2 for p in ids], dtype=np.int64)
    last = np.array([p[-1] if len(p) else -2 for p in ids], dtype=np.int64)
    starts, reaches = first == srcs, last == dsts

    optimal = [np.asarray(g.shortest_path(s, t)) for s, t in zip(srcs.tolist(), dsts.tolist())]
    optimal_km = np.array([g.shortest_path_length_km(s, t) for s, t in zip(srcs.tolist(), dsts.tolist())])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(optimal_km > 0, length_km / np.where(optimal_km > 0, optimal_km, 1.0),
                         np.where(length_km > 0, np.inf, 1.0))
    exact = np.array([len(p) == len(o) and bool(np.all(p == o)) for p, o in zip(ids, optimal)], dtype=bool)
    centres = np.array([midpoint(g.lat[s], g.lon[s], g.lat[t], g.lon[t]) for s, t in zip(srcs, dsts)]).reshape(n, 2)
    frechet = _frechet_km(g, ids, optimal, centres) if n else np.zeros(0)

    valid = starts & reaches & (illegal_jumps == 0)
    bounded = starts & reaches & (ratio <= 1 + tolerance)
    return pd.DataFrame({
        "src": srcs, "dst": dsts, "cities": lens, "hops": np.maximum(lens - 1, 0),
        "unknown_ids": unknown_ids, "illegal_jumps": illegal_jumps,
        "starts_at_source": starts, "reaches_target": reaches, "valid": valid,
        "length_km": length_km, "optimal_km": optimal_km, "length_ratio": ratio,
        "bounded": bounded,
        # The post's three checks together: no illegal jump, bounded length, reaches the target.
        "passes_three_checks": bounded & (illegal_jumps == 0),
        "exact_match": exact, "optimal_length": valid & (ratio <= 1 + OPTIMAL_RTOL), "frechet_km": frechet,
    })


def evaluate_path(g: CityGraph, path: Sequence, src: int, dst: int, *,
                  tolerance: float = DEFAULT_TOLERANCE) -> dict:
    """All metrics of one path from src to dst, as a dict of plain Python values.

    >>> evaluate_path(g, [s, t], s, t)["illegal_jumps"]  # doctest: +SKIP
    1
    """
    row = evaluate_paths(g, [path], [src], [dst], tolerance=tolerance).iloc[0]
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}


# -- single metrics, for readers who want one number ----------------------------------

def illegal_jumps(g: CityGraph, path: Sequence) -> int:
    """Number of hops between cities farther apart than radius_km, hops touching an unknown id included."""
    ids = as_ids(path, g.n_cities)
    if len(ids) < 2:
        return 0
    return int(hop_legality(g, ids[:-1], ids[1:])[1].sum())


def verifier_key(g: CityGraph, path: Sequence, src: int, dst: int) -> tuple:
    """The one order in which candidate answers are ranked ("best so far"): smaller is better.

    Valid paths first; among invalid ones, those reaching the target, then fewer illegal jumps;
    then length in km; then fewer hops. Every family ranks its own answers with this key, so
    "more steps never make the answer worse" means the same thing for all of them.
    """
    ids = as_ids(path, g.n_cities)
    hops = max(len(ids) - 1, 0)
    km, illegal = hop_legality(g, ids[:-1], ids[1:])
    bad = int(illegal.sum())
    starts = len(ids) > 0 and ids[0] == src
    reaches = len(ids) > 0 and ids[-1] == dst
    is_valid = starts and reaches and bad == 0
    return (not is_valid, not reaches, bad, float(km.sum()), hops)


def verifier(g: CityGraph):
    """`verifier_key` bound to a graph: key(path, src, dst)."""
    return lambda path, src, dst: verifier_key(g, path, src, dst)


def starts_at_source(path: Sequence, src: int) -> bool:
    """The path's first entry is the source city."""
    return len(path) > 0 and path[0] == src


def reaches_target(path: Sequence, dst: int) -> bool:
    """The path's last entry is the target city."""
    return len(path) > 0 and path[-1] == dst


def valid(g: CityGraph, path: Sequence, src: int, dst: int) -> bool:
    """The path starts at the source, reaches the target and has no illegal jumps."""
    return starts_at_source(path, src) and reaches_target(path, dst) and illegal_jumps(g, path) == 0


def length_ratio(g: CityGraph, path: Sequence, src: int, dst: int) -> float:
    """Length of the path's hops between known cities divided by the optimal src->dst length."""
    return float(evaluate_path(g, path, src, dst)["length_ratio"])


def bounded(g: CityGraph, path: Sequence, src: int, dst: int, tolerance: float = DEFAULT_TOLERANCE) -> bool:
    """The path joins src to dst and its length_ratio is at most 1 + tolerance."""
    return bool(evaluate_path(g, path, src, dst, tolerance=tolerance)["bounded"])


def exact_match(g: CityGraph, path: Sequence, src: int, dst: int) -> bool:
    """The path equals the optimal (Dijkstra) path city by city."""
    return list(as_ids(path, g.n_cities)) == g.shortest_path(src, dst)


def frechet_km(g: CityGraph, path: Sequence, src: int, dst: int) -> float:
    """Discrete Fréchet distance in km between the path and the optimal src->dst path."""
    return float(evaluate_path(g, path, src, dst)["frechet_km"])
