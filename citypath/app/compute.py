"""Model runs off the page's thread: a small pool of worker processes per app process, the replay store the
meeting point.

A page run paints the map and the optimal path (tens of ms) and never runs a model itself: it submits the
models still pending to this process's `Compute`, which runs them in worker processes (`CITYPATH_COMPUTE_WORKERS`,
default 2 on a machine with two cores or more) in the order of the visitors' arrival (the oldest visitor's models
first, each visitor's models in the order they were chosen), and a newcomer's first paint waits for none of them.
A worker stores the routes unscored: the store keeps paths, and whoever reads them scores them (the page, with the
optimal path it found for the first paint). A worker writes what it
computed to the shared `ReplayStore` (`citypath.replay`); the page reads it from there, as it reads what
another app process stored. The player's request for the next model waits for it *aside* from the turn queue
(`citypath.app.turns`), so a visitor waiting for a route holds no other visitor's page.

Work for later never holds a visitor's: `background=True` jobs (a prefix family's run extended to the steps
slider's maximum, so moving the slider later waits for nothing) go to a worker process of their own, at a
lower CPU priority than the visitors' worker and the page.

    service = compute.service()                       # this process's (None: CITYPATH_COMPUTE_WORKERS=0)
    done = service.submit(compute.Job(...), ticket)   # a handle; the same job twice is one run
    service.wait_any([done], timeout_s=300)

A worker that dies (killed, out of memory) fails the jobs it held with a message (the page then computes that
model itself, as with no workers) and is replaced for the next job. Workers are started with `spawn`: a fresh
interpreter, no copy of the server's threads.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import multiprocessing
import os
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

from citypath import settings

WORKER_NICE = 5     # workers yield the core to the page's first paints when both want it
LATER = 1e12        # with no worker for later, its jobs' place in the visitors' queue: after every visitor's
BATCH = 8           # at most this many visitors' runs of one model computed together (`Job.batch`; docs/benchmarks.md)


@dataclass(frozen=True)
class Job:
    """One model's run on one question (its routes, or with `kind="thoughts"` its per-step state over cities),
    written to the replay store at `store`. `env`: the CITYPATH_* settings
    the worker loads the graph and the checkpoints with; `families`: extra model families (family, target)."""

    model: str
    source: int
    target: int
    steps: int
    seed: int
    store: str
    extend_to: int = 0
    env: tuple[tuple[str, str], ...] = ()
    families: tuple[tuple[str, str], ...] = ()
    kind: str = "replay"      # or "thoughts": the model's per-step state over cities ("Show what the model thinks")
    batch: bool = False       # the model computes several pairs together (`RoutingModel.batches_queries`)

    def batches_with(self, other: Job) -> bool:
        """Whether `other` can run in one batch with this job: the same model, run and settings, another pair."""
        return self.batch and self.kind == other.kind == "replay" and not self.extend_to and \
            dataclasses.replace(other, source=self.source, target=self.target) == self


@dataclass
class Handle:
    """A submitted job: `done` is set when the worker stored it or failed (`error` says why)."""

    job: Job
    background: bool
    done: threading.Event = field(default_factory=threading.Event)
    started: bool = False
    error: str | None = None
    seconds: float = 0.0
    ticket: float = 0.0
    then: Job | None = None     # queued for later once this job is stored (a route's extension)


def job_env() -> tuple[tuple[str, str], ...]:
    """This process's CITYPATH_* settings, for a worker to load the same graph and checkpoints."""
    return tuple(sorted((k, v) for k, v in os.environ.items() if k in settings.VARIABLES))


def job_families() -> tuple[tuple[str, str], ...]:
    """The model families registered in this process (test families included), as (family, "module:Class")."""
    from citypath.registry import FAMILIES

    return tuple(sorted((name, fam.model) for name, fam in FAMILIES.items()))


# -- in the worker process ----------------------------------------------------------------------

_HELD: dict = {}


def exit_with_parent() -> None:
    """In a child process: end it when the app process that started it is gone (killed: no one would read its
    work, and a worker must not outlive its server)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="citypath-exit-with-parent").start()


def background() -> str:
    """Lower this process to work no visitor waits for: Linux's idle class (it runs only on a core nothing else
    wants, so a crowd's page runs and model runs never share a core with it), else the lowest niceness. Returns
    which it got ("idle", "nice 19" or "" where neither could be set)."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return "idle"
    except (AttributeError, OSError):
        pass
    try:
        os.nice(19 - os.nice(0))
        return "nice 19"
    except OSError:
        return ""


def _worker_init(later: bool = False) -> None:
    exit_with_parent()
    if later:
        background()
    else:
        try:
            os.nice(WORKER_NICE)
        except OSError:
            pass
    import torch

    torch.set_num_threads(1)    # as the app's own models: small ops, one thread each (citypath.app.resources)


def run_job(job: Job) -> float:
    """Compute `job` into its replay store (in a worker process; also callable in-process). Returns seconds."""
    from citypath.replay import ReplayStore

    t0 = time.perf_counter()
    g, model = _held(job)
    store = ReplayStore(job.store)
    if job.kind == "thoughts":
        store.get_or_compute_thoughts(model, g, job.source, job.target, job.steps)
    else:
        store.get_or_compute(model, g, job.source, job.target, job.steps, job.seed, extend_to=job.extend_to or None,
                             scored=False)       # the page scores what it reads
    return time.perf_counter() - t0


def run_jobs(jobs: list[Job]) -> float:
    """Compute a batch of jobs (`Job.batches_with`: one model, other pairs) together into their replay store
    (`ReplayStore.get_or_compute_many`). Returns seconds."""
    from citypath.replay import ReplayStore

    t0 = time.perf_counter()
    g, model = _held(jobs[0])
    first = jobs[0]
    ReplayStore(first.store).get_or_compute_many(model, g, [(j.source, j.target) for j in jobs], first.steps,
                                                 first.seed, scored=False)
    return time.perf_counter() - t0


def held_graph(env: tuple[tuple[str, str], ...]):
    """The graph of the CITYPATH_* settings `env` as this worker process holds it (loaded on first use, and again
    when the settings change; what else it held goes with the old graph)."""
    from citypath.graph import graph_kwargs_from_env, load_graph

    for k in settings.VARIABLES:
        os.environ.pop(k, None)
    os.environ.update(dict(env))
    kwargs = graph_kwargs_from_env()
    gkey = repr(sorted(kwargs.items()))
    if _HELD.get("graph_key") != gkey:
        _HELD.clear()
        _HELD["graph_key"], _HELD["graph"] = gkey, load_graph(**kwargs)
    return _HELD["graph"]


def _held(job: Job):
    """The graph and `job`'s model as this worker process holds them (loaded on first use, and again when the
    settings or the checkpoint change)."""
    from citypath.models import load_model
    from citypath.registry import register

    g = held_graph(job.env)
    for family, target in job.families:
        register(family, target)
    ckpt = settings.checkpoints_dir() or ""
    stamp = _card_stamp(job.model)
    key = ("model", str(ckpt), job.model, stamp)
    if key not in _HELD:
        for old in [k for k in _HELD if isinstance(k, tuple) and k[:3] == key[:3]]:
            del _HELD[old]                                   # a replaced checkpoint: the old one goes
        _HELD[key] = load_model(job.model, graph=g)
    return g, _HELD[key]


def _card_stamp(name: str) -> int:
    from citypath.models import checkpoints_dir

    try:
        return (checkpoints_dir() / f"{name}.json").stat().st_mtime_ns
    except OSError:
        return 0


# -- in the app process -------------------------------------------------------------------------

class Compute:
    """One app process's queues of model runs and its worker processes (see the module's doc).

    `workers` processes run what visitors wait for, oldest visitor first; `background` more (default 1), at a
    lower CPU priority still, run the work for later, so a visitor's run never waits behind one of those.
    `runner(job)` runs one job (default: `run_job` in a spawned process); tests pass their own.
    """

    def __init__(self, workers: int = 1, runner=None, background: int = 1):
        if workers < 1:
            raise ValueError(f"a compute service needs at least one worker, got {workers}")
        self.workers, self.background = workers, background
        self._runner = runner
        self._cv = threading.Condition()
        self._heaps: dict[bool, list[tuple[float, int, Job]]] = {False: [], True: []}
        self._handles: dict[Job, Handle] = {}
        self._seq = itertools.count()
        self._threads: list[threading.Thread] = []
        self.computed = 0
        self.failed = 0
        self.worker_seconds = 0.0

    # -- the queue

    def submit(self, job: Job, ticket: float, *, background: bool = False, then: Job | None = None) -> Handle:
        """Queue `job` for the visitor whose place is `ticket` (lower first), or as work for later. A job queued
        or running already is that one (moved to the visitors' queue if a visitor now waits for it). `then`: a
        job queued for later, in the same place, once this one is done without error (whoever waits for it)."""
        with self._cv:
            self._start_threads()
            held = self._handles.get(job)
            if held is not None:
                held.then = held.then or then
                if held.background and not background and not held.started:
                    held.background = False
                    heapq.heappush(self._heaps[False], (float(ticket), next(self._seq), job))
                    self._cv.notify_all()
                return held
            handle = Handle(job, background, ticket=float(ticket), then=then)
            self._handles[job] = handle
            if background and not self.background:     # no worker for later: after every visitor's job
                heapq.heappush(self._heaps[False], (LATER + float(ticket), next(self._seq), job))
            else:
                heapq.heappush(self._heaps[background], (float(ticket), next(self._seq), job))
            self._cv.notify_all()
            return handle

    @property
    def queued(self) -> int:
        """Jobs not started yet (visitors' and for later)."""
        with self._cv:
            return sum(not h.started for h in self._handles.values())

    @property
    def busy(self) -> int:
        """Jobs queued or running."""
        with self._cv:
            return len(self._handles)

    def wait_any(self, handles: Iterable[Handle], timeout_s: float) -> bool:
        """Wait until one of `handles` is done (True), or `timeout_s` passed (False)."""
        handles = list(handles)
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while not any(h.done.is_set() for h in handles):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(min(left, 1.0))
        return True

    def _start_threads(self) -> None:
        if self._threads:
            return
        for i in range(self.workers + self.background):
            later = i >= self.workers
            t = threading.Thread(target=self._serve, args=(later,), daemon=True,
                                 name=f"citypath-compute-{'later' if later else 'visitors'}-{i}")
            self._threads.append(t)
            t.start()

    def _next(self, later: bool) -> tuple[Job, Handle]:
        heap = self._heaps[later]
        with self._cv:
            while True:
                while not heap:
                    self._cv.wait()
                _, _, job = heapq.heappop(heap)
                handle = self._handles.get(job)
                if handle is None or handle.started or (later and not handle.background) or \
                        (not later and handle.background and self.background):
                    continue                                  # run already, or moved to the visitors' queue
                handle.started = True
                return job, handle

    def _batch(self, job: Job, later: bool) -> list[tuple[Job, Handle]]:
        """The visitors' jobs queued that run with `job` (`Job.batches_with`), oldest first, up to BATCH in all;
        taken (marked started) so no other worker runs them."""
        if later or not job.batch:
            return []
        with self._cv:
            mates = sorted((entry for entry in self._heaps[False] if job.batches_with(entry[2])),
                           key=lambda entry: entry[:2])
            taken = []
            for _, _, other in mates:
                handle = self._handles.get(other)
                if handle is not None and not handle.started and not handle.background and len(taken) < BATCH - 1:
                    handle.started = True
                    taken.append((other, handle))
            return taken

    def _serve(self, later: bool) -> None:
        pool = None
        while True:
            first = self._next(later)
            batch = [first, *self._batch(first[0], later)]
            jobs = [job for job, _ in batch]
            t0 = time.perf_counter()
            error = None
            try:
                if self._runner is not None:
                    for job in jobs:
                        self._runner(job)
                else:
                    if pool is None:
                        pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                                   initializer=_worker_init, initargs=(later,))
                    pool.submit(*((run_jobs, jobs) if len(jobs) > 1 else (run_job, jobs[0]))).result()
            except BrokenProcessPool:
                error = "the worker process computing it stopped (killed or out of memory)"
                pool = None                                   # a new worker for the next job
            except Exception as e:                            # a model that cannot load: the page says why
                error = f"{type(e).__name__}: {e}"
            seconds = time.perf_counter() - t0
            with self._cv:
                for job, handle in batch:
                    handle.error, handle.seconds = error, seconds
                    self._handles.pop(job, None)
                    if error:
                        self.failed += 1
                    else:
                        self.computed += 1
                    handle.done.set()
                self.worker_seconds += seconds
                self._cv.notify_all()
            for _, handle in batch:
                if handle.then is not None and not error:
                    self.submit(handle.then, handle.ticket, background=True)


_SERVICE: Compute | None = None
_SERVICE_LOCK = threading.Lock()


def service() -> Compute | None:
    """This process's compute service (started on first use), or None with CITYPATH_COMPUTE_WORKERS=0: the models
    then run in the page's own thread."""
    global _SERVICE
    workers = settings.compute_workers()
    if workers == 0:
        return None
    with _SERVICE_LOCK:
        if _SERVICE is None or _SERVICE.workers != workers:
            _SERVICE = Compute(workers)
        return _SERVICE
