"""Training side of the post's RNN (`citypath.models.postrnn`): SPD batches, validation, export.

The loop itself is `citypath.training.train`. Batches are a pure function of (seed, step, rank),
so a resumed run is identical. With `train_negatives > 0` the softmax is sampled in training
only (the negatives are drawn per batch, shared by its predictions); validation NLL is always
the full softmax over every city, the number the post's 0.3-0.4 is compared with.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import torch

from citypath.graph import CityGraph
from citypath.models.postrnn import SIZES, PostRNN, PostRNNConfig, decode, hop_cap
from citypath.training import batch_rng, config_from_args, spd_training_split

TRAIN_DEFAULTS = {
    # Path budgets, never a clock: each fits in well under 60 minutes on the 2-core CPU (docs/models.md).
    # Measured here: 857 paths/s (small) and 288 paths/s (large) with the sampled softmax, against
    # 96 paths/s for small with the full softmax (9x slower, and at equal time its NLL is far worse).
    "small": dict(lr=3e-3, batch_paths=128, total_paths=1_000_000, max_minutes=600.0, epoch_paths=50_000,
                  warmup_steps=200, val_paths=200, card_pairs=200),
    "large": dict(lr=2e-3, batch_paths=128, total_paths=500_000, max_minutes=600.0, epoch_paths=50_000,
                  warmup_steps=200, val_paths=200, card_pairs=200),
}
NEGATIVES = {"small": 2048, "large": 2048}


def token_batch(paths: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """[src, dst, path...] rows, right-padded with 0, and their mask."""
    width = max(len(p) for p in paths) + 2
    tokens = np.zeros((len(paths), width), np.int64)
    mask = np.zeros((len(paths), width), bool)
    for i, p in enumerate(paths):
        tokens[i, 0], tokens[i, 1], tokens[i, 2:len(p) + 2] = p[0], p[-1], p
        mask[i, :len(p) + 2] = True
    return torch.from_numpy(tokens), torch.from_numpy(mask)


class PostRNNTask:
    """The post's RNN as a TrainTask of citypath.training."""

    family = "postrnn"
    description = ("the post's RNN, full-vocabulary softmax: tokens are cities (no coordinates), no neighbour "
                   "mask, no revisit rule, no edge features; greedy, then best-of-N samples")
    decode_fields = ("temperature", "max_hops")
    flush_denormal = True

    def __init__(self, g: CityGraph, size: str, config: PostRNNConfig, cfg, command: str = ""):
        self.g, self.size, self.config, self.cfg, self.command = g, size, config, cfg, command
        self.ds, self.train_index, self.val_index = spd_training_split(g, cfg)
        self.model_config = asdict(config)

    def build_model(self) -> PostRNN:
        return PostRNN(self.config)

    def _paths(self, index) -> list[np.ndarray]:
        paths = [np.asarray(self.ds[int(i)], dtype=np.int64) for i in index]
        return [p[: self.config.max_hops + 1] for p in paths if len(p) >= 2]

    def batch(self, step: int, rank: int, world: int):
        return self.draw(batch_rng(self.cfg.seed, step, rank))

    def draw(self, rng: np.random.Generator) -> tuple[dict[str, torch.Tensor], int]:
        """A training batch from `rng`: paths drawn from the train split, then the shared negatives."""
        paths = self._paths(self.train_index[rng.integers(0, len(self.train_index), self.cfg.batch_paths)])
        tokens, mask = token_batch(paths)
        k = self.config.train_negatives
        negatives = torch.from_numpy(rng.integers(0, self.config.n_cities, k)) if k else \
            torch.zeros(0, dtype=torch.int64)
        return {"tokens": tokens, "mask": mask, "negatives": negatives}, len(paths)

    def val_batches(self):
        paths = self._paths(self.val_index)
        empty = torch.zeros(0, dtype=torch.int64)
        return [dict(zip(("tokens", "mask"), token_batch(paths[i:i + 64])), negatives=empty)
                for i in range(0, len(paths), 64)]

    def val_pairs(self):
        return np.asarray(self.ds.src[self.val_index]), np.asarray(self.ds.dst[self.val_index])

    def decode(self, model: PostRNN, srcs, dsts) -> list[list[int]]:
        caps = [hop_cap(self.g, int(s), int(t), self.config.max_hops) for s, t in zip(srcs, dsts)]
        with torch.inference_mode():
            return decode(model, np.asarray(srcs), np.asarray(dsts), greedy=True, hop_caps=caps)

    def export(self, model: PostRNN) -> dict[str, torch.Tensor]:
        # fp16 halves the file (post-rnn-large would not fit in 25 MB as fp32).
        return {k: v.detach().half().cpu() for k, v in model.state_dict().items()}


def training_task(g: CityGraph, args):
    """Entry point for `python -m citypath train --model postrnn --size {small,large}`."""
    size = args.size or "small"
    if size not in SIZES:
        raise ValueError(f"--size {size!r}: the post's RNN comes in {', '.join(SIZES)}")
    cfg, overrides = config_from_args(f"post-rnn-{size}", TRAIN_DEFAULTS[size], args)
    config = PostRNNConfig(n_cities=g.n_cities, **{**SIZES[size], "train_negatives": NEGATIVES[size], **overrides})
    return PostRNNTask(g, size, config, cfg, command=getattr(args, "command_line", "")), cfg
