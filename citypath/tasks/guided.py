"""Training side of `citypath.models.guided`: regression of a lower bound on exact distance fields.

Each batch draws `targets` random cities and scipy's exact road km from each to every city (one Dijkstra
each), then `pairs_per_target` cities v per target whose pair with it is a training pair in both directions
(held-out and validation pairs are never supervised). The loss asks the table's bound to rise toward the true
distance without passing it, while every column stays 1-Lipschitz on every edge of the graph:

    loss = mean (d - h) / d  +  10 x mean relu(h - d)^2 / d^2  +  lipschitz x mean relu(|dz| - km) / km

with h = tau x logsumexp(|z_v - z_t| / tau) a smooth max over columns (tau = `smooth_km`) and dz a column's
change along an edge (all edges, every step). Training never needs to be exact about the constraint: the
shipped table is certified when a graph is first queried (`citypath.bounds.certify`), which only lowers it.
With `memory` the per-city memory starts as ALT's table (farthest-point landmark distances, the hand-set
control), so training starts from ALT and moves away only where the loss says so. A "path" in the loop's
bookkeeping is one supervised (v, t) pair.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import dijkstra

from citypath.bounds import landmark_table
from citypath.geo import unit_vectors
from citypath.graph import CityGraph
from citypath.models.base import count_parameters
from citypath.models.guided import UNIT_KM, GuidedConfig, GuidedModel, GuidedNet
from citypath.split import sample_pairs, train_mask, validation_mask
from citypath.training import batch_rng, decode_at_max_steps, task_from_args

# Budget in drawn (v, t) pairs: 3,000 steps of 4,096 for the memory sizes; the memory-free network a third of
# that (1,000 steps): what this session's shared CPU afforded, said on its card and in docs/models.md.
TRAIN_DEFAULTS = {
    size: dict(lr=3e-4, min_lr_ratio=0.1, batch_paths=4096, total_paths=4_096_000 if size == "geo" else 12_288_000,
               epoch_paths=1_024_000 if size == "geo" else 2_048_000, warmup_steps=50, val_paths=100,
               card_pairs=200, grad_clip=0.0, steps_for_card=(1, 2, 4, 6, 8, 10, 12))
    for size in ("geo", "m4", "m16", "m64")
}
SIZES = {
    "geo": dict(memory=False, columns=4),     # 0 bytes a city stored; a 16-byte table derived per graph
    "m4": dict(memory=True, columns=1),       # 4 bytes a city
    "m16": dict(memory=True, columns=4),      # 16 bytes a city
    "m64": dict(memory=True, columns=16),     # 64 bytes a city
}


@dataclass(frozen=True)
class FieldsConfig:
    """How batches are drawn (stored on the card beside the model config)."""

    targets: int = 4                # distance fields (one Dijkstra each) a batch
    lipschitz: float = 100.0        # weight of the edge-constraint penalty
    smooth_km: float = 10.0         # tau of the smooth max over columns


class GuidedLoss(torch.nn.Module):
    """GuidedNet with the training loss as its forward (the loop's module)."""

    def __init__(self, net: GuidedNet, fields: FieldsConfig):
        super().__init__()
        self.net, self.fields = net, fields
        self.config = net.config

    def forward(self, xyz, v, t, d_km, eu, ev, ew_km):
        z = self.net.potentials(xyz) * UNIT_KM
        tau = self.fields.smooth_km
        h = tau * torch.logsumexp((z[v] - z[t]).abs() / tau, dim=1)
        pair = (d_km - h) / d_km + 10.0 * (torch.relu(h - d_km) / d_km) ** 2
        edge = (torch.relu((z[eu] - z[ev]).abs() - ew_km[:, None]) / ew_km[:, None]).mean()
        return pair.sum() + self.fields.lipschitz * edge * len(v), torch.tensor(float(len(v)))


class GuidedTask:
    """The guided family as a TrainTask of citypath.training."""

    family = "guided"
    description = ("exact A* with a learned lower bound: a network of coordinates (+ a per-city memory) writes a "
                   "table certified 1-Lipschitz on the graph; more steps = more expansions")

    def __init__(self, g: CityGraph, size: str, config: GuidedConfig, fields: FieldsConfig, cfg, command: str = ""):
        if config.n_cities != (g.n_cities if config.memory else 0):
            raise ValueError(f"n_cities={config.n_cities}: the memory has one row per city of the graph "
                             f"({g.n_cities}), none without memory")
        self.g, self.size, self.config, self.fields, self.cfg, self.command = g, size, config, fields, cfg, command
        self.model_config = {**asdict(config), "fields": asdict(fields)}
        self.pairs_per_target = max(1, cfg.batch_paths // fields.targets)
        upper = sp.triu(g.adjacency).tocoo()
        self._xyz = torch.from_numpy(unit_vectors(g.lat, g.lon)).float()
        self._edges = (torch.from_numpy(upper.row.astype(np.int64)), torch.from_numpy(upper.col.astype(np.int64)),
                       torch.from_numpy(upper.data).float())
        val_rng = np.random.default_rng([cfg.seed, 2])
        self._val = [self._fields_batch(val_rng, "validation") for _ in range(2)]
        self._val_pairs = sample_pairs(g.n_cities, cfg.val_paths, np.random.default_rng([cfg.seed, 3]),
                                       split="validation")

    def _fields_batch(self, rng: np.random.Generator, side: str) -> dict[str, torch.Tensor]:
        g, k = self.g, self.pairs_per_target
        targets = rng.integers(0, g.n_cities, size=self.fields.targets)
        dist = dijkstra(g.adjacency, indices=targets)
        vs, ts, ds = [], [], []
        for row, t in enumerate(targets):
            v = rng.integers(0, g.n_cities, size=k)
            tt = np.full(k, t)
            if side == "validation":
                ok = validation_mask(v, tt) | validation_mask(tt, v)
            else:
                ex = self.cfg.exclude_validation
                ok = train_mask(v, tt, exclude_validation=ex) & train_mask(tt, v, exclude_validation=ex)
            ok &= (v != t) & np.isfinite(dist[row, v])
            vs.append(v[ok])
            ts.append(tt[ok])
            ds.append(dist[row, v[ok]])
        eu, ev, ew = self._edges
        return {"xyz": self._xyz, "v": torch.from_numpy(np.concatenate(vs)), "t": torch.from_numpy(np.concatenate(ts)),
                "d_km": torch.from_numpy(np.concatenate(ds)).float(), "eu": eu, "ev": ev, "ew_km": ew}

    def build_model(self) -> GuidedLoss:
        net = GuidedNet(self.config)
        if net.memory is not None:       # start from ALT's hand-set table (the control), in thousands of km
            with torch.no_grad():
                net.memory.copy_(torch.from_numpy(landmark_table(self.g, self.config.columns) / 1000.0 / UNIT_KM))
        return GuidedLoss(net, self.fields)

    def batch(self, step: int, rank: int, world: int):
        b = self._fields_batch(batch_rng(self.cfg.seed, step, rank), "train")
        return b, len(b["v"])

    def val_batches(self):
        return self._val

    def val_pairs(self):
        return self._val_pairs

    def decode(self, model: GuidedLoss, srcs, dsts) -> list[list[int]]:
        return decode_at_max_steps(GuidedModel, model.net, self.g, self.config.max_steps, srcs, dsts,
                                   count_parameters(model.net))

    def export(self, model: GuidedLoss) -> dict[str, torch.Tensor]:
        return {k: v.detach().float().cpu().contiguous() for k, v in model.net.state_dict().items()}


def training_task(g: CityGraph, args):
    """Entry point for `python -m citypath train --model guided --size m16`."""
    sizes = {name: {**size, "n_cities": g.n_cities if size["memory"] else 0} for name, size in SIZES.items()}
    return task_from_args(g, args, "guided", sizes, TRAIN_DEFAULTS, GuidedConfig, FieldsConfig, GuidedTask,
                          default_size="m16")
