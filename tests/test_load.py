"""Concurrent visitors of `streamlit run app.py`, each opening its own route and playing it to the end.

CI runs 4 websocket sessions x 16 steps on the default graph with the shipped checkpoints; the
full count (40 sessions) is `python -m benchmarks.load_app --sessions 40`, figures in
docs/benchmarks.md. Each session checks, frame by frame, that the paths the player holds are its
own model paths for its own pair (computed independently in this process), and that the server
heard from it a few times (the open, one request per model being computed, the stop), not once per
frame. Nothing here asserts a time.
"""

from __future__ import annotations

import pytest

from citypath.models import list_models

pytestmark = pytest.mark.skipif(len(list_models()) < 2, reason="needs two shipped checkpoints")


def test_concurrent_sessions_each_play_their_own_route_without_errors(default_graph):
    from benchmarks import load_app

    out = load_app.run_load(sessions=4, steps=16, seed=1)
    assert out["errors"] == []
    assert out["sessions_ok"] == 4
    assert out["frames_checked"] == 4 * 16          # every step of every session was seen and checked
    # the open, one request per model still to compute, the stop: none per frame of the 16
    assert out["messages_per_session"] <= 2 + len(out["models"])
    assert out["open_ms_p50"] > 0 and out["stop_ms_p50"] > 0
    assert 0 < out["map_ms_p50"] <= out["open_ms_p50"]        # the map comes first, the routes after
    assert out["server_cpu_s"] > 0 and out["server_cpu_ms_per_visitor"] == round(out["server_cpu_s"] / 4 * 1e3, 1)


def test_a_shared_link_on_a_running_server(default_graph):
    """--warm: a visitor of the default page first (graph and models loaded), then the crowd on one link."""
    from benchmarks import load_app

    out = load_app.run_load(sessions=4, steps=8, seed=2, shared=True, warm=["self"])
    assert out["errors"] == [] and out["frames_checked"] == 4 * 8
    assert out["server"].startswith("running") and len(out["warm_up_s"]) == 1 and out["warm_up_s"][0] > 0
    assert out["messages_per_session"] <= 2 + len(out["models"])     # the open, the routes' requests, the stop


def test_a_wrong_path_is_reported(default_graph, monkeypatch):
    """The checker is not vacuous: expecting other paths than the app draws is an error."""
    from benchmarks import load_app

    real = load_app.expected_paths

    def shifted(models, pairs, steps, env):
        exp = real(models, pairs, steps, env)
        first = pairs[0]
        exp[first][models[0]] = [p[::-1] for p in exp[first][models[0]]]   # reversed: never what is drawn
        return exp

    monkeypatch.setattr(load_app, "expected_paths", shifted)
    out = load_app.run_load(sessions=2, steps=3, seed=2)
    assert out["sessions_ok"] == 1
    assert any("drew" in e for e in out["errors"])


@pytest.mark.parametrize("launch", [True, False], ids=["citypath.app.launch", "streamlit-run"])
def test_a_launched_process_is_warm_before_its_port_opens(default_graph, launch):
    """`python -m citypath.app.launch` loads the graph and the models and computes the default view's routes before
    its port answers: the first visitor of the default page gets every route in the page's first run. Plain
    `streamlit run app.py` answers at once and that visitor's first run has every model still to compute."""
    from benchmarks.load_app import AppServer, Visitor

    with AppServer({}, warm=launch) as server:
        v = Visitor(server.url, 180.0)
        try:
            page = v.run(query="")
        finally:
            v.close()
        log = server.log_path.read_text()
    assert page.errors == [] and page.player_id
    assert ("ready in" in log) is launch
    if launch:
        assert page.pending == []
        assert "interesting pairs' routes:" in log and "model workers:" in log
    else:
        assert len(page.pending) >= 2          # the default comparison: two models, neither loaded yet


@pytest.mark.parametrize("setting, says", [
    ({"CITYPATH_STATES": "ZZ"}, ["error: states=('ZZ',)", "two-letter codes"]),
    ({"CITYPATH_RUNS_AT_ONCE": "0"}, ["error: CITYPATH_RUNS_AT_ONCE must be a whole number of at least 1, got '0'"]),
    ({"CITYPATH_COMPUTE_WORKERS": "-1"},
     ["error: CITYPATH_COMPUTE_WORKERS must be a whole number of at least 0, got '-1'"]),
])
def test_the_launcher_refuses_a_bad_setting_before_it_serves(tmp_path, setting, says):
    """A bad CITYPATH_* value stops `python -m citypath.app.launch` with the reason, before any port opens."""
    import os
    import subprocess
    import sys

    from benchmarks.load_app import REPO, free_port

    env = {**os.environ, **setting, "CITYPATH_CACHE_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "citypath.app.launch", "--server.port", str(free_port())], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert all(s in proc.stderr for s in says), proc.stderr
    assert "You can now view" not in proc.stdout + proc.stderr
