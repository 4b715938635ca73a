"""looped: one weight-tied transformer block, looped, over the cities around a route (the post's first avenue).

The block's tokens are cities plus two **global tokens**, one for the source and one for the
target, that attend to every city token of their query and are attended by every one (BigBird's
global tokens). No token has an id embedding: what a token knows of where it is comes from
**geography** (straight distance to source and target, its position along and across the
source -> target axis, relative to the pair's length), so one set of ~2.6k weights runs on any
region of any size. Each loop of the block:

1. **min head** (tropical attention, Bellman-Ford aligned): every city keeps a scalar value
   delta_v, +inf until reached; along **every graph edge** u -> v it receives
   A delta_u + a w_uv + b (+ input injection at source and target) and keeps the minimum. Its
   read-out r delta + r0 is an estimated distance to the target (radii). Ten learned scalars,
   with an L1 penalty, trained against Bellman-Ford's round-by-round estimates;
2. **input injection** (recall): the state is normalised and the token's geography plus what
   the min head says of it (reached?, log of its estimate over its straight distance) is added;
3. **softmax attention** (2 heads) over the token's k nearest graph neighbours (BigBird's local
   window, along graph edges) and the two global tokens; the edge length enters both the score
   (a learned bias per head) and the keys/values; then an MLP. Residual, pre-LayerNorm;
4. a **read-out** of a learned detour per token: est_v = straight km to target x (1 + softplus(.)),
   the model's guess of km to the target where the min head has not reached yet.

In training (small graphs) every city is a token. On the full graph the min head runs as the
bellman family runs its network (over a frontier, inside a corridor: an ellipse around source and
target that grows when the source's estimate exceeds it, so no route that could beat the model's
own is cut off), and the block's tokens are the **tube**: the cities of the last decoded route
that the min head has not reached yet, their graph neighbours, source and target. Cities the min
head has reached need the block no more (their distance is the min head's), so the tube shrinks
as the min head spreads. (The whole corridor as tokens costs far more for the same routes:
docs/models.md.)

Step k of `refine` is the path decoded after k * loops_per_step loops, from the source, by the
best next hop among the current city's graph neighbours: score = edge km + the neighbour's
distance (the min head's read-out of the message where reached, else the block's estimate while
the min head is still thinking, else straight km). Every hop is a graph edge: **legal by
construction** (illegal jumps are 0 and reported as such; valid = reaches the target).

**Adaptive halting**: once the min head has reached the source and its last round changed
nothing, and the corridor did not grow, the decoded path depends on the min head alone; if it is
also the last step's path and reaches the target, later steps cannot change it, so `refine` stops
thinking and repeats it at no cost; `last_run_steps` says how many steps ran. Each step's operations
are counted as it runs (`citypath.cost`: the min head's frontier edges, the block per tube token, the
decode). `scaffold_control()` is the min head alone, the block removed (the attribution control).

    >>> m = load_model("looped-small")                       # doctest: +SKIP
    >>> paths = list(m.refine(g, src, dst, steps=16))        # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from citypath import cost
from citypath.geo import N_GEO, geo_features
from citypath.graph import CityGraph
from citypath.models.base import StateView, StepwiseModel, count_parameters, frozen, greedy_walk

N_DYN = 2          # what the min head says of the token: reached, log(estimate / straight)


@dataclass(frozen=True)
class LoopedConfig:
    """Hyper-parameters (stored in the card)."""

    dim: int = 16
    heads: int = 2
    window: int = 8                  # graph neighbours each token attends to (the nearest)
    mlp_ratio: int = 2
    loops_per_step: int = 2          # ~8 ms a step on typical pairs (the app animates steps)
    max_steps: int = 48              # 96 loops: more than the longest optimal path's 82 hops
    corridor_factor: float = 1.1
    corridor_slack_radii: float = 1.0
    # Ablation switches (all on in shipped checkpoints; docs/test-time-compute.md)
    min_head: bool = True
    softmax: bool = True
    global_tokens: bool = True
    injection: bool = True


def window_of(n: int, snd: np.ndarray, rcv: np.ndarray, w: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    """Each receiver's k nearest senders: (n, k) indices, mask and lengths (padded with the token itself)."""
    order = np.lexsort((w, rcv))
    rcv_o, snd_o, w_o = rcv[order], snd[order], w[order]
    first = np.searchsorted(rcv_o, np.arange(n))
    rank = np.arange(len(rcv_o)) - first[rcv_o]
    keep = rank < k
    idx = np.tile(np.arange(n)[:, None], (1, k))
    mask = np.zeros((n, k), bool)
    lens = np.zeros((n, k))
    idx[rcv_o[keep], rank[keep]] = snd_o[keep]
    mask[rcv_o[keep], rank[keep]] = True
    lens[rcv_o[keep], rank[keep]] = w_o[keep]
    return idx, mask, lens


_NEAREST: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}


def nearest_neighbours(g: CityGraph, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, k) ids and km of every city's k nearest graph neighbours (itself and inf where it has fewer); cached."""
    key = (g.fingerprint, k)
    if key not in _NEAREST:
        adj = g.adjacency.tocoo()
        idx, mask, lens = window_of(g.n_cities, adj.col.astype(np.int64), adj.row.astype(np.int64), adj.data, k)
        _NEAREST[key] = (np.where(mask, idx, -1), np.where(mask, lens, np.inf))
    ids, km = _NEAREST[key]
    return np.where(ids >= 0, ids, np.arange(g.n_cities)[:, None]), km


@dataclass
class Tokens:
    """One batch of token sets (a disjoint union of graphs, one query each), as tensors."""

    geo: torch.Tensor          # (n, N_GEO) float32
    dt: torch.Tensor           # (n,) straight distance to target, radii, float64
    snd: torch.Tensor          # (e,) every edge, sender
    rcv: torch.Tensor          # (e,) receiver
    w: torch.Tensor            # (e,) edge length, radii, float64
    win: torch.Tensor          # (n, k) window indices
    win_mask: torch.Tensor     # (n, k) bool
    win_len: torch.Tensor      # (n, k) float32
    graph: torch.Tensor        # (n,) which query the token belongs to
    glob: torch.Tensor         # (G, 2) token index of each query's source and target
    x: torch.Tensor            # (n, 2) float64 [is target, is source] for the min head

    @property
    def n(self) -> int:
        return len(self.geo)

    def to(self, device) -> Tokens:
        return Tokens(*(getattr(self, f.name).to(device) for f in fields(self)))


def make_tokens(dt: np.ndarray, ds: np.ndarray, d_st: np.ndarray, src: np.ndarray, dst: np.ndarray,
                snd: np.ndarray, rcv: np.ndarray, w: np.ndarray, graph: np.ndarray, window: int) -> Tokens:
    """Tokens for a union of queries: per token its distances (radii) and query; per query its src and dst."""
    n = len(dt)
    is_src = np.zeros(n, bool)
    is_dst = np.zeros(n, bool)
    is_src[src], is_dst[dst] = True, True
    geo = np.concatenate([geo_features(dt[graph == q], ds[graph == q], float(d_st[q]), is_src[graph == q],
                                       is_dst[graph == q]) for q in range(len(src))]) if len(src) > 1 else \
        geo_features(dt, ds, float(d_st[0]), is_src, is_dst)
    win, mask, lens = window_of(n, snd, rcv, w, window)
    t = torch.from_numpy
    return Tokens(t(geo).float(), t(dt).double(), t(snd).long(), t(rcv).long(), t(w).double(), t(win).long(),
                  t(mask), t(lens).float(), t(graph).long(), t(np.stack([src, dst], axis=1)).long(),
                  t(np.stack([is_dst, is_src], axis=1).astype(np.float64)))


# -- the network ----------------------------------------------------------------------------------

class MinHead(nn.Module):
    """The tropical head: delta_v <- min(delta_v, min_u A delta_u + a w_uv + b + B x_v), in float64."""

    def __init__(self):
        super().__init__()
        self.encode = nn.Linear(2, 1, dtype=torch.float64)           # the target's initial value
        self.sender = nn.Linear(1, 1, bias=False, dtype=torch.float64)
        self.edge = nn.Linear(1, 1, dtype=torch.float64)
        self.recall = nn.Linear(2, 1, bias=False, dtype=torch.float64)
        self.readout = nn.Linear(1, 1, dtype=torch.float64)
        for p in self.parameters():
            nn.init.uniform_(p, 0.0, 1.0)

    def init(self, tok: Tokens) -> torch.Tensor:
        is_t = tok.x[:, 0] > 0
        return torch.where(is_t, self.encode(tok.x)[:, 0], torch.full_like(tok.dt, torch.inf))

    def round(self, delta: torch.Tensor, tok: Tokens) -> torch.Tensor:
        reached = torch.isfinite(delta)
        sent = self.sender(torch.where(reached, delta, torch.zeros_like(delta))[:, None])[:, 0]
        msg = sent[tok.snd] + self.edge(tok.w[:, None])[:, 0] + self.recall(tok.x)[tok.rcv, 0]
        msg = torch.where(reached[tok.snd], msg, torch.full_like(msg, torch.inf))
        agg = torch.full_like(delta, torch.inf).scatter_reduce(0, tok.rcv, msg, "amin", include_self=True)
        return torch.minimum(delta, agg)

    def estimate(self, delta: torch.Tensor) -> torch.Tensor:
        """Read-out in radii (0 where unreached: mask with isfinite(delta))."""
        return self.readout(torch.where(torch.isfinite(delta), delta, torch.zeros_like(delta))[:, None])[:, 0]


class LoopedNet(nn.Module):
    """The block, looped; `forward` is the training loss on a batch of small graphs (see tasks/looped.py)."""

    def __init__(self, config: LoopedConfig):
        super().__init__()
        c, d = config, config.dim
        self.config = config
        self.start = nn.Parameter(torch.zeros(d))
        self.kind = nn.Parameter(torch.randn(3, d) * 0.02)           # city / source global / target global
        self.inject = nn.Linear(N_GEO + N_DYN, d)
        self.ln_state = nn.LayerNorm(d)
        self.ln_att = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.edge_kv = nn.Linear(1, 2 * d, bias=False)
        self.edge_bias = nn.Parameter(torch.zeros(c.heads))
        self.proj = nn.Linear(d, d)
        self.ln_mlp = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, c.mlp_ratio * d), nn.GELU(), nn.Linear(c.mlp_ratio * d, d))
        self.ln_out = nn.LayerNorm(d)
        self.detour = nn.Linear(d, 1)
        self.min_head = MinHead()

    # -- one loop -----------------------------------------------------------------------------------
    def dynamic(self, delta: torch.Tensor, tok: Tokens) -> torch.Tensor:
        """What the min head says of each token (no gradient flows back into it from here)."""
        if not self.config.min_head:
            return torch.zeros(tok.n, N_DYN)
        with torch.no_grad():
            reached = torch.isfinite(delta)
            est = self.min_head.estimate(delta).clamp_min(0.0)
            ratio = torch.where(reached, torch.log((est + 1.0) / (tok.dt + 1.0)), torch.zeros_like(est))
            return torch.stack([reached.double(), ratio], dim=1).float()

    def loop(self, h: torch.Tensor, g: torch.Tensor, dyn: torch.Tensor, tok: Tokens, first: bool
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass of the block over city tokens h (n, d) and global tokens g (G, 2, d)."""
        c = self.config
        feats = torch.cat([tok.geo, dyn], dim=1)
        if not c.injection and not first:
            feats = torch.cat([torch.zeros_like(tok.geo), dyn], dim=1)   # geography only at loop 0
        inj = self.inject(feats)
        z = self.ln_state(h) + inj + self.kind[0]
        if c.global_tokens:
            gi = inj[tok.glob]                                            # (G, 2, d): their city's features
            zg = self.ln_state(g) + gi + self.kind[1:3]
        else:
            zg = g
        if not c.softmax:
            return z, zg
        d, H = c.dim, c.heads
        dh = d // H
        q, k, v = self.qkv(self.ln_att(z)).split(d, dim=1)
        ek, ev = self.edge_kv(tok.win_len[..., None]).split(d, dim=2)
        kw = (k[tok.win] + ek).view(tok.n, -1, H, dh)
        vw = (v[tok.win] + ev).view(tok.n, -1, H, dh)
        qh = q.view(tok.n, H, dh)
        s = torch.einsum("nhd,nkhd->nkh", qh, kw) / math.sqrt(dh) + self.edge_bias * tok.win_len[..., None]
        s = s.masked_fill(~tok.win_mask[..., None], -torch.inf)
        if c.global_tokens:
            qg, kg, vg = self.qkv(self.ln_att(zg)).split(d, dim=2)        # (G, 2, d)
            kg_t, vg_t = kg[tok.graph].view(tok.n, 2, H, dh), vg[tok.graph].view(tok.n, 2, H, dh)
            s = torch.cat([s, torch.einsum("nhd,nkhd->nkh", qh, kg_t) / math.sqrt(dh)], dim=1)
            vw = torch.cat([vw, vg_t], dim=1)
        att = torch.softmax(s, dim=1)
        out = torch.einsum("nkh,nkhd->nhd", att, vw).reshape(tok.n, d)
        h = z + self.proj(out)
        h = h + self.mlp(self.ln_mlp(h))
        if c.global_tokens:
            # Each global token attends over every city token of its query (a softmax per query).
            G = len(tok.glob)
            sg = torch.einsum("nhd,nghd->ngh", k.view(tok.n, H, dh),
                              qg[tok.graph].view(tok.n, 2, H, dh)) / math.sqrt(dh)
            mx = torch.full((G, 2, H), -torch.inf).scatter_reduce(0, tok.graph[:, None, None].expand_as(sg), sg, "amax")
            e = torch.exp(sg - mx[tok.graph])
            den = torch.zeros(G, 2, H).index_add_(0, tok.graph, e)
            num = torch.zeros(G, 2, H, dh).index_add_(0, tok.graph, e[..., None] * v.view(tok.n, 1, H, dh))
            gout = (num / den[..., None]).reshape(G, 2, d)
            zg = zg + self.proj(gout)
            zg = zg + self.mlp(self.ln_mlp(zg))
        return h, zg

    def start_state(self, tok: Tokens) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.start.expand(tok.n, -1).clone()
        g = self.start.expand(len(tok.glob), 2, -1).clone()
        delta = self.min_head.init(tok) if self.config.min_head else \
            torch.full((tok.n,), torch.inf, dtype=torch.float64)
        return h, g, delta

    def step(self, h, g, delta, tok: Tokens, first: bool):
        """One loop: a min-head round, then the block."""
        if self.config.min_head:
            delta = self.min_head.round(delta, tok)
        h, g = self.loop(h, g, self.dynamic(delta, tok), tok, first)
        return h, g, delta

    def detour_estimate(self, h: torch.Tensor, tok: Tokens) -> torch.Tensor:
        """Learned km to target in radii: straight distance x (1 + softplus(detour))."""
        return tok.dt.float() * (1.0 + F.softplus(self.detour(self.ln_out(h))[:, 0]))

    # -- training loss --------------------------------------------------------------------------------
    def forward(self, tok: Tokens, labels: torch.Tensor, true: torch.Tensor, weight: torch.Tensor,
                loops_free: torch.Tensor, loops_grad: torch.Tensor, l1: torch.Tensor, detour_weight: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed loss, supervised tokens): per loop with gradient, the min head's L1 error against
        Bellman-Ford after that many rounds (labels[i]), plus the detour read-out's |log1p error| against
        the true distance (`true`, radii), plus an L1 penalty on the min head's ten weights."""
        h, g, delta = self.start_state(tok)
        with torch.no_grad():
            for i in range(int(loops_free)):
                h, g, delta = self.step(h, g, delta, tok, first=i == 0)
        h, g = h.detach(), g.detach()
        total, count = torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.float64)
        count_min = torch.zeros((), dtype=torch.float64)    # cities the min head was supervised on
        n_grad = int(loops_grad)
        for i in range(n_grad):
            h, g, delta = self.step(h, g, delta, tok, first=int(loops_free) + i == 0)
            est = self.detour_estimate(h, tok)
            err_h = (torch.log1p(est) - torch.log1p(true.float())).abs().double()
            total = total + float(detour_weight) * (err_h * weight).sum()
            if self.config.min_head:
                reached = torch.isfinite(delta)
                ok = reached & torch.isfinite(labels[i])
                e = (self.min_head.estimate(delta) - torch.where(ok, labels[i], torch.zeros_like(delta))).abs()
                total = total + (e * weight * ok).sum()
                count_min = count_min + (weight * ok).sum()
            count = count + weight.sum()
        if self.config.min_head:
            # Per city the min head was supervised on, as the bellman family does: scaled by every token
            # instead, the penalty outweighed the error early on (few cities reached) and pulled the
            # weights off Bellman-Ford's (sender 0.9996, 42 m added per hop after 128,000 graphs).
            penalty = sum(p.abs().sum() for p in self.min_head.parameters())
            total = total + l1 * penalty * count_min.detach()
        return total / n_grad, count / n_grad


def loop_flops(c: LoopedConfig, n_tokens: int, n_edges: int) -> float:
    """FLOPs of one loop over n_tokens city tokens and n_edges edges (multiply-add = 2), global tokens included."""
    d, k = c.dim, c.window + (2 if c.global_tokens else 0)
    f = 0.0
    if c.min_head:
        f += n_edges * 4.0 + n_tokens * 6.0                      # message (mul-add, add), min; read-out features
    per_token = 2 * (N_GEO + N_DYN) * d + 6 * d                  # injection + LayerNorm
    if c.softmax:
        per_token += 2 * d * 3 * d                               # q, k, v
        per_token += 2 * 2 * d * c.window                        # edge terms of keys and values
        per_token += 2 * d * k * 2 + 5 * k * c.heads             # scores, weighted values, softmax
        per_token += 2 * d * d + 2 * 2 * d * c.mlp_ratio * d + 12 * d   # projection, MLP, two LayerNorms
        if c.global_tokens:
            per_token += 2 * (2 * d) * 2 + 5 * 2 * c.heads       # the two global tokens' scores and values
    glob = 0.0
    if c.softmax and c.global_tokens:                            # the two global tokens' own projections and MLP
        glob = 2 * (2 * (N_GEO + N_DYN) * d + 2 * d * 3 * d + 2 * d * d + 2 * 2 * d * c.mlp_ratio * d + 12 * d)
    return float(n_tokens * per_token + n_tokens * (2 * d + 3.0) + glob)   # + the detour read-out per token


# -- inference: the min head over a corridor, the block over a tube around the path -------------------

class LoopedThinker:
    """Runs the looped block on one query of the full graph, a loop at a time.

    The min head is run exactly as the bellman family runs its network (`citypath.models.bellman.BellmanThinker`:
    float64, messages only from cities whose value changed last loop, inside the corridor that grows
    when the source's estimate exceeds it). The block (injection, softmax heads, MLP, detour read-out)
    runs over the **tube**: the cities of the last decoded path that the min head has not reached yet,
    their graph neighbours, and source and target; cities the min head has settled no longer need it
    (their distance is the min head's), so the tube shrinks as the min head spreads. Token states
    persist across steps for cities that stay in the tube.
    """

    def __init__(self, net: LoopedNet, g: CityGraph, src: int, dst: int):
        from citypath.models.bellman import BellmanConfig, BellmanThinker, Weights

        c = net.config
        self.net, self.g, self.src, self.dst = net, g, src, dst
        self.mh = BellmanThinker(Weights.of(net.min_head), g, BellmanConfig(
            hidden_dim=1, corridor_factor=c.corridor_factor, corridor_slack_radii=c.corridor_slack_radii), src, dst)
        if not c.min_head:      # ablation: nothing is ever reached (the target itself aside)
            self.mh.s.frontier = np.array([], dtype=np.int64)
            self.mh.s.corridor[:] = False
        self.to_src_r = self.mh.s.via_km - self.mh.s.to_target_km
        self.h = np.zeros((g.n_cities, c.dim), np.float32)
        self.h[:] = net.start.detach().numpy()
        self.gtok = net.start.detach().expand(1, 2, -1).clone()
        self.tube = np.array([src, dst])
        self.tok: Tokens | None = None             # set by set_tube before the first loop
        self.est = np.full(g.n_cities, np.nan)      # learned km to target (tube cities, last loop)
        # Operations so far (citypath.cost): the min head's set-up, and the block's per-city arrays (h, est, to_src).
        self.ops = self.mh.s.ops + cost.fill(g.n_cities * (c.dim + 2))
        self.loops = 0
        self.set_tube([src, dst])                   # until a decoded path gives a better one

    @property
    def converged(self) -> bool:
        """The min head has reached the source and nothing changed in its last round."""
        s = self.mh.s
        return bool(s.reached[self.src]) and not len(s.frontier)

    def set_tube(self, path: list[int]) -> None:
        """Tokens for the next step: unreached cities of `path`, their neighbours, source and target.

        A token's window is its k nearest graph neighbours (the graph's, cached once) that are in the tube."""
        g, R = self.g, self.g.radius_km
        ip, ix = g.adjacency.indptr, g.adjacency.indices
        open_ = [c for c in path if not self.mh.s.reached[c]]
        parts = [np.array([self.src, self.dst])] + [ix[ip[c]:ip[c + 1]] for c in open_] + [np.array(open_, np.int64)]
        self.tube = tube = np.unique(np.concatenate(parts))
        local = np.full(g.n_cities, -1)
        k = self.net.config.window
        # The tube's bookkeeping: its cities sorted, a city -> token table, windows, geography and the tokens.
        self.ops += cost.sort(sum(len(p) for p in parts)) + cost.fill(g.n_cities) \
            + cost.fill(len(tube) * (4 * k + 3 * N_GEO + 8))
        local[tube] = np.arange(len(tube))
        nn_idx, nn_len = nearest_neighbours(g, self.net.config.window)
        win = local[nn_idx[tube]]
        mask = win >= 0
        win = np.where(mask, win, np.arange(len(tube))[:, None])
        s = self.mh.s
        geo = geo_features(s.to_target_km[tube] / R, self.to_src_r[tube] / R, s.to_target_km[self.src] / R,
                           tube == self.src, tube == self.dst)
        t = torch.from_numpy
        empty = torch.zeros(0, dtype=torch.long)
        self.tok = Tokens(t(geo).float(), t(s.to_target_km[tube] / R).double(), empty, empty,
                          torch.zeros(0, dtype=torch.float64), t(win).long(), t(mask),
                          t(np.where(mask, nn_len[tube] / R, 0.0)).float(), torch.zeros(len(tube), dtype=torch.long),
                          torch.tensor([[local[self.src], local[self.dst]]]),
                          t(np.stack([tube == self.dst, tube == self.src], axis=1).astype(np.float64)))

    def dynamic(self) -> torch.Tensor:
        """What the min head says of each tube city: reached, log((estimate + 1) / (straight + 1)) in radii."""
        s, R = self.mh.s, self.g.radius_km
        reached = s.reached[self.tube]
        # estimates_km reads out every reached city (a pass over all cities), then the tube's two features.
        self.ops += cost.fill(2 * len(s.reached)) + 4.0 * int(s.reached.sum()) + 8.0 * len(self.tube)
        est = np.where(reached, np.nan_to_num(self.mh.estimates_km()[self.tube]) / R, 0.0)
        ratio = np.where(reached, np.log((np.maximum(est, 0.0) + 1.0) / (s.to_target_km[self.tube] / R + 1.0)), 0.0)
        return torch.from_numpy(np.stack([reached, ratio], axis=1)).float()

    @torch.no_grad()
    def loop(self) -> None:
        c = self.net.config
        mh_before = self.mh.s.ops
        if c.min_head:
            self.mh.round()
        self.ops += self.mh.s.ops - mh_before                          # the min head, as bellman counts it
        dyn = self.dynamic() if c.min_head else torch.zeros(self.tok.n, N_DYN)
        h = torch.from_numpy(self.h[self.tube])
        h, self.gtok = self.net.loop(h, self.gtok, dyn, self.tok, first=self.loops == 0)
        self.h[self.tube] = h.numpy()
        self.est[self.tube] = self.net.detour_estimate(h, self.tok).double().numpy() * self.g.radius_km
        self.ops += loop_flops(c, self.tok.n, 0) + cost.fill(2 * self.tok.n * (c.dim + 1))   # + state in/out
        self.loops += 1

    def decode(self, max_hops: int) -> tuple[list[int], float]:
        """The path from the source by the best next hop, and the FLOPs spent scoring neighbours.

        Reached neighbour: the min head's read-out of its message (its own Bellman equation); an
        unreached one: edge km + the block's learned estimate while the min head is still thinking,
        edge km + straight km once it has converged (then every city that could be on a shorter
        route is reached, and the path no longer depends on the block: halting is exact)."""
        g, s, w = self.g, self.mh.s, self.mh.w
        ip, ix, wt = g.adjacency.indptr, g.adjacency.indices, g.adjacency.data
        R = g.radius_km
        guess = s.to_target_km if self.converged else np.where(np.isnan(self.est), s.to_target_km, self.est)
        scored = [0]

        def score(cur: int, lo: int, hi: int) -> np.ndarray:
            nb, wl = ix[lo:hi], wt[lo:hi]
            r_nb = s.reached[nb]
            out = wl + guess[nb]
            if r_nb.any():
                msg = s.h[nb[r_nb]] @ w.A + (wl[r_nb] / R)[:, None] * w.a + w.b
                out[r_nb] = (msg @ w.r + w.r0) * R
            scored[0] += len(nb)
            return out

        path = greedy_walk(ip, ix, self.src, self.dst, max_hops, score)
        from citypath.models.bellman import decode_ops

        return path, decode_ops(scored[0], 1) + cost.fill(2 * len(guess))     # the guesses, the visited flags

    def estimates_for_map(self) -> np.ndarray:
        """km to target per city as the model holds it (min head where reached, else the block's; NaN elsewhere)."""
        out = self.mh.estimates_km()
        fill = np.isnan(out) & ~np.isnan(self.est)
        out[fill] = self.est[fill]
        return out


def max_hops_for(g: CityGraph, src: int, dst: int) -> int:
    return int(8 * g.distance_km(src, dst) / g.radius_km) + 64


class LoopedModel(StepwiseModel):
    """The trained block behind the routing protocol: step k decodes after k * loops_per_step loops; `refine` is
    the verifier's best of the paths decoded after steps 1..k (deterministic: `seed` unused). Thinking halts once
    the path cannot change any more; the converged path is then repeated at no cost (see `last_run_steps`)."""

    family = "looped"
    # Weights as stored: float32 for the block, float64 for the min head (exact over a hundred rounds).
    network, config_class, weights_cast = LoopedNet, LoopedConfig, "stored"
    has_state_view = True

    def __init__(self, name: str, card: dict, net: LoopedNet):
        super().__init__(name, card, net)
        self.last_run_steps: int | None = None

    def scaffold_control(self):
        """Min head only: this model's own min-head scalars run as the bellman family runs them (the same frontier,
        corridor and decoder, `loops_per_step` rounds a step), the block removed; unreached cities are scored by
        straight km. What the block adds is this model against it."""
        from citypath.models.bellman import BellmanConfig, BellmanModel

        c = self.config
        config = BellmanConfig(hidden_dim=1, rounds_per_step=c.loops_per_step, max_steps=c.max_steps,
                               corridor_factor=c.corridor_factor, corridor_slack_radii=c.corridor_slack_radii)
        net = BellmanModel.new_network(config)
        net.load_state_dict(self.net.min_head.state_dict())
        n = count_parameters(net)
        card = self.control_card(f"{self.name} with its block removed: its min head's {n} scalars, run over the same "
                                 "frontier and corridor and decoded by the same walk (straight km where unreached)",
                                 family="bellman", config=asdict(config), num_parameters=n, learned=self.learned)
        return BellmanModel(card["name"], card, frozen(net))

    def _run(self, g: CityGraph, src: int, dst: int, steps: int
             ) -> Iterator[tuple[list[int], float, LoopedThinker | None]]:
        """Per step: the decoded path, the FLOPs it spent (0 once halted), and the thinker (None: src == dst)."""
        if src == dst:
            for _ in range(steps):
                yield [src], 0.0, None
            self.last_run_steps = 0
            return
        t = LoopedThinker(self.net, g, src, dst)
        cap = max_hops_for(g, src, dst)
        prior, prior_ops = t.decode(cap)         # the straight-line walk: the first step's tube
        t.ops += prior_ops
        t.set_tube(prior)
        last: list[int] | None = None
        used, settled = 0, False
        before = 0.0                             # the first step carries the set-up and the prior walk
        for _ in range(steps):
            if settled:
                yield last, 0.0, t
                continue
            bound = t.mh.s.bound_km
            for _ in range(self.config.loops_per_step):
                t.loop()
            path, dec_ops = t.decode(cap)
            t.ops += dec_ops
            used += 1
            settled = t.converged and t.mh.s.bound_km == bound and path == last and path[-1] == dst
            last = path
            t.set_tube(path)
            yield path, t.ops - before, t
            before = t.ops
        self.last_run_steps = used

    def trace(self, g: CityGraph, src: int, dst: int, steps: int = 1) -> Iterator[list[StateView]]:
        """Per step: km to target as the model holds it, and where the min head has reached."""
        src, dst, steps = self.check_query(g, src, dst, steps)
        for _, _, thinker in self._run(g, src, dst, steps):
            km = np.full(g.n_cities, np.nan)
            reached, tube = np.zeros(g.n_cities), np.zeros(g.n_cities)
            if thinker is None:
                km[src] = 0.0
            else:
                km = thinker.estimates_for_map()
                reached = thinker.mh.s.reached.astype(np.float64)
                tube[thinker.tube] = 1.0
            yield [StateView("estimated km to target", "km", km),
                   StateView("reached by the min head", "", reached),
                   StateView("tokens of the block next step", "", tube)]
