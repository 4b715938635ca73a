"""memory: a small walker that plans in an external memory it reads and writes (the post's second avenue).

A GRU controller walks from the source, one graph edge at a time, choosing the next city among the
current city's neighbours (legal by construction: illegal jumps are 0; valid = reaches the target).
What it sees is what a walker sees (the DNC's setting): its own position and each neighbour's, as
geography relative to source and target (no city ids, no tables: any graph, any size). Beside it
sits an **external memory** of M slots (key, value), DNC/NTM style:

- **write**: at every hop the controller writes one slot (least recently written first): the key is
  where it is (a learned embedding of its geography), the value what it holds then; at the end of a
  walk it adds to every slot it wrote a learned **verdict** of how the walk went (reached the
  target?, km walked over straight km, hops), computed from what it experienced, nothing else;
- **read**: by content: the controller reads at its own position (into its state), and each
  neighbour it considers is scored with what the memory holds near that neighbour.

**Test-time compute = planning passes.** Step k of `refine` is the k-th walk from the source; the
memory persists from walk to walk, so walk k can use what walks 1..k-1 wrote (e.g. that a way led
into a dead end). Walk 1 runs on an empty memory. With M = 0 (no memory) every walk is the same.
Memory never holds a distance given from outside: only what the controller wrote. At inference a walk
that meets a dead end backs out of it (`walk_batch(backtrack=True)`); in training it stops there.

The per-step state view shows, per city, how much read attention the walk put on slots written at
that city, and which cities the memory holds.

Compute is counted by the one convention (`citypath.cost`) as the walks spend it (`query_setup_ops`,
`empty_memory_ops`, `walk_batch`'s per-move count).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from citypath import cost
from citypath.geo import N_GEO, geo_features, haversine_km
from citypath.graph import CityGraph
from citypath.models.base import StateView, StepwiseModel

N_POS = N_GEO   # geography of a city (citypath.geo.geo_features)
N_CAND = 7      # a neighbour as a candidate next hop
N_VERDICT = 3   # reached, km walked / straight km, hops / hop cap
CANDIDATE_FEATURE_OPS = 33.0   # a neighbour's 7 features: 2 gathers, the law of cosines (10), 7 more, stacked, cast
GELU_OPS = 5.0                 # per unit: x / sqrt 2, erf, + 1, two products


@dataclass(frozen=True)
class MemoryConfig:
    """Hyper-parameters (stored in the card)."""

    hidden: int = 64
    slots: int = 64                # M: memory slots (0 = no memory: the ablation)
    width: int = 16                # W: key and value width
    cand_dim: int = 32
    max_steps: int = 8             # planning passes (walks)
    wipe_after: int = 0            # control: wipe the memory after this many walks (0 = never)


class MemoryNet(nn.Module):
    """Controller, memory heads and scorer; the walk itself is `walk_batch`."""

    def __init__(self, config: MemoryConfig):
        super().__init__()
        c = config
        self.config = c
        self.key = nn.Linear(N_POS, c.width)
        self.value = nn.Linear(c.hidden, c.width)
        self.verdict = nn.Linear(c.hidden + N_VERDICT, c.width)
        self.query = nn.Linear(N_POS + c.hidden, c.width)
        self.cell = nn.GRUCell(N_POS + c.width, c.hidden)
        self.cand = nn.Linear(N_CAND + c.width, c.cand_dim)
        self.ctx = nn.Linear(c.hidden, c.cand_dim)
        self.score = nn.Linear(c.cand_dim, 1)
        self.prior = nn.Parameter(torch.tensor(4.0))     # weight on -(edge + straight to target), radii

    def read(self, mem_k: torch.Tensor, mem_v: torch.Tensor, filled: torch.Tensor, q: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Content read: q (B, ..., W) against (B, M, W) slots -> (values (B, ..., W), weights (B, ..., M))."""
        if mem_k.shape[1] == 0:
            return torch.zeros_like(q), q.new_zeros(q.shape[:-1] + (0,))
        shape = q.shape
        qf = q.reshape(shape[0], -1, shape[-1])
        s = torch.einsum("bqw,bmw->bqm", qf, mem_k) / mem_k.shape[-1] ** 0.5
        s = s.masked_fill(~filled[:, None, :], -torch.inf)
        any_ = filled.any(dim=1)[:, None, None]
        w = torch.where(any_, torch.softmax(torch.where(any_, s, torch.zeros_like(s)), dim=-1), torch.zeros_like(s))
        return torch.einsum("bqm,bmw->bqw", w, mem_v).reshape(shape), w.reshape(shape[:-1] + (mem_k.shape[1],))


@dataclass
class Walks:
    """A batch of queries on one (union) graph, walked in lock step."""

    indptr: np.ndarray
    indices: np.ndarray
    km: np.ndarray               # edge lengths, radii
    pos: torch.Tensor            # (n, N_POS) geography per node for its query
    dt: np.ndarray               # (n,) straight distance to the node's query target, radii
    ds: np.ndarray
    src: np.ndarray              # (B,) node ids
    dst: np.ndarray
    d_st: np.ndarray             # (B,) straight source-target, radii
    max_hops: np.ndarray         # (B,)
    expert: np.ndarray | None = None       # training: (n,) each node's true distance to its query target
    label_ok: np.ndarray | None = None     # training: (n,) may this node's decision be supervised
    follow: np.ndarray | None = None       # training: (passes, B, hops) take the expert's hop (DAgger)
    passes: int = 1

    def to(self, device) -> Walks:          # the training loop moves batches; this one lives in numpy
        return self


@dataclass
class WalkOut:
    paths: list[list[int]]
    logits: list[torch.Tensor] = field(default_factory=list)      # per hop (B, deg) over candidates
    cands: list[np.ndarray] = field(default_factory=list)         # per hop (B, deg) node ids (-1 pad)
    active: list[np.ndarray] = field(default_factory=list)        # per hop (B,) still walking
    reads: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)   # (slot city ids, weights)
    targets: list[np.ndarray] = field(default_factory=list)       # training: per hop (B,) expert index, -1: none
    flops: np.ndarray | None = None                               # (B,) FLOPs of this walk


def candidate_features(w: Walks, cur: np.ndarray, nb: np.ndarray, lens: np.ndarray,
                       qid: np.ndarray) -> np.ndarray:
    """(B, deg, N_CAND) features of neighbour nb of cur for query qid."""
    dt_c, dt_u, ds_u = w.dt[cur][:, None], w.dt[nb], w.ds[nb]
    D = w.d_st[qid][:, None] + 1.0
    # cosine of the angle at cur between the hop and the straight line to the target (law of cosines)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.clip((lens ** 2 + dt_c ** 2 - dt_u ** 2) / (2 * lens * np.maximum(dt_c, 1e-9)), -1, 1)
    deg = np.diff(w.indptr)[nb] / 100.0
    return np.stack([lens, dt_u - dt_c, dt_u / D, np.nan_to_num(cos), ds_u / D, deg,
                     (dt_u + lens) / (dt_c + 1e-3)], axis=-1)


def read_ops(c: MemoryConfig, queries: int) -> float:
    """Operations of `queries` content reads over the M slots: each query's scores against every key (scaled,
    masked), their softmax and the weighted sum of the values; the test for any filled slot."""
    m = c.slots
    if m == 0:
        return cost.fill(queries * c.width)
    per_query = cost.matmul(1, c.width, m) + 3.0 * m + cost.softmax(m) + cost.matmul(1, m, c.width)
    return queries * per_query + cost.fill(m)


def move_ops(c: MemoryConfig, width: int) -> float:
    """Operations of one controller move for one row over `width` neighbour columns (padding included): the
    padded neighbour row, its lengths and the legality mask; the controller's query, read and GRU cell; per
    column its features, its key, its read, the candidate layer, GELU, score and prior; the argmax; the memory
    write (key, value, and the new slot tensors); the move's bookkeeping."""
    pos, hid, wid, m, cd = N_POS, c.hidden, c.width, c.slots, c.cand_dim
    ops = cost.fill(8 * width) + cost.fill(pos)
    ops += cost.fill(pos + hid) + cost.matmul(1, pos + hid, wid) + wid + read_ops(c, 1)
    ops += cost.fill(pos + wid) + cost.gru_cell(pos + wid, hid) + hid
    ops += cost.matmul(1, hid, cd) + cd
    per_column = CANDIDATE_FEATURE_OPS + cost.fill(pos) + cost.matmul(1, pos, wid) + wid + read_ops(c, 1)
    per_column += cost.fill(N_CAND + wid) + cost.matmul(1, N_CAND + wid, cd) + 2.0 * cd + GELU_OPS * cd
    per_column += cost.matmul(1, cd, 1) + 1.0 + 4.0 + 3.0
    ops += width * per_column + cost.select(width) + cost.fill(width)
    if m:
        ops += cost.matmul(1, pos, wid) + cost.matmul(1, hid, wid) + 2.0 * wid + cost.fill(2 * m * wid + 2 * m) + 2.0
    return ops + 6.0


def walk_batch(net: MemoryNet, w: Walks, memory: dict, *, expert: np.ndarray | None = None,
               follow_expert: np.ndarray | None = None, record_reads: bool = False,
               backtrack: bool = False) -> WalkOut:
    """One walk per query from its source, reading and writing `memory` (updated in place: keys k, values v,
    filled, ptr, city, and the slots written by this walk). Greedy on the model's scores, except where
    `follow_expert[b, hop]` says to take the expert's hop (DAgger mixing in training).

    A walk never re-enters a city it visited; at a dead end (every neighbour visited) it stops there, or
    with `backtrack` (inference) steps back along its path to the last city with an unvisited neighbour
    and goes on from there: the path is then the walk without its dead-end branches. Every move, forward
    or back, is one controller step of the hop budget (`max_hops`); `flops` counts each walk's operations
    (`citypath.cost`): the walk's arrays, every move (`move_ops`, the batch's padded work shared by the rows
    still walking), the way back out of a dead end, and the verdict."""
    c = net.config
    B = len(w.src)
    h = torch.zeros(B, c.hidden)
    cur = w.src.copy()
    visited = np.zeros(len(w.indptr) - 1, dtype=bool)      # queries live on disjoint nodes
    visited[w.src] = True
    paths = [[int(s)] for s in w.src]
    alive = cur != w.dst
    out = WalkOut(paths)
    written = torch.zeros(B, c.slots, dtype=torch.bool)
    walked = np.zeros(B)
    moves = np.zeros(B, dtype=np.int64)
    flops = np.zeros(B)
    qid = np.arange(B)
    hop = 0
    # The walk's arrays: the visited flags over every node (shared), the state, the written flags and the rest.
    flops += cost.fill(len(w.indptr) - 1) / B + cost.fill(c.hidden + c.slots + 6)
    while alive.any():
        idx = np.flatnonzero(alive)
        degs = np.diff(w.indptr)[cur]
        dmax = int(degs[idx].max())
        nb = np.full((B, dmax), -1)
        lens = np.ones((B, dmax))
        for b in idx:
            lo, hi = w.indptr[cur[b]], w.indptr[cur[b] + 1]
            nb[b, :hi - lo] = w.indices[lo:hi]
            lens[b, :hi - lo] = w.km[lo:hi]
        nbc = np.where(nb >= 0, nb, 0)
        valid = (nb >= 0) & ~visited[nbc]
        valid[~alive] = False
        pos_c = w.pos[torch.from_numpy(cur)]
        r_c, _ = net.read(memory["k"], memory["v"], memory["filled"], net.query(torch.cat([pos_c, h], 1)))
        h_new = net.cell(torch.cat([pos_c, r_c], 1), h)
        h = torch.where(torch.from_numpy(alive)[:, None], h_new, h)
        feats = torch.from_numpy(candidate_features(w, cur, nbc, lens, qid)).float()
        r_u, wts = net.read(memory["k"], memory["v"], memory["filled"], net.key(w.pos[torch.from_numpy(nbc)]))
        z = F.gelu(net.cand(torch.cat([feats, r_u], -1)) + net.ctx(h)[:, None, :])
        prior = -torch.from_numpy(lens + w.dt[nbc]).float()
        logits = net.score(z)[..., 0] + net.prior * prior
        logits = logits.masked_fill(~torch.from_numpy(valid), -torch.inf)
        # The batch computes every row at the padded width; the rows still walking share it, and the degree
        # arrays over every node read twice a move and the scans for live rows.
        flops[idx] += (B * move_ops(c, dmax) + cost.fill(2 * (len(w.indptr) - 1) + 2 * B)) / len(idx)
        # write where we are: key = where, value = what the controller holds
        if c.slots:
            ptr = memory["ptr"]
            bi = torch.from_numpy(idx)
            pi = torch.from_numpy(ptr[idx])
            memory["k"] = memory["k"].index_put((bi, pi), net.key(pos_c[bi]))
            memory["v"] = memory["v"].index_put((bi, pi), net.value(h[bi]))
            memory["filled"] = memory["filled"].index_put((bi, pi), torch.ones(len(idx), dtype=torch.bool))
            written = written.index_put((bi, pi), torch.ones(len(idx), dtype=torch.bool))
            memory["city"][idx, ptr[idx]] = cur[idx]
            memory["ptr"][idx] = (ptr[idx] + 1) % c.slots
            if record_reads and wts.shape[-1]:
                out.reads.append((memory["city"].copy(), wts.detach().sum(dim=1).numpy()))
        out.logits.append(logits)
        out.cands.append(nb.copy())
        out.active.append(alive.copy())
        has = valid.any(axis=1)
        choice = logits.detach().argmax(dim=1).numpy()
        ex = expert_choice(expert, nb, lens, valid) if expert is not None else None
        if ex is not None:
            ok = has & (w.label_ok[cur] if w.label_ok is not None else True)
            out.targets.append(np.where(ok, ex, -1))
        if ex is not None and follow_expert is not None:
            take = follow_expert[:, min(hop, follow_expert.shape[1] - 1)] & has
            choice[take] = ex[take]
        for b in idx:
            if not has[b]:                  # dead end: every neighbour visited
                if backtrack and len(paths[b]) > 1 and moves[b] + 2 <= w.max_hops[b]:
                    paths[b].pop()          # one step back (the dead end stays visited: never entered again)
                    back = int(np.flatnonzero(nb[b] == paths[b][-1])[0])
                    flops[b] += cost.fill(dmax) + 3.0
                    walked[b] += lens[b, back]
                    cur[b] = paths[b][-1]
                    moves[b] += 1
                else:
                    alive[b] = False
                continue
            nxt = int(nb[b, choice[b]])
            walked[b] += lens[b, choice[b]]
            cur[b] = nxt
            visited[nxt] = True
            paths[b].append(nxt)
            moves[b] += 1
            if nxt == w.dst[b] or moves[b] + 1 > w.max_hops[b]:
                alive[b] = False
        hop += 1
    if c.slots:   # the verdict: how this walk went, added to every slot it wrote
        reached = torch.tensor([float(p[-1] == t) for p, t in zip(paths, w.dst)])
        ratio = torch.from_numpy(walked / np.maximum(w.d_st, 1e-9)).float().clamp(max=10.0)
        hops = torch.from_numpy((moves + 1) / w.max_hops).float()      # (len(path) without backtracking)
        v = net.verdict(torch.cat([h, torch.stack([reached, ratio, hops], 1)], 1))
        memory["v"] = memory["v"] + written[..., None] * v[:, None, :]
        # Per row: the walk's three figures, the verdict layer, and every slot's value updated (a new tensor).
        flops += 6.0 + cost.fill(c.hidden + N_VERDICT) + cost.matmul(1, c.hidden + N_VERDICT, c.width) \
            + c.width + 3.0 * c.slots * c.width
    out.flops = flops
    return out


def expert_choice(dist: np.ndarray, nb: np.ndarray, lens: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(B,) index of the expert's hop: the unvisited neighbour minimising edge + its distance to the target."""
    cost = np.where(valid, lens + dist[np.where(nb >= 0, nb, 0)], np.inf)
    return np.argmin(cost, axis=1)


def empty_memory_ops(B: int, c: MemoryConfig) -> float:
    """Operations of `empty_memory`: every slot's key, value, filled flag and city."""
    return cost.fill(B * (2 * c.slots * c.width + 2 * c.slots) + B)


def empty_memory(B: int, c: MemoryConfig) -> dict:
    return {"k": torch.zeros(B, c.slots, c.width), "v": torch.zeros(B, c.slots, c.width),
            "filled": torch.zeros(B, c.slots, dtype=torch.bool), "ptr": np.zeros(B, dtype=np.int64),
            "city": np.full((B, c.slots), -1)}


def query_setup_ops(g: CityGraph) -> float:
    """Operations of `full_graph_walks`: straight km from every city to target and source (in radii), the
    geography (8 features, ~3 operations each, then cast), the source and target flags, every edge's length in
    radii."""
    n = g.n_cities
    return cost.haversine(2 * n) + 2.0 * n + cost.fill(3 * N_POS * n) + cost.fill(N_POS * n) + cost.fill(2 * n) \
        + float(g.adjacency.nnz)


def full_graph_walks(g: CityGraph, src: int, dst: int) -> Walks:
    """The one query on the whole graph (radii units)."""
    R = g.radius_km
    dt = haversine_km(g.lat, g.lon, g.lat[dst], g.lon[dst]) / R
    ds = haversine_km(g.lat, g.lon, g.lat[src], g.lon[src]) / R
    d_st = float(dt[src])
    n = g.n_cities
    is_s, is_d = np.zeros(n, bool), np.zeros(n, bool)
    is_s[src], is_d[dst] = True, True
    pos = torch.from_numpy(geo_features(dt, ds, d_st, is_s, is_d)).float()
    adj = g.adjacency
    return Walks(adj.indptr, adj.indices, adj.data / R, pos, dt, ds, np.array([src]), np.array([dst]),
                 np.array([d_st]), np.array([int(8 * d_st) + 64]))


def imitation_loss(net: MemoryNet, w: Walks) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed cross-entropy against the expert's hop at every supervised decision of every walk, decisions).

    The walks of one query share one memory; gradients flow through what earlier walks wrote."""
    mem = empty_memory(len(w.src), net.config)
    total, count = torch.zeros(()), torch.zeros(())
    for k in range(w.passes):
        out = walk_batch(net, w, mem, expert=w.expert, follow_expert=w.follow[k])
        for logits, target in zip(out.logits, out.targets):
            sel = np.flatnonzero(target >= 0)
            if len(sel):
                si = torch.from_numpy(sel)
                total = total + F.cross_entropy(logits[si], torch.from_numpy(target[sel]), reduction="sum")
                count = count + len(sel)
    return total, count


class MemoryModel(StepwiseModel):
    """The trained walker behind the routing protocol: step k is its k-th walk, memory kept between walks."""

    family = "memory"
    network, config_class = MemoryNet, MemoryConfig
    has_state_view = True

    @torch.no_grad()
    def _run(self, g: CityGraph, src: int, dst: int, steps: int, record_reads: bool = False
             ) -> Iterator[tuple[list[int], float, WalkOut]]:
        """Walk k per step, the memory kept between walks. Operations of a step: its walk (`walk_batch`); step 1
        also the query's set-up and the empty memory, a wiped memory the new one."""
        if src == dst:
            for _ in range(steps):
                yield [src], 0.0, WalkOut([[src]])
            return
        w = full_graph_walks(g, src, dst)
        mem = empty_memory(1, self.config)
        setup = query_setup_ops(g) + empty_memory_ops(1, self.config)
        for k in range(steps):
            if self.config.wipe_after and k == self.config.wipe_after:
                mem = empty_memory(1, self.config)
                setup = empty_memory_ops(1, self.config)
            out = walk_batch(self.net, w, mem, record_reads=record_reads, backtrack=True)
            yield out.paths[0], setup + float(out.flops[0]), out
            setup = 0.0

    def trace(self, g: CityGraph, src: int, dst: int, steps: int = 1) -> Iterator[list[StateView]]:
        """Per walk: read attention per city (summed over the walk's hops and neighbours, on the slots
        written at that city) and the cities the memory holds after the walk."""
        src, dst, steps = self.check_query(g, src, dst, steps)
        for _, _, out in self._run(g, src, dst, steps, record_reads=True):
            attn = np.zeros(g.n_cities)
            held = np.zeros(g.n_cities)
            for cities, wts in out.reads:
                ok = cities[0] >= 0
                np.add.at(attn, cities[0][ok], wts[0][ok])
            if out.reads:
                last = out.reads[-1][0][0]
                held[last[last >= 0]] = 1.0
            yield [StateView("memory read attention (summed over the walk)", "", attn),
                   StateView("cities the memory holds", "", held)]
