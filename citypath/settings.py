"""Every `CITYPATH_*` environment variable, read here and nowhere else, and documented once.

- `CITYPATH_CACHE_DIR`: where the graph, the SPD and derived arrays are cached
  (default: the user's cache directory from `platformdirs`, `$XDG_CACHE_HOME/citypath` or
  `~/.cache/citypath` on Linux).
- `CITYPATH_CHECKPOINTS`: the checkpoints directory `list_models` / `load_model` read (default `checkpoints/`).
- `CITYPATH_STATES`: the app's and benchmarks' graph, comma-separated state codes, e.g. `RI,MA`
  (default: the contiguous US).
- `CITYPATH_RADIUS_KM`: the app's and benchmarks' graph radius (default 90).
- `CITYPATH_MODEL_FAMILIES`: extra model families `family=module:Class,...` (test-only families in a
  subprocess app).
- `CITYPATH_DEVICE`: `cpu` keeps distributed training off the GPUs.
- `CITYPATH_RUNS_AT_ONCE`: how many of an app process's script runs compute at once, the others waiting
  their turn, oldest visitor first (default 1: a process is one core; see `citypath.app.turns`).
- `CITYPATH_COMPUTE_WORKERS`: worker processes per app process that run the models, so a page run never
  computes a route itself (default 2 on a machine with two cores or more, else 1; 0: the models run in the page's
  own thread, as before; see
  `citypath.app.compute`).
- `CITYPATH_HARNESS_BUDGET_S`: the most estimated CPU seconds one visitor's "Re-run the harness" may ask for
  (default 120; see `citypath.app.harness`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import platformdirs

VARIABLES = ("CITYPATH_CACHE_DIR", "CITYPATH_CHECKPOINTS", "CITYPATH_STATES", "CITYPATH_RADIUS_KM",
             "CITYPATH_MODEL_FAMILIES", "CITYPATH_DEVICE", "CITYPATH_RUNS_AT_ONCE", "CITYPATH_COMPUTE_WORKERS",
             "CITYPATH_HARNESS_BUDGET_S")


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """$CITYPATH_CACHE_DIR, else the user's cache directory + /citypath."""
    e = _env(env)
    if e.get("CITYPATH_CACHE_DIR"):
        return Path(e["CITYPATH_CACHE_DIR"])
    if e.get("XDG_CACHE_HOME"):          # platformdirs reads the process environment; `env` may be another
        return Path(e["XDG_CACHE_HOME"]) / "citypath"
    return Path(platformdirs.user_cache_dir("citypath", appauthor=False))


def checkpoints_dir(env: Mapping[str, str] | None = None) -> Path | None:
    """$CITYPATH_CHECKPOINTS, or None for the repository's checkpoints/."""
    value = _env(env).get("CITYPATH_CHECKPOINTS")
    return Path(value) if value else None


def graph_states(env: Mapping[str, str] | None = None) -> tuple[str, ...] | None:
    states = _env(env).get("CITYPATH_STATES", "").strip()
    return tuple(s.strip().upper() for s in states.split(",") if s.strip()) or None


def graph_radius_km(env: Mapping[str, str] | None = None) -> float | None:
    radius = _env(env).get("CITYPATH_RADIUS_KM", "").strip()
    return float(radius) if radius else None


def extra_model_families(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """{family: "module:Class"} from $CITYPATH_MODEL_FAMILIES ("family=module:Class,...")."""
    out = {}
    for item in filter(None, (s.strip() for s in _env(env).get("CITYPATH_MODEL_FAMILIES", "").split(","))):
        family, _, target = item.partition("=")
        if family and ":" in target:
            out[family] = target
    return out


def cpu_forced(env: Mapping[str, str] | None = None) -> bool:
    return _env(env).get("CITYPATH_DEVICE", "") == "cpu"


def runs_at_once(env: Mapping[str, str] | None = None) -> int:
    """$CITYPATH_RUNS_AT_ONCE (a whole number >= 1), default 1."""
    return _whole(env, "CITYPATH_RUNS_AT_ONCE", "1", 1)


def _whole(env: Mapping[str, str] | None, name: str, default: str, least: int) -> int:
    value = _env(env).get(name, "").strip() or default
    try:
        n = int(value)
    except ValueError:
        n = least - 1
    if n < least:
        raise ValueError(f"{name} must be a whole number of at least {least}, got {value!r}")
    return n


def default_compute_workers() -> int:
    """Two worker processes where the machine has two cores or more (a crowd's routes are computed two at a time:
    docs/benchmarks.md measured a cold crowd's routes p50 at 25.3 s with one and 17.2 s with two on 2 cores, the
    first paints unchanged), else one."""
    return max(1, min(2, os.cpu_count() or 1))


def compute_workers(env: Mapping[str, str] | None = None) -> int:
    """$CITYPATH_COMPUTE_WORKERS (a whole number >= 0), default `default_compute_workers()`."""
    return _whole(env, "CITYPATH_COMPUTE_WORKERS", str(default_compute_workers()), 0)


def harness_budget_s(env: Mapping[str, str] | None = None) -> float:
    """$CITYPATH_HARNESS_BUDGET_S (estimated CPU seconds, a whole number >= 1), default 120."""
    return float(_whole(env, "CITYPATH_HARNESS_BUDGET_S", "120", 1))


def check(env: Mapping[str, str] | None = None) -> None:
    """Raise ValueError naming the first CITYPATH_* value that cannot be read, before anything is loaded (the
    launcher calls it first, so a typo is said in a second, not after the graph and the models are warm)."""
    radius = _env(env).get("CITYPATH_RADIUS_KM", "").strip()
    try:
        graph_radius_km(env)
    except ValueError:
        raise ValueError(f"CITYPATH_RADIUS_KM must be a number of km, got {radius!r}") from None
    runs_at_once(env)
    compute_workers(env)
    harness_budget_s(env)
