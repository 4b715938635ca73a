"""The GRU baseline through the routing protocol: K paths, determinism, threads, checkpoints, bad input."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import citypath
from citypath.evaluate import sample_heldout_pairs
from citypath.metrics import verifier_key
from citypath.models import CheckpointError, IncompatibleGraph, ModelNotFound, load_model


@pytest.fixture(scope="module")
def model(tiny_gru_dir, tiny_graph):
    return load_model("gru-tiny", directory=tiny_gru_dir, graph=tiny_graph)


@pytest.fixture(scope="module")
def pairs(tiny_graph):
    s, t = sample_heldout_pairs(tiny_graph, 16, seed=3)
    return list(zip(s.tolist(), t.tolist()))


def test_refine_yields_exactly_k_paths_from_src(model, tiny_graph, pairs):
    src, dst = pairs[0]
    for k in (1, 2, 5, 33, 40):                  # 33+ crosses a chunk of 32 samples
        paths = list(model.refine(tiny_graph, src, dst, steps=k))
        assert len(paths) == k
        assert all(p[0] == src and all(isinstance(c, int) for c in p) for p in paths)


def test_step_k_never_worse_than_step_k_minus_1(model, tiny_graph, pairs):
    for src, dst in pairs[:6]:
        keys = [verifier_key(tiny_graph, p, src, dst) for p in model.refine(tiny_graph, src, dst, steps=12)]
        assert all(b <= a for a, b in zip(keys, keys[1:]))


def test_neighbour_decoding_never_jumps_illegally(model, tiny_graph, pairs):
    for src, dst in pairs:
        for p in model.refine(tiny_graph, src, dst, steps=4):
            assert citypath.evaluate_path(tiny_graph, p, src, dst)["illegal_jumps"] == 0
            assert len(set(p)) == len(p)         # no city visited twice


def test_same_city_gives_one_city_path(model, tiny_graph):
    assert list(model.refine(tiny_graph, 7, 7, steps=3)) == [[7], [7], [7]]


def test_deterministic_for_a_seed_and_prefix_consistent(model, tiny_graph, pairs):
    src, dst = pairs[1]
    a = list(model.refine(tiny_graph, src, dst, steps=16, seed=5))
    b = list(model.refine(tiny_graph, src, dst, steps=16, seed=5))
    c = list(model.refine(tiny_graph, src, dst, steps=40, seed=5))
    assert a == b == c[:16]


def test_thread_safe_under_16_concurrent_callers(model, tiny_graph, pairs):
    def run(pair):
        return list(model.refine(tiny_graph, *pair, steps=6, seed=1))

    expected = [run(p) for p in pairs]
    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(run, pairs * 2))
    assert got == expected * 2


def test_bad_queries_are_refused(model, tiny_graph):
    with pytest.raises(ValueError):
        list(model.refine(tiny_graph, 0, 1, steps=0))
    with pytest.raises(ValueError):
        list(model.refine(tiny_graph, 0, tiny_graph.n_cities, steps=1))
    with pytest.raises(ValueError):
        list(model.refine(tiny_graph, 0, 1.5, steps=1))


def test_refuses_another_graph(model, ri_graph):
    with pytest.raises(IncompatibleGraph, match="trained on graph"):
        list(model.refine(ri_graph, 0, 1, steps=1))


def test_flops_per_step_is_positive(model, tiny_graph, pairs):
    assert model.flops_per_step(tiny_graph, *pairs[0]) > 0
    assert model.num_parameters > 1000 and model.family == "gru" and model.max_steps == 4


def test_card_follows_the_shared_schema(tiny_gru_dir):
    card = json.loads((tiny_gru_dir / "gru-tiny.json").read_text())
    for key in ("name", "family", "size", "num_parameters", "max_steps", "config", "graph", "training", "curves",
                "metrics", "weights_sha256"):
        assert key in card
    assert card["curves"] and {"train_loss", "val_loss", "val_valid", "val_length_ratio"} <= set(card["curves"][0])
    assert set(card["metrics"]["by_steps"]) == {"1", "4"}


@pytest.fixture()
def copy_dir(tiny_gru_dir, tmp_path):
    shutil.copy(tiny_gru_dir / "gru-tiny.json", tmp_path / "gru-tiny.json")
    shutil.copy(tiny_gru_dir / "gru-tiny.safetensors", tmp_path / "gru-tiny.safetensors")
    return tmp_path


def test_round_trip_gives_identical_paths(model, copy_dir, tiny_graph, pairs):
    again = load_model("gru-tiny", directory=copy_dir)
    src, dst = pairs[2]
    assert list(again.refine(tiny_graph, src, dst, steps=5)) == list(model.refine(tiny_graph, src, dst, steps=5))


def test_unknown_name_lists_the_available_ones(copy_dir):
    with pytest.raises(ModelNotFound, match="available: gru-tiny"):
        load_model("gru-huge", directory=copy_dir)


def test_truncated_weights_name_the_file(copy_dir):
    w = copy_dir / "gru-tiny.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="gru-tiny.safetensors"):
        load_model("gru-tiny", directory=copy_dir)


def test_corrupt_weights_without_a_card_hash_still_fail_cleanly(copy_dir):
    card = json.loads((copy_dir / "gru-tiny.json").read_text())
    del card["weights_sha256"]
    (copy_dir / "gru-tiny.json").write_text(json.dumps(card))
    w = copy_dir / "gru-tiny.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="gru-tiny.safetensors"):
        load_model("gru-tiny", directory=copy_dir)


def test_weights_that_do_not_match_the_card_hash_are_refused(copy_dir):
    w = copy_dir / "gru-tiny.safetensors"
    data = bytearray(w.read_bytes())
    data[-3] ^= 0xFF                             # one flipped byte inside a tensor: still parses
    w.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match its card"):
        load_model("gru-tiny", directory=copy_dir)


def test_corrupt_card_names_the_file(copy_dir):
    (copy_dir / "gru-tiny.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="gru-tiny.json"):
        load_model("gru-tiny", directory=copy_dir)


def test_wrong_graph_at_load_time(copy_dir, ri_graph):
    with pytest.raises(IncompatibleGraph):
        load_model("gru-tiny", directory=copy_dir, graph=ri_graph)


def test_training_batches_are_a_pure_function_of_step(tiny_graph, tiny_gru_dir):
    from citypath.models.gru import GRUConfig
    from citypath.tasks.gru import GRUTask
    from citypath.training import TrainConfig

    cfg = TrainConfig(name="x", spd_paths=20000, val_paths=50, progress=False)
    task = GRUTask(tiny_graph, "small", GRUConfig(n_cities=tiny_graph.n_cities), cfg)
    (a, na), (b, nb) = task.batch(3, 0, 1), task.batch(3, 0, 1)
    assert na == nb and all(np.array_equal(a[k], b[k]) for k in a)
    c, _ = task.batch(3, 1, 2)
    assert not np.array_equal(a["paths"], c["paths"])


def test_every_prediction_has_its_true_next_city_among_its_candidates(tiny_graph):
    from citypath.tasks.gru import make_batch

    paths = [np.array(tiny_graph.shortest_path(s, t)) for s, t in [(0, 300), (5, 6), (400, 17), (9, 250)]]
    b = make_batch(paths, tiny_graph.adjacency, "neighbors")
    predictions = int((b["lengths"] - 1).sum())
    per_prediction = np.bincount(b["cand_owner"].numpy(), weights=b["cand_target"].numpy(), minlength=predictions)
    assert np.array_equal(per_prediction, np.ones(predictions))


def test_counted_operations_are_the_hops_each_sample_decoded(tiny_graph, pairs):
    """Each step's operations, pinned against a count by hand: the candidate of that step (greedy, then samples
    in chunks of 32) re-read for the hops its decode ran and each hop's candidate columns (the widest live row of
    its batch), per hop the GRU cell, heads and per-candidate work from the config's dimensions, per decode the
    set-up (the revisit mask over every city, the graph's widest row), shared by its rows, and the verifier."""
    import torch

    from citypath.models.gru import SAMPLE_CHUNK, GRUConfig, GRUModel, GRUNet, city_xy

    g = tiny_graph
    n_cities, e, h = g.n_cities, 8, 16
    config = GRUConfig(n_cities=n_cities, embed_dim=e, hidden_dim=h)
    torch.manual_seed(0)
    net = GRUNet(config, city_xy(g.lat, g.lon))
    card = {"name": "gru-untrained", "family": "gru", "num_parameters": 1, "max_steps": 4,
            "graph": {"fingerprint": g.fingerprint, "config": {}}}
    m = GRUModel("gru-untrained", card, net)
    deg = np.diff(g.adjacency.indptr)
    in_dim = 2 * e + 3
    per_row = (in_dim + 6 + 2 * in_dim * 3 * h + 2 * h * 3 * h + 20 * h + 2 * h      # inputs, GRU cell, state
               + (h + e) + 2 * (h + e) * (e + 4) + (e + 4) + 6 + 5)                    # heads, km left, bookkeeping

    def per_candidate(sampled):   # token gather, dot, bias; masks; hop geometry; Gumbel draw
        return e + 2 * e + 2 + 10 + 32 + 9 * sampled

    def batch_ops(paths, src, dst, sampled):
        n = len(paths)
        hops = [len(p) - 1 if p[-1] == dst or len(p) - 1 == config.max_hops else len(p) for p in paths]
        ops = np.full(n, (2 * n + 2 * n * e + n * (in_dim + 6) + 2 * n * in_dim * h + 3 * n * h + n * n_cities + n
                          + n_cities + 2 * n_cities) / n)
        for j in range(max(hops)):
            live = [i for i in range(n) if hops[i] > j]
            width = max(deg[paths[i][j]] for i in live)
            shared = 2 * n + (SAMPLE_CHUNK * deg.max() if sampled else 0)
            for i in live:
                ops[i] += per_row + width * per_candidate(sampled) + 2 * width + shared / len(live)
        return ops

    for src, dst in pairs[:3]:
        steps = SAMPLE_CHUNK + 3                          # greedy, a full chunk of samples, and 2 more
        run = list(m.refine_with_compute(g, src, dst, steps, seed=4))
        assert [p for p, _ in run] == list(m.refine(g, src, dst, steps, seed=4))    # the same routes
        raw = [p for p, _ in m._candidates(g, src, dst, steps, 4)]
        expected = list(batch_ops(raw[:1], src, dst, False))
        for lo in range(1, steps, SAMPLE_CHUNK):
            expected += list(batch_ops(raw[lo:lo + SAMPLE_CHUNK], src, dst, True))
        expected = [x + 4 * (len(p) - 1) for x, p in zip(expected, raw)]             # + the verifier
        assert [f for _, f in run] == pytest.approx(expected, rel=1e-12)
    assert m.step_flops(g, 5, 5, 3) == [0.0, 0.0, 0.0]
