"""The browser-side player's payload (what the server sends once per comparison) and its reports.

Playback itself runs in the browser (tests/test_browser.py); here: every step's layers hold the
replay's own paths, the strip holds each step's metrics, equal compute is one still frame, a
report is read once, and the bundle that ships is the one its sources build.
"""

from __future__ import annotations

import itertools
import json

import pytest

from citypath.replay import Question, compute_replay
from citypath.view import player
from citypath.view.maplayers import model_rgb
from citypath.view.player import build, payload
from tests.fake_models import GarbageFake, RefiningFake

CARD = {"num_parameters": 1, "max_steps": 8}


def _replays(g, src, dst, steps):
    card = {**CARD, "graph": {"fingerprint": g.fingerprint}}
    return {"refining": compute_replay(RefiningFake("refining", card), g, src, dst, steps),
            "garbage": compute_replay(GarbageFake("garbage", card), g, src, dst, steps)}


def _pair(g):
    return g.find_city("Pittsfield, MA"), g.find_city("Providence, RI")   # ~190 km apart: a direct hop is illegal


def _comparison(g, steps=5, replays=None, **kw):
    src, dst = _pair(g)
    replays = replays or _replays(g, src, dst, steps)
    colours = {n: model_rgb(i) for i, n in enumerate(replays)}
    seed = kw.pop("seed", 0)
    out = player.comparison(g, Question(src, dst, tuple(replays), steps, seed), g.shortest_path(src, dst), replays,
                            colours, {"refining": "Refining"}, **kw)
    return out, replays


def test_every_step_holds_the_replays_own_paths(small_graph):
    g = small_graph
    out, replays = _comparison(g, steps=5)
    assert len(out["frames"]) == 5 and out["playable"] and out["step"] == 5
    for k, layers in enumerate(out["frames"], start=1):
        hops = {layer["id"]: [d["id"] for d in layer["data"]] for layer in layers if layer["id"].startswith("hops-")}
        assert hops["hops-0"] == [int(c) for c in replays["refining"].path(k)]
        ghosts = [layer for layer in layers if layer["id"] == "ghosts"]
        assert bool(ghosts) == (k > 1)                      # the previous step, faint, from step 2 on
    garbage_illegal = [layer for layers in out["frames"] for layer in layers if layer["id"] == "illegal"]
    assert garbage_illegal                                   # the garbage model's jumps are drawn in red
    ids = [layer["id"] for layer in out["static"]["bottom"]]
    assert ids[0] == "states" and "optimal" in ids
    assert [layer["id"] for layer in out["static"]["top"]] == ["endpoints", "endpoint-labels"]
    assert {layer["@@type"] for layer in out["static"]["bottom"] + [x for f in out["frames"] for x in f]} <= {
        "PolygonLayer", "PathLayer", "ScatterplotLayer", "LineLayer", "TextLayer"}   # what the bundle registers
    json.dumps(out)                                                                  # sendable as it is


def test_the_strip_holds_each_steps_metrics_and_compute(small_graph):
    out, replays = _comparison(small_graph, steps=5)
    m = out["models"][0]
    assert m["name"] == "refining" and m["title"] == "Refining" and len(m["cards"]) == 5
    labels = [c["label"] for c in m["cards"][0]]
    assert labels == ["Valid", "Illegal jumps", "Reaches target", "Hops", "Length", "vs optimal", "Fréchet",
                      "Compute so far"]
    assert all(c["delta"] is None for c in m["cards"][0])                      # nothing to compare at step 1
    metrics = replays["refining"].metrics
    for k in range(2, 6):
        length = {c["label"]: c for c in m["cards"][k - 1]}["Length"]
        moved = round(metrics["length_km"].iloc[k - 1]) != round(metrics["length_km"].iloc[k - 2])
        assert (length["delta"] is not None) == moved                          # no "+0 km"
        both_valid = bool(metrics["valid"].iloc[k - 1]) and bool(metrics["valid"].iloc[k - 2])
        if length["delta"]:      # shorter is better only between valid routes
            want = ("good" if length["delta"].startswith("-") else "bad") if both_valid else "off"
            assert length["good"] == want
    assert m["cards"][4][-1]["value"].endswith("ms") and "Mops" in m["cards"][4][-1]["value"]
    assert m["notes"][0] == "step 1 of 5"


def test_equal_compute_is_one_still_frame(small_graph):
    out, replays = _comparison(small_graph, steps=5, limits={"refining": 3, "garbage": 0},
                               notes_by_model={"refining": "3 steps fit", "garbage": "no step fits"})
    assert len(out["frames"]) == 1 and not out["playable"]
    hops = {layer["id"]: [d["id"] for d in layer["data"]] for layer in out["frames"][0]
            if layer["id"].startswith("hops-")}
    assert list(hops) == ["hops-0"] and hops["hops-0"] == [int(c) for c in replays["refining"].path(3)]
    notes = {m["name"]: m["notes"] for m in out["models"]}
    # a model whose first step is over the budget still says so, with the figure (its note is the budget's text)
    assert notes == {"refining": ["3 steps fit"], "garbage": ["no step fits"]}
    # each model's own step, for the legend (0: none fits, not drawn)
    assert {m["name"]: m["shown"] for m in out["models"]} == {"refining": 3, "garbage": 0}
    # a still comparison has no previous step: no faint ghost the legend would not explain
    assert not [layer for layer in out["frames"][0] if layer["id"] == "ghosts"]


def test_figures_against_the_optimal_route_only_for_routes_that_arrive(small_graph):
    """A route that stops short is not shorter than optimal: its length vs optimal, Fréchet and their deltas read
    "—, did not arrive", and the charts leave a gap there and mark it."""
    from citypath.metrics import NOT_ARRIVED
    from citypath.replay import Replay

    g = small_graph
    src, dst = _pair(g)
    optimal = g.shortest_path(src, dst)
    half = optimal[: len(optimal) // 2]
    r = Replay.from_paths(g, "m", src, dst, [half, optimal, half + [dst], half])
    out = player.comparison(g, Question(src, dst, ("m",), 4), optimal, {"m": r}, {"m": model_rgb(0)}, {})
    m = out["models"][0]
    cells = [{c["label"]: c for c in cards} for cards in m["cards"]]
    assert [c["vs optimal"]["value"] for c in cells] == [NOT_ARRIVED, "+0.0%", cells[2]["vs optimal"]["value"],
                                                         NOT_ARRIVED]
    assert cells[2]["vs optimal"]["value"] != NOT_ARRIVED and cells[0]["Fréchet"]["value"] == NOT_ARRIVED
    assert cells[1]["vs optimal"]["delta"] is None and cells[1]["Length"]["delta"] is None    # from a walk that
    assert cells[3]["Length"]["delta"] is None and cells[3]["Fréchet"]["delta"] is None      # stopped: no change
    assert cells[2]["Fréchet"]["delta"] is not None                                          # both arrive
    assert m["series"]["length_pct"][0] is None and m["series"]["length_pct"][3] is None      # a gap, never -50%
    assert m["series"]["frechet_km"][0] is None and m["series"]["length_pct"][1] == 0.0
    assert m["arrived"] == [False, True, True, False]
    assert None not in m["series"]["illegal_jumps"]                                         # defined for any route
    assert {c["field"]: c["arrived_only"] for c in out["charts"]} == {
        "length_pct": True, "illegal_jumps": False, "frechet_km": True}


def test_a_comparison_keeps_its_id_while_its_models_arrive(small_graph):
    g = small_graph
    src, dst = _pair(g)
    replays = _replays(g, src, dst, 3)
    colours = {n: model_rgb(i) for i, n in enumerate(replays)}
    args = (g, Question(src, dst, tuple(replays), 3), g.shortest_path(src, dst))
    first = player.comparison(*args, {}, colours, {}, pending=["refining", "garbage"])
    half = player.comparison(*args, {"refining": replays["refining"]}, colours, {}, pending=["garbage"])
    full = player.comparison(*args, replays, colours, {})
    assert first["id"] == half["id"] == full["id"]           # the player keeps its step and playback
    assert first["pending"] == ["refining", "garbage"] and not first["models"]
    assert first["static"]["bottom"] == full["static"]["bottom"]   # the map and optimal path come first
    other = player.comparison(g, Question(src, dst, tuple(replays), 3, seed=1), g.shortest_path(src, dst), replays,
                              colours, {})
    assert other["id"] != full["id"]


@pytest.mark.parametrize("value, last, expected", [
    ({"seq": 5, "step": 3, "speed": 4}, 4, {"seq": 5, "step": 3, "speed": 4.0}),
    ({"seq": 5, "step": 3, "speed": 4}, 5, None),                       # already handled
    ({"seq": 9, "step": 1, "speed": 1, "click": 12}, 0, {"seq": 9, "step": 1, "speed": 1.0, "click": 12}),
    ({"seq": 9, "step": 1, "speed": 1, "pick": {"end": "target", "id": "7"}}, 0,
     {"seq": 9, "step": 1, "speed": 1.0, "pick": ("target", 7)}),
    ({"seq": 9, "pick": {"end": "middle", "id": 7}}, 0, None),
    ({"seq": 9, "pick": {"end": "source"}}, 0, None),
    ({"seq": 9, "pick": "Boston"}, 0, None),
    ({"seq": "x", "step": 1}, 0, None),
    ({"seq": 9, "step": [1]}, 0, None),
    ("garbage", 0, None),
    (None, 0, None),
])
def test_reports_are_read_once_and_malformed_ones_ignored(value, last, expected):
    assert payload.read_event(value, last) == expected


def test_the_shipped_bundle_is_built_from_the_shipped_sources():
    """`python -m citypath.view.player.build` rebuilt it after the last edit of frontend/ (and npm's lock file)."""
    info = json.loads((player.BUILD_DIR / "BUILD_INFO.json").read_text())
    assert info["sources_sha256"] == build.sources_digest(), "rebuild: python -m citypath.view.player.build"
    assert (player.BUILD_DIR / "player.js").stat().st_size == info["bundle_bytes"]
    html = (player.BUILD_DIR / "index.html").read_text()
    assert "<script src=" not in html and "http" not in html                  # nothing fetched from elsewhere
    assert '<link rel="preload" href="./player.js" as="script">' in html      # fetched while the preview paints
    assert "streamlit:componentReady" in html and '"./player.js"' in html      # boot.js inline: it loads the player
    assert info["boot_bytes"] < 16_000 < info["bundle_bytes"]
    bundle = (player.BUILD_DIR / "player.js").read_text()
    assert "JSONConverter" in bundle or "@@type" in bundle                   # deck.gl's JSON converter inside


def test_frames_go_once_into_a_file_named_by_their_content(small_graph, tmp_path):
    out, _ = _comparison(small_graph, cities="app/static/cities.json")        # the city layer by URL, as the app
    moved = payload.frames_to_file(out, tmp_path)
    name = moved["frames"].removeprefix("app/static/")
    assert moved["frames"].startswith("app/static/frames-") and moved["n_frames"] == len(out["frames"]) == 5
    assert json.loads((tmp_path / name).read_text()) == out["frames"]          # the file holds every step
    assert isinstance(out["frames"], list)                                     # the payload given is unchanged
    # What each visitor is sent loses the frames' bulk: a URL instead of every step's layers, and inline only
    # the step the player opens at (drawn before the file is in).
    k = out["step"]
    assert moved["first_frame"] == {"step": k, "layers": out["frames"][k - 1]}
    rest = {key: v for key, v in moved.items() if key != "first_frame"}
    assert len(json.dumps(rest)) < len(json.dumps(out)) - len(json.dumps(out["frames"])) + 100
    assert len(json.dumps(moved["first_frame"])) < len(json.dumps(out["frames"])) / 3
    # The same comparison (another visitor, another process) names the same file; another one, another file.
    assert payload.frames_to_file(out, tmp_path)["frames"] == moved["frames"]
    other, _ = _comparison(small_graph, steps=3, cities="app/static/cities.json")
    assert payload.frames_to_file(other, tmp_path)["frames"] != moved["frames"]
    assert len(list(tmp_path.glob("frames-*.json"))) == 2


def test_a_prepared_comparison_shows_any_step_and_speed_without_a_rebuild(small_graph, tmp_path):
    """The app keeps a comparison as `Prepared` whatever step and speed are shown: `at(k, speed)` is what a
    fresh build at step k and that speed would send (the stop report, a link with a step), inline or with
    the frames in a file. Both from the same replays: their measured step times are shown, and a second run's
    differ."""
    out, replays = _comparison(small_graph, cities="app/static/cities.json")
    stored = payload.store_frames(out, tmp_path)
    inline = player.Prepared(out)
    for k in (1, 3, 5):
        fresh, _ = _comparison(small_graph, replays=replays, cities="app/static/cities.json", step=k, speed=8.0)
        assert inline.at(k, 8.0) == fresh
        assert stored.at(k, 8.0) == payload.frames_to_file(fresh, tmp_path)
        assert stored.at(k, 8.0)["first_frame"] == {"step": k, "layers": out["frames"][k - 1]}
    assert stored.at()["step"] == out["step"] == 5 and stored.at()["speed"] == out["speed"]
    assert stored.at(99)["step"] == 5 and stored.at(-2)["first_frame"]["step"] == 1       # clamped
    assert "first_frame" not in stored.args and stored.at(2, 4.0) is not stored.at(2, 4.0)  # a copy per view
    assert len(list(tmp_path.glob("frames-*.json"))) == 1


def test_new_frame_files_prune_the_directory_now_and_then(small_graph, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(payload, "prune_frames", lambda d: calls.append(d))
    monkeypatch.setattr(payload, "_WRITES", itertools.count())
    for steps in range(1, payload.PRUNE_EVERY + 3):
        out, _ = _comparison(small_graph, steps=steps)
        payload.store_frames(out, tmp_path)
        payload.store_frames(out, tmp_path)          # the same file again: no write, no prune
    assert len(list(tmp_path.glob("frames-*.json"))) == payload.PRUNE_EVERY + 2
    assert calls == [tmp_path, tmp_path]             # the first new file and the PRUNE_EVERY+1-th


def test_old_frame_files_are_pruned_but_never_recent_ones(tmp_path):
    import os
    import time

    now = time.time()
    for i in range(6):
        p = tmp_path / f"frames-{i}.json"
        p.write_text("[]")
        age = 7200 if i < 3 else 10          # 0-2 are two hours old, 3-5 seconds old
        os.utime(p, (now - age - i, now - age - i))
    (tmp_path / "cities-x.json").write_text("[]")                      # not a frame file: never touched
    assert payload.prune_frames(tmp_path, keep=2, min_age_s=3600) == 3  # beyond the newest 2: only the old go
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cities-x.json", "frames-3.json", "frames-4.json",
                                                         "frames-5.json"]
