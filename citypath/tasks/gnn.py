"""Training side of the recurrent MPNN (`citypath.models.gnn`): random regional sub-graphs, progressive loss.

The loop itself is `citypath.training.train`; batches are a pure function of (seed, step, rank).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import connected_components, dijkstra

from citypath import cost
from citypath.geo import haversine_km
from citypath.graph import CityGraph, radius_edges
from citypath.models.base import count_parameters
from citypath.models.gnn import (
    SIZES,
    GNNConfig,
    GNNModel,
    MessageGraph,
    RecurrentMPNN,
    message_graph,
    query_features,
    readout_ops,
    round_ops,
    setup_ops,
)
from citypath.split import sample_pairs, train_mask
from citypath.training import batch_rng, task_from_args


@dataclass(frozen=True)
class RegionConfig:
    """How the small training graphs are drawn (stored in the card beside the model config)."""

    pool: int = 320                 # regions built up front; every batch draws regions and targets from them
    min_radius_km: float = 150.0    # a region: cities within U(min, max) km of a random city ...
    max_radius_km: float = 600.0
    min_keep: float = 0.4           # ... of which a random fraction U(min_keep, 1) is kept (sparser graphs) ...
    max_nodes: int = 1200           # ... and at most this many (the default graph has ~21,000)
    regions_per_batch: int = 8
    max_free_rounds: int = 48       # progressive loss: U{0..max_free_rounds} rounds without gradient ...
    max_grad_rounds: int = 6        # ... then U{1..max_grad_rounds} rounds with gradient
    val_regions: int = 32
    val_pairs: int = 20             # default-graph train-split pairs decoded at max steps for the curves


@dataclass
class Region:
    ids: np.ndarray          # ids in the default graph
    lat: np.ndarray
    lon: np.ndarray
    mg: MessageGraph
    reverse: sp.csr_matrix   # message edges reversed: Dijkstra from a target gives distances *to* it


def build_region(g: CityGraph, rng: np.random.Generator, rc: RegionConfig, cones: int) -> Region | None:
    """A random regional sub-graph of g (largest component of the cities kept), or None if too small."""
    centre = int(rng.integers(g.n_cities))
    radius = rng.uniform(rc.min_radius_km, rc.max_radius_km)
    near = np.flatnonzero(haversine_km(g.lat, g.lon, g.lat[centre], g.lon[centre]) <= radius)
    near = near[rng.random(len(near)) < rng.uniform(rc.min_keep, 1.0)]
    if len(near) > rc.max_nodes:
        near = np.sort(rng.choice(near, rc.max_nodes, replace=False))
    if len(near) < 16:
        return None
    adj = radius_edges(g.lat[near], g.lon[near], g.radius_km)
    _, comp = connected_components(adj, directed=False)
    main = comp == np.argmax(np.bincount(comp))
    if main.sum() < 16:
        return None
    ids = near[main]
    adj = adj[main][:, main].tocsr()
    lat, lon = g.lat[ids], g.lon[ids]
    mg = message_graph(lat, lon, adj, cones)
    keep = ~mg.pad.numpy()
    rows = np.broadcast_to(np.arange(len(ids)), keep.shape)[keep]
    cols, km = mg.nbr.numpy()[keep], mg.hop_km.numpy()[keep]
    reverse = sp.csr_matrix((np.maximum(km, 1e-6), (cols, rows)), shape=(len(ids), len(ids)))
    return Region(ids, lat, lon, mg, reverse)


def region_batch(g: CityGraph, regions: list[Region], rng: np.random.Generator, rounds_free: int,
                 rounds_grad: int, *, exclude_validation: bool = False) -> dict[str, torch.Tensor]:
    """Disjoint union of regions, one random target each, with detour labels and loss weights
    (0 where the city's pair with the target is held out, or with `exclude_validation` a validation pair)."""
    k = max(r.mg.nbr.shape[0] for r in regions)
    offset, parts = 0, []
    for r in regions:
        n = len(r.ids)
        t, s = int(rng.integers(n)), int(rng.integers(n))
        kk = r.mg.nbr.shape[0]
        pad_rows = k - kk
        nbr = torch.cat([r.mg.nbr, torch.arange(n).repeat(pad_rows, 1)]) + offset
        hop = torch.cat([r.mg.hop_km, torch.zeros(pad_rows, n)])
        pad = torch.cat([r.mg.pad, torch.ones(pad_rows, n, dtype=torch.bool)])
        mg = MessageGraph(nbr - offset, hop, pad)
        x, e, to_t = query_features(mg, r.lat, r.lon, s, t, g.radius_km)
        dist = dijkstra(r.reverse, directed=True, indices=t)
        # Pairs held out on the default graph are never supervised, even on a sub-graph.
        ok = np.isfinite(dist) & train_mask(r.ids, np.full(n, r.ids[t]), exclude_validation=exclude_validation)
        target = np.where(ok, (dist - to_t.numpy()) / g.radius_km, 0.0).astype(np.float32)
        parts.append((nbr, pad, x, e, torch.from_numpy(target), torch.from_numpy(ok.astype(np.float32))))
        offset += n
    cat = lambda i, dim: torch.cat([p[i] for p in parts], dim=dim)  # noqa: E731
    return {"nbr": cat(0, 1), "pad": cat(1, 1), "x": cat(2, 0), "e": cat(3, 1), "target": cat(4, 0),
            "weight": cat(5, 0), "rounds_free": torch.tensor(rounds_free), "rounds_grad": torch.tensor(rounds_grad)}


TRAIN_DEFAULTS = {
    # ~29 minutes on the 2-core CPU, budget in paths (the clock cap does not bind); one thread,
    # because the tensors are small and the cores shared. 180,000 graphs (39 min) scored worse at
    # 4-16 steps on training-split pairs than 120,000 (results/gnn-budget/, docs/test-time-compute.md).
    "small": dict(lr=3e-3, batch_paths=8, total_paths=120_000, max_minutes=600.0, epoch_paths=12_000,
                  warmup_steps=100, threads=1, card_pairs=200),
    # The sweep's sizes (experiments/tradeoff.py sets one budget of graphs for every size with --paths).
    "tiny": dict(lr=3e-3, batch_paths=8, total_paths=30_000, max_minutes=600.0, epoch_paths=6_000,
                 warmup_steps=100, threads=1, card_pairs=50),
    "large": dict(lr=3e-3, batch_paths=8, total_paths=30_000, max_minutes=600.0, epoch_paths=6_000,
                  warmup_steps=100, threads=1, card_pairs=50),
}


class GNNTask:
    """The GNN's side of citypath.training: region batches, validation on the default graph, export.

    A "path" in the loop's bookkeeping is one (region, target) training graph.
    """

    family = "gnn"

    def __init__(self, g: CityGraph, size: str, config: GNNConfig, regions: RegionConfig, cfg, command: str = ""):
        self.g, self.size, self.config, self.regions_config, self.cfg = g, size, config, regions, cfg
        self.command = command
        self.model_config = {**asdict(config), "regions": asdict(regions)}
        rng = np.random.default_rng([cfg.seed, 1])
        self.pool: list[Region] = []
        while len(self.pool) < regions.pool + regions.val_regions:
            r = build_region(g, rng, regions, config.cones)
            if r is not None:
                self.pool.append(r)
        self.train_pool = self.pool[: regions.pool]
        val_rng = np.random.default_rng([cfg.seed, 2])
        self._val = [region_batch(g, self.pool[regions.pool + i: regions.pool + i + 8], val_rng,
                                  regions.max_free_rounds, 1, exclude_validation=cfg.exclude_validation)
                     for i in range(0, regions.val_regions, 8)]

        self._val_pairs = sample_pairs(g.n_cities, regions.val_pairs, np.random.default_rng([cfg.seed, 3]),
                                       heldout=False)

    def build_model(self) -> RecurrentMPNN:
        return RecurrentMPNN(self.config)

    def batch(self, step: int, rank: int, world: int):
        rng = batch_rng(self.cfg.seed, step, rank)
        rc = self.regions_config
        picks = rng.choice(len(self.train_pool), rc.regions_per_batch, replace=False)
        # A quarter of batches start from the initial state so the encoder learns too.
        free = 0 if rng.random() < 0.25 else int(rng.integers(1, rc.max_free_rounds + 1))
        grad = int(rng.integers(1, rc.max_grad_rounds + 1))
        return region_batch(self.g, [self.train_pool[i] for i in picks], rng, free, grad,
                            exclude_validation=self.cfg.exclude_validation), len(picks)

    def train_flops(self, batch: dict[str, torch.Tensor]) -> float:
        """Operations of one training batch by the inference convention (`citypath.models.gnn`'s set-up, round and
        read-out counts on the batch's n cities and k slots): the rounds without gradient once, the set-up and the
        graded rounds with their read-out and loss three times (backward ~ 2x forward)."""
        k, n = batch["nbr"].shape
        free, grad = int(batch["rounds_free"]), int(batch["rounds_grad"])
        c = self.config
        no_grad = (setup_ops(c, n, k) + free * round_ops(c, n, k)) if free else 0.0
        graded = setup_ops(c, n, k) + grad * (round_ops(c, n, k) + readout_ops(c, n) + cost.SMOOTH_L1_OPS * n)
        return no_grad + 3.0 * graded

    def val_batches(self):
        return self._val

    def val_pairs(self):
        return self._val_pairs

    def decode(self, model: RecurrentMPNN, srcs, dsts) -> list[list[int]]:
        """Paths at max_steps on the default graph (the curves track the model's full budget, not step 1)."""
        m = GNNModel("training", {"num_parameters": count_parameters(model), "max_steps": self.config.max_steps,
                                  "graph": {"fingerprint": self.g.fingerprint}}, model)
        try:
            return [list(m.refine(self.g, int(s), int(t), self.config.max_steps))[-1] for s, t in zip(srcs, dsts)]
        finally:
            for p in model.parameters():
                p.requires_grad_(True)
            model.train()

    def export(self, model: RecurrentMPNN) -> dict[str, torch.Tensor]:
        # ~1-2k parameters: fp32 costs nothing and keeps the long recurrence exact.
        return {k: v.detach().float().cpu() for k, v in model.state_dict().items()}


def training_task(g: CityGraph, args):
    """Entry point for `python -m citypath train --model gnn --size small` (see citypath.training)."""
    return task_from_args(g, args, "gnn", SIZES, TRAIN_DEFAULTS, GNNConfig, RegionConfig, GNNTask)
