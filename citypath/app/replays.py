"""A question's replays, computed once per process (and once across processes, on the shared disk store), and
the player's arguments built from them.


Three caches, one per kind of thing: the process's resources (`citypath.app.resources`), the replays here
(in memory over the disk store, keyed by model and question) and the player's payload (its frames in a
static file). The page asks for what is computed already (`replays_so_far`), computes the next pending
model per request (`replay_next`) so routes appear one by one, and builds the payload once per question.
"""

from __future__ import annotations

import streamlit as st

from citypath import settings
from citypath.app import compute, state
from citypath.app.compute import service as compute_service
from citypath.app.resources import STATIC_DIR, ModelSet, city_records
from citypath.app.url import SPEEDS, ViewState
from citypath.cache import process_cache
from citypath.graph import CityGraph
from citypath.models import RoutingModel
from citypath.replay import Question, Replay, ReplayStore, Thoughts
from citypath.view import player, present
from citypath.view.maplayers import thinking_layers


def _replay_store() -> ReplayStore:
    return ReplayStore(settings.cache_dir() / "replays")


def _model_key(m: RoutingModel) -> tuple:
    return (m.name, m.card.get("weights_sha256", ""), m.family)


@process_cache(maxsize=512)   # shared, not copied (never modified)
def _replay(_model, _g: CityGraph, model_key: tuple, fingerprint: str, src: int, dst: int, steps: int,
            seed: int) -> Replay:
    # Shared on disk with the other app processes (behind a balancer): computed by one, once.
    return _replay_store().get_or_compute(_model, _g, src, dst, steps, seed)


def _args(mset: ModelSet, g: CityGraph, name: str, q: Question) -> tuple:
    m = mset.models[name]
    return (m, g, _model_key(m), g.fingerprint, q.source, q.target, q.steps, q.seed)


def replay(mset: ModelSet, g: CityGraph, name: str, q: Question) -> Replay:
    """The K paths of model `name` on the question's pair, computed once per (model, pair, steps, seed)."""
    return _replay(*_args(mset, g, name, q))


def replays_so_far(mset: ModelSet | None, g: CityGraph, q: Question) -> tuple[dict[str, Replay], list[str]]:
    """The question's replays held in this process already, and the models still to compute (in order).

    With `mset` None (models not loaded yet) every model is still to compute.
    """
    done, pending = {}, []
    for name in q.models:
        held = _replay.peek(*_args(mset, g, name, q)) if mset is not None and name in mset.models else None
        if held is not None:
            done[name] = held
        elif mset is None or name in mset.models:
            pending.append(name)
    return done, pending


WAIT_S = 300.0      # the longest a request waits for a worker before computing the model itself


def _job(name: str, q: Question, store: ReplayStore, extend_to: int = 0, mset: ModelSet | None = None
         ) -> compute.Job:
    """The job computing model `name`'s replay of `q` (run to `extend_to` steps for later); with `mset`, it may
    run in one batch with other visitors' runs of the model where the family computes several pairs together."""
    batch = not extend_to and mset is not None and name in mset.models and mset.models[name].batches_queries
    return compute.Job(name, q.source, q.target, q.steps, q.seed, str(store.directory), extend_to,
                       compute.job_env(), compute.job_families(), batch=batch)


def replay_next(mset: ModelSet, g: CityGraph, q: Question, *, compute: bool = True, ticket: float = 0.0,
                steps_max: int = 0) -> None:
    """Compute the question's next model still pending (one model's compute per request, so the routes appear
    one by one; none with `compute=False`), and read every pending one that a process stored already (no
    model compute): a shared link's visitors get every route at once, not one request per model.

    With worker processes (`citypath.app.compute`, the default) the page computes nothing: the pending models
    are queued in the visitor's place (`ticket`), and the request waits, aside from the turn queue, until one
    of them is stored. With `compute=False` they are queued all the same but nothing waits: the first paint
    goes out at once while the workers start on its routes, so the player's request for them (sent once the
    browser has drawn the map) finds them computed or under way. A model whose K steps are a prefix of more
    (`RoutingModel.steps_are_prefix`) is extended to `steps_max` (the slider's maximum) by the worker for later
    once a worker has computed it, so a later move of the slider, or another visitor's, reads it. A route read
    from the store stays as long as it is (extending every stored route a crowd reads cost its page runs twice
    the time, see docs/benchmarks.md)."""
    from citypath.app import turns

    _, pending = replays_so_far(mset, g, q)
    store = _replay_store()
    service = compute_service()
    inline = set()
    if pending and service is not None:
        def then(name: str) -> compute.Job | None:
            return _job(name, q, store, steps_max) if steps_max > q.steps and mset.models[name].steps_are_prefix \
                else None

        waiting = [service.submit(_job(name, q, store, mset=mset), ticket, then=then(name)) for name in pending
                   if not store.stored(mset.models[name], g, q.source, q.target, q.steps, q.seed)]
        if waiting and compute:
            with turns.aside():
                arrived = service.wait_any(waiting, WAIT_S)
            # a worker that failed, never came, or could not store its route (a full or read-only disk): this
            # request computes the first such model itself
            stuck = [h.job.model for h in waiting if h.done.is_set() and (
                h.error or not store.stored(mset.models[h.job.model], g, q.source, q.target, q.steps, q.seed))
                     ] if arrived else pending[:1]
            inline.update(stuck[:1])
        compute = False
    for i, name in enumerate(pending):
        if (compute and i == 0) or name in inline or store.stored(mset.models[name], g, q.source, q.target, q.steps,
                                                                   q.seed):
            replay(mset, g, name, q)


@process_cache(maxsize=64)
def _thoughts(_model, _g: CityGraph, model_key: tuple, fingerprint: str, src: int, dst: int,
              steps: int) -> Thoughts:
    # Shared on disk with the other app processes, as the routes are: computed by one process, once.
    return _replay_store().get_or_compute_thoughts(_model, _g, src, dst, steps)


def thoughts(mset: ModelSet, g: CityGraph, view: ViewState, ticket: float = 0.0) -> Thoughts | None:
    """The per-step city state of the first compared model that has one (None if no model is compared), over
    the view's steps. With worker processes (`citypath.app.compute`) the model runs there, in the visitor's place
    (`ticket`), and this waits for it aside from the turn queue, as a route's request does; the page computes it
    itself only if the worker failed or never came."""
    from citypath.app import turns

    names = [n for n in view.models if n in mset.models]
    if not names:
        return None
    with_view = [n for n in names if mset.models[n].has_state_view] or names[:1]
    m = mset.models[with_view[0]]
    args = (m, g, _model_key(m), g.fingerprint, view.source, view.target, view.steps)
    store, service = _replay_store(), compute_service()
    if _thoughts.peek(*args) is None and m.has_state_view and service is not None and \
            not store.has_thoughts(m, g, view.source, view.target, view.steps):
        job = compute.Job(m.name, view.source, view.target, view.steps, 0, str(store.directory), 0,
                          compute.job_env(), compute.job_families(), kind="thoughts")
        handle = service.submit(job, ticket)
        with turns.aside():
            service.wait_any([handle], WAIT_S)
    return _thoughts(*args)


@process_cache(maxsize=64)   # ~0.3 MB each (every step's layers as JSON text), never modified
def _payload(_g: CityGraph, _optimal, _replays: dict, _thinking, question: Question, fingerprint: str,
             computed: tuple, shown_steps: int, pending: tuple, colours: tuple, titles: tuple, urls: tuple,
             basemap: bool, limits: tuple | None, notes: tuple) -> player.Prepared:
    thinking_frames, legend_tail = [], []
    if _thinking is not None and _thinking.views:
        for k in range(1, shown_steps + 1):
            layers, legend = thinking_layers(_g, _thinking, k)
            thinking_frames.append(layers)
            legend_tail = legend or legend_tail
    urls_d = dict(urls)
    payload = player.comparison(
        _g, question, _optimal, _replays, dict(colours), dict(titles),
        limits=dict(limits) if limits is not None else None, notes_by_model=dict(notes),
        # The outlines (43 KB) go inline: the first paint needs them, and a second download of its own
        # came ~1 s later in the browser; the 1.5 MB city layer stays a URL, drawn when it arrives.
        cities=urls_d.get("cities") or city_records(_g, fingerprint), states=None,
        basemap=basemap, thinking_frames=thinking_frames, legend_tail=legend_tail, pending=pending,
        notes=[present.budget_note(question.budget)] if limits is not None else [], speeds=SPEEDS)
    if urls_d:      # static serving works: the frames go once into a file every visitor's browser fetches
        try:
            return player.store_frames(payload, STATIC_DIR)
        except OSError:
            pass        # a full or read-only disk: send them inline, as without static serving
    return player.Prepared(payload)


def player_payload(g: CityGraph, q: Question, optimal, replays: dict[str, Replay], pending: list[str],
                   colours: dict, titles: dict, urls: dict | None, thinking: Thoughts | None,
                   budget: dict[str, present.BudgetStep], shown_steps: int) -> dict:
    """The player's arguments for question `q` (see `citypath.view.player.comparison`), built once per question
    and what is computed of it: a rerun that changes nothing, or only the shown step or the speed (the
    player's stop report), sends it again without rebuilding it. `shown_steps`: the steps the view plays (the
    thinking overlay's)."""
    ss = st.session_state
    limits = tuple((n, b.step) for n, b in budget.items()) if q.equal else None
    notes = tuple((n, b.text) for n, b in budget.items()) if q.equal else ()
    computed = (tuple((n, r.steps, r.seed, len(r.paths)) for n, r in replays.items()),
                (thinking.model, len(thinking.views)) if thinking is not None else None)
    step = int(min(max(int(ss.get(state.K_STEP) or q.steps), 1), q.steps))
    prepared = _payload(g, tuple(optimal), replays, thinking, q, g.fingerprint, computed, shown_steps,
                        tuple(pending), tuple((n, tuple(c)) for n, c in colours.items()), tuple(titles.items()),
                        tuple((urls or {}).items()), bool(ss.get(state.K_BASEMAP)), limits, notes)
    return prepared.at(step, float(ss.get(state.K_SPEED, 1.0)))
