"""A screenshot of the app at a link, as a new visitor sees it: the README's and docs/app.md's picture.

    python -m benchmarks.screenshot --out docs/screenshot.png
    python -m benchmarks.screenshot --link "source=Boston, MA&target=Chicago, IL&models=gnn-small&steps=16"
    python -m benchmarks.screenshot --page Test-time_compute --out docs/test-time-compute-page.png
    python -m benchmarks.screenshot --link "..." --export gif --out docs/gif-export.png   # the GIF's last frame
    python -m benchmarks.screenshot --think --out docs/bellman-thinking.png --height 1100 \
        --link "source=Chicago, IL&target=Nashville, TN&models=bellman-tiny,post-rnn-small&steps=6"

Starts `streamlit run app.py` on a loopback port (default graph and checkpoints, or `--states` /
`--checkpoints`), opens the link in headless Chromium (Debian's `chromium`), waits until the player
has drawn the map, every route and the city layer, and saves the page.
"""

from __future__ import annotations

import argparse
import time

from benchmarks.browser_app import CHROMIUM_ARGS, paint_marks, player_now
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
    ap.add_argument("--think", action="store_true", help='turn on "Show what the model thinks" first')
    ap.add_argument("--export", default="", choices=["", "png", "gif"],
                    help="save the link's PNG or GIF download instead (a GIF to a .png --out: its last frame)")
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
            if args.think:
                page.get_by_text("Show what the model thinks").click()
                player = player_now(page)
                player.wait_for_selector("text=no value yet", timeout=180_000)
                page.wait_for_timeout(3000)        # the state layer drawn at the shown step
            if args.export:
                save_export(page, args.export, args.out)
            else:
                page.screenshot(path=args.out)
        finally:
            browser.close()
    print(f"wrote {args.out}")
    return args.out


def save_export(page, kind: str, out: str) -> None:
    """Click the page's PNG or GIF download and save it to `out` (a GIF to a .png: its last frame, as shown)."""
    import io
    from pathlib import Path

    from PIL import Image

    label = "GIF (all steps)" if kind == "gif" else "PNG ("
    button = page.get_by_role("button", name=label) if kind == "gif" else \
        page.locator("button", has_text=label).first
    with page.expect_download(timeout=180_000) as dl:
        button.click()
    data = Path(dl.value.path()).read_bytes()
    if kind == "gif" and out.endswith(".png"):
        img = Image.open(io.BytesIO(data))
        img.seek(img.n_frames - 1)
        img.convert("RGB").save(out)
    else:
        Path(out).write_bytes(data)


if __name__ == "__main__":
    main()
