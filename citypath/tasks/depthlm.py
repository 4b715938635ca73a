"""Training side of the depth-recurrent LM (`citypath.models.depthlm`): SPD batches with a loop count drawn per
batch, validation, export.

The loop itself is `citypath.training.train`. Batches (paths, negatives and the batch's loop count) are a pure
function of (seed, step, rank), so a resumed run is identical. Validation NLL is the full softmax over every
city at the training mean's loops; validation paths are greedy at that many loops.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import torch

from citypath.graph import CityGraph
from citypath.models.depthlm import SIZES, DepthLM, DepthLMConfig, city_xy_km, decode, sample_loops
from citypath.models.postrnn import hop_cap
from citypath.tasks.postrnn import PostRNNTask
from citypath.training import batch_rng, config_from_args

TRAIN_DEFAULTS = {
    # Path budgets, never a clock: each fits in under 60 minutes on the 2-core CPU (docs/models.md).
    "small": dict(lr=2e-3, batch_paths=64, total_paths=200_000, max_minutes=600.0, epoch_paths=25_000,
                  warmup_steps=200, val_paths=200, card_pairs=100, steps_for_card=(1, 2, 4, 6, 8, 10)),
    "large": dict(lr=1e-3, batch_paths=64, total_paths=90_000, max_minutes=600.0, epoch_paths=18_000,
                  warmup_steps=200, val_paths=200, card_pairs=50, steps_for_card=(1, 2, 4, 6, 8, 10)),
}
UNLOOPED = dict(loops_mean=1.0, loops_max=1, backprop_loops=1, test_time="samples", sample_loops=1)


def local_sets(g: CityGraph, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per city, itself and its k - 1 nearest graph neighbours ((n, k) ids, -1 padding) and the planar km to the
    farthest of them (the training loss sums these cities' scores exactly; `DepthLM.forward`)."""
    xy = city_xy_km(g.lat, g.lon)
    ids = np.full((g.n_cities, k), -1, np.int64)
    km = np.zeros(g.n_cities, np.float32)
    indptr, indices = g.adjacency.indptr, g.adjacency.indices
    for c in range(g.n_cities):
        nb = indices[indptr[c]:indptr[c + 1]]
        d = np.sqrt(((xy[nb] - xy[c]) ** 2).sum(axis=1))
        order = np.argsort(d, kind="stable")[: k - 1]
        ids[c, 0], ids[c, 1:len(order) + 1] = c, nb[order]
        km[c] = d[order[-1]] if len(order) else 0.0
    return torch.from_numpy(ids), torch.from_numpy(km)


def describe(c: DepthLMConfig) -> str:
    """The card's description: what the model sees beyond the post RNN's tokens, and how it spends compute."""
    looped = c.loops_mean > 1
    return ("a causal transformer LM over city tokens (the post RNN's tokens and full-vocabulary softmax; no "
            "neighbour mask, no revisit rule). Beyond the post RNN's inputs: each city's vector adds a projection "
            "of its coordinates and their Fourier features (input and tied output)"
            + ("; the scores add a place term, a Gaussian around a point the network aims at (the current city "
               "plus a predicted offset)" if c.place else "")
            + ("; every position's input adds a projection of the target's coordinate features"
               if c.target_input else "")
            + "; learned positions. "
            + (f"Depth-recurrent: prelude, a {c.core_layers}-layer core looped r times (r drawn per batch, mean "
               f"{c.loops_mean:g}) with input injection, coda; test-time compute = loops per token"
               if looped else "Unlooped control (r = 1 in training and test, the same parameters); test-time "
               "compute = best-of-N samples"))


class DepthLMTask(PostRNNTask):
    """The depth-recurrent LM (or, with --unlooped, its r = 1 control) as a TrainTask of citypath.training: the
    post RNN's data and batches, plus a loop count per batch and each position's local cities."""

    family = "depthlm"
    decode_fields = ("temperature", "max_hops", "loop_schedule", "test_time", "sample_loops")

    def __init__(self, g: CityGraph, size: str, config: DepthLMConfig, cfg, command: str = ""):
        super().__init__(g, size, config, cfg, command)
        self.local = local_sets(g, config.train_local) if config.train_local else None
        self.description = describe(config)

    def build_model(self) -> DepthLM:
        return DepthLM(self.config, city_xy_km(self.g.lat, self.g.lon))

    def batch(self, step: int, rank: int, world: int):
        rng = batch_rng(self.cfg.seed, step, rank)
        batch, n_paths = self.draw(rng)
        batch["loops"] = torch.tensor(sample_loops(rng, self.config))     # drawn after the paths and negatives
        if self.config.train_local:
            ids, km = self.local
            batch |= {"local": ids[batch["tokens"][:, :-1]], "local_km": km[batch["tokens"][:, :-1]]}
        return batch, n_paths

    def val_loops(self) -> int:
        return max(1, round(self.config.loops_mean))

    def val_batches(self):
        loops = torch.tensor(self.val_loops())
        return [{**b, "loops": loops} for b in super().val_batches()]

    def decode(self, model: DepthLM, srcs, dsts) -> list[list[int]]:
        caps = [hop_cap(self.g, int(s), int(t), self.config.max_hops) for s, t in zip(srcs, dsts)]
        with torch.inference_mode():
            return decode(model, np.asarray(srcs), np.asarray(dsts), loops=self.val_loops(), hop_caps=caps)

    def export(self, model: DepthLM) -> dict[str, torch.Tensor]:
        # fp16 halves the file; the coordinate features stay fp32 (they are inputs, not weights).
        return {k: (v if k == "features" else v.half()).detach().cpu() for k, v in model.state_dict().items()}


def training_task(g: CityGraph, args):
    """Entry point for `python -m citypath train --model depthlm --size {small,large} [--set unlooped=true]`."""
    size = args.size or "small"
    if size not in SIZES:
        raise ValueError(f"--size {size!r}: the depth-recurrent LM comes in {', '.join(SIZES)}")
    cfg, overrides = config_from_args(f"depth-lm-{size}", TRAIN_DEFAULTS[size], args)
    unlooped = bool(overrides.pop("unlooped", False))
    if unlooped and not getattr(args, "name", None):
        cfg = type(cfg)(**{**asdict(cfg), "name": f"depth-lm-{size}-unlooped"})
    config = DepthLMConfig(n_cities=g.n_cities, **{**SIZES[size], **(UNLOOPED if unlooped else {}), **overrides})
    return DepthLMTask(g, size, config, cfg, command=getattr(args, "command_line", "")), cfg
