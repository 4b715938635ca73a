"""Several app processes behind HAProxy (`serving/haproxy.cfg`, `python -m citypath.app.serve`), on loopback.

Each visitor loads the page (HAProxy sets its sticky cookie), opens the app's websocket with that
cookie, plays its route, then drops the connection and reconnects as a browser does after a
network blip: the process that answers must be the one that served it. Small graph, stand-in
models; the 40-visitor figures are `python -m benchmarks.load_app --balanced` (docs/benchmarks.md).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.fake_models import FAKE_FAMILIES, write_checkpoint

pytestmark = pytest.mark.skipif(not (shutil.which("haproxy") or Path("/usr/sbin/haproxy").exists()),
                                reason="HAProxy is not installed (the README's test command installs it)")


@pytest.fixture(scope="module")
def env(tmp_path_factory, small_graph):
    ckpt = tmp_path_factory.mktemp("checkpoints")
    write_checkpoint(ckpt, "demo-refining", "fake-refining", small_graph)
    write_checkpoint(ckpt, "demo-garbage", "fake-garbage", small_graph)
    return {"CITYPATH_STATES": "RI,MA", "CITYPATH_CHECKPOINTS": str(ckpt),
            "CITYPATH_MODEL_FAMILIES": ",".join(f"{k}={v}" for k, v in FAKE_FAMILIES.items()),
            "CITYPATH_CACHE_DIR": str(tmp_path_factory.mktemp("cache"))}


def test_two_processes_serve_a_crowd_each_visitor_sticking_to_its_process(env, tmp_path):
    from benchmarks import load_app
    from citypath.app.serve import Cluster

    with Cluster(env=env, log_dir=tmp_path) as cluster:
        out = load_app.run_load(sessions=8, steps=4, env=env, url=cluster.url, sticky=True,
                                server_pids=cluster.app_pids)
    assert out["errors"] == [] and out["sessions_ok"] == 8
    # the open, one request per model being computed, the stop, and the reopen after the reconnect
    assert out["frames_checked"] == 8 * 4 and out["messages_per_session"] <= 3 + len(out["models"])
    assert len(out["sessions_per_process"]) == 2 and "None" not in out["sessions_per_process"]  # both served
    assert out["server_cpu_s"] > 0                  # the app processes' CPU, not HAProxy's


def test_a_balancer_without_sticky_sessions_is_caught(env, tmp_path):
    """The check is not vacuous: round robin without the cookie moves reconnecting visitors."""
    from benchmarks import load_app
    from citypath.app.serve import CONFIG, Cluster

    loose = tmp_path / "haproxy-loose.cfg"
    text = CONFIG.read_text().replace("balance leastconn", "balance roundrobin")
    loose.write_text("\n".join(line for line in text.splitlines() if "cookie citypath_server" not in line)
                     .replace(" cookie app1", "").replace(" cookie app2", "") + "\n")
    with Cluster(config=loose, env=env, log_dir=tmp_path) as cluster:
        out = load_app.run_load(sessions=12, steps=2, env=env, url=cluster.url, sticky=True)
    # Round robin sends a reconnect to either process: 12 visitors all landing back by chance ~ 2^-12.
    assert any("moved between app processes" in e for e in out["errors"])


def test_a_crowd_survives_a_dying_process(env, tmp_path):
    """One of the two processes is killed (SIGKILL) while its visitors read their maps: each is moved to the live
    process by the balancer, gets its view back from the link (pair, models, step, speed) with every route and no
    error, after one lost connection; the replays the processes stored are whole."""
    from benchmarks import load_app

    out = load_app.run_failover(sessions=6, steps=4, env=env, seed=3, hold_s=8.0, log_dir=tmp_path)
    assert out["errors"] == [] and out["sessions_ok"] == 6
    assert out["sessions_on_killed"] >= 1 and out["moved"] == out["sessions_on_killed"]   # all of them, only them
    assert out["moved_to_killed"] == 0 and out["notices_max"] == 1
    assert out["restore_s_p50"] is not None and out["replays_stored"] >= 1 and out["replays_broken"] == []


def test_a_browser_whose_process_dies_gets_its_view_back(env, tmp_path):
    """Headless Chromium behind HAProxy: the process holding the tab is killed (SIGKILL); Streamlit's own page
    reconnects, the balancer moves it to the live process, and the tab shows the same link (pair, models, step,
    speed) with its route again, no exception, and the connection notice shown during one stretch at most."""
    import os
    import re
    import signal

    from benchmarks.browser_app import CHROMIUM_ARGS
    from citypath.app.serve import Cluster

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("Debian's chromium is not installed (see the README's test command)")
    sync_api = pytest.importorskip("playwright.sync_api")
    link = "?models=demo-refining&steps=4&step=2&speed=4&source=Worcester%2C+MA&target=Providence%2C+RI"
    with Cluster(env=env, log_dir=tmp_path) as cluster, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1300})
        try:
            page.goto(f"{cluster.url}/{link}", timeout=90_000)
            page.wait_for_selector("text=/process \\d+/", timeout=90_000)
            served = int(re.search(r"process (\d+)", page.inner_text("body")).group(1))
            assert served in cluster.app_pids
            before = page.url
            page.evaluate("""() => { window.__notices = 0; let shown = false;
              setInterval(() => { const now = /connecting/i.test(document.body.innerText);
                                  if (now && !shown) window.__notices += 1; shown = now; }, 50); }""")
            os.kill(served, signal.SIGKILL)
            page.wait_for_function(f"() => /process \\d+/.test(document.body.innerText) && "
                                   f"!document.body.innerText.includes('process {served}')", timeout=90_000)
            page.wait_for_timeout(1500)
            after = int(re.search(r"process (\d+)", page.inner_text("body")).group(1))
            assert after != served and after in cluster.app_pids
            assert page.url == before                                 # the same link: pair, models, step, speed
            frame = next(f for f in page.frames if "citypath_player" in f.url and not f.is_detached())
            frame.wait_for_selector("text=Compute so far", timeout=30_000)
            assert frame.evaluate("document.body.dataset.step") == "2" and frame.input_value("#speed") == "4"
            assert page.locator("[data-testid=stException]").count() == 0
            assert "Traceback" not in page.inner_text("body")
            assert page.evaluate("window.__notices") <= 1      # Streamlit's "Connecting" (none seen in a fast move)
        finally:
            browser.close()


def test_serve_says_what_is_missing(tmp_path):
    from citypath.app import serve

    bad = tmp_path / "empty.cfg"
    bad.write_text("global\n")
    assert serve.main(["--config", str(bad), "--port", "0"]) == 2
