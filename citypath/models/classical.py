"""classical: the floor every learned model is read against. Exact and anytime search, no learned parameters.

Each algorithm answers through the same protocol as the models (`refine`, `refine_with_compute`, a
card in `checkpoints/`, `list_models`), and counts its operations by the one convention of
`citypath.cost` (set-up, heap, edge relaxations, path reconstruction, the verifier), so a chart can
put them beside the learned families at equal compute:

- `dijkstra`: scipy's Dijkstra from the source (C, exact; it settles every city, no stop at the
  target). One step; later steps repeat its answer at no cost.
- `astar`: textbook A* on a binary heap with the straight-line km to the target as heuristic
  (admissible and consistent here: every edge is the great-circle km between its cities). Stops
  when the target is popped: exact. One step.
- `alt-1`, `alt-4`, `alt-16`: ALT (Goldberg & Harrelson 2005), the same A* with the larger of the
  straight line and the landmark bound (`citypath.bounds`): 1, 4 or 16 landmarks by farthest-point sampling,
  their road distances to every city stored as int32 metres (4, 16, 64 bytes a city), computed once per graph
  (`preprocessing_ops`, not counted per query). Exact in one step; fewer expansions than A*.
- `anytime-astar`: anytime weighted A* with a falling weight (Hansen & Zhou 2007; ARA*'s schedule,
  Likhachev et al. 2003): one open list ordered by g + w·h, w starting at `weight_start`; each
  solution found becomes the incumbent, w falls by `weight_step` (down to 1) and the open list is
  re-ordered; nodes with g + h >= the incumbent are pruned. When the open list empties the incumbent
  is optimal. Step k = the incumbent after k x `expansions_per_step` expansions (before the first
  solution: the way to the expanded city nearest the target, which does not arrive).
- `bellman-ford`: the bellman family's network with Bellman-Ford's exact hand-set weights, run as
  bellman-tiny runs (`rounds_per_step` rounds a step, over the frontier of cities that changed, in
  the growing corridor, decoded by the same walk). It is bellman-tiny's scaffold with nothing learned.
- `bellman-ford-dense`: Bellman-Ford by the book: every round relaxes every edge of the graph
  (2.2M on the default graph) until nothing changes; decoded by the same walk.

    >>> m = load_model("astar")                              # doctest: +SKIP
    >>> [path] = m.refine(g, src, dst, steps=1)             # doctest: +SKIP
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from citypath import cost
from citypath.bounds import BYTES_PER_COLUMN, landmark_table, lower_bound_km, preprocessing_ops
from citypath.geo import haversine_km
from citypath.graph import CityGraph
from citypath.models.base import StateView, StepwiseModel, config_from_dict, greedy_walk

ALGORITHMS = ("dijkstra", "astar", "alt", "anytime-astar", "bellman-ford", "bellman-ford-dense")


@dataclass(frozen=True)
class ClassicalConfig:
    """Which algorithm, and its hand-set knobs (stored in the card)."""

    algorithm: str = "astar"
    max_steps: int = 1
    expansions_per_step: int = 128     # anytime-astar: expansions a step
    weight_start: float = 2.0          # anytime-astar: w of the first solution's search
    weight_step: float = 0.5           # anytime-astar: w falls by this at each solution, down to 1
    rounds_per_step: int = 4           # bellman-ford(-dense): rounds a step
    corridor_factor: float = 1.1       # bellman-ford: the corridor, as bellman-tiny's
    corridor_slack_radii: float = 1.0
    landmarks: int = 16                # alt: landmarks (4 bytes a city each: int32 road metres)


# -- best-first search: A* and anytime weighted A* ----------------------------------------------------

class BestFirst:
    """One query's weighted A* with an incumbent; `expand(n)` runs up to n expansions, counting operations."""

    def __init__(self, g: CityGraph, src: int, dst: int, weight: float, weight_step: float = 0.0,
                 table_m: np.ndarray | None = None, reopen: bool = True):
        n = g.n_cities
        self.g, self.src, self.dst = g, src, dst
        self.w, self.w_step = float(weight), float(weight_step)
        # The heuristic: straight-line km, or its max with a certified table's bound (citypath.bounds).
        self.h, h_ops = lower_bound_km(g, dst, table_m)
        self.h_list = self.h.tolist()             # scalar reads in the pop loop: a list is ~5x faster than numpy
        self.cost_g = np.full(n, np.inf)
        self.parent = np.full(n, -1, dtype=np.int64)
        self.cost_g[src] = 0.0
        self.heap: list[tuple[float, float, int]] = [(self.w * float(self.h[src]), 0.0, src)]
        self.incumbent_km = np.inf
        self.incumbent: list[int] | None = None
        self.nearest = src                        # the expanded city nearest the target (the answer before one)
        self.expanded = 0
        self.order: list[int] = []                # the expanded cities, in order (what `trace` draws)
        # reopen=False: a city is expanded at most once (weighted A* as usually run; with w > 1 and reopening,
        # a dense graph re-expands some cities hundreds of times). With w = 1 and a consistent bound nothing
        # is ever reopened, so A*, ALT and guided are the same either way.
        self.closed = None if reopen else np.zeros(n, dtype=bool)
        self.done = src == dst
        if self.done:
            self.incumbent, self.incumbent_km = [src], 0.0
        self.ops = h_ops + cost.fill(2 * n) + cost.heap(1, 1)

    def way_to(self, city: int) -> list[int]:
        path = [city]
        while path[-1] != self.src:
            path.append(int(self.parent[path[-1]]))
        self.ops += cost.walk(len(path))
        return path[::-1]

    def _reorder(self) -> None:
        """A new weight: every open entry gets its new key (stale ones dropped), the heap is rebuilt."""
        live = [(gk, u) for _, gk, u in self.heap if gk <= self.cost_g[u] and gk + self.h[u] < self.incumbent_km]
        self.heap = [(gk + self.w * float(self.h[u]), gk, u) for gk, u in live]
        heapq.heapify(self.heap)
        self.ops += cost.fill(2 * len(live)) + 2.0 * len(self.heap)

    def expand(self, budget: int) -> None:
        ip, ix, wt = self.g.adjacency.indptr, self.g.adjacency.indices, self.g.adjacency.data
        h, hl, cg = self.h, self.h_list, self.cost_g
        spent = 0
        while spent < budget and not self.done:
            if not self.heap:
                self.done = True                  # nothing left below the incumbent: it is optimal
                break
            if self.w <= 1.0 and self.heap[0][0] >= self.incumbent_km:
                self.done = True                  # the least g + h left cannot beat the incumbent: optimal
                break
            _, gu, u = heapq.heappop(self.heap)
            self.ops += 2.0 * math.log2(len(self.heap) + 2)          # cost.heap(1, size), inlined: the hot loop
            if gu > cg.item(u) or gu + hl[u] >= self.incumbent_km or (self.closed is not None and self.closed[u]):
                self.ops += 2.0                   # a stale, pruned or closed entry: two compares
                continue
            if u == self.dst:                     # a solution: the new incumbent
                self.incumbent_km, self.incumbent = gu, self.way_to(u)
                if self.w <= 1.0:
                    self.done = True              # A* popped the target: optimal
                    break
                self.w = max(1.0, self.w - self.w_step)
                self._reorder()
                continue
            spent += 1
            self.expanded += 1
            self.order.append(u)
            if self.closed is not None:
                self.closed[u] = True
            if hl[u] < hl[self.nearest]:
                self.nearest = u
            lo, hi = ip[u], ip[u + 1]
            nb, new = ix[lo:hi], gu + wt[lo:hi]
            better = (new < cg[nb]) & (new + h[nb] < self.incumbent_km)
            if self.closed is not None:
                better &= ~self.closed[nb]
            self.ops += cost.relax(hi - lo) + cost.fill(hi - lo)      # + the incumbent test per edge
            nb, new = nb[better], new[better]
            cg[nb] = new
            self.parent[nb] = u
            keys = new + self.w * h[nb]
            for key, gv, v in zip(keys.tolist(), new.tolist(), nb.tolist()):
                heapq.heappush(self.heap, (key, gv, v))
            self.ops += cost.heap(len(nb), len(self.heap))

    def answer(self) -> list[int]:
        return list(self.incumbent) if self.incumbent is not None else self.way_to(self.nearest)


BEST_FIRST = ("astar", "alt", "anytime-astar")


def best_first_run(s: BestFirst, budgets: list[int | None]) -> Iterator[tuple[list[int], float, BestFirst]]:
    """Per step: up to that step's expansions (None: to the end), then (its answer, the operations the step
    spent, the search). The first step carries the set-up."""
    before = 0.0
    for budget in budgets:
        while not s.done:
            s.expand(s.g.n_cities + 1 if budget is None else budget)
            if budget is not None:
                break
        answer = s.answer()
        yield answer, s.ops - before, s
        before = s.ops


def best_first_trace(s: BestFirst, budgets: list[int | None]) -> Iterator[list[StateView]]:
    """Per step, the cities expanded so far and the step that expanded each (what a search "thinks")."""
    n = s.g.n_cities
    at = np.full(n, np.nan)
    seen = 0
    for k, (_, _, search) in enumerate(best_first_run(s, budgets), start=1):
        at[search.order[seen:]] = k
        seen = len(search.order)
        h = np.where(np.isnan(at), np.nan, search.h)
        yield [StateView("expanded at step", "", at.copy()), StateView("lower bound to target (expanded)", "km", h)]


# -- Bellman-Ford by the book: every edge, every round ------------------------------------------------

class DenseBellmanFord:
    """Distances to the target, every round relaxing all edges of the graph; stops changing when exact."""

    def __init__(self, g: CityGraph, src: int, dst: int):
        n = g.n_cities
        self.g, self.src, self.dst = g, src, dst
        self.dist = np.full(n, np.inf)
        self.dist[dst] = 0.0
        self.to_target_km = haversine_km(g.lat, g.lon, g.lat[dst], g.lon[dst])
        self.deg = np.diff(g.adjacency.indptr)
        self.converged = src == dst
        self.ops = cost.haversine(n) + cost.fill(n)

    def round(self) -> None:
        if self.converged:
            return
        adj = self.g.adjacency
        cand = self.dist[adj.indices] + adj.data
        new = np.full(len(self.dist), np.inf)
        rows = self.deg > 0
        new[rows] = np.minimum.reduceat(cand, adj.indptr[:-1][rows])
        better = new < self.dist
        self.ops += cost.relax(len(adj.indices)) + cost.fill(len(self.dist))
        self.dist = np.where(better, new, self.dist)
        self.converged = not better.any()

    def decode(self, max_hops: int) -> tuple[list[int], float]:
        """Walk from the source: next = the neighbour least in edge km + its distance (straight km if unreached)."""
        g = self.g
        ip, ix, wt = g.adjacency.indptr, g.adjacency.indices, g.adjacency.data
        scored = [0]

        def score(cur: int, lo: int, hi: int) -> np.ndarray:
            nb = ix[lo:hi]
            d = self.dist[nb]
            scored[0] += hi - lo
            return wt[lo:hi] + np.where(np.isfinite(d), d, self.to_target_km[nb])

        path = greedy_walk(ip, ix, self.src, self.dst, max_hops, score)
        return path, 3.0 * scored[0] + cost.select(scored[0]) + cost.fill(len(self.dist))   # + the visited flags


# -- the protocol ---------------------------------------------------------------------------------

class ClassicalModel(StepwiseModel):
    """A classical algorithm behind the routing protocol: nothing learned, every operation counted."""

    family = "classical"
    has_state_view = False       # set on the instance: bellman-ford's state is bellman's; a best-first search
                                 # shows the cities it expanded

    def __init__(self, name: str, card: dict, config: ClassicalConfig):
        super().__init__(name, card)
        if config.algorithm not in ALGORITHMS:
            from citypath.models.base import CheckpointError

            raise CheckpointError(f"card {name!r}: unknown classical algorithm {config.algorithm!r}; "
                                  f"known: {', '.join(ALGORITHMS)}")
        self.config = config
        self._bellman = None
        self.has_state_view = config.algorithm in BEST_FIRST
        if config.algorithm == "bellman-ford":
            from citypath.models.bellman import BellmanConfig, BellmanModel

            self._bellman = BellmanModel.bellman_ford(BellmanConfig(
                rounds_per_step=config.rounds_per_step, max_steps=config.max_steps,
                corridor_factor=config.corridor_factor, corridor_slack_radii=config.corridor_slack_radii), card)
            self.has_state_view = True

    @classmethod
    def from_checkpoint(cls, name: str, card: dict, weights_path: Path | None) -> ClassicalModel:
        return cls(name, card, config_from_dict(ClassicalConfig, card.get("config", {})))

    @classmethod
    def make(cls, g: CityGraph, algorithm: str, name: str | None = None, **knobs) -> ClassicalModel:
        """An algorithm on graph `g` without a card file (tests, studies); `knobs` are ClassicalConfig fields."""
        config = ClassicalConfig(algorithm=algorithm, **knobs)
        return cls(name or algorithm, classical_card(g, name or algorithm, config), config)

    def check_graph(self, g: CityGraph) -> None:
        """Any graph: nothing here was fitted to one."""

    def _run(self, g: CityGraph, src: int, dst: int, steps: int) -> Iterator[tuple[list[int], float, None]]:
        """Per step: the algorithm's answer, the operations the step spent, no state (bellman-ford has its own,
        read by `trace`)."""
        c = self.config
        if c.algorithm == "bellman-ford":
            yield from ((p, f, None) for p, f, _ in self._bellman._run(g, src, dst, steps))
        elif c.algorithm == "bellman-ford-dense":
            from citypath.models.bellman import max_hops_for

            bf = DenseBellmanFord(g, src, dst)
            cap = max_hops_for(g, src, dst)
            last, spent = [src], 0.0               # the first step carries the set-up
            for _ in range(steps):
                was = bf.converged
                for _ in range(c.rounds_per_step):
                    bf.round()
                if was and src != dst:
                    yield last, 0.0, None         # converged: the answer cannot change
                    continue
                last, dec = bf.decode(cap) if src != dst else ([src], 0.0)
                bf.ops += dec
                yield last, bf.ops - spent, None
                spent = bf.ops
        elif c.algorithm == "dijkstra":
            from scipy.sparse.csgraph import dijkstra

            _, pred = dijkstra(g.adjacency, indices=src, return_predecessors=True)
            path = [dst]
            while path[-1] != src and path[-1] >= 0:
                path.append(int(pred[path[-1]]))
            path = path[::-1] if path[-1] == src else [src]
            n, m = g.n_cities, g.adjacency.nnz
            ops = cost.fill(2 * n) + cost.relax(m) + cost.heap(n, n) + cost.walk(len(path))
            yield path, ops, None
            for _ in range(steps - 1):
                yield path, 0.0, None
        else:
            yield from best_first_run(self._search(g, src, dst), self._budgets(g, steps))

    def _search(self, g: CityGraph, src: int, dst: int) -> BestFirst:
        c = self.config
        if c.algorithm == "anytime-astar":
            return BestFirst(g, src, dst, c.weight_start, c.weight_step)
        return BestFirst(g, src, dst, 1.0, table_m=landmark_table(g, c.landmarks) if c.algorithm == "alt" else None)

    def _budgets(self, g: CityGraph, steps: int) -> list[int | None]:
        """Expansions each step may spend (None: to the end)."""
        return [self.config.expansions_per_step if self.config.algorithm == "anytime-astar" else None] * steps

    def bytes_per_city(self) -> int:
        """Bytes a city its query reads beyond the graph and coordinates (alt: the landmark table)."""
        return BYTES_PER_COLUMN * self.config.landmarks if self.config.algorithm == "alt" else 0

    def preprocessing_ops(self, g: CityGraph) -> float:
        """Operations spent once per graph before any query (alt: one Dijkstra per landmark; 0 otherwise)."""
        return preprocessing_ops(g, self.config.landmarks) if self.config.algorithm == "alt" else 0.0

    def trace(self, g: CityGraph, src: int, dst: int, steps: int = 1) -> Iterator[list[StateView]]:
        src, dst, steps = self.check_query(g, src, dst, steps)
        if self._bellman is not None:
            return self._bellman.trace(g, src, dst, steps)
        if self.config.algorithm in BEST_FIRST:
            return best_first_trace(self._search(g, src, dst), self._budgets(g, steps))
        raise NotImplementedError(f"{self.name} ({self.config.algorithm}) has no per-city state view")


def classical_card(g: CityGraph | None, name: str, config: ClassicalConfig, *, about: str = "") -> dict:
    """The card of a classical row: no weights, no training, nothing learned."""
    from citypath.registry import ANATOMY

    card = {"name": name, "family": "classical", "num_parameters": 0, "learned": False, "weights": None,
            "max_steps": config.max_steps, "config": asdict(config),
            "about": about or f"{config.algorithm}: no learned parameters (citypath/models/classical.py)",
            "graph": {"fingerprint": None, "config": None}, "anatomy": asdict(ANATOMY["classical"])}
    if g is not None:
        card["graph"] = {"fingerprint": g.fingerprint, "config": asdict(g.config)}
    return card


# The rows shipped as cards in checkpoints/ (`python -m citypath.models.classical` writes them).
ROWS: dict[str, tuple[ClassicalConfig, str]] = {
    "dijkstra": (ClassicalConfig("dijkstra", max_steps=1),
                 "scipy's Dijkstra from the source over every city: exact in one step. No learned parameters."),
    "astar": (ClassicalConfig("astar", max_steps=1),
              "A* on a binary heap, straight-line km to the target as heuristic: exact in one step. "
              "No learned parameters."),
    "anytime-astar": (ClassicalConfig("anytime-astar", max_steps=64),
                      "Anytime weighted A*: w from 2 falling by 0.5 at each solution to 1, 128 expansions a step; "
                      "optimal once its open list is exhausted. No learned parameters."),
    "bellman-ford": (ClassicalConfig("bellman-ford", max_steps=24),
                     "Bellman-Ford's exact hand-set weights run as bellman-tiny runs (4 rounds a step over the "
                     "frontier, in the growing corridor, the same decoder): bellman-tiny's scaffold with nothing "
                     "learned. No learned parameters."),
    "bellman-ford-dense": (ClassicalConfig("bellman-ford-dense", max_steps=24),
                           "Bellman-Ford by the book: every round relaxes every edge, 4 rounds a step, until "
                           "nothing changes; the same decoder. No learned parameters."),
    **{f"alt-{k}": (ClassicalConfig("alt", max_steps=1, landmarks=k),
                    f"ALT: A* on the same heap with the larger of the straight-line km and the landmark bound "
                    f"max over {k} landmark{'s' if k > 1 else ''} of |d(L, v) - d(L, t)| (landmarks by farthest-point "
                    f"sampling, road metres from scipy's Dijkstra, {4 * k} bytes a city, computed once per graph); "
                    f"exact in one step. No learned parameters.")
       for k in (1, 4, 16)},
}


def write_cards(directory: str | Path) -> list[Path]:
    """Write the card of every row of ROWS into `directory`; returns the paths."""
    from citypath.models.base import write_card

    out = []
    for name, (config, about) in ROWS.items():
        path = Path(directory) / f"{name}.json"
        write_card(path, classical_card(None, name, config, about=about))
        out.append(path)
    return out


if __name__ == "__main__":
    import sys

    for p in write_cards(sys.argv[1] if len(sys.argv) > 1 else "checkpoints"):
        print(f"wrote {p}")
