"""The one registry of model families, and the catalogue of checkpoints built from their cards.

Per family: its inference class (`citypath/models/<family>.py`), its training task
(`citypath/tasks/<family>.py`) and its size presets. Adding a family is one model file, one training
file and one line here. Nothing is imported until it is used, so reading the registry or the
catalogue (cards only) costs no torch import.

    >>> sorted(FAMILIES)[:3]
    ['bellman', 'gnn', 'gru']
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Family:
    model: str                      # "module:Class", a RoutingModel
    task: str | None = None         # "module:function" -> TrainTask; None: not trainable here (test families)
    sizes: tuple[str, ...] = ()     # the `--size` presets of `python -m citypath train`


def _family(name: str, sizes: tuple[str, ...], cls: str) -> Family:
    return Family(f"citypath.models.{name}:{cls}", f"citypath.tasks.{name}:training_task", sizes)


FAMILIES: dict[str, Family] = {
    "gru": _family("gru", ("small", "large"), "GRUModel"),
    "refiner": _family("refiner", ("small", "medium", "tiny"), "RefinerModel"),
    "gnn": _family("gnn", ("small",), "GNNModel"),
    "postrnn": _family("postrnn", ("small", "large"), "PostRNNModel"),
    "bellman": _family("bellman", ("tiny",), "BellmanModel"),
    "looped": _family("looped", ("small",), "LoopedModel"),
    "memory": _family("memory", ("small",), "MemoryModel"),
    "memsearch": _family("memsearch", ("small",), "MemSearchModel"),
}


def register(name: str, model: str, task: str | None = None) -> bool:
    """Add a family (e.g. a test-only one) unless the name is taken; True if added. Built-ins never change."""
    if name in FAMILIES:
        return False
    FAMILIES[name] = Family(model, task)
    return True


def human_count(n: float) -> str:
    """1.2M, 23.6k, 10 ('?' when unknown)."""
    if not math.isfinite(n):
        return "?"
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:g}"


def model_label(name: str, family: str, parameters: float) -> str:
    """'gru-small · gru · 791k params': how a checkpoint is named in pickers and tables."""
    return f"{name} · {family} · {human_count(parameters)} params"


@dataclass(frozen=True)
class Entry:
    """One checkpoint as its card describes it (no weights read)."""

    name: str
    family: str
    parameters: int
    max_steps: int
    label: str


def catalogue(directory: str | os.PathLike | None = None) -> tuple[list[Entry], dict[str, str]]:
    """The checkpoints in `directory` (default: `models.checkpoints_dir()`), from their cards only, and for
    each card that cannot be read, why."""
    from citypath.models import CheckpointError, checkpoints_dir, list_models
    from citypath.models.base import read_card

    d = Path(checkpoints_dir(directory))
    entries, unreadable = [], {}
    for name in list_models(d):
        try:
            card = read_card(d / f"{name}.json")
            family, params = str(card["family"]), int(card["num_parameters"])
            entries.append(Entry(name, family, params, int(card["max_steps"]), model_label(name, family, params)))
        except (CheckpointError, ValueError, TypeError, KeyError) as e:
            unreadable[name] = f"{type(e).__name__}: {e}"
    return entries, unreadable
