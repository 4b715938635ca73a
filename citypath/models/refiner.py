"""The refiner: a tiny walker that re-draws its route again and again, each time guided by the last one.

Step 0 is a directionally correct draft: the cities nearest to evenly spaced points on the
great circle from source to target (it may jump over gaps). Every step then applies the
same weight-shared block to (source, target, previous path) and walks a new path from the
source: at each hop a small MLP scores the current city's graph neighbours (a pointer among
at most `candidates` of them, the ones nearest the target) from coordinate features only, and
the walk takes the best one. The features re-inject source, target and coordinates at every
step ("recall") and describe the previous path as a guide: where it goes 1, 2, 4 and 8 hops
ahead of the walker and whether that stretch of it was legal. A void that the previous walk
only discovered when it reached it (a lake, a desert) is therefore visible from the start of
the next walk, which can turn early; that is what the extra steps buy.

Legality holds by construction: every hop is to a graph neighbour, a city is never visited
twice, and as soon as the target is within the radius the walk jumps to it (the direct hop is
then optimal, by the triangle inequality). What the model must learn is to *reach* the
target, and by a short route; report reach-target and length ratio as the real measures.

No city has an embedding. Each city carries a fixed descriptor computed from the graph's
geometry when it is loaded: for 16 compass directions, how far one can progress that way in
1, 2, 4 and 8 hops (a max-plus recursion over the edges). It shows walls and dead ends a few
hops ahead, so a policy learned in one region transfers to another.

Training (`train_refiner`) is DAgger with a progressive schedule: a pool of pairs is walked
by the current model again and again, each walk guided by that pair's previous walk, for up
to `max_steps` walks; every decision is trained towards the cities with small regret
(hop km + remaining optimal km from one Dijkstra per target), soft-maxed over near ties.
Pairs are sampled from the training side of the split only (`heldout_mask`).

Compute is counted by the one convention (`citypath.cost`) as the walks spend it; once a walk
repeats, the pair is not walked again and later steps cost nothing. The reach descriptors and the
KD-tree are built once per graph, not per query.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import nn

from citypath import cost
from citypath.cache import cached_arrays, config_key
from citypath.geo import EARTH_RADIUS_KM, haversine_km, unit_vectors
from citypath.graph import CityGraph
from citypath.metrics import verifier
from citypath.models.base import CountedModel

# Bump when reach_descriptor's arithmetic changes, so cached descriptors are recomputed.
REACH_VERSION = 1
GC_KM_OPS = 14.0      # great-circle km of unit vectors: difference (3), dot (5), sqrt, halve, clip (2), arcsin, scale
BEARING_OPS = 12.0    # a bearing: the target read in the east and north frame (two 3-dots: 10), arctan2, the offset
KD_LEVEL_OPS = 8.0    # a KD-tree query, per level of log2 n: a coordinate compare and a squared distance

SIZES = {
    "small": {"hidden": 96, "layers": 2},      # ~20k parameters: the shipped refiner
    "medium": {"hidden": 192, "layers": 2},    # ~58k: does capacity help?
    "tiny": {"hidden": 32, "layers": 1},       # for tests
}


@dataclass
class RefinerConfig:
    """Hyper-parameters of the walker; stored in the card, enough to rebuild the model."""

    hidden: int = 96
    layers: int = 2
    candidates: int = 64            # neighbours scored per hop (those nearest the target)
    sectors: int = 16               # compass directions of the reach descriptor
    reach_hops: tuple[int, ...] = (1, 2, 4, 8)
    lookahead: tuple[int, ...] = (1, 2, 4, 8, 16)   # guide vertices ahead of the walker
    guide_window: int = 12          # guide vertices searched to place the walker on the guide
    max_steps: int = 8              # refinement steps per pair in training
    # training only
    tau_km: float = 3.0             # softness of the regret targets
    expert_fraction: float = 0.15   # share of training over which expert moves fade out
    sources_per_target: int = 4     # training pairs sharing one Dijkstra

    @property
    def n_context(self) -> int:
        return 12 + 4 * len(self.lookahead)

    @property
    def n_candidate(self) -> int:
        return 6 + len(self.lookahead) + 1 + self.sectors * len(self.reach_hops)


# -- per-graph tables ------------------------------------------------------------------

class GraphTables:
    """What the walker needs from a graph, computed once per graph and shared (read-only)."""

    def __init__(self, g: CityGraph, config: RefinerConfig):
        self.radius_km = g.radius_km
        self.indptr = g.adjacency.indptr.astype(np.int64)
        self.indices = g.adjacency.indices.astype(np.int64)
        self.xyz = unit_vectors(g.lat, g.lon)
        lat, lon = np.radians(g.lat), np.radians(g.lon)
        self.east = np.column_stack([-np.sin(lon), np.cos(lon), np.zeros_like(lon)])
        self.north = np.column_stack([-np.sin(lat) * np.cos(lon), -np.sin(lat) * np.sin(lon), np.cos(lat)])
        self.lat, self.lon = g.lat, g.lon
        self.lat_lon = np.column_stack([(g.lat - 37.0) / 10.0, (g.lon + 96.0) / 25.0]).astype(np.float32)
        self.tree = cKDTree(self.xyz)
        self.reach = cached_reach_descriptor(g, self, config)  # (n, levels * sectors), float32 in [0, 1]
        self.n = g.n_cities

    def bearing(self, at: np.ndarray, to_xyz: np.ndarray) -> np.ndarray:
        """Initial bearing (radians, 0 = north, clockwise) from city `at` towards points `to_xyz`."""
        return np.arctan2(np.einsum("...k,...k->...", to_xyz, self.east[at]),
                          np.einsum("...k,...k->...", to_xyz, self.north[at]))


def gc_km(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Great-circle km between unit vectors (broadcasts), via the chord (accurate at short range)."""
    diff = a - b
    chord = np.sqrt(np.einsum("...k,...k->...", diff, diff))
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.clip(chord / 2.0, 0.0, 1.0))


def reach_descriptor(t: GraphTables, config: RefinerConfig) -> np.ndarray:
    """For every city and compass sector: best progress that way within k hops, divided by k * radius.

    reach_k(c, θ) = max(0, max over neighbours n of [proj_θ(c→n) + reach_{k-1}(n, θ)]), with the
    same bearing θ at every city (drift over 8 hops of ≤ 90 km is a few degrees).
    """
    n = len(t.indptr) - 1
    rows = np.repeat(np.arange(n), np.diff(t.indptr))
    cols = t.indices
    km = gc_km(t.xyz[rows], t.xyz[cols]).astype(np.float32)
    bearing = t.bearing(rows, t.xyz[cols]).astype(np.float32)
    starts = t.indptr[:-1]
    has = np.diff(t.indptr) > 0
    top = max(config.reach_hops)
    out = np.zeros((n, len(config.reach_hops), config.sectors), np.float32)
    for s in range(config.sectors):
        theta = 2 * np.pi * s / config.sectors
        proj = km * np.cos(bearing - theta).astype(np.float32)
        r = np.zeros(n, np.float32)
        for k in range(1, top + 1):
            best = np.zeros(n, np.float32)
            if len(cols):
                best[has] = np.maximum.reduceat(proj + r[cols], starts[has])
            r = np.maximum(r, np.maximum(best, 0.0))
            if k in config.reach_hops:
                out[:, config.reach_hops.index(k), s] = r / (k * t.radius_km)
    return out.reshape(n, -1)


def cached_reach_descriptor(g: CityGraph, t: GraphTables, config: RefinerConfig) -> np.ndarray:
    """`reach_descriptor`, kept in the disk cache: a few seconds to compute, milliseconds to read.

    Keyed by the graph's fingerprint and the descriptor's settings; an unwritable or corrupt
    cache just means computing it again.
    """
    key = config_key(g.fingerprint, config.sectors, list(config.reach_hops), REACH_VERSION)
    return cached_arrays("refiner-reach", key, lambda: {"reach": reach_descriptor(t, config)},
                         meta={"graph": g.fingerprint}, valid=lambda a: a["reach"].shape[0] == g.n_cities)["reach"]


_TABLES: dict[tuple[str, str], GraphTables] = {}
_TABLES_LOCK = threading.Lock()


def graph_tables(g: CityGraph, config: RefinerConfig) -> GraphTables:
    """The tables for graph `g` (built on first use, a few seconds on the default graph)."""
    key = (g.fingerprint, json.dumps([config.sectors, list(config.reach_hops)]))
    with _TABLES_LOCK:
        if key not in _TABLES:
            _TABLES[key] = GraphTables(g, config)
        return _TABLES[key]


def draft_ops(n: int, points: int) -> float:
    """Operations of `draft_path` with `points` great-circle points (the ends included) on n cities: the straight
    km, each inner point's spherical interpolation (~15) and nearest city (a KD-tree query), the sequence with
    repeats dropped."""
    inner = max(points - 2, 0)
    return GC_KM_OPS + 4.0 + cost.fill(points) + inner * (15.0 + KD_LEVEL_OPS * math.log2(n)) + cost.fill(3 * points)


def draft_path(t: GraphTables, src: int, dst: int, ops: np.ndarray | None = None) -> np.ndarray:
    """Step 0: the cities nearest to evenly spaced points on the great circle (legal or not). With `ops` (one
    float) its operations are added to it (`draft_ops`)."""
    a, b = t.xyz[src], t.xyz[dst]
    d = float(gc_km(a, b))
    if src == dst:
        return np.array([src])
    k = max(2, int(math.ceil(d / (0.8 * t.radius_km))) + 1)
    if ops is not None:
        ops += draft_ops(t.n, k)
    omega = d / EARTH_RADIUS_KM
    f = np.linspace(0.0, 1.0, k)[1:-1]
    if omega < 1e-9:
        pts = np.repeat(a[None], len(f), 0)
    else:  # spherical interpolation
        pts = (np.sin((1 - f) * omega)[:, None] * a + np.sin(f * omega)[:, None] * b) / np.sin(omega)
    _, mid = t.tree.query(pts)
    seq = np.r_[src, np.asarray(mid, np.int64), dst]
    keep = np.r_[True, seq[1:] != seq[:-1]]
    return seq[keep]


# -- the weight-shared block ------------------------------------------------------------

class Scorer(nn.Module):
    """Scores each candidate city from its own features and the walker's context features."""

    def __init__(self, config: RefinerConfig):
        super().__init__()
        self.config = config
        dims = [config.n_candidate + config.n_context] + [config.hidden] * config.layers
        layers: list[nn.Module] = []
        for i in range(config.layers):
            layers += [nn.Linear(dims[i], dims[i + 1]), nn.SiLU()]
        layers.append(nn.Linear(dims[-1], 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, cand: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        """cand (..., M, Fc), ctx (..., Fx) -> scores (..., M)."""
        ctx = ctx.unsqueeze(-2).expand(*cand.shape[:-1], ctx.shape[-1])
        return self.mlp(torch.cat([cand, ctx], dim=-1)).squeeze(-1)


class NumpyScorer:
    """The same MLP in numpy for inference: per-hop matrices are tiny, so torch's call overhead dominates."""

    def __init__(self, scorer: Scorer):
        lin = [m for m in scorer.mlp if isinstance(m, nn.Linear)]
        self.weights = [(m.weight.detach().numpy().T.copy(), m.bias.detach().numpy().copy()) for m in lin]

    def __call__(self, cand: np.ndarray, ctx: np.ndarray) -> np.ndarray:
        (w0, b0), rest = self.weights[0], self.weights[1:]
        a, m, fc = cand.shape
        # First layer split in two, so the context is multiplied once per decision, not per candidate.
        h = _matmul(cand.reshape(a * m, fc), w0[:fc]).reshape(a, m, -1) + (_matmul(ctx, w0[fc:]) + b0)[:, None, :]
        h = h.reshape(a * m, -1)
        for w, b in rest:
            with np.errstate(over="ignore"):    # exp(-h) -> inf for h << 0 gives SiLU's correct 0
                h = h / (1.0 + np.exp(-h))
            h = _matmul(h, w) + b
        return h.reshape(a, m)



def scorer_ops(config: RefinerConfig, decisions: int, columns: int) -> float:
    """Operations of `NumpyScorer` on (decisions, columns) candidates: the split first layer (the context once
    per decision, its bias, the broadcast add), then per further layer SiLU (negate, exp, add, divide) and the
    product with its bias."""
    rows, hidden = decisions * columns, config.hidden
    ops = cost.matmul(rows, config.n_candidate, hidden) + cost.matmul(decisions, config.n_context, hidden)
    ops += decisions * hidden + rows * hidden
    widths = [hidden] * config.layers + [1]
    for a, b in zip(widths, widths[1:]):
        ops += 4.0 * rows * a + cost.matmul(rows, a, b) + rows * b
    return ops


_ROWS = 16


def _matmul(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """x @ w in blocks of 16 rows: each block stays under OpenBLAS's threading threshold.

    A threaded gemm on a busy 2-core machine waits milliseconds for its helper threads, far
    longer than the arithmetic; single-threaded blocks keep one hop well under a millisecond,
    and every row is computed the same way whatever the batch size.
    """
    out = np.empty((x.shape[0], w.shape[1]), np.float32)
    for i in range(0, x.shape[0], _ROWS):
        np.matmul(x[i:i + _ROWS], w, out=out[i:i + _ROWS])
    return out


# -- walking ---------------------------------------------------------------------------

@dataclass
class WalkRecord:
    """Every decision of a batch of walks: features, allowed mask, chosen slot, candidate ids."""

    cand: list[np.ndarray] = field(default_factory=list)
    ctx: list[np.ndarray] = field(default_factory=list)
    mask: list[np.ndarray] = field(default_factory=list)
    ids: list[np.ndarray] = field(default_factory=list)
    cur: list[np.ndarray] = field(default_factory=list)
    owner: list[np.ndarray] = field(default_factory=list)


def hop_budget(t: GraphTables, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Most hops a walk may take: three times a straight run, plus slack for detours."""
    return (3 * np.ceil(gc_km(t.xyz[src], t.xyz[dst]) / t.radius_km) + 20).astype(np.int64)


def _pad_guides(t: GraphTables, guides: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Guides as padded (B, G) ids (last vertex repeated), lengths and per-segment illegal flags."""
    b = len(guides)
    length = np.array([len(p) for p in guides])
    gmax = int(length.max())
    ids = np.empty((b, gmax), np.int64)
    for i, p in enumerate(guides):
        ids[i, :len(p)] = p
        ids[i, len(p):] = p[-1]
    hop = gc_km(t.xyz[ids[:, :-1]], t.xyz[ids[:, 1:]])
    bad = np.zeros((b, gmax), np.float32)
    bad[:, :-1] = hop > t.radius_km * (1 + 1e-9)
    return ids, length, bad


def walk_setup_ops(n: int, guide: int) -> float:
    """Operations of a walk's set-up for one pair on n cities, its guide padded to `guide` vertices: the padded
    guide and the legality of its hops, their running count, the visited flags over every city, the walker's
    state. (The hop budget, where the walk computes it: a great circle and 4 more.)"""
    return (cost.fill(2 * guide) + (guide - 1) * (GC_KM_OPS + 1.0) + cost.fill(guide + 1) + guide + 1.0
            + cost.fill(n) + 8.0)


def candidate_ops(config: RefinerConfig, width: int) -> float:
    """Operations of choosing one decision's candidates over `width` neighbour columns (padding included): the
    padded row, the visited test, each one's closeness to the target (a 3-dot), then, where there are more than
    `candidates`, the selection of the nearest; the chosen ids and mask gathered, the dead-end test."""
    m = config.candidates
    ops = 16.0 * width + 3.0
    if width > m:
        ops += width + cost.select(width)
    return ops + cost.fill(2 * m) + m


def decision_ops(config: RefinerConfig) -> float:
    """Operations of one decision after its candidates: the walker placed on its guide (`guide_window` vertices,
    the nearest), the features of every candidate and of the context (`features`), and the choice (mask,
    argmax, the move's bookkeeping); the scorer is `scorer_ops`."""
    m, w, look = config.candidates, config.guide_window, len(config.lookahead)
    levels, s = len(config.reach_hops), config.sectors
    place = w * (6.0 + GC_KM_OPS) + 3.0 + cost.select(w) + 2.0
    # Per candidate: its coordinates, km to the target and hop (2 great circles), bearing and offsets, progress,
    # detour, can-finish; to each lookahead point (a great circle, the difference); to the guide window (a great
    # circle and the min each); its bearing to the target and the sector blend of its reach descriptor.
    per_candidate = 3.0 + 2 * GC_KM_OPS + BEARING_OPS + 1.0 + 4.0 + 2.0 + 3.0 + 1.0
    per_candidate += look * (GC_KM_OPS + 2.0) + w * (GC_KM_OPS + 1.0)
    per_candidate += BEARING_OPS + 7.0 + levels * s + 4.0 * s + 6.0 * levels * s
    per_candidate += 2.0 * config.n_candidate + 3.0 + 2.0 * look      # the stack and cast, the clips
    # Per decision: the walker's km and bearing to the target, the lookahead points and their bearings, the
    # guide's legality ahead, the context (its stack and cast).
    context = 6.0 + GC_KM_OPS + BEARING_OPS + 3.0 * w + look * (7.0 + GC_KM_OPS + BEARING_OPS + 1.0 + 3.0)
    context += m + 20.0 + GC_KM_OPS + 5.0 * look + 2.0 * config.n_context
    choose = m + cost.select(m) + 5.0
    return place + m * per_candidate + context + choose


def walk(t: GraphTables, config: RefinerConfig, score: Callable[[np.ndarray, np.ndarray], np.ndarray],
         src: np.ndarray, dst: np.ndarray, guides: list[np.ndarray], *,
         record: WalkRecord | None = None, expert: Callable[[np.ndarray], np.ndarray] | None = None,
         budget: np.ndarray | None = None, ops: np.ndarray | None = None) -> list[np.ndarray]:
    """One refinement step for a batch of pairs: walk from each source, guided by `guides`.

    `score(cand, ctx)` returns (A, M) scores; the walk takes the best allowed candidate, or,
    where `expert` (a function of the decision index array) says so, the expert's choice.
    Returns one path (array of city ids) per pair. A walker with no unvisited neighbour steps
    back one city; a walk that runs out of hops ends where it is (without reaching the target).
    With `ops` ((B,) floats) each pair's operations are added to it (`citypath.cost`; `score` is then
    `NumpyScorer`, counted by `scorer_ops`): its set-up, every hop's radius test and every decision at
    the batch's padded width.
    """
    src, dst = np.asarray(src, np.int64), np.asarray(dst, np.int64)
    b = len(src)
    m_cand = config.candidates
    radius = t.radius_km
    look = np.array(config.lookahead)
    count = ops is not None
    if budget is None:
        budget = hop_budget(t, src, dst)
        if count:
            ops += GC_KM_OPS + 4.0
    gids, glen, gbad = _pad_guides(t, guides)
    gcum_bad = np.concatenate([np.zeros((b, 1), np.float32), np.cumsum(gbad, axis=1)], axis=1)
    guide_ok = (gcum_bad[:, -1] == 0).astype(np.float32)
    ptr = np.zeros(b, np.int64)
    cur = src.copy()
    paths: list[list[int]] = [[int(s)] for s in src]
    visited = np.zeros((b, t.n), bool)
    visited[np.arange(b), src] = True
    active = src != dst
    hops = np.zeros(b, np.int64)
    dst_xyz = t.xyz[dst]
    if count:
        ops += walk_setup_ops(t.n, gids.shape[1])
    while active.any():
        act = np.flatnonzero(active)
        c = cur[act]
        if count:      # the radius test and the budget test of every live walker, the scans for live ones
            ops[act] += cost.haversine(1) + 7.0 + cost.fill(2 * b) / len(act)
        # The graph's own radius test (haversine on degrees), so the final hop is always an edge.
        near = haversine_km(t.lat[c], t.lon[c], t.lat[dst[act]], t.lon[dst[act]]) <= radius
        for i in act[near]:
            paths[i].append(int(dst[i]))
            active[i] = False
        act = act[~near]
        over = hops[act] >= budget[act]
        active[act[over]] = False
        act = act[~over]
        if len(act) == 0:
            break
        c = cur[act]
        # -- candidates: allowed neighbours nearest the target
        deg = t.indptr[c + 1] - t.indptr[c]
        dmax = max(int(deg.max()), m_cand)   # at least M columns, so every decision has the same shape
        col = np.arange(dmax)
        ok = col[None, :] < deg[:, None]
        nb = t.indices[np.where(ok, t.indptr[c][:, None] + col[None, :], 0)]
        ok &= ~visited[act[:, None], nb]
        close = np.einsum("adk,ak->ad", t.xyz[nb], dst_xyz[act])
        close = np.where(ok, close, -np.inf)
        if dmax > m_cand:
            sel = np.argpartition(-close, m_cand - 1, axis=1)[:, :m_cand]
        else:
            sel = np.broadcast_to(np.arange(m_cand), (len(act), m_cand))
        ids = np.take_along_axis(nb, sel, 1)
        mask = np.take_along_axis(ok, sel, 1)
        stuck = ~mask.any(axis=1)
        if count:
            ops[act] += candidate_ops(config, dmax)
        for i in act[stuck]:   # a dead end: step back (the city stays marked, so it is not re-entered)
            if count:
                ops[i] += 4.0
            if len(paths[i]) > 1:
                paths[i].pop()
                cur[i] = paths[i][-1]
                hops[i] += 1
            else:
                active[i] = False
        act, c, ids, mask = act[~stuck], c[~stuck], ids[~stuck], mask[~stuck]
        if len(act) == 0:
            break
        # -- place the walker on its guide: nearest of the next few guide vertices (never backwards)
        win = np.minimum(ptr[act][:, None] + np.arange(config.guide_window)[None, :], glen[act][:, None] - 1)
        wid = np.take_along_axis(gids[act], win, 1)
        wd = gc_km(t.xyz[wid], t.xyz[c][:, None, :])
        ptr[act] = np.take_along_axis(win, wd.argmin(axis=1)[:, None], 1)[:, 0]
        cand, ctx = features(t, config, c, dst[act], ids, mask, gids[act], glen[act], gcum_bad[act],
                             guide_ok[act], ptr[act], wid, look)
        if record is not None:
            record.cand.append(cand)
            record.ctx.append(ctx)
            record.mask.append(mask)
            record.ids.append(ids)
            record.cur.append(c)
            record.owner.append(act)
        s = score(cand, ctx)
        if count:
            ops[act] += decision_ops(config) + scorer_ops(config, 1, ids.shape[1])
        s = np.where(mask, s, -np.inf)
        choice = s.argmax(axis=1)
        if expert is not None:
            e_choice, use = expert(len(record.cand) - 1 if record is not None else -1)
            choice = np.where(use, e_choice, choice)
        nxt = ids[np.arange(len(act)), choice]
        for i, n in zip(act, nxt):
            paths[i].append(int(n))
        visited[act, nxt] = True
        cur[act] = nxt
        hops[act] += 1
    return [np.array(p, np.int64) for p in paths]


def features(t: GraphTables, config: RefinerConfig, c: np.ndarray, d: np.ndarray, ids: np.ndarray,
             mask: np.ndarray, gids: np.ndarray, glen: np.ndarray, gcum_bad: np.ndarray, guide_ok: np.ndarray,
             ptr: np.ndarray, wid: np.ndarray, look: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Candidate features (A, M, Fc) and context features (A, Fx), distances in units of the radius."""
    r = t.radius_km
    a = len(c)
    cx, dx, nx = t.xyz[c], t.xyz[d], t.xyz[ids]
    d_cd = gc_km(cx, dx)                                   # (A,)
    d_nd = gc_km(nx, dx[:, None, :])                       # (A, M)
    hop = gc_km(nx, cx[:, None, :])
    b_dst = t.bearing(c, dx)                               # bearing to target at the walker
    b_n = t.bearing(c[:, None], nx) - b_dst[:, None]       # candidate bearing in the target frame
    x, y = hop * np.cos(b_n), hop * np.sin(b_n)
    progress = (d_cd[:, None] - d_nd) / r
    detour = (hop + d_nd - d_cd[:, None]) / r
    can_finish = (d_nd <= r).astype(np.float32)
    # lookahead points on the guide
    li = np.minimum(ptr[:, None] + look[None, :], glen[:, None] - 1)         # (A, L)
    lid = np.take_along_axis(gids, li, 1)
    lx = t.xyz[lid]                                                           # (A, L, 3)
    d_cl = gc_km(lx, cx[:, None, :])                                          # (A, L)
    d_nl = gc_km(nx[:, :, None, :], lx[:, None, :, :])                        # (A, M, L)
    toward = (d_cl[:, None, :] - d_nl) / r
    d_ng = gc_km(nx[:, :, None, :], t.xyz[wid][:, None, :, :]).min(axis=2)   # (A, M) to the guide
    b_l = t.bearing(c[:, None], lx) - b_dst[:, None]
    bad_ahead = np.take_along_axis(gcum_bad, li, 1) - np.take_along_axis(gcum_bad, ptr[:, None], 1)
    # reach descriptor of each candidate, rotated so that sector 0 points at the target
    s = config.sectors
    b_nd = t.bearing(ids, dx[:, None, :])                                     # (A, M)
    f = np.mod(b_nd / (2 * np.pi) * s, s)
    lo = np.floor(f).astype(np.int64)
    w = (f - lo).astype(np.float32)[..., None, None]
    reach = t.reach[ids].reshape(a, ids.shape[1], len(config.reach_hops), s)
    rot = (np.arange(s)[None, None, :] + lo[..., None]) % s                   # (A, M, S)
    r_lo = np.take_along_axis(reach, rot[:, :, None, :], 3)
    r_hi = np.take_along_axis(reach, ((rot + 1) % s)[:, :, None, :], 3)
    reach_rot = ((1 - w) * r_lo + w * r_hi).reshape(a, ids.shape[1], -1)
    cand = np.concatenate([
        np.stack([x / r, y / r, hop / r, progress, np.minimum(detour, 4.0), can_finish], -1),
        np.clip(toward, -2.0, 2.0), np.minimum(d_ng / r, 4.0)[..., None], reach_rot,
    ], axis=-1).astype(np.float32)
    n_ok = mask.sum(axis=1)
    ctx = np.concatenate([
        np.stack([np.log1p(d_cd / r), np.minimum(d_cd / r, 8.0) / 8.0, np.sin(b_dst), np.cos(b_dst),
                  guide_ok, np.minimum(gc_km(cx, t.xyz[np.take_along_axis(gids, ptr[:, None], 1)[:, 0]]) / r, 4.0),
                  np.log(np.maximum(n_ok, 1)) / np.log(config.candidates)], -1),
        t.lat_lon[c], t.lat_lon[d], np.ones((a, 1), np.float32),
        np.sin(b_l), np.cos(b_l), np.log1p(d_cl / r), np.minimum(bad_ahead, 1.0),
    ], axis=-1).astype(np.float32)
    return cand, ctx


# -- the model -------------------------------------------------------------------------

class RefinerModel(CountedModel):
    """A trained walker behind the RoutingModel protocol; read-only once built, so thread-safe."""

    family = "refiner"
    network, config_class = Scorer, RefinerConfig

    def __init__(self, name: str, card: dict, scorer: Scorer, config: RefinerConfig | None = None):
        super().__init__(name, card)
        self.scorer = scorer.eval()
        self.config = config or scorer.config
        self.keep_best = bool(card.get("keep_best", True))
        with torch.inference_mode():
            self._score = NumpyScorer(self.scorer)

    def refine(self, g: CityGraph, src: int, dst: int, steps: int = 1, *, seed: int = 0) -> Iterator[list[int]]:
        """Yield `steps` paths: path k is the best of the first k walks (see `refinement_steps`).

        Deterministic; `seed` is accepted for the protocol, but nothing here is random.
        """
        src, dst, steps = self.check_query(g, src, dst, steps)
        t = graph_tables(g, self.config)
        for paths in refinement_steps(t, self.config, self._score, np.array([src]), np.array([dst]), steps,
                                      verify=verifier(g), keep_best=self.keep_best):
            yield paths[0].tolist()

    def refine_with_compute(self, g: CityGraph, src: int, dst: int, steps: int = 1, *, seed: int = 0
                            ) -> Iterator[tuple[list[int], float]]:
        """`refine`'s paths, each with the operations its step spent, counted in the same walks: step 1 also
        the draft; each step its walk and the verifier's scoring of it; nothing once the walks repeat."""
        src, dst, steps = self.check_query(g, src, dst, steps)
        t = graph_tables(g, self.config)
        ops = np.zeros(1)
        answers = refinement_steps(t, self.config, self._score, np.array([src]), np.array([dst]), steps,
                                   verify=verifier(g), keep_best=self.keep_best, ops=ops)

        def run() -> Iterator[tuple[list[int], float]]:
            before = 0.0
            for paths in answers:
                yield paths[0].tolist(), float(ops[0]) - before
                before = float(ops[0])

        return run()

    def refine_batch(self, g: CityGraph, srcs, dsts, steps: int) -> list[list[list[int]]]:
        """All `steps` paths for many pairs at once (the same walks as `refine`, batched): [pair][step]."""
        self.check_graph(g)
        t = graph_tables(g, self.config)
        return refine_batch(t, self.config, self._score, np.asarray(srcs), np.asarray(dsts), steps,
                            verify=verifier(g), keep_best=self.keep_best)

    @classmethod
    def read_config(cls, card: dict) -> RefinerConfig:
        cfg = dict(card.get("config", {}))
        for k in ("reach_hops", "lookahead"):     # tuples, stored as JSON lists
            if k in cfg:
                cfg[k] = tuple(cfg[k])
        return RefinerConfig(**cfg)

def refinement_steps(t: GraphTables, config: RefinerConfig, score, srcs: np.ndarray, dsts: np.ndarray,
                     steps: int, *, verify: Callable, keep_best: bool = True,
                     ops: np.ndarray | None = None) -> Iterator[list[np.ndarray]]:
    """Yield, for each of `steps` steps, every pair's current answer.

    Step k walks once, guided by walk k-1 (walk 0 is the great-circle draft). With `keep_best`
    the answer is the best walk so far by the project's one verifier, `verify(path, src, dst)`
    (`citypath.metrics.verifier(g)`: reaching the target first, then fewer km); so more steps never
    make an answer worse. Without it the answer is walk k.
    Walks are deterministic in their guide, so once a walk repeats an earlier one the chain is
    periodic and nothing new can come: that pair is not walked again.
    With `ops` ((pairs,) floats) each pair's operations are added to it as they are spent (`citypath.cost`):
    the draft, the walks, the verifier on each walk, the test for a repeat and the next guide.
    """
    srcs, dsts = np.asarray(srcs, np.int64), np.asarray(dsts, np.int64)
    n = len(srcs)
    count = ops is not None
    guides = [draft_path(t, int(s), int(d), ops=ops[i:i + 1] if count else None)
              for i, (s, d) in enumerate(zip(srcs, dsts))]
    latest: list[np.ndarray] = [np.array([s]) for s in srcs]
    best: list[np.ndarray | None] = [None] * n
    best_key: list[tuple | None] = [None] * n
    seen: list[set[bytes]] = [set() for _ in range(n)]
    live = np.flatnonzero(srcs != dsts)
    for i in np.flatnonzero(srcs == dsts):
        best[i] = latest[i]
    for _ in range(steps):
        if len(live):
            walk_ops = np.zeros(len(live)) if count else None
            paths = walk(t, config, score, srcs[live], dsts[live], [guides[i] for i in live], ops=walk_ops)
            if count:
                # The walks, the verifier on each, the repeat test (its bytes hashed, a lookup), the next guide.
                ops[live] += walk_ops + [cost.verify(len(p) - 1) + cost.fill(len(p)) + 1.0
                                         + (cost.fill(len(p) + 1) if p[-1] != dsts[i] else 0.0)
                                         for i, p in zip(live, paths)]
            still = []
            for i, p in zip(live, paths):
                latest[i] = p
                key = verify(p, int(srcs[i]), int(dsts[i]))
                if best_key[i] is None or key < best_key[i]:
                    best[i], best_key[i] = p, key
                sig = p.tobytes()
                if sig not in seen[i]:
                    seen[i].add(sig)
                    still.append(i)
                guides[i] = p if p[-1] == dsts[i] else np.r_[p, dsts[i]]
            live = np.array(still, np.int64)
        yield [b if keep_best else latest_i for b, latest_i in zip(best, latest)]


def refine_batch(t: GraphTables, config: RefinerConfig, score, srcs: np.ndarray, dsts: np.ndarray,
                 steps: int, *, verify: Callable, keep_best: bool = True) -> list[list[list[int]]]:
    """`steps` refinement steps for a batch of pairs; result[pair][step] is a list of city ids."""
    out: list[list[list[int]]] = [[] for _ in range(len(srcs))]
    for answers in refinement_steps(t, config, score, srcs, dsts, steps, verify=verify, keep_best=keep_best):
        for i, p in enumerate(answers):
            out[i].append(p.tolist())
    return out
