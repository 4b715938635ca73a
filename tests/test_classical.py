"""The classical rows (citypath/models/classical.py): exact where they claim it, the protocol, their cards, and
their operation counts against an independent count on a tiny graph."""

from __future__ import annotations

import heapq
import json
import math

import networkx as nx
import numpy as np
import pytest

import citypath
from citypath import cost
from citypath.evaluate import sample_heldout_pairs
from citypath.geo import haversine_km
from citypath.models import list_models, load_model
from citypath.models.classical import ROWS, BestFirst, ClassicalModel, classical_card
from tests.protocol import check_refine_protocol

EXACT = ("dijkstra", "astar", "alt", "anytime-astar", "bellman-ford", "bellman-ford-dense")


def _oracle_km(g, src, dst) -> float:
    """networkx's Dijkstra over the graph's edges: the independent optimum."""
    adj = g.adjacency.tocoo()
    G = nx.Graph()
    G.add_weighted_edges_from(zip(adj.row.tolist(), adj.col.tolist(), adj.data.tolist()))
    return nx.shortest_path_length(G, src, dst, weight="weight")


@pytest.mark.parametrize("algorithm", EXACT)
def test_exact_at_its_last_step(small_graph, algorithm):
    """Every classical row ends on an optimal route (networkx as oracle)."""
    g = small_graph
    config = ROWS["alt-4" if algorithm == "alt" else algorithm][0]
    m = ClassicalModel.make(g, algorithm, max_steps=config.max_steps, expansions_per_step=1000)
    srcs, dsts = sample_heldout_pairs(g, 6, seed=3)
    for s, t in zip(srcs.tolist(), dsts.tolist()):
        path = list(m.refine(g, s, t, steps=config.max_steps))[-1]
        ev = citypath.evaluate_path(g, path, s, t)
        assert ev["valid"]
        assert g.path_length_km(path) == pytest.approx(_oracle_km(g, s, t), rel=1e-9)


@pytest.mark.parametrize("algorithm", EXACT)
def test_refine_protocol(small_graph, algorithm):
    m = ClassicalModel.make(small_graph, algorithm, max_steps=4)
    check_refine_protocol(m, small_graph, [(0, 40), (5, 90)], steps=4)


def test_anytime_improves_and_costs_more_with_steps(small_graph):
    """Anytime A*: a route appears, gets no worse, and the first steps spend operations while later ones (once
    the open list is exhausted) spend none."""
    g = small_graph
    m = ClassicalModel.make(g, "anytime-astar", max_steps=40, expansions_per_step=4)
    s, t = 0, g.n_cities - 1
    got = list(m.refine_with_compute(g, s, t, steps=40))
    km = [g.path_length_km(p) if p[-1] == t else math.inf for p, _ in got]
    assert all(b <= a for a, b in zip(km, km[1:]))
    assert km[-1] == pytest.approx(_oracle_km(g, s, t), rel=1e-9)
    assert got[0][1] > 0 and got[-1][1] == 0.0


def test_cards_are_listed_loaded_and_match_the_code():
    """The committed cards are the ones `python -m citypath.models.classical` writes; they load with no weights."""
    names = list_models()
    for name, (config, about) in ROWS.items():
        assert name in names
        card = json.loads(open(f"checkpoints/{name}.json").read())
        assert card == json.loads(json.dumps(classical_card(None, name, config, about=about)))
        assert card["num_parameters"] == 0 and card["learned"] is False and "No learned parameters" in card["about"]
        m = load_model(name)
        assert isinstance(m, ClassicalModel) and not m.learned


def test_fits_any_graph(ri_graph, small_graph):
    m = load_model("astar")
    m.check_graph(ri_graph)
    m.check_graph(small_graph)
    assert len(list(m.refine(ri_graph, 0, 3, steps=2))) == 2


# -- operations against an independent count ----------------------------------------------------------

def _independent_astar_ops(g, src, dst) -> float:
    """A separate textbook A* (dict-free, same tie order) that logs every event, priced by citypath.cost."""
    n = g.n_cities
    ip, ix, wt = g.adjacency.indptr, g.adjacency.indices, g.adjacency.data
    h = haversine_km(g.lat, g.lon, g.lat[dst], g.lon[dst])
    best = [math.inf] * n
    parent = [-1] * n
    best[src] = 0.0
    heap = [(float(h[src]), 0.0, src)]
    ops = cost.haversine(n) + cost.fill(2 * n) + cost.heap(1, 1)
    incumbent = math.inf                 # set when the target is popped
    while heap:
        if heap[0][0] >= incumbent:
            break
        _, gu, u = heapq.heappop(heap)
        ops += cost.heap(1, len(heap) + 1)
        if gu > best[u] or gu + h[u] >= incumbent:
            ops += 2.0
            continue
        if u == dst:
            incumbent = gu
            hops = 0
            while u != src:
                u, hops = parent[u], hops + 1
            ops += cost.walk(hops + 1)
            break
        deg = int(ip[u + 1] - ip[u])
        ops += cost.relax(deg) + cost.fill(deg)
        pushed = 0
        for j in range(ip[u], ip[u + 1]):
            v, nv = int(ix[j]), gu + float(wt[j])
            if nv < best[v] and nv + h[v] < incumbent:
                best[v], parent[v] = nv, u
                pushed += 1
        # pushes in the order of the edge list, as the model does
        for j in range(ip[u], ip[u + 1]):
            v = int(ix[j])
            if parent[v] == u and best[v] == gu + float(wt[j]):
                heapq.heappush(heap, (best[v] + float(h[v]), best[v], v))
        ops += cost.heap(pushed, len(heap))
    return ops


def test_astar_ops_match_an_independent_count(tiny_graph):
    g = tiny_graph
    m = ClassicalModel.make(g, "astar")
    srcs, dsts = sample_heldout_pairs(g, 4, seed=5)
    for s, t in zip(srcs.tolist(), dsts.tolist()):
        [(path, ops)] = list(m.refine_with_compute(g, s, t, steps=1))
        want = _independent_astar_ops(g, s, t) + cost.verify(len(path) - 1)
        assert ops == pytest.approx(want, rel=1e-12)


def test_astar_expands_fewer_than_dijkstra_settles(small_graph):
    """The heuristic does its job: A*'s counted operations are below scipy Dijkstra's full sweep on a long pair."""
    g = small_graph
    s, t = 0, g.n_cities - 1
    a = list(load_model("astar").refine_with_compute(g, s, t, steps=1))[0][1]
    d = list(load_model("dijkstra").refine_with_compute(g, s, t, steps=1))[0][1]
    assert a < d


def test_dijkstra_and_dense_bellman_ford_ops_by_formula(ri_graph):
    """scipy's Dijkstra settles every city and scans every edge; dense Bellman-Ford relaxes every edge each round
    until a round changes nothing: both priced from counts made here, independently of the model's code."""
    g = ri_graph
    n, m = g.n_cities, g.adjacency.nnz
    s, t = 0, n - 1
    [(path, ops)] = list(load_model("dijkstra").refine_with_compute(g, s, t, steps=1))
    assert ops == cost.fill(2 * n) + cost.relax(m) + cost.heap(n, n) + cost.walk(len(path)) + cost.verify(len(path) - 1)

    # Independent rounds count: synchronous Bellman-Ford in plain Python.
    adj = g.adjacency.tocoo()
    dist = [math.inf] * n
    dist[t] = 0.0
    rounds = 0
    while True:
        rounds += 1
        new = list(dist)
        for u, v, w in zip(adj.row.tolist(), adj.col.tolist(), adj.data.tolist()):
            new[u] = min(new[u], dist[v] + w)
        if new == dist:
            break
        dist = new
    model = ClassicalModel.make(g, "bellman-ford-dense", max_steps=rounds + 8, rounds_per_step=1)
    steps = list(model.refine_with_compute(g, s, t, steps=rounds + 8))
    rounds_ops = sum(f for _, f in steps) - cost.haversine(n) - cost.fill(n)
    per_round = cost.relax(m) + cost.fill(n)
    # what is left after the rounds is the decoding of each step that ran, and its verification
    left = rounds_ops - rounds * per_round
    assert 0 < left < rounds * per_round / 4
    assert all(f == 0.0 for _, f in steps[rounds:])      # converged: nothing more is spent


def test_best_first_weighted_finds_a_route_before_optimal(small_graph):
    g = small_graph
    s, t = 0, g.n_cities - 1
    b = BestFirst(g, s, t, weight=3.0, weight_step=0.0)
    while b.incumbent is None:
        b.expand(1)
    assert b.incumbent[0] == s and b.incumbent[-1] == t
    assert b.incumbent_km >= _oracle_km(g, s, t) - 1e-9
    assert np.isfinite(b.ops)


def test_scaffold_controls_load_by_name():
    """`load_model(name + ".scaffold")`: the attribution control of each scaffolded checkpoint; a family learned
    end to end has none, and says which do."""
    from citypath.models import ModelNotFound, scaffolded

    assert set(scaffolded()) == {"bellman-tiny", "looped-small", "memory-search"} | {
        n for n in list_models() if n.startswith("guided-")}
    for name in scaffolded():
        c = load_model(f"{name}.scaffold")
        assert c.name == f"{name}.scaffold" and c.card["control_of"] == name
    with pytest.raises(ModelNotFound, match="no hand-written scaffold.*looped-small"):
        load_model("gnn-small.scaffold")
