"""citypath.view.maplayers and citypath.view.basemap: the pydeck spec of a frame, offline outlines, view fitting."""

from __future__ import annotations

import json

from citypath.replay import Replay, Shown
from citypath.view import maplayers
from citypath.view.basemap import rings_in_box, state_rings


def test_state_rings_are_simplified_and_skip_alaska_hawaii():
    rings = state_rings()
    codes = {r.code for r in rings}
    assert len(codes) == 49 and "AK" not in codes and "HI" not in codes
    assert sum(len(r.lonlat) for r in rings) < 5000
    assert {r.code for r in rings_in_box(-72, 41, -70, 43)} >= {"MA", "RI"}


def frame(g, src, dst, optimal, runs, **static) -> list[dict]:
    """One frame's layers as the player draws them: the static layers under and over the routes."""
    bottom, top = maplayers.static_layers(g, src, dst, optimal, **static)
    return maplayers.layers_json(bottom + maplayers.route_layers(g, runs) + top)


def test_frame_spec_has_paths_ghost_illegal_and_is_compact(small_graph):
    g = small_graph
    src, dst = 0, 5
    optimal = g.shortest_path(src, dst)
    far = int(max(range(g.n_cities), key=lambda c: g.distance_km(src, c)))
    bad = [src, far, -1, "x", dst]
    runs = [Shown(Replay.from_paths(g, "m", src, dst, [[src, dst], bad]), 2, maplayers.model_rgb(0))]
    layers = {layer["id"]: layer for layer in frame(g, src, dst, optimal, runs, cities="app/static/c.json",
                                                     states="app/static/s.json")}
    text = json.dumps(list(layers.values()), separators=(",", ":"))
    assert {"optimal", "model-0", "hops-0", "ghosts", "illegal", "endpoints", "cities", "states"} <= set(layers)
    assert layers["cities"]["data"] == "app/static/c.json" and layers["cities"]["pickable"]
    assert layers["optimal"]["widthUnits"] == "pixels"  # a string, not an accessor expression
    assert len(layers["illegal"]["data"]) == len(maplayers.illegal_segments(g, bad)) >= 1
    assert [c["id"] for c in layers["hops-0"]["data"]] == [src, far, dst]  # unknown ids are skipped
    assert len(text) < 20_000


def test_inline_layers_and_no_model(small_graph):
    g = small_graph
    layers = frame(g, 0, 0, [0], [], cities=maplayers.cities_records(g))
    ids = [layer["id"] for layer in layers]
    assert "optimal" not in ids and "cities" in ids and "states" in ids
    cities = next(layer for layer in layers if layer["id"] == "cities")["data"]
    assert len(cities) == g.n_cities and {"id", "p", "tip"} <= set(cities[0])


def test_fit_view_contains_points():
    view = maplayers.fit_view([-124, -67], [25, 49])
    assert 2.5 < view.zoom < 5 and -100 < view.longitude < -90
    small = maplayers.fit_view([-71.1, -71.0], [42.3, 42.4])
    assert small.zoom > 8


def test_static_json_written_once(tmp_path, small_graph):
    paths = maplayers.write_static_json(small_graph, tmp_path)
    first = paths["cities"].stat().st_mtime_ns
    assert maplayers.write_static_json(small_graph, tmp_path)["cities"].stat().st_mtime_ns == first
    assert len(json.loads(paths["cities"].read_text())) == small_graph.n_cities
    assert json.loads(paths["states"].read_text())[0]["path"]


def test_state_layer_colours_known_cities_on_a_fixed_scale(small_graph):
    import numpy as np

    from citypath.view.maplayers import STATE_RAMP, state_colours, state_layer

    g = small_graph
    values = np.full(g.n_cities, np.nan)
    values[:5] = [0.0, 10.0, 20.0, 30.0, 40.0]
    layer = state_layer(g, values, "estimated km to target", "km", low=0.0, high=40.0)
    assert len(layer.data) == 5 and "40 km" in layer.data[4]["tip"]
    assert layer.data[0]["c"] == STATE_RAMP[0].astype(int).tolist()
    assert layer.data[4]["c"] == STATE_RAMP[-1].astype(int).tolist()
    assert state_layer(g, np.full(g.n_cities, np.nan), "x", "") is None
    assert (state_colours(np.array([-5.0, 99.0]), 0.0, 40.0) == STATE_RAMP[[0, -1]].astype(int)).all()


def test_basemap_tiles_keep_the_offline_outlines(small_graph):
    g = small_graph
    states = lambda basemap: next(layer for layer in frame(g, 0, 5, g.shortest_path(0, 5), [],  # noqa: E731
                                                           states="app/static/s.json", basemap=basemap)
                                  if layer["id"] == "states")
    plain, tiles = states(False), states(True)
    assert plain["filled"] and plain["stroked"]
    assert tiles["stroked"] and not tiles["filled"]     # tiles show through, outlines stay


def test_layers_json_is_pydecks_own_serialisation(small_graph):
    """layers_json passes the records through instead of a JSON round trip: what it gives must equal pydeck's
    whole serialisation for every layer this module builds (routes, ghosts, jumps, static, state)."""
    import numpy as np
    import pydeck as pdk

    g = small_graph
    src, dst = 0, 5
    optimal = g.shortest_path(src, dst)
    far = int(max(range(g.n_cities), key=lambda c: g.distance_km(src, c)))
    runs = [Shown(Replay.from_paths(g, "m", src, dst, [[src, dst], [src, far, -1, "x", dst]]), 2,
                  maplayers.model_rgb(0)),
            Shown(Replay.from_paths(g, "n", src, dst, [optimal]), 1, maplayers.model_rgb(1))]
    values = np.where(np.arange(g.n_cities) % 3 == 0, np.nan, np.arange(g.n_cities, dtype=float))
    bottom, top = maplayers.static_layers(g, src, dst, optimal, cities=maplayers.cities_records(g))
    layer_sets = [maplayers.route_layers(g, runs), bottom, top,
                  maplayers.static_layers(g, src, dst, optimal, cities="app/static/c.json", basemap=True)[0],
                  [maplayers.state_layer(g, values, "km to go", "km")]]

    def pydecks(layers):
        return json.loads(maplayers.CompactDeck(layers=list(layers)).to_json())["layers"]

    for layers in layer_sets:
        assert maplayers.layers_json(layers) == pydecks(layers)
    ids = {layer["id"] for layer in maplayers.layers_json(layer_sets[0])}
    assert {"ghosts", "model-0", "hops-0", "illegal", "model-1"} <= ids
    # data that is not plain JSON values (numpy scalars) takes pydeck's round trip, as before
    odd = pdk.Layer("ScatterplotLayer", [{"p": [np.float32(1.5), 2.0], "n": np.int64(3)}], id="odd",
                    get_position="p")
    assert maplayers.layers_json([odd]) == pydecks([odd])
    json.dumps(maplayers.layers_json([odd]))


def test_state_outline_records_are_built_once_and_shared():
    assert maplayers.states_records() is maplayers.states_records()
    assert len(maplayers.states_records()) == len(state_rings())
