"""citypath.cache.process_cache: the app's in-process cache (keys, one computation per key, eviction)."""

from __future__ import annotations

import threading
import time

from citypath.cache import process_cache


def test_underscore_arguments_are_not_part_of_the_key():
    calls = []

    @process_cache(maxsize=4)
    def f(_big, key):
        calls.append((_big, key))
        return [key]

    first = f(object(), 1)
    assert f(object(), 1) is first                      # another unhashed argument, same key: shared, not copied
    assert f([1, 2], 2) == [2] and len(calls) == 2      # an unhashable value is fine where it is not hashed
    f.clear()
    assert f(None, 1) is not first and len(calls) == 3


def test_the_least_recently_used_results_go_beyond_maxsize():
    calls = []

    @process_cache(maxsize=2)
    def f(key):
        calls.append(key)
        return key

    f(1), f(2), f(1), f(3)                              # 2 is the least recently used when 3 arrives
    f(1)
    assert calls == [1, 2, 3]
    f(2)
    assert calls == [1, 2, 3, 2]


def test_concurrent_calls_with_one_key_compute_it_once():
    calls, start = [], threading.Barrier(8)

    @process_cache()
    def slow(key):
        calls.append(key)
        time.sleep(0.05)
        return object()

    out = []

    def visitor():
        start.wait()
        out.append(slow("link"))

    threads = [threading.Thread(target=visitor) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["link"] and len({id(x) for x in out}) == 1


def test_a_failed_computation_is_not_cached():
    attempts = []

    @process_cache()
    def flaky(key):
        attempts.append(key)
        if len(attempts) == 1:
            raise OSError("disk full")
        return key

    try:
        flaky(1)
    except OSError:
        pass
    assert flaky(1) == 1 and attempts == [1, 1]
