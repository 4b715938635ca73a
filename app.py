"""citypath: watch a small neural model refine its route between two US cities.

    streamlit run app.py

Layout and widget wiring only; everything computed lives in citypath/ (ui, session, maplayers,
export). See docs/app.md for what each control does.
"""

from __future__ import annotations

import dataclasses
import functools
import time

import streamlit as st

from citypath import session, ui
from citypath.maplayers import (
    ILLEGAL_RGB,
    OPTIMAL_RGB,
    MapRun,
    build_deck,
    model_rgb,
    rgb_hex,
    view_for_pair,
)

st.set_page_config(page_title="citypath · test-time compute", page_icon="🗺️", layout="wide")
run_started = time.perf_counter()
ss = st.session_state
# Eight metrics per model share one row: a smaller value font keeps "1,197 km" from being cut.
st.markdown("<style>[data-testid='stMetricValue']{font-size:1.35rem}"
            "[data-testid='stMetricLabel'] p{font-size:0.8rem}"
            ".block-container{padding-top:2.2rem}"
            "[data-testid='stSidebar']{min-width:330px}</style>", unsafe_allow_html=True)

g = ui.graph()
cat = ui.catalog()
ui.init_state(g, cat)
labels = ui.labels(g, g.fingerprint)

# -- sidebar: the question -----------------------------------------------------------------
with st.sidebar:
    st.subheader("Route")
    st.selectbox("From", labels, key=ui.K_SRC, on_change=ui.on_route_change,
                 help="Type to search any of the cities in the graph.")
    st.selectbox("To", labels, key=ui.K_DST, on_change=ui.on_route_change)
    c1, c2, c3 = st.columns(3)
    c1.button("Swap", on_click=ui.on_swap, width="stretch", key="swap")
    c2.button("Random", on_click=ui.on_random_pair, args=(g, True), width="stretch",
              key="random", help="A random held-out pair: the models never saw it in training.")
    c3.button("Reset", on_click=ui.on_reset, args=(g, cat), width="stretch",
              key="reset")
    st.radio("A click on the map sets", session.CLICK_MODES, key=ui.K_CLICK, horizontal=True,
             format_func={"alternate": "source, then target", "source": "source", "target": "target"}.get)

    picks, _why_none = ui.interesting(g)
    if picks:
        with st.expander("Interesting pairs", icon=":material/travel_explore:"):
            st.caption("Held-out pairs picked by `python -m citypath.reports pairs` from every shipped model's "
                       "routes: one click loads a pair.")
            for i, pick in enumerate(picks):
                st.button(f"{pick.label(g)}", key=f"pick-{i}", help=f"{pick.kind}: {pick.why}", width="stretch",
                          on_click=ui.on_pick_pair, args=(g, pick.source, pick.target))
                st.caption(f"{pick.kind} — {pick.why}")

    st.subheader("Models")
    st.multiselect("Compare", cat.names, key=ui.K_MODELS, format_func=cat.labels.get,
                   placeholder="no model: optimal path only", on_change=ui.on_route_change)
    st.slider("Refinement steps (test-time compute)", 1, cat.steps_max, key=ui.K_STEPS, on_change=ui.on_steps_change,
              help="How many times each model may refine its answer. Each step costs one more forward pass.")
    st.number_input("Seed", 0, session.MAX_SEED, step=1, key=ui.K_SEED, on_change=ui.on_route_change)
    st.toggle("Equal compute", key=ui.K_EQUAL, on_change=ui.on_route_change,
              help="Give every model the same compute budget instead of the same number of steps: each shows "
                   "the most steps whose FLOPs fit (up to the slider's maximum).")
    if ss[ui.K_EQUAL]:
        st.select_slider("Compute budget per query (FLOPs, log scale)", session.BUDGETS, key=ui.K_BUDGET,
                         format_func=session.human_flops)
    st.toggle("Show what the model thinks", key=ui.K_THINK,
              help="Colour the cities by the first compared model's internal state at the shown step (for "
                   "families that have one, e.g. bellman: its estimated km to the target).")
    st.toggle("Basemap tiles (needs internet)", key=ui.K_BASEMAP,
              help="CARTO light tiles under the map, fetched by your browser. Without internet they stay blank; "
                   "the offline state outlines are drawn either way.")

view = ui.current_view(g)
ui.sync_url(view, g)

# -- header -------------------------------------------------------------------------------------
st.title("Can a small model think its way to a better route?")
st.caption(
    f"A neural model routes between {g.n_cities:,} US cities (hops of at most {g.radius_km:g} km). "
    "It answers, then **refines its answer step by step**: more steps = more compute spent at test time. "
    "Press **▶ Play** and watch each model's path (coloured) move toward the optimal Dijkstra path (green); "
    "red segments are illegal jumps longer than the radius.")

for notice in ss.get(ui.K_NOTICES, []):
    st.warning(f"This link was partly stale: {notice}", icon="🔗")
if view.source == view.target:
    st.info("Source and target are the same city: pick two different cities to see a route.")

optimal = g.shortest_path(view.source, view.target)
urls = ui.static_urls(g, g.fingerprint)
map_view = view_for_pair(g, view.source, view.target, optimal)
first_paint = st.empty()
if not ui.ready(g, view):
    # Cold start: show the map and the optimal path at once, while models load and run.
    with first_paint.container():
        st.pydeck_chart(build_deck(g, view.source, view.target, optimal, [], view=map_view,
                                   cities=urls["cities"] if urls else None, states=urls["states"] if urls else None),
                        height=560)
mset = ui.models(g)
if mset.failures:
    with st.expander(f"⚠️ {len(mset.failures)} checkpoint(s) could not be loaded; the others work", expanded=False):
        for name, why in mset.failures.items():
            st.markdown(f"- **{name}**: {why}")
if not mset.models:
    st.info("No model checkpoints are available yet, so only the optimal path is shown. "
            "Train one with `python -m citypath train ...` (see the README).")

equal = bool(ss[ui.K_EQUAL])
run_view = dataclasses.replace(view, steps=cat.steps_max) if equal else view   # equal compute: all steps
with st.spinner("Running the models…"):
    replays = {name: ui.replay(mset, g, name, run_view) for name in view.models if name in mset.models}
    thinking = ui.thoughts(mset, g, view) if ss[ui.K_THINK] else None
colours = {name: model_rgb(cat.names.index(name)) for name in replays}
model_labels = {name: session.model_label(m) for name, m in mset.models.items()}
first_paint.empty()

for r in replays.values():
    if r.error:
        st.error(r.error, icon="🧨")

playing = bool(ss[ui.K_PLAY]) and ui.animation_enabled() and not equal


@st.fragment(run_every=(1.0 / ss[ui.K_SPEED]) if playing else None)
def player() -> None:
    """One animation frame: controls, map, live metrics and charts for the current step."""
    if ss.pop(ui.K_FULL_RERUN, False) or (bool(ss[ui.K_PLAY]) and ui.animation_enabled()) != playing:
        st.rerun(scope="app")
    t0 = time.perf_counter()
    if ss[ui.K_PLAY]:
        if not ui.advance(view.steps):
            st.rerun(scope="app")  # reached the last step: stop the timer
    ss[ui.K_STEP] = int(min(max(ss.get(ui.K_STEP, view.steps), 1), view.steps))
    step = ss[ui.K_STEP]

    budget = {name: session.steps_within(r, ss[ui.K_BUDGET]) for name, r in replays.items()} if equal else {}
    shown = {name: (budget[name].step if equal else step) for name in replays}
    if equal:
        st.markdown(f"**Equal compute: {session.human_flops(ss[ui.K_BUDGET])} per query.** Each model shows the "
                    "most refinement steps that fit in the budget (its own FLOPs count); turn *Equal compute* off "
                    "in the sidebar to play steps.")
    if not equal:
        b1, b2, b3, b4, b5 = st.columns([1.15, 1.25, 1.1, 1.6, 4.9], vertical_alignment="bottom")
        b1.button("Back", icon=":material/skip_previous:", on_click=ui.on_step, args=(-1,), width="stretch",
                  disabled=step <= 1)
        b2.button("Pause" if ss[ui.K_PLAY] else "Play", icon=":material/pause:" if ss[ui.K_PLAY] else
                  ":material/play_arrow:", on_click=ui.on_play, type="primary",
                  width="stretch", key="play_button", disabled=not replays or view.steps <= 1,
                  help=None if replays and view.steps > 1 else "Nothing to play: choose a model and more than 1 step.")
        b3.button("Next", icon=":material/skip_next:", on_click=ui.on_step, args=(1,), width="stretch",
                  disabled=step >= view.steps)
        b4.select_slider("Speed (steps/s)", ui.SPEEDS, key=ui.K_SPEED)
        if view.steps > 1:
            b5.slider("Showing step", 1, view.steps, key=ui.K_STEP, on_change=lambda: ss.update({ui.K_PLAY: False}))
        else:
            b5.markdown("Showing step **1** of 1")

    runs = [MapRun(name, r.path(shown[name]), r.path(shown[name] - 1) if shown[name] > 1 else None, colours[name],
                   shown[name]) for name, r in replays.items() if shown[name] >= 1]
    state_layers, state_legend = ui.thinking_layers(g, thinking, step)
    deck = build_deck(g, view.source, view.target, optimal, runs,
                      cities=urls["cities"] if urls else ui.city_records(g, g.fingerprint),
                      states=urls["states"] if urls else None, view=map_view, basemap=ss[ui.K_BASEMAP],
                      extra=state_layers)
    key = ui.map_key()
    st.pydeck_chart(deck, on_select=functools.partial(ui.on_map_select, g, key), selection_mode="single-object",
                    key=key, height=560)
    legend = [(rgb_hex(OPTIMAL_RGB), f"optimal ({len(optimal) - 1} hops, {g.path_length_km(optimal):,.0f} km)",
               "line")]
    legend += [(rgb_hex(colours[n]), f"{n} · step {shown[n]}", "line") for n in replays if shown[n] >= 1]
    if step > 1 and replays:
        legend.append(("#777777", "previous step (ghost)", "ghost"))
    legend += [(rgb_hex(ILLEGAL_RGB), f"illegal jump (> {g.radius_km:g} km)", "dash"),
               ("#111111", "source / target", "dot")]
    legend += state_legend
    st.markdown(ui.legend_html(legend), unsafe_allow_html=True)
    if thinking is not None and thinking.error:
        st.caption(thinking.error)

    for name, r in replays.items():
        dot = f"<span style='color:{rgb_hex(colours[name])};font-size:1.2rem'>●</span> **{model_labels[name]}**"
        if equal:
            st.markdown(f"{dot} — {budget[name].text}", unsafe_allow_html=True)
            if shown[name] < 1:
                continue
        else:
            halt = session.halting_text(r)
            spent = session.compute_so_far(r.metrics, step)
            st.markdown(f"{dot} — step {step} of {view.steps}" + (f" · {spent}" if spent else "")
                        + (f" · *{halt}*" if halt else ""), unsafe_allow_html=True)
        cards = session.metric_cards(r.metrics, shown[name])
        for col, card in zip(st.columns(len(cards)), cards):
            col.metric(card.label, card.value, card.delta, delta_color=card.delta_color, help=card.help)

    table = ui.step_chart_table(replays, step) if not equal else None
    if table is not None:
        palette = {n: rgb_hex(colours[n]) for n in replays}
        for col, (field, title, fmt) in zip(st.columns(len(ui.STEP_CHARTS)), ui.STEP_CHARTS):
            col.vega_lite_chart(table, ui.step_chart_spec(field, title, view.steps, palette, fmt), width="stretch")

    downloads = [("PNG (this step)", ":material/image:", "png", "image/png"),
                 ("GIF (all steps)", ":material/animation:", "gif", "image/gif"),
                 ("GeoJSON (all steps)", ":material/map:", "geojson", "application/geo+json"),
                 ("CSV (all steps)", ":material/table:", "csv", "text/csv")]
    for col, (label, icon, ext, mime) in zip(st.columns(4), downloads):
        # Deferred: the file is rendered only when someone clicks, in a thread of its own.
        col.download_button(label, ui.exporter(ext, g, view, replays, shown, colours),
                            ui.download_name(g, view, shown, ext), mime,
                            icon=icon, on_click="ignore", width="stretch", disabled=ext == "gif" and not replays)
    if not ss[ui.K_PLAY]:   # the link keeps the shown step, speed and click mode (not rewritten every frame)
        shared = dataclasses.replace(view, step=step, speed=float(ss[ui.K_SPEED]), click=ss[ui.K_CLICK])
        ui.sync_url(shared, g)
        with st.popover("Copy link", icon=":material/link:"):
            st.caption("This view (pair, models, steps, seed, shown step, speed, click mode); copy with the icon:")
            st.code(ui.share_url(shared, g), language=None, wrap_lines=True)
    ss["_frame_ms"] = (time.perf_counter() - t0) * 1e3


player()
ss["_run_ms"] = (time.perf_counter() - run_started) * 1e3
st.caption(f"server time: this page {ss['_run_ms']:.0f} ms, last animation frame {ss.get('_frame_ms', 0):.0f} ms · "
           f"graph {g.fingerprint[:12]} · {len(mset.models)} model(s) loaded")
