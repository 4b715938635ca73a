"""A visitor's re-run of the evaluation harness (the Test-time compute page): bounded, one at a time per app
process, off the page's thread, cancellable.

The work asked for is pairs x models x steps; before it starts its cost is estimated in CPU seconds from the
models' own measured cost per step (results/eval.json, else the checkpoint's card; `UNKNOWN_STEP_MS` where
neither measured it, and the page says which). A plan over the budget (`CITYPATH_HARNESS_BUDGET_S`, default
120 s) is refused with the figure and what would fit; so is a second run while one is going in this process.
A run goes in a process of its own (spawned, at a lower CPU priority), so the visitors of the app process are
not held by it; its progress is read back from that process, and a cancel ends it.

    plan = harness.plan(models, n_pairs=20, steps=[1, 2, 4, 8], seed=1)
    why_not = harness.RUNS.start(plan, owner=session_id)     # None: started
    harness.RUNS.status()                                    # progress, the result, or why it stopped
    harness.RUNS.cancel(owner=session_id)
"""

from __future__ import annotations

import math
import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import pandas as pd

from citypath import settings
from citypath.models import RoutingModel

UNKNOWN_STEP_MS = 100.0     # a model that no run measured: assumed this many CPU ms a step (said on the page)


@dataclass(frozen=True)
class Plan:
    """What a harness run would do and cost: `per_model_s` estimated CPU seconds per model over every pair."""

    models: tuple[str, ...]
    n_pairs: int
    steps: tuple[int, ...]
    seed: int
    per_model_s: tuple[tuple[str, float], ...]
    unmeasured: tuple[str, ...] = ()

    @property
    def total_s(self) -> float:
        return float(sum(s for _, s in self.per_model_s))

    def text(self) -> str:
        """The plan in words: pairs x models x steps and its estimated CPU time."""
        top = max(self.steps) if self.steps else 0
        words = (f"{self.n_pairs} pairs x {len(self.models)} model(s) x up to {top} steps: about "
                 f"{_seconds(self.total_s)} of CPU")
        if self.unmeasured:
            words += (f" ({', '.join(self.unmeasured)} never measured: counted at {UNKNOWN_STEP_MS:g} ms a step)")
        return words


def _seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 60 else f"{s / 60:.1f} min"


def step_cost_ms(name: str, model: RoutingModel | None, results: pd.DataFrame | None = None) -> float | None:
    """Measured CPU ms of one step of `name` on one pair (its run's total over its steps), from the committed
    evaluation's rows, else its card's metrics; None if neither measured it."""
    def per_step(rows: Iterable[Mapping]) -> float | None:
        best = None
        for row in rows:
            k = int(row.get("steps") or 0)
            total = row.get("cpu_ms_total_mean")
            total = total if total is not None and math.isfinite(float(total)) else row.get("ms_total_mean")
            if k >= 1 and total is not None and math.isfinite(float(total)) and (best is None or k > best[0]):
                best = (k, float(total))
        return best[1] / best[0] if best else None

    if results is not None and len(results) and "model" in results:
        found = per_step(results[results["model"] == name].to_dict("records"))
        if found is not None:
            return found
    by_steps = ((model.card.get("metrics") or {}).get("by_steps") or {}) if model is not None else {}
    return per_step({**(m or {}), "steps": k} for k, m in by_steps.items() if str(k).isdigit())


def plan(models: Mapping[str, RoutingModel], n_pairs: int, steps: Iterable[int], seed: int,
         results: pd.DataFrame | None = None) -> Plan:
    """The plan for `n_pairs` pairs, these models, these step counts (the harness runs each pair once to the
    largest and reads the others from that run, so a model costs pairs x its cost of max(steps) steps)."""
    steps = tuple(sorted({int(k) for k in steps if int(k) >= 1}))
    top = max(steps) if steps else 0
    per, unmeasured = [], []
    for name, m in models.items():
        ms = step_cost_ms(name, m, results)
        if ms is None:
            unmeasured.append(name)
            ms = UNKNOWN_STEP_MS
        per.append((name, n_pairs * top * ms / 1e3))
    return Plan(tuple(models), int(n_pairs), steps, int(seed), tuple(per), tuple(unmeasured))


def refusal(p: Plan, budget_s: float) -> str | None:
    """Why `p` may not run under `budget_s` estimated CPU seconds (with what would fit), or None."""
    if not p.models or not p.steps or p.n_pairs < 1:
        return "Choose at least one model and one pair."
    if p.total_s <= budget_s:
        return None
    fits = int(p.n_pairs * budget_s / p.total_s)
    costly = max(p.per_model_s, key=lambda x: x[1])
    return (f"Over this app's budget for one visitor's run: {p.text()}, against at most {_seconds(budget_s)}. "
            f"{costly[0]} alone is about {_seconds(costly[1])}. "
            + (f"About {fits} pair(s) with these models would fit." if fits >= 1 else
               "Fewer models or steps are needed: not even one pair fits.")
            + " Larger runs: `python -m citypath evaluate` on your own machine.")


# -- the run, in a process of its own -------------------------------------------------------------

def _child(p: Plan, env: tuple, families: tuple, out) -> None:
    """The harness in a spawned process: loads the graph and the plan's models, runs, sends progress and result."""
    from citypath.app.compute import background, exit_with_parent

    exit_with_parent()
    background()      # a visitor's harness runs only on a core no page run or model run wants
    try:
        import torch

        torch.set_num_threads(1)
        os.environ.update(dict(env))
        from citypath.app import tables
        from citypath.graph import graph_kwargs_from_env, load_graph
        from citypath.models import load_model
        from citypath.registry import register

        for family, target in families:
            register(family, target)
        g = load_graph(**graph_kwargs_from_env())
        models = {n: load_model(n, graph=g) for n in p.models}
        out.put(("progress", 0.0, "models loaded; running"))
        df = tables.quick_eval(models, g, p.n_pairs, p.steps, seed=p.seed,
                               progress=lambda f, text: out.put(("progress", float(f), text)))
        out.put(("done", df, None))
    except Exception as e:                       # said on the page, never a traceback
        out.put(("failed", None, f"{type(e).__name__}: {e}"))


@dataclass
class Status:
    """The process's harness run as the page reads it."""

    owner: str | None = None
    plan: Plan | None = None
    fraction: float = 0.0
    text: str = ""
    running: bool = False
    result: pd.DataFrame | None = None
    error: str | None = None
    cancelled: bool = False
    started_at: float = 0.0
    seconds: float = 0.0
    seen: set = field(default_factory=set)        # owners who have read its end


class Runs:
    """One harness run at a time in this process (see the module's doc)."""

    def __init__(self, spawn=None):
        self._lock = threading.Lock()
        self._status = Status()
        self._proc = None
        self._spawn = spawn                        # tests: a callable(plan, queue) -> process-like

    def status(self) -> Status:
        with self._lock:
            return self._status

    def start(self, p: Plan, owner: str, budget_s: float | None = None) -> str | None:
        """Start `p` for the visitor `owner`, or say why not (over budget, or a run is going)."""
        from citypath.app import compute

        budget_s = settings.harness_budget_s() if budget_s is None else budget_s
        if (why := refusal(p, budget_s)) is not None:
            return why
        with self._lock:
            if self._status.running:
                mine = self._status.owner == owner
                return ("Your harness run is still going: wait for it or cancel it." if mine else
                        "Another visitor's harness run is going in this app process (one at a time, so no visitor "
                        f"waits behind several): {self._status.text or 'starting'}. Try again when it ends.")
            ctx = multiprocessing.get_context("spawn")
            out = ctx.Queue()
            if self._spawn is not None:
                proc = self._spawn(p, out)
            else:
                proc = ctx.Process(target=_child, args=(p, compute.job_env(), compute.job_families(), out),
                                   daemon=True, name="citypath-harness")
                proc.start()
            self._proc = proc
            self._status = Status(owner, p, 0.0, "starting (loading the graph and the models)", True,
                                  started_at=time.monotonic())
        threading.Thread(target=self._follow, args=(proc, out), daemon=True, name="citypath-harness-follow").start()
        return None

    def cancel(self, owner: str) -> bool:
        """End `owner`'s run (True), or do nothing if none of theirs is going (False)."""
        with self._lock:
            if not self._status.running or self._status.owner != owner or self._proc is None:
                return False
            self._status.cancelled = True
            proc = self._proc
        proc.terminate()
        return True

    def _follow(self, proc, out) -> None:
        while True:
            try:
                kind, a, b = out.get(timeout=0.5)
            except queue.Empty:
                if proc.is_alive():
                    continue
                kind, a, b = "failed", None, None
            with self._lock:
                s = self._status
                if kind == "progress":
                    s.fraction, s.text = a, b
                    continue
                s.running, s.seconds = False, time.monotonic() - s.started_at
                if kind == "done":
                    s.result, s.fraction, s.text = a, 1.0, "done"
                elif s.cancelled:
                    s.text = "cancelled"
                else:
                    s.error = b or "the harness process stopped (killed or out of memory)"
                self._proc = None
            proc.join(5)
            return


RUNS = Runs()


# -- the page's panel ----------------------------------------------------------------------------

K_OWNER, K_RESULT = "_harness_owner", "fresh_eval"


def _owner() -> str:
    import uuid

    import streamlit as st

    return st.session_state.setdefault(K_OWNER, uuid.uuid4().hex)


def panel(p: Plan, runs: Runs | None = None) -> None:
    """The harness's controls under the page's choices: the plan and its cost said before it starts, Run (or
    why not), the run's progress with Cancel while it goes (re-read every second), and its result put in the
    session (`K_RESULT`) when it ends."""
    import streamlit as st

    runs = runs or RUNS
    me = _owner()
    budget = settings.harness_budget_s()
    s = runs.status()
    if not s.running and s.owner == me and me not in s.seen:       # this visitor's run ended
        s.seen.add(me)
        if s.result is not None:
            st.session_state[K_RESULT] = s.result
        elif s.cancelled:
            st.info("Your harness run was cancelled; nothing was kept.")
        elif s.error:
            st.error(f"The harness run failed: {s.error}")
    why_not = refusal(p, budget)
    st.caption(f"This run: {p.text()}. One visitor's run may take up to {_seconds(budget)} of CPU; one run at a "
               "time per app process, in a process of its own.")
    if s.running:
        _progress(runs, me)
        return
    if why_not and p.models:
        st.warning(why_not, icon=":material/block:")
    if st.button("Run", type="primary", disabled=bool(why_not), key="harness-run"):
        refused = runs.start(p, me, budget)
        if refused:
            st.error(refused)
        else:
            _progress(runs, me)


def _progress(runs: Runs, me: str) -> None:
    import streamlit as st

    @st.fragment(run_every=1.0)
    def progress() -> None:
        s = runs.status()
        if not s.running:
            st.rerun(scope="app")                 # it ended: the page reads its result
        if s.owner != me:
            st.info("Another visitor's harness run is going in this app process (one at a time): "
                    f"{s.text or 'starting'}. You can run yours when it ends.", icon=":material/hourglass:")
            return
        st.progress(min(max(s.fraction, 0.0), 1.0), f"{s.text} · {time.monotonic() - s.started_at:.0f} s")
        if st.button("Cancel", key="harness-cancel"):
            runs.cancel(me)
            st.rerun(scope="app")

    progress()
