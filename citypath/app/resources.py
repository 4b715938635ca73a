"""What an app process loads once and shares between its visitors: the graph, the catalogue, the models,
the label index, the map's static layers and the interesting pairs (Streamlit caches over plain loaders).

Configuration comes from the environment (`citypath.settings`) so tests and demos can run the app on a
small graph: CITYPATH_STATES, CITYPATH_RADIUS_KM, CITYPATH_CHECKPOINTS.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from citypath import settings
from citypath.app import picks
from citypath.cache import process_cache
from citypath.graph import CityGraph, graph_kwargs_from_env, load_graph
from citypath.models import ModelError, RoutingModel, catalogue, checkpoints_dir, list_models, load_model
from citypath.view.maplayers import cities_records, write_static_json

REPO = Path(__file__).resolve().parents[2]
STATIC_DIR = REPO / "static"  # served by Streamlit at app/static/ (server.enableStaticServing)
PAGE_ICON = "🗺️"


@st.cache_resource(show_spinner="Loading the city graph (the first run ever builds it: about 10 s)…")
def graph() -> CityGraph:
    return load_graph(**graph_kwargs_from_env(), verbose=True)


# -- the models ---------------------------------------------------------------------------

@dataclass
class ModelSet:
    """The models that loaded, by name, and for each that did not, the reason."""

    models: dict[str, RoutingModel] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return list(self.models)


def register_families_from_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Extra model families named in $CITYPATH_MODEL_FAMILIES ("family=module:Class,..."), added to the registry.

    This is how a subprocess app (the browser test) gets test-only families; shipped families
    are in the registry already and are never overridden.
    """
    from citypath.registry import register

    return {family: target for family, target in settings.extra_model_families(env).items()
            if register(family, target)}


def load_models(g: CityGraph, names: Iterable[str] | None = None, *, directory=None,
                loader: Callable[..., RoutingModel] = load_model) -> ModelSet:
    """Load every named checkpoint for graph `g`; one that fails is reported, never fatal."""
    out = ModelSet()
    for name in (list_models(directory) if names is None else names):
        try:
            out.models[name] = loader(name, directory=directory, graph=g)
        except ModelError as e:
            out.failures[name] = str(e)
        except Exception as e:  # a broken checkpoint must not take the app down with it
            out.failures[name] = f"{type(e).__name__}: {e}"
    return out


STAMP_TTL_S = 2.0


def _checkpoint_stamp() -> tuple:
    """Names and mtimes of the checkpoint files, so a new or retrained checkpoint is picked up.

    The full listing is redone when the directory changes (a file added, removed or atomically replaced)
    or every STAMP_TTL_S (a file rewritten in place): listing and stat'ing every file on every run was ~7%
    of the server's time under 40 visitors (py-spy)."""
    d = checkpoints_dir()
    try:
        dir_mtime = d.stat().st_mtime_ns
    except OSError:
        return (str(d),)
    return _listing(str(d), dir_mtime, int(time.monotonic() // STAMP_TTL_S))


@process_cache(maxsize=4)
def _listing(directory: str, dir_mtime: int, period: int) -> tuple:
    return (directory, *sorted((p.name, p.stat().st_mtime_ns) for p in Path(directory).iterdir()
                               if p.suffix in {".json", ".safetensors"}))


@dataclass(frozen=True)
class Catalog:
    """What the checkpoints offer, read from their cards only (no weights, no torch): cheap enough
    to draw the pickers before any model is loaded."""

    names: list[str]
    labels: dict[str, str]
    steps_max: int
    parameters: dict[str, int]


@process_cache(maxsize=8)   # never modified
def _catalog(stamp: tuple) -> Catalog:
    entries, unreadable = catalogue()
    labels = {e.name: e.label for e in entries} | {name: f"{name} (unreadable card)" for name in unreadable}
    steps = [16] + [e.max_steps for e in entries]
    # The learned models first, then the group "no learning" (the classical floor); only learned models have a
    # size that the default comparison (smallest against largest) reads, and only those whose card found a valid
    # route at some step (a first visit should not open on a model that never arrives).
    classical = {e.name for e in entries if not e.learned}
    names = sorted(labels, key=lambda n: (n in classical, n))
    sizes = {e.name: e.parameters for e in entries if e.learned and e.ever_valid}
    return Catalog(names, labels, int(min(max(steps), 128)), sizes)


def catalog() -> Catalog:
    """Checkpoint names, picker labels and the steps slider's upper end (the largest max_steps, 16..128)."""
    register_families_from_env()
    return _catalog(_checkpoint_stamp())


# One set of models held per process: the checkpoints as they are now. A set loaded before a checkpoint was
# replaced is let go (kept, every replacement held another ~100 MB of models for the process's life).
@process_cache(maxsize=1)
def _models(_g: CityGraph, fingerprint: str, stamp: tuple) -> ModelSet:
    # One intra-op thread per query: the server's parallelism is its concurrent sessions, and
    # small graph ops with two threads on a busy 2-core box spin-wait (gnn step: ~530 ms vs 25 ms).
    import torch

    torch.set_num_threads(1)
    register_families_from_env()
    return load_models(_g)


def models_if_loaded(g: CityGraph) -> ModelSet | None:
    """The loaded models if this process has them already (nothing is loaded here), else None."""
    return _models.peek(g, g.fingerprint, _checkpoint_stamp())


def models(g: CityGraph) -> ModelSet:
    """Every checkpoint that loads for graph `g`, and the ones that do not with their reasons."""
    stamp = _checkpoint_stamp()
    held = _models.peek(g, g.fingerprint, stamp)
    if held is not None:
        return held
    with st.spinner("Loading models…"):
        return _models(g, g.fingerprint, stamp)


# -- labels, map layers, interesting pairs --------------------------------------------------

# Shared and never modified; st.cache_data unpickled a copy of the 21,217 labels on every run (~9% of the
# server's time under 40 visitors, py-spy).
@process_cache(maxsize=8)
def label_index(_g: CityGraph, fingerprint: str) -> dict[str, int]:
    return {label: i for i, label in enumerate(_g.labels)}


@process_cache(maxsize=2)   # shared, never modified
def city_records(_g: CityGraph, fingerprint: str) -> list[dict]:
    """The all-cities layer inline (when static serving is off): ~1.5 MB per frame on the full graph."""
    return cities_records(_g)


@st.cache_resource(show_spinner="Preparing the map layers…")
def static_urls(_g: CityGraph, fingerprint: str) -> dict[str, str] | None:
    """URLs of the all-cities and state-outline JSON, written once under static/; None if not servable."""
    if not st.get_option("server.enableStaticServing"):
        return None
    try:
        paths = write_static_json(_g, STATIC_DIR)
    except OSError:
        return None
    return {k: f"app/static/{p.name}" for k, p in paths.items()}


@process_cache(maxsize=8)   # never modified
def _interesting(_g: CityGraph, fingerprint: str, stamp: float) -> tuple[list[picks.Pick], str | None]:
    return picks.interesting_pairs(_g)


def interesting(g: CityGraph) -> tuple[list[picks.Pick], str | None]:
    """The committed interesting pairs on this graph (re-read when the file changes)."""
    path = picks.INTERESTING_PATH
    return _interesting(g, g.fingerprint, path.stat().st_mtime if path.is_file() else 0.0)
