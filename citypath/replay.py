"""One run of one model on one pair, computed once: the record every view of it reads.

`compute_replay` runs a model for K steps (`RoutingModel.refine_with_compute`), timing each step
(batched work apportioned to the steps it served, `apportion_ms`) and scoring each path
(`metrics.evaluate_paths`). The `Replay` it returns holds the paths, the per-step metrics, FLOPs
and wall time; the app's player, the map layers, the exports (PNG, GIF, GeoJSON, CSV) and the
CLI all read it and recompute nothing it holds. `Shown` is a replay as drawn: at one step, in one
colour. A model that raises or yields garbage gives a replay that says so (garbage is drawn and
scored, never a traceback). No Streamlit here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from citypath.graph import CityGraph
from citypath.metrics import evaluate_paths
from citypath.models import RoutingModel
from citypath.models.base import StateView


@dataclass
class Replay:
    """The K paths one model produced for one query, each with its metrics, compute and time."""

    model: str
    source: int
    target: int
    steps: int
    seed: int
    paths: list[list]                # paths[k-1]: the answer after k steps (may hold garbage)
    step_ms: list[float]             # wall time of each step, ms, batched work apportioned (see apportion_ms)
    metrics: pd.DataFrame | None     # one row per step; "step" is 1-based (None: a run only stored, not scored)
    error: str | None = None         # what went wrong, if the model raised or yielded too few paths
    step_flops: list[float] = field(default_factory=list)   # FLOPs of each step (the model's own count)

    def path(self, step: int) -> list:
        """The answer after `step` steps (clamped to what exists; [] if nothing)."""
        if not self.paths:
            return []
        return self.paths[min(max(step, 1), len(self.paths)) - 1]

    def at(self, step: int) -> pd.Series | None:
        """The metrics row of `step` (clamped), or None if there is no step."""
        if not len(self.metrics):
            return None
        return self.metrics.iloc[min(max(step, 1), len(self.metrics)) - 1]

    @classmethod
    def from_paths(cls, g: CityGraph, model: str, source: int, target: int, paths: Sequence, seed: int = 0,
                   error: str | None = None) -> Replay:
        """A replay of paths given as they are (a file, a test): scored, with no time or FLOPs measured."""
        clean = [clean_path(p) for p in paths]
        zeros = [0.0] * len(clean)
        flops = [float("nan")] * len(clean)
        return cls(model, source, target, len(clean), seed, clean, zeros,
                   score_paths(g, clean, source, target, zeros, flops), error, flops)


@dataclass(frozen=True)
class Shown:
    """A replay as drawn: at one step, in one colour. Map layers and exports read it (and its metrics)."""

    replay: Replay
    step: int
    rgb: tuple[int, int, int] | None = None

    @property
    def name(self) -> str:
        return self.replay.model

    @property
    def paths(self) -> list[list]:
        return self.replay.paths

    def path(self, step: int | None = None) -> list:
        """The answer at `step` (default: the step shown)."""
        return self.replay.path(self.step if step is None else step)

    @property
    def previous(self) -> list | None:
        """The answer one step before the one shown (the map's ghost), or None at step 1."""
        return self.replay.path(self.step - 1) if self.step > 1 else None


MODES = ("steps", "equal")


@dataclass(frozen=True)
class Question:
    """What a visitor asks: a pair, the models compared, the steps each may refine, the seed, and the mode:
    "steps" (every model plays steps 1..steps) or "equal" (each is shown at the most steps whose counted
    operations fit in `budget`, operations per query). Frozen and hashable: the key of every cache of what
    answers it, and the one argument from a link to the replays to the player."""

    source: int
    target: int
    models: tuple[str, ...]
    steps: int
    seed: int = 0
    mode: str = "steps"
    budget: float = 0.0

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r}: use one of {', '.join(MODES)}")

    @property
    def equal(self) -> bool:
        return self.mode == "equal"


SERVED_SHARE = 0.25   # a call faster than this share of its FLOPs' expected time did no work of its own


def apportion_ms(call_ms: Sequence[float], flops: Sequence[float]) -> list[float]:
    """Wall time per step with batched work apportioned to the steps it served.

    `call_ms[k]` is the measured time of the call that produced step k's path. A family that
    decodes several steps in one batch spends it all in the first call; the later calls return
    at once. A call is "served" when it took under SERVED_SHARE of the time its FLOPs would take
    at the run's measured rate (total ms / total FLOPs); a served step belongs to the batch of
    the last step that did work, and that batch's measured time (its calls summed) is split over
    the steps it served in proportion to their FLOPs (equally where they are zero or unknown).
    The total is unchanged: per-step times sum to the measured time of the run.
    """
    ms = np.asarray(call_ms, dtype=np.float64)
    fl = np.nan_to_num(np.asarray(flops, dtype=np.float64)[:len(ms)], nan=0.0)
    if len(fl) < len(ms):
        fl = np.concatenate([fl, np.zeros(len(ms) - len(fl))])
    if not len(ms):
        return []
    rate = ms.sum() / fl.sum() if fl.sum() > 0 else 0.0
    served = (ms < SERVED_SHARE * fl * rate) & (np.arange(len(ms)) > 0)
    out = ms.copy()
    k = 0
    while k < len(ms):
        j = k + 1
        while j < len(ms) and served[j]:
            j += 1
        group = slice(k, j)
        total, w = ms[group].sum(), fl[group]
        out[group] = total * w / w.sum() if w.sum() > 0 else total / (j - k)
        k = j
    return out.tolist()


@dataclass
class Thoughts:
    """What a model holds over cities after each step (`RoutingModel.trace`), or why there is nothing."""

    model: str
    views: list[list]            # views[k-1]: the StateViews after step k
    error: str | None = None
    scale: tuple[float, float] = (0.0, 1.0)   # (low, high) of the first view over all steps: one colour scale

    def __post_init__(self):
        finite = [v[0].values[np.isfinite(v[0].values)] for v in self.views if v]
        finite = [f for f in finite if len(f)]
        if finite:
            self.scale = (0.0, float(max(f.max() for f in finite)))

    def at(self, step: int):
        """The first state view after `step` steps (clamped), or None."""
        if not self.views:
            return None
        return self.views[min(max(step, 1), len(self.views)) - 1][0]



def compute_thoughts(model: RoutingModel, g: CityGraph, src: int, dst: int, steps: int) -> Thoughts:
    """The model's per-step state over cities, if its family has one."""
    if not model.has_state_view:
        return Thoughts(model.name, [], f"{model.name} ({model.family}) has no per-city state to show")
    try:
        return Thoughts(model.name, list(model.trace(g, src, dst, steps)))
    except Exception as e:  # the map still draws the routes
        return Thoughts(model.name, [], f"{model.name}: its state view failed: {type(e).__name__}: {e}")


def clean_path(raw: object) -> list:
    """A model's output as a list, whatever it was; entries are kept as they are (metrics judge them)."""
    if raw is None or isinstance(raw, (str, bytes)):
        return []
    if isinstance(raw, np.ndarray):
        return raw.ravel().tolist()
    try:
        return [c.item() if isinstance(c, np.generic) else c for c in raw]
    except TypeError:
        return []


def compute_replay(model: RoutingModel, g: CityGraph, src: int, dst: int, steps: int, seed: int = 0, *,
                   scored: bool = True) -> Replay:
    """Run the model once for K steps (`refine_with_compute`), timing each step and scoring each path (with
    `scored=False` not: its `metrics` are None, for a run only stored, which its readers score)."""
    paths: list[list] = []
    call_ms: list[float] = []
    flops: list[float] = []
    error = None
    try:
        it = iter(model.refine_with_compute(g, src, dst, steps=steps, seed=seed))
        while len(paths) < steps:
            t0 = time.perf_counter()
            try:
                raw, f = next(it)
            except StopIteration:
                error = f"{model.name} yielded {len(paths)} paths for {steps} steps"
                break
            call_ms.append((time.perf_counter() - t0) * 1e3)
            paths.append(clean_path(raw))
            flops.append(float(f) if f is not None else float("nan"))
    except Exception as e:  # the app shows a failing model's error next to its last good step
        error = f"{model.name} failed after {len(paths)} of {steps} steps: {type(e).__name__}: {e}"
    step_ms = apportion_ms(call_ms, flops)
    return Replay(model.name, src, dst, steps, seed, paths, step_ms,
                  score_paths(g, paths, src, dst, step_ms, flops) if scored else None, error, flops)


def compute_replays(model: RoutingModel, g: CityGraph, pairs: Sequence[tuple[int, int]], steps: int,
                    seed: int = 0, *, scored: bool = True) -> list[Replay]:
    """`compute_replay` of several pairs of one model, computed together where the family can
    (`RoutingModel.refine_many`): the batch's measured time is apportioned to every step it served, of every
    pair, by their counted operations (each pair's operations are what it costs alone). A batch that fails
    is run again one pair at a time, so each pair's error is said with its own steps."""
    pairs = [(int(s), int(t)) for s, t in pairs]
    if len(pairs) < 2 or not model.batches_queries:
        return [compute_replay(model, g, s, t, steps, seed, scored=scored) for s, t in pairs]
    t0 = time.perf_counter()
    try:
        runs = model.refine_many(g, pairs, steps, seed=seed)
        if any(len(run) != steps for run in runs):
            raise ValueError("a query's steps are missing")
    except Exception:
        return [compute_replay(model, g, s, t, steps, seed, scored=scored) for s, t in pairs]
    total_ms = (time.perf_counter() - t0) * 1e3
    flops = [[float(f) if f is not None else float("nan") for _, f in run] for run in runs]
    w = np.nan_to_num(np.array([f for each in flops for f in each]), nan=0.0)
    step_ms = (total_ms * w / w.sum() if w.sum() > 0 else np.full(len(w), total_ms / len(w))).tolist()
    out, k = [], 0
    for (s, t), run, fl in zip(pairs, runs, flops):
        paths = [clean_path(p) for p, _ in run]
        ms, k = step_ms[k:k + len(run)], k + len(run)
        metrics = score_paths(g, paths, s, t, ms, fl) if scored else None
        out.append(Replay(model.name, s, t, steps, seed, paths, ms, metrics, None, fl))
    return out


def score_paths(g: CityGraph, paths: list[list], src: int, dst: int, step_ms: list[float],
                step_flops: Sequence[float] | None = None) -> pd.DataFrame:
    """evaluate_paths for each step's path, plus step, ms (and cumulative), FLOPs (and cumulative) and
    length vs optimal in %."""
    if not paths:
        return pd.DataFrame(columns=["step", "ms", "ms_total", "flops", "flops_total", "length_pct"])
    df = evaluate_paths(g, paths, [src] * len(paths), [dst] * len(paths))
    df.insert(0, "step", np.arange(1, len(paths) + 1))
    df["ms"] = step_ms[:len(paths)]
    df["ms_total"] = np.cumsum(df["ms"].to_numpy())
    fl = np.full(len(paths), np.nan) if step_flops is None else np.asarray(list(step_flops)[:len(paths)], float)
    df["flops"] = fl
    df["flops_total"] = np.cumsum(fl)
    with np.errstate(invalid="ignore"):
        df["length_pct"] = (df["length_ratio"] - 1.0) * 100.0
    return df




# -- replays shared between processes -------------------------------------------------------

REPLAY_FORMAT = 1


def _source_digest(model: RoutingModel) -> str:
    """sha256 of the model class's source file: a replay cached by other inference code is not reused."""
    import hashlib
    import inspect

    try:
        return hashlib.sha256(Path(inspect.getsourcefile(type(model))).read_bytes()).hexdigest()[:16]
    except (TypeError, OSError):
        return "unknown"


class ReplayStore:
    """Replays on disk, shared by every process that serves the app (several app processes behind a
    balancer): a popular link is computed by one process, once, and read by the others.

    The key is the model (name, weights' sha256, family, its inference code's sha256), the graph, the
    pair, K and the seed. A file lock per key makes a second process wait for the first one's
    computation instead of repeating it. What is stored is what was measured (paths, per-step time and
    FLOPs, error); the metrics are scored again on reading (cheap and deterministic). An unreadable
    entry is recomputed and replaced; a store that cannot be written (full disk, read-only) is
    skipped: the replay is still returned.
    """

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    def key(self, model: RoutingModel, g: CityGraph, src: int, dst: int, steps: int, seed: int) -> str:
        import hashlib
        import json

        # A family whose K steps are a prefix of its M steps keeps one record per pair whatever K (`get_or_compute`)
        span = "prefix" if prefix(model) else int(steps)
        parts = [REPLAY_FORMAT, model.name, model.card.get("weights_sha256", ""), model.family, _source_digest(model),
                 g.fingerprint, int(src), int(dst), span, int(seed)]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]

    def _read(self, path: Path, model: RoutingModel, g: CityGraph, src: int, dst: int, steps: int,
              seed: int, scored: bool = True) -> Replay | None:
        import json

        try:
            d = json.loads(path.read_text())
            paths = [list(p) for p in d["paths"]]
            step_ms = [float(x) for x in d["step_ms"]]
            flops = [float("nan") if x is None else float(x) for x in d["step_flops"]]
            computed = int(d.get("steps", steps))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if computed < steps:
            return None                          # a shorter run of a prefix family: extended by the caller
        error = d.get("error")
        if computed > steps:                     # the first `steps` of a longer run (a prefix family only)
            paths, step_ms, flops = paths[:steps], step_ms[:steps], flops[:steps]
            error = error if len(paths) < steps else None    # it failed later than the steps asked for
        metrics = score_paths(g, paths, src, dst, step_ms, flops) if scored else None
        return Replay(model.name, src, dst, steps, seed, paths, step_ms, metrics, error, flops)

    def _path(self, model: RoutingModel, g: CityGraph, src: int, dst: int, steps: int, seed: int) -> Path:
        key = self.key(model, g, src, dst, steps, seed)
        return self.directory / key[:2] / f"{key}.json"

    def stored_steps(self, model: RoutingModel, g: CityGraph, src: int, dst: int, steps: int, seed: int = 0) -> int:
        """How many steps the stored record for this question holds (0: none). For a prefix family that is the
        longest run any process stored for the pair, which serves every K up to it."""
        import re

        path = self._path(model, g, src, dst, steps, seed)
        try:
            with open(path, "rb") as f:
                head = f.read(48).decode("ascii", "replace")
        except OSError:
            return 0
        m = re.match(r'\{"steps": (\d+)', head)
        if m:
            return int(m.group(1))
        return int(steps) if head.startswith('{"paths"') else 0     # a record from before "steps": its own K

    def stored(self, model: RoutingModel, g: CityGraph, src: int, dst: int, steps: int, seed: int = 0) -> bool:
        """Whether a process stored this replay already, or (a prefix family) a longer run of the same pair: reading
        it costs no model compute."""
        return self.stored_steps(model, g, src, dst, steps, seed) >= steps

    def get_or_compute(self, model: RoutingModel, g: CityGraph, src: int, dst: int, steps: int,
                       seed: int = 0, extend_to: int | None = None, *, scored: bool = True) -> Replay:
        """The replay from disk if any process computed it, else computed here (once) and stored.

        For a family whose K steps are a prefix of its M steps (`RoutingModel.steps_are_prefix`) one record per
        pair holds the longest run computed: any K up to it is read from it, a larger K replaces it with a
        longer run, and `extend_to` asks that a run computed now go that far (the app passes the steps slider's
        maximum, so the slider moves within what exists). Other families: one record per K; `extend_to` is
        ignored. The record keeps the paths, their time and operations; the metrics are scored as it is read, with
        the reader's graph. `scored=False` (a model worker, which only stores it): the replay's `metrics` are None
        and no path is scored (scoring searches the graph for the pair's optimal path)."""

        from filelock import FileLock, Timeout

        path = self._path(model, g, src, dst, steps, seed)
        run = max(int(steps), int(extend_to or 0)) if prefix(model) else int(steps)

        def held() -> Replay | None:
            if run > steps and self.stored_steps(model, g, src, dst, steps, seed) < run:
                return None                  # stored, but shorter than the run asked for: extended here
            return self._read(path, model, g, src, dst, steps, seed, scored) if path.is_file() else None

        if (r := held()) is not None:
            return r
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # An extension (work for later) has a lock of its own: a visitor's run of the same pair never waits
            # for one; whichever finishes keeps the longer record (below).
            lock = FileLock(str(path.with_suffix(".extend.lock" if run > steps else ".lock")), timeout=300)
            lock.acquire()
        except (OSError, Timeout):
            return compute_replay(model, g, src, dst, steps, seed, scored=scored)
        try:
            if (r := held()) is not None:
                return r                     # another process computed it while this one waited
            r = compute_replay(model, g, src, dst, run, seed, scored=False)
            self._write(model, g, r, steps)
            return sliced(g, r, steps, scored)
        finally:
            lock.release()

    def _write(self, model: RoutingModel, g: CityGraph, r: Replay, steps: int) -> None:
        """Store `r` (a run of r.steps >= steps), unless a run at least as long was stored while it ran (an
        extension is never replaced by a shorter run); a store that cannot be written is skipped."""
        import json

        from citypath.cache import write_atomic

        path = self._path(model, g, r.source, r.target, steps, r.seed)
        clean = [[c if isinstance(c, (int, float, str)) or c is None else str(c) for c in p] for p in r.paths]
        record = {"steps": r.steps, "paths": clean, "step_ms": r.step_ms,
                  "step_flops": [None if not np.isfinite(f) else f for f in r.step_flops], "error": r.error}
        try:
            longer = self.stored_steps(model, g, r.source, r.target, steps, r.seed) >= r.steps and \
                self._read(path, model, g, r.source, r.target, 1, r.seed, False) is not None     # stored meanwhile
            if not longer:
                write_atomic(path, json.dumps(record, allow_nan=False))
        except (OSError, ValueError):
            pass                          # served without the shared copy

    def get_or_compute_many(self, model: RoutingModel, g: CityGraph, pairs: Sequence[tuple[int, int]], steps: int,
                            seed: int = 0, *, scored: bool = True) -> list[Replay]:
        """`get_or_compute` of several pairs of one model: the pairs no process stored, and none is computing, are
        computed together (`compute_replays`: one batch where the family can) and stored; a pair another process
        holds the lock of is left to `get_or_compute`, which waits for it. `scored` as there."""
        from filelock import FileLock, Timeout

        out: dict[int, Replay] = {}
        held, batch = [], []
        try:
            for i, (src, dst) in enumerate(pairs):
                path = self._path(model, g, src, dst, steps, seed)
                if path.is_file() and (r := self._read(path, model, g, src, dst, steps, seed, scored)) is not None:
                    out[i] = r
                    continue
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    lock = FileLock(str(path.with_suffix(".lock")), timeout=0)
                    lock.acquire()
                except (OSError, Timeout):
                    continue                  # computed by another process now, or no lock here: below
                held.append(lock)
                if path.is_file() and (r := self._read(path, model, g, src, dst, steps, seed, scored)) is not None:
                    out[i] = r
                else:
                    batch.append(i)
            for i, r in zip(batch, compute_replays(model, g, [pairs[i] for i in batch], steps, seed, scored=scored)):
                self._write(model, g, r, steps)
                out[i] = r
        finally:
            for lock in held:
                lock.release()
        return [out[i] if i in out else self.get_or_compute(model, g, src, dst, steps, seed, scored=scored)
                for i, (src, dst) in enumerate(pairs)]


    # -- what a model thinks ("Show what the model thinks"), stored beside the routes

    def _thoughts_path(self, model: RoutingModel, g: CityGraph, src: int, dst: int, steps: int) -> Path:
        import hashlib
        import json

        parts = ["thoughts", REPLAY_FORMAT, model.name, model.card.get("weights_sha256", ""), model.family,
                 _source_digest(model), g.fingerprint, int(src), int(dst), int(steps)]
        key = hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]
        return self.directory / key[:2] / f"{key}.thoughts.npz"

    def has_thoughts(self, model: RoutingModel, g: CityGraph, src: int, dst: int, steps: int) -> bool:
        """Whether a process stored the model's state for this pair and K (a look at the disk, nothing read)."""
        return self._thoughts_path(model, g, src, dst, steps).is_file()

    def stored_thoughts(self, model: RoutingModel, g: CityGraph, src: int, dst: int, steps: int) -> Thoughts | None:
        """The model's per-step state over cities for this pair and K, if a process stored it (None: not stored, or
        unreadable)."""
        import json

        try:
            with np.load(self._thoughts_path(model, g, src, dst, steps), allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                views = [[StateView(name, unit, z[f"s{k}v{j}"].astype(np.float64))
                          for j, (name, unit) in enumerate(step)] for k, step in enumerate(meta["views"])]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return Thoughts(meta["model"], views, meta["error"])

    def get_or_compute_thoughts(self, model: RoutingModel, g: CityGraph, src: int, dst: int, steps: int
                                ) -> Thoughts:
        """The model's per-step state over cities (`compute_thoughts`), from the store if a process stored it,
        else computed here and stored (float32: a colour scale needs no more)."""
        import io
        import json

        if (t := self.stored_thoughts(model, g, src, dst, steps)) is not None:
            return t
        t = compute_thoughts(model, g, src, dst, steps)
        arrays = {f"s{k}v{j}": np.asarray(v.values, np.float32) for k, step in enumerate(t.views)
                  for j, v in enumerate(step)}
        meta = {"model": t.model, "error": t.error, "views": [[[v.name, v.unit] for v in step] for step in t.views]}
        try:
            from citypath.cache import write_atomic

            buf = io.BytesIO()
            np.savez_compressed(buf, meta=np.array(json.dumps(meta)), **arrays)
            path = self._thoughts_path(model, g, src, dst, steps)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, buf.getvalue())
        except (OSError, ValueError):
            pass                              # served without the shared copy
        return t


def prefix(model: RoutingModel) -> bool:
    """Whether the model's K steps are a prefix of its M steps (`RoutingModel.steps_are_prefix`)."""
    return bool(getattr(model, "steps_are_prefix", False))


def sliced(g: CityGraph, r: Replay, steps: int, scored: bool = True) -> Replay:
    """The first `steps` steps of a run of at least that many (a longer one: a prefix family's), as a run of `steps`
    steps would give them (its error only where it failed within them), scored unless `scored=False`."""
    paths, step_ms, flops = r.paths[:steps], r.step_ms[:steps], r.step_flops[:steps]
    error = r.error if len(paths) < steps else None
    return Replay(r.model, r.source, r.target, steps, r.seed, paths, step_ms,
                  score_paths(g, paths, r.source, r.target, step_ms, flops) if scored else None, error, flops)
