"""Load: many concurrent visitors of `streamlit run app.py`, each opening a link and playing its route.

    python -m benchmarks.load_app                       # 20 sessions x 16 steps, default graph + shipped models
    python -m benchmarks.load_app --sessions 4 --steps 8 --states RI,MA --checkpoints DIR
    python -m benchmarks.load_app --kill-one --sessions 40     # two processes behind HAProxy, one killed mid-run
    python -m benchmarks.load_app --sessions 40 --cold          # no stored routes: every route computed
    python -m benchmarks.load_app --sessions 40 --harness 30    # one more visitor runs the harness meanwhile

Starts `streamlit run app.py` on a loopback port (or uses `--url` of a running one) and opens one
websocket client per session, speaking Streamlit's own protocol (the protobufs the browser sends),
so each client is what a browser tab is to the server. Every session:

1. opens the app with a link `?source=<id>&target=<id>&models=...&steps=K&seed=0` for a random
   held-out pair of its own,
2. asks for the models still being computed as the player does (one request each, each answered
   with the player and one more model's route), then reads the player the page sends (the
   browser-side player's arguments: every step's layers) and checks every frame the browser would
   play: for each model the city ids drawn on the map at step k (the `hops-i` layer of frame k) equal
   that model's path at that step, as computed in this process by the same
   `citypath.replay.compute_replay` the app uses,
3. plays it as a browser does (no message to the server per frame) and, when playback stops at step
   K, sends the one report the player sends (the shown step and speed, for the link): the server's
   work per session is the open and that one stop, whatever K is.

Reports errors (exception or error elements, wrong or missing paths, timeouts, lost connections),
the time to open a link (send the first rerun -> the last script run of the page finished, the
page's models computed progressively in between), the time to handle the stop report, the
messages each session sent, and the CPU time the app process(es) spent while the crowd ran. Prints
one JSON object; exits 1 on any error. `tests/test_load.py` runs a small count in CI.

`--kill-one`: two app processes behind HAProxy, every visitor staying on its page; once all have opened,
one process is killed (SIGKILL). Each of its visitors reconnects as a browser does (the page's cookies,
the link in its address bar, every widget's value) and must be moved to the live process and find its
view (pair, models, step, speed) with every route, no error, after one lost connection; then the stored
replays are checked whole. `tests/test_serving.py` runs a small crowd in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState
from websockets.sync.client import connect  # a streamlit dependency

REPO = Path(__file__).resolve().parents[1]

FINISHED_EARLY = ForwardMsg.ScriptFinishedStatus.FINISHED_EARLY_FOR_RERUN
COMPILE_ERROR = ForwardMsg.ScriptFinishedStatus.FINISHED_WITH_COMPILE_ERROR
ALERT_ERROR = 1  # Alert.Format.ERROR


# -- one app server -------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    """One app process on a free loopback port, stopped on exit; its log is kept.

    `warm` (default): `python -m citypath.app.launch`, which loads the graph and the models before its port
    opens (what README and `citypath.app.serve` start); `warm=False`: plain `streamlit run app.py`, which loads
    them inside the first visitors' wait."""

    def __init__(self, env: dict[str, str] | None = None, log_path: Path | None = None, *, warm: bool = True,
                 app_dir: Path | None = None):
        """`app_dir`: another checkout of the app to serve (a "before" of a change, measured by this code)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app_dir = Path(app_dir or REPO)
        self.env = {**os.environ, "PYTHONPATH": str(self.app_dir), **(env or {})}
        self.log_path = log_path or Path(os.environ.get("TMPDIR", "/tmp")) / f"citypath-load-{self.port}.log"
        self.warm = warm
        self.ready_s: float | None = None        # launch -> the port answers

    def __enter__(self) -> AppServer:
        from citypath.app.serve import app_command, wait_healthy

        self.log = open(self.log_path, "w")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(app_command(self.port, warm=self.warm), cwd=self.app_dir, env=self.env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_healthy(self.url, self.proc, f"the app (log: {self.log_path})", timeout_s=900)
        except BaseException:
            self.__exit__()
            raise
        self.ready_s = time.perf_counter() - t0
        return self

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


# -- one visitor ------------------------------------------------------------------------------

@dataclass
class Frame:
    """What one script run (whole page or fragment) showed."""

    ms: float
    step: int | None = None                      # the step the player is told to show first
    # step -> model index -> city ids the player draws at that step (every step, sent once)
    drawn: dict[int, dict[int, list[int]]] = field(default_factory=dict)
    player_id: str = ""                          # the player's widget id (its reports are sent under it)
    pending: list[str] = field(default_factory=list)   # models the player says are still being computed
    errors: list[str] = field(default_factory=list)


class Visitor:
    """One browser tab's worth of protocol: reruns, widget triggers, the fragment timer."""

    def __init__(self, base_url: str, timeout: float = 120.0, cookie: str | None = None):
        """`cookie`: sent with the websocket's handshake, as a browser sends the cookies the page set
        (a balancer's sticky-session cookie); see `page_cookie`."""
        self.base_url = base_url
        self.cookie = cookie
        ws_url = base_url.replace("http://", "ws://") + "/_stcore/stream"
        headers = {"Cookie": cookie} if cookie else None
        self.ws = connect(ws_url, subprotocols=["streamlit"], origin=base_url, max_size=None,
                          open_timeout=timeout, additional_headers=headers).__enter__()
        self.pid: int | None = None                # the app process that served the last run (its caption)
        self.timeout = timeout
        self.query = ""
        self.page_hash = ""
        self.page_name = ""                        # another page of the app ("Test-time_compute"), by its URL name
        self.widgets: dict[str, str] = {}          # user key -> widget id
        self.values: dict[str, WidgetState] = {}   # widget id -> its current value, sent with every rerun
        self.auto_rerun: tuple[float, str] | None = None  # (interval s, fragment id) if a fragment timer runs
        self.sent = 0                                      # messages sent to the server
        self.fetched: dict[str, object] = {}               # URL -> JSON fetched (the player's downloads)

    def close(self) -> None:
        self.ws.close()

    def watch(self, seconds: float) -> None:
        """Stay on the page for `seconds`, sending nothing, as a tab whose player plays or whose visitor reads;
        raises websockets' ConnectionClosed as soon as the server's end goes (a browser notices at once)."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                self.ws.recv(timeout=min(left, 0.5))
            except TimeoutError:
                continue

    def fetch_json(self, url: str):
        """GET a URL the page names (relative to the app), once per visitor, as the player's fetch does."""
        if url not in self.fetched:
            req = urllib.request.Request(f"{self.base_url}/{url.lstrip('/')}",
                                         headers={"Cookie": self.cookie} if self.cookie else {})
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                self.fetched[url] = json.loads(r.read())
        return self.fetched[url]

    def run(self, *, query: str | None = None, trigger: str | None = None, fragment: str = "",
            report: tuple[str, dict] | None = None) -> Frame:
        """Send one rerun (optionally clicking the widget with user key `trigger`, or with a component's
        report `(widget id, value)`) and read until the page's last script run ends."""
        if query is not None:
            self.query = query
        bm = BackMsg()
        cs = bm.rerun_script
        cs.query_string = self.query
        cs.page_script_hash = "" if self.page_name else self.page_hash     # another page: by its name only
        cs.page_name = self.page_name
        if fragment:
            cs.fragment_id, cs.is_auto_rerun = fragment, True
        # Like the browser, every rerun carries the value of every widget on the page.
        cs.widget_states.widgets.extend(self.values.values())
        if trigger:
            w = cs.widget_states.widgets.add()
            w.id, w.trigger_value = self.widgets[trigger], True
        if report:
            state = WidgetState(id=report[0], json_value=json.dumps(report[1]))
            self.values[report[0]] = state
            cs.widget_states.widgets.append(state)
        t0 = time.perf_counter()
        self.ws.send(bm.SerializeToString())
        self.sent += 1
        frame = Frame(ms=0.0)
        whole_page = not fragment
        while True:
            fm = ForwardMsg()
            fm.ParseFromString(self.ws.recv(timeout=self.timeout))
            kind = fm.WhichOneof("type")
            if kind == "new_session":
                self.page_hash = self.page_hash or fm.new_session.page_script_hash
                if whole_page:            # the fragments re-register their timers as the page runs
                    self.auto_rerun = None
            elif kind == "page_info_changed":
                self.query = fm.page_info_changed.query_string
            elif kind == "auto_rerun":
                self.auto_rerun = (fm.auto_rerun.interval, fm.auto_rerun.fragment_id)
            elif kind == "stop_auto_rerun":
                self.auto_rerun = None
            elif kind == "delta" and fm.delta.WhichOneof("type") == "new_element":
                self._read_element(fm.delta.new_element, frame)
            elif kind == "script_finished":
                if fm.script_finished == COMPILE_ERROR:
                    frame.errors.append("the script failed to compile")
                whole_page = True         # a rerun that follows is of the whole page (st.rerun(scope="app"))
                if fm.script_finished != FINISHED_EARLY:
                    frame.ms = (time.perf_counter() - t0) * 1e3
                    return frame

    def _read_element(self, el, frame: Frame) -> None:
        kind = el.WhichOneof("type")
        if kind == "exception":
            frame.errors.append(f"exception: {el.exception.type}: {el.exception.message[:200]}")
        elif kind == "markdown" and "· process " in el.markdown.body:
            self.pid = int(el.markdown.body.rsplit("· process ", 1)[1].split()[0].strip("`*"))
        elif kind == "alert" and el.alert.format == ALERT_ERROR:
            frame.errors.append(f"error shown: {el.alert.body[:200]}")
        elif kind == "component_instance" and el.component_instance.component_name.endswith("citypath_player"):
            args = json.loads(el.component_instance.json_args)
            frame.player_id, frame.step = el.component_instance.id, int(args.get("step", 0))
            frame.pending = list(args.get("pending", []))
            frame.drawn = {}
            frames = args.get("frames", [])
            if isinstance(frames, str):      # a file written once per comparison: fetched as the browser does
                frames = self.fetch_json(frames)
            for k, layers in enumerate(frames, start=1):
                frame.drawn[k] = {int(str(layer["id"])[5:]): [int(d["id"]) for d in layer.get("data", [])]
                                  for layer in layers if str(layer.get("id", "")).startswith("hops-")}
        elif kind in WIDGETS:
            widget = getattr(el, kind)
            key = widget.id.rsplit("-", 1)[-1]
            self.widgets[key] = widget.id
            # The server sends a value when it sets one (set_value); otherwise the browser keeps its own.
            if getattr(widget, "set_value", False) or widget.id not in self.values:
                state = widget_value(kind, widget)
                if state is not None:
                    self.values[widget.id] = state


def follow_pending(v: Visitor, frame: Frame, limit: int) -> Frame:
    """Ask for each model still being computed, as the player does, up to `limit` times; the frame with every
    route there is, its `ms` summed over the requests."""
    for _ in range(limit):
        if not frame.pending or not frame.player_id:
            break
        more = v.run(report=(frame.player_id, {"more": True, "step": 1, "speed": 1.0,
                                               "seq": time.time_ns() // 1000}))
        more.ms += frame.ms
        frame = more
    return frame


def page_cookie(base_url: str, timeout: float = 30.0) -> str | None:
    """Load the page as a browser does first and return the cookies it set ("name=value; ..."), or None."""
    with urllib.request.urlopen(base_url + "/", timeout=timeout) as r:
        cookies = [h.split(";", 1)[0] for h in r.headers.get_all("Set-Cookie") or []]
    return "; ".join(cookies) or None


WIDGETS = ("button", "slider", "selectbox", "multiselect", "number_input", "checkbox", "radio", "download_button")


def _first(x):
    return x if isinstance(x, (int, float)) else x[0]


def widget_value(kind: str, w) -> WidgetState | None:
    """The value a browser would send back for a widget element, as the server last set it."""
    state = WidgetState(id=w.id)
    if kind in ("button", "download_button"):
        return None  # triggers: sent only when clicked
    if kind in ("selectbox", "radio"):
        state.string_value = w.raw_value if w.HasField("raw_value") else w.options[_first(w.default)]
    elif kind == "multiselect":
        state.string_array_value.data.extend(w.raw_values)
    elif kind == "slider" and w.options:     # a select_slider: its options' labels
        raw = list(w.raw_value) if not isinstance(w.raw_value, str) else [w.raw_value]
        state.string_array_value.data.extend(raw or [w.options[int(i)] for i in w.default])
    elif kind == "slider":
        state.double_array_value.data.extend(w.value if w.value else w.default)
    elif kind == "number_input" and w.data_type == w.INT:
        state.int_value = int(w.value if w.HasField("value") else _first(w.default))
    elif kind == "number_input":
        state.double_value = w.value if w.HasField("value") else _first(w.default)
    elif kind == "checkbox":
        state.bool_value = w.value
    return state


# -- a session: open, play, check -----------------------------------------------------------------

@dataclass
class SessionResult:
    source: int
    target: int
    frames: list[Frame]          # [the opened page, the page after the stop report]
    steps_seen: list[int]        # the steps checked (each frame of the browser's playback)
    errors: list[str]
    messages: int = 0            # messages this session sent to the server
    pid: int | None = None       # the app process that served it
    map_ms: float | None = None  # the first player: the map with the optimal path, before any route


def play_session(base_url: str, source: int, target: int, models: list[str], steps: int,
                 expected: dict[str, list[list[int]]], timeout: float = 120.0, speed: float = 16.0,
                 sticky: bool = False) -> SessionResult:
    """One visitor: open a link to (source, target), play every step in the browser, report the stop.

    `sticky` (behind a balancer): load the page first for its cookie, and after the stop drop the
    connection and reconnect with the cookie, as a browser does after a network blip; the process
    that answers must be the one that served the session.
    """
    frames: list[Frame] = []
    errors: list[str] = []
    seen: list[int] = []
    query = urllib.parse.urlencode({"source": source, "target": target, "models": ",".join(models),
                                    "steps": steps, "seed": 0})
    try:
        cookie = page_cookie(base_url, timeout) if sticky else None
        v = Visitor(base_url, timeout, cookie)
    except Exception as e:
        return SessionResult(source, target, [], [], [f"connect: {type(e).__name__}: {e}"])
    pids: list[int | None] = []
    map_ms = None
    try:
        first = v.run(query=query)
        map_ms = first.ms
        first = follow_pending(v, first, len(models) + 2)
        frames.append(first)
        if not first.player_id:
            errors.append("the page sent no player")
        for k in sorted(first.drawn):          # the browser plays these with no server round trip
            seen.append(k)
            for i, name in enumerate(models):
                want, got = expected[name][k - 1], first.drawn[k].get(i, [])
                if got != want:
                    errors.append(f"step {k}, {name}: drew {str(got)[:60]} not {str(want)[:60]}")
        time.sleep(steps / speed)              # the playback's own time, in the browser
        if first.player_id:
            report = {"step": steps, "speed": speed, "seq": time.time_ns() // 1000}
            frames.append(v.run(report=(first.player_id, report)))
            if frames[-1].step != steps:
                errors.append(f"after the stop report the player shows step {frames[-1].step}, not {steps}")
        pids.append(v.pid)
        if sticky:
            v.close()
            sent_before = v.sent
            v = Visitor(base_url, timeout, cookie)        # a reconnect, with the page's cookie
            v.sent += sent_before
            v.run(query=query)
            pids.append(v.pid)
            if len(set(pids)) != 1:
                errors.append(f"the session moved between app processes {pids} (cookie {cookie!r})")
    except Exception as e:
        errors.append(f"{type(e).__name__}: {e}")
    finally:
        v.close()
    for f in frames:
        errors.extend(f.errors)
    if seen != list(range(1, steps + 1)):
        errors.append(f"the player holds steps {seen}, not 1..{steps}")
    return SessionResult(source, target, frames, seen, errors, v.sent, pids[0] if pids else None, map_ms)


# -- a crowd that loses a process -------------------------------------------------------------------

VIEW_KEYS = ("source", "target", "models", "steps", "seed", "step", "speed")


def view_of(query: str) -> dict[str, str]:
    """What a link reproduces, read from a query string: the pair, models, steps, seed, step shown, speed."""
    q = urllib.parse.parse_qs(query)
    return {k: q[k][0] for k in VIEW_KEYS if k in q}


@dataclass
class FailoverResult:
    source: int
    target: int
    errors: list[str]
    pid: int | None = None           # the process that served the visitor first
    pid_after: int | None = None     # ... and after the loss (None: never lost its connection)
    notices: int = 0                 # connection losses the visitor saw ("Connecting..." in a browser)
    attempts: int = 0                # reconnection attempts until one held
    restore_s: float | None = None   # the kill -> the view back, with every route, from the live process
    opened: bool = False             # its page had opened before the kill


def _open(v: Visitor, query: str, models: list[str], expected: dict[str, list[list[int]]], steps: int,
          errors: list[str]) -> Frame:
    """Open `query` as the player does (asking for each model still computing) and check every frame drawn."""
    page = follow_pending(v, v.run(query=query), len(models) + 2)
    errors.extend(page.errors)
    if not page.player_id:
        errors.append("the page sent no player")
    for k in range(1, steps + 1):
        for i, name in enumerate(models):
            if page.drawn.get(k, {}).get(i, []) != expected[name][k - 1]:
                errors.append(f"step {k}, {name}: not the model's path")
                return page
    return page


def _reconnect(base_url: str, cookie: str | None, timeout: float, deadline: float) -> tuple[Visitor, str | None, int]:
    """Reconnect as the browser does after a lost connection (with the page's cookies, retrying every 0.5 s):
    the visitor, its cookies (the balancer may set a new one on the handshake) and the attempts it took."""
    attempts = 0
    while True:
        attempts += 1
        try:
            v = Visitor(base_url, timeout, cookie)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    fresh = [h.split(";", 1)[0] for h in v.ws.response.headers.get_all("Set-Cookie")]
    if fresh:
        jar = dict(c.split("=", 1) for c in (cookie or "").split("; ") if "=" in c)
        jar.update(c.split("=", 1) for c in fresh if "=" in c)
        cookie = v.cookie = "; ".join(f"{k}={val}" for k, val in jar.items())
    return v, cookie, attempts


def failover_session(base_url: str, source: int, target: int, models: list[str], steps: int,
                     expected: dict[str, list[list[int]]], killed: dict, hold_s: float, timeout: float = 120.0,
                     speed: float = 16.0, clicks: bool = False) -> FailoverResult:
    """One visitor behind the balancer who stays on the page until `hold_s` after the kill (`killed["at"]`,
    time.monotonic()): it opens its link (then adds itself to `killed["opened"]`), plays it, reports the stop,
    then reads the map. If its process dies, it reconnects as the browser does
    (the page's cookies, the link's query string and every widget's value) and must find the same view (pair,
    models, step, speed) served by another process, every route drawn, no error, after one loss at most, and
    keep it on its next rerun. `clicks`: after the stop it clicks its own two cities on the map (source, then
    target: the same route), so the last report its browser holds, and sends again, is a click."""
    from websockets.exceptions import ConnectionClosed

    errors: list[str] = []
    res = FailoverResult(source, target, errors)
    query = urllib.parse.urlencode({"source": source, "target": target, "models": ",".join(models),
                                    "steps": steps, "seed": 0})
    try:
        cookie = page_cookie(base_url, timeout)
        v = Visitor(base_url, timeout, cookie)
    except Exception as e:
        errors.append(f"connect: {type(e).__name__}: {e}")
        return res
    page, stopped = None, False
    try:
        while True:
            try:
                if page is None:
                    page = _open(v, query, models, expected, steps, errors)
                    res.pid, res.opened = v.pid, "at" not in killed
                    killed["opened"].append(source)
                if not stopped:
                    v.watch(steps / speed)                  # the browser plays the steps
                    report = {"step": steps, "speed": speed, "seq": time.time_ns() // 1000}
                    after = v.run(report=(page.player_id, report))
                    errors.extend(after.errors)
                    for city in (source, target) if clicks else ():
                        report = {"step": steps, "speed": speed, "seq": time.time_ns() // 1000, "click": city}
                        errors.extend(v.run(report=(page.player_id, report)).errors)
                    stopped = True
                while "at" not in killed or time.monotonic() < killed["at"] + hold_s:
                    v.watch(0.5)                            # reading the map, connected
                break
            except TimeoutError:
                errors.append(f"no answer within {timeout:g} s")
                break
            except (ConnectionClosed, OSError) as e:
                res.notices += 1
                if res.notices > 1:
                    errors.append(f"lost the connection again: {type(e).__name__}")
                    break
                # The browser keeps its address bar (the link as the server last wrote it) and its widgets.
                link, values, page_hash = v.query or query, dict(v.values), v.page_hash
                before = view_of(link)
                res.pid = res.pid or v.pid
                if page is None:
                    killed["opened"].append(source)         # (its first open was cut: it opens below)
                v.close()
                v, cookie, res.attempts = _reconnect(base_url, cookie, timeout, time.monotonic() + timeout)
                v.values, v.page_hash = values, page_hash     # what the browser sends again with its rerun
                page = _open(v, link, models, expected, steps, errors)
                res.pid_after = v.pid
                res.restore_s = time.monotonic() - killed.get("at", time.monotonic())
                after = view_of(v.query)
                if {k: after.get(k) for k in before} != before:
                    errors.append(f"the view came back as {after}, not {before}")
                errors.extend(v.run().errors)                 # any rerun next (a widget in the sidebar)
                if {k: view_of(v.query).get(k) for k in before} != before:
                    errors.append(f"the next rerun changed the view to {view_of(v.query)}, not {before}")
                if v.pid == res.pid:
                    errors.append(f"reconnected to the same process {v.pid}")
    except Exception as e:
        errors.append(f"{type(e).__name__}: {e}")
    finally:
        v.close()
    return res


def replay_files_intact(directory: Path) -> dict:
    """Every stored replay under `directory` parses whole; temp files a killed write left (never read) counted."""
    stored = list(directory.rglob("*.json")) if directory.is_dir() else []
    broken = []
    for path in stored:
        try:
            json.loads(path.read_text())
        except ValueError:
            broken.append(str(path))
    return {"replays_stored": len(stored), "replays_broken": broken,
            "temp_files_left": len(list(directory.rglob(".*.tmp"))) if directory.is_dir() else 0}


def run_failover(sessions: int = 40, steps: int = 16, *, env: dict[str, str] | None = None, seed: int = 0,
                 kill_after_s: float = 0.0, hold_s: float = 30.0, timeout: float = 180.0,
                 log_dir: Path | None = None, clicks: bool = True) -> dict:
    """Two app processes behind HAProxy (`citypath.app.serve.Cluster`) and `sessions` visitors on their own
    pairs; `kill_after_s` after every visitor has opened its page (the first ones are playing or reading the map
    by then), one app process is killed (SIGKILL); every visitor stays `hold_s` after the kill. Summarises who
    was moved, their errors, how long each took to get its view back, and whether the stored replays are whole.
    `clicks`: every other visitor clicks its two cities after its stop (see `failover_session`)."""
    import signal

    from citypath import settings
    from citypath.app.serve import Cluster

    env = dict(env or {})
    pairs, models = pick_pairs(sessions, env, seed)
    expected = expected_paths(models, sorted(set(pairs)), steps, env)
    killed: dict = {"opened": []}
    with Cluster(env=env, log_dir=log_dir) as cluster:
        victim = cluster.app_pids[0]
        start = threading.Barrier(sessions + 1)

        def one(i, pair):
            start.wait()
            return failover_session(cluster.url, pair[0], pair[1], models, steps, expected[pair], killed, hold_s,
                                    timeout, clicks=clicks and i % 2 == 1)

        with ThreadPoolExecutor(sessions) as pool:
            futures = [pool.submit(one, i, pair) for i, pair in enumerate(pairs)]
            start.wait()
            t0 = time.monotonic()
            while len(killed["opened"]) < sessions and time.monotonic() < t0 + timeout:
                time.sleep(0.1)
            time.sleep(kill_after_s)
            killed["at"] = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            results = [f.result() for f in futures]
        crowd_open_s = killed["at"] - t0 - kill_after_s
        load = os.getloadavg()[0]
    store = settings.cache_dir({**os.environ, **env})          # where the app processes stored their replays
    moved = [r for r in results if r.pid_after is not None]
    restore = sorted(r.restore_s for r in moved if r.restore_s is not None)
    errors = [f"session {i} ({r.source}->{r.target}): {e}" for i, r in enumerate(results) for e in r.errors]
    q = (lambda xs, p: round(float(np.percentile(xs, p)), 2) if xs else None)
    return {
        "sessions": sessions, "steps": steps, "models": models,
        "graph": env.get("CITYPATH_STATES", os.environ.get("CITYPATH_STATES", "")) or "default",
        "balanced": f"HAProxy + {len(cluster.slots)} app processes, one killed (SIGKILL) {kill_after_s:g} s "
                    "after every visitor had opened its page",
        "crowd_open_s": round(crowd_open_s, 1),
        "killed_pid": victim,
        "sessions_on_killed": sum(r.pid == victim for r in results),
        "moved": len(moved), "moved_to_killed": sum(r.pid_after == victim for r in moved),
        "opened_before_kill": sum(r.opened for r in results),
        "errors": errors, "sessions_ok": sum(not r.errors for r in results),
        "notices_max": max((r.notices for r in results), default=0),
        "reconnect_attempts_max": max((r.attempts for r in results), default=0),
        "restore_s_p50": q(restore, 50), "restore_s_max": round(restore[-1], 2) if restore else None,
        **replay_files_intact(store / "replays"),
        "load_average": round(load, 2),
    }
class HarnessVisitor(threading.Thread):
    """One visitor of the Test-time compute page who starts "Re-run the harness" (`pairs` pairs, the crowd's
    models) and keeps its progress fragment polling, as a browser does, until `stop`; then cancels it.
    `outcome`: "started" (and "cancelled" after the stop), or what the page said instead."""

    def __init__(self, base_url: str, models: list[str], pairs: int, timeout: float = 120.0):
        super().__init__(daemon=True)
        self.base_url, self.models, self.pairs, self.timeout = base_url, models, pairs, timeout
        self.started = threading.Event()
        self.stop = threading.Event()
        self.outcome = ""
        self.polls = 0
        self.errors: list[str] = []

    def run(self) -> None:
        try:
            v = Visitor(self.base_url, self.timeout)
        except Exception as e:
            self.errors.append(f"harness visitor: connect: {type(e).__name__}: {e}")
            self.started.set()
            return
        try:
            v.page_name = "Test-time_compute"
            page = v.run(query="")
            self.errors += page.errors
            # (widgets are known by the last part of their key: "harness-models" -> "models")
            models_id, pairs_id = v.widgets.get("models"), v.widgets.get("pairs")
            if not models_id or not pairs_id or "run" not in v.widgets:
                self.outcome = "the page has no harness controls"
                return
            v.values[models_id] = WidgetState(id=models_id)
            v.values[models_id].string_array_value.data.extend(self.models)
            v.values[pairs_id] = WidgetState(id=pairs_id, int_value=self.pairs)
            v.run()                                              # the plan and its cost, for these choices
            frame = v.run(trigger="run")
            self.errors += frame.errors
            self.outcome = "started" if v.auto_rerun else "refused or not started (see the page)"
            self.started.set()
            while v.auto_rerun and not self.stop.wait(v.auto_rerun[0]):
                v.run(fragment=v.auto_rerun[1])                  # the progress bar's timer, as in a browser
                self.polls += 1
            if v.auto_rerun and "cancel" in v.widgets:
                v.run(trigger="cancel", fragment=v.auto_rerun[1])
                self.outcome += ", cancelled after the crowd"
            elif self.outcome == "started":
                self.outcome += ", ended before the crowd did"
        except Exception as e:
            self.errors.append(f"harness visitor: {type(e).__name__}: {e}")
        finally:
            self.started.set()
            v.close()


def fresh_replay_cache(tmp: Path) -> dict[str, str]:
    """A cache directory for the server with every entry of this machine's cache (the graph, derived arrays)
    linked in, except the stored routes: the server starts with none stored, without rebuilding the graph."""
    from citypath import settings

    real = settings.cache_dir()
    tmp.mkdir(parents=True, exist_ok=True)
    if real.is_dir():
        for entry in real.iterdir():
            if entry.name != "replays" and not (tmp / entry.name).exists():
                (tmp / entry.name).symlink_to(entry)
    return {"CITYPATH_CACHE_DIR": str(tmp)}


_LOADED: dict[tuple, tuple] = {}


def app_graph_and_models(env: dict[str, str]):
    """The graph and the models the app will serve under `env` (set into os.environ), loaded once here."""
    os.environ.update(env)
    key = tuple(sorted(env.items()))
    if key not in _LOADED:
        import torch

        from citypath.app import resources
        from citypath.graph import graph_kwargs_from_env, load_graph

        torch.set_num_threads(1)  # as the app runs them
        g = load_graph(**graph_kwargs_from_env())
        resources.register_families_from_env()
        _LOADED[key] = (g, resources.load_models(g))
    return _LOADED[key]


def expected_paths(models: list[str], pairs: list[tuple[int, int]], steps: int, env: dict[str, str]
                   ) -> dict[tuple[int, int], dict[str, list[list[int]]]]:
    """Every model's K paths for every pair, computed here as the app computes them."""
    from citypath.replay import compute_replay

    g, mset = app_graph_and_models(env)
    missing = {m: mset.failures.get(m, "not found") for m in models if m not in mset.models}
    if missing:
        raise RuntimeError(f"models did not load: {missing}")
    def paths(name: str, src: int, dst: int) -> list[list[int]]:
        from citypath.metrics import as_ids

        # what the map draws: the known cities of each path (garbage entries are scored, not drawn)
        return [[int(c) for c in as_ids(p, g.n_cities) if c >= 0]
                for p in compute_replay(mset.models[name], g, src, dst, steps, 0).paths]

    return {(src, dst): {name: paths(name, src, dst) for name in models} for src, dst in pairs}


def pick_pairs(n: int, env: dict[str, str], seed: int, models: Sequence[str] = ()
               ) -> tuple[list[tuple[int, int]], list[str]]:
    """`n` random held-out pairs of the app's graph, and the two models the app compares by default."""
    from citypath.app import picks, url

    g, mset = app_graph_and_models(env)
    rng = np.random.default_rng(seed)
    pairs = [picks.random_heldout_pair(g, rng) for _ in range(n)]
    from citypath.app import resources

    # what the app's first visit compares: the catalogue's sizes (learned models whose cards found a route)
    return pairs, list(models or url.default_models(mset.names, resources.catalog().parameters))


def warm_up(base_url: str, timeout: float = 180.0) -> float:
    """One visitor of the app's default page, who waits for its models: the process has then loaded the
    graph and the models (a server that is already running). Returns the seconds it took."""
    t0 = time.perf_counter()
    v = Visitor(base_url, timeout)
    try:
        page = v.run(query="")
        for _ in range(20):
            if not page.pending or not page.player_id:
                break
            page = v.run(report=(page.player_id, {"more": True, "step": 1, "speed": 1.0,
                                                  "seq": time.time_ns() // 1000}))
        if page.errors or not page.player_id:
            raise RuntimeError(f"the warm-up visit failed: {page.errors or 'no player'}")
    finally:
        v.close()
    return time.perf_counter() - t0


def run_load(sessions: int = 20, steps: int = 16, *, env: dict[str, str] | None = None, url: str | None = None,
             seed: int = 0, timeout: float = 180.0, shared: bool = False, sticky: bool = False,
             warm: Sequence[str] = (), streamlit_run: bool = False, server_pids: Sequence[int] = (),
             harness_pairs: int = 0, models: Sequence[str] = (), app_dir: Path | None = None) -> dict:
    """Start the app (unless `url`), run `sessions` visitors at once, and summarise.

    `shared`: every visitor opens the same link (a link shared with a crowd); else each its own pair.
    `warm`: app processes' own addresses to visit once (`warm_up`) before the crowd; with `url` None,
    ["self"] warms the server started here. `streamlit_run`: the server started here is plain
    `streamlit run app.py` (graph and models load in the crowd's wait), not `python -m citypath.app.launch`.
    `server_pids`: the app processes behind `url`, whose CPU time the crowd cost is reported (the server
    started here is measured without it). `harness_pairs`: one more visitor starts the Test-time compute page's
    harness on that many pairs (the crowd's models) just before the crowd arrives, and cancels it after.
    """
    env = dict(env or {})
    pairs, models = pick_pairs(1 if shared else sessions, env, seed, models)
    pairs = pairs * sessions if shared else pairs
    expected = expected_paths(models, sorted(set(pairs)), steps, env)

    def go(base: str) -> tuple[list[SessionResult], float]:
        start = threading.Barrier(sessions)

        def one(pair):
            start.wait()
            return play_session(base, pair[0], pair[1], models, steps, expected[pair], timeout, sticky=sticky)

        harness = None
        if harness_pairs:
            harness = HarnessVisitor(base, models, harness_pairs, timeout)
            harness.start()
            harness.started.wait(timeout)
            time.sleep(3.0)                      # its process has started and is computing when the crowd comes
        t0 = time.perf_counter()
        try:
            with ThreadPoolExecutor(sessions) as pool:
                results = list(pool.map(one, pairs))
        finally:
            if harness is not None:
                harness.stop.set()
                harness.join(timeout)
                harness_out.update(outcome=harness.outcome, polls=harness.polls, errors=harness.errors,
                                   pairs=harness_pairs)
        return results, time.perf_counter() - t0

    harness_out: dict = {}

    from citypath import settings

    store = settings.cache_dir({**os.environ, **env}) / "replays"
    stored_at_start = sum(1 for _ in store.rglob("*.json")) if store.is_dir() else 0
    warm_s, ready_s, split = [], None, None

    def measured(pids: Sequence[int], base: str) -> tuple[list[SessionResult], float, tuple[float, ...] | None]:
        cpu0, client0 = server_cpu_split(pids), client_cpu_s()
        results, wall = go(base)
        cpu1, client1 = server_cpu_split(pids), client_cpu_s()
        return results, wall, (*(b - a for a, b in zip(cpu0, cpu1)), client1 - client0) if pids else None

    if url:
        warm_s = [warm_up(u, timeout) for u in warm]
        results, wall, split = measured(server_pids, url)
    else:
        with AppServer(env, warm=not streamlit_run, app_dir=app_dir) as server:
            ready_s = server.ready_s
            warm_s = [warm_up(server.url, timeout) for _ in warm]
            results, wall, split = measured([server.proc.pid], server.url)
    cpu_s = split[0] + split[1] if split is not None else None
    stop_ms = [r.frames[1].ms for r in results if len(r.frames) > 1]     # the one report of a stop
    open_ms = [r.frames[0].ms for r in results if r.frames]                 # every route drawn
    map_ms = [r.map_ms for r in results if r.map_ms is not None]            # the first paint
    errors = [f"session {i} ({r.source}->{r.target}): {e}" for i, r in enumerate(results) for e in r.errors]
    errors += harness_out.get("errors", [])
    q = (lambda xs, p: float(np.percentile(xs, p)) if xs else float("nan"))
    return {
        "sessions": sessions, "steps": steps, "models": models, "link": "shared" if shared else "own pair each",
        "graph": env.get("CITYPATH_STATES", os.environ.get("CITYPATH_STATES", "")) or "default",
        "errors": errors, "sessions_ok": sum(not r.errors for r in results),
        "frames_checked": sum(len(r.steps_seen) for r in results),
        "messages_per_session": max((r.messages for r in results), default=0),
        "sessions_per_process": dict(sorted(Counter(str(r.pid) for r in results).items())),
        "open_ms_p50": round(q(open_ms, 50), 1), "open_ms_max": round(max(open_ms), 1) if open_ms else None,
        "map_ms_p50": round(q(map_ms, 50), 1), "map_ms_max": round(max(map_ms), 1) if map_ms else None,
        "stop_ms_p50": round(q(stop_ms, 50), 1), "stop_ms_max": round(max(stop_ms), 1) if stop_ms else None,
        "server": "running (a warm-up visit per process first)" if warm_s else
                  "just started (streamlit run app.py)" if streamlit_run else
                  "just started (python -m citypath.app.launch)" if not url else "just started",
        "warm_up_s": [round(x, 2) for x in warm_s],
        "ready_s": round(ready_s, 2) if ready_s is not None else None,      # launch -> the port answers
        "wall_s": round(wall, 1), "load_average": round(os.getloadavg()[0], 2),
        "mean_open_ms": round(statistics.fmean(open_ms), 1) if open_ms else None,
        # CPU seconds the app process(es) spent while the crowd ran (every thread, finished ones included)
        "server_cpu_s": round(cpu_s, 2) if cpu_s is not None else None,
        "server_cpu_ms_per_visitor": round(cpu_s / sessions * 1e3, 1) if cpu_s is not None else None,
        # ... of which the app processes' own (page runs) and their children's (model workers, a harness run), of
        # those the idle class's (the worker for later); and the crowd's clients' (this process), which share the
        # machine's cores with the server
        "server_cpu_s_pages": round(split[0], 2) if split is not None else None,
        "server_cpu_s_workers": round(split[1], 2) if split is not None else None,
        "server_cpu_s_workers_idle_class": round(split[2], 2) if split is not None else None,
        "client_cpu_s": round(split[3], 2) if split is not None else None,
        # every visitor's routes drawn: the open, from its first message to its last model's route
        "routes_ms_p50": round(q(open_ms, 50), 1), "routes_ms_max": round(max(open_ms), 1) if open_ms else None,
        "compute_workers": str(settings.compute_workers({**os.environ, **env})),    # what the app process uses
        "routes_stored_at_start": stored_at_start,       # replay files in the server's store before it started
        **({"harness": {k: v for k, v in harness_out.items() if k != "errors"}} if harness_out else {}),
    }


def server_cpu_split(pids: Sequence[int]) -> tuple[float, float, float]:
    """User + system CPU seconds the processes `pids` have used so far, in three: their own (the page runs), their
    children's (the model workers, a harness run; those that ended included), and of those the children's in Linux's
    idle class (the worker for later, `citypath.app.compute.background`: it runs only where no other process wants
    the core). 0 for a process that has gone."""
    import psutil

    own = children = idle = 0.0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            t = proc.cpu_times()
            own += t.user + t.system
            children += t.children_user + t.children_system                       # children that ended
            for child in proc.children(recursive=True):                           # and those still running
                c = child.cpu_times()
                children += c.user + c.system
                try:
                    if os.sched_getscheduler(child.pid) == os.SCHED_IDLE:
                        idle += c.user + c.system
                except (AttributeError, OSError):
                    pass
        except psutil.Error:
            continue
    return own, children, idle


def client_cpu_s() -> float:
    """User + system CPU seconds this process (the crowd's clients) has used so far: they share the machine's cores
    with the server."""
    t = os.times()
    return t.user + t.system


def app_env(states: str = "", checkpoints: str = "") -> dict[str, str]:
    """The app server's environment for a regional graph and/or another checkpoint directory."""
    env = {}
    if states:
        env["CITYPATH_STATES"] = states
    if checkpoints:
        env["CITYPATH_CHECKPOINTS"] = checkpoints
    return env


def memory_batches(sessions: int, steps: int, batches: int, *, env: dict[str, str], seed: int = 0,
                   shared: bool = False) -> dict:
    """`batches` x `sessions` visitors against one server, one batch after another (the same links each
    batch, so after the first every route is computed); the server's RSS after each batch. Growth is
    measured from the first batch (the warm-up: models loaded, caches filled) to the last."""
    import psutil

    pick_pairs(1, env, seed)
    rss, errors, opened = [], [], []
    with AppServer(env) as server:
        proc = psutil.Process(server.proc.pid)
        for b in range(batches):
            out = run_load(sessions, steps, env=env, url=server.url, seed=seed, shared=shared)
            errors += [f"batch {b}: {e}" for e in out["errors"]]
            opened.append(out["open_ms_p50"])
            time.sleep(2.0)                            # closed sessions are cleaned up by the server
            rss.append(sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2**20)
    return {"sessions": sessions, "batches": batches, "visitors": sessions * batches, "steps": steps,
            "errors": errors, "rss_mb_after_each_batch": [round(x, 1) for x in rss],
            "rss_growth_after_warmup": round(rss[-1] / rss[0] - 1.0, 4) if rss else None,
            "open_ms_p50_per_batch": opened}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--states", default="", help="a regional graph (e.g. RI,MA); default: the full graph")
    ap.add_argument("--checkpoints", default="", help="a checkpoint directory (default: checkpoints/)")
    ap.add_argument("--url", default="", help="a running app instead of starting one")
    ap.add_argument("--balanced", action="store_true",
                    help="start two app processes behind HAProxy (serving/haproxy.cfg, `python -m citypath.app.serve`) "
                         "and check that every session sticks to its process across a reconnect")
    ap.add_argument("--kill-one", action="store_true",
                    help="two app processes behind HAProxy; once every visitor has opened its page (+ --kill-after s), "
                         "kill one (SIGKILL): its visitors must be moved to the live one and get their view back")
    ap.add_argument("--kill-after", type=float, default=0.0, help="with --kill-one: seconds after the last page opened")
    ap.add_argument("--hold", type=float, default=30.0,
                    help="with --kill-one: seconds every visitor stays after the kill")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shared-link", action="store_true",
                    help="every visitor opens the same link (default: each visitor its own random held-out pair)")
    ap.add_argument("--batches", type=int, default=1,
                    help="run the visitors this many times against one server (the first warms it up) and "
                         "report the server's memory (RSS) after each batch")
    ap.add_argument("--warm", action="store_true",
                    help="before the crowd, one visitor of the default page per app process (graph and models "
                         "loaded: a server that is already running); default: a just-started server")
    ap.add_argument("--streamlit-run", action="store_true",
                    help="start app processes with plain `streamlit run app.py` (graph and models load inside the "
                         "first visitors' wait) instead of `python -m citypath.app.launch` (loaded before the port "
                         "opens)")
    ap.add_argument("--models", default="",
                    help="the models every visitor's link compares, comma-separated (default: the app's default "
                         "comparison, the smallest learned model against the largest)")
    ap.add_argument("--cold", action="store_true",
                    help="the server starts with no stored routes: its cache directory links this machine's cache "
                         "(graph, arrays) but not its replay store (a fresh one in a temp directory)")
    ap.add_argument("--replay-cache", default="",
                    help="like --cold, in this directory (kept): a second run with the same directory and --seed "
                         "finds the first run's routes stored (warm)")
    ap.add_argument("--compute-workers", default="",
                    help="CITYPATH_COMPUTE_WORKERS for the app processes (0: the models run in the page's thread, "
                         "as before citypath.app.compute; default: the app's default, 1)")
    ap.add_argument("--harness", type=int, default=0, metavar="PAIRS",
                    help="one more visitor starts the Test-time compute page's harness on PAIRS pairs with the "
                         "crowd's models just before the crowd, and cancels it after")
    ap.add_argument("--app-dir", default="",
                    help="serve another checkout of the app (e.g. `git archive <commit>` unpacked: a before), "
                         "measured by this code")
    ap.add_argument("--exit-zero", action="store_true", help="exit 0 even with errors (they are in the JSON)")
    args = ap.parse_args(argv)
    env = app_env(args.states, args.checkpoints)
    if args.compute_workers:
        env["CITYPATH_COMPUTE_WORKERS"] = args.compute_workers
    if args.cold or args.replay_cache:
        import tempfile

        env.update(fresh_replay_cache(Path(args.replay_cache or tempfile.mkdtemp(prefix="citypath-cold-"))))
    if args.kill_one:
        out = run_failover(args.sessions, args.steps, env=env, seed=args.seed, kill_after_s=args.kill_after,
                           hold_s=args.hold, log_dir=Path.cwd() / ".serve-logs")
    elif args.batches > 1:
        out = memory_batches(args.sessions, args.steps, args.batches, env=env, seed=args.seed,
                             shared=args.shared_link)
    elif args.balanced:
        from citypath.app.serve import Cluster

        pick_pairs(1, env, args.seed)                       # load the graph and models here before the servers
        t0 = time.perf_counter()
        with Cluster(env=env, warm=not args.streamlit_run) as cluster:
            ready_s = time.perf_counter() - t0
            out = run_load(args.sessions, args.steps, env=env, url=cluster.url, seed=args.seed,
                           shared=args.shared_link, sticky=True, warm=cluster.app_urls if args.warm else (),
                           server_pids=cluster.app_pids)
        out["ready_s"] = round(ready_s, 2)
        if not args.warm:
            how = "streamlit run app.py" if args.streamlit_run else "python -m citypath.app.launch"
            out["server"] = f"just started ({how})"
        out["balanced"] = f"HAProxy + {len(cluster.slots)} app processes"
    else:
        warm = ([args.url] if args.url else ["self"]) if args.warm else []
        out = run_load(args.sessions, args.steps, env=env, url=args.url or None, seed=args.seed,
                       shared=args.shared_link, sticky=bool(args.url), warm=warm, streamlit_run=args.streamlit_run,
                       harness_pairs=args.harness, models=[m for m in args.models.split(",") if m],
                       app_dir=Path(args.app_dir) if args.app_dir else None)
        if args.app_dir:
            out["app_dir"] = args.app_dir
    print(json.dumps(out, indent=2))
    return 1 if out["errors"] and not args.exit_zero else 0


if __name__ == "__main__":
    sys.exit(main())
