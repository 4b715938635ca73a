"""The visitor's session: the widgets' keys, the view they show, and the URL that reproduces it."""

from __future__ import annotations

import streamlit as st

from citypath.app import url
from citypath.app.resources import Catalog, label_index
from citypath.app.url import ViewState
from citypath.graph import CityGraph

# Session-state keys; the widget keys double as the names tests set.
K_SRC, K_DST, K_MODELS, K_STEPS, K_SEED = "source", "target", "models", "steps", "seed"
K_STEP, K_SPEED, K_CLICK, K_NEXT = "step", "speed", "click_mode", "click_next"
K_VIEW, K_NOTICES, K_BASEMAP = "_view", "_notices", "basemap"
K_PLAYER, K_PLAYER_SEQ = "player", "_player_seq"     # the player component's last report, and the last one handled
K_MORE, K_FULL_RERUN = "_more", "_full_rerun"          # the player asked for the next model; a click moved the route
K_PLAYER_SHOWN = "_player_shown"     # the player was drawn in this session (its first value is settled)
K_THINK = "show_state"
K_EQUAL, K_BUDGET = "equal_compute", "budget"
K_ARRIVED = "_arrived"               # when this visitor's first run started: its place in the queue of runs


def init_state(g: CityGraph, cat: Catalog) -> None:
    """Fill session state from the URL on a session's first run; restore widget keys after page switches."""
    ss = st.session_state
    if K_VIEW not in ss:
        view, notices = url.parse_query_params(st.query_params.to_dict(), g, cat.names,
                                                   max_steps=cat.steps_max, parameters=cat.parameters)
        ss[K_VIEW] = view
        ss[K_NOTICES] = notices
        ss[K_STEP] = view.step
        ss[K_SPEED] = view.speed
        ss[K_CLICK] = view.click
    view = ss[K_VIEW]
    # Streamlit forgets a widget's value when its page is not shown; put them back from the view.
    defaults = {K_SRC: g.label(view.source), K_DST: g.label(view.target), K_MODELS: list(view.models),
                K_STEPS: view.steps, K_SEED: view.seed, K_SPEED: view.speed, K_CLICK: view.click,
                K_NEXT: "source", K_STEP: view.step, K_BASEMAP: False, K_THINK: False,
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
    params = url.to_query_params(view, g)
    if st.query_params.to_dict() != params:
        st.query_params.from_dict(params)


def share_url(view: ViewState, g: CityGraph, step: int | None = None) -> str:
    """The full link that reproduces `view` (at `step`): this page's address plus the view's parameters."""
    from dataclasses import replace
    from urllib.parse import urlencode

    base = (st.context.url or "").split("?")[0] or "http://localhost:8501/"
    state = replace(view, step=step) if step is not None else view
    return f"{base}?{urlencode(url.to_query_params(state, g))}"
