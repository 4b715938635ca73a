"""The memory planner (learned best-first search in an external memory): the protocol on a tiny graph (K paths,
determinism, M = 0 running, wiping), what it writes and reads, the state view, the training loss, and the
shipped checkpoint."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from citypath.evaluate import sample_heldout_pairs
from citypath.models import catalogue
from citypath.models.base import count_parameters
from citypath.models.memsearch import MemSearchConfig, MemSearchModel, Search, full_graph_query
from tests.protocol import check_near_card, check_refine_protocol, check_state_views


@pytest.fixture(scope="module")
def pairs(tiny_graph):
    s, t = sample_heldout_pairs(tiny_graph, 8, seed=6)
    return list(zip(s.tolist(), t.tolist()))


def test_refine_yields_k_legal_paths_best_so_far_and_is_deterministic(tiny_graph, pairs):
    m = MemSearchModel.untrained(tiny_graph, MemSearchConfig(max_steps=4, per_step=2), seed=1)
    assert m.num_parameters == count_parameters(m.net) <= 50_000
    check_refine_protocol(m, tiny_graph, pairs[:4], 4)


def test_the_search_is_complete_with_memory_and_a_greedy_walk_without(tiny_graph, pairs):
    """With memory, enough iterations always reach the target (the tiny graph is connected) along simple
    legal paths; with M = 0 it runs, holds at most one city's neighbours, and is a walk: each city it goes
    on from is a neighbour of the one before."""
    g = tiny_graph
    full = MemSearchModel.untrained(g, MemSearchConfig(per_step=g.n_cities), seed=2)
    blind = MemSearchModel.untrained(g, MemSearchConfig(slots=0, per_step=4), seed=2)
    for src, dst in pairs:
        path = list(full.refine(g, src, dst, 1))[0]
        assert path[-1] == dst and len(path) == len(set(path))
        s = Search(blind.net, full_graph_query(g, src, dst))
        order = [src]
        for _ in range(6):
            s.iterate(1)
            if s.last_city >= 0 and s.last_city != order[-1]:
                order.append(s.last_city)
            assert len(s.slot_city) <= max(len(g.neighbors(c)) for c in order)
        assert all(b in set(g.neighbors(a).tolist()) for a, b in zip(order, order[1:]))
        assert blind.step_flops(g, src, dst, 2)[0] > 0


def test_memory_is_written_by_the_controller_and_bounded(tiny_graph, pairs):
    g = tiny_graph
    m = MemSearchModel.untrained(g, MemSearchConfig(slots=8, per_step=4), seed=3)
    src, dst = pairs[0]
    s = Search(m.net, full_graph_query(g, src, dst))
    assert list(s.slot_city) == [src] and s.cost[src] == 0
    s.iterate(3)
    assert 0 < len(s.slot_city) <= 8 and len(s.slot_keys) == len(s.slot_city)
    held = s.slot_city
    assert np.all(np.isfinite(s.cost[held])) and not s.done[held].any()      # every slot: reached, not gone on from
    for c in held:                                                           # its cost: the km along its way
        way = s.way_to(int(c))
        km = sum(g.adjacency[a, b] for a, b in zip(way, way[1:])) / g.radius_km
        assert way[0] == src and km == pytest.approx(s.cost[c])


def test_wiping_the_memory_keeps_the_search_going(tiny_graph, pairs):
    g = tiny_graph
    m = MemSearchModel.untrained(g, MemSearchConfig(per_step=2, max_steps=4, wipe_after=2), seed=4)
    src, dst = pairs[1]
    runs = [(p, s.slot_city.copy()) for p, _, s in m._run(g, src, dst, 4)]
    assert len(runs) == 4 and all(p[0] == src for p, _ in runs)


def test_state_view_per_step(tiny_graph, pairs):
    g = tiny_graph
    m = MemSearchModel.untrained(g, MemSearchConfig(per_step=2), seed=5)
    src, dst = pairs[2]
    views = check_state_views(m, g, src, dst, 3, ["km so far of each city in memory", "cities gone on from",
                                                  "read weight of each city in memory"])
    km, done, read = (v.values for v in views[0])
    held = np.isfinite(km)
    assert held.any() and (np.isfinite(read) == held).all() and np.nansum(read) == pytest.approx(1.0)
    assert not (held & np.isfinite(done)).any()                  # a city gone on from has left the memory
    assert (km[held] >= 0).all() and np.nanmax(km) <= m.config.per_step * 3 * g.radius_km
    assert np.isfinite(views[2][1].values).sum() >= np.isfinite(done).sum() >= 1


def test_training_loss_follows_the_exact_expert(default_graph):
    from citypath.tasks import memsearch as tm

    args = types.SimpleNamespace(size="small", set=["queries_per_batch=4", "val_paths=2"], command_line="test")
    task, cfg = tm.training_task(default_graph, args)
    net = task.build_model()
    batch, n = task.batch(1, 0, 1)
    loss, count = net(batch["episode"])
    loss.backward()
    assert n == 4 and torch.isfinite(loss) and count > 0
    assert net.key1.weight.grad.abs().sum() > 0 and net.query.weight.grad.abs().sum() > 0
    assert net.cell.weight_hh.grad.abs().sum() > 0           # the controller's state is in the graph


@pytest.mark.parametrize("name", [e.name for e in catalogue()[0] if e.family == "memsearch"])
def test_shipped_checkpoint_scores_near_its_card(default_graph, name):
    m = check_near_card(default_graph, name, valid_tol=0.1, ratio_tol=0.03)
    assert m.num_parameters <= 50_000


def test_control_weight_is_the_one_chosen_on_validation_pairs():
    """memory-search's attribution control uses the w that `python -m experiments.control_weight` chose on
    validation pairs (results/memsearch-control-weight.json), not a hand-picked one."""
    import json
    from pathlib import Path

    from citypath.models.memsearch import CONTROL_WEIGHT

    report = json.loads((Path(__file__).resolve().parents[1] / "results" / "memsearch-control-weight.json").read_text())
    assert report["split"] == "validation"
    assert CONTROL_WEIGHT == report["chosen_weight"]
    assert report["score"][f"{CONTROL_WEIGHT:g}"] == min(report["score"].values())


def test_scaffold_control_keeps_the_search_and_drops_the_learning(small_graph):
    """The control is the same search (memory, relaxation, parents, route) rated by -(g + w h): nothing learned
    is read, and with w = 1 and memory enough it is A*: it ends on an optimal route."""
    import citypath
    from citypath.models.memsearch import HandRatedMemSearch, MemSearchConfig, MemSearchModel

    g = small_graph
    m = MemSearchModel.untrained(g, MemSearchConfig(per_step=64, max_steps=16))
    c = m.scaffold_control(1.0)
    assert isinstance(c, HandRatedMemSearch) and not c.learned and c.card["control_of"] == m.name
    for s, t in [(0, g.n_cities - 1), (3, 200)]:
        path = list(c.refine(g, s, t, steps=16))[-1]
        assert citypath.evaluate_path(g, path, s, t)["valid"]
        assert g.path_length_km(path) == pytest.approx(g.path_length_km(g.shortest_path(s, t)), rel=1e-9)


def _independent_hand_search_ops(g, src, dst, weight: float, per_step: int, steps: int) -> list[float]:
    """The hand-rated search re-written in plain Python (same slot order, first-best ties), priced by citypath.cost
    from the events it counts itself: reads over m slots, edges relaxed, memory rewrites, the route walked back."""
    from citypath import cost
    from citypath.geo import haversine_km
    from citypath.models.memsearch import query_setup_ops

    R, n = g.radius_km, g.n_cities
    ip, ix = g.adjacency.indptr.tolist(), g.adjacency.indices.tolist()
    km = (g.adjacency.data / R).tolist()
    dt = (haversine_km(g.lat, g.lon, g.lat[dst], g.lon[dst]) / R).tolist()
    best, parent, done = [np.inf] * n, [-1] * n, [False] * n
    best[src] = 0.0
    slots, finished, last = [src], src == dst, -1
    total, out = query_setup_ops(n), []

    def way(city):
        nonlocal total
        path = [city]
        while path[-1] != src:
            path.append(parent[path[-1]])
        total += cost.walk(len(path))
        return path[::-1]

    for _ in range(steps):
        for _ in range(per_step):
            if finished or not slots:
                break
            m = len(slots)
            total += 3.0 * m + cost.select(m)
            rating = [-(best[c] + weight * dt[c]) for c in slots]
            i = rating.index(max(rating))
            u = slots.pop(i)
            done[u], last = True, u
            if u == dst:
                finished = True
                break
            deg = ip[u + 1] - ip[u]
            total += cost.relax(deg) + cost.fill(deg)
            new = [(ix[j], best[u] + km[j]) for j in range(ip[u], ip[u + 1])]
            new = [(v, c) for v, c in new if not done[v] and c < best[v] - 1e-12]
            for v, c in new:
                best[v], parent[v] = c, u
            fresh = [v for v, _ in new]
            total += cost.sort(m + len(fresh)) + cost.fill(m + len(fresh))
            slots = [c for c in slots if c not in set(fresh)] + fresh
        if finished or parent[dst] >= 0:
            path = way(dst)
        elif not slots:
            path = way(last)
        else:
            total += 3.0 * len(slots) + cost.select(len(slots))
            rating = [-(best[c] + weight * dt[c]) for c in slots]
            path = way(slots[rating.index(max(rating))])
        total += cost.verify(len(path) - 1)
        out.append(total)
    return out


def test_counted_operations_match_an_independent_count(tiny_graph):
    g = tiny_graph
    m = MemSearchModel.untrained(g, MemSearchConfig(per_step=6, max_steps=8))
    c = m.scaffold_control(1.5)
    srcs, dsts = sample_heldout_pairs(g, 4, seed=6)
    for s, t in zip(srcs.tolist(), dsts.tolist()):
        got = np.cumsum([f for _, f in c.refine_with_compute(g, s, t, steps=8)])
        np.testing.assert_allclose(got, _independent_hand_search_ops(g, s, t, 1.5, 6, 8), rtol=1e-12)
