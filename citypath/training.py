"""Training infrastructure shared by every model family: one loop, resumable, DDP-ready.

A family plugs in by providing a `TrainTask` (see the Protocol below) from a function
`training_task(g, args) -> TrainTask` in `citypath/tasks/<family>.py`, named in `citypath.registry`.
This module then does the rest, identically for every family:

- seeding, and batches that are a pure function of (seed, step, rank), so a resumed run
  sees exactly the batches it would have seen;
- AdamW with warm-up and cosine decay over a budget of paths, never of time, so a card's command
  reproduces its weights on any machine; `max_minutes` is only a safety stop, and a run it stops
  says so on its card (`stopped_by: "clock"`: not reproducible by its command);
- training pairs never held out, and (`exclude_validation`, the default since the validation
  split existed) never validation pairs (`citypath.split`);
- a training state `runs/<name>/state.safetensors` (weights, optimiser, curves; no pickle),
  written atomically every few minutes, at every epoch and on Ctrl-C / SIGTERM; a rerun of
  the same command resumes from it;
- per-epoch curves of training loss, validation loss and path metrics (`evaluate_paths` on a
  fixed validation subset of the train split that is never trained on);
- DistributedDataParallel when started by `torchrun` (gloo on CPU, nccl on GPUs);
- a progress bar with loss and tokens/s;
- at the end, `checkpoints/<name>.safetensors` and its card (schema in docs/evaluation.md), with metrics
  measured by the evaluation harness through the routing protocol.

    python -m citypath train --model gru --size small          # resumes if interrupted
    torchrun --nproc_per_node 2 -m citypath train --model gru --size small
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import math
import os
import platform
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from citypath.cache import staged_files, write_error
from citypath.graph import CityGraph

RUNS_DIR = Path("runs")
STATE_FILE = "state.safetensors"
# What a card's training "flops" is, for the tasks that count it (`train_flops(batch)`, the train/test-compute
# trade-off of experiments/tradeoff.py): the forward pass's operations by `citypath.cost`'s one convention,
# tripled where gradients flow (backward ~ 2x forward), summed over every batch the run saw.
TRAIN_FLOPS_NOTE = ("forward operations by citypath.cost's convention, x3 where gradients flow (backward ~2x "
                    "forward), summed over every training batch")


@dataclass
class TrainConfig:
    """How long and how hard to train; families supply defaults, the CLI overrides them."""

    name: str
    seed: int = 0
    lr: float = 3e-3
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.0
    warmup_steps: int = 200
    batch_paths: int = 64            # paths per optimiser step, per process
    total_paths: int = 1_000_000     # budget of training paths (all processes together)
    max_minutes: float = 55.0        # wall-clock safety stop only: never shapes the schedule; a run it stops
                                     # early is marked on its card as not reproducible by its command
    epoch_paths: int = 50_000        # a curve point (validation) every this many paths
    val_paths: int = 300             # fixed validation subset (held back from training)
    save_every_s: float = 120.0
    grad_clip: float = 1.0
    ema_decay: float = 0.0           # > 0: validate and ship an exponential moving average of the weights
                                     # (torch.optim.swa_utils.AveragedModel), updated every optimiser step
    threads: int | None = 1          # torch threads per process; 1 because on a shared 2-core machine
                                     # 2 threads ran 10x slower (OpenMP spin-waits on a busy core)
    spd_paths: int | None = None     # SPD size (default: the default SPDConfig's 2,000,000)
    steps_for_card: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    card_pairs: int = 200            # held-out pairs the card's metrics are measured on
    checkpoints_dir: str | None = None
    runs_dir: str | None = None
    progress: bool = True
    extra: dict = field(default_factory=dict)
    exclude_validation: bool = True  # never train on validation pairs (citypath.split); False reproduces runs
                                     # made before the validation split (`--keep-validation-pairs`)


class TrainTask(Protocol):
    """What a model family provides to be trained by `train`."""

    family: str
    size: str
    model_config: dict               # stored in the card as "config"; enough to rebuild the model
    # Optional: `decode_fields`, names in model_config that only affect decoding and may change
    # when a finished run is resumed to re-export its checkpoint.
    command: str                     # the documented command that reproduces the run

    def build_model(self) -> torch.nn.Module:
        """A fresh module whose forward(**batch) returns (summed loss, number of predictions)."""

    def batch(self, step: int, rank: int, world: int) -> tuple[dict[str, torch.Tensor], int]:
        """Training batch `step` of process `rank`: (forward kwargs, number of paths); pure in (seed, step, rank)."""

    def val_batches(self) -> list[dict[str, torch.Tensor]]:
        """Teacher-forced batches of the fixed validation subset (for val_loss)."""

    def val_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(srcs, dsts) of the validation subset."""

    def decode(self, model: torch.nn.Module, srcs: np.ndarray, dsts: np.ndarray) -> list[list[int]]:
        """The model's one-pass (step 1) paths for these pairs."""

    def export(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """Tensors to store in the shipped safetensors file (fp16 where precision allows)."""


# -- small helpers ----------------------------------------------------------------------------

def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def decode_at_max_steps(model_class, net: torch.nn.Module, g, max_steps: int, srcs, dsts,
                        num_parameters: int) -> list[list[int]]:
    """Each pair's path after `max_steps` steps of `model_class` wrapping the live training module `net`
    (the curves of families whose answer improves with steps track the full budget); `net` is put
    back in training mode afterwards."""
    m = model_class("training", {"num_parameters": num_parameters, "max_steps": max_steps,
                                 "graph": {"fingerprint": g.fingerprint}}, net)
    try:
        return [list(m.refine(g, int(s), int(t), max_steps))[-1] for s, t in zip(srcs, dsts)]
    finally:
        net.train()


def batch_rng(seed: int, step: int, rank: int = 0) -> np.random.Generator:
    """The random stream of one batch: a pure function of (seed, step, rank), so resuming is exact."""
    return np.random.default_rng([seed, step, rank])


def spd_training_split(g: CityGraph, cfg: TrainConfig) -> tuple[Any, np.ndarray, np.ndarray]:
    """The SPD's train split for a sequence family: (dataset, indices trained on, validation indices).

    The last `val_paths` paths are the family's validation subset (never trained on); training draws
    from the rest, less the paths between validation pairs of `citypath.split` unless
    `cfg.exclude_validation` is off (the SPD's train split holds every pair that is not held out).
    The subset's paths share a few source cities (the SPD solves 256 targets per source), so they
    are a narrow sample: held-out figures come from the harness.
    """
    from citypath.spd import SPDConfig, load_spd
    from citypath.split import train_mask

    spd = SPDConfig(n_paths=cfg.spd_paths) if cfg.spd_paths else SPDConfig()
    ds = load_spd(g, "train", spd, progress=cfg.progress)
    n = len(ds)
    if n <= cfg.val_paths:
        raise ValueError(f"the SPD train split has {n} paths, not more than val_paths={cfg.val_paths}")
    n_train = n - cfg.val_paths
    train_index = np.arange(n_train)
    if cfg.exclude_validation:
        train_index = train_index[train_mask(ds.src[:n_train], ds.dst[:n_train])]
    return ds, train_index, np.arange(n_train, n)


def hardware() -> str:
    return f"{os.cpu_count()}-core {platform.machine()} CPU, torch {torch.__version__}"


def lr_at(cfg: TrainConfig, step: int, progress: float) -> float:
    """Linear warm-up over `warmup_steps`, then cosine decay to min_lr_ratio as progress goes 0 -> 1."""
    warm = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
    cos = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return cfg.lr * warm * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cos)


def path_metrics(g: CityGraph, paths: list, srcs, dsts, prefix: str = "") -> dict[str, float]:
    """The curve metrics of a set of paths (rates over all paths; length ratio over valid ones)."""
    from citypath.metrics import evaluate_paths

    df = evaluate_paths(g, paths, list(map(int, srcs)), list(map(int, dsts)))
    valid = df[df["valid"]]
    return {
        f"{prefix}valid": float(df["valid"].mean()),
        f"{prefix}reaches_target": float(df["reaches_target"].mean()),
        f"{prefix}illegal_jump_rate": float((df["illegal_jumps"] > 0).mean()),
        f"{prefix}length_ratio": float(valid["length_ratio"].mean()) if len(valid) else None,
        f"{prefix}exact_match": float(df["exact_match"].mean()),
        f"{prefix}bounded": float(df["bounded"].mean()),
        f"{prefix}passes_three_checks": float(df["passes_three_checks"].mean()),
        f"{prefix}illegal_hop_rate": float(df["illegal_jumps"].sum() / max(int(df["hops"].sum()), 1)),
    }


# -- distributed ------------------------------------------------------------------------------

@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Dist:
    """Join the process group torchrun set up (if any); one process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    from citypath import settings

    use_cuda = torch.cuda.is_available() and not settings.cpu_forced()
    dist.init_process_group("nccl" if use_cuda else "gloo")
    rank = dist.get_rank()
    device = torch.device("cpu")
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    return Dist(rank, dist.get_world_size(), device)


def _all_max(value: float, d: Dist) -> float:
    if d.world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


# -- the training state file ------------------------------------------------------------------

def save_state(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, meta: dict,
               ema: torch.nn.Module | None = None) -> None:
    """Weights, optimiser moments, the weights' moving average (if any) and progress in one safetensors
    file, replaced atomically."""
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v.detach().cpu().contiguous().clone() for k, v in ema.state_dict().items()})
    opt_state = opt.state_dict()
    scalars = {}
    for idx, st in opt_state["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v) and v.dim() > 0:
                tensors[f"opt.{idx}.{k}"] = v.detach().cpu().contiguous().clone()
            else:
                scalars[f"{idx}.{k}"] = float(v)
    meta = dict(meta, opt_scalars=scalars, opt_groups=opt_state["param_groups"])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(path, e) from e
    # A full disk or a kill while saving leaves the previous state whole (and no temp file).
    with staged_files(path) as (tmp,):
        save_file(tensors, str(tmp), metadata={"state": json.dumps(meta)})


def read_state_meta(path: Path) -> dict:
    """The progress metadata of a training state file, without loading its tensors."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return json.loads(f.metadata()["state"])


def load_state(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer,
               ema: torch.nn.Module | None = None) -> dict:
    """Restore what save_state wrote; returns its progress metadata."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["state"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    if ema is not None:
        averaged = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
        if not averaged:
            raise SystemExit(f"{path} was saved without a moving average of the weights; pass --fresh to start over")
        ema.load_state_dict(averaged)
    state: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    for k, v in meta.pop("opt_scalars").items():
        idx, name = k.split(".", 1)
        state.setdefault(int(idx), {})[name] = torch.tensor(v)
    opt.load_state_dict({"state": state, "param_groups": meta.pop("opt_groups")})
    return meta


# -- the loop -----------------------------------------------------------------------------------

def validate(task: TrainTask, model: torch.nn.Module, g: CityGraph) -> dict[str, float | None]:
    """Validation loss (teacher forced) and one-pass path metrics on the fixed validation subset."""
    model.eval()
    total, count = 0.0, 0.0
    with torch.no_grad():
        for b in task.val_batches():
            loss, n = model(**b)
            total, count = total + float(loss), count + float(n)
        srcs, dsts = task.val_pairs()
        paths = task.decode(model, srcs, dsts)
    model.train()
    return {"val_loss": total / max(count, 1.0), **path_metrics(g, paths, srcs, dsts, prefix="val_")}


def train(task: TrainTask, g: CityGraph, cfg: TrainConfig, *, fresh: bool = False) -> Path | None:
    """Train `task` to the end of its budget (resuming a saved state) and write its checkpoint.

    Returns the checkpoint's weights path on the main process, None on the others.
    """
    try:
        return _train(task, g, cfg, fresh=fresh)
    finally:
        # The process's float mode goes back to IEEE's: a task that flushed denormals to zero (below) must not
        # leave it set for what runs next in the same process (a harness, a test: hypothesis refuses to draw floats).
        torch.set_flush_denormal(False)


def _train(task: TrainTask, g: CityGraph, cfg: TrainConfig, *, fresh: bool = False) -> Path | None:
    d = init_distributed()
    threads = cfg.threads or max(1, (os.cpu_count() or 1) // d.world)  # 0 or None: share the cores out
    torch.set_num_threads(threads)
    # Denormal floats (tiny gradients and optimiser moments) slowed the post's RNN from ~850 to ~380
    # paths/s as training went on; a task may ask for them to be flushed to zero (older families did not,
    # and keep their bit-for-bit behaviour).
    torch.set_flush_denormal(bool(getattr(task, "flush_denormal", False)))
    seed_everything(cfg.seed)
    model = task.build_model().to(d.device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ema = torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True) \
        if cfg.ema_decay else None
    shipped = ema.module if ema is not None else model   # what is validated, exported and measured
    run_dir = Path(cfg.runs_dir or RUNS_DIR) / cfg.name
    state_path = run_dir / STATE_FILE
    if d.main:  # half-written states of a run killed while saving; the last whole state is state_path
        for stale in run_dir.glob(f".{STATE_FILE}.tmp-*"):
            stale.unlink(missing_ok=True)
    meta = {"step": 0, "paths_seen": 0, "tokens_seen": 0, "flops_seen": 0.0, "seconds": 0.0, "curves": [], "epoch": 0,
            "config": task.model_config, "seed": cfg.seed, "exclude_validation": cfg.exclude_validation}
    if state_path.exists() and not fresh:
        saved = read_state_meta(state_path)
        # Decoding-only settings (e.g. a sampling temperature) may change between runs; the rest may not.
        decode_only = set(getattr(task, "decode_fields", ()))
        same = {k: v for k, v in saved.get("config", {}).items() if k not in decode_only} == \
            {k: v for k, v in task.model_config.items() if k not in decode_only}
        if not same or saved.get("seed") != cfg.seed:
            raise SystemExit(f"{state_path} is a run with another config or seed; pass --fresh to start over")
        # States saved before the validation split existed trained on validation pairs.
        if saved.get("exclude_validation", False) != cfg.exclude_validation:
            kept = "trained on" if cfg.exclude_validation else "left out"
            raise SystemExit(f"{state_path} is a run that {kept} validation pairs; rerun with its "
                             "--keep-validation-pairs setting, or pass --fresh to start over")
        meta.update(load_state(state_path, model, opt, ema))
        meta["config"] = task.model_config
        # A state saved before training compute was counted: what it spent is unknown, so the card says none.
        if "flops_seen" not in saved:
            meta["flops_seen"] = None
        if d.main:
            print(f"resuming {cfg.name} at step {meta['step']} ({meta['paths_seen']:,} paths, "
                  f"{meta['seconds'] / 60:.1f} min)", file=sys.stderr)
    net = model
    if d.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model)
    n_params = sum(p.numel() for p in model.parameters())

    stop = {"signal": None}

    def on_signal(signum, frame):  # finish the step, save, exit cleanly
        stop["signal"] = signum

    old_handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)} \
        if threading_main() else {}
    t_start = time.perf_counter() - meta["seconds"]
    last_save = time.perf_counter()
    budget_s = cfg.max_minutes * 60

    def progress() -> float:
        # Paths only: the schedule, and so the weights, never depend on the machine's speed.
        return meta["paths_seen"] / cfg.total_paths

    def out_of_time() -> bool:
        # The clock is a safety stop only, agreed by every process (their clocks differ).
        return _all_max(time.perf_counter() - t_start, d) >= budget_s

    def snapshot():
        meta["seconds"] = time.perf_counter() - t_start
        if d.main:
            save_state(state_path, model, opt, meta, ema)

    try:
        bar = tqdm(total=cfg.total_paths, initial=min(meta["paths_seen"], cfg.total_paths), unit="path",
                   unit_scale=True, desc=cfg.name, disable=not (cfg.progress and d.main), dynamic_ncols=True)
        model.train()
        ema_loss, tok_rate, t_last = None, 0.0, time.perf_counter()
        p, clock_ran_out = progress(), out_of_time()
        counts_flops = hasattr(task, "train_flops")
        stopped_by = "budget"
        while p < 1.0 and not clock_ran_out:
            if stop["signal"] is not None:
                stopped_by = "signal"
                break
            batch, n_paths = task.batch(meta["step"], d.rank, d.world)
            batch = {k: v.to(d.device) for k, v in batch.items()}
            for group in opt.param_groups:
                group["lr"] = lr_at(cfg, meta["step"], p)
            loss_sum, count = net(**batch)
            loss = loss_sum / count.clamp_min(1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            if ema is not None:
                ema.update_parameters(model)
            meta["step"] += 1
            meta["paths_seen"] += n_paths * d.world
            meta["tokens_seen"] += int(count) * d.world
            if counts_flops and meta.get("flops_seen") is not None:
                meta["flops_seen"] += float(task.train_flops(batch)) * d.world
            now = time.perf_counter()
            tok_rate = 0.9 * tok_rate + 0.1 * (int(count) * d.world / max(now - t_last, 1e-9)) if tok_rate else \
                int(count) * d.world / max(now - t_last, 1e-9)
            t_last = now
            loss_value = loss.item()
            ema_loss = loss_value if ema_loss is None else 0.98 * ema_loss + 0.02 * loss_value
            bar.n = min(meta["paths_seen"], cfg.total_paths)
            bar.set_postfix(loss=f"{ema_loss:.3f}", tok_s=f"{tok_rate:,.0f}", lr=f"{lr_at(cfg, meta['step'], p):.1e}",
                            refresh=False)
            bar.update(0)
            p, clock_ran_out = progress(), out_of_time()
            epoch_due = meta["paths_seen"] // cfg.epoch_paths > meta["epoch"]
            if epoch_due or p >= 1.0 or clock_ran_out:
                meta["epoch"] = max(meta["epoch"] + 1, meta["paths_seen"] // cfg.epoch_paths)
                if d.main:
                    point = {"epoch": meta["epoch"], "step": meta["step"],
                             "seconds": round(time.perf_counter() - t_start, 1),
                             "paths_seen": meta["paths_seen"], "tokens_seen": meta["tokens_seen"],
                             "train_loss": round(ema_loss, 5), "lr": lr_at(cfg, meta["step"], p)}
                    point.update(validate(task, shipped, g))
                    meta["curves"].append(point)
                    bar.write(json.dumps(point))
                snapshot()
                last_save = time.perf_counter()
            elif time.perf_counter() - last_save > cfg.save_every_s:
                snapshot()
                last_save = time.perf_counter()
        bar.close()
        snapshot()
        if d.world > 1:
            dist.barrier()
    finally:  # also when saving fails (full disk): Ctrl-C must work again
        for s, h in old_handlers.items():
            signal.signal(s, h)
    if stopped_by == "signal":
        if d.main:
            print(f"interrupted: state saved to {state_path}; rerun the same command to resume", file=sys.stderr)
        if d.world > 1:
            dist.destroy_process_group()
        raise SystemExit(130)
    stopped_by = "paths" if meta["paths_seen"] >= cfg.total_paths else "clock"
    if stopped_by == "clock" and d.main:
        print(f"WARNING: {cfg.name} was stopped by the wall-clock safety cap (max_minutes={cfg.max_minutes:g}) "
              f"after {meta['paths_seen']:,} of {cfg.total_paths:,} paths: its weights depend on this machine's "
              "speed and its command does not reproduce them; raise --max-minutes and rerun to finish",
              file=sys.stderr)
    out = None
    if d.main:
        out = write_checkpoint(task, shipped, g, cfg, meta, n_params, stopped_by)
    if d.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return out


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def write_checkpoint(task: TrainTask, model: torch.nn.Module, g: CityGraph, cfg: TrainConfig, meta: dict,
                     n_params: int, stopped_by: str) -> Path:
    """Write the shipped safetensors + card, then measure the card's metrics through the protocol."""
    from safetensors.torch import save_file

    from citypath.models import checkpoints_dir, load_model
    from citypath.models.base import sha256_file, write_card

    out_dir = checkpoints_dir(cfg.checkpoints_dir)
    weights = out_dir / f"{cfg.name}.safetensors"
    card_path = out_dir / f"{cfg.name}.json"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(weights, e) from e
    card = {
        "name": cfg.name, "family": task.family, "size": task.size, "description": getattr(task, "description", ""),
        "num_parameters": n_params,
        "max_steps": max(cfg.steps_for_card), "config": task.model_config,
        "graph": {"fingerprint": g.fingerprint, "config": dataclasses.asdict(g.config)},
        "training": {"command": task.command, "seconds": round(meta["seconds"], 1), "hardware": hardware(),
                     "seed": cfg.seed, "paths_seen": meta["paths_seen"], "tokens_seen": meta["tokens_seen"],
                     "steps": meta["step"], "stopped_by": stopped_by,
                     **({"flops": meta.get("flops_seen"), "flops_note": TRAIN_FLOPS_NOTE}
                        if hasattr(task, "train_flops") else {}),
                     "train_config": {k: v for k, v in dataclasses.asdict(cfg).items()
                                      if k not in ("checkpoints_dir", "runs_dir", "progress")}},
        "curves": meta["curves"],
        "metrics": None,
    }
    from citypath.registry import ANATOMY

    if task.family in ANATOMY:      # who decides the route: learned, hand-written, shortcut (one table)
        card["anatomy"] = dataclasses.asdict(ANATOMY[task.family])
    if stopped_by == "clock":
        card["training"]["note"] = (
            f"NOT REPRODUCIBLE BY ITS COMMAND: stopped by the wall-clock safety cap (max_minutes="
            f"{cfg.max_minutes:g}) after {meta['paths_seen']:,} of {cfg.total_paths:,} paths, so where it stopped "
            "depends on the machine's speed")
    # Weights and card are written in full, then renamed into place together: a full disk or an
    # unwritable directory leaves a previous checkpoint of this name as it was, pair intact.
    with staged_files(weights, card_path) as (tmp_weights, tmp_card):
        save_file({k: v.contiguous() for k, v in task.export(model).items()}, str(tmp_weights))
        card["weights_sha256"] = sha256_file(tmp_weights)
        write_card(tmp_card, card)
    if cfg.card_pairs:
        card["metrics"] = card_metrics(load_model(cfg.name, directory=out_dir, graph=g), g, cfg.card_pairs, cfg.seed,
                                       cfg.steps_for_card, progress=cfg.progress)
        write_card(card_path, card)
    print(f"wrote {weights} ({weights.stat().st_size / 1e6:.1f} MB) and {card_path}", file=sys.stderr)
    return weights


def card_metrics(m, g: CityGraph, pairs: int, seed: int, steps, *, progress: bool = False) -> dict:
    """A card's `metrics`: the harness on `pairs` held-out pairs (sampler seed `seed`) at `steps`."""
    from citypath.evaluate import evaluate_model, sample_heldout_pairs

    srcs, dsts = sample_heldout_pairs(g, pairs, seed=seed)
    result = evaluate_model(m, g, srcs, dsts, steps, progress=progress, bootstrap=0)
    return {"pairs": pairs, "pair_seed": seed, "by_steps": result["by_steps"]}


# -- the CLI entry -------------------------------------------------------------------------------

def task_factory(family: str) -> Callable[..., TrainTask]:
    """The `training_task(g, args)` function of a family (from the registry, `citypath.registry`)."""
    from citypath.registry import FAMILIES

    trainable = [name for name, f in FAMILIES.items() if f.task]
    if family not in trainable:
        raise ValueError(f"model family {family!r} has no trainer; trainable families: {', '.join(trainable)}")
    target = FAMILIES[family].task
    module, fn = target.split(":")
    try:
        return getattr(importlib.import_module(module), fn)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"model family {family!r} has no trainer ({target}): {e}") from e


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """`--set key=value` pairs, values parsed as JSON where they can be (numbers, booleans)."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--set {item!r}: expected key=value")
        k, v = item.split("=", 1)
        with contextlib.suppress(ValueError):
            v = json.loads(v)
        out[k.strip()] = v
    return out


def main(args) -> int:
    """`python -m citypath train ...`: build the family's task and train it."""
    from citypath.graph import load_graph

    g = load_graph(args.radius_km, args.min_population, args.states, verbose=False)
    task, cfg = task_factory(args.model)(g, args)
    train(task, g, cfg, fresh=args.fresh)
    return 0


def config_from_args(default_name: str, defaults: dict, args) -> tuple[TrainConfig, dict]:
    """A TrainConfig from a family's defaults and the CLI; returns it and the model-config overrides.

    `--set key=value` goes to the TrainConfig when `key` is one of its fields, else to the model config.
    """
    values = dict(defaults)
    overrides = parse_overrides(getattr(args, "set", None))
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    model_overrides = {k: v for k, v in overrides.items() if k not in train_fields}
    values.update({k: v for k, v in overrides.items() if k in train_fields})
    for arg, key in (("seed", "seed"), ("max_minutes", "max_minutes"), ("paths", "total_paths"),
                     ("batch_paths", "batch_paths"), ("lr", "lr"), ("threads", "threads"),
                     ("epoch_paths", "epoch_paths"), ("checkpoints", "checkpoints_dir"), ("runs", "runs_dir")):
        if getattr(args, arg, None) is not None:
            values[key] = getattr(args, arg)
    if getattr(args, "no_progress", False):
        values["progress"] = False
    if getattr(args, "keep_validation_pairs", False):
        values["exclude_validation"] = False
    return TrainConfig(name=getattr(args, "name", None) or default_name, **values), model_overrides


def task_from_args(g: CityGraph, args, family: str, sizes: dict, defaults: dict, config_cls, data_cls, task_cls, *,
                   default_size: str = "small"):
    """The TrainTask of a family trained on drawn graphs or episodes (bellman, gnn, looped, memory, memsearch)
    from the CLI's arguments, and its TrainConfig: `--set` overrides go to the TrainConfig (`config_from_args`),
    else to the data config (`data_cls`: how graphs or episodes are drawn) where they name one of its fields, else
    to the model config (`config_cls`)."""
    size = args.size or default_size
    if size not in sizes:
        raise ValueError(f"--size {size!r}: family {family} comes in {', '.join(sizes)}")
    cfg, overrides = config_from_args(f"{family}-{size}", defaults[size], args)
    data_fields = {f.name for f in dataclasses.fields(data_cls)}
    data = data_cls(**{k: v for k, v in overrides.items() if k in data_fields})
    config = config_cls(**{**sizes[size], **{k: v for k, v in overrides.items() if k not in data_fields}})
    return task_cls(g, size, config, data, cfg, command=getattr(args, "command_line", "")), cfg
