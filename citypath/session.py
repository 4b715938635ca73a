"""What the app knows about one visitor's view, as plain functions the tests reach without a browser.

- `ViewState`: the shareable part of a view (source, target, models, steps, seed) and its
  round trip through URL query parameters (`parse_query_params`, `to_query_params`); a bad
  or stale link falls back to defaults and says what was wrong.
- `apply_click`: which end of the route a click on a city sets.
- Replays (one model's K steps on one pair) live in `citypath.replay`; their names are re-exported here.
- `load_models`: every checkpoint that loads, and for each one that does not, why.
- `metric_cards_by_step`: the live metrics of each step with deltas against the previous step.

Nothing here imports streamlit; `citypath.ui` wraps these in Streamlit caches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from citypath import cost, settings
from citypath.graph import CityGraph, CityNotFound
from citypath.models import ModelError, RoutingModel, list_models, load_model
from citypath.replay import (  # noqa: F401  (re-exported: the app's and tests' names)
    SERVED_SHARE,
    Replay,
    Thoughts,
    apportion_ms,
    clean_path,
    compute_replay,
    compute_thoughts,
    score_paths,
)
from citypath.split import heldout_mask, sample_pairs

DEFAULT_STEPS = 8
MAX_SEED = 2**31 - 1
MAX_DEFAULT_MODELS = 3
SPEEDS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)   # playback, steps per second (the browser plays them)
DEFAULT_SPEED = 2.0


# -- the shareable view ---------------------------------------------------------------

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

    @property
    def shown_step(self) -> int:
        return self.step


def default_pair(g: CityGraph, candidates: int = 120) -> tuple[int, int]:
    """A fixed, held-out pair of well-known cities, far enough apart to need many hops.

    City ids are ordered by population, so the first `candidates` ids are the big cities.
    Among their held-out pairs (never trained on) it picks the one whose distance is closest
    to ~1,200 km, or to half the graph's extent on a small regional graph.
    """
    key = (g.fingerprint, candidates)
    if key not in _DEFAULT_PAIRS:        # every link's parse asks; ~5% of a run under load when recomputed
        _DEFAULT_PAIRS[key] = _default_pair(g, candidates)
    return _DEFAULT_PAIRS[key]


_DEFAULT_PAIRS: dict[tuple[str, int], tuple[int, int]] = {}


def _default_pair(g: CityGraph, candidates: int) -> tuple[int, int]:
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
    if (src is None) != (dst is None) and not notices:
        notices.append("the link names only one end of the route")
    if src is None or dst is None:
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
            "step": str(state.shown_step), "speed": f"{state.speed:g}", "click": state.click}


# -- picking cities ---------------------------------------------------------------------

CLICK_MODES = ("alternate", "source", "target")


def apply_click(source: int, target: int, city: int, mode: str, next_end: str = "source") -> tuple[int, int, str]:
    """Set one end of the route from a clicked city; returns (source, target, next_end).

    mode "source"/"target" always sets that end; "alternate" sets `next_end` and flips it,
    so two clicks choose a whole new route.
    """
    if mode not in CLICK_MODES:
        raise ValueError(f"click mode {mode!r}: use one of {', '.join(CLICK_MODES)}")
    end = next_end if mode == "alternate" else mode
    if end == "source":
        source = city
    else:
        target = city
    return source, target, ("target" if end == "source" else "source")


def random_heldout_pair(g: CityGraph, rng: np.random.Generator, *, heldout: bool = True,
                        tries: int = 100_000) -> tuple[int, int]:
    """A uniformly random pair of distinct cities, held out from training unless heldout=False."""
    if g.n_cities < 2:
        raise ValueError("a graph needs at least two cities to pick a pair")
    if not heldout:   # any pair of distinct cities, whichever side of the split
        for _ in range(max(1, tries // 1000)):
            a, b = rng.integers(0, g.n_cities, 1000), rng.integers(0, g.n_cities, 1000)
            hit = np.flatnonzero(a != b)
            if len(hit):
                return int(a[hit[0]]), int(b[hit[0]])
    try:
        s, t = sample_pairs(g.n_cities, 1, rng, heldout=True, batch=1000, max_batches=max(1, tries // 1000))
    except ValueError:
        raise ValueError("no held-out pair found in this graph") from None
    return int(s[0]), int(t[0])


# -- models -------------------------------------------------------------------------------

@dataclass
class ModelSet:
    """The models that loaded, by name, and for each that did not, the reason."""

    models: dict[str, RoutingModel] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return list(self.models)


def register_families_from_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Extra model families named in $CITYPATH_MODEL_FAMILIES ("family=module:Class,..."), added to the registry.

    This is how a subprocess app (the browser test) gets test-only families; shipped families
    are in the registry already and are never overridden.
    """
    from citypath.registry import register

    return {family: target for family, target in settings.extra_model_families(env).items()
            if register(family, target)}


def load_models(g: CityGraph, names: Iterable[str] | None = None, *, directory=None,
                loader: Callable[..., RoutingModel] = load_model) -> ModelSet:
    """Load every named checkpoint for graph `g`; one that fails is reported, never fatal."""
    out = ModelSet()
    for name in (list_models(directory) if names is None else names):
        try:
            out.models[name] = loader(name, directory=directory, graph=g)
        except ModelError as e:
            out.failures[name] = str(e)
        except Exception as e:  # a broken checkpoint must not take the app down with it
            out.failures[name] = f"{type(e).__name__}: {e}"
    return out


# -- live metrics -------------------------------------------------------------------------

@dataclass(frozen=True)
class MetricCard:
    """One `st.metric`: label, value, delta vs the previous step, and whether down is good."""

    label: str
    value: str
    delta: str | None
    delta_color: str  # "normal" (up is good), "inverse" (down is good) or "off"
    help: str


def _fmt_km(v: float) -> str:
    return "–" if not np.isfinite(v) else f"{v:,.0f} km"


def _fmt_pct(v: float) -> str:
    return "–" if not np.isfinite(v) else f"{v:+.1f}%"


def metric_cards_by_step(metrics: pd.DataFrame, steps: Iterable[int], *,
                         rows: list[dict] | None = None) -> list[list[MetricCard]]:
    """The cards of each step k of `steps` (1-based, clamped), with deltas against step k-1 (none at step 1),
    reading the table once (not a pandas row per card);
    `rows`: `records(metrics)` if the caller has them already."""
    if metrics is None or len(metrics) == 0:
        return [[] for _ in steps]
    rows = records(metrics) if rows is None else rows
    out = []
    for k in steps:
        k = min(max(k, 1), len(rows))
        out.append(_cards(rows[k - 1], rows[k - 2] if k > 1 else None))
    return out


def records(df: pd.DataFrame) -> list[dict]:
    """The rows of `df` as dicts of Python values, like `df.to_dict("records")` at a fraction of its cost
    (a column at a time, not a pandas row at a time)."""
    cols = [str(c) for c in df.columns]
    return [dict(zip(cols, values)) for values in zip(*(df[c].tolist() for c in df.columns))]


def _cards(row, prev) -> list[MetricCard]:
    """The cards of a metrics row (a pandas row or a dict) against the previous step's (None at step 1)."""
    def delta(col: str, fmt: Callable[[float], str]) -> str | None:
        if prev is None:
            return None
        a, b = float(row[col]), float(prev[col])
        if not (np.isfinite(a) and np.isfinite(b)):
            return None
        text = fmt(a - b)
        # No delta that reads as nothing at the shown precision ("-0 km", "+0.0 pt").
        return None if not any(ch in "123456789" for ch in text) else text

    def flag(col: str) -> str | None:
        if prev is None or bool(row[col]) == bool(prev[col]):
            return None
        return "+ now yes" if bool(row[col]) else "- now no"

    # A shorter or closer route is better only between valid routes: a garbage path shrinking is not progress.
    judged = "inverse" if prev is not None and bool(row["valid"]) and bool(prev["valid"]) else "off"
    return [
        MetricCard("Valid", "yes" if row["valid"] else "no", flag("valid"), "normal",
                   "Starts at the source, reaches the target, no illegal jumps."),
        MetricCard("Illegal jumps", f"{int(row['illegal_jumps'])}", delta("illegal_jumps", lambda d: f"{d:+.0f}"),
                   "inverse", "Hops longer than the graph radius (or to unknown ids), drawn in red."),
        MetricCard("Reaches target", "yes" if row["reaches_target"] else "no", flag("reaches_target"), "normal",
                   "The path ends at the target city."),
        MetricCard("Hops", f"{int(row['hops'])}", delta("hops", lambda d: f"{d:+.0f}"), "off",
                   "Number of hops in the path."),
        MetricCard("Length", _fmt_km(float(row["length_km"])), delta("length_km", lambda d: f"{d:+,.0f} km"),
                   judged, "Great-circle length of the path's hops."),
        MetricCard("vs optimal", _fmt_pct(float(row["length_pct"])), delta("length_pct", lambda d: f"{d:+.1f} pt"),
                   judged, "How much longer than the optimal (Dijkstra) path, in %."),
        MetricCard("Fréchet", _fmt_km(float(row["frechet_km"])), delta("frechet_km", lambda d: f"{d:+,.0f} km"),
                   judged, "Discrete Fréchet distance to the optimal path: how far the route strays."),
        MetricCard("Step time", f"{float(row['ms']):.1f} ms", None, "off",
                   "Measured wall time of this step; a batch computed for several steps is split over the "
                   "steps it served, in proportion to their operations."),
    ]


def human_flops(f: float) -> str:
    """1.2 Gops, 340 Mops, ... ('–' when unknown): `citypath.cost.human`."""
    return cost.human(f)


def compute_text(row) -> str:
    """'12.3 Mops · 45 ms': cumulative compute of a metrics row."""
    fl = float(row["flops_total"]) if "flops_total" in row else float("nan")
    ms = float(row["ms_total"]) if "ms_total" in row else float("nan")
    return f"{human_flops(fl)} · {ms:,.0f} ms" if np.isfinite(ms) else human_flops(fl)


# -- equal compute ------------------------------------------------------------------------

BUDGETS = (1e6, 3e6, 1e7, 3e7, 1e8, 3e8, 1e9, 3e9, 1e10, 3e10)   # FLOPs per query, log scale


@dataclass(frozen=True)
class BudgetStep:
    """How far one model gets on a compute budget: the steps that fit and what they spent."""

    step: int            # 0 when not even step 1 fits
    flops: float         # FLOPs spent by those steps (step 1's cost when step is 0)
    capped: bool         # every computed step fits: more steps might fit too
    text: str


def steps_within(replay: Replay, budget_flops: float) -> BudgetStep:
    """The most steps of `replay` whose summed FLOPs stay within `budget_flops`."""
    m = replay.metrics
    if m is None or not len(m) or "flops_total" not in m or not np.isfinite(m["flops_total"]).any():
        return BudgetStep(0, float("nan"), False, "this model does not report its compute")
    total = m["flops_total"].to_numpy(dtype=np.float64)
    fits = np.flatnonzero(np.isfinite(total) & (total <= budget_flops))
    if not len(fits):
        return BudgetStep(0, float(total[0]), False,
                          f"even one step costs {human_flops(total[0])}, "
                          f"over the budget of {human_flops(budget_flops)}")
    k = int(fits[-1]) + 1
    capped = k == len(total)
    more = f" (all {k} computed steps; more may fit)" if capped else ""
    return BudgetStep(k, float(total[k - 1]), capped,
                      f"{k} step{'s' if k != 1 else ''} fit in {human_flops(budget_flops)}: "
                      f"{human_flops(total[k - 1])} spent{more}")


# -- interesting pairs -------------------------------------------------------------------

INTERESTING_PATH = Path(__file__).resolve().parents[1] / "results" / "interesting-pairs.json"


@dataclass(frozen=True)
class Pick:
    """One interesting pair from `python -m citypath.reports pairs`, with why it is interesting."""

    kind: str
    source: int
    target: int
    why: str

    def label(self, g: CityGraph) -> str:
        return f"{g.label(self.source)} → {g.label(self.target)}"


def interesting_pairs(g: CityGraph, path: str | Path | None = None) -> tuple[list[Pick], str | None]:
    """The committed interesting pairs that exist on `g` (ids by label), and a reason when there are none."""
    import json

    path = path or INTERESTING_PATH
    try:
        data = json.loads(Path(path).read_text())
        entries = data["interesting"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return [], f"no interesting pairs ({Path(path).name}: {type(e).__name__})"
    picks = []
    for e in entries:
        try:
            src, dst = g.find_city(e["source_label"]), g.find_city(e["target_label"])
        except (CityNotFound, KeyError, TypeError, ValueError):
            continue          # a pair of another graph (e.g. a state subset)
        picks.append(Pick(str(e.get("kind", "")), src, dst, str(e.get("why", ""))))
    return picks, (None if picks else "none of the committed interesting pairs is on this graph")


def halted_at(replay: Replay) -> int | None:
    """The last step that spent compute when later ones spent none (the model stopped thinking), else None."""
    f = np.asarray(replay.step_flops, dtype=np.float64)
    if not len(f) or not np.isfinite(f).all():
        return None
    working = np.flatnonzero(f > 0)
    if not len(working) or working[-1] == len(f) - 1:
        return None
    return int(working[-1]) + 1


def halting_text(replay: Replay) -> str | None:
    """'converged at step 7: steps 8-48 repeat its answer and spend nothing', or None."""
    k = halted_at(replay)
    if k is None:
        return None
    rest = f"step {k + 1}" if k + 1 == len(replay.step_flops) else f"steps {k + 1}–{len(replay.step_flops)}"
    return f"stopped thinking after step {k}: {rest} repeat its answer and spend nothing"
