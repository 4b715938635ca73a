"""bellman: a tiny min-aggregation network that thinks until its answer is Dijkstra's.

A Bellman-Ford-aligned recurrent network (Xu et al. 2021; Nerem et al. 2026). Every city v
holds a state h_v in R^d, "unreached" (+inf) until a message arrives. Each round, along
**every graph edge** u -> v, the network sends

    m_uv = h_u A + a * w_uv + b + x_v B          (x_v = [is target, is source]: input injection)

and each city keeps the per-channel minimum: h_v <- min(h_v, min_u m_uv). The target starts
at h_t = x_t E + e; a linear read-out r . h_v + r0 is the city's estimated km to the target
(in units of radius_km). Nothing in the code says "add the edge length": A, a, b, B, E, e, r
and r0 are learned (with an L1 penalty that pushes unneeded weights to zero) on small graphs,
and docs/models.md compares what was learned with Bellman-Ford's exact weights.

Test-time compute: step k of `refine` is the path decoded after k * rounds_per_step rounds.
The path is decoded from the source by the model's own Bellman equation: the next city is
the neighbour u minimising the read-out of the message u -> current city; a neighbour not
reached yet is scored by its straight-line km to the target (the walker's prior), so early
steps head straight for the target and later ones follow the model. Every hop is a graph
edge (no illegal jumps by construction): valid = reaches the target.

Compute follows the question, not the map: a round only sends messages from cities whose
state changed in the last round (the frontier), only to cities inside a corridor around
source and target (an ellipse: straight-line km via the city <= a bound), and a city
whose straight-line detour already exceeds the source's current estimate stops sending.
The corridor starts at 1.1 x the straight line + 1 radius and grows to the source's
estimate (or by half when the frontier dies out before reaching the source), so no route
is cut off. Messages are computed per channel over the frontier's edges (never an all
edges x d tensor). Operations are counted as the run spends them (`citypath.cost`), with one exception: a
round's edges are counted as gathering every frontier edge from the graph and testing its receiver against the
corridor (`FrontierEdges`), while the run reads the same edges from the corridor's, gathered once per corridor
(`CorridorEdges`: 0.64x the CPU a query, results/issue31-bellman-corridor.json); the count was kept so the cards
and results stay comparable: it is the reference's work, not the run's.

The frontier is only an execution shortcut (a city whose state did not change would send the same
messages again); the **corridor is not**: it is hand-written pruning that decides which cities may
be reached, so it is part of the scaffold, with the decoder's straight-line prior for unreached
cities. `BellmanModel.bellman_ford` is the same scaffold with Bellman-Ford's exact hand-set weights
(the classical row `bellman-ford` and bellman-tiny's attribution control).

    >>> m = load_model("bellman-tiny")                       # doctest: +SKIP
    >>> paths = list(m.refine(g, src, dst, steps=24))        # doctest: +SKIP
    >>> views = list(m.trace(g, src, dst, steps=24))         # per step: estimated km to target
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy import sparse
from torch import nn

from citypath import cost
from citypath.geo import haversine_km
from citypath.graph import CityGraph
from citypath.models.base import StateView, StepwiseModel, frozen, greedy_walk

N_INPUTS = 2            # is_target, is_source


@dataclass(frozen=True)
class BellmanConfig:
    """Hyper-parameters (stored in the card)."""

    hidden_dim: int = 1
    rounds_per_step: int = 4
    max_steps: int = 24              # 96 rounds: more than the longest optimal path's 82 hops
    corridor_factor: float = 1.1     # the corridor: straight km via the city <= factor x straight km + slack
    corridor_slack_radii: float = 1.0



class BellmanNet(nn.Module):
    """The weight-tied round and read-out; `forward` is the training loss on a batch of small graphs."""

    def __init__(self, config: BellmanConfig):
        super().__init__()
        d = config.hidden_dim
        self.config = config
        self.encode = nn.Linear(N_INPUTS, d)               # the target's initial state
        self.sender = nn.Linear(d, d, bias=False)          # A
        self.edge = nn.Linear(1, d)                        # a * w + b
        self.recall = nn.Linear(N_INPUTS, d, bias=False)   # B: input injection every round
        self.readout = nn.Linear(d, 1)                     # r . h + r0
        for p in self.parameters():
            nn.init.uniform_(p, 0.0, 1.0)   # non-negative start: a min of positive sums is a distance

    def round(self, h: torch.Tensor, reached: torch.Tensor, x: torch.Tensor, src: torch.Tensor,
              dst: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One synchronous round over every edge src -> dst of a (small) training graph."""
        send = self.sender(torch.where(reached[:, None], h, torch.zeros_like(h)))
        msg = send[src] + self.edge(w[:, None]) + self.recall(x)[dst]
        msg = torch.where(reached[src][:, None], msg, torch.full_like(msg, torch.inf))
        agg = torch.full_like(h, torch.inf).scatter_reduce(0, dst[:, None].expand_as(msg), msg, "amin",
                                                           include_self=True)
        return torch.minimum(h, agg), reached | torch.isfinite(agg).all(dim=1)

    def estimate(self, h: torch.Tensor) -> torch.Tensor:
        return self.readout(h).squeeze(-1)

    def forward(self, x: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, w: torch.Tensor,
                labels: torch.Tensor, weight: torch.Tensor, rounds_free: torch.Tensor,
                rounds_grad: torch.Tensor, l1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed loss, number of supervised cities): progressive L1 loss plus the L1 weight penalty.

        `labels[i]` (rounds_grad, n) is Bellman-Ford's estimate after rounds_free + i + 1 rounds
        (inf where a city is not reached yet); a city is supervised where both it and the model's
        state are reached, and the model is penalised for reaching a city Bellman-Ford has not.
        """
        is_target = x[:, 0] > 0
        h = torch.where(is_target[:, None], self.encode(x), torch.full((len(x), self.config.hidden_dim), torch.inf,
                                                                       dtype=x.dtype))
        reached = is_target.clone()
        with torch.no_grad():
            for _ in range(int(rounds_free)):
                h, reached = self.round(h, reached, x, src, dst, w)
        total, count = h.new_zeros(()), h.new_zeros(())
        for i in range(int(rounds_grad)):
            h, reached = self.round(h, reached, x, src, dst, w)
            est = self.estimate(torch.where(reached[:, None], h, torch.zeros_like(h)))
            ok = reached & torch.isfinite(labels[i])
            err = (est - torch.where(ok, labels[i], torch.zeros_like(est))).abs()
            total = total + (err * weight * ok).sum()
            count = count + (weight * ok).sum()
        penalty = sum(p.abs().sum() for p in self.parameters())
        return total / int(rounds_grad) + l1 * penalty * count.detach() / int(rounds_grad), count / int(rounds_grad)


# -- inference: the same network in float64 numpy, over the frontier only -------------------------------

@dataclass(frozen=True)
class Weights:
    """The learned weights as float64 arrays (inference runs in float64: ties are decided at ~1e-12 km)."""

    encode_w: np.ndarray   # (2, d)
    encode_b: np.ndarray   # (d,)
    A: np.ndarray          # (d, d)
    a: np.ndarray          # (d,)
    b: np.ndarray          # (d,)
    B: np.ndarray          # (2, d)
    r: np.ndarray          # (d,)
    r0: float

    @classmethod
    def of(cls, net: BellmanNet) -> Weights:
        f = lambda t: t.detach().double().numpy().copy()  # noqa: E731
        return cls(f(net.encode.weight).T, f(net.encode.bias), f(net.sender.weight).T, f(net.edge.weight)[:, 0],
                   f(net.edge.bias), f(net.recall.weight).T, f(net.readout.weight)[0], float(f(net.readout.bias)[0]))


@dataclass
class RunState:
    """Where one query's thinking stands after some rounds."""

    h: np.ndarray              # (n, d) states, +inf where unreached
    reached: np.ndarray        # (n,) bool
    frontier: np.ndarray       # ids whose state changed last round
    corridor: np.ndarray       # (n,) bool: cities allowed to receive messages
    bound_km: float            # the corridor's bound on straight km via the city
    via_km: np.ndarray         # (n,) straight km source -> city -> target
    to_target_km: np.ndarray   # (n,) straight km city -> target
    edges: int = 0             # edges processed so far
    scored: int = 0            # neighbours scored while decoding, so far
    ops: float = 0.0           # operations so far, by the one convention (citypath.cost), set-up included


class CorridorEdges:
    """The graph's edges whose receiver is inside a corridor, from the cities that can send (the corridor's and
    the target, the only city reached outside it), gathered once per corridor: a round then reads its frontier's
    edges from here instead of gathering every edge of the frontier and dropping those that leave the corridor.
    The same edges with the same lengths (in radii), so the same messages: each sender's run is its edges in the
    graph's order, those leaving the corridor dropped."""

    def __init__(self, g: CityGraph, corridor: np.ndarray, dst: int):
        senders = corridor.copy()
        senders[dst] = True
        rows = np.flatnonzero(senders)
        out = g.adjacency[rows]                       # the senders' edges, each run in the graph's order
        keep = np.flatnonzero(corridor[out.indices])
        self.edges = sparse.csr_matrix((out.data[keep] / g.radius_km, out.indices[keep],
                                        np.searchsorted(keep, out.indptr)), shape=(len(rows), len(corridor)))
        self.row = np.full(len(corridor), -1)
        self.row[rows] = np.arange(len(rows))

    def of(self, senders: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(degree: each sender's number of edges into the corridor, receiver, length in radii) of the edges of
        `senders` into the corridor, sender by sender."""
        r = self.row[senders]
        if (r < 0).any():
            raise ValueError(f"cities {senders[r < 0][:5].tolist()} cannot send: outside the corridor")
        out = self.edges[r]
        return np.diff(out.indptr), out.indices, out.data


class FrontierEdges:
    """`CorridorEdges`' answers found as the rounds did before it (up to session 21): every edge of the senders
    gathered from the graph, those leaving the corridor dropped. The same edges in the same order; kept as the
    reference its tests and `benchmarks/bench_bellman.py` compare with."""

    def __init__(self, g: CityGraph, corridor: np.ndarray, dst: int):
        self.g, self.corridor = g, corridor

    def of(self, senders: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ip, ix, wt = self.g.adjacency.indptr, self.g.adjacency.indices, self.g.adjacency.data
        deg = ip[senders + 1] - ip[senders]
        idx = np.repeat(ip[senders] - (np.cumsum(deg) - deg), deg) + np.arange(int(deg.sum()))
        keep = np.flatnonzero(self.corridor[ix[idx]])
        owner = np.repeat(np.arange(len(senders)), deg)[keep]
        return np.bincount(owner, minlength=len(senders)), ix[idx[keep]], wt[idx[keep]] / self.g.radius_km


class BellmanThinker:
    """Runs the network on one query of the full graph, a round at a time, over the frontier."""

    def __init__(self, w: Weights, g: CityGraph, config: BellmanConfig, src: int, dst: int,
                 edges: type = CorridorEdges):
        self.w, self.g, self.c, self.src, self.dst, self.edges = w, g, config, src, dst, edges
        n, d = g.n_cities, len(w.r)
        to_src = haversine_km(g.lat, g.lon, g.lat[src], g.lon[src])
        to_dst = haversine_km(g.lat, g.lon, g.lat[dst], g.lon[dst])
        via = to_src + to_dst
        bound = config.corridor_factor * float(to_src[dst]) + config.corridor_slack_radii * g.radius_km
        x_t = np.array([1.0, float(src == dst)])
        h = np.full((n, d), np.inf)
        h[dst] = x_t @ w.encode_w + w.encode_b
        reached = np.zeros(n, bool)
        reached[dst] = True
        # Input injection for the receivers: only the source's x differs from zero among non-targets.
        self.recall_src = np.array([0.0, 1.0]) @ w.B
        self.recall_dst = x_t @ w.B
        self.s = RunState(h, reached, np.array([dst]), via <= bound, bound, via, to_dst)
        # Set-up: straight km to source and target for every city, the states, the corridor and the flags.
        self.s.ops = cost.haversine(2 * n) + cost.fill(n * (d + 4))
        self._inside = edges(g, self.s.corridor, dst)

    def estimates_km(self) -> np.ndarray:
        """Read-out of every reached city, in km to the target (NaN where unreached)."""
        s, w = self.s, self.w
        out = np.full(len(s.reached), np.nan)
        out[s.reached] = (s.h[s.reached] @ w.r + w.r0) * self.g.radius_km
        return out

    def round(self) -> None:
        s, w, g = self.s, self.w, self.g
        if not len(s.frontier):
            if s.reached[self.src] or s.corridor.all():
                return
            self._grow(1.5 * s.bound_km)             # the corridor holds no route: widen it
            return
        ip = g.adjacency.indptr
        f = s.frontier
        gathered = int((ip[f + 1] - ip[f]).sum())
        s.edges += gathered
        # Per edge: the index bookkeeping (idx, owner, v, the corridor test, the hop), a message per channel. The
        # count is that of gathering every frontier edge and testing its receiver against the corridor; the run
        # reads only the frontier's edges inside the corridor, from `CorridorEdges` (the same edges, less work:
        # docs/benchmarks.md, "bellman-tiny's rounds").
        s.ops += cost.fill(5 * gathered) + d_ops(len(w.r)) * gathered + cost.matmul(len(f), len(w.r), len(w.r))
        deg, v, hop = self._inside.of(f)
        sent = s.h[f] @ w.A                           # A h_u once per sender, not per edge
        d = sent.shape[1]
        new = np.full((len(s.reached), d), np.inf)
        finite = True
        for c in range(d):                            # per channel: edge-sized vectors only
            m = np.repeat(sent[:, c], deg) + w.a[c] * hop + w.b[c]
            np.minimum.at(new[:, c], v, m)
            finite = finite and bool(len(m)) and m.max() < np.inf
        # The receivers, sorted and once each (the same ids as numpy's unique, counted as the sort it replaced):
        # with every message below +inf, the cities whose first channel got one; else marked in a city-sized array.
        if finite:
            touched = np.flatnonzero(new[:, 0] < np.inf)
        else:
            marked = np.zeros(len(s.reached), bool)
            marked[v] = True
            touched = np.flatnonzero(marked)
        s.ops += cost.fill(len(s.reached) * d) + cost.sort(len(v)) + cost.fill(len(touched) * (3 * d + 3))
        new_t = new[touched]
        new_t += np.where((touched == self.src)[:, None], self.recall_src, 0.0)
        new_t += np.where((touched == self.dst)[:, None], self.recall_dst, 0.0)
        better = (new_t < s.h[touched]).any(axis=1)
        s.h[touched] = np.minimum(s.h[touched], new_t)
        s.reached[touched] = True
        changed = touched[better]
        if s.reached[self.src]:
            est_src = float(s.h[self.src] @ w.r + w.r0) * g.radius_km
            if est_src > s.bound_km:                  # a better route may leave the corridor: widen it
                self._grow(est_src)                   # (every reached city sends again next round)
                return
            # A city whose straight-line detour exceeds the source's estimate cannot be on a better route.
            changed = changed[s.via_km[changed] <= max(est_src, 0.0) + 1e-9]
            s.ops += cost.fill(len(changed)) + cost.matmul(1, d, 1)
        s.frontier = changed

    def _grow(self, bound_km: float) -> None:
        s = self.s
        s.bound_km = bound_km
        s.corridor = s.via_km <= bound_km
        self._inside = self.edges(self.g, s.corridor, self.dst)
        # Every reached city sends again once, so the new cities hear from the old ones.
        s.frontier = np.flatnonzero(s.reached)
        s.ops += cost.fill(2 * len(s.reached))

    def decode(self, max_hops: int) -> list[int]:
        """Walk from the source by the model's Bellman equation (unreached neighbours: straight km)."""
        s, w, g = self.s, self.w, self.g
        ip, ix, wt = g.adjacency.indptr, g.adjacency.indices, g.adjacency.data

        def score(cur: int, lo: int, hi: int) -> np.ndarray:
            nb = ix[lo:hi]
            r_nb = s.reached[nb]
            out = np.empty(len(nb))
            # Read-out of the message nb -> cur: r . (h_nb A + a w + b) + r0, in km.
            msg = s.h[nb[r_nb]] @ w.A + (wt[lo:hi][r_nb] / g.radius_km)[:, None] * w.a + w.b
            out[r_nb] = (msg @ w.r + w.r0) * g.radius_km
            out[~r_nb] = wt[lo:hi][~r_nb] + s.to_target_km[nb[~r_nb]]
            s.scored += len(nb)
            s.ops += decode_ops(len(nb), len(w.r))
            return out

        s.ops += cost.fill(len(s.reached))                # the walk's visited flags
        return greedy_walk(ip, ix, self.src, self.dst, max_hops, score)


def max_hops_for(g: CityGraph, src: int, dst: int) -> int:
    return int(8 * g.distance_km(src, dst) / g.radius_km) + 64


def d_ops(d: int) -> float:
    """Operations of one edge's message over d channels: per channel the add of A h (computed once per sender),
    the multiply-add of the edge term, the bias and the min (the relaxation's read, add, compare, write)."""
    return cost.relax(1) * d + 2.0 * d


def decode_ops(neighbours: int, d: int) -> float:
    """Operations of scoring `neighbours` neighbours while decoding: the read-out of each one's message
    (h A, the edge term, r . m + r0), the reached test, and the argmin over them."""
    return neighbours * (cost.matmul(1, d, d) + 4.0 * d + 4.0) + cost.select(neighbours)


class BellmanModel(StepwiseModel):
    """The trained network behind the routing protocol: step k decodes after k * rounds_per_step rounds; `refine`
    is the verifier's best of the paths decoded after steps 1..k (deterministic: `seed` unused)."""

    family = "bellman"
    network, config_class, weights_cast = BellmanNet, BellmanConfig, "double"
    has_state_view = True
    edges: type = CorridorEdges      # how a round finds its frontier's edges (`FrontierEdges`: the reference)

    def __init__(self, name: str, card: dict, net: BellmanNet):
        super().__init__(name, card, net)
        self.weights = Weights.of(net)

    @classmethod
    def new_network(cls, config: BellmanConfig, g: CityGraph | None = None) -> BellmanNet:
        return BellmanNet(config).double()     # float64: exact over a hundred rounds

    @classmethod
    def bellman_ford(cls, config: BellmanConfig, card: dict) -> BellmanModel:
        """This scaffold with Bellman-Ford's exact weights and nothing learned: one channel holding km to the
        target in radii; a message is the sender's value plus the hop; the target starts at 0."""
        net = cls.new_network(BellmanConfig(**{**asdict(config), "hidden_dim": 1}))
        exact = {"encode.weight": [[0.0, 0.0]], "encode.bias": [0.0], "sender.weight": [[1.0]],
                 "edge.weight": [[1.0]], "edge.bias": [0.0], "recall.weight": [[0.0, 0.0]],
                 "readout.weight": [[1.0]], "readout.bias": [0.0]}
        net.load_state_dict({k: torch.tensor(v, dtype=torch.float64) for k, v in exact.items()})
        return cls(card.get("name", "bellman-ford"), card, frozen(net))

    def scaffold_control(self) -> BellmanModel:
        """The same frontier, corridor and decoder with the learned weights replaced by Bellman-Ford's exact ones."""
        card = self.control_card(f"{self.name}'s scaffold (frontier, corridor, decoder) with Bellman-Ford's exact "
                                 "hand-set weights instead of the learned ones")
        return type(self).bellman_ford(self.config, card)

    def _run(self, g: CityGraph, src: int, dst: int, steps: int) -> Iterator[tuple[list[int], float, BellmanThinker]]:
        """Per step: its decoded path, the operations the step spent (the first step also the query's set-up),
        and the thinker after that step's rounds."""
        t = BellmanThinker(self.weights, g, self.config, src, dst, self.edges)
        cap = max_hops_for(g, src, dst)
        before = 0.0                               # the first step carries the set-up
        for _ in range(steps):
            if src != dst:
                for _ in range(self.config.rounds_per_step):
                    t.round()
            path = t.decode(cap) if src != dst else [src]
            yield path, t.s.ops - before, t
            before = t.s.ops

    def trace(self, g: CityGraph, src: int, dst: int, steps: int = 1) -> Iterator[list[StateView]]:
        """Per step, what the network holds over cities: its estimated km to the target and the active set."""
        src, dst, steps = self.check_query(g, src, dst, steps)
        for _, _, t in self._run(g, src, dst, steps):
            active = np.zeros(g.n_cities, np.float64)
            active[t.s.frontier] = 1.0
            yield [StateView("estimated km to target", "km", t.estimates_km()),
                   StateView("active (sent messages last round)", "", active)]
