"""A new pair's optimal path searched in a process of its own, while the page's turn goes to the next visitor.

A first paint needs the pair's optimal path: a Dijkstra over the whole graph (~40-70 ms on the default graph),
which scipy runs holding the GIL, so in the page's process it stalled every other visitor's run too; under a
crowd of new pairs it was 30% of the page runs' time with the GIL held (docs/benchmarks.md, item 8, session 21).
Here the search runs in one process at the page's own priority (started by the launcher with the model workers,
`CITYPATH_COMPUTE_WORKERS` > 0), and the page waits for it aside from the turn queue (`citypath.app.turns.aside`):
the next visitor's page runs meanwhile, and the answer is kept in the page's graph (`CityGraph.remember_distances`),
where every later reader of that source finds it (the routes' scores, the exports).

    optimal = searches.shortest_path(g, src, dst)      # the same path as g.shortest_path(src, dst)

A search the process cannot answer (it died, timed out, holds another graph or could not load it) is run in the
page's process instead, as with no worker processes; after a process died or timed out, every search is (only the
launcher starts one: see `pool`). `streamlit run app.py` without the launcher has none.
"""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import BrokenExecutor, ProcessPoolExecutor

from citypath import settings
from citypath.app import compute

WAIT_S = 60.0       # a search far slower than this is stuck: the page searches itself

_POOL: ProcessPoolExecutor | None = None
_LOCK = threading.Lock()


def _init() -> None:
    compute.exit_with_parent()      # at the page's priority: a first paint waits for it (no `nice`)


def distances(env: tuple[tuple[str, str], ...], src: int):
    """In the search process: (the graph's fingerprint, Dijkstra's distances and predecessors from `src`)."""
    g = compute.held_graph(env)
    return (g.fingerprint, *g.distances_from(src))


def pool() -> ProcessPoolExecutor | None:
    """This app process's search process, or None: none started (`warm`), or CITYPATH_COMPUTE_WORKERS=0.

    Only the launcher starts one, before the server's first script run: a process spawned from a page run would
    import the page's script as its main module (Streamlit installs the script as `__main__`) and run the page."""
    return _POOL if settings.compute_workers() else None


def _forget(broken: ProcessPoolExecutor) -> None:
    global _POOL
    with _LOCK:
        if _POOL is broken:
            _POOL = None
    broken.shutdown(wait=False, cancel_futures=True)


def search(g, src: int) -> bool:
    """Have `g.distances_from(src)` searched in the search process and kept in `g`, waiting for it aside from the
    turn queue (inside a page run). Returns whether it was (False: no search process, or it could not answer, and
    the caller's `g.distances_from(src)` searches in this process)."""
    from citypath.app import turns

    src = g.check_id(src)
    if g.has_distances(src) or (searches := pool()) is None:
        return g.has_distances(src)
    try:
        with turns.aside():
            fingerprint, dist, pred = searches.submit(distances, compute.job_env(), src).result(WAIT_S)
    except (BrokenExecutor, TimeoutError):  # died or stuck: search here instead, from now on
        _forget(searches)
        return False
    except OSError:                         # could not load the graph there: search here instead
        return False
    if fingerprint != g.fingerprint:        # another graph than the page's (its settings changed under it)
        return False
    g.remember_distances(src, dist, pred)
    return True


def warm(g, src: int) -> None:
    """Start the search process and load the graph there (the launcher, before any visitor comes)."""
    global _POOL
    if settings.compute_workers() == 0:
        return
    with _LOCK:
        if _POOL is None:
            _POOL = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=_init)
        searches = _POOL
    try:
        fingerprint, _, _ = searches.submit(distances, compute.job_env(), g.check_id(src)).result()
    except (BrokenExecutor, OSError) as e:
        _forget(searches)
        raise OSError(f"the search process failed: {e}") from e
    if fingerprint != g.fingerprint:
        raise OSError(f"the search process holds graph {fingerprint[:12]}, the app {g.fingerprint[:12]}")


def shortest_path(g, src: int, dst: int) -> list[int]:
    """`g.shortest_path(src, dst)`, its search in the search process where there is one (see the module's doc)."""
    search(g, src)
    return g.shortest_path(src, dst)
