"""Training side of `citypath.models.memsearch`: imitation of an exact A* on the model's own memory.

Each batch holds `queries_per_batch` queries, each on its own regional sub-graph of the default graph
(`citypath.tasks.small_graphs.region_graph`, as the memory walker's task). Per query the search runs from the
source; at every planning iteration the expert picks, among the slots *the model wrote*, the one
cheapest counting the km so far (as written) plus the true km left (Dijkstra on the sub-graph): A*
with an exact heuristic. The loss is the cross-entropy of the read weights against the expert's slots
(all ties). DAgger mixing: at each iteration the search takes the expert's slot with a probability
drawn per query in U(0, max_expert_share), else the model's own, so it learns from the memories its
own choices make. A held-out (source, target) is never drawn, and a choice of a city whose pair with
the target is held out is never supervised.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import dijkstra

from citypath.geo import geo_features, haversine_km
from citypath.graph import CityGraph
from citypath.models.base import count_parameters
from citypath.models.memsearch import MemSearchConfig, MemSearchModel, MemSearchNet, Query, Search
from citypath.split import train_mask
from citypath.tasks.memory import MemoryTask
from citypath.tasks.small_graphs import GraphsConfig, draw_query, region_graph
from citypath.training import batch_rng, decode_at_max_steps, task_from_args


@dataclass(frozen=True)
class EpisodesConfig:
    """How training queries are drawn (stored in the card beside the model config)."""

    queries_per_batch: int = 16
    min_nodes: int = 60
    max_nodes: int = 400
    max_expert_share: float = 0.5


TRAIN_DEFAULTS = {
    # Budget in queries ("paths" in the loop's bookkeeping).
    "small": dict(lr=3e-3, min_lr_ratio=0.02, batch_paths=16, total_paths=48_000, max_minutes=600.0,
                  epoch_paths=6_000, warmup_steps=100, val_paths=12, card_pairs=200,
                  steps_for_card=(1, 2, 4, 8, 16, 32, 64)),
}
SIZES = {"small": dict(hidden=32, width=32, slots=4096, per_step=64, max_steps=64)}


@dataclass
class Episode:
    queries: list[Query]
    follow: list[np.ndarray]          # per query: take the expert's slot at iteration i
    caps: list[int]                   # per query: planning iterations at most

    def to(self, device) -> Episode:      # the training loop moves batches; this one lives in numpy
        return self


class MemSearchNetTrain(MemSearchNet):
    """The network with the training loss as its forward (the search needs the whole episode)."""

    def forward(self, episode: Episode) -> tuple[torch.Tensor, torch.Tensor]:
        total, count = torch.zeros(()), 0
        for q, follow, cap in zip(episode.queries, episode.follow, episode.caps):
            s = Search(self, q)
            s.iterate(cap, follow=follow)
            if s.losses:
                total = total + torch.stack(s.losses).sum()
                count += len(s.losses)
        return total, torch.tensor(float(count))


def episode(g: CityGraph, rng: np.random.Generator, ec: EpisodesConfig, *, exclude_validation: bool = False) -> Episode:
    """A batch of queries, each on its own regional sub-graph (validation pairs never drawn nor supervised with
    `exclude_validation`; held-out pairs never are)."""
    gc = GraphsConfig(min_nodes=ec.min_nodes, max_nodes=ec.max_nodes)
    R = g.radius_km
    queries, follows, caps = [], [], []
    while len(queries) < ec.queries_per_batch:
        sg = region_graph(g, rng, gc)
        if sg.n < 4:
            continue
        s, t = draw_query(sg, rng, exclude_validation=exclude_validation)
        if s == t:
            continue
        ids = sg.ids
        dt = haversine_km(g.lat[ids], g.lon[ids], g.lat[ids[t]], g.lon[ids[t]]) / R
        ds = haversine_km(g.lat[ids], g.lon[ids], g.lat[ids[s]], g.lon[ids[s]]) / R
        is_s, is_d = np.zeros(sg.n, bool), np.zeros(sg.n, bool)
        is_s[s], is_d[t] = True, True
        adj = sp.csr_matrix((sg.w, (sg.src, sg.dst)), shape=(sg.n, sg.n))
        dist, pred = dijkstra(adj, indices=t, directed=False, return_predecessors=True)
        hops, v = 0, s
        while v != t and v >= 0:
            v, hops = pred[v], hops + 1
        queries.append(Query(adj.indptr, adj.indices, adj.data, geo_features(dt, ds, float(dt[s]), is_s, is_d), dt,
                             s, t, float(dt[s]), expert=dist,
                             label_ok=train_mask(ids, np.full(sg.n, ids[t]), exclude_validation=exclude_validation)
                             & np.isfinite(dist)))
        cap = 4 * hops + 32
        follows.append(rng.random(cap) < rng.uniform(0.0, ec.max_expert_share))
        caps.append(cap)
    return Episode(queries, follows, caps)


class MemSearchTask(MemoryTask):
    """The memsearch family as a TrainTask of citypath.training (the memory walker's, with its own episodes,
    network and decoding). A "path" in its bookkeeping is one query."""

    family = "memsearch"
    decode_fields = ("per_step", "max_steps", "wipe_after")
    description = ("a GRU controller that plans in an external memory of candidate cities it writes and reads "
                   "by content (learned best-first search); more steps = more planning iterations")

    def val_episode(self, rng: np.random.Generator) -> Episode:
        return episode(self.g, rng, dataclasses.replace(self.episodes, max_expert_share=0.0),
                       exclude_validation=self.cfg.exclude_validation)

    def build_model(self) -> MemSearchNetTrain:
        return MemSearchNetTrain(self.config)

    def batch(self, step: int, rank: int, world: int):
        return {"episode": episode(self.g, batch_rng(self.cfg.seed, step, rank), self.episodes,
                                   exclude_validation=self.cfg.exclude_validation)}, self.episodes.queries_per_batch

    def decode(self, model: MemSearchNet, srcs, dsts) -> list[list[int]]:
        """Paths at max_steps on the default graph (the curves track the model's full budget)."""
        return decode_at_max_steps(MemSearchModel, model, self.g, self.config.max_steps, srcs, dsts,
                                   count_parameters(model))


def training_task(g: CityGraph, args):
    """Entry point for `python -m citypath train --model memsearch --size small --name memory-search`."""
    return task_from_args(g, args, "memsearch", SIZES, TRAIN_DEFAULTS, MemSearchConfig, EpisodesConfig,
                          MemSearchTask)
