"""Training side of `citypath.models.bellman`: Bellman-Ford labels on small graphs, progressive L1 loss.

Each batch is a disjoint union of small graphs (`citypath.tasks.small_graphs`: random geometric
graphs and regional sub-graphs of the default graph). One random target each; the label of every city after
T rounds is Bellman-Ford's estimate after T rounds (the shortest route of at most T hops,
inf if none), so the network is taught the algorithm round by round, not just its fixed
point. Rounds are progressive: a random number without gradient, then 1-3 with. Pairs held
out on the default graph are never supervised. The loop is `citypath.training.train`.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import torch

from citypath.graph import CityGraph
from citypath.models.base import count_parameters
from citypath.models.bellman import BellmanConfig, BellmanModel, BellmanNet
from citypath.split import sample_pairs, train_mask
from citypath.tasks.small_graphs import GraphsConfig, SmallGraph, bellman_ford_rounds, region_graph, synthetic_graph
from citypath.training import batch_rng, decode_at_max_steps, task_from_args

TRAIN_DEFAULTS = {
    # A few minutes on one core (docs/models.md); budget in graphs ("paths" in the loop's bookkeeping).
    # The learning rate decays to 1e-8: exact routes need weights exact to ~1e-7 (docs/models.md).
    "tiny": dict(lr=3e-3, min_lr_ratio=1e-6, batch_paths=8, total_paths=160_000, max_minutes=600.0,
                 epoch_paths=16_000, warmup_steps=100, val_paths=20, card_pairs=200,
                 steps_for_card=(1, 2, 4, 8, 16, 24)),
}
SIZES = {"tiny": dict(hidden_dim=1)}


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
    return task_from_args(g, args, "bellman", SIZES, TRAIN_DEFAULTS, BellmanConfig, GraphsConfig, BellmanTask,
                          default_size="tiny")
