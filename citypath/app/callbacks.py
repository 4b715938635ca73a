"""The widgets' callbacks: each changes the session's view before the rerun it triggers."""

from __future__ import annotations

import time

import numpy as np
import streamlit as st

from citypath.app import picks, url
from citypath.app.resources import Catalog, label_index
from citypath.app.state import (
    K_CLICK,
    K_DST,
    K_FULL_RERUN,
    K_MODELS,
    K_MORE,
    K_NEXT,
    K_NOTICES,
    K_PLAYER,
    K_PLAYER_SEQ,
    K_PLAYER_SHOWN,
    K_SEED,
    K_SPEED,
    K_SRC,
    K_STEP,
    K_STEPS,
)
from citypath.app.url import SPEEDS
from citypath.graph import CityGraph
from citypath.view import player


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
    src, dst = picks.random_heldout_pair(g, rng, heldout=heldout)
    ss[K_SRC], ss[K_DST] = g.label(src), g.label(dst)
    on_route_change()


def on_reset(g: CityGraph, cat: Catalog) -> None:
    ss = st.session_state
    view = url.default_state(g, cat.names, cat.parameters)
    ss[K_SRC], ss[K_DST] = g.label(view.source), g.label(view.target)
    ss[K_MODELS], ss[K_STEPS], ss[K_SEED] = list(view.models), view.steps, view.seed
    ss[K_NOTICES] = []
    on_route_change()


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
        src, dst, ss[K_NEXT] = picks.apply_click(src, dst, city, ss[K_CLICK], ss[K_NEXT])
        ss[K_SRC], ss[K_DST] = g.label(src), g.label(dst)
        on_route_change()
        ss[K_FULL_RERUN] = True
        return
    ss[K_STEP] = int(min(max(event["step"], 1), int(ss[K_STEPS])))
    if event["speed"] in SPEEDS:
        ss[K_SPEED] = event["speed"]


def on_player_shown(value: object) -> None:
    """The player's value as a session first draws it: a report its browser made to another app process.

    A browser whose app process died reconnects to a live one (the balancer moves it) and sends what it held:
    the link, which the dead process had already updated with what the player reported, and the player's last
    report. The new session rebuilds the view from the link, so that report is marked handled, never applied a
    second time on a later rerun (a click on the target, applied again by a session that starts with the
    source as the next end, would set the source to the target).
    """
    ss = st.session_state
    if ss.get(K_PLAYER_SHOWN):
        return
    ss[K_PLAYER_SHOWN] = True
    event = player.read_event(value, int(ss.get(K_PLAYER_SEQ, 0)))
    if event is not None:
        ss[K_PLAYER_SEQ] = event["seq"]
