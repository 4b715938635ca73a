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
