"""What the browser-side player is sent: one comparison, computed once (no Streamlit here).

A comparison is the map's static layers, one set of route layers per step (pydeck layers as
deck.gl JSON: the map stays defined with pydeck) and, per model and step, the metric cells and the
compute so far that the strip under the map shows. The player plays it in the browser; see
`citypath.view.player`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson
import pydeck as pdk

from citypath.cache import write_atomic
from citypath.graph import CityGraph
from citypath.metrics import METRICS, NOT_ARRIVED, arrived
from citypath.palette import style_of
from citypath.replay import Question, Replay, Shown
from citypath.view.maplayers import (
    ILLEGAL_RGB,
    OPTIMAL_RGB,
    layers_json,
    rgb_hex,
    route_layers,
    static_layers,
    view_for_pair,
)
from citypath.view.present import CARDS, compute_text, halting_text, metric_cards_by_step, records

# The strip under the map: a step's cards but its own time (the strip shows the compute so far instead).
STRIP_LABELS = tuple(METRICS[name].label for name in CARDS if name != "ms")
# The step charts under the strip, drawn by the player (each model's metric over every step, with a marker at
# the shown step that follows playback): (metric column of Replay.metrics, title, decimals on the y axis).
CHARTED = ("length_pct", "illegal_jumps", "frechet_km")
CHARTS = tuple((name, METRICS[name].chart, METRICS[name].decimals) for name in CHARTED)


def comparison_id(source: int, target: int, models: Sequence[str], steps: int, seed: int, mode: str = "") -> str:
    """A short stable id of the question a comparison answers: a new id resets the player."""
    text = json.dumps([source, target, list(models), steps, seed, mode])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _good(delta: str | None, colour: str) -> str:
    if not delta or colour == "off":
        return "off"
    up = delta.lstrip().startswith("+")
    return "good" if up == (colour == "normal") else "bad"


def strip_cells(replay: Replay, step: int) -> list[dict]:
    """The strip's cells at `step`: the metrics shown while playing, with deltas only where they are not
    zero at the shown precision, and the compute spent so far."""
    return strips(replay, [step])[0]


def strips(replay: Replay, steps: Sequence[int]) -> list[list[dict]]:
    """`strip_cells(replay, k)` for each k of `steps` (the metrics table read once)."""
    rows = records(replay.metrics)
    out = []
    for k, cards in zip(steps, metric_cards_by_step(replay.metrics, steps, rows=rows)):
        cells = [{"label": c.label, "value": c.value, "delta": c.delta, "good": _good(c.delta, c.delta_color),
                  "help": c.help} for c in cards if c.label in STRIP_LABELS]
        if rows:
            cells.append({"label": "Compute so far", "value": compute_text(rows[min(max(k, 1), len(rows)) - 1]),
                          "delta": None, "good": "off",
                          "help": "Operations this model spent up to this step (one count for every model, "
                                  "docs/evaluation.md) and the measured wall time."})
        out.append(cells)
    return out


def series(replay: Replay, steps: int, fields: Sequence[str] = tuple(f for f, _, _ in CHARTS)) -> dict:
    """Each chart's metric at steps 1..`steps` (as far as the replay went), None where it is undefined or not
    shown (`Metric.value`: a figure against the optimal route of a route that did not arrive), so the chart
    leaves a gap there; [] for a model that made no step."""
    m = replay.metrics.iloc[:steps]
    rows = records(m)
    out = {}
    for f in fields:
        if f not in m:
            out[f] = []
            continue
        values = [METRICS[f].value(row) if f in METRICS else float(row[f]) for row in rows]
        out[f] = [float(v) if math.isfinite(v) else None for v in values]
    return out


def arrivals(replay: Replay, steps: int) -> list[bool]:
    """Whether the route arrives (`citypath.metrics.arrived`) at each of steps 1..`steps` (the charts mark the
    steps it does not)."""
    return [arrived(row) for row in records(replay.metrics.iloc[:steps])]


def comparison(g: CityGraph, question: Question, optimal: Sequence[int], replays: Mapping[str, Replay],
               colours: Mapping[str, tuple[int, int, int]], titles: Mapping[str, str], *, step: int | None = None,
               speed: float = 1.0, limits: Mapping[str, int] | None = None,
               notes_by_model: Mapping[str, str] | None = None, cities: str | list | None = None,
               states: str | list | None = None, basemap: bool = False,
               thinking_frames: Sequence[Sequence[pdk.Layer]] = (), legend_tail: Sequence[tuple] = (),
               pending: Sequence[str] = (), notes: Sequence[str] = (), height: int = 560,
               speeds: Sequence[float] = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)) -> dict:
    """The player's arguments for one question.

    `limits`: model -> the step it is shown at (equal compute: its budget's step), which also makes the
    comparison a single still frame; without it every model plays steps 1..`steps`. `thinking_frames[k-1]`:
    extra layers of step k (a model's state over cities). `pending`: models still being computed (the
    player says so). `step`: the step to show first (default: the last).
    """
    source, target, steps = question.source, question.target, question.steps
    still = limits is not None
    bottom, top = static_layers(g, source, target, optimal, cities=cities, states=states, basemap=basemap)
    n_frames = 1 if still else steps
    frames = []
    for k in range(1, n_frames + 1):
        runs = []
        for name, r in replays.items():
            shown = limits.get(name, 0) if still else min(k, len(r.paths))
            if shown >= 1:
                runs.append(Shown(r, shown, colours[name]))
        extra = list(thinking_frames[min(k, len(thinking_frames)) - 1]) if thinking_frames else []
        # a still comparison has no previous step: no ghosts (nothing in the legend would explain them)
        frames.append(layers_json(extra + route_layers(g, runs, ghosts=not still)))
    models = []
    for name, r in replays.items():
        fixed = (notes_by_model or {}).get(name)
        if still and limits.get(name, 0) < 1:
            # Not even its first step fits the budget: no route and no cards, but the reason, with the figure.
            cards, notes_k = [], [fixed or "not even its first step fits the budget"]
        else:
            ks = [limits[name]] if still else range(1, min(steps, len(r.paths)) + 1)
            cards = strips(r, ks)
            halt = halting_text(r)
            notes_k = [fixed or (f"step {k} of {steps}" + (f" · {halt}" if halt else "")) for k in ks]
        style = style_of(colours[name])
        models.append({"name": name, "colour": rgb_hex(colours[name]), "title": titles.get(name, name),
                       # its line pattern in line widths (null: solid): the legend, the charts and the map agree
                       "dash": list(style.pattern) if style.pattern else None,
                       # the step it is shown at in a still comparison (equal compute; 0: none fits)
                       "shown": int(limits.get(name, 0)) if still else None,
                       "cards": cards, "notes": notes_k, "error": r.error,
                       "series": {} if still else series(r, steps),
                       "arrived": [] if still else arrivals(r, steps)})
    view = view_for_pair(g, source, target, optimal)
    opt_km = g.path_length_km(optimal) if len(optimal) > 1 else float("nan")
    head = [(rgb_hex(OPTIMAL_RGB), f"optimal ({len(optimal) - 1} hops, {opt_km:,.0f} km)", "line")] \
        if len(optimal) > 1 else []
    tail = [(rgb_hex(ILLEGAL_RGB), f"illegal jump (> {g.radius_km:g} km)", "dash"),
            ("#111111", "source / target", "dot"), *legend_tail]
    return {
        "id": comparison_id(source, target, sorted([*replays, *pending]), steps, question.seed, question.mode),
        "static": {"bottom": layers_json(bottom), "top": layers_json(top),
                   "initialViewState": json.loads(json.dumps(view, default=lambda o: o.__dict__))},
        "frames": frames, "n_frames": len(frames), "models": models, "pending": list(pending),
        # a still comparison (equal compute: each model at its own step) has no step axis to chart
        "charts": [] if still else [{"field": f, "title": t, "decimals": d, "arrived_only": METRICS[f].arrived_only}
                                    for f, t, d in CHARTS],
        "not_arrived": NOT_ARRIVED,
        "ends": {"source": {"id": int(source), "label": g.label(source)},
                 "target": {"id": int(target), "label": g.label(target)}},
        "legend_head": [list(e) for e in head], "legend_tail": [list(e) for e in tail],
        "step": int(min(max(step or n_frames, 1), n_frames)), "speed": float(speed),
        "speeds": [float(x) for x in speeds],
        "playable": not still,
        "basemap": bool(basemap), "notes": list(notes), "height": int(height), "refit": True,
    }


FRAMES_KEEP = 256          # frame files kept in a static directory (~0.1-0.5 MB each)
FRAMES_MIN_AGE_S = 3600.0  # ... and none younger than this is removed (a visitor may still fetch it)
PRUNE_EVERY = 16           # a process prunes on its first new file and every PRUNE_EVERY-th after
_WRITES = itertools.count()


@dataclass(frozen=True)
class Prepared:
    """A comparison as kept between a question's visitors and reruns: the player's arguments whatever step
    and speed are shown, and (frames in a file) each step's layers as JSON text. `at(step, speed)` gives
    the arguments of one view: a rerun that only moves the step or the speed (the player's stop report, a
    link with a step) costs a copy, not a rebuild."""

    args: dict                         # the frames inline, or the file's URL (then no "first_frame")
    frame_texts: tuple[str, ...] = ()  # frames in a file: each step's layers, compact JSON

    def at(self, step: int | None = None, speed: float | None = None) -> dict:
        """The arguments showing `step` (clamped; default: the comparison's own) at `speed` (default: its own);
        frames in a file: with that step's layers inline as "first_frame" ({step, layers})."""
        n = int(self.args["n_frames"])
        k = int(min(max(int(step or self.args["step"]), 1), max(n, 1)))
        out = {**self.args, "step": k, "speed": float(self.args["speed"] if speed is None else speed)}
        if isinstance(out["frames"], str):
            # The step the player opens at travels inline (tens of KB): the first paint has the routes, the
            # file comes for playing.
            out["first_frame"] = {"step": k, "layers": orjson.loads(self.frame_texts[k - 1])} if n else None
        return out


def store_frames(payload: dict, directory: str | Path, url_prefix: str = "app/static/") -> Prepared:
    """The payload with its frames moved into `directory` as one JSON file named by its content.

    The frames are the bulk of a comparison (~0.3 MB for two models at 16 steps) and the same for every
    visitor of a link: written once, by whichever app process gets there first, and fetched by each
    browser; the server then sends each visitor a few KB. `payload` is not changed. The oldest files
    beyond FRAMES_KEEP are removed when a new one is written (every PRUNE_EVERY-th new file of a process;
    none younger than FRAMES_MIN_AGE_S).
    """
    texts = tuple(orjson.dumps(f, option=orjson.OPT_SERIALIZE_NUMPY).decode() for f in payload["frames"])
    text = "[" + ",".join(texts) + "]"
    name = f"frames-{hashlib.sha256(text.encode()).hexdigest()[:24]}.json"
    directory = Path(directory)
    path = directory / name
    if not path.is_file():
        directory.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text)
        if next(_WRITES) % PRUNE_EVERY == 0:      # not on every write: globbing ~300 files took ~30 ms
            prune_frames(directory)
    return Prepared({**payload, "frames": f"{url_prefix}{name}", "n_frames": len(texts)}, texts)


def frames_to_file(payload: dict, directory: str | Path, url_prefix: str = "app/static/") -> dict:
    """`store_frames(...).at()`: the payload with its frames in a file (its "frames" the file's URL) and the
    step it opens at inline as "first_frame" ({step, layers}: drawn before the file is in)."""
    return store_frames(payload, directory, url_prefix).at()


def prune_frames(directory: str | Path, keep: int = FRAMES_KEEP, min_age_s: float = FRAMES_MIN_AGE_S) -> int:
    """Remove the oldest frame files beyond `keep` (never one younger than `min_age_s`); returns how many."""
    files = []
    for p in Path(directory).glob("frames-*.json"):
        try:
            files.append((p.stat().st_mtime, p))
        except OSError:                    # removed by another process meanwhile
            continue
    files.sort(reverse=True)
    now, removed = time.time(), 0
    for mtime, p in files[keep:]:
        if now - mtime >= min_age_s:
            p.unlink(missing_ok=True)
            removed += 1
    return removed


def read_event(value: object, last_seq: int) -> dict | None:
    """The player's report if it is newer than `last_seq`: {seq, step, speed[, click][, pick][, more]}; else None.

    `click`: a city clicked on the map; `pick`: (end, city), a city chosen by name in the From ("source")
    or To ("target") box. An old report (already handled) or a malformed value is ignored.
    """
    if not isinstance(value, dict):
        return None
    try:
        seq = int(value.get("seq", 0))
        out = {"seq": seq, "step": int(value.get("step", 1)), "speed": float(value.get("speed", 1.0))}
        if value.get("click") is not None:
            out["click"] = int(value["click"])
        if value.get("pick") is not None:
            end, city = value["pick"]["end"], int(value["pick"]["id"])
            if end not in ("source", "target"):
                return None
            out["pick"] = (end, city)
        if value.get("more"):
            out["more"] = True
    except (TypeError, ValueError, KeyError, AttributeError):
        return None
    return out if seq > last_seq else None
