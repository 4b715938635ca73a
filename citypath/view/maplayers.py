"""The pydeck map: state outlines, all cities, the optimal path and each model's path.


Layers, bottom to top: state fills and outlines (offline, from `citypath.view.basemap`), every city
as a faint pickable dot (click one to set an end of the route), the previous step of each
model as a faint ghost, the optimal path, each model's current path in its own colour with
its hops as dots, illegal jumps as red straight segments, and the two endpoints.

The all-cities layer is the only heavy one (~21k points). The app serves it once as a static
JSON file and passes its URL as the layer's data, so an animation frame resends only the
paths: a few kilobytes instead of ~1.5 MB (see docs/app.md).
"""

from __future__ import annotations

import functools
import json
import math
import weakref
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import orjson
import pydeck as pdk
from pydeck.bindings import deck as _pydeck_deck
from pydeck.bindings.json_tools import IGNORE_KEYS, default_serialize, lower_camel_case_keys

from citypath.cache import process_cache, write_atomic
from citypath.graph import CityGraph
from citypath.metrics import as_ids, hop_legality
from citypath.palette import (
    CITY_RGBA,
    ILLEGAL_RGB,
    OPTIMAL_RGB,
    PALETTE,
    SOURCE_RGB,
    STATE_FILL_RGBA,
    STATE_LINE_RGBA,
    TARGET_RGB,
    style_of,
)
from citypath.replay import Shown, Thoughts
from citypath.view.basemap import state_rings

# pydeck's Deck() asks on every construction whether its Jupyter widget can be imported; with no
# Jupyter installed that is a failed import that scans sys.path each time: ~10% of the app
# server's time under load (py-spy, benchmarks/load_app.py). The answer cannot change while the
# process runs, so ask once.
if not isinstance(_pydeck_deck.has_jupyter_extra, functools._lru_cache_wrapper):
    _pydeck_deck.has_jupyter_extra = functools.cache(_pydeck_deck.has_jupyter_extra)


# Every colour is citypath.palette's (the models' styles and the map's fixed ones); red is for illegal jumps only.
MODEL_RGBS = tuple(s.rgb for s in PALETTE)
CITIES_LAYER_ID = "cities"
# pydeck turns a bare string kwarg into an accessor expression ("@@=pixels"); quotes keep it a string.
PIXELS = '"pixels"'



class CompactDeck(pdk.Deck):
    """A Deck whose JSON has no indentation: st.pydeck_chart sends `to_json()` as is, and pydeck's
    indent=2 default triples the bytes of every frame."""

    def to_json(self) -> str:
        return json.dumps(self, sort_keys=True, default=default_serialize, separators=(",", ":"))


def model_rgb(index: int) -> tuple[int, int, int]:
    """The palette's `index`-th colour (a stand-in where no model is named; the app colours models by name with
    `citypath.palette.colours`)."""
    return MODEL_RGBS[index % len(MODEL_RGBS)]


def dash_props(rgb) -> dict:
    """A path layer's line pattern for a model's colour (its palette style): deck.gl's PathStyleExtension, or
    nothing for a solid line."""
    pattern = style_of(rgb).pattern
    if pattern is None:
        return {}
    return {"extensions": [{"@@type": "PathStyleExtension", "dash": True}], "get_dash_array": list(pattern),
            "dash_justified": True}


def rgb_hex(rgb: Sequence[int]) -> str:
    return "#" + "".join(f"{int(c):02x}" for c in rgb[:3])


# graph -> (every city's "Label\npop N", every city's [lon, lat] rounded to 5 decimals), by id
_CITY_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _city_table(g: CityGraph) -> tuple[list[str], list[list[float]]]:
    """Every city's tooltip head and map position, by id, built once per graph: a pandas row per hop
    (`.iloc`) was ~70% of building a new pair's player (16 steps, two models: ~900 hops), and rounding
    each hop's coordinates again ~20% of what was left. The position lists are shared by every layer's
    records (so never modified)."""
    table = _CITY_TABLES.get(g)
    if table is None:
        pops = g.cities["population"].tolist()
        tips = [f"{label}\npop {int(pop):,}" for label, pop in zip(g.labels, pops)]
        table = _CITY_TABLES[g] = (tips, np.column_stack([np.round(g.lon, 5), np.round(g.lat, 5)]).tolist())
    return table


def _tips(g: CityGraph) -> list[str]:
    return _city_table(g)[0]


def _tip(g: CityGraph, city: int, extra: str = "") -> str:
    return _tips(g)[city] + extra


# -- the heavy, static layer ------------------------------------------------------------

def cities_records(g: CityGraph) -> list[dict]:
    """Every city as {id, p: [lon, lat], tip}, the data of the pickable all-cities layer."""
    lon = np.round(g.lon, 4).tolist()
    lat = np.round(g.lat, 4).tolist()
    tips = _tips(g)
    return [{"id": i, "p": [lon[i], lat[i]], "tip": tips[i]} for i in range(g.n_cities)]


def cities_layer(data: str | list[dict]) -> pdk.Layer:
    """All cities as a faint pickable scatter; `data` is a URL (served once) or the records."""
    return pdk.Layer("ScatterplotLayer", data, id=CITIES_LAYER_ID, get_position="p", get_fill_color=list(CITY_RGBA),
                     get_radius=1500, radius_min_pixels=1.2, radius_max_pixels=6, pickable=True,
                     auto_highlight=True, highlight_color=[17, 17, 17, 200])


@process_cache(maxsize=1)
def states_records() -> list[dict]:
    """Every state ring as {path: [[lon, lat], ...], name}: built once per process (concurrent first callers
    wait for one build) and shared by every map's outline layer, so never modify it."""
    return [{"path": r.lonlat.tolist(), "name": r.name} for r in state_rings()]


def write_static_json(g: CityGraph, directory: str | Path) -> dict[str, Path]:
    """Write the frame-independent layer data (cities, states) into `directory` once; returns their paths."""
    directory = Path(directory)
    out = {"cities": directory / f"cities-{g.fingerprint[:16]}.json", "states": directory / "states-v1.json"}
    for key, path in out.items():
        if not path.is_file():
            directory.mkdir(parents=True, exist_ok=True)
            write_atomic(path, json.dumps(cities_records(g) if key == "cities" else states_records(),
                                          separators=(",", ":")))
    return out


def state_layers(data: str | list[dict] | None = None, *, filled: bool = True) -> list[pdk.Layer]:
    """Filled states with grey outlines: a readable map without any tiles (`data`: a URL or the records).

    One layer for fill and outline, so the outlines' data is sent once (two layers sent it twice: 95 KB
    of every visitor's 97 KB of player arguments). `filled=False` (tiles under the map): outlines only.
    """
    rings = states_records() if data is None else data
    return [pdk.Layer("PolygonLayer", rings, id="states", get_polygon="path", filled=filled, stroked=True,
                      get_fill_color=list(STATE_FILL_RGBA), get_line_color=list(STATE_LINE_RGBA),
                      get_line_width=1, line_width_units=PIXELS, pickable=False)]


# -- the per-frame layers ---------------------------------------------------------------

def _known(g: CityGraph, path: Sequence) -> np.ndarray:
    ids = as_ids(path, g.n_cities)
    return ids[ids >= 0]


def _coords(g: CityGraph, ids: np.ndarray) -> list[list[float]]:
    points = _city_table(g)[1]
    return [points[c] for c in ids.tolist()]


def illegal_segments(g: CityGraph, path: Sequence) -> list[tuple[int, int, float]]:
    """(a, b, km) for each hop between known cities that is longer than the radius."""
    ids = as_ids(path, g.n_cities)
    a, b = ids[:-1], ids[1:]
    km, illegal = hop_legality(g, a, b)
    drawn = illegal & (a >= 0) & (b >= 0)     # a hop to an unknown id has no second end to draw
    return [(int(x), int(y), float(d)) for x, y, d in zip(a[drawn], b[drawn], km[drawn])]


def optimal_layers(g: CityGraph, optimal: Sequence[int]) -> list[pdk.Layer]:
    """The optimal (Dijkstra) path, wide and green, under the models' routes (none for fewer than 2 cities)."""
    opt = np.asarray(optimal, dtype=np.int64)
    if len(opt) < 2:
        return []
    return [pdk.Layer(
        "PathLayer", [{"path": _coords(g, opt), "tip": f"optimal (Dijkstra): {len(opt) - 1} hops, "
                                                        f"{g.path_length_km(opt):,.0f} km"}],
        id="optimal", get_path="path", get_color=[*OPTIMAL_RGB, 150], get_width=9, width_units=PIXELS,
        pickable=True, joint_rounded=True, cap_rounded=True)]


def route_layers(g: CityGraph, runs: Sequence[Shown], *, ghosts: bool = True) -> list[pdk.Layer]:
    """One frame's routes: ghosts of the previous step (unless `ghosts` is False: a still view has no previous
    step to show), each model's path (in its palette style) with its hops, illegal jumps."""
    layers = []
    rgbs = [tuple(r.rgb or model_rgb(i)) for i, r in enumerate(runs)]
    ghosts = [{"path": _coords(g, _known(g, r.previous)), "tip": f"{r.name}, step {r.step - 1}",
               "color": [*rgb, 70]} for r, rgb in zip(runs, rgbs)
              if ghosts and r.previous is not None and len(_known(g, r.previous)) > 1]
    if ghosts:
        layers.append(pdk.Layer("PathLayer", ghosts, id="ghosts", get_path="path", get_color="color", get_width=3,
                                width_units=PIXELS, width_min_pixels=2, pickable=True, joint_rounded=True))
    for i, (r, rgb) in enumerate(zip(runs, rgbs)):
        known = _known(g, r.path())
        if len(known) > 1:
            layers.append(pdk.Layer(
                "PathLayer", [{"path": _coords(g, known), "tip": f"{r.name}, step {r.step}"}],
                id=f"model-{i}", get_path="path", get_color=[*rgb, 235], get_width=3.5, width_units=PIXELS,
                pickable=True, joint_rounded=True, cap_rounded=True, **dash_props(rgb)))
        if len(known):
            tips, points = _city_table(g)
            hops = [{"id": c, "p": points[c], "tip": f"{tips[c]}\n{r.name}: hop {h}"}
                    for h, c in enumerate(known.tolist())]
            layers.append(pdk.Layer("ScatterplotLayer", hops, id=f"hops-{i}", get_position="p",
                                    get_fill_color=[*rgb, 255], get_line_color=[255, 255, 255], stroked=True,
                                    line_width_min_pixels=1, get_radius=900, radius_min_pixels=2.5,
                                    radius_max_pixels=7, pickable=True))
    jumps = [{"a": _coords(g, np.array([a]))[0], "b": _coords(g, np.array([b]))[0],
              "tip": f"illegal jump ({r.name}): {g.label(a)} → {g.label(b)}, {km:,.0f} km "
                     f"> {g.radius_km:g} km"}
             for r in runs for a, b, km in illegal_segments(g, r.path())]
    if jumps:
        layers.append(pdk.Layer("LineLayer", jumps, id="illegal", get_source_position="a", get_target_position="b",
                                get_color=[*ILLEGAL_RGB, 230], get_width=3, width_units=PIXELS, pickable=True))
    return layers


# A perceptually uniform ramp (viridis' end and mid points) for per-city values: low = dark blue, high = yellow.
STATE_RAMP = np.array([(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)], float)


def state_colours(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """(n, 3) RGB of `values` on STATE_RAMP between low and high (clipped)."""
    t = np.clip((values - low) / max(high - low, 1e-12), 0.0, 1.0) * (len(STATE_RAMP) - 1)
    i = np.minimum(t.astype(int), len(STATE_RAMP) - 2)
    f = (t - i)[:, None]
    return np.round(STATE_RAMP[i] * (1 - f) + STATE_RAMP[i + 1] * f).astype(int)


def state_layer(g: CityGraph, values: np.ndarray, name: str, unit: str, *, low: float = 0.0,
                high: float | None = None) -> pdk.Layer | None:
    """A model's per-city state at one step as coloured dots (cities with no value are left out).

    `low`/`high` fix the colour scale (pass the same for every step so colours mean the same km).
    """
    known = np.flatnonzero(np.isfinite(values))
    if not len(known):
        return None
    v = values[known]
    high = float(v.max()) if high is None else high
    rgb = state_colours(v, low, high)
    unit_text = f" {unit}" if unit else ""
    data = [{"p": [round(float(g.lon[c]), 4), round(float(g.lat[c]), 4)], "c": rgb[j].tolist(),
             "tip": f"{g.label(int(c))}\n{name}: {v[j]:,.0f}{unit_text}"} for j, c in enumerate(known.tolist())]
    return pdk.Layer("ScatterplotLayer", data, id="model-state", get_position="p", get_fill_color="c",
                     get_radius=2500, radius_min_pixels=2, radius_max_pixels=6, opacity=0.75, pickable=True)


def endpoint_layer(g: CityGraph, src: int, dst: int) -> pdk.Layer:
    pts = [{"id": int(c), "p": [float(g.lon[c]), float(g.lat[c])], "tip": _tip(g, c, f"\n{role}"),
            "fill": list(rgb)} for c, role, rgb in ((src, "source", SOURCE_RGB), (dst, "target", TARGET_RGB))]
    return pdk.Layer("ScatterplotLayer", pts, id="endpoints", get_position="p", get_fill_color="fill",
                     get_line_color=[255, 255, 255], stroked=True, line_width_min_pixels=2, get_radius=4000,
                     radius_min_pixels=7, radius_max_pixels=14, pickable=True)


def label_layer(g: CityGraph, src: int, dst: int) -> pdk.Layer:
    pts = [{"p": [float(g.lon[c]), float(g.lat[c])], "text": str(g.cities.iloc[c]["name"])} for c in {src, dst}]
    return pdk.Layer("TextLayer", pts, id="endpoint-labels", get_position="p", get_text="text", get_size=14,
                     get_color=[17, 17, 17], get_pixel_offset=[0, -18], font_weight=700,
                     outline_width=3, outline_color=[255, 255, 255], font_settings={"sdf": True})


# -- the view ---------------------------------------------------------------------------

def fit_view(lons: Sequence[float], lats: Sequence[float], *, width_px: int = 900, height_px: int = 560,
             padding: float = 0.18, max_zoom: float = 10.0) -> pdk.ViewState:
    """A Web-Mercator view that shows all the points with some padding."""
    lons, lats = np.asarray(lons, float), np.asarray(lats, float)
    west, east, south, north = lons.min(), lons.max(), lats.min(), lats.max()

    def merc_y(lat: float) -> float:
        lat = math.radians(max(min(lat, 85.0), -85.0))
        return math.log(math.tan(math.pi / 4 + lat / 2))

    dx = max(east - west, 0.05) / 360.0
    dy = max(merc_y(north) - merc_y(south), 0.001) / (2 * math.pi)
    usable_w, usable_h = width_px * (1 - 2 * padding), height_px * (1 - 2 * padding)
    zoom = min(math.log2(usable_w / 512.0 / dx), math.log2(usable_h / 512.0 / dy), max_zoom)
    centre_y = (merc_y(north) + merc_y(south)) / 2
    centre_lat = math.degrees(2 * math.atan(math.exp(centre_y)) - math.pi / 2)
    return pdk.ViewState(latitude=round(centre_lat, 4), longitude=round((west + east) / 2, 4),
                         zoom=round(max(zoom, 1.0), 2), pitch=0, bearing=0)


def view_for_pair(g: CityGraph, src: int, dst: int, optimal: Sequence[int] = ()) -> pdk.ViewState:
    """The view for a route: fitted to its endpoints and optimal path (not to the models' paths,
    so the map holds still while a model wanders)."""
    ids = np.unique(np.r_[np.asarray(optimal, dtype=np.int64), [src, dst]])
    return fit_view(g.lon[ids], g.lat[ids])


def static_layers(g: CityGraph, src: int, dst: int, optimal: Sequence[int], *,
                  cities: str | list[dict] | None = None, states: str | list[dict] | None = None,
                  basemap: bool = False, extra: Sequence[pdk.Layer] = ()) -> tuple[list[pdk.Layer], list[pdk.Layer]]:
    """What does not change from step to step: (layers under the routes, layers over them).

    Under: state fills (not over basemap tiles) and outlines, every city, `extra`, the optimal path.
    Over: the two endpoints and their labels.
    """
    layers = state_layers(states, filled=not basemap)
    if cities is not None:
        layers.append(cities_layer(cities))
    layers += list(extra)                     # e.g. a model's per-city state, under the routes
    layers += optimal_layers(g, optimal)
    return layers, [endpoint_layer(g, src, dst), label_layer(g, src, dst)]


def layers_json(layers: Sequence[pdk.Layer]) -> list[dict]:
    """pydeck layers as the JSON deck.gl's JSON converter reads (pydeck's own serialisation).

    Each layer's properties go through pydeck's serialiser (camelCase keys, accessor strings, None
    dropped); its data, a URL or a list of records, is passed on as it is, not through a JSON round trip:
    that round trip of every hop's record was ~40% of building a new pair's player
    (`benchmarks/bench_payload.py`). So records must hold JSON values only (str, int, float, bool, None,
    lists, dicts), as every layer built in this module does (`tests/test_maplayers.py` checks the output
    equals pydeck's whole round trip); other data (e.g. numpy values) takes pydeck's round trip."""
    out = []
    for layer in layers:
        data = layer.data
        if not (data is None or isinstance(data, str) or (isinstance(data, list) and _plain_head(data))):
            out.extend(json.loads(CompactDeck(layers=[layer]).to_json())["layers"])
            continue
        attrs = {k: v for k, v in vars(layer).items() if k != "_data" and v is not None and k not in IGNORE_KEYS}
        lower_camel_case_keys(attrs)
        spec = orjson.loads(orjson.dumps(attrs, default=default_serialize, option=orjson.OPT_SERIALIZE_NUMPY))
        if data is not None:
            spec["data"] = data
        out.append(spec)
    return out


def _plain_head(records: list) -> bool:
    """The first record holds JSON values only (a cheap guard: records of one layer are built alike)."""
    if not records:
        return True
    head = records[0]
    return isinstance(head, dict) and all(
        isinstance(v, (str, int, float, bool, list, dict, type(None))) and not isinstance(v, np.generic)
        for v in head.values())


def thinking_layers(g: CityGraph, thinking: Thoughts | None, step: int) -> tuple[list, list]:
    """The map layer of a model's state at `step` and its legend entries (colour, label, style); empty if none."""
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
