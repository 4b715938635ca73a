"""Turns: at most a few of a process's script runs compute at once, the oldest visitor's first.

Streamlit runs each visitor's script in a thread of its own, and an app process is one core (the GIL).
When a crowd arrives at once, forty runs share that core evenly, so every visitor waits for nearly all
of them: the first page is done when the last is. Turns queue the runs instead: `slots` of them run at
a time (the others wait, costing nothing), and the run whose visitor arrived first goes next. A visitor
whose page asks for more (the player's request for the next model, its stop report) keeps its place in
the queue, so each visitor is served through before the crowd behind it, and half the crowd is done in
about half the time the whole of it takes: the same work, in an order that answers most visitors sooner.

    with turns.turn(ticket):   # ticket: when this visitor's first run started (lower goes first)
        ...                    # the run's work

A turn is re-entrant within a thread (a page run that calls its fragment takes one turn). A run that
waits longer than `patience_s` goes ahead anyway (so a run that hangs never wedges the process); such
runs are counted in `overruns`.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import streamlit as st

from citypath import settings
from citypath.app import state


@dataclass(frozen=True)
class Waited:
    """How long the current thread's last turn waited, and what was ahead of it as it arrived: runs of other
    visitors (`ahead`), and runs of its own visitor (`own`: the page's previous run, a fragment's report) that
    it waits for too but that no other visitor caused."""

    seconds: float = 0.0
    ahead: int = 0
    own: int = 0


class Turns:
    """One process's queue of script runs (see the module's doc); `served` counts turns taken."""

    def __init__(self, slots: int = 1, patience_s: float = 30.0):
        if slots < 1:
            raise ValueError(f"turns need at least one slot, got {slots}")
        self.slots = slots
        self.patience_s = patience_s
        self._lock = threading.Lock()
        self._running = 0
        # (ticket, arrival, the waiter's event), sorted: a freed slot goes to the head, and only it is woken
        self._queue: list[tuple[float, int, threading.Event]] = []
        self._holding: list[float] = []        # the tickets of the runs holding a slot now
        self._arrivals = itertools.count()
        self._local = threading.local()
        self.overruns = 0
        self.served = 0

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._queue)

    def last_wait(self) -> Waited:
        """The current thread's last turn (no turn yet: none waited)."""
        return getattr(self._local, "waited", Waited())

    @contextmanager
    def turn(self, ticket: float) -> Iterator[Waited]:
        """Wait for a slot, lower `ticket` first (ties: first come), run the body, free the slot."""
        if getattr(self._local, "depth", 0):
            self._local.depth += 1
            try:
                yield self.last_wait()
            finally:
                self._local.depth -= 1
            return
        t0 = time.perf_counter()
        me = (float(ticket), next(self._arrivals), threading.Event())
        with self._lock:
            place = bisect.bisect(self._queue, me)
            self._queue.insert(place, me)
            # runs ahead of this one as it arrives: other visitors', and its own visitor's (same ticket)
            before = [t for t, _, _ in self._queue[:place]] + self._holding
            own = sum(1 for t in before if t == me[0])
            ahead = len(before) - own
            self._admit()
        counted = me[2].wait(self.patience_s)
        if not counted:
            with self._lock:
                counted = me[2].is_set()                    # admitted just as the patience ran out
                if not counted:                             # goes ahead without a slot: never wedge the process
                    self._queue.remove(me)
                    self.overruns += 1
        with self._lock:
            self.served += 1
        waited = Waited(time.perf_counter() - t0, ahead, own)
        self._local.waited, self._local.depth = waited, 1
        self._local.ticket, self._local.counted = float(ticket), counted
        try:
            yield waited
        finally:
            self._local.depth = 0
            if self._local.counted:
                with self._lock:
                    self._running -= 1
                    self._holding.remove(me[0])
                    self._admit()

    @contextmanager
    def aside(self) -> Iterator[None]:
        """Give this thread's slot to the next run while the body waits for something else (a model computed in
        a worker process), then queue again in the same place (its ticket): a run that waits costs the others
        nothing. Outside a turn it just runs the body."""
        if not getattr(self._local, "depth", 0) or not getattr(self._local, "counted", False):
            yield
            return
        with self._lock:
            self._running -= 1
            self._admit()
        self._local.counted = False
        try:
            yield
        finally:
            me = (self._local.ticket, next(self._arrivals), threading.Event())
            with self._lock:
                bisect.insort(self._queue, me)
                self._admit()
            counted = me[2].wait(self.patience_s)
            if not counted:
                with self._lock:
                    counted = me[2].is_set()
                    if not counted:
                        self._queue.remove(me)
                        self.overruns += 1
            self._local.counted = counted

    def _admit(self) -> None:
        """Give free slots to the head of the queue (the lock is held)."""
        while self._running < self.slots and self._queue:
            self._running += 1
            ticket, _, event = self._queue.pop(0)
            self._holding.append(ticket)
            event.set()


# -- this process's turns, for the app's script runs -------------------------------------

_TURNS = Turns(settings.runs_at_once())


@contextmanager
def turn() -> Iterator[Waited]:
    """This script run's turn in the process (see the module's doc): the visitor who arrived first goes first."""
    arrived = st.session_state.setdefault(state.K_ARRIVED, time.monotonic())
    with _TURNS.turn(arrived) as waited:
        yield waited


def aside():
    """This run's slot to the next visitor while it waits for a model (`Turns.aside`)."""
    return _TURNS.aside()


def ticket() -> float:
    """This visitor's place: when their first run started (what orders their turns and their model runs)."""
    return float(st.session_state.setdefault(state.K_ARRIVED, time.monotonic()))


def wait_text() -> str:
    """What this run waited for its turn, for the page's caption ("" when it hardly waited)."""
    waited = _TURNS.last_wait()
    if waited.seconds < 0.05:
        return ""
    behind = []
    if waited.ahead:                 # other visitors' runs (never this visitor's own: a lone visitor waits for none)
        behind.append(f"{waited.ahead} run{'s' if waited.ahead != 1 else ''} of other visitors")
    if waited.own:
        behind.append("this page's previous run")
    what = f"waiting behind {' and '.join(behind)}" if behind else "waiting for a turn"
    return f", after {waited.seconds * 1e3:.0f} ms {what}"


def taking_turns(fn):
    """`fn` runs in a turn (a fragment: its own reruns wait their turn; inside a page run it is the page's)."""
    @functools.wraps(fn)
    def in_turn(*args, **kwargs):
        with turn():
            return fn(*args, **kwargs)
    return in_turn
