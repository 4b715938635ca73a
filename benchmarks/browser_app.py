"""First paint in a real browser: how long after navigation the map and the routes appear.

    python -m benchmarks.browser_app                 # default graph, shipped checkpoints, the default link
    python -m benchmarks.browser_app --repeats 5 --states RI,MA --checkpoints DIR

Starts the app (`python -m citypath.app.launch`, which loads the graph and the models before its port
opens; `--streamlit-run`: plain `streamlit run app.py`, which loads them in the first visitor's wait)
on a loopback port and opens a link in headless Chromium (Debian's
`chromium`, software WebGL), as a first visitor of a just-started server (cold) and then as new
visitors of the warm server (each a fresh browser context: nothing cached in the browser). The
player marks (`window.citypathPaint` in its frame) when its still preview (boot.js: a 2D canvas drawn
from the first arguments, before deck.gl loads) had painted the map with its state outlines and
optimal path (`preview_map_s`) and every model's route (`preview_routes_s`), and when deck.gl, the
interactive map, had every layer's data for the map (`map_s`) and for every model's route
(`routes_s`), in seconds after the page's navigation started. A link to a pair not computed yet
(`new pair`) shows the models' compute on top. Prints one JSON object; figures in docs/benchmarks.md. Nothing here
asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import urllib.parse

from benchmarks.load_app import AppServer, app_env, pick_pairs

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--enable-unsafe-swiftshader", "--use-angle=swiftshader",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--disable-quic"]


def player_now(page):
    """The page's player frame (its iframe) as it is now, or None before the page draws one."""
    return next((f for f in page.frames if "citypath_player" in f.url and not f.is_detached()), None)


def paint_marks(page) -> tuple[dict, float | None]:
    """The player's paint marks (`window.citypathPaint`) and its frame's time origin; ({}, None) until the
    page has a player, or while its frame is being replaced."""
    frame = player_now(page)
    if frame is None:
        return {}, None
    try:
        return frame.evaluate("window.citypathPaint || {}"), frame.evaluate("performance.timeOrigin")
    except Exception:         # the frame is being replaced
        return {}, None


def visit(browser, url: str, timeout_s: float = 120.0) -> dict:
    """One new visitor (a fresh context): seconds from navigation to the map, and to every route.

    Also where the time before goes: the page's title drawn (`title_s`), the player's frame created
    (`frame_s`), its boot script running (`boot_s`), its first arguments from the server (`args_s`), the
    still preview painted (`preview_map_s`, `preview_routes_s`), the player's bundle (deck.gl) running
    (`script_s`) and deck.gl's first frame (`drawn_s`); and when the layer of all cities (fetched by the
    player, after the map) was drawn (`cities_s`).
    """
    context = browser.new_context(viewport={"width": 1400, "height": 1200})
    page = context.new_page()
    try:
        page.goto(url, wait_until="commit")
        origin = page.evaluate("performance.timeOrigin")
        deadline = time.time() + timeout_s
        marks: dict = {}
        title = frame_origin = None
        while time.time() < deadline:
            if title is None and page.evaluate("!!document.querySelector('h1')"):
                title = time.time() * 1e3
            marks, origin_now = paint_marks(page)
            frame_origin = frame_origin or origin_now
            if "routes" in marks and "cities" in marks:
                break
            page.wait_for_timeout(25)

        def s(ms):
            return None if ms is None else round((ms - origin) / 1e3, 3)
        return {"title_s": s(title), "frame_s": s(frame_origin), "boot_s": s(marks.get("boot")),
                "args_s": s(marks.get("args")), "preview_map_s": s(marks.get("previewMap")),
                "preview_routes_s": s(marks.get("previewRoutes")), "script_s": s(marks.get("script")),
                "drawn_s": s(marks.get("rendered")), "map_s": s(marks.get("static")),
                "routes_s": s(marks.get("routes")), "cities_s": s(marks.get("cities"))}
    finally:
        context.close()


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="warm visits (default 5)")
    ap.add_argument("--states", default="", help="a regional graph (e.g. RI,MA); default: the full graph")
    ap.add_argument("--checkpoints", default="", help="a checkpoint directory (default: checkpoints/)")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--streamlit-run", action="store_true",
                    help="start the app with plain `streamlit run app.py` (the graph and the models load in the "
                         "first visitor's wait) instead of `python -m citypath.app.launch`")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    env = app_env(args.states, args.checkpoints)
    pairs, models = pick_pairs(args.repeats + 2, env, seed=3)

    def link(pair):
        return urllib.parse.urlencode({"source": pair[0], "target": pair[1], "models": ",".join(models),
                                       "steps": args.steps, "seed": 0})

    out = {"graph": args.states or "default", "models": models, "steps": args.steps,
           "server": "streamlit run app.py" if args.streamlit_run else "python -m citypath.app.launch"}
    with AppServer(env, warm=not args.streamlit_run) as server, sync_playwright() as p:
        out["ready_s"] = round(server.ready_s, 2)         # launch -> the port answers
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            url = f"{server.url}/?{link(pairs[0])}"
            out["cold_first_visit"] = visit(browser, url)
            warm = [visit(browser, url) for _ in range(args.repeats)]
            new = [visit(browser, f"{server.url}/?{link(pair)}") for pair in pairs[1:1 + args.repeats]]
        finally:
            browser.close()
    for name, runs in (("warm", warm), ("warm_new_pair", new)):
        for key in ("title_s", "frame_s", "boot_s", "args_s", "preview_map_s", "preview_routes_s", "script_s",
                    "drawn_s", "map_s", "routes_s", "cities_s"):
            values = [r[key] for r in runs if r[key] is not None]
            out[f"{name}_{key}_median"] = round(statistics.median(values), 3) if values else None
            out[f"{name}_{key}_max"] = round(max(values), 3) if values else None
        out[f"{name}_visits"] = runs
    out["load_average"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
