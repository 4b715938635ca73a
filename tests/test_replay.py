"""One replay per (model, pair, K, seed), shared on disk between app processes (`ReplayStore`)."""

from __future__ import annotations

import numpy as np
import pytest

from citypath.replay import ReplayStore, compute_replay, compute_replays
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
    monkeypatch.setattr(replay, "compute_replay", lambda *a, **k: calls.append(a) or compute_replay(*a, **k))
    r = store.get_or_compute(m, g, 3, 40, 5, seed=2)                     # the dead process's lock is gone
    assert len(calls) == 1 and r.paths == compute_replay(m, g, 3, 40, 5, 2).paths
    assert store.stored(m, g, 3, 40, 5, seed=2)
    intact = replay_files_intact(tmp_path)
    assert intact["replays_stored"] == 1 and intact["replays_broken"] == [] and intact["temp_files_left"] == 1
class PrefixFake(CountingFake):
    """The refining fake (its step k never looks at K) claiming what holds for it."""

    steps_are_prefix = True


def test_a_prefix_family_keeps_one_record_per_pair_and_serves_any_k_up_to_it(small_graph, tmp_path):
    g = small_graph
    m = PrefixFake("p", _card(g))
    CountingFake.calls = 0
    store = ReplayStore(tmp_path)
    first = store.get_or_compute(m, g, 3, 40, 4, seed=1, extend_to=8)        # asked for 4, computed 8
    assert CountingFake.calls == 1 and len(first.paths) == 4 and first.steps == 4
    assert store.stored_steps(m, g, 3, 40, 2, seed=1) == 8
    for k in (1, 6, 8):                                                        # the slider within what exists
        r = ReplayStore(tmp_path).get_or_compute(m, g, 3, 40, k, seed=1)
        assert len(r.paths) == k and len(r.metrics) == k and r.steps == k
        assert r.paths == compute_replay(m, g, 3, 40, k, 1).paths              # what a run of K steps gives
    assert CountingFake.calls == 1 + 3                                         # (the three direct runs above)
    assert not store.stored(m, g, 3, 40, 12, seed=1)
    longer = store.get_or_compute(m, g, 3, 40, 12, seed=1)                     # past it: extended, replaced
    assert len(longer.paths) == 12 and store.stored_steps(m, g, 3, 40, 1, seed=1) == 12
    store.get_or_compute(m, g, 3, 40, 4, seed=1, extend_to=16)                # stored K, extended when asked
    assert store.stored_steps(m, g, 3, 40, 1, seed=1) == 16
    assert longer.paths[:8] == first.paths + longer.paths[4:8]
    assert len(list(tmp_path.rglob("*.json"))) == 1


def test_other_families_keep_one_record_per_k_and_never_extend(small_graph, tmp_path):
    g = small_graph
    m = CountingFake("m", _card(g))                                            # steps_are_prefix: False
    CountingFake.calls = 0
    store = ReplayStore(tmp_path)
    assert len(store.get_or_compute(m, g, 3, 40, 4, extend_to=8).paths) == 4
    assert store.stored(m, g, 3, 40, 4) and not store.stored(m, g, 3, 40, 2)
    store.get_or_compute(m, g, 3, 40, 2)
    assert CountingFake.calls == 2 and len(list(tmp_path.rglob("*.json"))) == 2


def test_a_failure_past_the_steps_asked_for_is_not_reported_for_them(small_graph, tmp_path):
    g = small_graph

    class FailsLate(PrefixFake):
        def refine(self, g, src, dst, steps=1, *, seed=0):
            for k, p in enumerate(super().refine(g, src, dst, steps, seed=seed)):
                if k == 5:
                    raise RuntimeError("step 6 broke")
                yield p

    m = FailsLate("late", _card(g))
    store = ReplayStore(tmp_path)
    full = store.get_or_compute(m, g, 3, 40, 8)
    assert "RuntimeError" in full.error and len(full.paths) == 5
    assert store.get_or_compute(m, g, 3, 40, 4).error is None
    assert "RuntimeError" in store.get_or_compute(m, g, 3, 40, 7).error


def test_each_shipped_family_that_claims_prefix_steps_gives_them(default_graph):
    """`steps_are_prefix` is the family's claim; on the shipped checkpoints (one of each family that makes it), the
    first K steps of an M-step run are the K-step run: the same paths and operations."""
    from citypath.evaluate import sample_heldout_pairs
    from citypath.models import REPO_CHECKPOINTS, catalogue, load_model

    g = default_graph
    one_each = {}
    for e in sorted(catalogue(REPO_CHECKPOINTS)[0], key=lambda e: e.parameters):
        one_each.setdefault(e.family, e.name)
    srcs, dsts = sample_heldout_pairs(g, 1, 5)
    checked = []
    for name in one_each.values():
        m = load_model(name, directory=REPO_CHECKPOINTS, graph=g)
        if not m.steps_are_prefix:
            continue
        for seed in (0, 3):
            short = list(m.refine_with_compute(g, int(srcs[0]), int(dsts[0]), steps=3, seed=seed))
            long = list(m.refine_with_compute(g, int(srcs[0]), int(dsts[0]), steps=6, seed=seed))[:3]
            assert [list(map(int, p)) for p, _ in short] == [list(map(int, p)) for p, _ in long], name
            assert np.allclose([f for _, f in short], [f for _, f in long], equal_nan=True), name
        checked.append(name)
    assert len(checked) >= 5


def test_a_visitors_run_never_waits_for_an_extension_nor_replaces_a_longer_run(small_graph, tmp_path):
    from filelock import FileLock

    g = small_graph
    m = PrefixFake("p", _card(g))
    store = ReplayStore(tmp_path)
    store.get_or_compute(m, g, 3, 40, 4)
    key = store.key(m, g, 3, 40, 4, 0)
    extending = FileLock(str(tmp_path / key[:2] / f"{key}.extend.lock"), timeout=1)
    with extending:                                   # another worker is extending this pair to 64 steps
        r = store.get_or_compute(m, g, 3, 40, 6)       # a visitor asks for 6: computed now, not waited for
        assert len(r.paths) == 6
    store.get_or_compute(m, g, 3, 40, 4, extend_to=12)
    assert store.stored_steps(m, g, 3, 40, 1) == 12
    (tmp_path / key[:2] / f"{key}.json").write_text('{"steps": 12, "paths": "torn')   # unreadable: recomputed
    assert len(store.get_or_compute(m, g, 3, 40, 3).paths) == 3
    assert store.stored_steps(m, g, 3, 40, 1) == 3    # replaced: a torn record is never kept


def test_what_a_model_thinks_is_stored_once_and_read_back_as_computed(small_graph, tmp_path):
    from citypath.replay import compute_thoughts
    from tests.fake_models import bellman_exact_checkpoint

    g = small_graph
    from citypath.models import load_model

    ckpt = tmp_path / "ckpt"
    bellman_exact_checkpoint(ckpt, g, name="demo-bellman", rounds_per_step=1, max_steps=8)
    m = load_model("demo-bellman", graph=g, directory=ckpt)
    store = ReplayStore(tmp_path / "replays")
    assert store.stored_thoughts(m, g, 3, 40, 5) is None
    first = store.get_or_compute_thoughts(m, g, 3, 40, 5)
    direct = compute_thoughts(m, g, 3, 40, 5)
    read = store.stored_thoughts(m, g, 3, 40, 5)
    assert read is not None and len(read.views) == len(direct.views) == 5 and read.error is None
    for a, b in zip(read.views, direct.views):
        assert [(v.name, v.unit) for v in a] == [(v.name, v.unit) for v in b]
        for va, vb in zip(a, b):
            assert np.array_equal(np.isnan(va.values), np.isnan(vb.values))     # "no estimate yet" kept
            assert np.allclose(va.values, vb.values, rtol=1e-6, equal_nan=True)
    assert read.scale == pytest.approx(first.scale, rel=1e-6)
    assert store.stored_thoughts(m, g, 3, 40, 6) is None       # another K is another record
    # a family with no state: its reason is stored and read back
    fake = RefiningFake("plain", {"num_parameters": 1, "max_steps": 8, "graph": {"fingerprint": g.fingerprint}})
    store.get_or_compute_thoughts(fake, g, 3, 40, 2)
    assert "has no per-city state" in store.stored_thoughts(fake, g, 3, 40, 2).error


class BatchingFake(CountingFake):
    """The refining fake claiming to batch queries (its `refine_many` is the default loop): what the store and the
    replays do with a batch, apart from any family's decoding."""

    batches_queries = True
    batches: list[int] = []

    def refine_many(self, g, queries, steps=1, *, seed=0):
        BatchingFake.batches.append(len(queries))
        return super().refine_many(g, queries, steps, seed=seed)


def test_a_batch_of_pairs_is_computed_once_stored_each_and_timed_by_its_work(small_graph, tmp_path):
    import threading
    import time

    from filelock import FileLock

    JOIN = 60

    g = small_graph
    m = BatchingFake("m", _card(g))
    pairs = [(3, 40), (5, 41), (7, 42), (9, 43)]
    many = compute_replays(m, g, pairs, 5, seed=2)
    for r, (s, t) in zip(many, pairs):
        alone = compute_replay(m, g, s, t, 5, 2)
        assert (r.source, r.target, r.paths, r.step_flops) == (s, t, alone.paths, alone.step_flops)
        assert r.metrics.drop(columns=["ms", "ms_total"]).equals(alone.metrics.drop(columns=["ms", "ms_total"]))
    # the batch's time is split by counted work: equal operations per step here, so equal shares
    assert all(ms > 0 for r in many for ms in r.step_ms)
    assert np.allclose([ms for r in many for ms in r.step_ms], many[0].step_ms[0])

    store = ReplayStore(tmp_path)
    store.get_or_compute(m, g, *pairs[0], 5, seed=2)             # stored already: read, not computed again
    key = store.key(m, g, *pairs[3], 5, 2)
    (tmp_path / key[:2]).mkdir(parents=True, exist_ok=True)
    held, go = threading.Event(), threading.Event()

    def another_process() -> None:                                  # computing the last pair for a while
        with FileLock(str(tmp_path / key[:2] / f"{key}.lock"), timeout=5):
            held.set()
            go.wait(JOIN)
            time.sleep(1.0)

    busy = threading.Thread(target=another_process)
    busy.start()
    assert held.wait(JOIN)
    CountingFake.calls, BatchingFake.batches = 0, []
    go.set()
    got = store.get_or_compute_many(m, g, pairs, 5, seed=2)
    busy.join(JOIN)
    assert [(r.source, r.target) for r in got] == pairs
    assert [r.paths for r in got] == [compute_replay(m, g, s, t, 5, 2).paths for s, t in pairs]
    # one batch of the two pairs not stored, then the pair another process held, waited for and computed alone
    assert BatchingFake.batches == [2] and CountingFake.calls == 2 + 1 + 4
    assert all(store.stored(m, g, s, t, 5, 2) for s, t in pairs)

