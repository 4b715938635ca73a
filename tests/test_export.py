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
