"""The Bellman-Ford-aligned network: exact distances from the right weights, learning them on small graphs,
the frontier and the corridor, per-step state views and FLOPs, the protocol, and the shipped checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.sparse.csgraph import dijkstra

import citypath
from citypath.evaluate import sample_heldout_pairs
from citypath.metrics import verifier_key
from citypath.models import list_models, load_model
from citypath.models.bellman import BellmanConfig, BellmanModel, BellmanThinker, CorridorEdges, FrontierEdges, Weights
from citypath.tasks.bellman import graph_batch
from citypath.tasks.small_graphs import GraphsConfig, SmallGraph, bellman_ford_rounds, synthetic_graph


def exact_model(g, **config) -> BellmanModel:
    """The network with Bellman-Ford's own weights: message = sender + edge length, read-out = the state."""
    m = BellmanModel.untrained(g, BellmanConfig(hidden_dim=1, **config))
    sd = {k: torch.zeros_like(v) for k, v in m.net.state_dict().items()}
    for k in ("sender.weight", "edge.weight", "readout.weight"):
        sd[k][:] = 1.0
    m.net.load_state_dict(sd)
    m.weights = Weights.of(m.net)
    return m


@pytest.fixture(scope="module")
def pairs(tiny_graph):
    s, t = sample_heldout_pairs(tiny_graph, 16, seed=3)
    return list(zip(s.tolist(), t.tolist()))


def test_exact_weights_give_dijkstras_distances_after_enough_rounds(tiny_graph, pairs):
    """Every city that could lie on a route as short as the source's (straight km via it <= the source's
    distance) ends with Dijkstra's distance to the target; the others may stop early (they cannot matter)."""
    g = tiny_graph
    m = exact_model(g)
    for src, dst in pairs[:6]:
        t = BellmanThinker(m.weights, g, m.config, src, dst)
        for _ in range(400):
            t.round()
        truth = dijkstra(g.adjacency, indices=dst)
        relevant = t.s.via_km <= truth[src]
        assert relevant[src] and relevant[dst]
        np.testing.assert_allclose(t.estimates_km()[relevant], truth[relevant], rtol=1e-12, atol=1e-9)
        assert len(t.s.frontier) == 0                    # converged: nothing left to send


def test_exact_weights_route_optimally_and_improve_with_steps(tiny_graph, pairs):
    g = tiny_graph
    m = exact_model(g, rounds_per_step=1, max_steps=40)
    first, last = [], []
    for src, dst in pairs:
        paths = list(m.refine(g, src, dst, steps=60))
        first.append(paths[0])
        last.append(paths[-1])
    df_first = citypath.evaluate_paths(g, first, *zip(*pairs))
    df_last = citypath.evaluate_paths(g, last, *zip(*pairs))
    assert df_last["optimal_length"].all()
    assert df_first["optimal_length"].mean() < 1.0        # one round cannot know the whole route


def test_corridor_grows_until_the_route_is_inside(tiny_graph):
    """A corridor of zero width (only the straight line) must grow, and the route found is still optimal."""
    g = tiny_graph
    m = exact_model(g, corridor_factor=1.0, corridor_slack_radii=0.0, rounds_per_step=2, max_steps=60)
    s, t = sample_heldout_pairs(g, 200, seed=9)
    # Pairs whose optimal route bends well away from the straight line.
    bent = [(a, b) for a, b in zip(s.tolist(), t.tolist())
            if g.shortest_path_length_km(a, b) > 1.1 * g.distance_km(a, b)][:4]
    assert bent
    for src, dst in bent:
        path = list(m.refine(g, src, dst, steps=60))[-1]
        assert citypath.evaluate_path(g, path, src, dst)["optimal_length"]


def test_refine_protocol(tiny_graph, pairs):
    g = tiny_graph
    m = BellmanModel.untrained(g, BellmanConfig(max_steps=6), seed=2)
    for src, dst in pairs[:6]:
        paths = list(m.refine(g, src, dst, steps=6))
        assert len(paths) == 6 and all(p[0] == src for p in paths)
        assert citypath.evaluate_paths(g, paths, [src] * 6, [dst] * 6)["illegal_jumps"].sum() == 0
        keys = [verifier_key(g, p, src, dst) for p in paths]
        assert all(b <= a for a, b in zip(keys, keys[1:]))             # best so far: never worse
        assert paths == list(m.refine(g, src, dst, steps=6))        # deterministic
    assert list(m.refine(g, 5, 5, steps=3)) == [[5]] * 3
    with pytest.raises(ValueError):
        list(m.refine(g, 0, 1, steps=0))


def test_trace_has_one_state_per_step_and_flops_follow_the_frontier(tiny_graph, pairs):
    g = tiny_graph
    m = exact_model(g, rounds_per_step=2)
    src, dst = pairs[0]
    views = list(m.trace(g, src, dst, steps=30))
    assert len(views) == 30
    for step in views:
        names = [v.name for v in step]
        assert "estimated km to target" in names
        assert all(v.values.shape == (g.n_cities,) for v in step)
    est = views[-1][0].values
    assert est[dst] == 0.0 and np.isclose(est[src], g.shortest_path_length_km(src, dst))
    flops = m.step_flops(g, src, dst, 30)
    assert len(flops) == 30 and flops[0] > 0
    # converged: the frontier is empty, no edge is processed; only decoding the same path is counted
    assert flops[-1] == flops[-2] and 0 < flops[-1] < max(flops)
    assert m.flops_per_step(g, src, dst) == pytest.approx(np.mean(m.step_flops(g, src, dst, m.max_steps)))
    assert m.has_state_view


def test_bellman_ford_labels_match_dijkstra_at_convergence():
    rng = np.random.default_rng(0)
    sg = synthetic_graph(rng, GraphsConfig(min_nodes=40, max_nodes=40))
    import scipy.sparse as sp

    adj = sp.csr_matrix((sg.w, (sg.src, sg.dst)), shape=(sg.n, sg.n))
    labels = bellman_ford_rounds(sg, 0, sg.n)
    np.testing.assert_allclose(labels[-1], dijkstra(adj, indices=0), rtol=1e-12)
    assert np.isinf(labels[0]).sum() > 0 and (labels[1:] <= labels[:-1]).all()   # rounds only improve


def test_learns_bellman_ford_on_small_graphs():
    """A few hundred steps on synthetic graphs cut the distance error by 10x; the learned message tends
    to sender + edge length (sender weight near 1)."""
    from citypath.models.bellman import BellmanNet

    torch.manual_seed(0)
    net = BellmanNet(BellmanConfig()).double()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    gc = GraphsConfig(max_nodes=60)
    rng = np.random.default_rng(1)
    val = graph_batch([synthetic_graph(rng, gc) for _ in range(8)], rng, 6, 1)
    val["l1"] = torch.tensor(0.0, dtype=torch.float64)

    def val_err():
        with torch.no_grad():
            loss, n = net(**val)
        return float(loss / n)

    before = val_err()
    for step in range(400):
        r = np.random.default_rng([7, step])
        b = graph_batch([synthetic_graph(r, gc) for _ in range(4)], r, int(r.integers(0, 12)), 2)
        b["l1"] = torch.tensor(1e-4, dtype=torch.float64)
        loss, n = net(**b)
        opt.zero_grad()
        (loss / n).backward()
        opt.step()
    after = val_err()
    assert after < before / 10
    assert abs(net.sender.weight.item() - 1.0) < 0.05


def test_held_out_pairs_are_never_supervised(small_graph):
    from citypath.split import heldout_mask
    from citypath.tasks.small_graphs import region_graph

    rng = np.random.default_rng(4)
    sg = region_graph(small_graph, rng, GraphsConfig())
    b = graph_batch([sg], rng, 3, 1)
    target = int(np.flatnonzero(b["x"][:, 0].numpy())[0])
    held = heldout_mask(sg.ids, np.full(sg.n, sg.ids[target]))
    assert (b["weight"].numpy()[held] == 0).all() and (b["weight"].numpy()[~held] == 1).all()
    assert isinstance(sg, SmallGraph)


@pytest.mark.slow
@pytest.mark.skipif("bellman-tiny" not in list_models(), reason="bellman-tiny is not trained yet")
def test_shipped_checkpoint_scores_near_its_card(default_graph):
    model = load_model("bellman-tiny", graph=default_graph)
    card = model.card
    assert model.num_parameters == card["num_parameters"] <= 10_000
    expected = card["metrics"]["by_steps"][str(model.max_steps)]
    srcs, dsts = sample_heldout_pairs(default_graph, 16, seed=card["metrics"].get("pair_seed", 0))
    paths = [list(model.refine(default_graph, int(s), int(t), steps=model.max_steps))[-1] for s, t in zip(srcs, dsts)]
    df = citypath.evaluate_paths(default_graph, paths, srcs, dsts)
    assert df["illegal_jumps"].sum() == 0 and df["valid"].all()
    assert df["optimal_length"].mean() >= expected["optimal_length"] - 0.2
    assert df["length_ratio"].mean() <= expected["length_ratio_mean"] + 0.002


def test_the_report_compares_learned_weights_with_bellman_ford(small_graph, tmp_path, monkeypatch):
    from experiments.bellman_report import bellman_report
    from tests.fake_models import bellman_exact_checkpoint

    bellman_exact_checkpoint(tmp_path, small_graph, rounds_per_step=2, max_steps=12)
    monkeypatch.setenv("CITYPATH_CHECKPOINTS", str(tmp_path))
    rep = bellman_report(small_graph, "bellman-exact", 12, seed=1, compare=None)
    assert all(abs(w["difference"]) < 1e-12 for w in rep["weights"])
    assert rep["optimal_at_max_steps"] == 1.0 and rep["not_optimal_at_max_steps"]["pairs"] == 0
    firsts = [p["first_optimal_step"] for p in rep["per_pair"]]
    hops = [p["hops"] for p in rep["per_pair"]]
    # Two rounds a step: a route of h hops is known after ceil(h / 2) steps at the latest.
    assert all(f <= -(-h // 2) + 1 for f, h in zip(firsts, hops))
    assert rep["flops_per_query_at_max_steps"]["mean"] > 0


def test_when_the_source_estimate_exceeds_the_corridor_every_reached_city_sends_again(tiny_graph, pairs):
    g = tiny_graph
    m = exact_model(g, rounds_per_step=1)
    seen = 0
    for src, dst in pairs:
        t = BellmanThinker(m.weights, g, m.config, src, dst)
        while not t.s.reached[src] and len(t.s.frontier):
            t.round()
        if not len(t.s.frontier):
            continue
        t.s.bound_km = 1.0                 # pretend the corridor is narrower than the route just found
        t.round()
        assert t.s.bound_km > 1.0 and (t.s.corridor == (t.s.via_km <= t.s.bound_km)).all()
        assert set(t.s.frontier.tolist()) == set(np.flatnonzero(t.s.reached).tolist())
        seen += 1
    assert seen > 0


def test_scaffold_control_is_the_same_run_with_bellman_fords_weights(tiny_graph, pairs):
    """bellman's attribution control: the trained model's scaffold (config, frontier, corridor, decoder) with the
    exact hand-set weights; on the same pairs it routes exactly as the hand-built exact model does."""
    g = tiny_graph
    trained = BellmanModel.untrained(g, BellmanConfig(hidden_dim=1, rounds_per_step=2, max_steps=20), seed=1)
    control = trained.scaffold_control()
    assert control.config == trained.config and not control.learned and control.card["control_of"] == trained.name
    exact = exact_model(g, rounds_per_step=2, max_steps=20)
    for src, dst in pairs[:6]:
        assert list(control.refine(g, src, dst, steps=20)) == list(exact.refine(g, src, dst, steps=20))


def _independent_frontier_ops(g, src, dst, rounds_per_step: int, steps: int, paths: list) -> list[float]:
    """Bellman-Ford over a frontier in plain Python (exact weights, a corridor holding every city), priced by
    citypath.cost from the counts it makes itself: per round the frontier's edges, the cities they touch, the ones
    that changed; per step the neighbours the decoder scores along the model's path, and the verifier."""
    from citypath import cost
    from citypath.models.bellman import d_ops, decode_ops

    n, R = g.n_cities, g.radius_km
    ip, ix, wt = g.adjacency.indptr.tolist(), g.adjacency.indices.tolist(), g.adjacency.data.tolist()
    h = [float("inf")] * n
    h[dst] = 0.0
    frontier = [dst]
    via = (citypath.geo.haversine_km(g.lat, g.lon, g.lat[src], g.lon[src])
           + citypath.geo.haversine_km(g.lat, g.lon, g.lat[dst], g.lon[dst])).tolist()
    out, total = [], cost.haversine(2 * n) + cost.fill(n * 5)
    for k in range(steps):
        for _ in range(rounds_per_step):
            if not frontier:
                continue
            edges = sum(ip[u + 1] - ip[u] for u in frontier)
            total += cost.fill(5 * edges) + d_ops(1) * edges + cost.matmul(len(frontier), 1, 1)
            new = {}
            for u in frontier:
                for j in range(ip[u], ip[u + 1]):
                    m = h[u] * 1.0 + 1.0 * (wt[j] / R) + 0.0
                    new[ix[j]] = min(new.get(ix[j], float("inf")), m)
            total += cost.fill(n) + cost.sort(edges) + cost.fill(len(new) * 6)
            changed = sorted(v for v, m in new.items() if m < h[v])
            for v in changed:
                h[v] = new[v]
            if h[src] < float("inf"):
                est = h[src] * R
                changed = [v for v in changed if via[v] <= max(est, 0.0) + 1e-9]
                total += cost.fill(len(changed)) + cost.matmul(1, 1, 1)
            frontier = changed
        path = paths[k]
        total += sum(decode_ops(ip[c + 1] - ip[c], 1) for c in path[:-1]) + cost.fill(n) + cost.verify(len(path) - 1)
        out.append(total)
    return out


def test_counted_operations_match_an_independent_count(tiny_graph, pairs):
    g = tiny_graph
    m = exact_model(g, rounds_per_step=2, max_steps=12, corridor_factor=1000.0)
    for src, dst in pairs[:4]:
        t = BellmanThinker(m.weights, g, m.config, src, dst)
        raw = []                                    # the decoder's own path each step (before best-so-far)
        for _ in range(12):
            for _ in range(2):
                t.round()
            raw.append(t.decode(10_000))
        got = np.cumsum([f for _, f in m.refine_with_compute(g, src, dst, steps=12)])
        want = _independent_frontier_ops(g, src, dst, 2, 12, raw)
        # a step whose path is repeated after convergence still decodes and verifies: equal sums step by step
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_a_round_reads_the_corridors_edges_as_the_reference_gathers_them(tiny_graph, pairs):
    """The rounds read the frontier's edges from the corridor's, gathered once per corridor (`CorridorEdges`):
    the same paths, counted operations and states as gathering every frontier edge and dropping those that leave
    the corridor (`FrontierEdges`), with several channels and with a corridor that has to grow."""
    g = tiny_graph
    models = [BellmanModel.untrained(g, BellmanConfig(hidden_dim=3, rounds_per_step=2, max_steps=12), seed=4),
              exact_model(g, corridor_factor=1.0, corridor_slack_radii=0.0, rounds_per_step=1, max_steps=12)]
    grew = 0
    for m in models:
        for src, dst in pairs[:8]:
            runs, states = [], []
            for edges in (CorridorEdges, FrontierEdges):
                m.edges = edges
                runs.append(list(m.refine_with_compute(g, src, dst, steps=12)))
                states.append([v.values for views in m.trace(g, src, dst, steps=12) for v in views])
                t = BellmanThinker(m.weights, g, m.config, src, dst, edges)
                first_bound = t.s.bound_km
                for _ in range(24):
                    t.round()
                grew += edges is CorridorEdges and t.s.bound_km > first_bound
            assert runs[0] == runs[1]
            assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(*states))
    assert grew > 0


def test_a_round_with_messages_at_infinity_still_reaches_their_receivers(tiny_graph, pairs):
    """A receiver is reached by any message, even one at +inf (the rounds then mark receivers one by one)."""
    g = tiny_graph
    m = exact_model(g, corridor_factor=10.0, rounds_per_step=1)
    m.weights.b[:] = np.inf
    src, dst = pairs[0]
    t = BellmanThinker(m.weights, g, m.config, src, dst)
    t.round()
    ip, ix = g.adjacency.indptr, g.adjacency.indices
    heard = set(ix[ip[dst]:ip[dst + 1]].tolist()) & set(np.flatnonzero(t.s.corridor).tolist())
    assert heard and set(np.flatnonzero(t.s.reached).tolist()) == heard | {dst}
