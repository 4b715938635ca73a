"""Model runs off the page's thread (citypath/app/compute.py): the queue's order, its failures, and the app served
by a real worker process that meets the page at the replay store."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from pathlib import Path

import pytest

from citypath import settings
from citypath.app import compute, replays, resources
from citypath.app.compute import Compute, Job
from tests.fake_models import RefiningFake, use_fake_app, write_checkpoint

REPO = Path(__file__).resolve().parents[1]
JOIN = 60      # seconds before a test calls a wait stuck, never a measure of speed


class PrefixFake(RefiningFake):
    """The refining fake (its step k never looks at K) claiming prefix steps; the worker imports it from here."""

    family = "fake-prefix"
    steps_are_prefix = True


class BatchingFake(PrefixFake):
    """The prefix fake computing several pairs in one call (the default `refine_many` loop, counted)."""

    family = "fake-batching"
    batches_queries = True
    batches: list[int] = []

    def refine_many(self, g, queries, steps=1, *, seed=0):
        BatchingFake.batches.append(len(queries))
        return super().refine_many(g, queries, steps, seed=seed)


def _job(model: str, steps: int = 4, extend_to: int = 0, source: int = 1, batch: bool = False) -> Job:
    return Job(model, source, 2, steps, 0, "/nonexistent", extend_to, batch=batch)


class Gate:
    """A runner that records the order of the jobs it runs, the first one held until `release`."""

    def __init__(self):
        self.ran: list[str] = []
        self.release = threading.Event()
        self.first_in = threading.Event()

    def __call__(self, job: Job) -> None:
        if not self.ran:
            self.ran.append(job.model)
            self.first_in.set()
            assert self.release.wait(JOIN)
            return
        self.ran.append(job.model)
        if job.model == "broken":
            raise RuntimeError("no such checkpoint")


def test_visitors_models_run_oldest_first_and_work_for_later_last():
    gate = Gate()
    service = Compute(1, runner=gate, background=0)          # one worker for all: work for later goes last
    first = service.submit(_job("holds-the-worker"), 0.0)
    assert gate.first_in.wait(JOIN)
    later = service.submit(_job("extend", extend_to=64), 1.0, background=True)
    newcomer = service.submit(_job("newcomer-model"), 3.0)
    old_a = service.submit(_job("old-visitor-a"), 2.0)
    old_b = service.submit(_job("old-visitor-b"), 2.0)
    again = service.submit(_job("old-visitor-a"), 5.0)          # the same job asked again: one run
    assert again is old_a and service.queued == 4
    gate.release.set()
    for h in (first, later, newcomer, old_a, old_b):
        assert h.done.wait(JOIN) and h.error is None
    assert gate.ran == ["holds-the-worker", "old-visitor-a", "old-visitor-b", "newcomer-model", "extend"]
    assert (service.computed, service.failed, service.queued) == (5, 0, 0)


def test_work_for_later_has_a_worker_of_its_own_and_never_holds_a_visitor():
    gate = Gate()
    service = Compute(1, runner=gate)                          # and one worker for later
    held = service.submit(_job("holds-the-worker"), 0.0)
    assert gate.first_in.wait(JOIN)
    later = service.submit(_job("extend", extend_to=64), 1.0, background=True)
    assert later.done.wait(JOIN) and not held.done.is_set()   # ran beside the visitor's, not behind it
    gate.release.set()
    assert held.done.wait(JOIN) and gate.ran == ["holds-the-worker", "extend"]


def test_background_work_a_visitor_now_waits_for_moves_to_their_place():
    gate = Gate()
    service = Compute(1, runner=gate, background=0)
    service.submit(_job("holds-the-worker"), 0.0)
    assert gate.first_in.wait(JOIN)
    bg = service.submit(_job("wanted"), 1.0, background=True)
    service.submit(_job("other"), 2.0)
    assert service.submit(_job("wanted"), 1.5) is bg and not bg.background
    gate.release.set()
    assert bg.done.wait(JOIN)
    service.wait_any([service.submit(_job("last"), 9.0)], JOIN)
    assert gate.ran == ["holds-the-worker", "wanted", "other", "last"]


def test_visitors_runs_of_a_batching_model_are_taken_together_oldest_first_up_to_the_batch_size(monkeypatch):
    monkeypatch.setattr(compute, "BATCH", 3)
    batches = []

    class Runner(Gate):
        def __call__(self, job: Job) -> None:
            super().__call__(job)
            self.ran[-1] = f"{job.model}@{job.source}"

    gate = Runner()
    service = Compute(1, runner=gate, background=0)
    real = service._batch

    def recorded(job: Job, later: bool):
        got = real(job, later)
        batches.append([job.source] + [other.source for other, _ in got])
        return got

    monkeypatch.setattr(service, "_batch", recorded)
    service.submit(_job("holds-the-worker"), 0.0)
    assert gate.first_in.wait(JOIN)
    handles = [service.submit(_job("rnn", source=10, batch=True), 1.0),
               service.submit(_job("bellman", source=10), 1.0),
               service.submit(_job("rnn", source=11, batch=True), 2.0),
               service.submit(_job("rnn", source=12, batch=True, steps=8), 2.5),   # another run: not with them
               service.submit(_job("rnn", source=13, batch=True), 3.0),
               service.submit(_job("rnn", source=14, batch=True), 4.0),
               service.submit(_job("rnn", source=15, batch=True, extend_to=64), 5.0, background=True)]
    gate.release.set()
    for h in handles:
        assert h.done.wait(JOIN) and h.error is None
    # the oldest visitor's rnn run takes the next two visitors' (the batch holds 3), ahead of their other jobs
    assert gate.ran[1:] == ["rnn@10", "rnn@11", "rnn@13", "bellman@10", "rnn@12", "rnn@14", "rnn@15"]
    assert batches[1:] == [[10, 11, 13], [10], [12], [14], [15]] and service.computed == 8


def _batching_jobs(g, tmp_path: Path, monkeypatch) -> tuple[list[tuple[int, int]], list[Job]]:
    """Three pairs and their jobs for a checkpoint of the batching fake, whose family the worker can import."""
    from citypath.models import FAMILIES
    from citypath.registry import Family

    ckpt = tmp_path / "checkpoints"
    write_checkpoint(ckpt, "demo-batching", "fake-batching", g, max_steps=8)
    use_fake_app(monkeypatch, ckpt)
    monkeypatch.setitem(FAMILIES, "fake-batching", Family("tests.test_compute:BatchingFake"))
    pairs = [(3, 40), (5, 41), (7, 42)]
    return pairs, [Job("demo-batching", s, t, 4, 0, str(tmp_path / "store"), env=compute.job_env(),
                       families=compute.job_families(), batch=True) for s, t in pairs]


def test_a_batch_of_jobs_is_computed_in_one_call_into_the_store(small_graph, tmp_path, monkeypatch):
    from citypath.models import load_model
    from citypath.replay import ReplayStore

    pairs, jobs = _batching_jobs(small_graph, tmp_path, monkeypatch)
    assert all(jobs[0].batches_with(j) for j in jobs)
    assert not jobs[0].batches_with(dataclasses.replace(jobs[1], steps=8))
    worker_model = compute._held(jobs[0])[1]        # the worker's instance (its class as the registry imported it)
    type(worker_model).batches = []
    compute.run_jobs(jobs)
    model, store = load_model("demo-batching", graph=small_graph), ReplayStore(tmp_path / "store")
    assert type(worker_model).batches == [3] and all(store.stored(model, small_graph, s, t, 4) for s, t in pairs)


def test_a_worker_stores_the_routes_unscored_and_the_reader_scores_them(small_graph, tmp_path, monkeypatch):
    """A worker only stores routes (the store keeps paths, time and operations; its readers score them), so it runs no
    search for the optimal path, alone or in a batch; the page reads the same metrics as a scored run gives."""
    from citypath import replay
    from citypath.models import load_model
    from citypath.replay import ReplayStore, compute_replay

    pairs, jobs = _batching_jobs(small_graph, tmp_path, monkeypatch)
    scored = []
    real = replay.score_paths
    monkeypatch.setattr(replay, "score_paths", lambda *a, **k: scored.append(a[2:4]) or real(*a, **k))
    compute.run_job(jobs[0])
    compute.run_jobs(jobs[1:])
    assert scored == []                        # nothing scored (no search for the optimal path, no Fréchet)
    model, store = load_model("demo-batching", graph=small_graph), ReplayStore(tmp_path / "store")
    for s, t in pairs:                         # the page's read scores them, as a run scored at once is
        read, fresh = store.get_or_compute(model, small_graph, s, t, 4), compute_replay(model, small_graph, s, t, 4)
        assert read.paths == fresh.paths and read.metrics.drop(columns=["ms", "ms_total"]).equals(
            fresh.metrics.drop(columns=["ms", "ms_total"]))
        unscored = store.get_or_compute(model, small_graph, s, t, 4, scored=False)
        assert unscored.paths == fresh.paths and unscored.metrics is None


def test_a_jobs_follow_up_is_queued_for_later_once_it_is_stored_and_never_after_a_failure():
    gate = Gate()
    service = Compute(1, runner=gate, background=0)
    first = service.submit(_job("holds-the-worker"), 0.0)
    assert gate.first_in.wait(JOIN)
    route = service.submit(_job("route"), 1.0)
    again = service.submit(_job("route"), 2.0, then=_job("route", extend_to=64))   # the follow-up, asked later
    broken = service.submit(_job("broken"), 3.0, then=_job("broken", extend_to=64))
    newcomer = service.submit(_job("newcomer-model"), 4.0)
    assert again is route and service.queued == 3              # nothing queued for later before the route is stored
    gate.release.set()
    for h in (first, route, broken, newcomer):
        assert h.done.wait(JOIN)
    deadline = time.monotonic() + JOIN
    while service.busy or service.computed + service.failed < 5:
        assert time.monotonic() < deadline, gate.ran
        time.sleep(0.01)
    # the extension waits behind every visitor's job; the failed job's is never queued
    assert gate.ran == ["holds-the-worker", "route", "broken", "newcomer-model", "route"]
    assert (service.computed, service.failed) == (4, 1)


def test_a_first_paint_queues_its_routes_and_waits_for_none(small_graph, tmp_path, monkeypatch):
    """`replay_next(compute=False)` (the first paint): the pending models are queued in the visitor's place, a
    prefix family with its extension to the slider's maximum, and the request returns before any is run."""
    from citypath.replay import Question, ReplayStore

    g = small_graph
    card = {"num_parameters": 1, "max_steps": 8, "graph": {"fingerprint": g.fingerprint}}
    mset = resources.ModelSet(models={"a": PrefixFake("a", card), "b": RefiningFake("b", card)})
    monkeypatch.setattr(replays, "_replay_store", lambda: ReplayStore(tmp_path / "replays"))
    gate = Gate()
    service = Compute(1, runner=gate, background=0)
    monkeypatch.setattr(replays, "compute_service", lambda: service)
    replays._replay.clear()
    held = service.submit(_job("holds-the-worker"), 0.0)
    assert gate.first_in.wait(JOIN)
    q = Question(3, 40, ("a", "b"), 4, 0)
    replays.replay_next(mset, g, q, compute=False, ticket=1.0, steps_max=8)
    with service._cv:
        queued = {job.model: (h.ticket, h.then) for job, h in service._handles.items() if not h.started}
    assert set(queued) == {"a", "b"} and {t for t, _ in queued.values()} == {1.0}
    assert queued["a"][1].extend_to == 8 and queued["b"][1] is None     # only the prefix family is extended
    assert replays.replays_so_far(mset, g, q)[1] == ["a", "b"] and not held.done.is_set()
    gate.release.set()


def test_the_launcher_starts_the_worker_for_later_too_before_any_visitor(small_graph, tmp_path):
    """`python -m citypath.app.launch` gives every worker its first job before the port answers: the visitors' run the
    default question's models and the one for later their run to the slider's maximum, so none starts under a crowd
    (a start spent its imports at full priority)."""
    from citypath.app import launch
    from citypath.replay import Question, ReplayStore

    card = {"num_parameters": 1, "max_steps": 8, "graph": {"fingerprint": small_graph.fingerprint}}
    mset = resources.ModelSet(models={"a": PrefixFake("a", card), "b": RefiningFake("b", card)})
    ran = []
    service = Compute(1, runner=lambda job: ran.append((threading.current_thread().name.split("-")[2], job.model,
                                                         job.extend_to)))
    launch._warm_worker(service, ReplayStore(tmp_path), mset, Question(3, 40, ("a", "b", "gone"), 4, 0), 8)
    assert sorted(ran) == [("later", "a", 8), ("later", "b", 8), ("visitors", "a", 0), ("visitors", "b", 0)]


def test_a_job_that_fails_says_why_and_the_next_one_runs():
    gate = Gate()
    gate.ran.append("(no gate)")
    service = Compute(1, runner=gate)
    bad = service.submit(_job("broken"), 0.0)
    good = service.submit(_job("fine"), 1.0)
    assert service.wait_any([bad], JOIN) and "RuntimeError: no such checkpoint" in bad.error
    assert good.done.wait(JOIN) and good.error is None
    assert (service.computed, service.failed) == (1, 1)


def test_wait_any_gives_up_after_its_timeout():
    gate = Gate()
    service = Compute(1, runner=gate)
    held = service.submit(_job("holds-the-worker"), 0.0)
    assert gate.first_in.wait(JOIN)
    assert service.wait_any([held], 0.05) is False
    gate.release.set()
    assert service.wait_any([held], JOIN) is True


@pytest.mark.parametrize("value,workers", [("0", 0), ("1", 1), ("3", 3)])
def test_compute_workers_from_the_environment(value, workers):
    assert settings.compute_workers({"CITYPATH_COMPUTE_WORKERS": value}) == workers


@pytest.mark.parametrize("cores,workers", [(1, 1), (2, 2), (16, 2), (None, 1)])
def test_compute_workers_default_to_two_where_there_are_two_cores(cores, workers, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    assert settings.compute_workers({"CITYPATH_COMPUTE_WORKERS": ""}) == workers


@pytest.mark.parametrize("value", ["-1", "two", "1.5"])
def test_a_bad_compute_workers_says_what_it_needs(value):
    with pytest.raises(ValueError, match="CITYPATH_COMPUTE_WORKERS must be a whole number of at least 0"):
        settings.compute_workers({"CITYPATH_COMPUTE_WORKERS": value})


def test_a_worker_process_computes_the_routes_the_page_reads_and_extends_a_prefix_family(
        small_graph, tmp_path, monkeypatch):
    """The app with one real worker process: the page runs no model (the fake families count their runs in this
    process: none), the routes arrive through the replay store, and the prefix family's run is extended to the
    slider's maximum behind them, so the slider moves within it without a request."""
    from streamlit.testing.v1 import AppTest

    from tests import test_app

    ckpt = tmp_path / "checkpoints"
    write_checkpoint(ckpt, "demo-refining", "fake-prefix", small_graph, max_steps=8)
    write_checkpoint(ckpt, "demo-other", "fake-refining", small_graph, max_steps=8)
    use_fake_app(monkeypatch, ckpt)
    from citypath.models import FAMILIES
    from citypath.registry import Family

    monkeypatch.setitem(FAMILIES, "fake-prefix", Family("tests.test_compute:PrefixFake"))
    monkeypatch.setenv("CITYPATH_COMPUTE_WORKERS", "1")
    monkeypatch.setenv("CITYPATH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(compute, "_SERVICE", None)
    replays._replay.clear()
    resources._models.clear()
    runs_here = []
    monkeypatch.setattr(RefiningFake, "refine", lambda *a, **k: runs_here.append(1) or iter(()))

    def open_link(steps: int) -> AppTest:
        at = AppTest.from_file(str(REPO / "app.py"), default_timeout=JOIN)
        at.query_params.update({"models": "demo-refining,demo-other", "steps": str(steps), "seed": "1"})
        return test_app._run_and_settle(at, None, JOIN)

    at = open_link(4)
    test_app.no_exceptions(at)
    args = test_app.player_args(at)
    assert not args["pending"] and [len(m["cards"]) for m in args["models"]] == [4, 4]
    assert runs_here == []                                     # nothing ran in the page's process
    stored = tmp_path / "cache" / "replays"
    service = compute.service()
    deadline = time.monotonic() + JOIN
    while service.busy or service.computed < 3:                # two routes, then the prefix one's extension
        assert time.monotonic() < deadline, (service.computed, service.failed)
        time.sleep(0.1)
    assert service.failed == 0
    assert len(list(stored.rglob("*.json"))) == 2               # one record per pair for the prefix family
    before = service.computed
    replays._replay.clear()
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=JOIN)
    at.query_params.update({"models": "demo-refining", "steps": "8", "seed": "1"})
    at = test_app._RUN(at, None, JOIN)                          # one run, no request for the next model
    test_app.no_exceptions(at)
    args = test_app.player_args(at)
    assert not args["pending"] and len(args["models"][0]["cards"]) == 8
    assert service.computed == before and runs_here == []


def test_a_route_the_worker_could_not_store_is_computed_by_the_page(small_graph, tmp_path, monkeypatch):
    """A worker that ran but stored nothing (a full or read-only disk), or failed: the request computes the model
    itself, so the visitor still gets the route, and the next request the next one."""
    from citypath.replay import Question, ReplayStore

    g = small_graph
    card = {"num_parameters": 1, "max_steps": 8, "graph": {"fingerprint": g.fingerprint}}
    mset = resources.ModelSet(models={"a": RefiningFake("a", card), "b": RefiningFake("b", card)})
    monkeypatch.setattr(replays, "_replay_store", lambda: ReplayStore(tmp_path / "replays"))
    ran = []
    service = Compute(1, runner=lambda job: ran.append(job.model), background=0)   # stores nothing
    monkeypatch.setattr(replays, "compute_service", lambda: service)
    replays._replay.clear()
    q = Question(3, 40, ("a", "b"), 4, 0)
    replays.replay_next(mset, g, q, ticket=1.0)
    done, pending = replays.replays_so_far(mset, g, q)
    assert list(done) == ["a"] and pending == ["b"] and "a" in ran
    replays.replay_next(mset, g, q, ticket=1.0)
    assert replays.replays_so_far(mset, g, q)[1] == []


def _priority_after_background(q) -> None:
    q.put((compute.background(), os.sched_getscheduler(0), os.nice(0)))


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux's idle scheduling class")
def test_background_work_gets_the_idle_class_and_the_app_process_keeps_its_own():
    # The harness and the worker for later call this in their own process: there it must take Linux's idle
    # class (a crowd's page runs and model runs never share a core with it); the parent must stay as it was.
    import multiprocessing

    before = (os.sched_getscheduler(0), os.nice(0))
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_priority_after_background, args=(q,))
    p.start()
    got, policy, _ = q.get(timeout=JOIN)
    p.join(JOIN)
    assert got == "idle" and policy == os.SCHED_IDLE
    assert (os.sched_getscheduler(0), os.nice(0)) == before


def test_what_the_model_thinks_is_computed_by_the_worker_and_read_from_the_store(small_graph, tmp_path, monkeypatch):
    """"Show what the model thinks" with a real worker process: the model's per-step state is computed there
    (none in the page's process), stored beside the routes, and drawn per step, spreading as bellman's rounds
    do; a second process (here: this one, caches cleared) reads it from the store without running the model."""
    from streamlit.testing.v1 import AppTest

    from citypath.models.bellman import BellmanModel
    from tests import test_app
    from tests.fake_models import bellman_exact_checkpoint

    ckpt = tmp_path / "checkpoints"
    bellman_exact_checkpoint(ckpt, small_graph, name="demo-bellman", rounds_per_step=1, max_steps=8)
    use_fake_app(monkeypatch, ckpt)
    monkeypatch.setenv("CITYPATH_COMPUTE_WORKERS", "1")
    monkeypatch.setenv("CITYPATH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(compute, "_SERVICE", None)
    for cache in (replays._replay, replays._thoughts, resources._models):
        cache.clear()
    traced_here = []
    real_trace = BellmanModel.trace
    monkeypatch.setattr(BellmanModel, "trace", lambda self, *a, **k: traced_here.append(1) or real_trace(self, *a, **k))

    def think() -> AppTest:
        at = AppTest.from_file(str(REPO / "app.py"), default_timeout=JOIN)
        at.query_params.update({"models": "demo-bellman", "steps": "6", "seed": "1"})
        at = test_app._run_and_settle(at, None, JOIN)
        at = at.toggle(key="show_state").set_value(True).run()
        test_app.no_exceptions(at)
        return at

    at = think()
    counts = [len(next(la for la in test_app.layers(at, k) if la["id"] == "model-state")["data"]) for k in (1, 6)]
    assert counts[0] < counts[1]
    assert traced_here == []                                   # the page's process ran no trace
    assert len(list((tmp_path / "cache" / "replays").rglob("*.thoughts.npz"))) == 1
    computed = compute.service().computed
    replays._thoughts.clear()
    at = think()
    assert "model-state" in test_app.layer_ids(at, 6) and traced_here == []
    assert compute.service().computed == computed             # read from the store: no new job
