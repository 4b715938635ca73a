"""The browser-side player: a Streamlit component that plays a comparison in the browser.

The server computes a comparison once (`payload.comparison`: every model's K steps as pydeck layers,
their metrics and compute) and sends it once; the component (deck.gl, bundled from npm at build
time into `build/`, nothing fetched at run time) plays it with no server round trip per frame and
reports the shown step back only when the user stops or moves it. Rebuild the bundle with
`python -m citypath.view.player.build` after editing `frontend/src/`.
"""

from __future__ import annotations

from pathlib import Path

from citypath.view.player.payload import Prepared, comparison, comparison_id, frames_to_file, read_event, store_frames

BUILD_DIR = Path(__file__).resolve().parent / "build"
COMPONENT_NAME = "citypath_player"

_component = None


def show(payload: dict, *, key: str, on_change=None) -> dict | None:
    """Draw the player for `payload` (see `payload.comparison`); the last event it reported, or None.

    `on_change` (no arguments) runs before the rerun that a report triggers, as a widget's callback.
    """
    global _component
    if _component is None:
        import streamlit.components.v1 as components

        if not (BUILD_DIR / "player.js").is_file():
            raise FileNotFoundError(f"the player's bundle is missing from {BUILD_DIR}; build it with "
                                    "`python -m citypath.view.player.build` (needs npm)")
        _component = components.declare_component(COMPONENT_NAME, path=str(BUILD_DIR))
    return _component(**payload, key=key, default=None, on_change=on_change)


__all__ = ["BUILD_DIR", "Prepared", "comparison", "comparison_id", "frames_to_file", "read_event", "show",
           "store_frames"]
