"""A click on the map in a browser without GPU acceleration: does it reach the server, and what does it cost?

    python -m benchmarks.browser_click               # default graph (21,217 cities), 6 presses
    python -m benchmarks.browser_click --presses 10 --states RI,MA

Starts the app (`python -m citypath.app.launch`) on a loopback port, opens a link with no model (the map,
the optimal path and the city layer: what a click picks from) in headless Chromium with SwiftShader
(software WebGL, as many visitors' browsers are), and clicks the most isolated city on screen, one press
at a time, as a visitor does: no hover first, no retry. For each press: whether the route's end changed
in the link (the click reached the server) and how long after the press; and the player frame's main-thread
time handling the press (`pointerdown` + `pointerup` + `click`, from the browser's Event Timing entries,
which leave out events handled in under 16 ms), where deck.gl's picking pass ran. Prints one JSON object;
figures in docs/benchmarks.md. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
import urllib.parse

import numpy as np

from benchmarks.browser_app import CHROMIUM_ARGS, player_now
from benchmarks.load_app import AppServer, app_env

OBSERVER = """() => {
  window.__events = [];
  new PerformanceObserver((list) => {
    for (const e of list.getEntries())
      if (["pointerdown", "pointerup", "mousedown", "mouseup", "click"].includes(e.name))
        window.__events.push({name: e.name, start: e.startTime, ms: e.processingEnd - e.processingStart});
  }).observe({type: "event", durationThreshold: 16, buffered: false});
}"""


def project(view: dict, box: dict, lon, lat):
    """(lon, lat) on the page (scalars or arrays), as deck.gl's Web Mercator view `view` draws it in `box`."""
    scale = 512 * 2 ** view["zoom"]

    def mercator(lo, la):
        y = (1 - np.log(np.tan(np.radians(la)) + 1 / np.cos(np.radians(la))) / math.pi) / 2
        return (np.asarray(lo) + 180) / 360 * scale, y * scale

    (cx, cy), (x, y) = mercator(view["longitude"], view["latitude"]), mercator(lon, lat)
    return x - cx + box["x"] + box["width"] / 2, y - cy + box["y"] + box["height"] / 2


def player_frame(page, timeout_s: float = 120.0):
    """The player's frame (its iframe), once the page has drawn it (the browser tests use it too)."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        frame = player_now(page)
        if frame is not None:
            return frame
        page.wait_for_timeout(50)
    raise RuntimeError("the page drew no player")


def press(page, g, wait_s: float) -> dict:
    """Click the most isolated city on screen once; whether and when the link's source or target became it."""
    from citypath.view.maplayers import view_for_pair

    frame = player_frame(page)
    q = urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query)
    src, dst = g.find_city(q["source"][0]), g.find_city(q["target"][0])
    view = view_for_pair(g, src, dst, g.shortest_path(src, dst))
    box = frame.locator("#map canvas").first.bounding_box()
    x, y = project({"zoom": view.zoom, "longitude": view.longitude, "latitude": view.latitude}, box, g.lon, g.lat)
    inside = ((x > box["x"] + 60) & (x < box["x"] + box["width"] - 80) & (y > box["y"] + 60)
              & (y < box["y"] + box["height"] - 60))
    inside[[src, dst]] = False
    candidates = np.flatnonzero(inside)
    if len(candidates) > 3000:            # the most isolated of a sample: enough to find a clear dot
        candidates = np.random.default_rng(len(candidates)).choice(candidates, 3000, replace=False)
    gaps = [np.partition(np.hypot(x - x[i], y - y[i]), 1)[1] for i in candidates]
    city = int(candidates[int(np.argmax(gaps))])
    frame.evaluate("window.__events = []")
    label = g.label(city)
    t0 = time.perf_counter()
    page.mouse.click(float(x[city]), float(y[city]))
    reached_ms = None
    try:
        page.wait_for_function("t => { const q = decodeURIComponent(location.search.replace(/\\+/g, ' '));"
                               " return q.includes('source=' + t) || q.includes('target=' + t); }",
                               arg=label, timeout=wait_s * 1000)
        reached_ms = (time.perf_counter() - t0) * 1e3
    except Exception:  # noqa: BLE001 - a click that never reached the server is the figure
        pass
    page.wait_for_timeout(300)
    events = frame.evaluate("window.__events")
    return {"city": g.label(city), "reached": reached_ms is not None,
            "reached_ms": round(reached_ms, 1) if reached_ms is not None else None,
            "main_thread_ms": round(sum(e["ms"] for e in events), 1),
            "events": sorted({e["name"] for e in events})}


def main(argv: list[str] | None = None) -> dict:
    from playwright.sync_api import sync_playwright

    from citypath.graph import load_graph

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presses", type=int, default=6)
    ap.add_argument("--states", default="", help="a regional graph (e.g. RI,MA); default: the full graph")
    ap.add_argument("--wait", type=float, default=15.0, help="seconds a press may take to reach the server")
    args = ap.parse_args(argv)
    env = app_env(args.states)
    g = load_graph(states=args.states.split(",")) if args.states else load_graph()
    pairs = [("Boston, MA", "Denver, CO")] if not args.states else [(g.label(0), g.label(1))]
    link = urllib.parse.urlencode({"source": pairs[0][0], "target": pairs[0][1], "models": "", "click": "source"})
    with AppServer(env) as server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1300})
        try:
            page.goto(f"{server.url}/?{link}", timeout=120_000)
            frame = player_frame(page)
            frame.wait_for_function("() => window.citypathPaint && window.citypathPaint.cities !== undefined",
                                    timeout=120_000)
            frame.evaluate(OBSERVER)
            presses = []
            for _ in range(args.presses):
                page.wait_for_timeout(2000)
                frame = player_frame(page)
                frame.wait_for_function("() => window.citypathPaint && window.citypathPaint.cities !== undefined",
                                        timeout=120_000)
                if not frame.evaluate("!!window.__events"):
                    frame.evaluate(OBSERVER)
                presses.append(press(page, g, args.wait))
        finally:
            browser.close()
    reached = [x["reached_ms"] for x in presses if x["reached"]]
    main_ms = [x["main_thread_ms"] for x in presses]
    out = {"graph": args.states or "default", "cities": g.n_cities, "presses": presses,
           "reached": f"{len(reached)} of {len(presses)}",
           "reached_ms_p50": round(statistics.median(reached), 1) if reached else None,
           "main_thread_ms_p50": round(statistics.median(main_ms), 1), "main_thread_ms_max": max(main_ms),
           "browser": "headless Chromium, SwiftShader (software WebGL)"}
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
