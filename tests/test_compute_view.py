"""Compute made visible: the frontier's findings, equal-compute steps, and interesting pairs derived from results."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from citypath import pairs, replay
from citypath.app import picks, tables
from citypath.view import present


def _table() -> pd.DataFrame:
    rows = []
    for k, fl, r, v in ((1, 1e6, 1.05, 0.90), (8, 8e6, 1.01, 0.995), (32, 3.2e7, 1.001, 1.0)):
        rows.append({"model": "small", "steps": k, "flops_total": fl, "length_ratio_mean": r, "valid": v})
    for k, fl, r, v in ((1, 2e7, 1.004, 1.0), (32, 6.4e8, 1.002, 1.0)):
        rows.append({"model": "big", "steps": k, "flops_total": fl, "length_ratio_mean": r, "valid": v})
    return tables.frontier_table(pd.DataFrame(rows))


def test_best_at_budget_needs_valid_routes_and_stays_within_the_budget():
    f = _table()
    assert tables.best_at_budget(f, 5e5) is None
    assert tables.best_at_budget(f, 2e6) is None                       # 90% valid does not count
    row = tables.best_at_budget(f, 1e7)
    assert (row["model"], row["steps"]) == ("small", 8)
    row = tables.best_at_budget(f, 1e9)
    assert (row["model"], row["steps"]) == ("small", 32)                   # cheaper and shorter than big
    lines = tables.frontier_findings(f, budgets=(1e6, 1e8))
    assert "no row routes" in lines[0] and "**small** at 32 steps" in lines[1]


def test_findings_name_the_best_learned_model_beside_a_classical_row_that_wins():
    f = _table()
    floor = f[f["model"] == "small"].copy()
    floor["model"], floor["kind"], floor["ratio"], floor["valid"] = "astar", "no learning", 1.0, 1.0
    f = pd.concat([f, floor], ignore_index=True)
    [line] = tables.frontier_findings(f, budgets=(1e9,))
    assert line.index("**astar** (no learning)") < line.index("the best learned model there is **small**")


def _replay_with_flops(flops):
    df = pd.DataFrame({"step": np.arange(1, len(flops) + 1), "flops": flops, "flops_total": np.cumsum(flops)})
    return replay.Replay("m", 0, 1, len(flops), 0, [[0, 1]] * len(flops), [1.0] * len(flops), df)


def test_steps_within_a_budget():
    r = _replay_with_flops([4e6, 4e6, 4e6, 4e6])
    assert present.steps_within(r, 1e6).step == 0 and "over the budget" in present.steps_within(r, 1e6).text
    got = present.steps_within(r, 1e7)
    assert got.step == 2 and got.flops == 8e6 and not got.capped
    assert present.steps_within(r, 1e9).capped
    assert present.steps_within(_replay_with_flops([np.nan] * 3), 1e9).step == 0


def _row(s, t, hops, **models):
    return {"source": s, "target": t, "source_label": f"A{s}", "target_label": f"B{t}", "optimal_km": 100.0,
            "optimal_hops": hops, "models": {n: dict(zip(("valid_first", "length_ratio_first", "valid_last",
                                                           "length_ratio_last"), v), max_steps=8)
                                             for n, v in models.items()}}


def test_interesting_pairs_are_derived_from_the_outcomes():
    nan = float("nan")
    rows = [
        _row(1, 2, 5, a=(False, nan, True, 1.001), b=(True, 1.01, True, 1.01)),     # a recovers
        _row(3, 4, 9, a=(True, 1.30, True, 1.00), b=(True, 1.02, True, 1.02)),      # a refines a lot
        _row(5, 6, 7, a=(True, 1.20, True, 1.20), b=(True, 1.25, True, 1.25)),      # all far
        _row(7, 8, 4, a=(True, 1.00, True, 1.00), b=(True, 1.09, True, 1.09)),      # disagree: 9% apart
    ]
    picks = pairs.interesting_pairs(rows, per_kind=1)
    kinds = {p["kind"]: (p["source"], p["target"]) for p in picks}
    assert kinds["fails at step 1, then recovers"] == (1, 2)
    assert kinds["refinement helps most"] == (3, 4)
    assert kinds["every model stays far from optimal"] == (5, 6)
    assert kinds["models disagree most"] == (7, 8)
    assert all(p["why"] for p in picks)
    assert len({(p["source"], p["target"]) for p in picks}) == len(picks)     # one entry per pair


def test_interesting_pairs_load_by_label_and_skip_other_graphs(tmp_path, small_graph):
    g = small_graph
    entries = [{"kind": "k", "source_label": g.label(0), "target_label": g.label(5), "why": "because"},
               {"kind": "k", "source_label": "Nowhere, ZZ", "target_label": g.label(5), "why": "other graph"}]
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"interesting": entries}))
    found, why = picks.interesting_pairs(g, path)
    assert why is None and [(p.source, p.target) for p in found] == [(0, 5)]
    path.write_text("{broken")
    found, why = picks.interesting_pairs(g, path)
    assert found == [] and "JSONDecodeError" in why


def test_pair_outcomes_run_every_model(tmp_path, tiny_graph, monkeypatch):
    from tests.fake_models import bellman_exact_checkpoint

    bellman_exact_checkpoint(tmp_path, tiny_graph, name="bellman-exact", rounds_per_step=1, max_steps=30)
    monkeypatch.setenv("CITYPATH_CHECKPOINTS", str(tmp_path))
    rows = pairs.pair_outcomes(tiny_graph, ["bellman-exact"], 4, seed=0)
    assert len(rows) == 4
    for r in rows:
        m = r["models"]["bellman-exact"]
        assert m["valid_last"] and m["length_ratio_last"] == pytest.approx(1.0)
        assert m["length_ratio_first"] >= m["length_ratio_last"] or not m["valid_first"]


def test_halting_is_reported_only_when_later_steps_spend_nothing():
    r = _replay_with_flops([5.0, 3.0, 0.0, 0.0])
    r.step_flops = [5.0, 3.0, 0.0, 0.0]
    assert present.halted_at(r) == 2 and "after step 2: steps 3–4" in present.halting_text(r)
    r.step_flops = [5.0, 3.0, 1.0, 1.0]
    assert present.halted_at(r) is None and present.halting_text(r) is None
    r.step_flops = [float("nan")] * 4
    assert present.halted_at(r) is None


def test_compute_spent_so_far_is_cumulative(tiny_graph):
    from tests.fake_models import RefiningFake

    m = RefiningFake("fake", {"num_parameters": 1, "max_steps": 4, "graph": {"fingerprint": tiny_graph.fingerprint}})
    r = replay.compute_replay(m, tiny_graph, 0, 7, 4)
    assert list(r.metrics["flops_total"]) == [1e6, 2e6, 3e6, 4e6]
    assert present.compute_text(r.metrics.iloc[2]).startswith("3 Mops · ")
    assert abs(r.metrics["ms_total"].iloc[-1] - sum(r.step_ms)) < 1e-9


@pytest.mark.slow
@pytest.mark.parametrize("name", __import__("citypath").list_models())
def test_every_shipped_model_reports_compute_per_step_that_sums_to_its_total(default_graph, name):
    """The replay's per-step FLOPs are the model's own count (non-zero for every step that thought; a model
    that halts spends 0 after), and the per-step wall times sum to the measured total."""
    from citypath.evaluate import sample_heldout_pairs
    from citypath.models import load_model

    g = default_graph
    m = load_model(name, graph=g)
    s, t = (int(v[0]) for v in sample_heldout_pairs(g, 1, seed=11))
    r = replay.compute_replay(m, g, s, t, 4)
    assert r.error is None
    flops = np.asarray(r.step_flops)
    assert np.isfinite(flops).all() and flops[0] > 0
    halted = present.halted_at(r)
    thought = flops[:halted] if halted else flops
    assert (thought > 0).all() and (flops[len(thought):] == 0).all()
    assert flops.sum() == pytest.approx(sum(m.step_flops(g, s, t, 4)), rel=1e-9)
    assert (r.metrics["ms"] > 0).all() and r.metrics["ms_total"].iloc[-1] == pytest.approx(sum(r.step_ms))
