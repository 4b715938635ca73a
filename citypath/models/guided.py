"""guided: exact A* whose lower bound is learned. A small network of a city's coordinates, plus an optional
learned per-city memory, writes a table of d potentials per city; certified on the graph (`citypath.bounds`:
every column 1-Lipschitz in road metres), the table bounds the road distance to the target from below, and
A* with the larger of it and the straight line is exact by construction while it expands fewer cities the
tighter the bound is.

Which part decides what: the route is decided by hand-written search (A* on a binary heap, the same
`BestFirst` as the classical astar and alt rows) and is always optimal once the search ends; the learned part
decides only how much work the search does (which cities it expands). Test-time compute = expansions: step 1
may expand `first_budget` cities and each later step doubles the total (anytime: before the target is popped,
a step's answer is the way to the expanded city with the least bound, which does not arrive); by step
`max_steps` every search has ended.

    >>> m = load_model("guided-m16")                         # doctest: +SKIP
    >>> *_, path = m.refine(g, src, dst, steps=m.max_steps)  # doctest: +SKIP

Bytes: the table the query reads is 4 x d bytes a city (int32 metres), as ALT's landmark table; with
`memory` the checkpoint stores those bytes (fp32), without it nothing per city (the network reads the
coordinates every city already has and the table is derived when a graph is first queried). The table is
built once per graph (the network over every city, then d Dijkstras): `preprocessing_ops`, not counted per
query, as ALT's landmark Dijkstras are not.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from citypath import cost
from citypath.bounds import BYTES_PER_COLUMN, certify, landmark_table
from citypath.bounds import preprocessing_ops as dijkstra_ops
from citypath.geo import unit_vectors
from citypath.graph import CityGraph
from citypath.models.base import StateView, StepwiseModel
from citypath.models.classical import BestFirst, best_first_run, best_first_trace

UNIT_KM = 1000.0    # the network's outputs and the memory are in thousands of km
CONTROLS = ("landmarks", "straight-line", "network-only", "shuffled-memory")


@dataclass(frozen=True)
class GuidedConfig:
    n_cities: int = 0            # rows of the memory (the graph it was trained on); 0 without memory
    columns: int = 4             # d: potentials per city (4 bytes a city each in the query's table)
    memory: bool = True          # a learned per-city table added to the network's output
    hidden: int = 64
    fourier: int = 32            # random Fourier features of the unit-sphere position
    fourier_scale: float = 20.0  # their frequency scale (radians per unit of the unit sphere)
    first_budget: int = 16       # expansions of step 1; each later step doubles the total
    max_steps: int = 12


class GuidedNet(nn.Module):
    """Per-city potentials in thousands of km: an MLP of the city's position (+ its memory row)."""

    def __init__(self, config: GuidedConfig):
        super().__init__()
        self.config = config
        c = config
        gen = torch.Generator().manual_seed(0)
        self.register_buffer("freqs", torch.randn(3, c.fourier, generator=gen, dtype=torch.float32) * c.fourier_scale)
        self.mlp = nn.Sequential(nn.Linear(3 + 2 * c.fourier, c.hidden), nn.SiLU(), nn.Linear(c.hidden, c.hidden),
                                 nn.SiLU(), nn.Linear(c.hidden, c.columns))
        nn.init.zeros_(self.mlp[-1].weight)    # starts as the memory alone (or zero): training only tightens
        nn.init.zeros_(self.mlp[-1].bias)
        self.memory = nn.Parameter(torch.zeros(c.n_cities, c.columns)) if c.memory else None

    def potentials(self, xyz: torch.Tensor, rows: torch.Tensor | None = None, *, memory: bool = True
                   ) -> torch.Tensor:
        """(n, columns) potentials of the cities at unit-sphere positions `xyz`; `rows` index the memory (all
        cities in order when None); `memory=False` leaves it out."""
        proj = xyz.float() @ self.freqs
        out = self.mlp(torch.cat([xyz.float(), torch.sin(proj), torch.cos(proj)], dim=1))
        if memory and self.memory is not None:
            out = out + (self.memory if rows is None else self.memory[rows])
        return out

    def ops(self, n: int) -> float:
        c = self.config
        width = 3 + 2 * c.fourier
        return n * (cost.matmul(1, 3, c.fourier) + 2 * c.fourier * 10 + cost.matmul(1, width, c.hidden)
                    + cost.matmul(1, c.hidden, c.hidden) + cost.matmul(1, c.hidden, c.columns) + 8 * c.hidden)


class GuidedModel(StepwiseModel):
    """Exact A* with a learned, certified lower bound (`GuidedNet`'s table); steps = doubling expansion budgets."""

    family = "guided"
    network = GuidedNet
    config_class = GuidedConfig
    has_state_view = True

    def __init__(self, name: str, card: dict, net: GuidedNet, control: str | None = None):
        super().__init__(name, card, net)
        if control is not None and control not in CONTROLS:
            raise ValueError(f"control={control!r}: choose one of {CONTROLS}")
        self.control = control
        self._tables: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    @classmethod
    def default_config(cls, g: CityGraph) -> GuidedConfig:
        return GuidedConfig(n_cities=g.n_cities)

    # -- the table ------------------------------------------------------------------------------

    def raw_potentials_km(self, g: CityGraph, memory: str = "own") -> np.ndarray:
        """The network's (+ memory's) potentials for every city of `g`, in km, before certification; `memory`
        "own", "none" or "shuffled" (rows permuted across cities, a fixed permutation)."""
        rows = torch.from_numpy(np.random.default_rng(0).permutation(g.n_cities)) if memory == "shuffled" else None
        with torch.no_grad():
            out = self.net.potentials(torch.from_numpy(unit_vectors(g.lat, g.lon)), rows, memory=memory != "none")
        return out.double().numpy() * UNIT_KM

    def table(self, g: CityGraph) -> np.ndarray:
        """The certified table (int32 metres, (n, columns)) this model's searches on `g` read; built once."""
        with self._lock:
            if g.fingerprint not in self._tables:
                self._tables[g.fingerprint] = self._build_table(g)
            return self._tables[g.fingerprint]

    def _build_table(self, g: CityGraph) -> np.ndarray:
        c = self.config
        if self.control == "landmarks":
            return landmark_table(g, c.columns)
        if self.control == "straight-line":
            return np.zeros((g.n_cities, 0), dtype=np.int64)
        memory = {"network-only": "none", "shuffled-memory": "shuffled"}.get(self.control, "own")
        return certify(self.raw_potentials_km(g, memory) * 1000.0, g)

    def with_control(self, control: str) -> GuidedModel:
        """This model with its table replaced (`CONTROLS`): "landmarks" (ALT's hand-set table at the same
        columns: the scaffold control), "straight-line" (no table: A* on the same steps), "network-only" (the
        memory dropped) or "shuffled-memory" (memory rows permuted across cities); each still certified."""
        if control not in CONTROLS:
            raise ValueError(f"control={control!r}: choose one of {', '.join(CONTROLS)}")
        about = {"landmarks": f"{self.name}'s search with ALT's landmark table ({self.config.columns} farthest-point "
                              "landmarks) in place of the learned table: nothing learned",
                 "straight-line": f"{self.name}'s search with the straight line alone (A*): nothing learned",
                 "network-only": f"{self.name} with its per-city memory dropped (the network of coordinates alone)",
                 "shuffled-memory": f"{self.name} with its memory rows permuted across cities"}[control]
        learned = control in ("network-only", "shuffled-memory")
        name = f"{self.name}.scaffold" if control == "landmarks" else f"{self.name}.{control}"
        card = self.control_card(about, name=name, learned=learned,
                                 num_parameters=self.num_parameters if learned else 0)
        return GuidedModel(card["name"], card, self.net, control=control)

    def scaffold_control(self) -> GuidedModel:
        return self.with_control("landmarks")

    def bytes_per_city(self) -> int:
        """Bytes a city the query's table holds (int32 metres per column)."""
        return BYTES_PER_COLUMN * self.table_columns()

    def table_columns(self) -> int:
        return 0 if self.control == "straight-line" else self.config.columns

    def stored_bytes_per_city(self) -> int:
        """Bytes a city the checkpoint stores (the memory, fp32); 0 for a network of coordinates alone."""
        if self.control in ("landmarks", "straight-line", "network-only") or self.net.memory is None:
            return 0
        return 4 * self.config.columns

    def preprocessing_ops(self, g: CityGraph) -> float:
        """Operations spent once per graph: the network over every city and one Dijkstra per column."""
        cols = self.table_columns()
        net = 0.0 if self.control in ("landmarks", "straight-line") else self.net.ops(g.n_cities)
        return net + dijkstra_ops(g, cols)

    # -- the search -----------------------------------------------------------------------------

    def budgets(self, steps: int) -> list[int]:
        """Expansions each step may spend: the first `first_budget`, then as many as all before (doubling)."""
        b0 = self.config.first_budget
        return [b0] + [b0 * 2 ** (k - 1) for k in range(1, steps)]

    def _search(self, g: CityGraph, src: int, dst: int) -> BestFirst:
        return BestFirst(g, src, dst, 1.0, table_m=self.table(g))

    def _run(self, g: CityGraph, src: int, dst: int, steps: int) -> Iterator[tuple[list[int], float, object]]:
        yield from best_first_run(self._search(g, src, dst), self.budgets(steps))

    def trace(self, g: CityGraph, src: int, dst: int, steps: int = 1) -> Iterator[list[StateView]]:
        src, dst, steps = self.check_query(g, src, dst, steps)
        return best_first_trace(self._search(g, src, dst), self.budgets(steps))

    def expansions(self, g: CityGraph, src: int, dst: int) -> int:
        """Cities the search expands to the end (the target popped): the effort the learned bound saves."""
        s = self._search(g, g.check_id(src), g.check_id(dst))
        for _ in best_first_run(s, [None]):
            pass
        return s.expanded
