"""One loaded model serves many threads: every shipped checkpoint, 16 threads at once, same answers.

The per-family tests (test_gru.py, test_refiner.py, test_gnn.py) check thread safety on small
models trained in the test; this one checks the checkpoints that actually ship, on the graph they
were trained on, through the protocol only: 16 threads calling `refine` on one shared model give
exactly the single-threaded paths (same pairs, steps and seeds).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from citypath.evaluate import sample_heldout_pairs
from citypath.models import list_models, load_model

THREADS = 16
SHIPPED = list_models()


@pytest.fixture(scope="module")
def queries(default_graph):
    """A few held-out pairs (one repeated in reverse) with steps 2-4 and two seeds: cheap but varied."""
    srcs, dsts = sample_heldout_pairs(default_graph, 3, seed=11)
    pairs = [(int(s), int(t)) for s, t in zip(srcs, dsts)]
    pairs.append(pairs[0][::-1])
    return [(s, t, 2 + i % 3, i % 2) for i, (s, t) in enumerate(pairs)]


@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED, reason="no shipped checkpoints")
@pytest.mark.parametrize("name", SHIPPED)
def test_sixteen_threads_on_one_shipped_model_give_the_single_threaded_paths(name, default_graph, queries):
    g = default_graph
    model = load_model(name, graph=g)

    def run(q):
        s, t, steps, seed = q
        return [list(map(int, p)) for p in model.refine(g, s, t, steps=steps, seed=seed)]

    expected = [run(q) for q in queries]
    assert all(len(paths) == q[2] for paths, q in zip(expected, queries))
    # Every thread waits at the barrier, so all 16 really are inside refine at the same time.
    barrier = threading.Barrier(THREADS)
    work = [queries[i % len(queries)] for i in range(THREADS)]

    def run_together(q):
        barrier.wait(timeout=60)
        return run(q)

    with ThreadPoolExecutor(THREADS) as pool:
        got = list(pool.map(run_together, work))
    assert got == [expected[i % len(queries)] for i in range(THREADS)]
    # Nothing the threads did changed the model: a last serial run still agrees.
    assert run(queries[0]) == expected[0]
