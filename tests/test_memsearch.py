"""The memory planner (learned best-first search in an external memory): the protocol on a tiny graph (K paths,
determinism, M = 0 running, wiping), what it writes and reads, the state view, the training loss, and the
shipped checkpoint."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from citypath.evaluate import sample_heldout_pairs
from citypath.models.memsearch import MemSearchConfig, MemSearchModel, Search, count_parameters, full_graph_query
from citypath.registry import catalogue
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
