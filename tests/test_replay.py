"""One replay per (model, pair, K, seed), shared on disk between app processes (`ReplayStore`)."""

from __future__ import annotations

import numpy as np

from citypath.replay import ReplayStore, compute_replay
from tests.fake_models import GarbageFake, RefiningFake


class CountingFake(RefiningFake):
    calls = 0

    def refine(self, g, src, dst, steps=1, *, seed=0):
        CountingFake.calls += 1
        yield from super().refine(g, src, dst, steps, seed=seed)


def _card(g):
    return {"num_parameters": 1, "max_steps": 8, "graph": {"fingerprint": g.fingerprint}, "weights_sha256": "ab"}


def test_a_stored_replay_is_read_by_another_process_instead_of_recomputed(small_graph, tmp_path):
    g = small_graph
    m = CountingFake("m", _card(g))
    CountingFake.calls = 0
    first = ReplayStore(tmp_path).get_or_compute(m, g, 3, 40, 5, seed=2)
    again = ReplayStore(tmp_path).get_or_compute(m, g, 3, 40, 5, seed=2)     # a fresh store: another process
    assert CountingFake.calls == 1
    assert again.paths == first.paths and again.step_ms == first.step_ms
    assert again.metrics.drop(columns=["ms", "ms_total"]).equals(first.metrics.drop(columns=["ms", "ms_total"]))
    direct = compute_replay(m, g, 3, 40, 5, 2)
    assert direct.paths == first.paths                                        # the same answer as computing it
    ReplayStore(tmp_path).get_or_compute(m, g, 3, 40, 5, seed=3)              # another seed: another entry
    assert CountingFake.calls == 3


def test_garbage_and_broken_entries(small_graph, tmp_path):
    g = small_graph
    junk = GarbageFake("junk", _card(g))
    store = ReplayStore(tmp_path)
    r = store.get_or_compute(junk, g, 3, 40, 5)
    again = store.get_or_compute(junk, g, 3, 40, 5)
    assert [list(map(str, p)) for p in again.paths] == [list(map(str, p)) for p in r.paths]
    assert np.array_equal(again.metrics["valid"].to_numpy(), r.metrics["valid"].to_numpy())
    for f in tmp_path.rglob("*.json"):
        f.write_text("{not json")                                              # a torn or corrupted entry
    CountingFake.calls = 0
    m = CountingFake("m", _card(g))
    assert store.get_or_compute(m, g, 3, 40, 4).paths                          # still answers
    fixed = store.get_or_compute(junk, g, 3, 40, 5)                           # recomputed and replaced
    assert len(fixed.paths) == 5


def test_an_unwritable_store_still_answers(small_graph, tmp_path):
    g = small_graph
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    r = ReplayStore(blocked / "replays").get_or_compute(CountingFake("m", _card(g)), g, 3, 40, 3)
    assert len(r.paths) == 3 and r.error is None


KILLED_WRITER = """
import os, sys, time
import citypath
from citypath.replay import ReplayStore
from tests.fake_models import RefiningFake

g = citypath.load_graph(states=["RI", "MA"])
m = RefiningFake("m", {"num_parameters": 1, "max_steps": 8, "graph": {"fingerprint": g.fingerprint},
                       "weights_sha256": "ab"})
def stalled(fd):                 # the record is in the temp file, not yet renamed: the kill lands here
    print("writing", flush=True)
    time.sleep(120)
os.fsync = stalled
ReplayStore(sys.argv[1]).get_or_compute(m, g, 3, 40, 5, seed=2)
"""


def test_a_write_killed_midway_leaves_no_file_that_is_read(small_graph, tmp_path, monkeypatch):
    """An app process killed (SIGKILL) while it stores a replay: the entry's name never holds a part of it (the
    record goes to a temp file renamed whole), its lock dies with it, and the next process computes and stores it."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from benchmarks.load_app import replay_files_intact
    from citypath import replay

    repo = Path(__file__).resolve().parents[1]
    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path)], cwd=repo, stdout=subprocess.PIPE,
                             text=True, env={**os.environ, "PYTHONPATH": str(repo)})
    try:
        assert child.stdout.readline().strip() == "writing"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    g = small_graph
    m = RefiningFake("m", _card(g))                                       # the model the killed process ran
    store = ReplayStore(tmp_path)
    key = store.key(m, g, 3, 40, 5, 2)
    assert [p.name.startswith(f".{key}.json.") for p in tmp_path.rglob("*.tmp")] == [True]   # the cut write
    assert not store.stored(m, g, 3, 40, 5, seed=2)                     # nothing under the entry's name
    calls = []
    monkeypatch.setattr(replay, "compute_replay", lambda *a: calls.append(a) or compute_replay(*a))
    r = store.get_or_compute(m, g, 3, 40, 5, seed=2)                     # the dead process's lock is gone
    assert len(calls) == 1 and r.paths == compute_replay(m, g, 3, 40, 5, 2).paths
    assert store.stored(m, g, 3, 40, 5, seed=2)
    intact = replay_files_intact(tmp_path)
    assert intact["replays_stored"] == 1 and intact["replays_broken"] == [] and intact["temp_files_left"] == 1
