"""Training side of the GRU baseline (`citypath.models.gru`): SPD batches, validation decoding, export.

The loop itself is `citypath.training.train`; batches are a pure function of (seed, step, rank).
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict

import numpy as np
import torch

from citypath import cost
from citypath.graph import CityGraph
from citypath.models.gru import SIZES, GRUConfig, GRUNet, Tables, city_xy, decode, decode_setup_ops, hop_ops
from citypath.training import batch_rng, config_from_args, spd_training_split


def flat_candidates(indptr: np.ndarray, indices: np.ndarray, cur: np.ndarray, nxt: np.ndarray):
    """Every neighbour of every `cur`, flat: (cand ids, owner index, 1.0 where cand == nxt)."""
    start, deg = indptr[cur], indptr[cur + 1] - indptr[cur]
    owner = np.repeat(np.arange(len(cur)), deg)
    offset = np.arange(len(owner)) - np.repeat(np.cumsum(deg) - deg, deg)
    cand = indices[start[owner] + offset]
    return cand, owner, (cand == nxt[owner]).astype(np.float32)


def make_batch(paths: list[np.ndarray], adjacency, output: str) -> dict[str, torch.Tensor]:
    """Tensors for GRUNet.forward from a list of paths (each src..dst, at least 2 cities)."""
    paths = sorted(paths, key=len, reverse=True)
    lengths = np.array([len(p) for p in paths])
    padded = np.zeros((len(paths), lengths.max()), dtype=np.int64)
    for i, p in enumerate(paths):
        padded[i, :len(p)] = p
    batch = {"paths": torch.from_numpy(padded), "lengths": torch.from_numpy(lengths)}
    if output == "neighbors":
        # Packed (time-major) order of the predictions, as pack_padded_sequence lays them out.
        hops = lengths - 1
        t_idx, b_idx = np.nonzero(np.arange(hops.max())[:, None] < hops[None, :])
        cur, nxt = padded[b_idx, t_idx], padded[b_idx, t_idx + 1]
        cand, owner, target = flat_candidates(adjacency.indptr, adjacency.indices, cur, nxt)
        batch.update(cand=torch.from_numpy(cand.astype(np.int64)), cand_owner=torch.from_numpy(owner),
                     cand_target=torch.from_numpy(target))
    else:
        empty = torch.zeros(0, dtype=torch.int64)
        batch.update(cand=empty, cand_owner=empty, cand_target=torch.zeros(0))
    return batch


TRAIN_DEFAULTS = {
    # Budgets in paths, so the card's command reproduces its weights on any machine (the clock is only a
    # cap that does not bind): ~32 and ~46 minutes on an idle 2-core CPU, SPD build and card metrics
    # included (docs/models.md). gru-large costs ~5x the FLOPs per prediction, so it sees fewer paths.
    "small": dict(lr=3e-3, batch_paths=128, total_paths=450_000, max_minutes=600.0, epoch_paths=50_000),
    "large": dict(lr=2e-3, batch_paths=128, total_paths=250_000, max_minutes=600.0, epoch_paths=25_000),
    # The sweep's sizes (experiments/tradeoff.py sets one path budget for every size with --paths): the learning
    # rates of the shipped sizes, 3e-3 up to ~1M parameters and 2e-3 above.
    "tiny": dict(lr=3e-3, batch_paths=128, total_paths=100_000, max_minutes=600.0, epoch_paths=20_000),
    "mini": dict(lr=3e-3, batch_paths=128, total_paths=100_000, max_minutes=600.0, epoch_paths=20_000),
    "xl": dict(lr=2e-3, batch_paths=128, total_paths=100_000, max_minutes=600.0, epoch_paths=20_000),
}


class GRUTask:
    """The GRU's side of citypath.training: SPD batches, validation decoding, export."""

    family = "gru"
    decode_fields = ("temperature", "max_hops", "no_revisit")

    def __init__(self, g: CityGraph, size: str, config: GRUConfig, cfg, command: str = ""):
        self.g, self.size, self.config, self.cfg, self.command = g, size, config, cfg, command
        self.ds, self.train_index, self.val_index = spd_training_split(g, cfg)
        self.model_config = asdict(config)

    def build_model(self) -> GRUNet:
        return GRUNet(self.config, city_xy(self.g.lat, self.g.lon))

    def _paths(self, index) -> list[np.ndarray]:
        paths = [np.asarray(self.ds[int(i)], dtype=np.int64) for i in index]
        return [p[: self.config.max_hops + 1] for p in paths if len(p) >= 2]

    def batch(self, step: int, rank: int, world: int):
        rng = batch_rng(self.cfg.seed, step, rank)
        index = self.train_index[rng.integers(0, len(self.train_index), self.cfg.batch_paths)]
        paths = self._paths(index)
        return make_batch(paths, self.g.adjacency, self.config.output), len(paths)

    def train_flops(self, batch: dict[str, torch.Tensor]) -> float:
        """Operations of one teacher-forced batch by the decoding convention (`citypath.models.gru`): the whole token
        table once, each path's initial state (`decode_setup_ops` without the revisit mask), each prediction's hop
        over its real candidate count, then a softmax cross-entropy term per candidate; x3 (backward ~ 2x forward)."""
        c = self.config
        n_paths = len(batch["lengths"])
        # The token table: Fourier features (sin, cos of each frequency and coordinate), their projection, the add.
        table = cost.matmul(c.n_cities, 2 + 4 * c.fourier_freqs, c.embed_dim)
        table += c.n_cities * (c.embed_dim + 12 * c.fourier_freqs)
        setup = decode_setup_ops(dataclasses.replace(c, no_revisit=False), n_paths)
        if c.output == "neighbors":
            widths, counts = np.unique(np.bincount(batch["cand_owner"].cpu().numpy()), return_counts=True)
            hops = sum(int(k) * hop_ops(c, int(w), False) for w, k in zip(widths, counts))
            hops += cost.SOFTMAX_OPS * len(batch["cand"])
        else:
            n_pred = int((batch["lengths"] - 1).sum())
            hops = n_pred * (hop_ops(c, c.n_cities, False) + cost.SOFTMAX_OPS * c.n_cities)
        return 3.0 * (table + setup + hops)

    def val_batches(self):
        paths = self._paths(self.val_index)
        return [make_batch(paths[i:i + 64], self.g.adjacency, self.config.output) for i in range(0, len(paths), 64)]

    def val_pairs(self):
        return np.asarray(self.ds.src[self.val_index]), np.asarray(self.ds.dst[self.val_index])

    def decode(self, model: GRUNet, srcs, dsts) -> list[list[int]]:
        adj = self.g.adjacency
        with torch.inference_mode():
            tables = Tables(tokens=model.tokens().detach(), bias=model.bias.detach())
            return [decode(model, tables, adj.indptr, adj.indices, int(s), int(t), 1, greedy=True)[0]
                    if s != t else [int(s)] for s, t in zip(srcs, dsts)]

    def export(self, model: GRUNet) -> dict[str, torch.Tensor]:
        # fp16 halves the file; coordinates stay fp32 (fp16 would round them to ~2 km).
        return {k: (v.detach().float() if k == "xy" else v.detach().half()).cpu()
                for k, v in model.state_dict().items()}


def training_task(g: CityGraph, args):
    """Entry point for `python -m citypath train --model gru --size {small,large}` (see citypath.training)."""
    size = args.size or "small"
    if size not in SIZES:
        raise ValueError(f"--size {size!r}: the GRU comes in {', '.join(SIZES)}")
    cfg, model_overrides = config_from_args(f"gru-{size}", TRAIN_DEFAULTS[size], args)
    config = GRUConfig(n_cities=g.n_cities, **{**SIZES[size], **model_overrides})
    return GRUTask(g, size, config, cfg, command=getattr(args, "command_line", "")), cfg
