"""Training side of the refiner (`citypath.models.refiner`): on-policy walks (DAgger), progressive refinement.

The loop itself is `citypath.training.train`.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import torch
from torch import nn

from citypath.graph import CityGraph
from citypath.metrics import verifier
from citypath.models.refiner import (
    SIZES,
    GraphTables,
    NumpyScorer,
    RefinerConfig,
    Scorer,
    WalkRecord,
    draft_path,
    gc_km,
    graph_tables,
    refine_batch,
    walk,
)
from citypath.split import sample_pairs, train_mask
from citypath.training import batch_rng, config_from_args

TRAIN_DEFAULTS = {
    # Budgets in paths (refiner-small: 19 minutes on the shared 2-core CPU). The clock is only a safety cap,
    # 600 minutes as in the other families; it was 45 (10 for tiny) and never drove a shipped run's schedule.
    "small": dict(lr=3e-3, weight_decay=1e-4, warmup_steps=50, batch_paths=48, total_paths=60_000,
                  max_minutes=600.0, epoch_paths=4_800, val_paths=100, steps_for_card=(1, 2, 4, 8)),
    "medium": dict(lr=2e-3, weight_decay=1e-4, warmup_steps=50, batch_paths=48, total_paths=60_000,
                   max_minutes=600.0, epoch_paths=4_800, val_paths=100, steps_for_card=(1, 2, 4, 8)),
    "tiny": dict(lr=3e-3, weight_decay=1e-4, warmup_steps=20, batch_paths=32, total_paths=20_000,
                 max_minutes=600.0, epoch_paths=2_000, val_paths=50, steps_for_card=(1, 2, 4, 8)),
}


class RefinerNet(nn.Module):
    """The scorer plus its training loss: cross-entropy against the soft regret targets."""

    def __init__(self, config: RefinerConfig):
        super().__init__()
        self.scorer = Scorer(config)

    def forward(self, cand: torch.Tensor, ctx: torch.Tensor, mask: torch.Tensor,
                target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.scorer(cand, ctx).masked_fill(~mask, -1e9)
        loss = -(target * torch.log_softmax(logits, dim=1)).sum()
        return loss, torch.tensor(float(len(cand)))


class _PairSource:
    """Training pairs (never held-out ones, nor validation ones with `exclude_validation`) with exact
    distance-to-target arrays, one Dijkstra per target."""

    def __init__(self, g: CityGraph, rng: np.random.Generator, per_target: int, exclude_validation: bool = False):
        self.g, self.rng, self.per_target, self.exclude_validation = g, rng, per_target, exclude_validation
        self.queue: list[tuple[int, int, np.ndarray]] = []

    def next(self) -> tuple[int, int, np.ndarray]:
        while not self.queue:
            n = self.g.n_cities
            dst = int(self.rng.integers(n))
            dist, _ = self.g._distances_from(dst)   # not the LRU-cached one: targets rarely repeat
            srcs = self.rng.integers(0, n, size=self.per_target * 2)
            ok = train_mask(srcs, np.full_like(srcs, dst), exclude_validation=self.exclude_validation)
            srcs = srcs[(srcs != dst) & ok][:self.per_target]
            self.queue += [(int(s), dst, dist.astype(np.float32)) for s in srcs]
        return self.queue.pop()


def decision_targets(t: GraphTables, rec: WalkRecord, dist_rows: np.ndarray, tau_km: float) -> dict[str, torch.Tensor]:
    """Stack a walk's decisions with their soft targets: q(n) ∝ exp(-regret(n) / tau), regret in km.

    regret(n) = hop(cur, n) + dist(n, dst) - dist(cur, dst): how much longer the best route
    through n is than the best route from here. Near ties (common on a dense geometric graph)
    share the target mass instead of one being picked arbitrarily.
    """
    cand, ctx = np.concatenate(rec.cand), np.concatenate(rec.ctx)
    mask, ids = np.concatenate(rec.mask), np.concatenate(rec.ids)
    cur, owner = np.concatenate(rec.cur), np.concatenate(rec.owner)
    hop = gc_km(t.xyz[ids], t.xyz[cur][:, None, :])
    regret = np.where(mask, hop + dist_rows[owner[:, None], ids] - dist_rows[owner, cur][:, None], np.inf)
    q = np.where(mask, np.exp(-(regret - regret.min(axis=1, keepdims=True)) / tau_km), 0.0)
    q /= q.sum(axis=1, keepdims=True)
    return {"cand": torch.from_numpy(cand), "ctx": torch.from_numpy(ctx), "mask": torch.from_numpy(mask),
            "target": torch.from_numpy(q.astype(np.float32))}


class RefinerTask:
    """The refiner's side of citypath.training: on-policy walks (DAgger), progressive refinement.

    A pool of `batch_paths` pairs is walked by the current model at every training step, each
    walk guided by the same pair's previous walk (the great-circle draft at first); after
    `max_steps` walks a pair is replaced by a fresh one, so every refinement depth 1..max_steps
    is trained equally often. Every decision of every walk is a training example. Expert moves
    (least regret) are mixed in early on so the first walks reach their targets.
    Batches depend on the model, so they are not a pure function of the step: a resumed run
    restarts the pool (the weights and optimiser resume exactly).
    """

    family = "refiner"

    def __init__(self, g: CityGraph, size: str, config: RefinerConfig, cfg, command: str = ""):
        self.g, self.size, self.config, self.cfg = g, size, config, cfg
        self.command = command or f"python -m citypath train --model refiner --size {size}"
        self.t = graph_tables(g, config)
        self.model_config = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}
        self.total_steps = max(1, cfg.total_paths // cfg.batch_paths)
        self.model: RefinerNet | None = None
        self.pool: list[list] | None = None
        self._val: tuple[np.ndarray, np.ndarray] | None = None
        self._val_batches: list[dict[str, torch.Tensor]] | None = None

    def build_model(self) -> RefinerNet:
        self.model = RefinerNet(self.config)
        return self.model

    def _fill_pool(self, rng: np.random.Generator) -> None:
        self.pairs = _PairSource(self.g, rng, self.config.sources_per_target, self.cfg.exclude_validation)
        self.rng = rng
        self.pool = []
        for _ in range(self.cfg.batch_paths):
            s, d, dist = self.pairs.next()
            # staggered depths, so the pool is a mix of refinement steps from the start
            self.pool.append([s, d, dist, draft_path(self.t, s, d), int(rng.integers(self.config.max_steps))])

    def batch(self, step: int, rank: int, world: int) -> tuple[dict[str, torch.Tensor], int]:
        if self.pool is None:
            self._fill_pool(batch_rng(self.cfg.seed, step, rank))
        pool, t, rng = self.pool, self.t, self.rng
        dist_rows = np.stack([p[2] for p in pool])
        beta = max(0.0, 1.0 - step / max(1.0, self.config.expert_fraction * self.total_steps))
        rec = WalkRecord()

        def expert(j: int) -> tuple[np.ndarray, np.ndarray]:
            owner, ids = rec.owner[j], rec.ids[j]
            hop = gc_km(t.xyz[ids], t.xyz[rec.cur[j]][:, None, :])
            cost = np.where(rec.mask[j], hop + dist_rows[owner[:, None], ids], np.inf)
            return cost.argmin(axis=1), rng.random(len(owner)) < beta

        with torch.no_grad():
            score = NumpyScorer(self.model.scorer)
        paths = walk(t, self.config, score, np.array([p[0] for p in pool]), np.array([p[1] for p in pool]),
                     [p[3] for p in pool], record=rec, expert=expert if beta > 0 else None)
        batch = decision_targets(t, rec, dist_rows, self.config.tau_km)
        for p, path in zip(pool, paths):   # each path is its pair's next guide
            p[3] = path if path[-1] == p[1] else np.r_[path, p[1]]
            p[4] += 1
            if p[4] >= self.config.max_steps:
                s, d, dist = self.pairs.next()
                p[:] = [s, d, dist, draft_path(t, s, d), 0]
        return batch, len(pool)

    def val_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        if self._val is None:   # training-side pairs, drawn apart from the training stream
            self._val = sample_pairs(self.g.n_cities, self.cfg.val_paths, np.random.default_rng([self.cfg.seed, 777]),
                                     heldout=False)
        return self._val

    def val_batches(self) -> list[dict[str, torch.Tensor]]:
        """Decisions along expert walks of the validation pairs, guided by their drafts (fixed)."""
        if self._val_batches is None:
            srcs, dsts = self.val_pairs()
            dist_rows = np.stack([self.g._distances_from(int(d))[0].astype(np.float32) for d in dsts])
            rec = WalkRecord()

            def cost(cand: np.ndarray, ctx: np.ndarray) -> np.ndarray:
                j = len(rec.cand) - 1
                hop = gc_km(self.t.xyz[rec.ids[j]], self.t.xyz[rec.cur[j]][:, None, :])
                return -(hop + dist_rows[rec.owner[j][:, None], rec.ids[j]])

            walk(self.t, self.config, cost, srcs, dsts, [draft_path(self.t, int(s), int(d)) for s, d in
                                                          zip(srcs, dsts)], record=rec)
            self._val_batches = [decision_targets(self.t, rec, dist_rows, self.config.tau_km)]
        return self._val_batches

    def decode(self, model: RefinerNet, srcs, dsts) -> list[list[int]]:
        with torch.no_grad():
            score = NumpyScorer(model.scorer)
        return [r[0] for r in refine_batch(self.t, self.config, score, srcs, dsts, 1, verify=verifier(self.g))]

    def export(self, model: RefinerNet) -> dict[str, torch.Tensor]:
        return {k: v.detach().float().cpu() for k, v in model.scorer.state_dict().items()}


def training_task(g: CityGraph, args):
    """Entry point for `python -m citypath train --model refiner --size {small,medium,tiny}` (see citypath.training)."""
    size = args.size or "small"
    if size not in SIZES:
        raise ValueError(f"--size {size!r}: the refiner comes in {', '.join(SIZES)}")
    cfg, model_overrides = config_from_args(f"refiner-{size}", TRAIN_DEFAULTS[size], args)
    for k in ("reach_hops", "lookahead"):
        if k in model_overrides:
            model_overrides[k] = tuple(model_overrides[k])
    config = RefinerConfig(**{**SIZES[size], **model_overrides})
    cfg.steps_for_card = tuple(sorted({*cfg.steps_for_card, config.max_steps}))
    return RefinerTask(g, size, config, cfg, command=getattr(args, "command_line", "")), cfg
