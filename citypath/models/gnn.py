"""gnn: a recurrent message-passing network that thinks longer by passing more messages.

One weight-shared round of message passing per iteration, DeepThinking-style: every city
keeps a small state vector; each round it takes the per-channel *minimum* of linear messages
from its message neighbours (Bellman-Ford-aligned min aggregation) and updates its state with
an MLP that also sees its input features again (recall: is it the target, the source, how
close to the target). A linear read-out gives each city's estimated *detour* to the target,
`r = (distance to target along the graph - straight-line distance) / radius_km`, so the
model never has to output or extrapolate raw distances: only local slacks enter it.

Messages travel over a sparse subset of the graph's edges (in each of 8 compass cones around
a city, its nearest and its farthest neighbour: at most 16 per city instead of ~210), so a
round on the full graph stays cheap (docs/benchmarks.md times a step). Paths are decoded from the
source among *all* graph neighbours: the next city is the unvisited neighbour minimising
hop km + straight-line km to target + predicted detour. Every hop is a graph edge, so a path
never has an illegal jump by construction; it is valid exactly when it reaches the target,
and length ratio is the measure of quality.

Step k of `refine` is the path decoded after k * rounds_per_step rounds. Trained on random
regional sub-graphs of a few hundred to ~1,500 cities with a progressive loss (a random
number of rounds without gradient, then a few with), it is run on the full graph with many
more rounds than it was ever trained with: "train small, think longer".

Compute is counted by the one convention (`citypath.cost`) as the run spends it (`setup_ops`,
`round_ops`, `readout_ops`, the decode's neighbours). The message graph is built once per graph and
cached, not per query.

    >>> m = load_model("gnn-small")                        # doctest: +SKIP
    >>> paths = list(m.refine(g, src, dst, steps=32))      # doctest: +SKIP
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from citypath import cost
from citypath.cache import cached_arrays, config_key
from citypath.geo import haversine_km
from citypath.graph import CityGraph
from citypath.models.base import StepwiseModel, greedy_walk

N_NODE_FEATURES = 3   # is_target, is_source, exp(-straight-line km to target / radius)
N_EDGE_FEATURES = 2   # slack of the hop w.r.t. the target, hop length (both / radius)
PAD_PENALTY = 1e4     # added to padded message slots so the min never picks them


@dataclass(frozen=True)
class GNNConfig:
    """Hyper-parameters of the recurrent message-passing network (stored in the card)."""

    hidden_dim: int = 12
    mlp_dim: int = 32
    cones: int = 8                 # message edges: nearest + farthest neighbour in each compass cone
    rounds_per_step: int = 4       # message-passing rounds per refinement step
    max_steps: int = 32            # steps the card reports as the model's budget (= max_steps * rounds rounds)



SIZES = {"small": dict(hidden_dim=12, mlp_dim=32),
         # The train/test-compute sweep's other sizes (experiments/tradeoff.py): 181 and 5,657 parameters (31x).
         "tiny": dict(hidden_dim=4, mlp_dim=8),
         "large": dict(hidden_dim=24, mlp_dim=64)}


# -- the message graph -------------------------------------------------------------------------

@dataclass(frozen=True)
class MessageGraph:
    """Sparse message edges in padded, slot-major form: column v lists the cities v can step to.

    `nbr[j, v]` is v's j-th neighbour (v itself in padded slots), `hop_km[j, v]` its distance,
    `pad[j, v]` True for padded slots. Slot-major because the min over slots is then an
    element-wise min of K contiguous blocks, several times faster than a strided reduction.
    """

    nbr: torch.Tensor      # [K, N] int64
    hop_km: torch.Tensor   # [K, N] float32
    pad: torch.Tensor      # [K, N] bool

    @property
    def n(self) -> int:
        return self.nbr.shape[1]


def message_graph(lat: np.ndarray, lon: np.ndarray, adjacency: sp.csr_matrix, cones: int) -> MessageGraph:
    """Per city, its nearest and farthest graph neighbour in each of `cones` compass sectors.

    Nearest neighbours keep the sparse graph's shortest paths within ~1% of the full graph's;
    farthest ones let information cross ~90 km per round instead of ~30.
    """
    coo = adjacency.tocoo()
    u, v, w = coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data
    n = adjacency.shape[0]
    lat_r, lon_r = np.radians(lat), np.radians(lon)
    dx = (lon_r[v] - lon_r[u]) * np.cos((lat_r[u] + lat_r[v]) / 2)
    dy = lat_r[v] - lat_r[u]
    cone = np.minimum((np.arctan2(dy, dx) % (2 * np.pi) / (2 * np.pi / cones)).astype(np.int64), cones - 1)
    # One sort by (city, cone, hop km): the first edge of each group is the nearest, the last the farthest.
    # Hop km < 1000, so the combined key is exact in float64; the stable sort breaks ties by neighbour id.
    order = np.argsort((u * cones + cone) * 1000.0 + w, kind="stable")
    group = (u * cones + cone)[order]
    first = np.r_[True, group[1:] != group[:-1]]
    last = np.r_[group[1:] != group[:-1], True]
    keep = [order[first], order[last]]
    sel = np.union1d(keep[0], keep[1])
    rows, cols, km = u[sel], v[sel], w[sel]        # sorted by edge index = by row (CSR order)
    deg = np.bincount(rows, minlength=n)
    k = max(1, int(deg.max()) if len(deg) else 1)
    slot = np.arange(len(rows)) - np.repeat(np.cumsum(deg) - deg, deg)
    nbr = np.repeat(np.arange(n, dtype=np.int64)[None, :], k, axis=0)
    hop = np.zeros((k, n), np.float32)
    pad = np.ones((k, n), bool)
    nbr[slot, rows], hop[slot, rows], pad[slot, rows] = cols, km, False
    return MessageGraph(torch.from_numpy(nbr), torch.from_numpy(hop), torch.from_numpy(pad))


def query_features(mg: MessageGraph, lat: np.ndarray, lon: np.ndarray, src: np.ndarray | int,
                   dst: np.ndarray | int, radius_km: float, owner: np.ndarray | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(node features [N, 3], edge features [K, N, 2], straight-line km to target [N]) for a query.

    With `owner` (the query each node belongs to, for batched disjoint graphs) src/dst are
    arrays indexed by owner.
    """
    n = mg.n
    dst_of = np.full(n, dst) if owner is None else np.asarray(dst)[owner]
    src_of = np.full(n, src) if owner is None else np.asarray(src)[owner]
    to_target = haversine_km(lat, lon, lat[dst_of], lon[dst_of]).astype(np.float32)
    ids = np.arange(n)
    x = np.stack([(ids == dst_of), (ids == src_of), np.exp(-to_target / radius_km)], axis=1).astype(np.float32)
    to_t = torch.from_numpy(to_target)
    # Slack of the hop v -> u with respect to the target: >= 0 by the triangle inequality, 0 on a straight line.
    slack = (mg.hop_km + to_t[mg.nbr] - to_t[None, :]).clamp_min(0.0)
    e = torch.stack([slack, mg.hop_km], dim=2) / radius_km
    return torch.from_numpy(x), e, to_t


# -- the network --------------------------------------------------------------------------------

class RecurrentMPNN(nn.Module):
    """The weight-shared round: h_v <- MLP(h_v, min_u (A h_u + B e_vu), x_v); read-out detour r_v."""

    def __init__(self, config: GNNConfig):
        super().__init__()
        d, m = config.hidden_dim, config.mlp_dim
        self.config = config
        self.encode = nn.Linear(N_NODE_FEATURES, d)
        self.message_node = nn.Linear(d, d)
        self.message_edge = nn.Linear(N_EDGE_FEATURES, d, bias=False)
        # The update MLP's first layer, split so the recall input's share is computed once per query.
        self.update_state = nn.Linear(2 * d, m)
        self.update_recall = nn.Linear(N_NODE_FEATURES, m, bias=False)
        self.update_out = nn.Linear(m, d)
        self.readout = nn.Linear(d, 1)

    def initial_state(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)

    def edge_term(self, e: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """The per-query part of every message, computed once and reused by every round."""
        return self.message_edge(e) + pad.unsqueeze(-1) * PAD_PENALTY

    def recall_term(self, x: torch.Tensor) -> torch.Tensor:
        """The input features' share of the update, re-injected every round (computed once)."""
        return self.update_recall(x)

    def round(self, h: torch.Tensor, recall: torch.Tensor, nbr: torch.Tensor, edge_term: torch.Tensor) -> torch.Tensor:
        # Messages are linear in the sender's state, so A h is computed once per city, not per edge.
        sent = self.message_node(h)
        k, n = nbr.shape
        msg = sent.index_select(0, nbr.reshape(-1)).view(k, n, -1)
        msg = msg.add_(edge_term) if not msg.requires_grad else msg + edge_term
        agg = msg.amin(dim=0)
        z = torch.relu(self.update_state(torch.cat([h, agg], dim=1)) + recall)
        return self.update_out(z)

    def detour(self, h: torch.Tensor) -> torch.Tensor:
        """Predicted detour to the target in units of radius_km (unclamped; the decoder clamps at 0)."""
        return self.readout(h).squeeze(-1)

    def forward(self, nbr: torch.Tensor, pad: torch.Tensor, x: torch.Tensor, e: torch.Tensor,
                target: torch.Tensor, weight: torch.Tensor, rounds_free: torch.Tensor,
                rounds_grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Progressive loss on a batch of disjoint graphs: (summed loss, number of supervised nodes).

        `rounds_free` rounds without gradient from the initial state, then `rounds_grad` rounds
        with gradient; the loss (smooth L1 on the detour) is averaged over those graded rounds, so
        every intermediate state is trained to be the best estimate so far ("anytime").
        """
        n_free, n_grad = int(rounds_free), int(rounds_grad)
        with torch.no_grad():
            et, rt = self.edge_term(e, pad), self.recall_term(x)
            h = self.initial_state(x)
            for _ in range(n_free):
                h = self.round(h, rt, nbr, et)
        if n_free == 0:
            h = self.initial_state(x)
        et, rt = self.edge_term(e, pad), self.recall_term(x)
        total = h.new_zeros(())
        for _ in range(n_grad):
            h = self.round(h, rt, nbr, et)
            err = nn.functional.smooth_l1_loss(self.detour(h), target, beta=0.05, reduction="none")
            total = total + (err * weight).sum()
        return total / n_grad, weight.sum()


# -- decoding -------------------------------------------------------------------------------------

def decode_path(indptr: np.ndarray, indices: np.ndarray, hop_km: np.ndarray, to_target_km: np.ndarray,
                src: int, dst: int, max_hops: int, ops: list[float] | None = None) -> list[int]:
    """Walk from src: next city = the unvisited graph neighbour minimising hop + estimated distance to dst.

    Stops at dst, when every neighbour was visited (a dead end: the path then misses the
    target) or after max_hops hops. Every hop is a graph edge, so the path is always legal.
    With `ops` (a one-element list) the walk's operations are added to it (`decode_ops`).
    """
    def score(cur: int, lo: int, hi: int) -> np.ndarray:
        if ops is not None:
            ops[0] += decode_ops(hi - lo)
        return hop_km[lo:hi] + to_target_km[indices[lo:hi]]

    if ops is not None:
        ops[0] += cost.fill(len(indptr) - 1)        # the walk's visited flags over every city
    return greedy_walk(indptr, indices, src, dst, max_hops, score)


def decode_ops(neighbours: int) -> float:
    """Operations of one hop of the walk over `neighbours` neighbours: each one's score (a gather and an add),
    its copy, the visited test and mask, then the argmin."""
    return 5.0 * neighbours + cost.select(neighbours)


def max_hops_for(straight_km: float, radius_km: float) -> int:
    # Optimal paths take ~1 hop per 45 km on the default graph; 4x that plus slack never cuts a sane path.
    return int(8 * straight_km / radius_km) + 64


# -- counted operations ---------------------------------------------------------------------------

def setup_ops(c: GNNConfig, n: int, k: int) -> float:
    """Operations of a query's set-up on n cities with k message slots each: straight km to the target, the
    node features (the target and source flags, exp(-km / radius)), the edge features of every slot (slack,
    hop, both / radius), the per-query edge term (with the padding penalty), the recall term and the initial
    state."""
    d, m = c.hidden_dim, c.mlp_dim
    ops = cost.haversine(n) + cost.fill(3 * n) + 2.0 * n + 3.0 * n + cost.fill(N_NODE_FEATURES * n)
    ops += 4.0 * k * n + cost.fill(N_EDGE_FEATURES * k * n) + N_EDGE_FEATURES * k * n
    ops += cost.matmul(k * n, N_EDGE_FEATURES, d) + 2.0 * k * n * d
    ops += cost.matmul(n, N_NODE_FEATURES, m) + cost.matmul(n, N_NODE_FEATURES, d) + n * d
    return ops


def round_ops(c: GNNConfig, n: int, k: int) -> float:
    """Operations of one round on n cities with k message slots each: A h once per city, every slot's message
    gathered and its edge term added, the min over slots, the update MLP (the recall share precomputed) and
    its output layer."""
    d, m = c.hidden_dim, c.mlp_dim
    ops = cost.matmul(n, d, d) + n * d
    ops += cost.fill(k * n * d) + k * n * d + k * n * d
    ops += cost.fill(2 * n * d) + cost.matmul(n, 2 * d, m) + 3.0 * n * m
    return ops + cost.matmul(n, m, d) + n * d


def readout_ops(c: GNNConfig, n: int) -> float:
    """Operations of reading out every city's estimate: the detour, clamped, in km, plus the straight line,
    as float64."""
    return cost.matmul(n, c.hidden_dim, 1) + n + 4.0 * n


# -- the routing model ----------------------------------------------------------------------------

_GRAPH_CACHE: dict[tuple[str, int], MessageGraph] = {}
_GRAPH_LOCK = threading.Lock()


def graph_messages(g: CityGraph, cones: int) -> MessageGraph:
    """The message graph of `g`, built once per (graph, cones) and shared by all threads."""
    key = (g.fingerprint, cones)
    with _GRAPH_LOCK:
        if key not in _GRAPH_CACHE:
            if len(_GRAPH_CACHE) >= 4:
                _GRAPH_CACHE.pop(next(iter(_GRAPH_CACHE)))
            _GRAPH_CACHE[key] = cached_message_graph(g, cones)
        return _GRAPH_CACHE[key]


MESSAGE_GRAPH_VERSION = 1


def cached_message_graph(g: CityGraph, cones: int) -> MessageGraph:
    """`message_graph` of `g`, kept in the disk cache (~1 s to build on the default graph, ms to read).

    Keyed by the graph's fingerprint and `cones`; a corrupt or unwritable cache means building it again.
    """
    def build() -> dict[str, np.ndarray]:
        mg = message_graph(g.lat, g.lon, g.adjacency, cones)
        return {"nbr": mg.nbr.numpy(), "hop_km": mg.hop_km.numpy(), "pad": mg.pad.numpy()}

    def valid(a: dict[str, np.ndarray]) -> bool:
        return a["nbr"].shape == a["hop_km"].shape == a["pad"].shape and a["nbr"].shape[1] == g.n_cities

    a = cached_arrays("gnn-messages", config_key(g.fingerprint, cones, MESSAGE_GRAPH_VERSION), build,
                      meta={"graph": g.fingerprint, "cones": cones}, valid=valid)
    return MessageGraph(torch.from_numpy(a["nbr"]), torch.from_numpy(a["hop_km"]), torch.from_numpy(a["pad"]))


class GNNModel(StepwiseModel):
    """A trained recurrent MPNN behind the routing protocol: step k decodes after k * rounds_per_step rounds.

    `refine` gives, at step k, the verifier's best (`citypath.metrics.verifier_key`: a path reaching dst beats one
    that does not, then the shorter in km) of the paths decoded after steps 1..k, so quality never goes down
    with more steps; `decodes()` gives the raw per-step paths. Deterministic (`seed` unused).
    """

    family = "gnn"
    network, config_class = RecurrentMPNN, GNNConfig

    def decodes(self, g: CityGraph, src: int, dst: int, steps: int = 1) -> Iterator[list[int]]:
        """The raw path decoded after each step of rounds (no best-so-far), for analysis."""
        src, dst, steps = self.check_query(g, src, dst, steps)
        return (p for p, _, _ in self._run(g, src, dst, steps))

    def _run(self, g: CityGraph, src: int, dst: int, steps: int
             ) -> Iterator[tuple[list[int], float, np.ndarray | None]]:
        """Per step: the raw path decoded after its rounds, the operations the step spent (its rounds, read-out and
        decode; step 1 also the query's set-up), and every city's estimated km to dst it decoded from."""
        if src == dst:
            for _ in range(steps):
                yield [src], 0.0, None
            return
        adj = g.adjacency
        for estimate, ops in self._estimates(g, src, dst, steps):
            spent = [ops]
            path = decode_path(adj.indptr, adj.indices, adj.data, estimate, src, dst,
                               max_hops_for(float(estimate[src]), g.radius_km), ops=spent)
            yield path, float(spent[0]), estimate

    def estimates(self, g: CityGraph, src: int, dst: int, steps: int) -> Iterator[np.ndarray]:
        """Per step, every city's estimated km to dst (straight line + predicted detour >= 0; 0 at dst)."""
        return (est for est, _ in self._estimates(g, src, dst, steps))

    def _estimates(self, g: CityGraph, src: int, dst: int, steps: int) -> Iterator[tuple[np.ndarray, float]]:
        """`estimates`, each with the operations spent on it (the first also the query's set-up)."""
        c = self.config
        mg = graph_messages(g, c.cones)
        k, n = mg.nbr.shape
        with torch.inference_mode():
            x, e, to_t = query_features(mg, g.lat, g.lon, src, dst, g.radius_km)
            et, rt = self.net.edge_term(e, mg.pad), self.net.recall_term(x)
            h = self.net.initial_state(x)
        ops = setup_ops(c, n, k)
        for _ in range(steps):
            # Inference mode per step, not around the yield: the caller's code must not run inside it.
            with torch.inference_mode():
                for _ in range(c.rounds_per_step):
                    h = self.net.round(h, rt, mg.nbr, et)
                est = (to_t + self.net.detour(h).clamp_min(0.0) * g.radius_km).numpy().astype(np.float64)
            est[dst] = 0.0
            yield est, ops + c.rounds_per_step * round_ops(c, n, k) + readout_ops(c, n)
            ops = 0.0
