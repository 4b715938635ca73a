"""The recurrent message-passing GNN through the routing protocol: K paths, determinism, threads,
improvement with more rounds on a small learnable case, checkpoint round trip, the shipped checkpoint."""

from __future__ import annotations

import dataclasses
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

import citypath
from citypath.evaluate import sample_heldout_pairs
from citypath.models import CheckpointError, IncompatibleGraph, list_models, load_model
from citypath.models.gnn import GNNConfig, GNNModel, RecurrentMPNN, cached_message_graph, message_graph
from citypath.tasks.gnn import GNNTask, RegionConfig
from citypath.training import TrainConfig


@pytest.fixture(scope="module")
def untrained(tiny_graph):
    return GNNModel.untrained(tiny_graph, GNNConfig(hidden_dim=8, rounds_per_step=2, max_steps=8), seed=1)


@pytest.fixture(scope="module")
def pairs(tiny_graph):
    s, t = sample_heldout_pairs(tiny_graph, 24, seed=5)
    return list(zip(s.tolist(), t.tolist()))


@pytest.fixture(scope="module")
def detour_pairs(tiny_graph):
    """Held-out pairs whose optimal path is >= 15% longer than the straight line: greedy geometry is not enough."""
    s, t = sample_heldout_pairs(tiny_graph, 600, seed=5)
    out = [(a, b) for a, b in zip(s.tolist(), t.tolist())
           if tiny_graph.shortest_path_length_km(a, b) > 1.15 * tiny_graph.distance_km(a, b)]
    assert len(out) >= 12
    return out[:16]


@pytest.fixture(scope="module")
def trained(tiny_graph):
    """A GNN trained for 600 small batches on regions of the tiny graph (~10 s), one round per step."""
    config = GNNConfig(hidden_dim=8, mlp_dim=32, rounds_per_step=1, max_steps=16)
    regions = RegionConfig(pool=24, min_radius_km=40, max_radius_km=120, max_nodes=300, regions_per_batch=4,
                           max_free_rounds=24, max_grad_rounds=4, val_regions=8, val_pairs=4)
    cfg = TrainConfig(name="gnn-tiny", seed=0, progress=False)
    task = GNNTask(tiny_graph, "small", config, regions, cfg, command="(test fixture)")
    torch.manual_seed(0)
    net = task.build_model()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for step in range(600):
        batch, _ = task.batch(step, 0, 1)
        loss, n = net(**batch)
        opt.zero_grad()
        (loss / n).backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
    card = {"name": "gnn-tiny", "family": "gnn", "num_parameters": sum(p.numel() for p in net.parameters()),
            "max_steps": config.max_steps, "config": dataclasses.asdict(config),
            "graph": {"fingerprint": tiny_graph.fingerprint, "config": dataclasses.asdict(tiny_graph.config)}}
    return GNNModel("gnn-tiny", card, net), task


def test_message_graph_is_a_sparse_subset_of_the_edges(tiny_graph):
    mg = message_graph(tiny_graph.lat, tiny_graph.lon, tiny_graph.adjacency, cones=8)
    assert mg.nbr.shape[0] <= 16 and mg.nbr.shape[1] == tiny_graph.n_cities
    real = ~mg.pad
    v = torch.arange(tiny_graph.n_cities).repeat(mg.nbr.shape[0], 1)[real].numpy()
    u = mg.nbr[real].numpy()
    dense = tiny_graph.adjacency.toarray()
    assert np.all(dense[v, u] > 0)          # every message edge is a graph edge
    assert real.any(dim=0).all()                                   # every city sends to somebody


def test_message_graph_cache_round_trips_and_rebuilds_when_corrupt(tiny_graph, tmp_path, monkeypatch):
    monkeypatch.setenv("CITYPATH_CACHE_DIR", str(tmp_path))
    fresh = message_graph(tiny_graph.lat, tiny_graph.lon, tiny_graph.adjacency, cones=8)

    def same(mg):
        return all(torch.equal(a, b) for a, b in ((mg.nbr, fresh.nbr), (mg.hop_km, fresh.hop_km), (mg.pad, fresh.pad)))

    assert same(cached_message_graph(tiny_graph, 8))          # built and written
    files = list(tmp_path.glob("gnn-messages-*/*.npz"))
    assert len(files) == 1
    assert same(cached_message_graph(tiny_graph, 8))          # read back
    files[0].write_bytes(b"not an npz")                       # corrupt: detected, rebuilt
    assert same(cached_message_graph(tiny_graph, 8))
    assert np.load(files[0])["nbr"].shape == tuple(fresh.nbr.shape)


def test_refine_yields_exactly_k_legal_paths(untrained, tiny_graph, pairs):
    for src, dst in pairs[:4]:
        for k in (1, 3, 8, 17):
            paths = list(untrained.refine(tiny_graph, src, dst, steps=k))
            assert len(paths) == k
            for p in paths:
                assert p[0] == src and all(isinstance(c, int) for c in p)
                assert len(set(p)) == len(p)                      # never revisits a city
                assert citypath.evaluate_path(tiny_graph, p, src, dst)["illegal_jumps"] == 0


def test_same_city_and_bad_queries(untrained, tiny_graph):
    assert list(untrained.refine(tiny_graph, 3, 3, steps=4)) == [[3]] * 4
    with pytest.raises(ValueError):
        list(untrained.refine(tiny_graph, 0, 1, steps=0))
    with pytest.raises(ValueError):
        list(untrained.refine(tiny_graph, 0, tiny_graph.n_cities, steps=1))
    other = citypath.load_graph(states=["RI"])
    with pytest.raises(IncompatibleGraph):
        list(untrained.refine(other, 0, 1, steps=1))


def test_deterministic_and_thread_safe(untrained, tiny_graph, pairs):
    serial = [list(untrained.refine(tiny_graph, s, t, steps=6)) for s, t in pairs]
    assert serial == [list(untrained.refine(tiny_graph, s, t, steps=6, seed=9)) for s, t in pairs]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda st: list(untrained.refine(tiny_graph, *st, steps=6)), pairs))
    assert threaded == serial
    assert not torch.is_inference_mode_enabled()                  # the generator never leaks inference mode


def test_flops_per_step_is_positive(untrained, tiny_graph, pairs):
    assert untrained.flops_per_step(tiny_graph, *pairs[0]) > 0


def test_counted_operations_are_the_rounds_and_the_walk_each_step_ran(untrained, tiny_graph, pairs):
    """Each step's operations, pinned against a count by hand: the set-up over every city and message slot on
    step 1; per step its rounds over every city and slot and the read-out, from the config's dimensions; the
    walk re-read from each step's raw path (the neighbours of every city it decided at, a dead end included);
    the verifier on the step's path."""
    from citypath.models.gnn import graph_messages, max_hops_for

    g, m = tiny_graph, untrained
    c = m.config
    k, n = graph_messages(g, c.cones).nbr.shape
    d, mlp = c.hidden_dim, c.mlp_dim
    deg = np.diff(g.adjacency.indptr)
    setup = (20 * n + 3 * n + 2 * n + 3 * n + 3 * n                # straight km, node features
             + 4 * k * n + 2 * k * n + 2 * k * n                    # edge features
             + 2 * k * n * 2 * d + 2 * k * n * d                    # edge term (with the padding penalty)
             + 2 * n * 3 * mlp + 2 * n * 3 * d + n * d)             # recall term, initial state
    per_round = (2 * n * d * d + n * d + 3 * k * n * d + 2 * n * d
                 + 2 * n * 2 * d * mlp + 3 * n * mlp + 2 * n * mlp * d + n * d)
    readout = 2 * n * d + 5 * n
    for src, dst in pairs[:4]:
        steps = 5
        run = list(m.refine_with_compute(g, src, dst, steps))
        assert [p for p, _ in run] == list(m.refine(g, src, dst, steps))          # the same routes
        raw = list(m.decodes(g, src, dst, steps))
        cap = [max_hops_for(float(est[src]), g.radius_km) for est in m.estimates(g, src, dst, steps)]
        expected = []
        for step, (path, hops_cap) in enumerate(zip(raw, cap)):
            decided = path[:-1] + ([path[-1]] if path[-1] != dst and len(path) <= hops_cap else [])
            walk = n + sum(5 * deg[u] + 2 * deg[u] for u in decided)
            expected.append((setup if step == 0 else 0) + c.rounds_per_step * per_round + readout + walk
                            + 4 * (len(path) - 1))                  # + the verifier
        assert [f for _, f in run] == pytest.approx(expected, rel=1e-12)
    assert m.step_flops(g, 3, 3, 2) == [0.0, 0.0]


def _quality(g, paths, pairs):
    df = citypath.evaluate_paths(g, paths, [s for s, _ in pairs], [t for _, t in pairs])
    # An invalid path counts as ratio 3, so losing the target cannot look like an improvement.
    return df["valid"].mean(), np.where(df["valid"], df["length_ratio"], 3.0).mean()


def test_more_rounds_improve_a_learnable_case(trained, tiny_graph, detour_pairs):
    """Trained seconds on small regions, the model needs more rounds on detour pairs, and gets them."""
    model, _ = trained
    steps = (1, 2, 4, 8, 16, 32)
    refined = {k: [] for k in steps}
    raw = {k: [] for k in steps}
    for s, t in detour_pairs:
        paths = list(model.refine(tiny_graph, s, t, steps=max(steps)))
        keys = [(p[-1] != t, tiny_graph.path_length_km(p)) for p in paths]
        assert all(b <= a for a, b in zip(keys, keys[1:]))       # best-so-far: never worse with more steps
        decoded = list(model.decodes(tiny_graph, s, t, steps=max(steps)))
        for k in steps:
            refined[k].append(paths[k - 1])
            raw[k].append(decoded[k - 1])
    q = {k: _quality(tiny_graph, refined[k], detour_pairs) for k in steps}
    assert q[16][0] == 1.0 and q[16][1] < 1.08, q
    assert q[16][1] < q[1][1] - 0.03, q                          # thinking longer clearly helps
    raw_q = {k: _quality(tiny_graph, raw[k], detour_pairs) for k in steps}
    assert raw_q[16][1] < raw_q[1][1] - 0.03, raw_q              # ... in the raw decodes too, not only by keeping
    assert raw_q[32][1] <= raw_q[16][1] + 0.02, raw_q            # 2x the steps: no overthinking


def test_checkpoint_round_trip(trained, tiny_graph, pairs, tmp_path):
    from safetensors.torch import save_file

    from citypath.models.base import sha256_file

    model, task = trained
    weights = tmp_path / "gnn-tiny.safetensors"
    save_file(task.export(model.net), str(weights))
    card = dict(model.card, weights_sha256=sha256_file(weights))
    (tmp_path / "gnn-tiny.json").write_text(json.dumps(card))
    loaded = load_model("gnn-tiny", directory=tmp_path, graph=tiny_graph)
    assert isinstance(loaded, GNNModel) and loaded.num_parameters == model.num_parameters
    for s, t in pairs[:6]:
        assert list(loaded.refine(tiny_graph, s, t, steps=5)) == list(model.refine(tiny_graph, s, t, steps=5))
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(CheckpointError):
        load_model("gnn-tiny", directory=tmp_path)


def test_network_shapes():
    net = RecurrentMPNN(GNNConfig(hidden_dim=8))
    n, k = 10, 4
    nbr = torch.randint(0, n, (k, n))
    x, e = torch.rand(n, 3), torch.rand(k, n, 2)
    et, rt = net.edge_term(e, torch.zeros(k, n, dtype=torch.bool)), net.recall_term(x)
    h = net.round(net.initial_state(x), rt, nbr, et)
    assert h.shape == (n, 8) and net.detour(h).shape == (n,)


@pytest.mark.slow
@pytest.mark.skipif("gnn-small" not in list_models(), reason="gnn-small is not trained yet")
def test_shipped_checkpoint_scores_near_its_card(default_graph):
    model = load_model("gnn-small", graph=default_graph)
    card = model.card
    assert model.num_parameters == card["num_parameters"]
    k = str(model.max_steps)
    expected = card["metrics"]["by_steps"][k]
    srcs, dsts = sample_heldout_pairs(default_graph, 16, seed=card["metrics"].get("pair_seed", 0))
    paths = [list(model.refine(default_graph, int(s), int(t), steps=model.max_steps))[-1] for s, t in zip(srcs, dsts)]
    df = citypath.evaluate_paths(default_graph, paths, srcs, dsts)
    assert df["illegal_jumps"].sum() == 0
    assert df["valid"].mean() >= expected["valid"] - 0.1
    assert df.loc[df["valid"], "length_ratio"].mean() <= expected["length_ratio_mean"] + 0.02
