"""Training side of `citypath.models.bellman`: small graphs, Bellman-Ford labels, progressive L1 loss.

Each batch is a disjoint union of small graphs: random geometric graphs (points in a square,
joined within one radius, edge length = distance in radii) and regional sub-graphs of the
default graph (a few hundred cities). One random target each; the label of every city after
T rounds is Bellman-Ford's estimate after T rounds (the shortest route of at most T hops,
inf if none), so the network is taught the algorithm round by round, not just its fixed
point. Rounds are progressive: a random number without gradient, then 1-3 with. Pairs held
out on the default graph are never supervised. The loop is `citypath.training.train`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import connected_components

from citypath.geo import haversine_km
from citypath.graph import CityGraph, radius_edges
from citypath.models.bellman import BellmanConfig, BellmanModel, BellmanNet, count_parameters
from citypath.split import sample_pairs, train_mask
from citypath.training import batch_rng, config_from_args, decode_at_max_steps


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


TRAIN_DEFAULTS = {
    # A few minutes on one core (docs/models.md); budget in graphs ("paths" in the loop's bookkeeping).
    # The learning rate decays to 1e-8: exact routes need weights exact to ~1e-7 (docs/models.md).
    "tiny": dict(lr=3e-3, min_lr_ratio=1e-6, batch_paths=8, total_paths=160_000, max_minutes=600.0,
                 epoch_paths=16_000, warmup_steps=100, val_paths=20, card_pairs=200,
                 steps_for_card=(1, 2, 4, 8, 16, 24)),
}
SIZES = {"tiny": dict(hidden_dim=1)}


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


def graph_batch(graphs: list[SmallGraph], rng: np.random.Generator, rounds_free: int, rounds_grad: int, *,
                exclude_validation: bool = False) -> dict[str, torch.Tensor]:
    """Disjoint union of `graphs`, one random target (and source) each, with per-round labels (weight 0 where a
    region city's pair with the target is held out, or with `exclude_validation` a validation pair)."""
    xs, srcs, dsts, ws, labels, weights = [], [], [], [], [], []
    offset = 0
    for sg in graphs:
        t, s = int(rng.integers(sg.n)), int(rng.integers(sg.n))
        x = np.zeros((sg.n, 2))
        x[t, 0], x[s, 1] = 1.0, 1.0
        lab = bellman_ford_rounds(sg, t, rounds_free + rounds_grad)[rounds_free:]
        weight = np.ones(sg.n)
        if sg.ids is not None:   # pairs held out on the default graph are never supervised
            weight[~train_mask(sg.ids, np.full(sg.n, sg.ids[t]), exclude_validation=exclude_validation)] = 0.0
        xs.append(x)
        srcs.append(sg.src + offset)
        dsts.append(sg.dst + offset)
        ws.append(sg.w)
        labels.append(lab)
        weights.append(weight)
        offset += sg.n
    t64 = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    return {"x": t64(np.concatenate(xs)), "src": t64(np.concatenate(srcs)), "dst": t64(np.concatenate(dsts)),
            "w": t64(np.concatenate(ws).astype(np.float64)), "labels": t64(np.concatenate(labels, axis=1)),
            "weight": t64(np.concatenate(weights)), "rounds_free": torch.tensor(rounds_free),
            "rounds_grad": torch.tensor(rounds_grad)}


class BellmanTask:
    """The bellman family as a TrainTask of citypath.training. A "path" in its bookkeeping is one small graph."""

    family = "bellman"
    description = ("a Bellman-Ford-aligned min-aggregation network: messages along every edge, learned on small "
                   "graphs, run over a frontier in a corridor; more steps = more rounds")

    def __init__(self, g: CityGraph, size: str, config: BellmanConfig, graphs: GraphsConfig, cfg, command: str = ""):
        self.g, self.size, self.config, self.graphs, self.cfg, self.command = g, size, config, graphs, cfg, command
        self.model_config = {**asdict(config), "graphs": asdict(graphs)}
        val_rng = np.random.default_rng([cfg.seed, 2])
        self._val = [graph_batch([self._draw(val_rng) for _ in range(graphs.graphs_per_batch)], val_rng,
                                 int(val_rng.integers(0, graphs.max_free_rounds + 1)), 1,
                                 exclude_validation=cfg.exclude_validation) for _ in range(8)]
        self._val_pairs = sample_pairs(g.n_cities, cfg.val_paths, np.random.default_rng([cfg.seed, 3]), heldout=False)

    def _draw(self, rng: np.random.Generator) -> SmallGraph:
        while True:
            sg = region_graph(self.g, rng, self.graphs) if rng.random() < self.graphs.region_share \
                else synthetic_graph(rng, self.graphs)
            if sg.n >= 2:
                return sg

    def build_model(self) -> BellmanNet:
        return BellmanNet(self.config).double()

    def batch(self, step: int, rank: int, world: int):
        rng = batch_rng(self.cfg.seed, step, rank)
        gc = self.graphs
        graphs = [self._draw(rng) for _ in range(gc.graphs_per_batch)]
        free = int(rng.integers(0, gc.max_free_rounds + 1))
        grad = int(rng.integers(1, gc.max_grad_rounds + 1))
        b = graph_batch(graphs, rng, free, grad, exclude_validation=self.cfg.exclude_validation)
        # The penalty stays on to the end: annealing it away over the last quarter brought a x r and
        # b x r closer to Bellman-Ford's (1.1e-6 / 1.6e-6 off instead of 2.0e-6 / 2.2e-6) but routed
        # fewer training pairs optimally (82% against 87%; docs/models.md).
        b["l1"] = torch.tensor(gc.l1, dtype=torch.float64)
        return b, len(graphs)

    def val_batches(self):
        return [dict(b, l1=torch.tensor(0.0, dtype=torch.float64)) for b in self._val]

    def val_pairs(self):
        return self._val_pairs

    def decode(self, model: BellmanNet, srcs, dsts) -> list[list[int]]:
        """Paths at max_steps on the default graph (the curves track the model's full budget)."""
        return decode_at_max_steps(BellmanModel, model, self.g, self.config.max_steps, srcs, dsts,
                                   count_parameters(model))

    def export(self, model: BellmanNet) -> dict[str, torch.Tensor]:
        # float64: a few dozen numbers, and the recurrence must stay exact over a hundred rounds.
        return {k: v.detach().double().cpu() for k, v in model.state_dict().items()}


def training_task(g: CityGraph, args):
    """Entry point for `python -m citypath train --model bellman --size tiny`."""
    size = args.size or "tiny"
    if size not in SIZES:
        raise ValueError(f"--size {size!r}: the bellman network comes in {', '.join(SIZES)}")
    cfg, overrides = config_from_args(f"bellman-{size}", TRAIN_DEFAULTS[size], args)
    graph_fields = {f.name for f in fields(GraphsConfig)}
    graphs = GraphsConfig(**{k: v for k, v in overrides.items() if k in graph_fields})
    config = BellmanConfig(**{**SIZES[size], **{k: v for k, v in overrides.items() if k not in graph_fields}})
    return BellmanTask(g, size, config, graphs, cfg, command=getattr(args, "command_line", "")), cfg
