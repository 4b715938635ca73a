"""The shareable view and its round trip through a link's query parameters (no streamlit here).

`ViewState` is everything a link reproduces; `parse_query_params` reads a link, falling back to defaults
and saying what was wrong (a stale or hand-made link never fails), and `to_query_params` writes one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from citypath.cache import process_cache
from citypath.graph import CityGraph, CityNotFound
from citypath.replay import Question
from citypath.split import heldout_mask

DEFAULT_STEPS = 8
MAX_SEED = 2**31 - 1
MAX_DEFAULT_MODELS = 3
SPEEDS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)   # playback, steps per second (the browser plays them)
DEFAULT_SPEED = 2.0
CLICK_MODES = ("alternate", "source", "target")


@dataclass(frozen=True)
class ViewState:
    """Everything a link reproduces: the pair, the models compared, the step budget, the seed, the step
    shown (0: the last), the playback speed and what a click on the map sets."""

    source: int
    target: int
    models: tuple[str, ...]
    steps: int = DEFAULT_STEPS
    seed: int = 0
    step: int = 0
    speed: float = DEFAULT_SPEED
    click: str = "alternate"

    def __post_init__(self):
        if not 1 <= self.step <= self.steps:      # 0 or out of range: the last step (the final answer)
            object.__setattr__(self, "step", self.steps)

    def question(self, *, equal: bool = False, budget: float = 0.0, steps_max: int | None = None) -> Question:
        """What this view asks; with equal compute every model runs up to `steps_max` steps (the budget says
        how many of them each is shown at)."""
        if equal:
            return Question(self.source, self.target, self.models, steps_max or self.steps, self.seed, "equal",
                            float(budget))
        return Question(self.source, self.target, self.models, self.steps, self.seed)


def default_pair(g: CityGraph, candidates: int = 120) -> tuple[int, int]:
    """A fixed, held-out pair of well-known cities, far enough apart to need many hops.

    City ids are ordered by population, so the first `candidates` ids are the big cities.
    Among their held-out pairs (never trained on) it picks the one whose distance is closest
    to ~1,200 km, or to half the graph's extent on a small regional graph.
    """
    return _default_pair(g, g.fingerprint, candidates)   # every link's parse asks: ~5% of a run under load


@process_cache(maxsize=8)
def _default_pair(_g: CityGraph, fingerprint: str, candidates: int) -> tuple[int, int]:
    g = _g
    n = min(candidates, g.n_cities)
    if n < 2:
        return 0, 0
    ids = np.arange(n)
    a, b = np.meshgrid(ids, ids, indexing="ij")
    a, b = a[a < b], b[a < b]
    from citypath.geo import haversine_km

    d = haversine_km(g.lat[a], g.lon[a], g.lat[b], g.lon[b])
    extent = float(haversine_km(g.lat.min(), g.lon.min(), g.lat.max(), g.lon.max()))
    goal = min(1200.0, 0.5 * extent)
    held = heldout_mask(a, b)
    pool = np.flatnonzero(held) if held.any() else np.arange(len(a))
    best = pool[np.argmin(np.abs(d[pool] - goal))]
    return int(a[best]), int(b[best])


def default_models(models: Sequence[str], parameters: Mapping[str, int] | None = None) -> tuple[str, ...]:
    """The comparison a first visit sees: the smallest model against the largest (the post's
    question: can the small one, thinking longer, keep up?), or the first few without sizes."""
    sized = [m for m in models if parameters and m in parameters]
    if len(sized) >= 2:
        smallest = min(sized, key=lambda m: (parameters[m], m))
        largest = max(sized, key=lambda m: (parameters[m], m))
        return (smallest, largest)
    return tuple(models[:MAX_DEFAULT_MODELS])


def default_state(g: CityGraph, models: Sequence[str], parameters: Mapping[str, int] | None = None) -> ViewState:
    src, dst = default_pair(g)
    return ViewState(src, dst, default_models(models, parameters), DEFAULT_STEPS, 0)


def _first(value: str | list[str] | None) -> str | None:
    """The value a link gives for a key (the last one if repeated), as a string; None if absent.

    Anything else (a number, a nested list) from a hand-made params dict is read as its text.
    """
    if isinstance(value, (list, tuple)):
        value = value[-1] if value else None
    return value if value is None or isinstance(value, str) else str(value)


def _parse_int(text: str | None, name: str, lo: int, hi: int, notices: list[str]) -> int | None:
    if text is None or text == "":
        return None
    try:
        value = int(str(text).strip())
    except ValueError:
        notices.append(f"{name}={str(text)[:40]!r} is not a whole number")
        return None
    if not lo <= value <= hi:
        clamped = min(max(value, lo), hi)
        notices.append(f"{name}={value} is outside {lo}..{hi}; using {clamped}")
        return clamped
    return value


def _parse_city(g: CityGraph, text: str | None, name: str, notices: list[str]) -> int | None:
    if text is None or text == "":
        return None
    try:
        return g.find_city(int(text) if text.strip().isdigit() else text)
    except (CityNotFound, ValueError) as e:
        notices.append(f"{name}: {e}")
        return None


def parse_query_params(params: Mapping[str, str | list[str]], g: CityGraph, models: Sequence[str], *,
                       max_steps: int, parameters: Mapping[str, int] | None = None) -> tuple[ViewState, list[str]]:
    """The view a link asks for, with defaults for whatever is missing or wrong.

    Returns (state, notices): one short notice per value that could not be used, so the app
    can say "this link was partly stale" instead of failing. `models` are the names that loaded.
    """
    notices: list[str] = []
    base = default_state(g, models, parameters)
    src = _parse_city(g, _first(params.get("source")), "source", notices)
    dst = _parse_city(g, _first(params.get("target")), "target", notices)
    if (src is None) != (dst is None):
        # One end is good: keep it, and take the other from the default pair (its other city if it is the same).
        if not notices:
            notices.append("the link names only one end of the route")
        if src is None:
            src = base.source if base.source != dst else base.target
            notices.append(f"keeping the target {g.label(dst)}, from the default source {g.label(src)}")
        else:
            dst = base.target if base.target != src else base.source
            notices.append(f"keeping the source {g.label(src)}, to the default target {g.label(dst)}")
    elif src is None:
        if notices or params.get("source") or params.get("target"):
            notices.append(f"showing the default pair, {g.label(base.source)} → {g.label(base.target)}")
        src, dst = base.source, base.target

    chosen = base.models
    raw_models = _first(params.get("models"))
    if raw_models is not None:
        names = [m.strip() for m in raw_models.split(",") if m.strip()]
        known = tuple(dict.fromkeys(m for m in names if m in models))
        unknown = [m for m in names if m not in models]
        if unknown:
            notices.append(f"model(s) not available, left out: {', '.join(n[:40] for n in unknown[:5])}")
        chosen = known if known or not names else base.models
    steps = min(_parse_int(_first(params.get("steps")), "steps", 1, max_steps, notices) or base.steps, max_steps)
    seed = _parse_int(_first(params.get("seed")), "seed", 0, MAX_SEED, notices)
    step = _parse_int(_first(params.get("step")), "step", 1, steps, notices) or 0
    speed = DEFAULT_SPEED
    raw_speed = _first(params.get("speed"))
    if raw_speed not in (None, ""):
        try:
            asked = float(raw_speed)
            if not np.isfinite(asked):
                raise ValueError
            speed = min(SPEEDS, key=lambda v: abs(v - asked))
            if speed != asked:
                notices.append(f"speed={asked:g} is not one of {', '.join(f'{v:g}' for v in SPEEDS)}; "
                               f"using {speed:g}")
        except ValueError:
            notices.append(f"speed={raw_speed[:40]!r} is not a number; using {DEFAULT_SPEED:g}")
    click = _first(params.get("click")) or "alternate"
    if click not in CLICK_MODES:
        notices.append(f"click={click[:40]!r} is not one of {', '.join(CLICK_MODES)}; using alternate")
        click = "alternate"
    return ViewState(src, dst, chosen, steps, seed if seed is not None else 0, step, speed, click), notices


def to_query_params(state: ViewState, g: CityGraph) -> dict[str, str]:
    """The query parameters that reproduce `state` (labels, not ids, so links stay readable)."""
    return {"source": g.label(state.source), "target": g.label(state.target),
            "models": ",".join(state.models), "steps": str(state.steps), "seed": str(state.seed),
            "step": str(state.step), "speed": f"{state.speed:g}", "click": state.click}
