"""The Streamlit app through `streamlit.testing.v1.AppTest`: every flow runs without an exception.

The app runs on the RI+MA graph with test-only models (tests/fake_models.py) registered for
the session. Playback runs in the browser (tests/test_browser.py); here the player's arguments are
read from the page and its reports (a stop at a step, a speed, a click on a city) are set the way
the component sets them, in session state under its key.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from citypath import replay
from citypath.app import downloads, picks, replays, resources, turns, url
from tests.fake_models import use_fake_app, write_checkpoint

REPO = Path(__file__).resolve().parents[1]
AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
TIMEOUT = 60


@pytest.fixture
def app_env(tmp_path, small_graph, monkeypatch):
    """Checkpoints: a refining model, a garbage one, one that crashes, one for another graph, a broken card."""
    ckpt = tmp_path / "checkpoints"
    write_checkpoint(ckpt, "demo-refining", "fake-refining", small_graph)
    write_checkpoint(ckpt, "demo-garbage", "fake-garbage", small_graph)
    write_checkpoint(ckpt, "demo-crash", "fake-crashing", small_graph)
    write_checkpoint(ckpt, "demo-othergraph", "fake-refining", small_graph, fingerprint="0" * 64)
    (ckpt / "demo-broken.json").write_text("{not json")
    (ckpt / "demo-broken.safetensors").write_bytes(b"")
    return use_fake_app(monkeypatch, ckpt)


_RUN = AppTest._run


def _run_and_settle(self, widget_state=None, timeout=None):
    """One run, then the player's requests for the next model until none is pending (as in a browser)."""
    at = _RUN(self, widget_state, timeout)
    for _ in range(20):
        if at.exception or not at.get("component_instance") or not player_args(at)["pending"] \
                and "Computing the models" not in " ".join(c.value for c in at.caption):
            return at
        at.session_state["player"] = {"seq": time.time_ns() // 1000, "speed": 1.0, "step": 1, "more": True}
        at = _RUN(at, None, timeout)
    raise AssertionError("the models never finished")


@pytest.fixture(autouse=True)
def settled_runs(monkeypatch):
    """Every run of the app in these tests ends with the models computed, as a browser's player asks."""
    monkeypatch.setattr(AppTest, "_run", _run_and_settle)


def run_app(query: dict | None = None) -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    return at.run()


def no_exceptions(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]


def player_args(at: AppTest) -> dict:
    players = at.get("component_instance")
    assert players, "no player on the page"
    return json.loads(players[0].proto.json_args)


def player_frames(args: dict) -> list[list[dict]]:
    """Every step's route layers: inline, or in the file the player fetches (static serving on)."""
    frames = args["frames"]
    if isinstance(frames, str):
        assert frames.startswith("app/static/frames-"), frames
        frames = json.loads((resources.STATIC_DIR / frames.removeprefix("app/static/")).read_text())
    assert len(frames) == args["n_frames"]
    return frames


def layers(at: AppTest, step: int | None = None) -> list[dict]:
    """The map's layers at `step` (default: the step the player shows first): static + that step's routes."""
    args = player_args(at)
    frames = player_frames(args)
    frame = frames[min(step or args["step"], len(frames)) - 1] if frames else []
    return args["static"]["bottom"] + frame + args["static"]["top"]


def layer_ids(at: AppTest, step: int | None = None) -> list[str]:
    return [layer["id"] for layer in layers(at, step)]


def report(at: AppTest, **event) -> AppTest:
    """What the player sends when it stops at a step, changes speed, asks for the next model or a city is clicked."""
    at.session_state["player"] = {"seq": time.time_ns() // 1000, "speed": 1.0, "step": 1, **event}
    return at.run()


def cards(at: AppTest, model: int = 0, step: int | None = None) -> list[dict]:
    m = player_args(at)["models"][model]
    return m["cards"][min(step or player_args(at)["step"], len(m["cards"])) - 1]


def test_default_page_draws_both_paths(app_env):
    at = run_app({"models": "demo-refining"})
    no_exceptions(at)
    ids = layer_ids(at)
    assert "optimal" in ids and "model-0" in ids and "endpoints" in ids and "cities" in ids
    assert "states" in ids and not player_args(at)["basemap"]  # offline outlines, no tiles
    assert len(at.get("download_button")) == 4
    labels = [c["label"] for c in cards(at)]
    assert labels[:3] == ["Valid", "Illegal jumps", "Reaches target"] and labels[-1] == "Compute so far"
    assert at.query_params["models"] == "demo-refining"


def test_failed_checkpoints_are_named_and_the_rest_still_run(app_env):
    at = run_app({"models": "demo-refining,demo-garbage,demo-crash"})
    no_exceptions(at)
    failures = " ".join(md.value for md in at.markdown)
    assert "demo-broken" in failures and "demo-othergraph" in failures
    assert any("demo-crash failed" in e.value for e in at.error)
    assert "model-0" in layer_ids(at)


def test_choosing_cities_updates_map_and_url(app_env, small_graph):
    g = small_graph
    at = run_app({"models": "demo-refining"})
    # A city chosen by name in the player's From / To boxes (what the player reports).
    report(at, pick={"end": "source", "id": g.find_city("Worcester, MA")})
    report(at, pick={"end": "target", "id": g.find_city("Springfield, MA")})
    no_exceptions(at)
    assert at.query_params["source"] == "Worcester, MA"
    assert at.query_params["target"] == "Springfield, MA"
    assert player_args(at)["ends"]["source"] == {"id": g.find_city("Worcester, MA"), "label": "Worcester, MA"}
    assert "Worcester, MA" in at.sidebar.markdown[0].value and "Springfield, MA" in at.sidebar.markdown[0].value
    for bad in ({"end": "middle", "id": 3}, {"end": "source", "id": 10**9}, {"end": "source"}, "Boston"):
        report(at, pick=bad)                   # not an end, not a city, malformed: nothing changes
        no_exceptions(at)
        assert at.query_params["source"] == "Worcester, MA"
    at.button(key="swap").click().run()
    assert at.query_params["source"] == "Springfield, MA"
    at.button(key="random").click().run()
    no_exceptions(at)
    at.button(key="reset").click().run()
    no_exceptions(at)


def test_steps_slider_playback_and_models(app_env):
    at = run_app({"models": "demo-refining", "steps": "4"})
    assert at.session_state["step"] == 4 and player_args(at)["step"] == 4
    at.slider(key="steps").set_value(6).run()
    no_exceptions(at)
    assert at.session_state["step"] == 6 and at.query_params["steps"] == "6"
    args = player_args(at)
    assert len(player_frames(args)) == 6 and args["playable"] and len(args["models"][0]["cards"]) == 6
    assert "ghosts" not in layer_ids(at, 1) and "ghosts" in layer_ids(at, 5)   # step 5 shows step 4 faintly
    report(at, step=2, speed=4.0)                           # the player stopped at step 2
    no_exceptions(at)
    assert at.session_state["step"] == 2 and at.session_state["speed"] == 4.0
    assert at.query_params["step"] == "2" and at.query_params["speed"] == "4"
    assert player_args(at)["step"] == 2
    at.multiselect(key="models").set_value(["demo-refining", "demo-garbage"]).run()
    no_exceptions(at)
    assert [m["name"] for m in player_args(at)["models"]] == ["demo-refining", "demo-garbage"]


def test_a_stop_report_moves_the_step_and_speed_without_rebuilding_the_comparison(app_env, monkeypatch):
    """The player's stop report (a step, a speed) reruns the page; the comparison is built once per question
    and shown at the reported step: that step's routes inline, at the reported speed."""
    from citypath.view import player

    built = []
    real = player.comparison
    monkeypatch.setattr(player, "comparison", lambda *a, **kw: built.append(a[1:3]) or real(*a, **kw))
    at = run_app({"models": "demo-refining,demo-garbage", "steps": "6", "seed": "4"})
    no_exceptions(at)
    assert built and player_args(at)["step"] == 6
    n = len(built)
    for step, speed in ((3, 4.0), (6, 16.0), (1, 2.0)):
        report(at, step=step, speed=speed)
        no_exceptions(at)
        args = player_args(at)
        assert (args["step"], args["speed"]) == (step, speed)
        if "first_frame" in args:                                  # the frames in a file: that step's inline
            assert args["first_frame"] == {"step": step, "layers": player_frames(args)[step - 1]}
    assert len(built) == n                                         # no rebuild for a step or a speed
    at.slider(key="steps").set_value(5).run()                      # a new question is built
    assert len(built) > n and player_args(at)["n_frames"] == 5


def test_step_charts_carry_every_step_of_the_run(app_env):
    """The player draws the step charts (so they follow playback): each model's metric at every step of the
    run, whatever step is shown; the page itself has no chart that would hold the map's first paint."""
    from citypath.view.player.payload import CHARTS

    at = run_app({"models": "demo-refining,demo-garbage", "steps": "6"})
    report(at, step=3)
    no_exceptions(at)
    assert not at.get("vega_lite_chart")
    args = player_args(at)
    assert [(c["field"], c["title"]) for c in args["charts"]] == [(f, t) for f, t, _ in CHARTS]
    assert [c["title"] for c in args["charts"]] == ["length vs optimal (%)", "illegal jumps", "Fréchet distance (km)"]
    for m in args["models"]:
        assert set(m["series"]) == {f for f, _, _ in CHARTS}
        assert all(len(values) == 6 for values in m["series"].values()), m["name"]   # every step, not up to 3
    refining = next(m for m in args["models"] if m["name"] == "demo-refining")["series"]["length_pct"]
    assert all(v is not None for v in refining) and refining[-1] <= refining[0]   # the fake refines
    garbage = next(m for m in args["models"] if m["name"] == "demo-garbage")["series"]["illegal_jumps"]
    assert max(garbage) > 0                                                       # it jumps


def test_garbage_model_is_drawn_and_scored(app_env):
    at = run_app({"models": "demo-garbage", "steps": "5"})
    for step in range(1, 6):
        report(at, step=step)
        no_exceptions(at)
        assert cards(at)[0]["label"] == "Valid" and layer_ids(at, step)


@pytest.mark.parametrize("query, fragment", [
    ({"source": "Atlantis, ZZ"}, "source"),
    ({"source": "Boston, MA", "target": "Denver, CO"}, "target"),
    ({"steps": "lots"}, "steps"),
    ({"steps": "100000"}, "steps"),
    ({"models": "no-such-model"}, "no-such-model"),
    ({"seed": "-3"}, "seed"),
])
def test_bad_links_fall_back_with_a_notice(app_env, query, fragment):
    at = run_app(query)
    no_exceptions(at)
    notices = " ".join(w.value for w in at.warning)
    assert fragment in notices
    assert "optimal" in layer_ids(at)


def test_same_source_and_target(app_env):
    at = run_app({"source": "Boston, MA", "target": "Boston, MA", "models": "demo-refining"})
    no_exceptions(at)
    assert any("same city" in i.value for i in at.info)


@pytest.mark.parametrize("page", ["pages/1_Test-time_compute.py", "pages/2_Training.py", "pages/3_Dataset.py",
                                  "pages/4_Step_or_parameter.py"])
def test_pages_run(app_env, page):
    at = AppTest.from_file(str(REPO / page), default_timeout=TIMEOUT).run()
    no_exceptions(at)


def test_the_tradeoff_page_states_each_familys_fit_and_lists_every_point(app_env):
    """The sweep page says, from results/tradeoff.json, each family's slope sentence (or why none), the difficulty
    split, and lists every contour point by checkpoint."""
    report = json.loads((REPO / "results" / "tradeoff.json").read_text())
    at = AppTest.from_file(str(REPO / "pages/4_Step_or_parameter.py"), default_timeout=TIMEOUT).run()
    no_exceptions(at)
    said = " ".join(m.value for m in at.markdown)
    for line in report["headline"] + report["difficulty"]:
        assert line in said
    listed = set(at.dataframe[-1].value["checkpoint"])
    assert listed == set(report["models"])
    assert len(at.get("vega_lite_chart")) >= 4      # the contours, against parameters, the thirds, the curves


def test_no_models_at_all(app_env, tmp_path, monkeypatch):
    monkeypatch.setenv("CITYPATH_CHECKPOINTS", str(tmp_path / "empty"))
    at = run_app()
    no_exceptions(at)
    assert any("No model checkpoints" in i.value for i in at.info)
    assert "optimal" in layer_ids(at)


@pytest.mark.parametrize("ext, magic", [("png", b"\x89PNG"), ("gif", b"GIF8"), ("geojson", b"{"), ("csv", b"kind")])
def test_download_renderers(small_graph, ext, magic):
    """The download buttons' deferred callables (AppTest cannot click a download)."""
    from tests.fake_models import RefiningFake

    g = small_graph
    view = url.ViewState(0, 7, ("r",), 3, 0)
    model = RefiningFake("r", {"num_parameters": 1, "max_steps": 8, "graph": {"fingerprint": g.fingerprint}})
    replays = {"r": replay.compute_replay(model, g, 0, 7, 3)}
    data = downloads.exporter(ext, g, view, replays, {"r": 2}, {"r": (0, 114, 178)})()
    assert (data if isinstance(data, bytes) else data.encode()).startswith(magic)
    name = downloads.download_name(g, view, {"r": 2}, ext)
    assert name.endswith("-r@2-step2.png" if ext == "png" else "-r-all-steps." + ext) and name.startswith("citypath-")
    if ext == "geojson":                      # every step, each feature saying which
        feats = json.loads(data)["features"]
        assert sorted({f["properties"]["step"] for f in feats if f["properties"]["kind"] == "model"}) == [1, 2, 3]


def test_show_what_the_model_thinks_draws_its_state_per_step(app_env, small_graph):
    from tests.fake_models import bellman_exact_checkpoint

    bellman_exact_checkpoint(app_env, small_graph, name="demo-bellman", rounds_per_step=1, max_steps=8)
    at = run_app({"models": "demo-bellman,demo-refining", "steps": "6"})
    no_exceptions(at)
    assert "model-state" not in layer_ids(at)              # off by default
    at.toggle(key="show_state").set_value(True).run()
    no_exceptions(at)
    counts = []
    for step in (1, 6):
        state = [layer for layer in layers(at, step) if layer["id"] == "model-state"]
        assert len(state) == 1
        counts.append(len(state[0]["data"]))
    assert counts[0] < counts[1]                           # one round a step: the estimate spreads
    assert any("estimated km to target" in label for _, label, _ in player_args(at)["legend_tail"])


def test_show_what_the_model_thinks_says_when_a_family_has_no_state(app_env):
    at = run_app({"models": "demo-refining"})
    at.toggle(key="show_state").set_value(True).run()
    no_exceptions(at)
    assert "model-state" not in layer_ids(at)
    assert any("has no per-city state to show" in c.value for c in at.caption)


def test_equal_compute_gives_each_model_the_steps_its_budget_buys(app_env, small_graph):
    from tests.fake_models import bellman_exact_checkpoint

    bellman_exact_checkpoint(app_env, small_graph, name="demo-bellman", rounds_per_step=1, max_steps=8)
    at = run_app({"models": "demo-bellman,demo-refining", "steps": "8"})
    no_exceptions(at)
    at.toggle(key="equal_compute").set_value(True).run()
    at.select_slider(key="budget").set_value(3e6).run()
    no_exceptions(at)
    args = player_args(at)
    notes = {m["name"]: m["notes"][0] for m in args["models"]}
    # the fake spends 1 MFLOP a step: 3 steps fit; the bellman network's steps are far cheaper on this graph
    assert "3 steps fit in 3 Mops" in notes["demo-refining"], notes
    assert "fit in 3 Mops" in notes["demo-bellman"] and "3 steps fit" not in notes["demo-bellman"]
    assert not args["playable"] and len(player_frames(args)) == 1 and "Equal compute: 3 Mops" in args["notes"][0]
    assert {"model-0", "model-1"} <= set(layer_ids(at))          # both routes drawn, each at its own step
    at.select_slider(key="budget").set_value(1e6).run()
    assert "1 step fit" in {m["name"]: m["notes"][0] for m in player_args(at)["models"]}["demo-refining"]


def test_link_round_trips_step_speed_and_click_mode(app_env):
    at = run_app({"models": "demo-refining", "steps": "6", "step": "2", "speed": "4", "click": "target"})
    no_exceptions(at)
    assert at.session_state["step"] == 2 and at.session_state["speed"] == 4.0
    assert at.session_state["click_mode"] == "target"
    assert at.query_params["step"] in ("2", ["2"]) and at.query_params["speed"] in ("4", ["4"])
    link = [c.value for c in at.code]
    assert link and "step=2" in link[0] and "click=target" in link[0]       # the Copy link box
    assert player_args(at)["step"] == 2 and player_args(at)["speed"] == 4.0     # the player starts there
    at = run_app({"models": "demo-refining", "steps": "6", "step": "60"})
    assert any("step=60 is outside 1..6; using 6" in w.value for w in at.warning)


def test_a_click_on_a_city_sets_an_end_of_the_route(app_env, small_graph):
    g = small_graph
    at = run_app({"models": "demo-refining", "source": "Boston, MA", "target": "Providence, RI", "click": "target"})
    city = g.find_city("Worcester, MA")
    report(at, click=city)
    no_exceptions(at)
    assert at.session_state["target"] == "Worcester, MA" and at.query_params["target"] == "Worcester, MA"
    assert at.session_state["source"] == "Boston, MA"
    report(at, click=10**9)                    # not a city of this graph: nothing changes
    no_exceptions(at)
    assert at.session_state["target"] == "Worcester, MA"
    at.session_state["player"] = "garbage"     # a malformed report is ignored
    at.run()
    no_exceptions(at)


def test_an_interesting_pair_loads_in_one_click(app_env, small_graph, tmp_path, monkeypatch):

    g = small_graph
    a, b = g.find_city("Worcester, MA"), g.find_city("Providence, RI")
    path = tmp_path / "interesting-pairs.json"
    path.write_text(json.dumps({"interesting": [{"kind": "refinement helps most", "source_label": g.label(a),
                                                 "target_label": g.label(b), "why": "demo goes from +5% to +0%"}]}))
    monkeypatch.setattr(picks, "INTERESTING_PATH", path)
    at = run_app({"models": "demo-refining"})
    no_exceptions(at)
    assert any("demo goes from +5% to +0%" in c.value for c in at.caption)
    at.button(key="pick-0").click().run()
    no_exceptions(at)
    assert (at.session_state["source"], at.session_state["target"]) == (g.label(a), g.label(b))


def test_routes_stored_by_another_process_are_read_not_computed_again(app_env, tmp_path, monkeypatch):
    from citypath.app import resources
    from citypath.replay import ReplayStore

    monkeypatch.setattr(replays, "_replay_store", lambda: ReplayStore(tmp_path / "replays"))
    link = {"models": "demo-refining,demo-garbage", "steps": "4", "seed": "5"}

    def requests_until_drawn() -> int:
        at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
        for k, v in link.items():
            at.query_params[k] = v
        at = _RUN(at, None, TIMEOUT)
        for n in range(5):
            if not player_args(at)["pending"]:
                return n
            at.session_state["player"] = {"seq": time.time_ns() // 1000, "speed": 1.0, "step": 1, "more": True}
            at = _RUN(at, None, TIMEOUT)
        raise AssertionError("the models never finished")

    def forget_replays() -> None:         # what this process remembers of the routes goes
        replays._replay.clear()

    def as_a_new_process() -> None:       # ... and its models are not loaded
        forget_replays()
        resources._models.clear()

    as_a_new_process()
    assert requests_until_drawn() == 2                 # computed here: one model per request, routes one by one
    assert len(list((tmp_path / "replays").rglob("*.json"))) == 2
    forget_replays()
    assert requests_until_drawn() == 0                 # stored, models loaded: read in the first run
    as_a_new_process()
    assert requests_until_drawn() == 1                 # stored, models not loaded: both in the one request
    assert requests_until_drawn() == 0                 # this process has them


def test_a_replaced_checkpoint_lets_the_old_models_go(small_graph, monkeypatch):
    """A process that sees its checkpoints change loads the new set and keeps no reference to the old one
    (each replacement held ~100 MB more for the process's life)."""
    import gc
    import weakref

    from citypath.app import resources

    class Models:   # stands for a ModelSet (which can be referred to weakly)
        pass

    monkeypatch.setattr(resources, "load_models", lambda g: Models())
    stamp = ("a.safetensors", 1)
    monkeypatch.setattr(resources, "_checkpoint_stamp", lambda: stamp)
    resources._models.clear()
    try:
        first = weakref.ref(resources.models(small_graph))
        assert first() is not None and resources.models_if_loaded(small_graph) is first()
        stamp = ("a.safetensors", 2)                                  # the file was replaced
        assert resources.models_if_loaded(small_graph) is None
        second = resources.models(small_graph)
        gc.collect()
        assert first() is None                       # nothing holds the old set
        assert resources.models_if_loaded(small_graph) is second
    finally:
        resources._models.clear()


def test_every_run_of_the_page_queues_once_in_its_visitors_place(app_env, monkeypatch):
    """Each script run takes one turn (citypath/app/turns.py) with the time of its visitor's first run as its
    place: a later run of the same visitor keeps the place, a new visitor queues behind, and the
    fragment inside a page run is the page's turn (one slot: no deadlock, no run going ahead unqueued)."""
    from citypath.app.turns import Turns

    tickets: list[float] = []

    class Recording(Turns):
        def turn(self, ticket):
            if not getattr(self._local, "depth", 0):
                tickets.append(ticket)
            return super().turn(ticket)

    queue = Recording(slots=1, patience_s=TIMEOUT)
    monkeypatch.setattr(turns, "_TURNS", queue)

    def visitor() -> AppTest:
        at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
        at.query_params["models"] = "demo-refining"
        return _RUN(at, None, TIMEOUT)

    at = visitor()
    no_exceptions(at)
    assert len(tickets) == 1
    at.session_state["player"] = {"seq": time.time_ns() // 1000, "speed": 4.0, "step": 2}
    at = _RUN(at, None, TIMEOUT)
    no_exceptions(at)
    assert len(tickets) == 2 and tickets[1] == tickets[0]        # the same visitor keeps its place
    no_exceptions(visitor())
    assert len(tickets) == 3 and tickets[2] > tickets[0]          # a newcomer queues behind
    assert (queue.served, queue.overruns, queue.waiting) == (3, 0, 0)


def test_the_caption_says_how_long_a_run_waited_for_its_turn(monkeypatch):
    from citypath.app.turns import Waited

    class Waiting:
        def __init__(self, waited):
            self.waited = waited

        def last_wait(self):
            return self.waited

    monkeypatch.setattr(turns, "_TURNS", Waiting(Waited(0.2344, 3)))
    assert turns.wait_text() == ", after 234 ms waiting behind 3 runs of other visitors"
    monkeypatch.setattr(turns, "_TURNS", Waiting(Waited(0.2, 1)))
    assert turns.wait_text() == ", after 200 ms waiting behind 1 run of other visitors"
    # the only visitor, whose own previous run was still going: no "other visitor" it never had
    monkeypatch.setattr(turns, "_TURNS", Waiting(Waited(0.2, 0, 1)))
    assert turns.wait_text() == ", after 200 ms waiting behind this page's previous run"
    monkeypatch.setattr(turns, "_TURNS", Waiting(Waited(0.2, 2, 1)))
    assert turns.wait_text() == ", after 200 ms waiting behind 2 runs of other visitors and this page's previous run"
    monkeypatch.setattr(turns, "_TURNS", Waiting(Waited(0.01, 1)))
    assert turns.wait_text() == ""


def test_the_picker_puts_the_classical_rows_last_and_the_default_comparison_leaves_them_out():
    """The classical algorithms are offered in their own group ("no learning") after the learned models; the
    first visit's comparison (smallest learned model against the largest) never picks one for its 0 parameters."""
    from citypath.app import resources

    cat = resources.catalog()
    classical = [n for n in cat.names if cat.labels[n].endswith("· no learning")]
    assert {"astar", "dijkstra", "anytime-astar", "bellman-ford"} <= set(classical)
    assert cat.names[-len(classical):] == classical
    assert not set(url.default_models(cat.names, cat.parameters)) & set(classical)
