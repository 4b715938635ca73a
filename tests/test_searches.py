"""A new pair's optimal path searched in the app's search process (`citypath.app.searches`), and the graph's kept
searches it hands over to (`CityGraph.distances_from`, `remember_distances`)."""

from __future__ import annotations

import numpy as np
import pytest

import citypath
from citypath.app import searches
from citypath.graph import CityGraph


def fresh(g: CityGraph) -> CityGraph:
    """Another holder of `g` with no kept searches (`load_graph` hands out the one it holds in memory)."""
    return CityGraph(g.config, g.cities, g.adjacency, g.outside, g.fingerprint)


@pytest.fixture
def search_process(monkeypatch):
    """A search process of this test's own (spawned on first use) for the RI+MA graph, shut down after it."""
    monkeypatch.setenv("CITYPATH_COMPUTE_WORKERS", "1")
    monkeypatch.setenv("CITYPATH_STATES", "RI,MA")
    monkeypatch.setattr(searches, "_POOL", None)
    yield
    if searches._POOL is not None:
        searches._POOL.shutdown()
    searches._POOL = None


def test_searches_are_kept_for_the_most_recent_sources_and_handed_over_whole(small_graph, monkeypatch):
    g = fresh(small_graph)
    dist, pred = g.distances_from(3)
    assert g.has_distances(3) and g.distances_from(3)[0] is dist         # kept: the same arrays, no new search
    assert not dist.flags.writeable and not pred.flags.writeable
    assert g.shortest_path(3, 40) == small_graph.shortest_path(3, 40)
    monkeypatch.setattr(g, "DISTANCES_KEPT", 2)
    g.distances_from(5)
    g.distances_from(3)                                     # used again: now the most recent
    g.distances_from(7)                                     # over the limit: the oldest (5) goes
    assert [g.has_distances(c) for c in (3, 5, 7)] == [True, False, True]
    other = fresh(small_graph)
    other.remember_distances(9, *g.distances_from(9))       # searched by another holder of the same graph
    assert other.has_distances(9) and other.shortest_path(9, 60) == g.shortest_path(9, 60)
    with pytest.raises(ValueError, match="need"):
        other.remember_distances(9, dist[:-1], pred)
    with pytest.raises(ValueError, match="out of range"):
        g.distances_from(g.n_cities)
    g.clear_distances()
    assert not g.has_distances(3)


def test_a_pairs_optimal_path_is_searched_in_the_search_process_and_kept_in_the_pages_graph(search_process,
                                                                                            monkeypatch):
    from citypath import graph

    g, here = fresh(citypath.load_graph(states=["RI", "MA"])), fresh(citypath.load_graph(states=["RI", "MA"]))
    expected = {(s, t): here.shortest_path(s, t) for s, t in ((11, 90), (11, 95), (12, 90))}
    searched_here = []
    monkeypatch.setattr(graph, "dijkstra", lambda *a, search=graph.dijkstra, **kw: searched_here.append(
        kw["indices"]) or search(*a, **kw))                  # this process's searches (not the search process's)
    searches.warm(g, 0)
    assert searches.shortest_path(g, 11, 90) == expected[11, 90]
    assert searched_here == [] and g.has_distances(11)        # the answer came from the process, and is kept
    assert searches.shortest_path(g, 11, 95) == expected[11, 95]
    np.testing.assert_array_equal(g.distances_from(11)[0], here.distances_from(11)[0])
    # The process holds another graph than the page's: the page searches itself.
    monkeypatch.setenv("CITYPATH_STATES", "RI")
    assert not searches.search(g, 12) and not g.has_distances(12)
    assert searches.shortest_path(g, 12, 90) == expected[12, 90] and searched_here == [12]


def test_a_search_process_that_died_leaves_the_searches_to_the_page(search_process):
    import os
    import signal

    g = fresh(citypath.load_graph(states=["RI", "MA"]))
    assert searches.pool() is None and not searches.search(g, 20)     # none until the launcher starts one
    searches.warm(g, 0)
    first = searches.pool()
    for pid in list(first._processes):
        os.kill(pid, signal.SIGKILL)
    assert not searches.search(g, 21)                       # could not answer: nothing kept, no error
    assert searches.shortest_path(g, 21, 80) == fresh(g).shortest_path(21, 80)
    assert searches.pool() is None                          # never spawned from a page run (see `pool`)
    searches.warm(g, 0)                                     # the launcher's next start
    assert searches.pool() is not first and searches.search(g, 22)


def test_with_no_worker_processes_the_page_searches_itself(monkeypatch):
    monkeypatch.setenv("CITYPATH_COMPUTE_WORKERS", "0")
    monkeypatch.setattr(searches, "_POOL", None)
    g = fresh(citypath.load_graph(states=["RI"]))
    searches.warm(g, 0)                                     # nothing to start
    assert searches.pool() is None and searches._POOL is None and not searches.search(g, 1)
    assert searches.shortest_path(g, 1, 20) == g.shortest_path(1, 20)
