"""A screenshot of the app at a link, as a new visitor sees it: the README's and docs/app.md's picture.

    python -m benchmarks.screenshot --out docs/screenshot.png
    python -m benchmarks.screenshot --link "source=Boston, MA&target=Chicago, IL&models=gnn-small&steps=16"
    python -m benchmarks.screenshot --page Test-time_compute --out docs/test-time-compute-page.png

Starts `streamlit run app.py` on a loopback port (default graph and checkpoints, or `--states` /
`--checkpoints`), opens the link in headless Chromium (Debian's `chromium`), waits until the player
has drawn the map, every route and the city layer, and saves the page.
"""

from __future__ import annotations

import argparse
import time

from benchmarks.browser_app import CHROMIUM_ARGS, paint_marks
from benchmarks.load_app import AppServer, app_env

DEFAULT_LINK = ("source=Oxford Circle, PA&target=Manistique, MI&models=refiner-small,gnn-small&steps=8"
                "&seed=0&step=3")


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--link", default=DEFAULT_LINK, help="the query string of the link (default: the README's)")
    ap.add_argument("--out", default="docs/screenshot.png")
    ap.add_argument("--width", type=int, default=1440)
    ap.add_argument("--height", type=int, default=1240)
    ap.add_argument("--states", default="", help="a regional graph (e.g. RI,MA); default: the full graph")
    ap.add_argument("--checkpoints", default="", help="a checkpoint directory (default: checkpoints/)")
    ap.add_argument("--page", default="", help="another page (e.g. Test-time_compute): waits for its charts")
    args = ap.parse_args(argv)
    from urllib.parse import parse_qsl, urlencode

    from playwright.sync_api import sync_playwright

    query = urlencode(parse_qsl(args.link, keep_blank_values=True))
    with AppServer(app_env(args.states, args.checkpoints)) as server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": args.width, "height": args.height})
            if args.page:
                page.goto(f"{server.url}/{args.page}", wait_until="commit")
                page.wait_for_selector("canvas, svg.marks", timeout=180_000)
                page.wait_for_timeout(4000)        # every chart drawn
                page.screenshot(path=args.out, full_page=True)
                print(f"wrote {args.out}")
                return args.out
            page.goto(f"{server.url}/?{query}", wait_until="commit")
            deadline = time.time() + 180
            while time.time() < deadline:
                marks, _ = paint_marks(page)
                if "routes" in marks and "cities" in marks:
                    break
                page.wait_for_timeout(200)
            else:
                raise SystemExit("the player did not draw the map, the routes and the cities within 180 s")
            page.wait_for_timeout(1500)            # the last cross-fade and the charts
            page.screenshot(path=args.out)
        finally:
            browser.close()
    print(f"wrote {args.out}")
    return args.out


if __name__ == "__main__":
    main()
