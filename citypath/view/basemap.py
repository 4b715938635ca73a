"""US state outlines that ship with a PyPI package, so every map in citypath draws offline.

The geometry is `bokeh_sampledata.us_states` (one record per state: NaN-separated rings of
lat/lon). Alaska and Hawaii are skipped (the graph is the contiguous US). Rings are simplified
once with shapely (topology-preserving, ~0.02 degrees, about 2 km) and kept in memory, which
cuts the ~14,000 vertices to a few thousand: small enough to resend with every map frame.

    >>> rings = state_rings()                 # doctest: +SKIP
    >>> rings[0].name, rings[0].lonlat.shape  # doctest: +SKIP
    ('Nevada', (63, 2))
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import shapely

SKIPPED_STATES = ("AK", "HI")
SIMPLIFY_DEGREES = 0.02


@dataclass(frozen=True)
class StateRing:
    """One closed ring of a state outline (a state may have several: islands, lakes)."""

    code: str
    name: str
    lonlat: np.ndarray  # (n, 2) float: lon, lat


def _split_rings(lats: np.ndarray, lons: np.ndarray) -> list[np.ndarray]:
    breaks = np.flatnonzero(np.isnan(lats) | np.isnan(lons))
    out, start = [], 0
    for stop in [*breaks.tolist(), len(lats)]:
        if stop - start >= 3:
            out.append(np.column_stack([lons[start:stop], lats[start:stop]]))
        start = stop + 1
    return out


@lru_cache(maxsize=4)
def state_rings(tolerance_deg: float = SIMPLIFY_DEGREES) -> tuple[StateRing, ...]:
    """Simplified outlines of the 48 contiguous states and DC, one entry per ring."""
    from bokeh_sampledata.us_states import data  # imported lazily: ~0.2 s, only maps need it

    rings = []
    for code in sorted(data):
        if code in SKIPPED_STATES:
            continue
        rec = data[code]
        for ring in _split_rings(np.asarray(rec["lats"], float), np.asarray(rec["lons"], float)):
            poly = shapely.Polygon(ring)
            simple = shapely.simplify(poly, tolerance_deg, preserve_topology=True)
            coords = np.asarray(simple.exterior.coords) if not simple.is_empty else ring
            if len(coords) >= 4:
                rings.append(StateRing(code, str(rec["name"]), np.round(coords, 4)))
    return tuple(rings)


def rings_in_box(west: float, south: float, east: float, north: float,
                 tolerance_deg: float = SIMPLIFY_DEGREES) -> list[StateRing]:
    """The rings that touch a lon/lat box (for maps of a small region)."""
    out = []
    for r in state_rings(tolerance_deg):
        lon, lat = r.lonlat[:, 0], r.lonlat[:, 1]
        if lon.max() >= west and lon.min() <= east and lat.max() >= south and lat.min() <= north:
            out.append(r)
    return out
