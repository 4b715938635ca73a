"""memsearch: a controller that plans a route in an external memory of candidate cities (learned best-first search).

The post's second avenue, with memory as a working space rather than a copy of the map (the DNC wrote
the whole London Underground into memory; 2.2M edges do not fit). The environment gives the
controller what a walker sees: a city's neighbours, with their geography relative to source and
target (no city ids, no tables: any graph). The model keeps:

- an **external memory of up to M slots**, each a candidate city it may go on from: the slot's key is
  *written by the controller* from what it knows of that city: its geography and the km it costs to get
  there along the way the search found (summed from the edges it walked: nothing given from outside);
- a **GRU controller** whose state follows the search.

One **planning iteration**: the controller reads the memory by content: a query from its state is
matched against every slot's key (dot product); the read weights (softmax) pick the slot to go on
from (argmax at inference). That city leaves the memory (it is done); its neighbours not done yet are
written into slots, or their slot rewritten when the new way there is shorter; when the memory is
full, the slots the controller rates lowest are dropped. The chosen slot's key goes into the
controller. The route is the way the search reached the target (each slot remembers where it was
reached from). With M = 0 (no memory) only the current city's neighbours are candidates: a greedy
walk that stops at a dead end, the ablation.

**Test-time compute = planning iterations.** Step k of `refine` is the route after k x `per_step`
iterations: the way to the target once the target was chosen (done), else once it is in memory, else
(not found yet) the way to the slot rated highest, which does not reach the target (invalid). Once
done, later steps cost nothing and show the same route.

Trained by imitation (citypath/tasks/memsearch.py): at every iteration, the expert picks the slot of
the memory *as the model wrote it* that is cheapest counting the true remaining km (A* with an exact
heuristic, on regional sub-graphs of training pairs); the loss is the cross-entropy of the read
weights against it. The state view shows, per step, the cities in memory (rated by the controller's
read) and the cities done.
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

# The control's w in -(g + w h), chosen on validation pairs by `python -m experiments.control_weight`
# (results/memsearch-control-weight.json; a test checks the two agree).
CONTROL_WEIGHT = 1.5
N_SLOT = N_GEO + 3   # + km so far, km so far + straight km left, the hop's km (all / (straight source-target + 1))


@dataclass(frozen=True)
class MemSearchConfig:
    """Hyper-parameters (stored in the card)."""

    hidden: int = 32
    width: int = 32                # key and query width
    slots: int = 4096              # M: memory slots (0 = no memory: a greedy walk, the ablation)
    per_step: int = 64             # planning iterations per refine step
    max_steps: int = 64
    wipe_after: int = 0            # control: wipe the memory after this many steps (0 = never)


class MemSearchNet(nn.Module):
    """Key writer, controller and query; the search itself is `Search`."""

    def __init__(self, config: MemSearchConfig):
        super().__init__()
        c = self.config = config
        self.key1 = nn.Linear(N_SLOT, c.width)
        self.key2 = nn.Linear(c.width, c.width)
        self.cell = nn.GRUCell(c.width, c.hidden)
        self.query = nn.Linear(c.hidden, c.width)

    def keys(self, feats: torch.Tensor) -> torch.Tensor:
        return self.key2(F.gelu(self.key1(feats)))

    def flops_keys(self, k: int) -> float:
        c = self.config
        return 2.0 * k * (N_SLOT * c.width + c.width * c.width) + 10.0 * k * c.width

    def flops_iteration(self, m: int) -> float:
        """The read over m slots, the controller step and the next query."""
        c = self.config
        return cost.matmul(1, c.width, m) + m + cost.gru_cell(c.width, c.hidden) + cost.matmul(1, c.hidden, c.width) \
            + c.width


@dataclass
class Query:
    """One (source, target) on a graph in CSR form, edge lengths and distances in radii."""

    indptr: np.ndarray
    indices: np.ndarray
    km: np.ndarray
    pos: np.ndarray            # (n, N_GEO) geography of each city for this query
    dt: np.ndarray             # (n,) straight distance to the target
    src: int
    dst: int
    d_st: float
    expert: np.ndarray | None = None       # training: (n,) true distance to the target
    label_ok: np.ndarray | None = None     # training: (n,) may a choice of this city be supervised


@dataclass
class Search:
    """The memory and the search tree of one query; `iterate` runs planning iterations."""

    net: MemSearchNet
    q: Query
    h: torch.Tensor = None
    slot_city: np.ndarray = None           # (m,) the cities in memory
    slot_keys: torch.Tensor = None         # (m, width)
    cost: np.ndarray = None                # (n,) km so far of the way found to each city (radii)
    parent: np.ndarray = None              # (n,) where each city was reached from (-1: not reached)
    done: np.ndarray = None                # (n,) cities gone on from
    finished: bool = False
    last_city: int = -1                    # the city last gone on from
    flops: float = 0.0
    losses: list = field(default_factory=list)

    def __post_init__(self):
        c, q = self.net.config, self.q
        n = len(q.indptr) - 1
        self.h = torch.zeros(c.hidden)
        self.cost = np.full(n, np.inf)
        self.parent = np.full(n, -1, dtype=np.int64)
        self.done = np.zeros(n, dtype=bool)
        self.cost[q.src] = 0.0
        self.slot_city = np.array([q.src], dtype=np.int64)
        self.slot_keys = self._write(self.slot_city, np.zeros(1))
        self.finished = q.src == q.dst

    def _write(self, cities: np.ndarray, hop: np.ndarray) -> torch.Tensor:
        q = self.q
        scale = q.d_st + 1.0
        g = self.cost[cities]
        feats = np.concatenate([q.pos[cities], np.stack([g / scale, (g + q.dt[cities]) / scale, hop / scale], 1)], 1)
        self.flops += self.net.flops_keys(len(cities)) + cost.fill(len(cities) * N_SLOT)
        return self.net.keys(torch.from_numpy(feats).float())

    def ratings(self) -> torch.Tensor:
        """The content read's scores: the controller's query against every slot's key (softmax = read weights)."""
        return self.slot_keys @ self.net.query(self.h) / self.net.config.width ** 0.5

    def read_ops(self, m: int) -> float:
        """Operations of one read over m slots, the controller step and the next query."""
        return self.net.flops_iteration(m)

    def rating_ops(self, m: int) -> float:
        """Operations of rating m slots again (to drop the lowest when the memory is full)."""
        return 2.0 * m * self.net.config.width

    def after_read(self, chosen_key: torch.Tensor) -> None:
        """The chosen slot's key goes into the controller."""
        self.h = self.net.cell(chosen_key[None], self.h[None])[0]

    def wipe(self) -> None:
        """Forget every slot (the control): the search goes on from the city it last went on from."""
        last = self.last_city if self.last_city >= 0 else self.q.src
        self.slot_city = np.array([last], dtype=np.int64)
        self.done[last] = False
        self.slot_keys = self._write(self.slot_city, np.zeros(1))

    def iterate(self, n: int, *, follow: np.ndarray | None = None) -> None:
        """Up to `n` planning iterations (fewer once the target is done or the memory empty). In training
        (`q.expert` set) each supervised iteration appends its cross-entropy to `losses`; `follow[i]`: take
        the expert's slot at iteration i (DAgger mixing), else the model's."""
        q, c = self.q, self.net.config
        for i in range(n):
            if self.finished or len(self.slot_city) == 0:
                return
            logits = self.ratings()
            m = len(self.slot_city)
            self.flops += self.read_ops(m) + cost.select(m)
            choice = int(torch.argmax(logits.detach()))
            if q.expert is not None:
                f = self.cost[self.slot_city] + q.expert[self.slot_city]
                best = f.min()
                if np.isfinite(best):
                    ties = np.flatnonzero(f <= best + 1e-6 * (q.d_st + 1.0))
                    ex = int(ties[np.argmin(q.dt[self.slot_city[ties]])])
                    if q.label_ok is None or q.label_ok[self.slot_city[ex]]:
                        tie_idx = torch.from_numpy(ties)
                        self.losses.append(torch.logsumexp(logits, 0) - torch.logsumexp(logits[tie_idx], 0))
                    if follow is not None and follow[min(i, len(follow) - 1)]:
                        choice = ex
            u = int(self.slot_city[choice])
            chosen_key = self.slot_keys[choice]
            keep = np.ones(len(self.slot_city), dtype=bool)
            keep[choice] = False
            self.done[u] = True
            self.last_city = u
            self.after_read(chosen_key)
            if u == q.dst:
                self.slot_city, self.slot_keys = self.slot_city[keep], self.slot_keys[torch.from_numpy(keep)]
                self.finished = True
                return
            lo, hi = q.indptr[u], q.indptr[u + 1]
            nb, hop = q.indices[lo:hi], q.km[lo:hi]
            new_cost = self.cost[u] + hop
            self.flops += cost.relax(hi - lo) + cost.fill(hi - lo)     # + the done test per edge
            better = ~self.done[nb] & (new_cost < self.cost[nb] - 1e-12)
            if c.slots == 0:
                keep[:] = False                       # no memory: only the current city's neighbours remain
                better = ~self.done[nb]
            nb, hop, new_cost = nb[better], hop[better], new_cost[better]
            if len(nb):
                keep &= ~np.isin(self.slot_city, nb)  # a shorter way to a city in memory: its slot is rewritten
                self.cost[nb] = new_cost
                self.parent[nb] = u
            # The memory rewritten: membership of the new cities, then every kept slot copied with its key.
            self.flops += cost.sort(m + len(nb)) + cost.fill((m + len(nb)) * (1 + self.slot_keys.shape[1]))
            self.slot_city = np.concatenate([self.slot_city[keep], nb])
            self.slot_keys = torch.cat([self.slot_keys[torch.from_numpy(keep)], self._write(nb, hop)])
            if c.slots and len(self.slot_city) > c.slots:    # full: drop the slots the controller rates lowest
                with torch.no_grad():
                    rate = self.ratings().numpy()
                self.flops += self.rating_ops(len(rate)) + cost.select(len(rate)) + cost.sort(len(rate))
                top = np.sort(np.argpartition(-rate, c.slots - 1)[: c.slots])
                dropped = np.setdiff1d(self.slot_city, self.slot_city[top])
                self.cost[dropped], self.parent[dropped] = np.inf, -1      # forgotten: as if never reached
                self.slot_city, self.slot_keys = self.slot_city[top], self.slot_keys[torch.from_numpy(top)]

    def way_to(self, city: int) -> list[int]:
        path = [city]
        while path[-1] != self.q.src:
            path.append(int(self.parent[path[-1]]))
            if path[-1] < 0 or len(path) > len(self.parent):
                return [self.q.src]
        self.flops += cost.walk(len(path))
        return path[::-1]

    def route(self) -> list[int]:
        """The answer now: the way to the target once found, else to the slot rated highest."""
        q = self.q
        if self.finished or self.parent[q.dst] >= 0:
            return self.way_to(q.dst)
        if len(self.slot_city) == 0:
            return self.way_to(self.last_city) if self.last_city >= 0 else [q.src]
        with torch.no_grad():
            rate = self.ratings().numpy()
        self.flops += self.rating_ops(len(rate)) + cost.select(len(rate))
        return self.way_to(int(self.slot_city[int(np.argmax(rate))]))


@dataclass
class HandRatedSearch(Search):
    """The same search with the learned rating replaced by weighted A*'s: a slot is rated -(g + w h), km so
    far plus w x straight km left; no keys, no controller (the attribution control of memory-search)."""

    weight: float = 1.0

    def _write(self, cities: np.ndarray, hop: np.ndarray) -> torch.Tensor:
        return torch.zeros(len(cities), 0)

    def ratings(self) -> torch.Tensor:
        c = self.slot_city
        return torch.from_numpy(-(self.cost[c] + self.weight * self.q.dt[c]))

    def read_ops(self, m: int) -> float:
        return 3.0 * m           # a multiply-add and a negation per slot

    def rating_ops(self, m: int) -> float:
        return 3.0 * m

    def after_read(self, chosen_key: torch.Tensor) -> None:
        pass


def query_setup_ops(n: int) -> float:
    """Operations of `full_graph_query` on n cities: straight km to source and target, the geography (8
    features, ~3 operations each), and the search's per-city arrays (cost, parent, done)."""
    return cost.haversine(2 * n) + cost.fill(3 * N_GEO * n) + cost.fill(3 * n)


def full_graph_query(g: CityGraph, src: int, dst: int) -> Query:
    """The one query on the whole graph (radii units)."""
    R = g.radius_km
    dt = haversine_km(g.lat, g.lon, g.lat[dst], g.lon[dst]) / R
    ds = haversine_km(g.lat, g.lon, g.lat[src], g.lon[src]) / R
    n = g.n_cities
    is_s, is_d = np.zeros(n, bool), np.zeros(n, bool)
    is_s[src], is_d[dst] = True, True
    adj = g.adjacency
    return Query(adj.indptr, adj.indices, adj.data / R, geo_features(dt, ds, float(dt[src]), is_s, is_d), dt,
                 src, dst, float(dt[src]))


class MemSearchModel(StepwiseModel):
    """The trained planner behind the routing protocol: step k is its route after k x per_step iterations."""

    family = "memsearch"
    network, config_class = MemSearchNet, MemSearchConfig
    has_state_view = True

    @torch.no_grad()
    def _run(self, g: CityGraph, src: int, dst: int, steps: int) -> Iterator[tuple[list[int], float, Search]]:
        """`per_step` planning iterations per step on one search. FLOPs: every key written, every read over the
        slots, the controller step and the query (none once the target is reached)."""
        s = self.search(full_graph_query(g, src, dst))
        s.flops += query_setup_ops(g.n_cities)
        before = 0.0                                # the first step carries the set-up
        for k in range(steps):
            if self.config.wipe_after and k == self.config.wipe_after:
                s.wipe()
            s.iterate(self.config.per_step)
            route = s.route()
            yield route, s.flops - before, s
            before = s.flops

    def search(self, q: Query) -> Search:
        """A fresh search of query `q` by this model's rating."""
        return Search(self.net, q)

    def scaffold_control(self, weight: float | None = None) -> MemSearchModel:
        """The same search (memory, relaxation, parent pointers, eviction, route) with the learned rating
        replaced by weighted A*'s -(g + w h), w = `CONTROL_WEIGHT` (chosen on validation pairs) unless given."""
        w = CONTROL_WEIGHT if weight is None else float(weight)
        card = self.control_card(f"{self.name}'s search with its learned rating replaced by weighted A*'s "
                                 f"-(g + {w:g} h)")
        return HandRatedMemSearch(card["name"], card, self.net, w)

    def trace(self, g: CityGraph, src: int, dst: int, steps: int = 1) -> Iterator[list[StateView]]:
        """Per step: the km so far the controller wrote for each city in memory (the search's frontier; no
        value elsewhere), the cities the search went on from, and the read weight on each slot (softmax)."""
        src, dst, steps = self.check_query(g, src, dst, steps)
        for _, _, s in self._run(g, src, dst, steps):
            km, read = np.full(g.n_cities, np.nan), np.full(g.n_cities, np.nan)
            if len(s.slot_city):
                km[s.slot_city] = s.cost[s.slot_city] * g.radius_km
                with torch.no_grad():
                    read[s.slot_city] = torch.softmax(s.ratings(), 0).numpy()
            done = np.where(s.done, 1.0, np.nan)
            yield [StateView("km so far of each city in memory", "km", km),
                   StateView("cities gone on from", "", done),
                   StateView("read weight of each city in memory", "", read)]


class HandRatedMemSearch(MemSearchModel):
    """memory-search's scaffold with nothing learned deciding: slots rated by weighted A* (`HandRatedSearch`)."""

    def __init__(self, name: str, card: dict, net: MemSearchNet, weight: float):
        super().__init__(name, card, net)
        self.weight = weight

    def search(self, q: Query) -> Search:
        return HandRatedSearch(self.net, q, weight=self.weight)

    def scaffold_control(self, weight: float | None = None) -> None:
        return None
