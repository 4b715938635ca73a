"""App speed: cold start, a rerun after moving a slider, an animation frame (server time).

    python benchmarks/bench_app.py                  # the default graph, whatever checkpoints/ holds
    python benchmarks/bench_app.py --quick          # the RI+MA graph (what a smoke test would run)

Each figure is server time measured in a fresh process through `streamlit.testing.v1.AppTest`
(the same script run a browser session triggers, without the browser's rendering):
- `cold_start_s`: import streamlit and run the page once, caches on disk already built
  (graph, static layer JSON), models loaded and every replay computed;
- `rerun_ms`: a whole-page rerun after moving the steps slider back and forth (replays cached);
- `frame_ms`: the animation fragment's own timer (controls, map spec, metrics, charts).
Prints one JSON object; figures are recorded in docs/app.md. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="the RI+MA graph")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    if args.quick:
        os.environ["CITYPATH_STATES"] = "RI,MA"
    os.environ["CITYPATH_ANIMATION"] = "off"

    t0 = time.perf_counter()
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    cold = time.perf_counter() - t0
    assert not at.exception, [e.message for e in at.exception]
    models = list(at.session_state["models"])
    top = at.slider(key="steps").max

    rerun, frames = [], []
    for i in range(args.repeats):
        t = time.perf_counter()
        at.slider(key="steps").set_value(top if i % 2 else max(1, top // 2)).run()
        rerun.append((time.perf_counter() - t) * 1e3)
    at.slider(key="steps").set_value(top).run()  # every (model, pair, K) replay of the loop is cached now
    for i in range(args.repeats):
        at.slider(key="step").set_value(1 + i % top).run()
        frames.append(at.session_state["_frame_ms"])
    print(json.dumps({
        "graph": os.environ.get("CITYPATH_STATES", "default"), "models": models, "steps_max": int(top),
        "cold_start_s": round(cold, 2), "rerun_ms_median": round(statistics.median(rerun), 1),
        "rerun_ms_max": round(max(rerun), 1), "frame_ms_median": round(statistics.median(frames), 1),
        "frame_ms_max": round(max(frames), 1), "load_average": os.getloadavg()[0],
    }, indent=2))


if __name__ == "__main__":
    main()
