"""What a visitor waits for when the work is already done: moving the steps slider, adding a model computed for
the pair by an earlier visitor, loading an interesting pair.

    python -m benchmarks.interactions --repeats 6                       # just-started server, default graph
    python -m benchmarks.interactions --repeats 6 --app-dir /tmp/before # another checkout (a before), same code

Starts one app process (`python -m citypath.app.launch`; `--app-dir`: another checkout of the app) with an
empty replay store (its cache links this machine's graph and arrays, not its stored routes: `load_app.
fresh_replay_cache`), and for each of `--repeats` random held-out pairs:

1. an earlier visitor opens the pair with model B at 32 steps (and waits for its route);
2. a visitor opens the pair with model A at 8 steps and waits for its route, then looks at it for
   `--look` seconds (default 5);
3. moves the steps slider from 8 to 16 (`slider_s`: the change sent -> every route drawn, the player's
   requests for pending models included);
4. adds model B (`add_s`: the same, for B at 16 steps, which the earlier visitor computed at 32).

Then a fresh visitor clicks each interesting pair in the sidebar (`interesting_s`). Speaks Streamlit's
protocol as `benchmarks.load_app` does (the server's side of each wait: what the player shows after it is
its own, the same before and after). Prints one JSON object with each wait and their p50; nothing here
asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from streamlit.proto.WidgetStates_pb2 import WidgetState

from benchmarks.load_app import AppServer, Visitor, follow_pending, fresh_replay_cache, pick_pairs


def settle(v: Visitor, frame, limit: int = 10):
    """Follow the player's requests for the next model (as the browser does) until none is pending."""
    frame = follow_pending(v, frame, limit)
    if frame.pending:
        raise RuntimeError(f"still pending after {limit} requests: {frame.pending}")
    return frame


def timed(v: Visitor, change, *args) -> tuple[float, object]:
    """Seconds from sending `change(v, *args)` (a widget set in `v.values`, then a rerun) to every route drawn."""
    t0 = time.perf_counter()
    change(v, *args)
    frame = settle(v, v.run())
    return time.perf_counter() - t0, frame


def set_slider(v: Visitor, key: str, value: float) -> None:
    wid = v.widgets[key]
    v.values[wid] = WidgetState(id=wid)
    v.values[wid].double_array_value.data.append(value)


def set_models(v: Visitor, key: str, names: list[str], labels: dict[str, str]) -> None:
    wid = v.widgets[key]
    v.values[wid] = WidgetState(id=wid)
    v.values[wid].string_array_value.data.extend(labels.get(n, n) for n in names)


@dataclass(frozen=True)
class Setup:
    """What both interaction benchmarks (this one over the protocol, `browser_interactions` in Chromium) start
    from: the server's environment (an empty replay store), the pairs, models A and B and their labels."""

    args: argparse.Namespace
    env: dict
    pairs: list
    a: str
    b: str
    labels: dict

    def link(self, pair, names, steps) -> str:
        return urllib.parse.urlencode({"source": pair[0], "target": pair[1], "models": ",".join(names),
                                       "steps": steps, "seed": 0})

    def out(self, **more) -> dict:
        return {"models": [self.a, self.b], "repeats": self.args.repeats, "look_s": self.args.look,
                "app_dir": self.args.app_dir or "this checkout", **more, "visits": []}

    def server(self) -> AppServer:
        return AppServer(self.env, app_dir=Path(self.args.app_dir) if self.args.app_dir else None)


def setup(argv: list[str] | None, description: str, prefix: str) -> Setup:
    """The interaction benchmarks' command line, and their pairs and models (see the module's doc)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--models", default="", help="A,B (default: the app's default comparison)")
    ap.add_argument("--look", type=float, default=5.0, help="seconds a visitor looks at a route before moving on")
    ap.add_argument("--app-dir", default="", help="serve another checkout of the app (a before)")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    env = fresh_replay_cache(Path(tempfile.mkdtemp(prefix=prefix)))
    pairs, models = pick_pairs(args.repeats, env, args.seed, [m for m in args.models.split(",") if m])
    from citypath.app import resources

    return Setup(args, env, pairs, models[0], models[1], resources.catalog().labels)


def summarise(out: dict, names=("open_s", "slider_s", "add_s")) -> dict:
    """Each wait's p50 and max over the visits, and the machine's load."""
    for name in names:
        values = [x[name] for x in out["visits"]]
        out[f"{name}_p50"] = round(statistics.median(values), 3) if values else None
        out[f"{name}_max"] = round(max(values), 3) if values else None
    out["load_average"] = round(os.getloadavg()[0], 2)
    return out


def main(argv: list[str] | None = None) -> dict:
    su = setup(argv, __doc__.splitlines()[0], "citypath-interactions-")
    args, pairs, a, b, labels, link = su.args, su.pairs, su.a, su.b, su.labels, su.link
    out = su.out()
    with su.server() as server:
        out["ready_s"] = round(server.ready_s, 2)
        for pair in pairs:
            earlier = Visitor(server.url)
            try:
                settle(earlier, earlier.run(query=link(pair, [b], 32)))
            finally:
                earlier.close()
            v = Visitor(server.url)
            try:
                t0 = time.perf_counter()
                settle(v, v.run(query=link(pair, [a], 8)))
                open_s = time.perf_counter() - t0
                time.sleep(args.look)
                slider_s, _ = timed(v, set_slider, "steps", 16.0)
                time.sleep(args.look)
                add_s, frame = timed(v, set_models, "models", [a, b], labels)
                if len(frame.drawn) != 16 or not all(len(d) == 2 for d in frame.drawn.values()):
                    raise RuntimeError(f"after the add the player holds {len(frame.drawn)} steps of "
                                       f"{sorted({len(d) for d in frame.drawn.values()})} models, not 16 of 2")
            finally:
                v.close()
            out["visits"].append({"pair": list(pair), "open_s": round(open_s, 3), "slider_s": round(slider_s, 3),
                                  "add_s": round(add_s, 3)})
        v = Visitor(server.url)
        try:
            settle(v, v.run(query=""))
            picks = sorted((k for k in v.widgets if k.isdigit()), key=int)    # the buttons "pick-<i>"
            out["interesting_s"] = []
            for key in picks:
                t0 = time.perf_counter()
                settle(v, v.run(trigger=key))
                out["interesting_s"].append(round(time.perf_counter() - t0, 3))
        finally:
            v.close()
    summarise(out)
    if out.get("interesting_s"):
        out["interesting_s_p50"] = round(statistics.median(out["interesting_s"]), 3)
        out["interesting_s_max"] = max(out["interesting_s"])
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
