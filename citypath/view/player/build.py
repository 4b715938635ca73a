"""Rebuild the player's bundle from `frontend/` with npm (build time only): `python -m citypath.view.player.build`.

Installs the locked npm packages (`npm ci`), bundles `frontend/src/boot.js` (the Streamlit link and a
still preview of the map, a few KB) inline into `build/index.html` (no second request before the
preview) and `frontend/src/player.js` with deck.gl into `build/player.js`, and records the sources'
sha256 in `build/BUILD_INFO.json` so a test can tell a bundle that is older than its sources.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FRONTEND = HERE / "frontend"
BUILD = HERE / "build"
BOOT_TAG = '<script src="./boot.js"></script>'   # in src/index.html: replaced by the bundle itself
SOURCES = ("package.json", "package-lock.json", "src/boot.js", "src/player.js", "src/pick.js",
           "src/index.html")


def sources_digest() -> str:
    """sha256 over the frontend's sources and lock file (what the bundle is built from)."""
    h = hashlib.sha256()
    for rel in SOURCES:
        h.update(rel.encode() + b"\0" + (FRONTEND / rel).read_bytes() + b"\0")
    return h.hexdigest()


def main() -> int:
    for cmd in (["npm", "ci", "--no-audit", "--no-fund"], ["npm", "run", "build"]):
        print("$", " ".join(cmd), flush=True)
        if subprocess.call(cmd, cwd=FRONTEND) != 0:
            print(f"{' '.join(cmd)} failed in {FRONTEND}", file=sys.stderr)
            return 1
    boot = (BUILD / "boot.js").read_text()
    (BUILD / "boot.js").unlink()
    html = (BUILD / "index.html").read_text()
    if BOOT_TAG not in html or "</script" in boot:
        print(f"cannot inline boot.js: {BOOT_TAG} missing from index.html, or the bundle closes a script tag",
              file=sys.stderr)
        return 1
    (BUILD / "index.html").write_text(html.replace(BOOT_TAG, f"<script>{boot.strip()}</script>"))
    info = {"sources_sha256": sources_digest(), "bundle_bytes": (BUILD / "player.js").stat().st_size,
            "boot_bytes": len(boot.encode())}
    (BUILD / "BUILD_INFO.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"built {BUILD / 'player.js'} ({info['bundle_bytes']:,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
