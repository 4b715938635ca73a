"""App speed: cold start, a rerun after moving a slider, the player's report of a stop (server time).

    python -m benchmarks.bench_app                  # the default graph, whatever checkpoints/ holds
    python -m benchmarks.bench_app --quick          # the RI+MA graph (what a smoke test would run)
    python -m benchmarks.bench_app --page benchmarks/bare_page.py   # the baseline: one st.write

Each figure is server time measured in a fresh process through `streamlit.testing.v1.AppTest`
(the same script run a browser session triggers, without the browser's rendering):
- `first_paint_s`: import streamlit and run the page once: the map, the optimal path and the player,
  before any model runs (caches on disk already built: graph, static layer JSON);
- `cold_start_s`: then the player's requests for each model (one run each) until every route is there;
- `rerun_ms`: a whole-page rerun after moving the steps slider back and forth (replays cached);
- `report_ms`: the run a player's report triggers (playback stopped at a step: the link and the
  downloads follow). Playback itself costs the server nothing: it runs in the browser.
With `--page benchmarks/bare_page.py` the same cold start and a plain rerun of a page holding
one `st.write`: the floor any Streamlit page pays (`benchmarks/run.py` reports the app against it).
Prints one JSON object; figures are recorded in docs/app.md. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def report(at, **event):
    """What the browser's player sends: a stop at a step, or a request for the next model."""
    at.session_state["player"] = {"seq": time.time_ns() // 1000, "step": 1, "speed": 1.0, **event}
    return at.run()


def settle(at, limit: int = 20):
    """Ask for the next model while the player says some are still being computed (as the player does)."""
    for _ in range(limit):
        players = at.get("component_instance")
        if at.exception or not players or not json.loads(players[0].proto.json_args)["pending"]:
            return at
        report(at, more=True)
    return at


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="the RI+MA graph")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--page", default="app.py",
                    help="the page to run (default app.py; benchmarks/bare_page.py is the bare baseline)")
    args = ap.parse_args(argv)
    if args.quick:
        os.environ["CITYPATH_STATES"] = "RI,MA"
    page = Path(args.page) if Path(args.page).is_absolute() else REPO / args.page

    t0 = time.perf_counter()
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(page), default_timeout=120).run()
    first_paint = time.perf_counter() - t0
    settle(at)
    cold = time.perf_counter() - t0
    assert not at.exception, [e.message for e in at.exception]
    out = {"page": str(page.relative_to(REPO)) if page.is_relative_to(REPO) else str(page),
           "graph": os.environ.get("CITYPATH_STATES", "default"), "first_paint_s": round(first_paint, 3),
           "cold_start_s": round(cold, 3)}
    if not any(s.key == "steps" for s in at.slider):
        # A page without the app's controls (the bare baseline): a rerun is the same script again.
        rerun = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            at.run()
            rerun.append((time.perf_counter() - t) * 1e3)
        out.update(rerun_ms_median=round(statistics.median(rerun), 2), rerun_ms_max=round(max(rerun), 2),
                   load_average=os.getloadavg()[0])
        print(json.dumps(out, indent=2))
        return out

    models = list(at.session_state["models"])
    top = at.slider(key="steps").max

    rerun, frames = [], []
    for i in range(args.repeats):
        t = time.perf_counter()
        settle(at.slider(key="steps").set_value(top if i % 2 else max(1, top // 2)).run())
        rerun.append((time.perf_counter() - t) * 1e3)
    settle(at.slider(key="steps").set_value(top).run())  # every (model, pair, K) replay of the loop is cached now
    for i in range(args.repeats):
        t = time.perf_counter()
        report(at, step=1 + i % top)
        frames.append((time.perf_counter() - t) * 1e3)
    out.update({
        "models": models, "steps_max": int(top),
        "rerun_ms_median": round(statistics.median(rerun), 1),
        "rerun_ms_max": round(max(rerun), 1), "report_ms_median": round(statistics.median(frames), 1),
        "report_ms_max": round(max(frames), 1), "load_average": os.getloadavg()[0],
    })
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
