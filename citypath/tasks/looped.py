"""Training side of `citypath.models.looped`: small graphs, progressive loss over loops.

Each batch is a disjoint union of small graphs (the bellman family's: random geometric graphs
and regional sub-graphs of the default graph), one random (source, target) query each. The
block is looped a random number of times without gradient (U{0..max_free_loops}), then
U{1..max_grad_loops} times with gradient, and supervised at every loop with gradient: the min
head against Bellman-Ford's estimate after that many rounds, the detour read-out against the
true distance to the target (Dijkstra on the small graph). Cities whose pair with the target is
held out on the default graph are never supervised, and a held-out (source, target) is never
drawn as a query. The loop is `citypath.training.train`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import dijkstra

from citypath.graph import CityGraph
from citypath.models.base import count_parameters
from citypath.models.looped import LoopedConfig, LoopedModel, LoopedNet, Tokens, make_tokens
from citypath.split import sample_pairs, train_mask
from citypath.tasks.small_graphs import (
    GraphsConfig,
    SmallGraph,
    bellman_ford_rounds,
    draw_query,
    region_graph,
    straight_radii,
    synthetic_graph,
)
from citypath.training import batch_rng, decode_at_max_steps, task_from_args


@dataclass(frozen=True)
class LoopGraphsConfig:
    """How the small training graphs are drawn and looped (stored in the card beside the model config)."""

    graphs_per_batch: int = 8
    min_nodes: int = 12
    max_nodes: int = 240
    min_degree: float = 3.0
    max_degree: float = 24.0
    region_share: float = 0.5
    max_free_loops: int = 24
    max_grad_loops: int = 3
    progressive: bool = True       # ablation: False = every loop from the first carries gradient
    l1: float = 1e-4               # L1 penalty on the min head's weights, per supervised city
    detour_weight: float = 1.0


TRAIN_DEFAULTS = {
    # Budget in graphs ("paths" in the loop's bookkeeping). The learning rate decays to 3e-9 so the
    # min head's weights settle to ~1e-7 (exact routes need it; docs/models.md on the bellman network).
    "small": dict(lr=3e-3, min_lr_ratio=1e-6, batch_paths=8, total_paths=160_000, max_minutes=600.0,
                  epoch_paths=16_000, warmup_steps=200, val_paths=12, card_pairs=200,
                  steps_for_card=(1, 2, 4, 8, 16, 32, 48)),
}
SIZES = {"small": dict(dim=16, heads=2, window=8)}


def loop_batch(g: CityGraph, graphs: list[SmallGraph], rng: np.random.Generator, free: int, grad: int,
               config: LoopedConfig, *, exclude_validation: bool = False) -> dict:
    """Tokens of a union of `graphs` (one query each) with per-loop Bellman-Ford labels and true distances;
    validation pairs are never drawn nor supervised with `exclude_validation` (held-out pairs never are)."""
    dts, dss, dsts_, srcs, snd, rcv, ws, gid, labels, trues, weights = [], [], [], [], [], [], [], [], [], [], []
    offset = 0
    for q, sg in enumerate(graphs):
        s, t = draw_query(sg, rng, exclude_validation=exclude_validation)
        dt, ds = straight_radii(g, sg, t), straight_radii(g, sg, s)
        dts.append(dt)
        dss.append(ds)
        dsts_.append(float(dt[s]))
        srcs.append((s + offset, t + offset))
        snd.append(sg.src + offset)
        rcv.append(sg.dst + offset)
        ws.append(sg.w)
        gid.append(np.full(sg.n, q))
        labels.append(bellman_ford_rounds(sg, t, free + grad)[free:])
        adj = sp.csr_matrix((sg.w, (sg.src, sg.dst)), shape=(sg.n, sg.n))
        trues.append(dijkstra(adj, indices=t, directed=False))              # every node's distance to t
        weight = np.ones(sg.n)
        if sg.ids is not None:   # pairs held out on the default graph are never supervised
            weight[~train_mask(sg.ids, np.full(sg.n, sg.ids[t]), exclude_validation=exclude_validation)] = 0.0
        weights.append(weight)
        offset += sg.n
    st = np.array(srcs)
    tok = make_tokens(np.concatenate(dts), np.concatenate(dss), np.array(dsts_), st[:, 0], st[:, 1],
                      np.concatenate(snd), np.concatenate(rcv), np.concatenate(ws), np.concatenate(gid),
                      config.window)
    t64 = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    true = np.concatenate(trues)
    weight = np.concatenate(weights) * np.isfinite(true)
    return {"tok": tok, "labels": t64(np.concatenate(labels, axis=1)),
            "true": t64(np.where(np.isfinite(true), true, 0.0)),
            "weight": t64(weight), "loops_free": torch.tensor(free), "loops_grad": torch.tensor(grad)}


class LoopedTask:
    """The looped family as a TrainTask of citypath.training. A "path" in its bookkeeping is one small graph."""

    family = "looped"
    description = ("a looped transformer: one weight-tied block (a min-plus head over every corridor edge, softmax "
                   "heads over graph neighbours and two global tokens, an MLP) over the cities of a corridor; "
                   "more steps = more loops")

    def __init__(self, g: CityGraph, size: str, config: LoopedConfig, graphs: LoopGraphsConfig, cfg,
                 command: str = ""):
        self.g, self.size, self.config, self.graphs, self.cfg, self.command = g, size, config, graphs, cfg, command
        self.model_config = {**asdict(config), "graphs": asdict(graphs)}
        self.gc_draw = _bellman_graphs(graphs)
        val_rng = np.random.default_rng([cfg.seed, 2])
        self._val = [self._batch(val_rng, int(val_rng.integers(0, graphs.max_free_loops + 1)), 1) for _ in range(8)]
        self._val_pairs = sample_pairs(g.n_cities, cfg.val_paths, np.random.default_rng([cfg.seed, 3]), heldout=False)

    def _draw(self, rng: np.random.Generator) -> SmallGraph:
        while True:
            sg = region_graph(self.g, rng, self.gc_draw) if rng.random() < self.graphs.region_share \
                else synthetic_graph(rng, self.gc_draw)
            if sg.n >= 2:
                return sg

    def _batch(self, rng: np.random.Generator, free: int, grad: int) -> dict:
        graphs = [self._draw(rng) for _ in range(self.graphs.graphs_per_batch)]
        b = loop_batch(self.g, graphs, rng, free, grad, self.config, exclude_validation=self.cfg.exclude_validation)
        b["l1"] = torch.tensor(self.graphs.l1, dtype=torch.float64)
        b["detour_weight"] = torch.tensor(self.graphs.detour_weight)
        return b

    def build_model(self) -> LoopedNet:
        return LoopedNet(self.config)

    def batch(self, step: int, rank: int, world: int):
        rng = batch_rng(self.cfg.seed, step, rank)
        gc = self.graphs
        if gc.progressive:
            free, grad = int(rng.integers(0, gc.max_free_loops + 1)), int(rng.integers(1, gc.max_grad_loops + 1))
        else:   # ablation: the same loop counts, all with gradient from the first loop
            free, grad = 0, int(rng.integers(1, gc.max_free_loops + gc.max_grad_loops + 1))
        return self._batch(rng, free, grad), gc.graphs_per_batch

    def val_batches(self):
        return [dict(b, l1=torch.tensor(0.0, dtype=torch.float64)) for b in self._val]

    def val_pairs(self):
        return self._val_pairs

    def decode(self, model: LoopedNet, srcs, dsts) -> list[list[int]]:
        """Paths at max_steps on the default graph (the curves track the model's full budget)."""
        return decode_at_max_steps(LoopedModel, model, self.g, self.config.max_steps, srcs, dsts,
                                   count_parameters(model))

    def export(self, model: LoopedNet) -> dict[str, torch.Tensor]:
        # float64 for the min head (ten numbers that must stay exact over a hundred rounds), float32 for the rest.
        return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _bellman_graphs(gc: LoopGraphsConfig):
    names = {f.name for f in fields(GraphsConfig)}
    return GraphsConfig(**{k: v for k, v in asdict(gc).items() if k in names})


def training_task(g: CityGraph, args):
    """Entry point for `python -m citypath train --model looped --size small`."""
    return task_from_args(g, args, "looped", SIZES, TRAIN_DEFAULTS, LoopedConfig, LoopGraphsConfig, LoopedTask)


__all__ = ["LoopGraphsConfig", "LoopedTask", "Tokens", "training_task"]
