"""citypath: watch a small neural model refine its route between two US cities.

    streamlit run app.py

Layout and widget wiring only; everything computed lives in citypath/ (the app room, citypath/app/, over the
view room, citypath/view/). See docs/app.md for what each control does.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time

import streamlit as st

from citypath import palette
from citypath.app import callbacks, downloads, picks, replays, resources, searches, state, turns, url
from citypath.cost import human as human_flops
from citypath.view import player, present

st.set_page_config(page_title="citypath · test-time compute", page_icon=resources.PAGE_ICON, layout="wide")
ss = st.session_state
# One run at a time computes in this process, the visitor who came first first: a crowd arriving at
# once is served through in order instead of all together at the end (citypath/app/turns.py).
with turns.turn():
    st.markdown("<style>.block-container{padding-top:2.2rem}"
                "[data-testid='stSidebar']{min-width:330px}</style>", unsafe_allow_html=True)

    g = resources.graph()
    cat = resources.catalog()
    state.init_state(g, cat)
    # The player's reports are handled by its callback before a rerun; this catches any it did not run for
    # (a report that arrives with a whole-page rerun), before the route is drawn.
    callbacks.on_player_event(g)

    # -- sidebar: the question -----------------------------------------------------------------
    with st.sidebar:
        st.subheader("Route")
        st.markdown(picks.route_text(ss[state.K_SRC], ss[state.K_DST]))
        st.caption("Type any city's name in **From** / **To** over the map, or click a city on the map.")
        c1, c2, c3 = st.columns(3)
        c1.button("Swap", on_click=callbacks.on_swap, width="stretch", key="swap")
        c2.button("Random", on_click=callbacks.on_random_pair, args=(g, True), width="stretch",
                  key="random", help="A random held-out pair: the models never saw it in training.")
        c3.button("Reset", on_click=callbacks.on_reset, args=(g, cat), width="stretch",
                  key="reset")
        st.radio("A click on the map sets", url.CLICK_MODES, key=state.K_CLICK, horizontal=True,
                 format_func={"alternate": "source, then target", "source": "source", "target": "target"}.get)

        interesting, _why_none = resources.interesting(g)
        if interesting:
            with st.expander("Interesting pairs", icon=":material/travel_explore:"):
                st.caption("Held-out pairs picked by `python -m citypath.pairs` from every shipped model's "
                           "routes: one click loads a pair.")
                for i, pick in enumerate(interesting):
                    st.button(f"{pick.label(g)}", key=f"pick-{i}", help=f"{pick.kind}: {pick.why}", width="stretch",
                              on_click=callbacks.on_pick_pair, args=(g, pick.source, pick.target))
                    st.caption(f"{pick.kind} — {pick.why}")

        st.subheader("Models")
        st.multiselect("Compare", cat.names, key=state.K_MODELS, format_func=cat.labels.get,
                       placeholder="no model: optimal path only", on_change=callbacks.on_route_change)
        st.slider("Refinement steps (test-time compute)", 1, cat.steps_max, key=state.K_STEPS,
                  on_change=callbacks.on_route_change,
                  help="How many times each model may refine its answer. Each step costs one more forward pass.")
        st.number_input("Seed", 0, url.MAX_SEED, step=1, key=state.K_SEED, on_change=callbacks.on_route_change)
        st.toggle("Equal compute", key=state.K_EQUAL, on_change=callbacks.on_route_change,
                  help="Give every model the same compute budget instead of the same number of steps: each shows "
                       "the most steps whose counted operations fit (one convention for every model; up to the "
                       "slider's maximum).")
        if ss[state.K_EQUAL]:
            st.select_slider("Compute budget per query (operations, log scale)", present.BUDGETS, key=state.K_BUDGET,
                             format_func=human_flops)
        st.toggle("Show what the model thinks", key=state.K_THINK,
                  help="Colour the cities by the first compared model's internal state at the shown step (for "
                       "families that have one, e.g. bellman: its estimated km to the target).")
        st.toggle("Basemap tiles (needs internet)", key=state.K_BASEMAP,
                  help="CARTO light tiles under the map, fetched by your browser. Without internet they stay blank; "
                       "the offline state outlines are drawn either way.")

    view = state.current_view(g)
    state.sync_url(view, g)

    # -- header -------------------------------------------------------------------------------------
    st.title("Can a small model think its way to a better route?")
    st.caption(
        f"A neural model routes between {g.n_cities:,} US cities (hops of at most {g.radius_km:g} km). "
        "It answers, then **refines its answer step by step**: more steps = more compute spent at test time. "
        "Press **▶ Play** (it plays in your browser) and watch each model's path (coloured) move toward the "
        "optimal Dijkstra path (green); "
        "red segments are illegal jumps longer than the radius.")

    for notice in ss.get(state.K_NOTICES, []):
        st.warning(f"This link was partly stale: {notice}", icon="🔗")
    if view.source == view.target:
        st.info("Source and target are the same city: pick two different cities to see a route.")

    optimal = searches.shortest_path(g, view.source, view.target)   # aside from the turn queue (a search process)
    urls = resources.static_urls(g, g.fingerprint)
    equal = bool(ss[state.K_EQUAL])
    # The question: with equal compute every model runs up to the slider's maximum (the budget picks its step).
    question = view.question(equal=equal, budget=float(ss[state.K_BUDGET]), steps_max=cat.steps_max)
    # Each model's own colour and line pattern (citypath/palette.py): the same on the map, the strip, the charts,
    # the exports and the other pages, and never shared by two models of this view.
    colours = palette.colours([name for name in view.models if name in cat.names])


    @st.fragment
    @turns.taking_turns                    # the fragment's own reruns wait their turn too
    def comparison() -> None:
        """The player and what reads the replays (errors, charts, downloads, the link).

        A fragment: the player's reports (a stop, a speed, a request for the next model) rerun only this,
        not the sidebar. The first run paints the map, the optimal path and every route computed already;
        while models are pending, the player asks for the next one and each request computes one model
        here, so each route appears as soon as it is computed.
        """
        if ss.pop(state.K_FULL_RERUN, False):
            st.rerun(scope="app")            # a click on a city changed the route: the sidebar shows it
        t0 = time.perf_counter()
        mset = resources.models_if_loaded(g)
        ticket = turns.ticket()     # the visitor's place: their models are computed in the order of arrival
        if mset is not None:        # routes stored already (by another process or visitor) come with this run
            replays.replay_next(mset, g, question, compute=False, ticket=ticket, steps_max=cat.steps_max)
        if ss.pop(state.K_MORE, False) and (mset is None or replays.replays_so_far(mset, g, question)[1]):
            with st.spinner("Loading the models…" if mset is None else "Running the next model…"):
                mset = resources.models(g)
                # in a worker process, waited for aside from the turn queue (citypath/app/compute.py)
                replays.replay_next(mset, g, question, ticket=ticket, steps_max=cat.steps_max)
        computed, pending = replays.replays_so_far(mset, g, question)
        thinking = (replays.thoughts(mset, g, view, ticket) if ss[state.K_THINK] and mset is not None and not pending
                    else None)
        budget = {name: present.steps_within(r, question.budget) for name, r in computed.items()} if equal else {}
        payload = replays.player_payload(g, question, optimal, computed, pending, colours, cat.labels, urls,
                                         thinking, budget, view.steps)
        callbacks.on_player_shown(player.show(payload, key=state.K_PLAYER,
                                              on_change=functools.partial(callbacks.on_player_event, g)))
        if mset is None or pending:
            st.caption("Computing the models' routes: each appears on the map when it is ready.")
            return

        if mset.failures:
            with st.expander(f"⚠️ {len(mset.failures)} checkpoint(s) could not be loaded; the others work",
                             expanded=False):
                for name, why in mset.failures.items():
                    st.markdown(f"- **{name}**: {why}")
        if not mset.models:
            st.info("No model checkpoints are available yet, so only the optimal path is shown. "
                    "Train one with `python -m citypath train ...` (see the README).")
        for r in computed.values():
            if r.error:
                st.error(r.error, icon="🧨")
        if thinking is not None and thinking.error:
            st.caption(thinking.error)

        step = int(min(max(ss[state.K_STEP], 1), view.steps))
        shown = {name: (budget[name].step if equal else step) for name in computed}
        # (The step charts are the player's: drawn in the browser, they follow playback.)
        buttons = [(f"PNG (step {step})" if not equal else "PNG (budget steps)", ":material/image:", "png",
                    "image/png"),
                   ("GIF (all steps)", ":material/animation:", "gif", "image/gif"),
                   ("GeoJSON (all steps)", ":material/map:", "geojson", "application/geo+json"),
                   ("CSV (all steps)", ":material/table:", "csv", "text/csv")]
        for col, (label, icon, ext, mime) in zip(st.columns(4), buttons):
            # Deferred: the file is rendered only when someone clicks, in a thread of its own.
            col.download_button(label, downloads.exporter(ext, g, view, computed, shown, colours),
                                downloads.download_name(g, view, shown, ext), mime,
                                icon=icon, on_click="ignore", width="stretch", disabled=ext == "gif" and not computed)
        # The link keeps the shown step, speed and click mode (the player reports the step when it stops).
        shared = dataclasses.replace(view, step=step, speed=float(ss[state.K_SPEED]), click=ss[state.K_CLICK])
        state.sync_url(shared, g)
        with st.popover("Copy link", icon=":material/link:"):
            st.caption("This view (pair, models, steps, seed, shown step, speed, click mode); copy with the icon:")
            st.code(state.share_url(shared, g), language=None, wrap_lines=True)
        st.caption(f"server time: this view {(time.perf_counter() - t0) * 1e3:.0f} ms (playback runs in your "
                   f"browser){turns.wait_text()} · graph {g.fingerprint[:12]} · {len(mset.models)} model(s) loaded · "
                   f"process {os.getpid()}")

    comparison()
