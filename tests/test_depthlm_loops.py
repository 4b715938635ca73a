"""The loops study (experiments/depthlm_loops.py) on a tiny graph with untrained models: its entry, the README
block made from it, and the Test-time compute page's tables and charts; a missing or broken report is said."""

from __future__ import annotations

import json

import pytest

from citypath.app import loops
from citypath.evaluate import sample_heldout_pairs
from citypath.findings import depthlm_loops
from citypath.models.depthlm import DepthLMConfig, DepthLMModel
from citypath.models.postrnn import PostRNNConfig, PostRNNModel
from experiments.depthlm_loops import measure

TINY = dict(dim=16, heads=2, mlp_dim=24, fourier=4, loop_schedule=(1, 2, 4, 8, 16), loops_mean=4.0)


@pytest.fixture(scope="module")
def report(tiny_graph):
    g = tiny_graph
    n = g.n_cities
    model = DepthLMModel.untrained(g, DepthLMConfig(n_cities=n, **TINY), name="depth-lm-tiny")
    ctrl = DepthLMModel.untrained(g, DepthLMConfig(n_cities=n, **{**TINY, "loops_mean": 1.0, "test_time": "samples",
                                                                 "sample_loops": 1}), name="depth-lm-tiny-unlooped")
    post = PostRNNModel.untrained(g, PostRNNConfig(n_cities=n, embed_dim=8, hidden_dim=8), name="post-rnn-tiny")
    srcs, dsts = sample_heldout_pairs(g, 5, seed=1)
    entry = measure(g, srcs, dsts, model, ctrl, post)
    return {"command": "(test)", "pairs": {"n": 5, "seed": 1, "heldout": True}, "sizes": {"tiny": entry}}


def test_the_entry_holds_every_loop_count_and_the_paired_checks(report):
    e = report["sizes"]["tiny"]
    assert [r["loops"] for r in e["loops"]] == [1, 2, 4, 8, 16]
    ops = [r["ops_mean"] for r in e["loops"]]
    assert all(b > a for a, b in zip(ops, ops[1:]))                       # more loops, more operations
    for r in e["loops"]:
        lo, hi = r["nll_per_city"]["ci95"]
        assert lo <= r["nll_per_city"]["value"] <= hi
    assert set(e["best_of"]) == {"post-rnn-tiny", "depth-lm-tiny-unlooped", "depth-lm-tiny.samples"}
    for curve in e["best_of"].values():
        passes = [r["passes_three_checks"]["value"] for r in curve]
        assert all(b >= a for a, b in zip(passes, passes[1:]))             # the verifier keeps the best
        assert [r["n"] for r in curve] == [1, 2, 4, 8, 16, 32]
    assert e["paired"]["passes_4x_mean_minus_mean"]["loops"] == [16, 4]
    assert e["batched_agrees_with_refine"] == 1.0
    assert e["paired"]["passes_rmax_minus_r1"]["loops"] == [16, 1]
    for row in e["equal_compute"]["post-rnn-tiny"]:
        assert row["n"] is None or row["n_ops"] <= row["loops_ops"]
    json.dumps(report)                                                     # all plain JSON


def test_the_readme_block_and_the_page_read_the_report(report, tmp_path):
    text = depthlm_loops(report)
    assert "`depth-lm-tiny`" in text and "depth-lm-tiny-unlooped" in text and text.count("\n| ") >= 5
    curve, samples = loops.loops_table(report), loops.best_of_table(report)
    assert len(curve) == 5 and len(samples) == 18
    loops.nll_chart(curve).to_dict()
    loops.passes_chart(curve, samples).to_dict()
    path = tmp_path / "r.json"
    path.write_text(json.dumps(report))
    assert loops.load_report(path)[0] == report


def test_a_missing_or_broken_report_is_said(tmp_path):
    assert "does not exist" in loops.load_report(tmp_path / "none.json")[1]
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert "cannot be read" in loops.load_report(bad)[1]
    bad.write_text(json.dumps({"sizes": {}}))
    assert "nothing measured" in loops.load_report(bad)[1]
    assert "No depth-recurrent LM" in depthlm_loops({"sizes": {}})


def test_a_size_without_its_control_is_measured_and_says_so(tiny_graph):
    g = tiny_graph
    model = DepthLMModel.untrained(g, DepthLMConfig(n_cities=g.n_cities, **TINY), name="depth-lm-tiny")
    post = PostRNNModel.untrained(g, PostRNNConfig(n_cities=g.n_cities, embed_dim=8, hidden_dim=8),
                                  name="post-rnn-tiny")
    srcs, dsts = sample_heldout_pairs(g, 3, seed=1)
    entry = measure(g, srcs, dsts, model, None, post, own_samples=False)
    assert entry["control"] is None and set(entry["best_of"]) == {"post-rnn-tiny"}
    assert not any("control" in k for k in entry["paired"])
    text = depthlm_loops({"command": "(test)", "pairs": {"n": 3, "seed": 1}, "sizes": {"tiny": entry}})
    assert "No unlooped control" in text


def test_a_split_study_reuses_finished_curves_and_gives_the_same_entry(tiny_graph, tmp_path, monkeypatch):
    """The large size's study may run in parts (the looped model's curve while its control still trains): a second
    run on the same weights and pairs reads the stored curves instead of decoding again, and its entry is the
    first one's; other pairs are computed anew."""
    import experiments.depthlm_loops as study

    g = tiny_graph
    model = DepthLMModel.untrained(g, DepthLMConfig(n_cities=g.n_cities, **TINY), name="depth-lm-tiny")
    post = PostRNNModel.untrained(g, PostRNNConfig(n_cities=g.n_cities, embed_dim=8, hidden_dim=8),
                                  name="post-rnn-tiny")
    srcs, dsts = sample_heldout_pairs(g, 4, seed=3)
    first = measure(g, srcs, dsts, model, None, post, own_samples=False, cache=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2                         # the loops curve, the post RNN's best-of
    monkeypatch.setattr(study, "batched_steps", lambda *a, **k: pytest.fail("decoded again"))
    monkeypatch.setattr(study, "run_steps", lambda *a, **k: pytest.fail("decoded again"))
    again = measure(g, srcs, dsts, model, None, post, own_samples=False, cache=tmp_path)
    assert json.dumps(again, sort_keys=True) == json.dumps(first, sort_keys=True)
    with pytest.raises(pytest.fail.Exception, match="decoded again"):
        measure(g, *sample_heldout_pairs(g, 4, seed=4), model, None, post, own_samples=False, cache=tmp_path)
