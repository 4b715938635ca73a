"""citypath.view.export: PNG, GIF, GeoJSON and CSV of a path comparison, garbage included."""

from __future__ import annotations

import csv
import io
import json

from PIL import Image

from citypath.replay import Replay, Shown
from citypath.view import export


def runs_for(g, src, dst):
    optimal = g.shortest_path(src, dst)
    far = int(max(range(g.n_cities), key=lambda c: g.distance_km(src, c)))
    steps = [[src, far, dst], [src, -3, "x", dst], optimal]
    return [Shown(Replay.from_paths(g, "model-a", src, dst, steps), 3),
            Shown(Replay.from_paths(g, "model-b", src, dst, [[], None, [dst]]), 2)]


def test_png_is_a_real_image(small_graph):
    g = small_graph
    png = export.render_png(g, 0, 7, runs_for(g, 0, 7), dpi=80)
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.width > 400 and img.height > 300
    assert len(img.convert("RGB").getcolors(maxcolors=1_000_000)) > 50


def test_png_without_models(small_graph):
    assert export.render_png(small_graph, 0, 7, [], dpi=60)[:4] == b"\x89PNG"


def test_gif_has_one_frame_per_step(small_graph):
    g = small_graph
    gif = Image.open(io.BytesIO(export.render_gif(g, 0, 7, runs_for(g, 0, 7), dpi=50)))
    assert gif.format == "GIF" and gif.n_frames == 3


def test_metrics_rows_start_with_optimal(small_graph):
    rows = export.metrics_rows(small_graph, 0, 7, runs_for(small_graph, 0, 7))
    assert rows[0][:2] == ["optimal", "yes"] and rows[1][0] == "model-a @ 3" and len(rows) == 3


def test_geojson(small_graph):
    g = small_graph
    fc = json.loads(export.to_geojson(g, 0, 7, runs_for(g, 0, 7), all_steps=True))
    assert fc["type"] == "FeatureCollection"
    kinds = [f["properties"]["kind"] for f in fc["features"]]
    assert kinds[0] == "optimal" and kinds.count("model") == 6
    assert fc["features"][0]["geometry"]["type"] == "LineString"
    empty = [f for f in fc["features"] if f["properties"].get("model") == "model-b" and f["properties"]["step"] == 1]
    assert empty[0]["geometry"] is None


def test_csv_keeps_unknown_ids(small_graph):
    g = small_graph
    rows = list(csv.DictReader(io.StringIO(export.to_csv(g, 0, 7, runs_for(g, 0, 7)))))
    assert rows[0]["kind"] == "optimal" and rows[0]["label"] == g.label(0)
    unknown = [r for r in rows if r["label"] == "(unknown id)"]
    assert {r["city_id"] for r in unknown} == {"-3", "x"}


def test_figures_against_the_optimal_route_only_for_routes_that_arrive(small_graph):
    """The PNG's table and the GeoJSON: a route that does not arrive has no length vs optimal or Fréchet ("—",
    with the table's footnote; null in the GeoJSON), never a figure shorter than the optimal route."""
    from citypath.metrics import NOT_ARRIVED_NOTE, NOT_ARRIVED_SHORT

    g = small_graph
    src, dst = 0, 7
    optimal = g.shortest_path(src, dst)
    half = optimal[: max(len(optimal) // 2, 1)]
    runs = [Shown(Replay.from_paths(g, "stops-short", src, dst, [half, optimal]), 1)]
    rows = export.metrics_rows(g, src, dst, runs)
    header = export.TABLE_HEADER
    row = dict(zip(header, rows[1]))
    assert row["vs optimal"] == row["Fréchet km"] == NOT_ARRIVED_SHORT and row["reaches"] == "no"
    assert export._table_note(rows) == NOT_ARRIVED_NOTE
    arrives = export.metrics_rows(g, src, dst, [Shown(runs[0].replay, 2)])
    assert dict(zip(header, arrives[1]))["vs optimal"] == "+0.0%" and export._table_note(arrives) == ""
    fc = json.loads(export.to_geojson(g, src, dst, runs, all_steps=True))
    by_step = {f["properties"]["step"]: f["properties"] for f in fc["features"] if f["properties"]["kind"] == "model"}
    assert by_step[1]["length_ratio"] is None and by_step[1]["frechet_km"] is None
    assert by_step[2]["length_ratio"] == 1.0 and by_step[2]["frechet_km"] == 0.0


def test_gif_legend_is_inside_every_frame_with_tight_margins(small_graph):
    """The GIF's legend sits under the map inside every frame (nothing touches the frame's edge, so nothing is
    cut), every frame has one size, and the white margin around the map, title and legend is a few pixels."""
    from PIL import ImageSequence

    from citypath import palette

    g = small_graph
    names = ["bellman-tiny", "post-rnn-large", "memory-search", "gru-small", "astar", "refiner-small-long"]
    colours = palette.colours(names)
    runs = [Shown(Replay.from_paths(g, n, 0, 7, runs_for(g, 0, 7)[0].paths), 3, colours[n]) for n in names]
    gif = Image.open(io.BytesIO(export.render_gif(g, 0, 7, runs, dpi=60)))
    sizes = set()
    for frame in ImageSequence.Iterator(gif):
        img = frame.convert("L")
        sizes.add(img.size)
        ink = img.point(lambda v: 255 if v < 235 else 0).getbbox()
        margins = (ink[0], ink[1], img.size[0] - ink[2], img.size[1] - ink[3])
        assert min(margins) >= 2 and max(margins) <= 12, (margins, img.size)
    assert len(sizes) == 1 and gif.n_frames == 3
    # the legend is below the map: the frame is taller than the map panel's own aspect would make it
    width, height = sizes.pop()
    assert height > 0.5 * width


def test_exports_draw_each_model_in_its_palette_style(small_graph):
    """The PNG draws a model's route in its colour (citypath.palette), as the map and the strip do."""
    import numpy as np

    from citypath import palette

    g = small_graph
    names = ["bellman-tiny", "astar"]
    colours = palette.colours(names)
    optimal = g.shortest_path(0, 7)
    runs = [Shown(Replay.from_paths(g, n, 0, 7, [optimal]), 1, colours[n]) for n in names]
    img = np.asarray(Image.open(io.BytesIO(export.render_png(g, 0, 7, runs, dpi=100))).convert("RGB")).astype(int)
    for n in names:
        near = (np.abs(img - np.array(colours[n])).max(axis=2) <= 3).sum()
        assert near > 10, n
    assert export._linestyle(runs[1], 1) == palette.FIXED["astar"].linestyle() != "solid"
