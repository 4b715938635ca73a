"""The depth-recurrent LM: a full-vocabulary transformer over city tokens whose test-time compute is loops of its
core; cached decoding against the teacher-forced pass, r = 1 against a plain unlooped pass, loops that cost
more, illegal jumps, its sampled loss, pure batches, its two modes, and the shipped checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import citypath
from citypath.evaluate import sample_heldout_pairs
from citypath.metrics import verifier_key
from citypath.models import list_models, load_model
from citypath.models.depthlm import DepthLM, DepthLMConfig, DepthLMModel, decode, sample_loops, token_ops
from citypath.models.postrnn import hop_cap
from citypath.tasks.postrnn import token_batch

TINY = dict(dim=16, heads=2, mlp_dim=24, fourier=4, loop_schedule=(1, 2, 3, 5))


@pytest.fixture(scope="module")
def untrained(tiny_graph):
    m = DepthLMModel.untrained(tiny_graph, DepthLMConfig(n_cities=tiny_graph.n_cities, **TINY), seed=0)
    # Larger weights than the initialisation's and no bias, so that choices vary by position (a sharper test).
    with torch.no_grad():
        gen = torch.Generator().manual_seed(1)
        for name, p in m.net.named_parameters():
            if "norm" not in name:
                scale = 0.0 if name == "bias" else 1.0 if name.split(".")[0] in ("table", "position") else 0.3
                p.copy_(torch.randn(p.shape, generator=gen) * scale)
    m.net._cities = None
    return m


@pytest.fixture(scope="module")
def pairs(tiny_graph):
    s, t = sample_heldout_pairs(tiny_graph, 8, seed=2)
    return list(zip(s.tolist(), t.tolist()))


def test_refine_yields_k_paths_one_per_loop_count_deterministically(untrained, tiny_graph, pairs):
    g, m = tiny_graph, untrained
    for s, t in pairs[:4]:
        paths = list(m.refine(g, s, t, steps=6))
        assert len(paths) == 6 and all(p[0] == s for p in paths)
        assert all(len(p) - 1 <= hop_cap(g, s, t, m.config.max_hops) for p in paths)
        assert paths == list(m.refine(g, s, t, steps=6))
        assert paths[:2] == list(m.refine(g, s, t, steps=2))
        # Step k is the greedy decode at the k-th loop count, as it is (not the best so far).
        for k, p in enumerate(paths, 1):
            loops = m.config.loop_schedule[min(k, 4) - 1]
            with torch.inference_mode():
                direct = decode(m.net, [s], [t], loops=loops, hop_caps=[hop_cap(g, s, t, m.config.max_hops)])[0]
            assert p == direct
    assert list(m.refine(g, 4, 4, steps=2)) == [[4], [4]]
    with pytest.raises(ValueError):
        list(m.refine(g, 0, 1, steps=0))
    # Past the schedule's last loop count the answer stands, and nothing more is computed.
    s, t = pairs[0]
    run = list(m.refine_with_compute(g, s, t, steps=7))
    assert [p for p, _ in run[4:]] == [run[3][0]] * 3 and [f for _, f in run[4:]] == [0.0] * 3


def test_cached_decoding_is_the_teacher_forced_pass(untrained, tiny_graph, pairs):
    """Each greedy choice of the cached, row-pruned batch decode is the argmax of one full causal pass over the
    decoded sequence, at every loop count."""
    m = untrained
    srcs, dsts = np.array([s for s, _ in pairs]), np.array([t for _, t in pairs])
    for loops in (1, 3):
        with torch.inference_mode():
            paths = decode(m.net, srcs, dsts, loops=loops, hop_caps=np.full(len(srcs), 12))
        assert len({c for p in paths for c in p[1:]}) > 10                 # choices that vary: a sharp test
        for p, t in zip(paths, dsts):
            with torch.inference_mode():
                tokens = torch.tensor([[p[0], int(t), *p]])
                z = m.net.run(tokens, 0, loops, targets=tokens[:, 1])
                chosen = m.net.logits(z, tokens).argmax(-1)[0, 2:].tolist()
            assert chosen[:len(p) - 1] == p[1:]


def test_one_loop_is_the_plain_unlooped_pass(untrained):
    """At r = 1 the network is prelude -> adapter([0, e]) -> core -> coda: a plain transformer, written here by
    hand from its parts (each position's input: its city's vector, its place's, the target's features)."""
    net = untrained.net
    tokens = torch.tensor([[3, 9, 3, 5, 7, 2]])
    with torch.inference_mode():
        x = net.city_vectors(tokens[0])[None] + net.position.weight[:6] + net.target(net.features[9])
        for layer in net.prelude:
            x = layer(x)
        s = net.adapter(torch.cat([torch.zeros_like(x), x], dim=-1))
        for layer in [*net.core, *net.coda]:
            s = layer(s)
        expected = net.norm(s)
        torch.testing.assert_close(net.run(tokens, 0, 1, targets=tokens[:, 1]), expected)
        assert not torch.allclose(net.run(tokens, 0, 2, targets=tokens[:, 1]), expected)   # a second loop counts


def test_an_unmasked_model_jumps_illegally_and_the_metrics_flag_it(untrained, tiny_graph, pairs):
    g = tiny_graph
    paths = [list(untrained.refine(g, s, t, steps=1))[0] for s, t in pairs]
    nbrs = [set(g.neighbors(a).tolist()) for a in range(g.n_cities)]
    assert any(b not in nbrs[a] for p in paths for a, b in zip(p, p[1:]))
    df = citypath.evaluate_paths(g, paths, *zip(*pairs))
    assert df["illegal_jumps"].sum() > 0 and not df["valid"].all()


def test_operations_grow_with_loops_and_match_a_count_by_hand(untrained, tiny_graph, pairs):
    g, m = tiny_graph, untrained
    c = m.config
    n = g.n_cities
    for s, t in pairs[:3]:
        run = list(m.refine_with_compute(g, s, t, steps=4))
        for k, (p, ops) in enumerate(run, 1):
            loops = c.loop_schedule[k - 1]
            hops = len(p) - 1
            expected = 6 + 3 * token_ops(c, loops, 2) + (20 if k == 1 else 0)     # bookkeeping, prompt, cap
            d = c.dim
            head = 2 * d * d + d + 2 * d * n + n + (2 * d * 3 + 6 + 2 * 2 * n + 5 * n)  # output, scores, place
            expected += hops * (head + 2 * n + 4 + 3)                             # each choice, its argmax
            expected += sum(token_ops(c, loops, j + 4) for j in range(hops - 1))  # each token fed back
            assert ops == pytest.approx(expected, rel=1e-12)
        # The same path length costs strictly more with more loops.
        per_token = [token_ops(c, r, 10) for r in c.loop_schedule]
        assert all(b > a for a, b in zip(per_token, per_token[1:]))


def test_samples_mode_is_best_of_n_at_fixed_loops(untrained, tiny_graph, pairs):
    g = tiny_graph
    m = untrained.variant("samples", loops=2)
    assert m.name.endswith(".samples") and m.config.sample_loops == 2
    for s, t in pairs[:3]:
        paths = list(m.refine(g, s, t, steps=36, seed=3))
        keys = [verifier_key(g, p, s, t) for p in paths]
        assert all(b <= a for a, b in zip(keys, keys[1:]))
        assert paths == list(m.refine(g, s, t, steps=36, seed=3))
        assert paths[:5] == list(m.refine(g, s, t, steps=5, seed=3))
    with pytest.raises(ValueError, match="test_time"):
        untrained.variant("beams")


def test_sampled_softmax_estimates_the_full_one_and_loops_are_drawn_per_batch():
    torch.manual_seed(0)
    xy = np.random.default_rng(0).uniform(0, 500, (50, 2))
    net = DepthLM(DepthLMConfig(n_cities=50, **TINY), xy)
    tokens, mask = token_batch([np.array([1, 5, 9, 3]), np.array([7, 2])])
    full, n = net(tokens, mask, torch.zeros(0, dtype=torch.int64), torch.tensor(3))
    every, n2 = net(tokens, mask, torch.arange(50), torch.tensor(3))
    assert n == n2 == 4
    torch.testing.assert_close(full, every)
    full.backward()
    assert net.adapter.weight.grad.abs().sum() > 0 and net.table.weight.grad.abs().sum() > 0
    c = DepthLMConfig(n_cities=50, loops_mean=4.0, loops_max=16)
    draws = [sample_loops(np.random.default_rng(i), c) for i in range(400)]
    assert 1 <= min(draws) and max(draws) <= 16 and 3.3 < np.mean(draws) < 4.7
    assert sample_loops(np.random.default_rng(0), DepthLMConfig(n_cities=50, loops_mean=1.0)) == 1


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="test_time"):
        DepthLMConfig(n_cities=5, test_time="think")
    with pytest.raises(ValueError, match="heads"):
        DepthLMConfig(n_cities=5, dim=10, heads=3)
    with pytest.raises(ValueError, match="loop_schedule"):
        DepthLMConfig(n_cities=5, loop_schedule=(0, 1))


def test_training_batches_are_pure_and_the_unlooped_control_is_the_same_network(tiny_graph, tmp_path):
    from types import SimpleNamespace

    from citypath.tasks.depthlm import training_task
    from citypath.training import train

    def task(*sets):
        args = SimpleNamespace(size="small", set=["dim=16", "heads=2", "mlp_dim=24", "fourier=4", "total_paths=1500",
                                                  "batch_paths=64", "epoch_paths=750", "val_paths=40",
                                                  "card_pairs=6", "steps_for_card=[1,3]", "spd_paths=20000",
                                                  "progress=false", *sets],
                               checkpoints=str(tmp_path / "ck"), runs=str(tmp_path / "runs"), command_line="(test)")
        return training_task(tiny_graph, args)

    looped, cfg = task()
    a, b = looped.batch(7, 0, 1)[0], looped.batch(7, 0, 1)[0]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert len({int(looped.batch(i, 0, 1)[0]["loops"]) for i in range(20)}) > 2
    control, control_cfg = task("unlooped=true")
    assert control_cfg.name == "depth-lm-small-unlooped" and control.config.test_time == "samples"
    assert {int(control.batch(i, 0, 1)[0]["loops"]) for i in range(20)} == {1}
    count = lambda t: sum(p.numel() for p in t.build_model().parameters())  # noqa: E731
    assert count(looped) == count(control)                                  # loops are the only difference
    train(control, tiny_graph, control_cfg)
    m = load_model("depth-lm-small-unlooped", directory=tmp_path / "ck", graph=tiny_graph)
    assert m.family == "depthlm" and "unlooped" in m.card["description"].lower() and m.card["anatomy"]
    assert {"val_loss", "val_passes_three_checks"} <= set(m.card["curves"][-1])
    s, t = sample_heldout_pairs(tiny_graph, 1, seed=0)
    assert len(list(m.refine(tiny_graph, int(s[0]), int(t[0]), steps=3))) == 3


SHIPPED = ["depth-lm-small", "depth-lm-small-unlooped", "depth-lm-large", "depth-lm-large-unlooped"]


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_checkpoint_scores_near_its_card(name, default_graph):
    if name not in list_models():
        pytest.skip(f"{name} is not trained yet")
    model = load_model(name, graph=default_graph)
    card = model.card
    expected = card["metrics"]["by_steps"]["1"]
    srcs, dsts = sample_heldout_pairs(default_graph, 24, seed=card["metrics"].get("pair_seed", 0))
    paths = [list(model.refine(default_graph, int(s), int(t), steps=1))[0] for s, t in zip(srcs, dsts)]
    df = citypath.evaluate_paths(default_graph, paths, srcs, dsts)
    assert abs(df["reaches_target"].mean() - expected["reaches_target"]) <= 0.25
    assert abs(df["valid"].mean() - expected["valid"]) <= 0.25


def test_the_local_estimate_is_exact_when_the_negatives_are_every_city(tiny_graph):
    """With every city as a negative, the local sets' exact part replaces their sampled part: the loss is the full
    cross-entropy again; with a few negatives it stays finite and carries gradients."""
    from citypath.models.depthlm import city_xy_km
    from citypath.tasks.depthlm import local_sets

    g = tiny_graph
    torch.manual_seed(0)
    net = DepthLM(DepthLMConfig(n_cities=g.n_cities, **TINY), city_xy_km(g.lat, g.lon))
    with torch.no_grad():
        net.aim.bias.copy_(torch.tensor([0.0, 0.0, 6.0]))        # a sharp place term: the local cities matter
    ids, km = local_sets(g, 8)
    assert (ids[:, 0] == torch.arange(g.n_cities)).all() and (km >= 0).all()
    paths = [np.asarray(g.shortest_path(s, t)) for s, t in [(407, 117), (489, 182), (307, 514)]]
    tokens, mask = token_batch(paths)
    local = dict(local=ids[tokens[:, :-1]], local_km=km[tokens[:, :-1]] + 1e-3)
    full, _ = net(tokens, mask, torch.zeros(0, dtype=torch.int64), torch.tensor(2))
    every, _ = net(tokens, mask, torch.arange(g.n_cities), torch.tensor(2), **local)
    torch.testing.assert_close(full, every)
    few, _ = net(tokens, mask, torch.arange(0, g.n_cities, 7), torch.tensor(2), **local)
    few.backward()
    assert torch.isfinite(few) and net.aim.weight.grad.abs().sum() > 0
