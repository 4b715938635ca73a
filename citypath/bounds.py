"""Lower bounds on road km to a target, for exact best-first search: the straight line, landmark tables
(ALT), and certified per-city potentials.

A table F of integer metres, one row per city and d columns, whose every column is 1-Lipschitz on the graph
(|F[u, k] - F[v, k]| <= floor(1000 x km(u, v)) on every edge) bounds the road distance from below:
h(v, t) = max_k |F[v, k] - F[t, k]| / 1000 <= road km(v, t) (the triangle inequality along the shortest
route), and h is consistent (|h(u, t) - h(v, t)| <= km(u, v)). So A* with max(straight line, h) stays
exact and expands no more cities than with the straight line alone (Goldberg & Harrelson 2005, "ALT").
Landmark distances are such columns by construction; `certify` makes any table one: each column is replaced
by its largest 1-Lipschitz minorant, min over v of (F[v] + road metres(u, v)), one Dijkstra from a
super-source per column. Integer metres over integer (floored) edge lengths keep the certificate exact in
floating point: every sum Dijkstra forms is an integer below 2**53.

    >>> F = certify(np.zeros((g.n_cities, 2), dtype=np.int64), g)     # doctest: +SKIP
    >>> h = lower_bound_km(g, dst, F)                                   # doctest: +SKIP
"""

from __future__ import annotations

import threading

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra

from citypath import cost
from citypath.geo import haversine_km
from citypath.graph import CityGraph

BYTES_PER_COLUMN = 4   # a column of a table is stored as int32 metres: 4 bytes per city


class UncertifiedTable(ValueError):
    """A potential table breaks the Lipschitz condition on some edge: A* with it could return a longer route."""


def metre_weights(g: CityGraph) -> sp.csr_matrix:
    """The graph's adjacency with every edge length floored to whole metres (never longer than the edge)."""
    w = g.adjacency.copy()
    w.data = np.floor(w.data * 1000.0)
    if w.nnz and w.data.min() <= 0:
        raise UncertifiedTable("an edge shorter than 1 m: integer metres cannot bound it")
    return w


def certify(table_m: np.ndarray, g: CityGraph) -> np.ndarray:
    """The largest table <= `table_m` (rounded to whole metres) whose columns are 1-Lipschitz on `g`: column by
    column, min over v of (table[v] + road metres(u, v)), by one Dijkstra from a super-source. Returns int32
    metres, shape (n, d); checked edge by edge before it is returned."""
    f = np.rint(np.asarray(table_m, dtype=np.float64))
    if f.ndim != 2 or f.shape[0] != g.n_cities or not np.isfinite(f).all():
        raise UncertifiedTable(f"a table of shape {f.shape} with finite values is needed, one row per city "
                               f"({g.n_cities})")
    n = g.n_cities
    w = metre_weights(g).tocoo()
    rows, cols = np.concatenate([w.row, np.full(n, n)]), np.concatenate([w.col, np.arange(n)])
    out = np.empty(f.shape, dtype=np.int32)
    for k in range(f.shape[1]):
        low = f[:, k].min()
        # Super-source n -> v costs table[v] - low + 1 (>= 1: scipy reads a stored 0 as a missing edge).
        aug = sp.csr_matrix((np.concatenate([w.data, f[:, k] - low + 1.0]), (rows, cols)), shape=(n + 1, n + 1))
        dist = dijkstra(aug, indices=n)[:n]
        out[:, k] = np.rint(dist - 1.0 + low).astype(np.int32)
    check_table(out, g)
    return out


def check_table(table_m: np.ndarray, g: CityGraph) -> None:
    """Raise UncertifiedTable unless every column of `table_m` is 1-Lipschitz in floored metres on every edge."""
    w = metre_weights(g).tocoo()
    if not len(w.data) or not table_m.shape[1]:
        return
    step = np.abs(table_m[w.row].astype(np.int64) - table_m[w.col].astype(np.int64)).max(axis=1)
    worst = int(np.argmax(step - w.data))
    if step[worst] > w.data[worst]:
        raise UncertifiedTable(f"edge {w.row[worst]}-{w.col[worst]}: the table changes by {step[worst]:.0f} m "
                               f"along {w.data[worst]:.0f} m")


def farthest_landmarks(g: CityGraph, k: int) -> tuple[np.ndarray, np.ndarray]:
    """ALT's landmarks by farthest-point sampling (the city farthest by road from city 0 first, then each next
    the farthest from those chosen) and their road metres to every city: (ids (k,), table (n, k) int32).
    Cities a landmark cannot reach get the largest finite value of its column (their bound is then loose,
    never wrong: the component has no route to them)."""
    w = metre_weights(g)
    first = dijkstra(w, indices=0)
    chosen = [int(np.argmax(np.where(np.isfinite(first), first, -1.0)))]
    cols = [dijkstra(w, indices=chosen[0])]
    nearest = cols[0].copy()
    while len(chosen) < k:
        nxt = int(np.argmax(np.where(np.isfinite(nearest), nearest, -1.0)))
        chosen.append(nxt)
        cols.append(dijkstra(w, indices=nxt))
        nearest = np.minimum(nearest, cols[-1])
    table = np.stack(cols, axis=1) if cols else np.zeros((g.n_cities, 0))
    for j in range(table.shape[1]):
        col = table[:, j]
        col[~np.isfinite(col)] = col[np.isfinite(col)].max()
    return np.asarray(chosen[:k], dtype=np.int64), np.rint(table[:, :k]).astype(np.int32)


_LANDMARKS: dict[tuple[str, int], np.ndarray] = {}
_LOCK = threading.Lock()


def landmark_table(g: CityGraph, k: int) -> np.ndarray:
    """`farthest_landmarks(g, k)`'s table, computed once per graph and k in this process (the preprocessing)."""
    key = (g.fingerprint, k)
    with _LOCK:
        if key not in _LANDMARKS:
            _LANDMARKS[key] = farthest_landmarks(g, k)[1]
        return _LANDMARKS[key]


def preprocessing_ops(g: CityGraph, columns: int) -> float:
    """Operations to build a table of `columns` road-distance columns: one Dijkstra per column (as counted for
    the dijkstra row)."""
    n, m = g.n_cities, g.adjacency.nnz
    return columns * (cost.fill(2 * n) + cost.relax(m) + cost.heap(n, n))


def lower_bound_km(g: CityGraph, dst: int, table_m: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Per city, a lower bound on its road km to `dst`: the straight line, or the larger of it and the table's
    bound. Returns (bounds (n,), operations spent)."""
    h = haversine_km(g.lat, g.lon, g.lat[dst], g.lon[dst])
    ops = cost.haversine(g.n_cities)
    if table_m is not None and table_m.shape[1]:
        h = np.maximum(h, np.abs(table_m - table_m[dst]).max(axis=1) / 1000.0)
        ops += 3.0 * table_m.size + cost.fill(g.n_cities)     # subtract, abs, max per entry; the larger per city
    return h, ops
