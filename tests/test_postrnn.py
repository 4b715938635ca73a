"""The post's RNN: a full-vocabulary next-city model that can jump illegally, through the routing protocol;
its sampled training loss, pure batches, checkpoint round trip, and the shipped checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import citypath
from citypath.evaluate import sample_heldout_pairs
from citypath.metrics import verifier_key
from citypath.models import list_models, load_model
from citypath.models.postrnn import PostRNN, PostRNNConfig, PostRNNModel, hop_cap
from citypath.tasks.postrnn import token_batch


@pytest.fixture(scope="module")
def untrained(tiny_graph):
    return PostRNNModel.untrained(tiny_graph, PostRNNConfig(n_cities=tiny_graph.n_cities, embed_dim=16,
                                                            hidden_dim=16), seed=0)


@pytest.fixture(scope="module")
def pairs(tiny_graph):
    s, t = sample_heldout_pairs(tiny_graph, 8, seed=2)
    return list(zip(s.tolist(), t.tolist()))


def test_an_unmasked_model_jumps_illegally_and_the_metrics_flag_it(untrained, tiny_graph, pairs):
    g = tiny_graph
    paths = [list(untrained.refine(g, s, t, steps=1))[0] for s, t in pairs]
    nbrs = [set(g.adjacency.indices[g.adjacency.indptr[a]:g.adjacency.indptr[a + 1]]) for a in range(g.n_cities)]
    non_neighbour = [(a, b) for p in paths for a, b in zip(p, p[1:]) if b not in nbrs[a]]
    assert non_neighbour                                   # the softmax covers every city: nothing forbids it
    df = citypath.evaluate_paths(g, paths, *zip(*pairs))
    assert df["illegal_jumps"].sum() > 0 and not df["valid"].all()


def test_refine_yields_k_paths_best_so_far_and_is_deterministic(untrained, tiny_graph, pairs):
    g = tiny_graph
    for s, t in pairs[:4]:
        paths = list(untrained.refine(g, s, t, steps=40, seed=3))
        assert len(paths) == 40 and all(p[0] == s for p in paths)
        assert all(len(p) - 1 <= hop_cap(g, s, t, untrained.config.max_hops) for p in paths)
        keys = [verifier_key(g, p, s, t) for p in paths]
        assert all(b <= a for a, b in zip(keys, keys[1:]))
        assert paths == list(untrained.refine(g, s, t, steps=40, seed=3))
        assert paths[:5] == list(untrained.refine(g, s, t, steps=5, seed=3))    # a prefix of a longer run
    assert list(untrained.refine(g, 4, 4, steps=2)) == [[4], [4]]
    assert untrained.flops_per_step(g, *pairs[0]) > 0
    with pytest.raises(ValueError):
        list(untrained.refine(g, 0, 1, steps=0))


def test_several_queries_decoded_together_give_each_its_own_steps_and_counted_work(untrained, tiny_graph, pairs):
    # A crowd's queries in one batch (`refine_many`, what the app's workers do): every query's paths and counted
    # operations are those it has alone, over two chunks of samples, with a same-city query among them.
    g = tiny_graph
    queries = [*pairs[:5], (4, 4)]
    together = untrained.refine_many(g, queries, 40, seed=3)
    alone = [list(untrained.refine_with_compute(g, s, t, 40, seed=3)) for s, t in queries]
    assert [[p for p, _ in run] for run in together] == [[p for p, _ in run] for run in alone]
    for run, ref in zip(together, alone):
        np.testing.assert_allclose([f for _, f in run], [f for _, f in ref], rtol=1e-12)
    assert together[-1] == [([4], 0.0)] * 40
    with pytest.raises(ValueError):
        untrained.refine_many(g, [pairs[0], (0, g.n_cities)], 4)


def test_a_crowds_greedy_steps_are_decoded_as_one_batch_counted_as_each_alone(untrained, tiny_graph, pairs,
                                                                              monkeypatch):
    from citypath.models import postrnn

    g, queries = tiny_graph, pairs[:5]
    calls = []
    decode = postrnn.decode
    monkeypatch.setattr(postrnn, "decode", lambda *a, **kw: calls.append((len(a[1]), kw["greedy"])) or decode(*a, **kw))
    together = untrained.refine_many(g, queries, 3, seed=1)
    assert calls[0] == (len(queries), True) and all(not greedy for _, greedy in calls[1:])
    alone = [list(untrained.refine_with_compute(g, s, t, 3, seed=1)) for s, t in queries]
    assert [run[0] for run in together] == [run[0] for run in alone]        # step 1: the greedy path, its operations
    with pytest.raises(ValueError, match="generators"):
        decode(untrained.net, np.array([0, 1]), np.array([2, 3]), greedy=False, blocks=2)


def test_decoding_scores_are_the_models_and_follow_its_weights():
    # Decoding reads a transposed copy of the city table (faster with a few rows): the same scores as `logits`,
    # to float32's last bits, for one row and many, and a new copy once the weights change (training, a load).
    torch.manual_seed(0)
    net = PostRNN(PostRNNConfig(n_cities=300, embed_dim=24, hidden_dim=16))
    for rows in (1, 3, 16):
        h = torch.randn(rows, 16)
        with torch.inference_mode():
            torch.testing.assert_close(net.decode_logits(h), net.logits(h), rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        net.embed.weight.mul_(-2.0)                       # an in-place change, as an optimiser step makes
    h = torch.randn(2, 16)
    with torch.inference_mode():
        torch.testing.assert_close(net.decode_logits(h), net.logits(h), rtol=1e-5, atol=1e-5)
    net.load_state_dict(PostRNN(PostRNNConfig(n_cities=300, embed_dim=24, hidden_dim=16)).state_dict())
    with torch.no_grad():
        torch.testing.assert_close(net.decode_logits(h), net.logits(h), rtol=1e-5, atol=1e-5)


def test_many_rows_are_scored_by_blocks_of_the_city_table_as_the_whole_product_scores_them(monkeypatch):
    from citypath.models import postrnn

    torch.manual_seed(0)
    net = PostRNN(PostRNNConfig(n_cities=300, embed_dim=24, hidden_dim=16))
    monkeypatch.setattr(postrnn, "BLOCK_COLS", 64)                      # 5 blocks, the last one short
    h = torch.randn(postrnn.BLOCKS_FROM_ROWS + 7, 16)
    with torch.inference_mode():
        blocks = net.decode_logits(h)
        monkeypatch.setattr(postrnn, "BLOCKS_FROM_ROWS", 1 << 30)
        whole = net.decode_logits(h)
    assert blocks.shape == (len(h), 300)
    torch.testing.assert_close(blocks, whole, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(blocks, net.logits(h), rtol=1e-5, atol=1e-5)


def test_sampled_softmax_estimates_the_full_one():
    """With every city as a negative the sampled loss is the full cross-entropy (the correction is log 1 = 0)."""
    torch.manual_seed(0)
    net = PostRNN(PostRNNConfig(n_cities=50, embed_dim=8, hidden_dim=8))
    tokens, mask = token_batch([np.array([1, 5, 9, 3]), np.array([7, 2])])
    full, n = net(tokens, mask, torch.zeros(0, dtype=torch.int64))
    every, n2 = net(tokens, mask, torch.arange(50))
    assert n == n2 == 4                                    # 3 + 1 hops predicted; the prompt is not
    torch.testing.assert_close(full, every)
    few, _ = net(tokens, mask, torch.arange(10))
    assert torch.isfinite(few)


def test_training_batches_are_pure_and_the_card_says_what_it_is(tiny_graph, tmp_path):
    from citypath.tasks.postrnn import PostRNNTask
    from citypath.training import TrainConfig, train

    cfg = TrainConfig(name="post-rnn-tiny", total_paths=3000, batch_paths=64, epoch_paths=1500, val_paths=40,
                      card_pairs=10, steps_for_card=(1, 4), spd_paths=20000, progress=False,
                      checkpoints_dir=str(tmp_path / "ck"), runs_dir=str(tmp_path / "runs"))
    task = PostRNNTask(tiny_graph, "small", PostRNNConfig(n_cities=tiny_graph.n_cities, embed_dim=16,
                                                          hidden_dim=16, train_negatives=64), cfg, command="(test)")
    a, b = task.batch(7, 0, 1)[0], task.batch(7, 0, 1)[0]
    assert all(torch.equal(a[k], b[k]) for k in a)
    train(task, tiny_graph, cfg)
    m = load_model("post-rnn-tiny", directory=tmp_path / "ck", graph=tiny_graph)
    assert m.family == "postrnn" and "full-vocabulary" in m.card["description"]
    point = m.card["curves"][-1]
    assert {"val_loss", "val_passes_three_checks", "val_illegal_hop_rate", "val_bounded"} <= set(point)
    s, t = sample_heldout_pairs(tiny_graph, 1, seed=0)
    assert len(list(m.refine(tiny_graph, int(s[0]), int(t[0]), steps=3))) == 3


@pytest.mark.slow
@pytest.mark.parametrize("name", ["post-rnn-small", "post-rnn-large"])
def test_shipped_checkpoint_scores_near_its_card(name, default_graph):
    if name not in list_models():
        pytest.skip(f"{name} is not trained yet")
    model = load_model(name, graph=default_graph)
    card = model.card
    assert model.num_parameters == card["num_parameters"]
    expected = card["metrics"]["by_steps"]["1"]
    srcs, dsts = sample_heldout_pairs(default_graph, 24, seed=card["metrics"].get("pair_seed", 0))
    paths = [list(model.refine(default_graph, int(s), int(t), steps=1))[0] for s, t in zip(srcs, dsts)]
    df = citypath.evaluate_paths(default_graph, paths, srcs, dsts)
    assert abs(df["reaches_target"].mean() - expected["reaches_target"]) <= 0.25
    assert abs(df["valid"].mean() - expected["valid"]) <= 0.25


def test_the_harness_reports_nll_for_language_models_only(untrained, tiny_graph):
    from citypath.evaluate import evaluate_model
    from citypath.models.bellman import BellmanModel

    s, t = sample_heldout_pairs(tiny_graph, 3, seed=1)
    out = evaluate_model(untrained, tiny_graph, s, t, steps=(1,), bootstrap=0, progress=False)
    # An untrained model spreads its mass over every city: NLL near log(n_cities).
    assert abs(out["nll_per_city"] - np.log(tiny_graph.n_cities)) < 1.0 and out["nll_pairs"] == 3
    other = evaluate_model(BellmanModel.untrained(tiny_graph), tiny_graph, s, t, steps=(1,), bootstrap=0,
                           progress=False)
    assert "nll_per_city" not in other


def test_counted_operations_are_the_hops_each_sample_decoded(untrained, tiny_graph, pairs):
    """Each step's operations, pinned against a count by hand: the candidate of that step (greedy, then samples
    in chunks of 32) re-read for the hops its decode ran; per hop the GRU cell and the full-vocabulary output
    layer from the config's dimensions and n_cities, the choice (argmax, or softmax and a search over every
    city), per decode the prompt shared by its rows; the hop cap's straight line on step 1; the verifier."""
    from citypath.models.postrnn import SAMPLE_CHUNK

    g, m = tiny_graph, untrained
    n_cities, e, h = g.n_cities, 16, 16
    cell = 2 * e * 3 * h + 2 * h * 3 * h + 20 * h + 2 * h                    # GRU cell, state read and written

    def per_hop(sampled):
        out = e + cell + 2 * h * e + e + 2 * e * n_cities + n_cities + 3     # embedding, cell, output layer
        return out + (n_cities + 5 * n_cities + n_cities + 2 + np.log2(n_cities) + 1 if sampled else 2 * n_cities)

    def batch_ops(paths, sampled):
        n = len(paths)
        hops = [len(p) - 1 for p in paths]
        ops = np.full(n, (n * (2 * e + 2 * cell) + 6 * n) / n)              # the prompt
        for j in range(max(hops)):
            live = [i for i in range(n) if hops[i] > j]
            for i in live:
                ops[i] += per_hop(sampled) + (4 * n + (SAMPLE_CHUNK if sampled else 0)) / len(live)
        return ops

    for src, dst in pairs[:3]:
        steps = SAMPLE_CHUNK + 3
        run = list(m.refine_with_compute(g, src, dst, steps, seed=2))
        assert [p for p, _ in run] == list(m.refine(g, src, dst, steps, seed=2))     # the same routes
        raw = [p for p, _ in m._candidates(g, src, dst, steps, 2)]
        expected = list(batch_ops(raw[:1], False))
        for lo in range(1, steps, SAMPLE_CHUNK):
            expected += list(batch_ops(raw[lo:lo + SAMPLE_CHUNK], True))
        expected[0] += 20                                                   # the hop cap's straight line
        expected = [x + 4 * (len(p) - 1) for x, p in zip(expected, raw)]   # + the verifier
        assert [f for _, f in run] == pytest.approx(expected, rel=1e-12)
