"""Streamlit glue shared by `app.py` and `pages/`: cached loaders, session state, callbacks.

The app files only lay out widgets; what they show comes from here and from the plain
modules underneath (`session`, `maplayers`, `export`). Configuration comes from the
environment so tests and demos can run the app on a small graph:

    CITYPATH_STATES=RI,MA        graph of those states only (default: contiguous US)
    CITYPATH_RADIUS_KM=90        connection radius
    CITYPATH_CHECKPOINTS=dir     where checkpoints are listed from (default: checkpoints/)
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import streamlit as st

from citypath import registry, session, settings, turns
from citypath.cache import process_cache
from citypath.graph import CityGraph, graph_kwargs_from_env, load_graph
from citypath.maplayers import cities_records, states_records, write_static_json
from citypath.models import checkpoints_dir
from citypath.replay import Replay, ReplayStore, Shown
from citypath.session import ModelSet, ViewState

if TYPE_CHECKING:
    from citypath.player import Prepared

REPO = Path(__file__).resolve().parents[1]
STATIC_DIR = REPO / "static"  # served by Streamlit at app/static/ (server.enableStaticServing)
PAGE_ICON = "🗺️"

# Session-state keys; the widget keys double as the names tests set.
K_SRC, K_DST, K_MODELS, K_STEPS, K_SEED = "source", "target", "models", "steps", "seed"
K_STEP, K_SPEED, K_CLICK, K_NEXT = "step", "speed", "click_mode", "click_next"
K_VIEW, K_NOTICES, K_BASEMAP = "_view", "_notices", "basemap"
K_PLAYER, K_PLAYER_SEQ = "player", "_player_seq"     # the player component's last report, and the last one handled
K_MORE, K_FULL_RERUN = "_more", "_full_rerun"          # the player asked for the next model; a click moved the route
K_THINK = "show_state"
K_EQUAL, K_BUDGET = "equal_compute", "budget"
K_ARRIVED = "_arrived"               # when this visitor's first run started: its place in the queue of runs
SPEEDS = session.SPEEDS


# -- configuration and cached resources ---------------------------------------------------

_TURNS = turns.Turns(settings.runs_at_once())


@contextmanager
def turn() -> Iterator[turns.Waited]:
    """This script run's turn in the process (`citypath.turns`): the visitor who arrived first goes first."""
    arrived = st.session_state.setdefault(K_ARRIVED, time.monotonic())
    with _TURNS.turn(arrived) as waited:
        yield waited


def wait_text() -> str:
    """What this run waited for its turn, for the page's caption ("" when it hardly waited)."""
    waited = _TURNS.last_wait()
    if waited.seconds < 0.05:
        return ""
    return f", after {waited.seconds * 1e3:.0f} ms waiting behind {waited.ahead} other visitor run(s)"


def taking_turns(fn):
    """`fn` runs in a turn (a fragment: its own reruns wait their turn; inside a page run it is the page's)."""
    @functools.wraps(fn)
    def in_turn(*args, **kwargs):
        with turn():
            return fn(*args, **kwargs)
    return in_turn


@st.cache_resource(show_spinner="Loading the city graph (the first run ever builds it: about a minute)…")
def graph() -> CityGraph:
    return load_graph(**graph_kwargs_from_env(), verbose=True)


STAMP_TTL_S = 2.0
_STAMP: dict[str, tuple[float, int, tuple]] = {}


def _checkpoint_stamp() -> tuple:
    """Names and mtimes of the checkpoint files, so a new or retrained checkpoint is picked up.

    The full listing is redone when the directory changes (a file added, removed or atomically replaced)
    or STAMP_TTL_S after the last one (a file rewritten in place): listing and stat'ing every file on
    every run was ~7% of the server's time under 40 visitors (py-spy)."""
    d = checkpoints_dir()
    try:
        dir_mtime = d.stat().st_mtime_ns
    except OSError:
        return (str(d),)
    now = time.monotonic()
    have = _STAMP.get(str(d))
    if have is not None and have[1] == dir_mtime and now - have[0] < STAMP_TTL_S:
        return have[2]
    stamp = (str(d), *sorted((p.name, p.stat().st_mtime_ns) for p in d.iterdir()
                             if p.suffix in {".json", ".safetensors"}))
    _STAMP[str(d)] = (now, dir_mtime, stamp)
    return stamp


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
    entries, unreadable = registry.catalogue()
    labels = {e.name: e.label for e in entries} | {name: f"{name} (unreadable card)" for name in unreadable}
    steps = [16] + [e.max_steps for e in entries]
    # The learned models first, then the group "no learning" (the classical floor); only learned models have a
    # size that the default comparison (smallest against largest) reads.
    classical = {e.name for e in entries if not e.learned}
    names = sorted(labels, key=lambda n: (n in classical, n))
    return Catalog(names, labels, int(min(max(steps), 128)), {e.name: e.parameters for e in entries if e.learned})


def catalog() -> Catalog:
    """Checkpoint names, picker labels and the steps slider's upper end (the largest max_steps, 16..128)."""
    session.register_families_from_env()
    return _catalog(_checkpoint_stamp())


@st.cache_resource(show_spinner="Loading models…", max_entries=1)   # one graph per process; a new stamp replaces
def _models(_g: CityGraph, fingerprint: str, stamp: tuple) -> ModelSet:
    # One intra-op thread per query: the server's parallelism is its concurrent sessions, and
    # small graph ops with two threads on a busy 2-core box spin-wait (gnn step: ~530 ms vs 25 ms).
    import torch

    torch.set_num_threads(1)
    session.register_families_from_env()
    ms = session.load_models(_g)
    # Only the set of the checkpoints as they are now: a set loaded before a checkpoint was replaced is let go
    # (kept here, every replacement held another ~100 MB of models for the process's life).
    for key in [k for k in _MODELSETS if k[0] == fingerprint and k[1] != stamp]:
        del _MODELSETS[key]
    _MODELSETS[(fingerprint, stamp)] = ms
    return ms


_MODELSETS: dict[tuple, ModelSet] = {}   # (graph fingerprint, checkpoint stamp) -> the models loaded


def models_if_loaded(g: CityGraph) -> ModelSet | None:
    """The loaded models if this process has them already (nothing is loaded here), else None."""
    return _MODELSETS.get((g.fingerprint, _checkpoint_stamp()))


def models(g: CityGraph) -> ModelSet:
    """Every checkpoint that loads for graph `g`, and the ones that do not with their reasons."""
    return _models(g, g.fingerprint, _checkpoint_stamp())


# Process-wide memory of which replays are computed already, so the page knows which models'
# routes it can draw at once and which ones it still has to run (progressively, one per run).
_REPLAYED: set[tuple] = set()


# Shared and never modified; st.cache_data unpickled a copy of the 21,217 labels on every run (~9% of the
# server's time under 40 visitors, py-spy).
@process_cache(maxsize=8)
def label_index(_g: CityGraph, fingerprint: str) -> dict[str, int]:
    return {label: i for i, label in enumerate(_g.labels)}


def route_text(source: str, target: str) -> str:
    """The sidebar's line for the route (markdown; the labels' markdown characters escaped)."""
    esc = lambda t: re.sub(r"([\\`*_\[\]<>#|$~])", r"\\\1", t)  # noqa: E731
    return f":material/trip_origin: **From** {esc(source)}  \n:material/flag: **To** {esc(target)}"


@st.cache_resource(show_spinner=False)   # shared, never modified
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


@process_cache(maxsize=512)   # shared, not copied (never modified)
def _replay(_model, _g: CityGraph, model_key: tuple, fingerprint: str, src: int, dst: int, steps: int,
            seed: int) -> Replay:
    # Shared on disk with the other app processes (behind a balancer): computed by one, once.
    return _replay_store().get_or_compute(_model, _g, src, dst, steps, seed)


def replay(mset: ModelSet, g: CityGraph, name: str, view: ViewState) -> Replay:
    """The K paths of model `name` on the view's pair, computed once per (model, pair, steps, seed)."""
    m = mset.models[name]
    key = (name, m.card.get("weights_sha256", ""), m.family)
    r = _replay(m, g, key, g.fingerprint, view.source, view.target, view.steps, view.seed)
    _REPLAYED.add((name, g.fingerprint, view.source, view.target, view.steps, view.seed))
    return r


@st.cache_data(max_entries=64, show_spinner=False)
def _thoughts(_model, _g: CityGraph, model_key: tuple, fingerprint: str, src: int, dst: int,
              steps: int) -> session.Thoughts:
    return session.compute_thoughts(_model, _g, src, dst, steps)


def thoughts(mset: ModelSet, g: CityGraph, view: ViewState) -> session.Thoughts | None:
    """The per-step city state of the first compared model that has one (None if no model is compared)."""
    names = [n for n in view.models if n in mset.models]
    if not names:
        return None
    with_view = [n for n in names if mset.models[n].has_state_view] or names[:1]
    m = mset.models[with_view[0]]
    key = (m.name, m.card.get("weights_sha256", ""), m.family)
    return _thoughts(m, g, key, g.fingerprint, view.source, view.target, view.steps)


def thinking_layers(g: CityGraph, thinking: session.Thoughts | None, step: int) -> tuple[list, list]:
    """The map layer of a model's state at `step` and its legend entries (colour, label, style); empty if none."""
    from citypath.maplayers import rgb_hex, state_colours, state_layer

    state = thinking.at(step) if thinking is not None else None
    if state is None:
        return [], []
    low, high = thinking.scale
    layer = state_layer(g, state.values, state.name, state.unit, low=low, high=high)
    unit = f" {state.unit}" if state.unit else ""
    lo_rgb, hi_rgb = state_colours(np.array([low, high]), low, high)
    legend = [(rgb_hex(lo_rgb), f"{thinking.model}: {state.name} {low:,.0f}{unit}", "dot"),
              (rgb_hex(hi_rgb), f"… {high:,.0f}{unit} (no dot: no value yet)", "dot")]
    return ([layer] if layer is not None else []), legend


# -- session state <-> the view ------------------------------------------------------------

def init_state(g: CityGraph, cat: Catalog) -> None:
    """Fill session state from the URL on a session's first run; restore widget keys after page switches."""
    ss = st.session_state
    if K_VIEW not in ss:
        view, notices = session.parse_query_params(st.query_params.to_dict(), g, cat.names,
                                                   max_steps=cat.steps_max, parameters=cat.parameters)
        ss[K_VIEW] = view
        ss[K_NOTICES] = notices
        ss[K_STEP] = view.shown_step
        ss[K_SPEED] = view.speed
        ss[K_CLICK] = view.click
    view = ss[K_VIEW]
    # Streamlit forgets a widget's value when its page is not shown; put them back from the view.
    defaults = {K_SRC: g.label(view.source), K_DST: g.label(view.target), K_MODELS: list(view.models),
                K_STEPS: view.steps, K_SEED: view.seed, K_SPEED: view.speed, K_CLICK: view.click,
                K_NEXT: "source", K_STEP: view.shown_step, K_BASEMAP: False, K_THINK: False,
                K_EQUAL: False, K_BUDGET: 1e8}
    for key, value in defaults.items():
        if key not in ss:
            ss[key] = value
    ss[K_MODELS] = [m for m in ss[K_MODELS] if m in cat.names]


def current_view(g: CityGraph) -> ViewState:
    """The view the widgets now show (and remember it for the next run and other pages)."""
    ss = st.session_state
    idx = label_index(g, g.fingerprint)
    view = ViewState(idx.get(ss[K_SRC], ss[K_VIEW].source), idx.get(ss[K_DST], ss[K_VIEW].target),
                     tuple(ss[K_MODELS]), int(ss[K_STEPS]), int(ss[K_SEED]), int(ss.get(K_STEP) or 0),
                     float(ss[K_SPEED]), str(ss[K_CLICK]))
    ss[K_VIEW] = view
    return view


def sync_url(view: ViewState, g: CityGraph) -> None:
    """Write the view into the URL so the link reproduces it (only when it changed)."""
    params = session.to_query_params(view, g)
    if st.query_params.to_dict() != params:
        st.query_params.from_dict(params)


def share_url(view: ViewState, g: CityGraph, step: int | None = None) -> str:
    """The full link that reproduces `view` (at `step`): this page's address plus the view's parameters."""
    from dataclasses import replace
    from urllib.parse import urlencode

    base = (st.context.url or "").split("?")[0] or "http://localhost:8501/"
    state = replace(view, step=step) if step is not None else view
    return f"{base}?{urlencode(session.to_query_params(state, g))}"


def on_route_change() -> None:
    """A new question (pair, models, steps, seed): show its final answer, paused; a bad link's notice goes."""
    ss = st.session_state
    ss[K_STEP] = ss[K_STEPS]
    ss[K_NOTICES] = []


def on_swap() -> None:
    ss = st.session_state
    ss[K_SRC], ss[K_DST] = ss[K_DST], ss[K_SRC]
    on_route_change()


def on_random_pair(g: CityGraph, heldout: bool) -> None:
    ss = st.session_state
    rng = np.random.default_rng(time.time_ns() % 2**32)
    src, dst = session.random_heldout_pair(g, rng, heldout=heldout)
    ss[K_SRC], ss[K_DST] = g.label(src), g.label(dst)
    on_route_change()


def on_reset(g: CityGraph, cat: Catalog) -> None:
    ss = st.session_state
    view = session.default_state(g, cat.names, cat.parameters)
    ss[K_SRC], ss[K_DST] = g.label(view.source), g.label(view.target)
    ss[K_MODELS], ss[K_STEPS], ss[K_SEED] = list(view.models), view.steps, view.seed
    ss[K_NOTICES] = []
    on_route_change()


@process_cache(maxsize=8)   # never modified
def _interesting(_g: CityGraph, fingerprint: str, stamp: float) -> tuple[list[session.Pick], str | None]:
    return session.interesting_pairs(_g)


def interesting(g: CityGraph) -> tuple[list[session.Pick], str | None]:
    """The committed interesting pairs on this graph (re-read when the file changes)."""
    path = session.INTERESTING_PATH
    return _interesting(g, g.fingerprint, path.stat().st_mtime if path.is_file() else 0.0)


def on_pick_pair(g: CityGraph, src: int, dst: int) -> None:
    ss = st.session_state
    ss[K_SRC], ss[K_DST] = g.label(src), g.label(dst)
    on_route_change()


def on_player_event(g: CityGraph) -> None:
    """The player reported something (its on_change callback, run before the rerun): the step it stopped
    at and its speed, a request for the next model's route, a click on a city (which sets an end of the
    route, see the click rule) or a city chosen by name for one end; a new route reruns the whole page so
    the sidebar shows it.

    Reports already handled, malformed ones and cities outside the graph change nothing.
    """
    from citypath import player

    ss = st.session_state
    event = player.read_event(ss.get(K_PLAYER), int(ss.get(K_PLAYER_SEQ, 0)))
    if event is None:
        return
    ss[K_PLAYER_SEQ] = event["seq"]
    if event.get("more"):
        ss[K_MORE] = True
        return
    if "pick" in event:
        end, city = event["pick"]
        if not 0 <= city < g.n_cities:
            return
        ss[K_SRC if end == "source" else K_DST] = g.label(city)
        on_route_change()
        ss[K_FULL_RERUN] = True
        return
    if "click" in event:
        city = event["click"]
        if not 0 <= city < g.n_cities:
            return
        idx = label_index(g, g.fingerprint)
        src, dst = idx.get(ss[K_SRC], 0), idx.get(ss[K_DST], 0)
        src, dst, ss[K_NEXT] = session.apply_click(src, dst, city, ss[K_CLICK], ss[K_NEXT])
        ss[K_SRC], ss[K_DST] = g.label(src), g.label(dst)
        on_route_change()
        ss[K_FULL_RERUN] = True
        return
    ss[K_STEP] = int(min(max(event["step"], 1), int(ss[K_STEPS])))
    if event["speed"] in SPEEDS:
        ss[K_SPEED] = event["speed"]


@process_cache(maxsize=64)   # ~0.3 MB each (every step's layers as JSON text), never modified
def _payload(_g: CityGraph, _optimal, _replays: dict, _thinking, key: tuple, fingerprint: str, source: int,
             target: int, steps: int, seed: int, pending: tuple, colours: tuple, titles: tuple, urls: tuple,
             basemap: bool, limits: tuple | None, notes: tuple, budget: float) -> Prepared:
    from citypath import player

    thinking_frames, legend_tail = [], []
    if _thinking is not None and _thinking.views:
        for k in range(1, steps + 1):
            layers, legend = thinking_layers(_g, _thinking, k)
            thinking_frames.append(layers)
            legend_tail = legend or legend_tail
    urls_d = dict(urls)
    payload = player.comparison(
        _g, source, target, _optimal, _replays, dict(colours), dict(titles), steps=steps, seed=seed,
        limits=dict(limits) if limits is not None else None, notes_by_model=dict(notes),
        # The outlines (43 KB) go inline: the first paint needs them, and a second download of its own
        # came ~1 s later in the browser; the 1.5 MB city layer stays a URL, drawn when it arrives.
        cities=urls_d.get("cities") or city_records(_g, fingerprint), states=None,
        basemap=basemap, thinking_frames=thinking_frames, legend_tail=legend_tail, pending=pending,
        notes=[f"Equal compute: {session.human_flops(budget)} per query. Each model shows the most refinement "
               "steps that fit in the budget (operations, one count for every model); turn Equal compute off in the "
               "sidebar to play steps."] if limits is not None else [],
        speeds=SPEEDS, mode=f"equal-{limits is not None}")
    if urls_d:      # static serving works: the frames go once into a file every visitor's browser fetches
        try:
            return player.store_frames(payload, STATIC_DIR)
        except OSError:
            pass        # a full or read-only disk: send them inline, as without static serving
    return player.Prepared(payload)


def player_payload(g: CityGraph, view: ViewState, optimal, replays: dict[str, Replay], pending: list[str],
                   colours: dict, titles: dict, urls: dict | None, thinking, budget: dict) -> dict:
    """The player's arguments for this view (see `citypath.player.comparison`), built once per question and
    what is computed of it: a rerun that changes nothing, or only the shown step or the speed (the player's
    stop report), sends it again without rebuilding it."""
    ss = st.session_state
    equal = bool(budget) or bool(ss.get(K_EQUAL))
    limits = tuple((n, b.step) for n, b in budget.items()) if equal else None
    notes = tuple((n, b.text) for n, b in budget.items()) if equal else ()
    key = tuple((n, r.steps, r.seed, len(r.paths)) for n, r in replays.items())
    think_key = (thinking.model, len(thinking.views)) if thinking is not None else None
    step = int(min(max(int(ss.get(K_STEP) or view.steps), 1), view.steps))
    prepared = _payload(g, tuple(optimal), replays, thinking, (key, think_key), g.fingerprint, view.source,
                        view.target, view.steps, view.seed, tuple(pending),
                        tuple((n, tuple(c)) for n, c in colours.items()), tuple(titles.items()),
                        tuple((urls or {}).items()), bool(ss.get(K_BASEMAP)), limits, notes,
                        float(ss.get(K_BUDGET, 0)))
    return prepared.at(step, float(ss.get(K_SPEED, 1.0)))


def replay_next(mset: ModelSet, g: CityGraph, view: ViewState, *, compute: bool = True) -> None:
    """Compute the view's next model still pending (one model's compute per request, so the routes appear
    one by one; none with `compute=False`), and read every pending one that a process stored already (no
    model compute): a shared link's visitors get every route at once, not one request per model."""
    _, pending = replays_so_far(mset, g, view)
    store = _replay_store()
    for i, name in enumerate(pending):
        if (compute and i == 0) or store.stored(mset.models[name], g, view.source, view.target, view.steps,
                                                view.seed):
            replay(mset, g, name, view)


def _warm_page_icon() -> None:
    try:
        from streamlit.string_util import is_emoji  # what st.set_page_config calls on the icon
    except ImportError:                                # moved in another Streamlit: the first visitor pays
        return
    is_emoji(PAGE_ICON)


def warm_process(log=None) -> dict[str, float]:
    """Do in this process, before any visitor, what the first visitor of the default page would wait for:
    the graph, the catalogue, the labels, the map's static layers, the models, the default view's routes.

    `python -m citypath.launch` runs it before the server listens, so a visitor never meets a cold process
    (and HAProxy's health check sends none to a process still warming). `log(line)` hears each stage as it
    ends. Returns the seconds of each stage."""
    times: dict[str, float] = {}

    def stage(name: str, fn):
        t0 = time.perf_counter()
        out = fn()
        times[name] = round(time.perf_counter() - t0, 2)
        if log:
            log(f"{name}: {times[name]:.1f} s")
        return out

    g = stage("graph", graph)
    cat = stage("catalogue", catalog)
    stage("labels", lambda: (label_index(g, g.fingerprint), _file_city_names(g, g.fingerprint)))
    # Streamlit's first check of the page's emoji icon imports its emoji table (~0.1-0.5 s of the first
    # visitors' wait under a crowd): done here instead
    stage("page icon", _warm_page_icon)
    # the static files only: whether they are served is Streamlit's option, read by the first run
    stage("map layers", lambda: (city_records(g, g.fingerprint), states_records(), write_static_json(g, STATIC_DIR)))
    stage("interesting pairs", lambda: interesting(g))
    mset = stage("models", lambda: models(g))
    view, _ = session.parse_query_params({}, g, cat.names, max_steps=cat.steps_max, parameters=cat.parameters)

    def routes() -> None:
        for name in replays_so_far(mset, g, view)[1]:
            replay(mset, g, name, view)

    stage("the default view's routes", routes)
    return times


def _replay_store() -> ReplayStore:
    return ReplayStore(settings.cache_dir() / "replays")


def replays_so_far(mset: ModelSet | None, g: CityGraph, view: ViewState) -> tuple[dict[str, Replay], list[str]]:
    """The view's replays computed already in this process, and the models still to compute (in order).

    With `mset` None (models not loaded yet) every model is still to compute.
    """
    done, pending = {}, []
    for name in view.models:
        key = (name, g.fingerprint, view.source, view.target, view.steps, view.seed)
        if mset is not None and name in mset.models and key in _REPLAYED:
            done[name] = replay(mset, g, name, view)
        elif mset is None or name in mset.models:
            pending.append(name)
    return done, pending


def exporter(ext: str, g: CityGraph, view: ViewState, replays: dict[str, Replay], steps: dict[str, int],
             colours: dict[str, tuple[int, int, int]]):
    """A zero-argument callable that renders one download (png, gif, geojson, csv) when clicked.

    `steps`: the step each model is shown at (the PNG draws it; the others hold every step).
    matplotlib is imported only then: it is ~0.5 s of the app's cold start otherwise.
    """
    def render():
        from citypath import export

        runs = [Shown(r, max(steps.get(name, 1), 1), colours[name])
                for name, r in replays.items() if steps.get(name, 1) >= 1]
        if ext == "geojson":
            return export.to_geojson(g, view.source, view.target, runs, all_steps=True)
        fn = {"png": export.render_png, "gif": export.render_gif, "csv": export.to_csv}[ext]
        return fn(g, view.source, view.target, runs)

    return render


def _file_part(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-@" else "_" for ch in text).strip("_")


@process_cache(maxsize=8)   # shared, never modified: a pandas lookup per city per download button was ~1 ms
def _file_city_names(_g: CityGraph, fingerprint: str) -> list[str]:
    """Every city as a file-name part, by id: "Boston_MA"."""
    states = _g.cities["state"].tolist() if "state" in _g.cities else [""] * _g.n_cities
    return [_file_part(f"{name}_{state}") for name, state in zip(_g.cities["name"].tolist(), states)]


def download_name(g: CityGraph, view: ViewState, steps: dict[str, int], ext: str) -> str:
    """What a download holds, in its name: the pair, the models (with their step in a PNG) and the steps.

    e.g. citypath-Boston_MA-Denver_CO-gru-small@8-bellman-tiny@8-step8.png, ...-all-steps.geojson."""
    city = _file_city_names(g, g.fingerprint).__getitem__
    models = [f"{m}@{k}" if ext == "png" else m for m, k in steps.items() if k >= 1] or ["optimal"]
    shown = sorted({k for k in steps.values() if k >= 1})
    which = (f"step{shown[0]}" if len(shown) == 1 else "steps" + "-".join(map(str, shown))) if ext == "png" \
        else "all-steps"
    names = "-".join(_file_part(m) for m in models)
    return f"citypath-{city(view.source)}-{city(view.target)}-{names}-{which}.{ext}"


def legend_html(entries: list[tuple[str, str, str]]) -> str:
    """A one-line legend: (css colour, label, style) where style is 'line', 'ghost', 'dash' or 'dot'."""
    chips = []
    for colour, label, style in entries:
        if style == "dot":
            mark = f'<span style="display:inline-block;width:10px;height:10px;border-radius:50%;background:{colour};' \
                   'border:2px solid white;box-shadow:0 0 0 1px #999;margin-right:5px"></span>'
        else:
            border = {"line": "solid", "ghost": "solid", "dash": "dashed"}[style]
            opacity = "0.35" if style == "ghost" else "1"
            mark = f'<span style="display:inline-block;width:22px;height:0;border-top:4px {border} {colour};' \
                   f'opacity:{opacity};vertical-align:middle;margin-right:5px"></span>'
        chips.append(f'<span style="margin-right:16px;white-space:nowrap">{mark}{label}</span>')
    return f'<div style="font-size:0.85rem;line-height:1.8">{"".join(chips)}</div>'
