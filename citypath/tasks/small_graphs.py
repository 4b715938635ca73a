"""The small training graphs several families learn on: random geometric graphs and regional sub-graphs.

A `SmallGraph` is a few dozen to a few hundred nodes with edges in radii: either points in a square
joined within one radius (edge length = distance in radii), or the cities near a random city of the
default graph, joined as the default graph joins them (its ids kept, so held-out pairs stay held
out). The bellman and looped families learn Bellman-Ford's rounds on unions of them
(`bellman_ford_rounds`); the memory and memsearch families walk and search regional ones. Batches
stay a pure function of the rng they are given (`citypath.training.batch_rng`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from citypath.geo import haversine_km
from citypath.graph import CityGraph, radius_edges
from citypath.split import train_mask


@dataclass(frozen=True)
class GraphsConfig:
    """How the small training graphs are drawn (stored in the card beside the model config)."""

    graphs_per_batch: int = 8
    min_nodes: int = 12
    max_nodes: int = 160
    min_degree: float = 3.0        # random geometric graphs: expected neighbours per node in U(min, max)
    max_degree: float = 24.0
    region_share: float = 0.5      # share of graphs cut from the default graph (the rest are synthetic)
    max_free_rounds: int = 24
    max_grad_rounds: int = 3
    l1: float = 1e-4               # L1 penalty on every weight, per supervised city, to the end of the run


@dataclass
class SmallGraph:
    n: int
    src: np.ndarray        # edge senders
    dst: np.ndarray        # edge receivers
    w: np.ndarray          # edge length in radii
    ids: np.ndarray | None  # default-graph ids of the nodes (regions) or None (synthetic)
    xy: np.ndarray | None = None   # synthetic graphs: positions in radii


def synthetic_graph(rng: np.random.Generator, gc: GraphsConfig) -> SmallGraph:
    n = int(rng.integers(gc.min_nodes, gc.max_nodes + 1))
    degree = rng.uniform(gc.min_degree, gc.max_degree)
    side = np.sqrt(n * np.pi / degree)             # expected neighbours within radius 1 ~ degree
    xy = rng.uniform(0, side, (n, 2))
    diff = xy[:, None] - xy[None]
    dist = np.sqrt((diff ** 2).sum(-1))
    i, j = np.nonzero((dist <= 1.0) & ~np.eye(n, dtype=bool))
    return _largest(SmallGraph(n, i, j, np.maximum(dist[i, j], 1e-6), None, xy))


def region_graph(g: CityGraph, rng: np.random.Generator, gc: GraphsConfig) -> SmallGraph:
    centre = int(rng.integers(g.n_cities))
    near = np.argsort(haversine_km(g.lat, g.lon, g.lat[centre], g.lon[centre]))[: gc.max_nodes * 3]
    near = np.sort(rng.choice(near, int(rng.integers(gc.min_nodes, gc.max_nodes + 1)), replace=False))
    adj = radius_edges(g.lat[near], g.lon[near], g.radius_km).tocoo()
    return _largest(SmallGraph(len(near), adj.row.astype(np.int64), adj.col.astype(np.int64),
                               adj.data / g.radius_km, near))


def _largest(sg: SmallGraph) -> SmallGraph:
    """The largest connected component, renumbered."""
    adj = sp.csr_matrix((np.ones(len(sg.src)), (sg.src, sg.dst)), shape=(sg.n, sg.n))
    _, comp = connected_components(adj, directed=False)
    keep = comp == np.argmax(np.bincount(comp))
    new = np.cumsum(keep) - 1
    e = keep[sg.src] & keep[sg.dst]
    return SmallGraph(int(keep.sum()), new[sg.src[e]], new[sg.dst[e]], sg.w[e],
                      None if sg.ids is None else sg.ids[keep], None if sg.xy is None else sg.xy[keep])


def bellman_ford_rounds(sg: SmallGraph, target: int, rounds: int) -> np.ndarray:
    """(rounds, n): Bellman-Ford's estimates after 1..rounds synchronous rounds from `target` (inf: unreached)."""
    d = np.full(sg.n, np.inf)
    d[target] = 0.0
    out = np.empty((rounds, sg.n))
    for r in range(rounds):
        new = np.full(sg.n, np.inf)
        np.minimum.at(new, sg.dst, d[sg.src] + sg.w)
        d = np.minimum(d, new)
        out[r] = d
    return out


def straight_radii(g: CityGraph, sg: SmallGraph, node: int) -> np.ndarray:
    """Straight-line distance (radii) of every node of a small graph to `node`."""
    if sg.ids is not None:
        return haversine_km(g.lat[sg.ids], g.lon[sg.ids], g.lat[sg.ids[node]], g.lon[sg.ids[node]]) / g.radius_km
    return np.sqrt(((sg.xy - sg.xy[node]) ** 2).sum(axis=1))


def draw_query(sg: SmallGraph, rng: np.random.Generator, *, exclude_validation: bool = False) -> tuple[int, int]:
    """A random (source, target) of the small graph whose default-graph pair is not held out (nor, with
    `exclude_validation`, a validation pair)."""
    for _ in range(100):
        t, s = int(rng.integers(sg.n)), int(rng.integers(sg.n))
        if sg.ids is None or s == t or train_mask(sg.ids[s], sg.ids[t], exclude_validation=exclude_validation):
            return s, t
    return t, t
