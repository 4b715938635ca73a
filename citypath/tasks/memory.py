"""Training side of `citypath.models.memory`: imitation of the optimal next hop on regional sub-graphs.

Each batch holds `queries_per_batch` queries, each on its own regional sub-graph of the default
graph (`citypath.tasks.small_graphs.region_graph`: a random subset of the cities near a random city,
joined within the radius: sparse enough to have dead ends). Per query the walker makes
U{1..max_passes} walks that share one memory; at every city a walk visits, the loss is the
cross-entropy of the expert's hop (the unvisited neighbour minimising edge + true distance to the
target, Dijkstra on the sub-graph). DAgger mixing: at each hop the walk takes the expert's hop
with a probability drawn per query in U(0, max_expert_share), else the model's own greedy hop,
so the walker learns to recover from its own mistakes. A held-out (source, target) is never drawn,
and a decision at a city whose pair with the target is held out is never supervised.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import dijkstra

from citypath.geo import geo_features, haversine_km
from citypath.graph import CityGraph
from citypath.models.base import count_parameters
from citypath.models.memory import MemoryConfig, MemoryModel, MemoryNet, Walks, imitation_loss
from citypath.split import sample_pairs, train_mask
from citypath.tasks.small_graphs import GraphsConfig, draw_query, region_graph
from citypath.training import batch_rng, decode_at_max_steps, task_from_args


@dataclass(frozen=True)
class EpisodesConfig:
    """How training queries are drawn (stored in the card beside the model config)."""

    queries_per_batch: int = 16
    min_nodes: int = 60
    max_nodes: int = 400
    max_passes: int = 3
    max_expert_share: float = 0.5


TRAIN_DEFAULTS = {
    # Budget in queries ("paths" in the loop's bookkeeping).
    "small": dict(lr=3e-3, min_lr_ratio=0.02, batch_paths=16, total_paths=120_000, max_minutes=600.0,
                  epoch_paths=12_000, warmup_steps=100, val_paths=12, card_pairs=200,
                  steps_for_card=(1, 2, 4, 8)),
}
SIZES = {"small": dict(hidden=64, slots=64, width=16)}


class MemoryNetTrain(MemoryNet):
    """The network with the training loss as its forward (the walk needs the whole episode)."""

    def forward(self, episode: Walks) -> tuple[torch.Tensor, torch.Tensor]:
        return imitation_loss(self, episode)


def episode(g: CityGraph, rng: np.random.Generator, ec: EpisodesConfig, passes: int, *,
            exclude_validation: bool = False) -> Walks:
    """A batch of queries, each on its own regional sub-graph, as one union graph (validation pairs never drawn
    nor supervised with `exclude_validation`; held-out pairs never are)."""
    gc = GraphsConfig(min_nodes=ec.min_nodes, max_nodes=ec.max_nodes)
    R = g.radius_km
    rows, cols, kms, pos, dts, dss, srcs, dsts, dst_list, expert, ok = [], [], [], [], [], [], [], [], [], [], []
    offset = 0
    while len(srcs) < ec.queries_per_batch:
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
        dist = dijkstra(adj, indices=t, directed=False)
        rows.append(sg.src + offset)
        cols.append(sg.dst + offset)
        kms.append(sg.w)
        pos.append(geo_features(dt, ds, float(dt[s]), is_s, is_d))
        dts.append(dt)
        dss.append(ds)
        expert.append(dist)
        ok.append(train_mask(ids, np.full(sg.n, ids[t]), exclude_validation=exclude_validation) & np.isfinite(dist))
        srcs.append(s + offset)
        dsts.append(t + offset)
        dst_list.append(float(dt[s]))
        offset += sg.n
    adj = sp.csr_matrix((np.concatenate(kms), (np.concatenate(rows), np.concatenate(cols))), shape=(offset, offset))
    d_st = np.array(dst_list)
    max_hops = (4 * d_st).astype(int) + 24
    B = len(srcs)
    share = rng.uniform(0.0, ec.max_expert_share, B)
    follow = rng.random((passes, B, int(max_hops.max()) + 1)) < share[None, :, None]
    return Walks(adj.indptr, adj.indices, adj.data, torch.from_numpy(np.concatenate(pos)).float(),
                 np.concatenate(dts), np.concatenate(dss), np.array(srcs), np.array(dsts), d_st, max_hops,
                 expert=np.concatenate(expert), label_ok=np.concatenate(ok), follow=follow, passes=passes)


class MemoryTask:
    """The memory family as a TrainTask of citypath.training. A "path" in its bookkeeping is one query."""

    family = "memory"
    description = ("a GRU walker with an external memory it reads and writes by content (DNC style); "
                   "more steps = more walks planned in the same memory")

    def __init__(self, g: CityGraph, size: str, config: MemoryConfig, episodes: EpisodesConfig, cfg,
                 command: str = ""):
        self.g, self.size, self.config, self.episodes, self.cfg, self.command = g, size, config, episodes, cfg, command
        self.model_config = {**asdict(config), "episodes": asdict(episodes)}
        val_rng = np.random.default_rng([cfg.seed, 2])
        self._val = [{"episode": self.val_episode(val_rng)} for _ in range(4)]
        self._val_pairs = sample_pairs(g.n_cities, cfg.val_paths, np.random.default_rng([cfg.seed, 3]), heldout=False)

    def val_episode(self, rng: np.random.Generator):
        """A validation batch: the expert never followed, two walks."""
        return episode(self.g, rng, dataclasses.replace(self.episodes, max_expert_share=0.0), 2,
                       exclude_validation=self.cfg.exclude_validation)

    def build_model(self) -> MemoryNetTrain:
        return MemoryNetTrain(self.config)

    def batch(self, step: int, rank: int, world: int):
        rng = batch_rng(self.cfg.seed, step, rank)
        passes = int(rng.integers(1, self.episodes.max_passes + 1))
        walks = episode(self.g, rng, self.episodes, passes, exclude_validation=self.cfg.exclude_validation)
        return {"episode": walks}, self.episodes.queries_per_batch

    def val_batches(self):
        return self._val

    def val_pairs(self):
        return self._val_pairs

    def decode(self, model: MemoryNet, srcs, dsts) -> list[list[int]]:
        """Paths at max_steps on the default graph (the curves track the model's full budget)."""
        return decode_at_max_steps(MemoryModel, model, self.g, self.config.max_steps, srcs, dsts,
                                   count_parameters(model))

    def export(self, model: MemoryNet) -> dict[str, torch.Tensor]:
        return {k: v.detach().float().cpu().clone() for k, v in model.state_dict().items()}


def training_task(g: CityGraph, args):
    """Entry point for `python -m citypath train --model memory --size small`."""
    return task_from_args(g, args, "memory", SIZES, TRAIN_DEFAULTS, MemoryConfig, EpisodesConfig, MemoryTask)
