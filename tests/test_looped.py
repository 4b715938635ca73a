"""The looped transformer: the protocol on a tiny graph (K paths, determinism, halting, corridor growth,
compute per step), its min head becoming Dijkstra with exact weights, training on small graphs, and the
shipped checkpoint."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from scipy.sparse.csgraph import dijkstra

import citypath
from citypath.evaluate import sample_heldout_pairs
from citypath.metrics import verifier_key
from citypath.models import list_models
from citypath.models.looped import LoopedConfig, LoopedModel, LoopedThinker, count_parameters
from citypath.replay import apportion_ms, compute_replay
from tests.protocol import check_near_card, check_state_views


def exact_min_head(m: LoopedModel) -> LoopedModel:
    """Give the min head Bellman-Ford's weights (message = sender + edge length, read-out = the value)."""
    mh = m.net.min_head
    with torch.no_grad():
        for p in mh.parameters():
            p.zero_()
        mh.sender.weight.fill_(1.0)
        mh.edge.weight.fill_(1.0)
        mh.readout.weight.fill_(1.0)
    return m


@pytest.fixture(scope="module")
def pairs(tiny_graph):
    s, t = sample_heldout_pairs(tiny_graph, 12, seed=4)
    return list(zip(s.tolist(), t.tolist()))


def test_at_most_50k_parameters_and_no_city_embedding(tiny_graph, default_graph):
    """The same weights run on any graph: the parameter count does not depend on the number of cities."""
    a = LoopedModel.untrained(tiny_graph, LoopedConfig(dim=16))
    b = LoopedModel.untrained(default_graph, LoopedConfig(dim=16))
    assert count_parameters(a.net) == count_parameters(b.net) <= 50_000
    assert count_parameters(LoopedModel.untrained(tiny_graph, LoopedConfig(dim=32)).net) <= 50_000


def test_refine_yields_k_legal_paths_best_so_far_and_is_deterministic(tiny_graph, pairs):
    g = tiny_graph
    m = LoopedModel.untrained(g, LoopedConfig(max_steps=6), seed=1)
    for src, dst in pairs[:5]:
        paths = list(m.refine(g, src, dst, steps=6))
        assert len(paths) == 6 and all(p[0] == src for p in paths)
        assert citypath.evaluate_paths(g, paths, [src] * 6, [dst] * 6)["illegal_jumps"].sum() == 0
        keys = [verifier_key(g, p, src, dst) for p in paths]
        assert all(b <= a for a, b in zip(keys, keys[1:]))
        assert paths == list(m.refine(g, src, dst, steps=6))
    assert list(m.refine(g, 3, 3, steps=2)) == [[3], [3]]
    with pytest.raises(ValueError):
        list(m.refine(g, 0, 1, steps=0))


def test_exact_min_head_reaches_dijkstra_and_routes_optimally(tiny_graph, pairs):
    g = tiny_graph
    m = exact_min_head(LoopedModel.untrained(g, LoopedConfig(loops_per_step=1, max_steps=60), seed=0))
    for src, dst in pairs[:6]:
        t = LoopedThinker(m.net, g, src, dst)
        for _ in range(300):
            t.loop()
        truth = dijkstra(g.adjacency, indices=dst)
        km = t.mh.estimates_km()
        relevant = t.mh.s.via_km <= truth[src] + 1e-9
        assert relevant[src] and relevant[dst] and t.converged
        np.testing.assert_allclose(km[relevant], truth[relevant], rtol=1e-12, atol=1e-9)
        path = list(m.refine(g, src, dst, steps=80))[-1]
        assert citypath.evaluate_path(g, path, src, dst)["optimal_length"]


def test_halting_repeats_the_converged_path_and_spends_nothing_after(tiny_graph, pairs):
    g = tiny_graph
    m = exact_min_head(LoopedModel.untrained(g, LoopedConfig(loops_per_step=2, max_steps=40), seed=0))
    src, dst = pairs[0]
    out = list(m.refine_with_compute(g, src, dst, steps=60))
    used = m.last_run_steps
    assert 1 <= used < 60
    paths = [p for p, _ in out]
    flops = [f for _, f in out]
    assert all(p == paths[used - 1] for p in paths[used:])       # the converged path, repeated
    assert all(f > 0 for f in flops[:used]) and all(f == 0 for f in flops[used:])
    assert citypath.evaluate_path(g, paths[-1], src, dst)["optimal_length"]
    # refine and step_flops agree with the one-run refine_with_compute
    assert paths == list(m.refine(g, src, dst, steps=60))
    assert flops == m.step_flops(g, src, dst, 60)


def test_corridor_growth_keeps_the_target_reachable(tiny_graph):
    """A corridor of zero width must grow until the optimal route fits; the route found is optimal."""
    g = tiny_graph
    m = exact_min_head(LoopedModel.untrained(g, LoopedConfig(corridor_factor=1.0, corridor_slack_radii=0.0,
                                                              loops_per_step=2, max_steps=60), seed=0))
    s, t = sample_heldout_pairs(g, 200, seed=9)
    bent = [(a, b) for a, b in zip(s.tolist(), t.tolist())
            if g.shortest_path_length_km(a, b) > 1.1 * g.distance_km(a, b)][:3]
    assert bent
    for src, dst in bent:
        path = list(m.refine(g, src, dst, steps=80))[-1]
        assert path[-1] == dst and citypath.evaluate_path(g, path, src, dst)["optimal_length"]


def test_trace_has_one_state_per_step(tiny_graph, pairs):
    g = tiny_graph
    m = exact_min_head(LoopedModel.untrained(g, LoopedConfig(loops_per_step=2), seed=0))
    src, dst = pairs[1]
    views = check_state_views(m, g, src, dst, 5, ["estimated km to target", "reached by the min head",
                                                  "tokens of the block next step"])
    reached = [int(step[1].values.sum()) for step in views]
    assert reached[0] >= 2 and reached == sorted(reached)          # the min head spreads from the target


def test_replay_compute_per_step_is_nonzero_and_sums_to_the_run(tiny_graph, pairs):
    g = tiny_graph
    m = LoopedModel.untrained(g, LoopedConfig(max_steps=4), seed=3)
    src, dst = pairs[2]
    r = compute_replay(m, g, src, dst, 4)
    assert r.error is None and len(r.step_flops) == 4
    assert r.metrics["flops"].iloc[0] > 0
    assert r.metrics["flops_total"].iloc[-1] == pytest.approx(sum(m.step_flops(g, src, dst, 4)))
    assert (r.metrics["ms"] > 0).all()


def test_apportion_splits_a_batch_over_the_steps_it_served():
    # step 1 works alone; step 2's call decodes a batch that also serves steps 3-4 (their calls are instant)
    out = apportion_ms([10.0, 90.0, 0.01, 0.01], [1e6, 1e6, 1e6, 1e6])
    assert out[0] == pytest.approx(10.0)
    assert out[1] == pytest.approx(out[2]) == pytest.approx(out[3]) == pytest.approx((90.02) / 3)
    assert sum(out) == pytest.approx(100.02)
    # a step that did work of its own keeps its own time
    assert apportion_ms([5.0, 6.0, 4.0], [1.0, 1.0, 1.0]) == [5.0, 6.0, 4.0]
    # zero-FLOP steps (halted) keep their measured time
    assert apportion_ms([5.0, 0.2], [1e6, 0.0]) == [5.0, 0.2]


def test_training_on_small_graphs_runs_and_never_draws_held_out_queries(default_graph):
    from citypath.split import is_heldout
    from citypath.tasks import looped as tl
    from citypath.tasks.small_graphs import region_graph

    args = types.SimpleNamespace(size="small", set=["graphs_per_batch=2", "val_paths=2"], command_line="test")
    task, cfg = tl.training_task(default_graph, args)
    net = task.build_model()
    loss, count = net(**task.batch(0, 0, 1)[0])
    loss.backward()
    assert torch.isfinite(loss) and count > 0
    assert all(p.grad is not None for p in net.min_head.parameters())
    rng = np.random.default_rng(0)
    for _ in range(30):
        sg = region_graph(default_graph, rng, task.gc_draw)
        s, t = tl.draw_query(sg, rng)
        assert s == t or not is_heldout(int(sg.ids[s]), int(sg.ids[t]))


@pytest.mark.parametrize("name", [n for n in list_models() if n.startswith("looped-")])
def test_shipped_checkpoint_scores_near_its_card(default_graph, name):
    m = check_near_card(default_graph, name, valid_tol=0.1, ratio_tol=0.01)
    assert m.num_parameters <= 50_000


def test_scaffold_control_is_the_min_head_alone(tiny_graph, pairs):
    """looped's attribution control: its own min-head scalars run by the bellman family over the same corridor
    (loops_per_step rounds a step), the block removed. With an exact min head it is exact too: the block is not
    needed for the route, which is what the control measures on the shipped weights."""
    from citypath.models.bellman import BellmanModel

    g = tiny_graph
    m = exact_min_head(LoopedModel.untrained(g, LoopedConfig(loops_per_step=2, max_steps=40), seed=0))
    c = m.scaffold_control()
    assert isinstance(c, BellmanModel) and c.card["control_of"] == m.name and c.num_parameters == 10
    assert c.config.rounds_per_step == 2 and c.config.corridor_factor == m.config.corridor_factor
    for name, p in m.net.min_head.state_dict().items():
        assert torch.equal(c.net.state_dict()[name], p)
    for src, dst in pairs[:4]:
        path = list(c.refine(g, src, dst, steps=40))[-1]
        assert citypath.evaluate_path(g, path, src, dst)["optimal_length"]
    # the block's work is gone from the count: the control spends less on the same query
    src, dst = pairs[0]
    assert sum(c.step_flops(g, src, dst, 10)) < sum(m.step_flops(g, src, dst, 10))


def test_counted_operations_match_an_independent_count(tiny_graph, pairs):
    """Each step's operations, re-priced here from what the run observably did: the min head's rounds (bellman's
    count, pinned in test_bellman.py), per loop the tube the block saw and the cities the min head had reached,
    the neighbours scored along each decoded path, each new tube's parts; plus the query's set-up and the
    verifier."""
    from citypath import cost
    from citypath.models.bellman import decode_ops
    from citypath.models.looped import N_GEO, loop_flops, max_hops_for

    g = tiny_graph
    n, ip = g.n_cities, g.adjacency.indptr
    m = LoopedModel.untrained(g, LoopedConfig(loops_per_step=2, max_steps=10), seed=2)
    c, k = m.config, m.config.window

    def tube_ops(t, path) -> float:
        open_ = [x for x in path if not t.mh.s.reached[x]]
        parts = 2 + sum(int(ip[x + 1] - ip[x]) for x in open_) + len(open_)
        t.set_tube(path)
        return cost.sort(parts) + cost.fill(n) + cost.fill(len(t.tube) * (4 * k + 3 * N_GEO + 8))

    def decode(t, cap):
        path, _ = t.decode(cap)
        return path, sum(decode_ops(int(ip[x + 1] - ip[x]), 1) for x in path[:-1] if x != t.dst) + cost.fill(2 * n)

    for src, dst in pairs[:3]:
        got = [f for _, f in m.refine_with_compute(g, src, dst, steps=10)]
        t = LoopedThinker(m.net, g, src, dst)
        first = [x for x in (src, dst) if not t.mh.s.reached[x]]       # the first tube: source, target
        want_total = cost.haversine(2 * n) + cost.fill(5 * n) + cost.fill(n * (c.dim + 2)) \
            + cost.sort(2 + sum(int(ip[x + 1] - ip[x]) for x in first) + len(first)) + cost.fill(n) \
            + cost.fill(len(t.tube) * (4 * k + 3 * N_GEO + 8))
        cap = max_hops_for(g, src, dst)
        prior, ops = decode(t, cap)
        want_total += ops + tube_ops(t, prior)
        want, last = [], None
        for _ in range(10):
            for _ in range(c.loops_per_step):
                before = t.mh.s.ops
                tube = len(t.tube)
                t.loop()
                want_total += (t.mh.s.ops - before) + cost.fill(2 * n) + 4.0 * int(t.mh.s.reached.sum()) \
                    + 8.0 * tube + loop_flops(c, tube, 0) + cost.fill(2 * tube * (c.dim + 1))
            path, ops = decode(t, cap)
            want_total += ops + tube_ops(t, path)
            want.append(want_total + cost.verify(len(path) - 1))
            want_total += cost.verify(len(path) - 1)
            last = path
        assert last is not None
        # the model halts once converged (later steps 0); compare the steps it ran
        ran = [f for f in got if f > 0]
        np.testing.assert_allclose(np.cumsum(ran), want[:len(ran)], rtol=1e-12)
