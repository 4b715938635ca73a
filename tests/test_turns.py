"""Turns (citypath/app/turns.py): a process's script runs queue for a slot, the oldest visitor's first."""

from __future__ import annotations

import threading
import time

import pytest

from citypath import settings
from citypath.app.turns import Turns

JOIN = 30      # seconds before a test calls a thread stuck (a deadlock), never a measure of speed


def _queued(turns: Turns, tickets: list[float], entered: list[float]) -> list[threading.Thread]:
    """Threads that each take a turn with their ticket and note it on entry; returns once all are queued."""
    def visitor(ticket: float) -> None:
        with turns.turn(ticket):
            entered.append(ticket)

    threads = [threading.Thread(target=visitor, args=(t,)) for t in tickets]
    for i, t in enumerate(threads):
        t.start()
        _until_waiting(turns, i + 1)           # one at a time: arrival order is the list's
    return threads


def _until_waiting(turns: Turns, n: int) -> None:
    pause = threading.Event()
    for _ in range(JOIN * 1000):
        if turns.waiting >= n:
            return
        pause.wait(0.001)
    raise AssertionError(f"{n} runs never queued ({turns.waiting} did)")


def _holder(turns: Turns, release: threading.Event, ticket: float = 0.0) -> threading.Thread:
    """A thread that takes a turn (`ticket`) and keeps it until `release`; returns once it holds it."""
    holding = threading.Event()

    def hold() -> None:
        with turns.turn(ticket):
            holding.set()
            release.wait(JOIN)

    t = threading.Thread(target=hold)
    t.start()
    assert holding.wait(JOIN)
    return t


def test_the_oldest_visitor_goes_first_whatever_the_order_of_arrival():
    turns = Turns(slots=1)
    entered: list[float] = []
    release = threading.Event()

    h = _holder(turns, release)
    threads = _queued(turns, [5.0, 3.0, 4.0, 1.0, 2.0, 3.0], entered)
    assert turns.waiting == 6
    release.set()
    for t in [h, *threads]:
        t.join(JOIN)
    assert entered == [1.0, 2.0, 3.0, 3.0, 4.0, 5.0]
    assert (turns.served, turns.overruns, turns.waiting) == (7, 0, 0)


def test_a_run_that_takes_its_turn_twice_is_not_blocked_by_itself():
    turns = Turns(slots=1)
    inner = []

    def run() -> None:
        with turns.turn(1.0) as outer, turns.turn(1.0) as nested:
            inner.append((outer, nested))

    t = threading.Thread(target=run)
    t.start()
    t.join(JOIN)
    assert not t.is_alive() and len(inner) == 1
    outer, nested = inner[0]
    assert nested == outer                         # the nested turn is the page's own
    assert (turns.served, turns.overruns) == (1, 0)
    with turns.turn(2.0):                          # the slot was given back
        pass
    assert turns.served == 2


def test_two_slots_run_two_at_once():
    turns = Turns(slots=2)
    both = threading.Barrier(2, timeout=JOIN)     # broken (an error) if the second never gets in
    done = []

    def run(ticket: float) -> None:
        with turns.turn(ticket):
            both.wait()
            done.append(ticket)

    threads = [threading.Thread(target=run, args=(t,)) for t in (1.0, 2.0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN)
    assert sorted(done) == [1.0, 2.0] and not both.broken


def test_a_run_that_waits_past_patience_goes_ahead_and_the_slot_count_stays_right():
    turns = Turns(slots=1, patience_s=0.05)
    release = threading.Event()
    went = []

    h = _holder(turns, release)
    with turns.turn(1.0) as waited:                # the holder never lets go: this one goes ahead
        went.append(waited.ahead)
    assert went == [1] and turns.overruns == 1 and turns.waiting == 0
    release.set()
    h.join(JOIN)
    with turns.turn(2.0) as waited:                # the one slot is free again: in at once
        assert waited.ahead == 0
    assert turns.overruns == 1 and turns.served == 3


def test_an_exception_gives_the_slot_back():
    turns = Turns(slots=1, patience_s=JOIN)
    with pytest.raises(RuntimeError), turns.turn(1.0):
        raise RuntimeError("a rerun, a stop, a bug")
    with turns.turn(2.0) as waited:
        assert waited.ahead == 0
    assert turns.overruns == 0


def test_waited_says_how_many_runs_were_ahead():
    turns = Turns(slots=1)
    release = threading.Event()
    seen = []

    def late(ticket: float) -> None:
        with turns.turn(ticket) as waited:
            seen.append((ticket, waited.ahead, turns.last_wait() == waited))

    h = _holder(turns, release)
    threads = [threading.Thread(target=late, args=(t,)) for t in (2.0, 1.0)]
    for i, t in enumerate(threads):
        t.start()
        _until_waiting(turns, i + 1)
    release.set()
    for t in [h, *threads]:
        t.join(JOIN)
    # 2.0 came first: the holder was ahead; 1.0 came second but is older: only the holder was ahead of it
    assert sorted(seen) == [(1.0, 1, True), (2.0, 1, True)]
    assert turns.last_wait().seconds == 0.0        # this thread took no turn


def test_a_visitors_own_runs_are_not_counted_as_other_visitors():
    """The only visitor, whose previous run still holds the slot (a rerun, a fragment's report), waits behind
    its own run: `own`, never `ahead` (the caption said "1 other visitor" to the only visitor)."""
    turns = Turns(slots=1)
    release = threading.Event()
    seen = []

    def run(ticket: float) -> None:
        with turns.turn(ticket) as waited:
            seen.append((waited.ahead, waited.own))

    h = _holder(turns, release, ticket=5.0)
    t = threading.Thread(target=run, args=(5.0,))
    t.start()
    _until_waiting(turns, 1)
    other = threading.Thread(target=run, args=(9.0,))
    other.start()
    _until_waiting(turns, 2)
    release.set()
    for x in (h, t, other):
        x.join(JOIN)
    # the same visitor (5.0) waited behind its own run only; the newcomer (9.0) behind two runs of another visitor
    assert seen == [(0, 1), (2, 0)]


@pytest.mark.parametrize("value, slots", [("", 1), ("3", 3), (" 2 ", 2)])
def test_runs_at_once_from_the_environment(value, slots):
    assert settings.runs_at_once({"CITYPATH_RUNS_AT_ONCE": value}) == slots


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_a_bad_runs_at_once_says_what_it_needs(value):
    with pytest.raises(ValueError, match="CITYPATH_RUNS_AT_ONCE must be a whole number of at least 1"):
        settings.runs_at_once({"CITYPATH_RUNS_AT_ONCE": value})
    with pytest.raises(ValueError, match="at least one slot"):
        Turns(slots=0)


def test_a_run_waiting_aside_lets_the_next_run_in_and_comes_back_in_its_place():
    turns = Turns(slots=1)
    order, computed, b_in, c_queued = [], threading.Event(), threading.Event(), threading.Event()
    a_aside = threading.Event()

    def a() -> None:
        with turns.turn(1.0):
            order.append("a starts")
            with turns.aside():                # waits for its model, holding no slot
                a_aside.set()
                assert computed.wait(JOIN)
            order.append("a resumes")

    def b() -> None:
        with turns.turn(2.0):
            order.append("b")
            b_in.set()
            assert c_queued.wait(JOIN)
            computed.set()                     # a's model is done while b still holds the slot
            deadline = time.monotonic() + JOIN
            while turns.waiting < 2 and time.monotonic() < deadline:
                time.sleep(0.01)               # a queued again, behind b, ahead of c

    def c() -> None:
        with turns.turn(3.0):
            order.append("c")

    ta = threading.Thread(target=a)
    ta.start()
    assert a_aside.wait(JOIN)
    tb = threading.Thread(target=b)
    tb.start()
    assert b_in.wait(JOIN)
    tc = threading.Thread(target=c)
    tc.start()
    deadline = time.monotonic() + JOIN
    while turns.waiting < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    c_queued.set()
    for t in (ta, tb, tc):
        t.join(JOIN)
    assert order == ["a starts", "b", "a resumes", "c"]
    assert (turns.overruns, turns.waiting) == (0, 0)
    with turns.turn(4.0):                      # every slot was given back
        pass


def test_aside_outside_a_turn_just_runs():
    turns = Turns(slots=1)
    with turns.aside():
        pass
    with turns.turn(1.0):
        pass
    assert turns.served == 1
