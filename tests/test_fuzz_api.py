"""Bad input at scale for the public API, the CLI and the app: refused clearly or answered, never a crash.

- `load_model` with odd names; `refine` with bad steps (0, -1, 10**9, 2.5, "3", True, None, ...)
  and bad city ids, for one shipped checkpoint of each family: a ValueError that says what is
  allowed, raised before the first path.
- `python -m citypath route ... --steps 10**9`: one clear line and a nonzero exit, no traceback.
- App links: `parse_query_params` over random unicode, 1 MB strings, bogus keys, lists and
  numbers returns a usable ViewState and short notices; AppTest renders bogus links with a warning.
- 1,000 random city pairs (held out and not) through the app's logic on the default graph.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from citypath import cli, is_heldout, replay
from citypath.app import picks, url
from citypath.app.url import MAX_SEED, ViewState
from citypath.models import ModelNotFound, list_models, load_model
from citypath.models.base import STEPS_LIMIT, check_steps
from citypath.replay import Shown
from citypath.view import present
from citypath.view.maplayers import layers_json, model_rgb, route_layers, static_layers
from tests.fake_models import GarbageFake, RefiningFake, use_fake_app, write_checkpoint

QUERY_KEYS = tuple(f.name for f in dataclasses.fields(ViewState))   # a link's parameters: the view's fields

REPO = Path(__file__).resolve().parents[1]
SHIPPED = list_models()
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
junk = st.one_of(st.integers(-10**20, 10**20), st.floats(allow_nan=True), st.text(max_size=20), st.none(),
                 st.booleans(), st.binary(max_size=8), st.lists(st.integers(0, 5), max_size=2))


def one_per_family() -> list[str]:
    """The first shipped checkpoint of each family (by card), so every family's refine is fuzzed."""
    from citypath.models import checkpoints_dir
    from citypath.models.base import read_card

    seen: dict[str, str] = {}
    for name in SHIPPED:
        seen.setdefault(read_card(checkpoints_dir() / f"{name}.json")["family"], name)
    return sorted(seen.values())


@pytest.fixture(scope="module")
def shipped(default_graph):
    """One loaded model per family (loading is the slow part; the bad calls themselves are instant)."""
    return {name: load_model(name, graph=default_graph) for name in one_per_family()}


# -- load_model --------------------------------------------------------------------------------

def _odd_names() -> list:
    odd = ["", " ", ".", "..", "/", "\x00", "con", "nul", "😀", "a" * 65, "a" * 100_000, "*", "?", "%2e%2e%2f"]
    for n in SHIPPED[:2]:
        odd += [n.upper(), f" {n}", f"{n} ", f"{n}\n", f"{n}\x00", f"{n}.json", f"{n}.safetensors", f"./{n}",
                f"checkpoints/{n}", f"../checkpoints/{n}", f"{n}/", n.replace("-", "_"), n[:-1], f"{n}*",
                n.encode(), [n], (n,), {n: 1}]
    return odd


@FUZZ
@given(st.one_of(st.text(max_size=80), st.sampled_from(_odd_names()), junk))
def test_load_model_refuses_odd_names_with_the_list_of_models(name):
    if isinstance(name, str) and name in SHIPPED:
        return  # a real name (vanishingly unlikely from random text) would simply load
    with pytest.raises(ModelNotFound) as e:
        load_model(name)
    msg = str(e.value)
    assert "available" in msg and len(msg) < 200 + 40 * len(SHIPPED)  # the name is echoed cut short


# -- refine: steps and city ids ------------------------------------------------------------------

BAD_STEPS = [0, -1, -(10**12), 10**9, STEPS_LIMIT + 1, 10**100, 2.5, 3.0, float("nan"), float("inf"), "3", "",
             True, False, None, [3], (3,), b"3", np.float64(2.0), np.bool_(True), object()]


@pytest.mark.parametrize("steps", BAD_STEPS, ids=lambda s: f"{type(s).__name__}-{str(s)[:12]}")
def test_check_steps_refuses_with_a_value_error_that_says_what_is_allowed(steps):
    with pytest.raises(ValueError) as e:
        check_steps(steps)
    msg = str(e.value)
    assert len(msg) < 200
    if isinstance(steps, int) and not isinstance(steps, bool):
        assert (str(STEPS_LIMIT) in msg) if steps > 0 else ("at least 1" in msg)
    else:
        assert "positive integer" in msg


@FUZZ
@given(st.integers(-10**30, 10**30).filter(lambda k: not 1 <= k <= STEPS_LIMIT))
def test_any_integer_out_of_range_is_refused(steps):
    with pytest.raises(ValueError, match=str(STEPS_LIMIT) if steps > 0 else "at least 1"):
        check_steps(steps)


def test_steps_accepts_integer_types_in_range():
    assert [check_steps(k) for k in (1, np.int64(2), np.uint8(3), STEPS_LIMIT)] == [1, 2, 3, STEPS_LIMIT]


@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED, reason="no shipped checkpoints")
def test_every_family_refuses_bad_steps_before_its_first_path(shipped, default_graph):
    g = default_graph
    src, dst = g.find_city("Boston, MA"), g.find_city("Denver, CO")
    for name, model in shipped.items():
        for steps in BAD_STEPS:
            with pytest.raises(ValueError) as e:
                next(iter(model.refine(g, src, dst, steps=steps)))
            assert "steps" in str(e.value), (name, steps, str(e.value))
        # ... and a numpy integer in range is a valid step count
        assert len(list(model.refine(g, src, src, steps=np.int64(2)))) == 2


@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED, reason="no shipped checkpoints")
@FUZZ
@given(bad=junk, end=st.sampled_from(["src", "dst"]))
@example(bad=-1, end="src").via("negative")
@example(bad=21217, end="dst").via("one past the last id of the default graph")
@example(bad=2**63, end="src").via("huge")
@example(bad=np.int64(-5), end="dst").via("numpy negative")
@example(bad=1.0, end="src").via("float")
@example(bad="0", end="dst").via("string")
def test_every_family_refuses_bad_city_ids(shipped, default_graph, bad, end):
    g = default_graph
    if isinstance(bad, (int, np.integer)) and not isinstance(bad, bool) and 0 <= bad < g.n_cities:
        return  # a valid id: not what this test is about
    args = {"src": 0, "dst": 1, end: bad}
    for model in shipped.values():
        with pytest.raises(ValueError, match="city id"):
            next(iter(model.refine(g, args["src"], args["dst"], steps=1)))


# -- the CLI -------------------------------------------------------------------------------------

ROUTE = ["route", "Providence, RI", "Westerly, RI", "--states", "RI"]


def test_cli_route_with_a_billion_steps_is_one_clear_line_and_exit_2(tmp_path):
    name = SHIPPED[0] if SHIPPED else "gru-small"
    proc = subprocess.run([sys.executable, "-m", "citypath", *ROUTE, "--model", name, "--steps", str(10**9),
                           "--png", str(tmp_path / "x.png")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"over the limit of {STEPS_LIMIT}" in proc.stderr and "error:" in proc.stderr
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("steps", ["0", "-1", str(STEPS_LIMIT + 1), str(10**30)])
def test_cli_route_refuses_out_of_range_steps(capsys, steps):
    assert cli.main([*ROUTE, "--model", "gru-small", "--steps", steps]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: steps=") and err.count("\n") == 1


@pytest.mark.parametrize("steps", ["2.5", "three", "", "1e3"])
def test_cli_route_refuses_non_integer_steps_through_argparse(capsys, steps):
    with pytest.raises(SystemExit) as e:
        cli.main([*ROUTE, "--model", "gru-small", "--steps", steps])
    assert e.value.code == 2 and "--steps: invalid int value" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["../checkpoints/gru-small", "GRU-SMALL", "nope", "a" * 5000])
def test_cli_route_with_an_odd_model_name_says_which_exist(capsys, name):
    assert cli.main([*ROUTE, "--model", name]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no checkpoint named") and len(err) < 1000


# -- app links -----------------------------------------------------------------------------------

HUGE = ["9" * 1_000_000, "a" * 1_000_000, "," * 1_000_000, "x," * 500_000, "💥" * 250_000, "Boston, MA" * 100_000,
        "-" + "9" * 999_999, " " * 1_000_000]
ODD = ["NaN", "nan", "inf", "-inf", "1e309", "-1e309", "0x10", "-0", " 7 ", "+3", "1_000", "٣", "²", "⑦", "\x00",
       "\u202e", "🚀", "Boston, MA", "boston", "Springfield", "Honolulu, HI", "0", "-1", str(2**31), str(10**40),
       "%00", "<script>alert(1)</script>", "' OR 1=1 --", "a,b,,c", "\n", "\t"]
scalar = st.one_of(st.text(max_size=60), st.sampled_from(ODD), st.sampled_from(HUGE),
                   st.integers(-10**40, 10**40).map(str), st.from_regex(r"-?\d{1,12}", fullmatch=True))
value = st.one_of(scalar, st.lists(scalar, max_size=4),
                  st.integers(-10**40, 10**40), st.floats(), st.none(), st.booleans())  # not strings: must not break
key = st.one_of(st.sampled_from(QUERY_KEYS), st.text(max_size=12))
MODELS = ["demo-a", "demo-b", "demo-c"]


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(params=st.dictionaries(key, value, max_size=8), max_steps=st.integers(1, 128))
@example(params={k: h for k, h in zip(QUERY_KEYS, HUGE)}, max_steps=16).via("1 MB in every parameter")
@example(params={"source": ["3", "x"], "target": [], "models": ["", "demo-a,demo-a"], "steps": 7, "seed": None},
         max_steps=16).via("lists, empties and non-strings")
def test_any_link_gives_a_usable_view_and_short_notices(small_graph, params, max_steps):
    g = small_graph
    state, notices = url.parse_query_params(params, g, MODELS, max_steps=max_steps,
                                                parameters={"demo-a": 10, "demo-b": 1000})
    assert isinstance(state, ViewState)
    assert all(type(v) is int for v in (state.source, state.target, state.steps, state.seed))
    assert 0 <= state.source < g.n_cities and 0 <= state.target < g.n_cities
    assert 1 <= state.steps <= max_steps and 0 <= state.seed <= MAX_SEED
    assert isinstance(state.models, tuple) and set(state.models) <= set(MODELS)
    assert len(set(state.models)) == len(state.models)
    assert isinstance(notices, list) and all(isinstance(n, str) and 0 < len(n) < 400 for n in notices)
    # The link the app then writes reproduces the view exactly, without notices.
    again, quiet = url.parse_query_params(url.to_query_params(state, g), g, MODELS, max_steps=max_steps)
    assert again == state and quiet == []


# -- the app with bogus links (AppTest) -------------------------------------------------------------

AppTest = pytest.importorskip("streamlit.testing.v1").AppTest


@pytest.fixture
def app_env(tmp_path, small_graph, monkeypatch):
    ckpt = tmp_path / "checkpoints"
    write_checkpoint(ckpt, "demo-refining", "fake-refining", small_graph)
    write_checkpoint(ckpt, "demo-garbage", "fake-garbage", small_graph)
    return use_fake_app(monkeypatch, ckpt)


@pytest.mark.parametrize("query, words", [
    ({"source": "💥" * 1000, "target": "9" * 5000, "steps": "-1e309", "seed": "NaN",
      "models": ",,💥,demo-refining", "bogus": "x" * 1000, "": ""}, ["source", "target", "steps", "seed", "💥"]),
    ({"source": "\x00<script>alert(1)</script>", "target": "Boston, MA", "steps": str(10**40),
      "models": "a" * 100_000}, ["source", "steps", "model(s) not available"]),
    ({"source": "a" * 400_000, "target": "Worcester, MA", "seed": str(-(2**70))}, ["source", "seed"]),
    # Over 512k characters Streamlit drops the whole query string itself: the default view, no notice.
    ({"source": "a" * 1_000_000, "target": "Worcester, MA", "seed": "-1"}, []),
])
def test_the_app_renders_bogus_links_with_a_warning(app_env, query, words):
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    for k, v in query.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    warnings = " ".join(w.value for w in at.warning)
    assert all(w in warnings for w in words) and bool(words) == bool(warnings), warnings[:2000]
    assert len(warnings) < 3000                                  # huge values are not echoed back
    players = at.get("component_instance")
    assert players, "no map on the page"
    assert "optimal" in {layer["id"] for layer in json.loads(players[0].proto.json_args)["static"]["bottom"]} \
        or query.get("source") == query.get("target")
    # The address bar now holds a clean link for the view that is shown.
    assert set(at.query_params) == set(QUERY_KEYS)


# -- 1,000 random pairs through the app's logic (default graph) ------------------------------------

@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED, reason="no shipped checkpoints")
def test_a_thousand_random_pairs_through_the_apps_logic(default_graph):
    g = default_graph
    fastest = "gru-small" if "gru-small" in SHIPPED else SHIPPED[0]
    card = {"num_parameters": 1, "max_steps": 8, "graph": {"fingerprint": g.fingerprint}}
    models = [load_model(fastest, graph=g), RefiningFake("refining", card), GarbageFake("garbage", card)]
    rng = np.random.default_rng(2024)
    # 500 held-out pairs as the Random button draws them, each followed by a pair from the same source
    # to a random city it was trained on: scoring runs Dijkstra from the source (most of this test's
    # time), so two pairs per source halve the cost without narrowing the targets.
    pairs = []
    for _ in range(500):
        s, t = picks.random_heldout_pair(g, rng)
        u = next(int(u) for u in rng.integers(0, g.n_cities, 1000) if u != s and not is_heldout(s, int(u)))
        pairs += [(s, t), (s, u)]
    assert [is_heldout(s, t) for s, t in pairs] == [True, False] * 500
    assert all(s != t for s, t in pairs) and len(set(pairs)) > 990
    for i, (s, t) in enumerate(pairs):
        # The replay scores the path, so it runs Dijkstra from s: most of this test's time.
        shipped = replay.compute_replay(models[0], g, s, t, 1, seed=i)
        assert shipped.error is None and len(shipped.paths) == 1 and len(shipped.metrics) == 1
        fake = replay.compute_replay(models[1 + i % 2], g, s, t, 2, seed=i)  # a refining or a garbage model
        assert fake.error is None and len(fake.metrics) == 2
        optimal = g.shortest_path(s, t)
        assert optimal[0] == s and optimal[-1] == t
        assert shipped.metrics["optimal_km"].iloc[0] == pytest.approx(g.path_length_km(optimal))
        for r, step in ((shipped, 1), (fake, 1), (fake, 2)):
            cards = present.metric_cards_by_step(r.metrics, [step])[0]
            assert [c.label for c in cards][:3] == ["Valid", "Illegal jumps", "Reaches target"]
        runs = [Shown(shipped, 1, model_rgb(0)), Shown(fake, 2, model_rgb(1))]
        bottom, top = static_layers(g, s, t, optimal)
        layers = bottom + route_layers(g, runs) + top
        ids = [layer.id for layer in layers]
        assert "optimal" in ids and "model-0" in ids and "endpoints" in ids
        if i % 50 == 0:  # what the browser receives; costly, so for a sample of the pairs
            assert "optimal" in {layer["id"] for layer in layers_json(layers)}
