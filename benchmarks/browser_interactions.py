"""What a visitor waits for when the work is already done, in a real browser: moving the steps slider and
adding a model another visitor computed, in headless Chromium (the issue's measure; `benchmarks.interactions`
times the same over Streamlit's protocol).

    python -m benchmarks.browser_interactions --repeats 6                          # default comparison
    python -m benchmarks.browser_interactions --repeats 6 --models gnn-small,post-rnn-large   # a costly A
    python -m benchmarks.browser_interactions --repeats 6 --app-dir /tmp/before    # another checkout (a before)

Starts one app process (`python -m citypath.app.launch`; `--app-dir`: another checkout, measured by this code)
with an empty replay store (`load_app.fresh_replay_cache`), and for each of `--repeats` random held-out pairs:

1. an earlier visitor (Streamlit's protocol) opens the pair with model B at 32 steps and waits for its route;
2. a new browser visitor (a fresh Chromium context, software WebGL) opens the pair with model A at 8 steps
   and waits until the player holds A's route, then looks at it for `--look` seconds;
3. moves the sidebar's steps slider from 8 to 16 with the keyboard (`slider_s`: the first key press -> the
   player holds every model's route at 16 steps with nothing pending);
4. adds model B in the sidebar's model picker (`add_s`: the Enter that picks it -> the player holds both
   routes at 16 steps, nothing pending).

"The player holds" is read from the player's own controls, the same before and after a change: its step
slider's maximum, one strip row per model with no row still computing. Each change also records whether the
player's frame was replaced (Streamlit made a new one: the map built again); a visit whose player has not
followed a change within a minute is recorded under `stuck` and left out of the p50s. Prints one JSON object;
nothing here asserts a time.
"""

from __future__ import annotations

import json
import sys
import time

from benchmarks.browser_app import CHROMIUM_ARGS, player_now
from benchmarks.interactions import settle, setup, summarise
from benchmarks.load_app import Visitor

HOLDS = """([steps, models]) => {
  const slider = document.getElementById('step');
  const rows = [...document.querySelectorAll('#strip .model')];
  const pending = rows.filter((r) => r.classList.contains('pending')).length;
  return !!slider && Number(slider.max) === steps && pending === 0 && rows.length === models;
}"""


def mark_frame(page) -> None:
    """Mark the player's frame as it is now, so that `wait_holds` can tell whether Streamlit replaced it."""
    player_now(page).evaluate("window.__beforeChange = true")


WAIT_S = 60.0     # a change the player has not followed within this long is recorded as stuck


def wait_holds(page, steps: int, models: int, timeout_s: float = WAIT_S) -> tuple[float, bool]:
    """Seconds until the player (whichever frame is current) holds `models` routes of `steps` steps, and
    whether that frame is a new one (not the one `mark_frame` marked: the map was built again)."""
    t0 = time.perf_counter()
    deadline = t0 + timeout_s
    while time.perf_counter() < deadline:
        frame = player_now(page)
        try:
            if frame is not None and frame.evaluate(HOLDS, [steps, models]):
                return time.perf_counter() - t0, not frame.evaluate("window.__beforeChange === true")
        except Exception:        # noqa: BLE001 - the frame is being replaced: look again
            pass
        page.wait_for_timeout(20)
    raise RuntimeError(f"the player never held {models} model(s) at {steps} steps in {timeout_s:.0f} s")


def slide_to(page, label: str, start: int, value: int) -> None:
    """Move the sidebar slider named `label` from `start` to `value` with the arrow keys, as a visitor can."""
    thumb = page.locator('[data-testid="stSidebar"] [data-testid="stSlider"] '
                         f'input[type="range"][aria-label^="{label}"]')
    thumb.focus()
    key = "ArrowRight" if value > start else "ArrowLeft"
    for _ in range(abs(value - start)):
        thumb.press(key)


def type_model(page, label: str):
    """Type `label` into the sidebar's model picker until it is offered; returns the box (Enter takes it)."""
    box = page.locator('[data-testid="stSidebar"] [data-testid="stMultiSelect"] input').first
    box.click()
    box.fill(label)
    page.locator('[role="option"]').filter(has_text=label).first.wait_for(timeout=10_000)
    return box


def main(argv: list[str] | None = None) -> dict:
    su = setup(argv, __doc__.splitlines()[0], "citypath-browser-interactions-")
    args, a, b, link = su.args, su.a, su.b, su.link
    from playwright.sync_api import sync_playwright

    out = su.out(browser="chromium (SwiftShader)", stuck=[], wait_limit_s=WAIT_S)
    with su.server() as server, sync_playwright() as p:
        out["ready_s"] = round(server.ready_s, 2)
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            for pair in su.pairs:
                earlier = Visitor(server.url)
                try:
                    settle(earlier, earlier.run(query=link(pair, [b], 32)))
                finally:
                    earlier.close()
                context = browser.new_context(viewport={"width": 1400, "height": 1200})
                page = context.new_page()
                open_s = slider_s = add_s = None
                try:
                    t0 = time.perf_counter()
                    page.goto(f"{server.url}/?{link(pair, [a], 8)}", wait_until="commit")
                    wait_holds(page, 8, 1)
                    open_s = time.perf_counter() - t0
                    page.wait_for_timeout(args.look * 1e3)
                    mark_frame(page)
                    t0 = time.perf_counter()
                    slide_to(page, "Refinement steps", 8, 16)
                    _, slider_rebuilt = wait_holds(page, 16, 1)
                    slider_s = time.perf_counter() - t0
                    page.wait_for_timeout(args.look * 1e3)
                    box = type_model(page, su.labels.get(b, b))
                    mark_frame(page)
                    t0 = time.perf_counter()
                    box.press("Enter")
                    _, add_rebuilt = wait_holds(page, 16, 2)
                    add_s = time.perf_counter() - t0
                except RuntimeError as e:      # the player never held what was asked: a stuck visit, recorded
                    out["stuck"].append({"pair": list(pair), "open_s": open_s, "slider_s": slider_s, "why": str(e)})
                    print(json.dumps(out["stuck"][-1]), flush=True, file=sys.stderr)
                    continue
                finally:
                    context.close()
                out["visits"].append({"pair": list(pair), "open_s": round(open_s, 3),
                                      "slider_s": round(slider_s, 3), "add_s": round(add_s, 3),
                                      "map_rebuilt": {"slider": slider_rebuilt, "add": add_rebuilt}})
                print(json.dumps(out["visits"][-1]), flush=True, file=sys.stderr)
        finally:
            browser.close()
    out["maps_rebuilt"] = sum(v["map_rebuilt"]["slider"] + v["map_rebuilt"]["add"] for v in out["visits"])
    summarise(out)
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
