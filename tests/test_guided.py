"""The guided family (citypath/models/guided.py) and its bounds (citypath/bounds.py): a certified table never
exceeds the road distance, the search it guides is exact, deterministic and honours the protocol, the controls
run, and the shipped checkpoints score near their cards."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.sparse.csgraph import dijkstra

import citypath
from citypath.bounds import UncertifiedTable, certify, check_table, farthest_landmarks, lower_bound_km
from citypath.evaluate import sample_heldout_pairs
from citypath.models import list_models
from citypath.models.classical import ClassicalModel, best_first_run
from citypath.models.guided import CONTROLS, GuidedConfig, GuidedModel
from tests.protocol import check_near_card, check_refine_protocol, check_state_views


def _random_model(g, columns: int = 3, seed: int = 0) -> GuidedModel:
    """An untrained model whose memory is noise of ~1000 km: certification has real work to do."""
    m = GuidedModel.untrained(g, GuidedConfig(n_cities=g.n_cities, columns=columns, first_budget=2, max_steps=10),
                              seed=seed)
    with torch.no_grad():
        m.net.memory.copy_(torch.randn(g.n_cities, columns, generator=torch.Generator().manual_seed(seed)))
    return m


def test_a_certified_table_never_exceeds_the_road_distance(small_graph):
    """Every pair of cities: the bound from a certified random table (and its max with the straight line) is at
    most the road km; the table is 1-Lipschitz on every edge and never above what it was made from."""
    g = small_graph
    raw = np.random.default_rng(1).normal(0, 5e5, size=(g.n_cities, 4))
    table = certify(raw, g)
    check_table(table, g)
    assert (table <= np.rint(raw)).all()
    road = dijkstra(g.adjacency)
    for t in range(g.n_cities):
        h, _ = lower_bound_km(g, t, table)
        reach = np.isfinite(road[:, t])
        assert (h[reach] <= road[reach, t] + 1e-9).all()


def test_certify_keeps_a_table_that_is_already_certified(small_graph):
    """Landmark distances are 1-Lipschitz: certification leaves them as they are; a broken one is refused."""
    g = small_graph
    _, table = farthest_landmarks(g, 3)
    assert (certify(table, g) == table).all()
    broken = table.copy()
    broken[0, 0] += 10_000_000
    with pytest.raises(UncertifiedTable, match="edge"):
        check_table(broken, g)


def test_its_search_is_exact_where_it_ends(small_graph):
    """At its last step every route is as short as scipy's Dijkstra's (never longer)."""
    g = small_graph
    m = _random_model(g)
    srcs, dsts = sample_heldout_pairs(g, 12, seed=4)
    for s, t in zip(srcs.tolist(), dsts.tolist()):
        path = list(m.refine(g, s, t, steps=m.max_steps))[-1]
        assert citypath.evaluate_path(g, path, s, t)["valid"]
        assert g.path_length_km(path) == pytest.approx(g.shortest_path_length_km(s, t), rel=1e-9)


def test_refine_protocol_and_state_views(small_graph):
    g = small_graph
    m = _random_model(g)
    check_refine_protocol(m, g, [(0, 40), (5, 90)], steps=5)
    views = check_state_views(m, g, 0, 40, 3, ["expanded at step", "lower bound to target (expanded)"])
    counts = [int(np.isfinite(v[0].values).sum()) for v in views]
    assert counts == sorted(counts) and counts[0] <= m.budgets(1)[0]


def test_steps_spend_doubling_budgets_and_count_operations(small_graph):
    """Step 1 may expand first_budget cities, each later step as many as all before; a step that expands spends
    operations, one after the search ended spends none."""
    g = small_graph
    m = _random_model(g)
    assert m.budgets(4) == [2, 2, 4, 8]
    runs = list(m.refine_with_compute(g, 0, g.n_cities - 1, steps=m.max_steps))
    ops = [f for _, f in runs]
    assert ops[0] > 0 and ops[-1] == 0.0


def test_the_controls_run_and_stay_exact(small_graph):
    """Each control (landmarks, straight line, network only, shuffled memory) is certified and exact; the shuffled
    memory's table differs from the model's own; the landmark control is ALT."""
    g = small_graph
    m = _random_model(g)
    s, t = 3, 77
    best = g.shortest_path_length_km(s, t)
    tables = {}
    for control in CONTROLS:
        c = m.with_control(control)
        tables[control] = c.table(g)
        check_table(tables[control], g)
        path = list(c.refine(g, s, t, steps=c.max_steps))[-1]
        assert g.path_length_km(path) == pytest.approx(best, rel=1e-9)
    assert not np.array_equal(tables["shuffled-memory"], m.table(g))
    assert tables["straight-line"].shape[1] == 0
    assert m.scaffold_control().control == "landmarks"
    alt = ClassicalModel.make(g, "alt", landmarks=3)
    search = alt._search(g, s, t)
    list(best_first_run(search, [None]))
    assert m.with_control("landmarks").expansions(g, s, t) == search.expanded
    with pytest.raises(ValueError, match="control"):
        m.with_control("nonsense")


def test_a_tighter_bound_expands_no_more_than_the_straight_line(small_graph):
    """Over many pairs, a certified table never makes A* expand more in total than the straight line alone."""
    g = small_graph
    m = _random_model(g)
    a = m.with_control("straight-line")
    srcs, dsts = sample_heldout_pairs(g, 20, seed=9)
    pairs = list(zip(srcs.tolist(), dsts.tolist()))
    assert sum(m.with_control("landmarks").expansions(g, s, t) for s, t in pairs) <= \
        sum(a.expansions(g, s, t) for s, t in pairs)


def test_deterministic(small_graph):
    g = small_graph
    one, two = _random_model(g, seed=2), _random_model(g, seed=2)
    assert list(one.refine(g, 1, 60, steps=6)) == list(two.refine(g, 1, 60, steps=6))


@pytest.mark.parametrize("name", ["guided-m4", "guided-geo", "guided-m16"])
def test_shipped_checkpoint_scores_near_its_card(name, default_graph):
    """Exact on the card's held-out pairs at its last step, as its card says."""
    if name not in list_models():
        pytest.skip(f"{name} is not trained yet")
    m = check_near_card(default_graph, name, valid_tol=0.0, ratio_tol=1e-9, n_pairs=12)
    check_table(m.table(default_graph), default_graph)


def test_the_effort_view_reads_a_report(tmp_path):
    """The page's effort table has one row per search with its bytes and expansions; a missing report says why."""
    from citypath.app import effort

    report, why = effort.load_report(tmp_path / "none.json")
    assert report == {} and "does not exist" in why
    row = {"kind": "classical", "bytes_per_city": 0, "stored_bytes_per_city": 0, "parameters": 0,
           "expansions": {"value": 900.0, "ci95": [850.0, 950.0]}, "ms": {"value": 10.0, "ci95": [9.0, 11.0]},
           "exact": {"value": 1.0, "ci95": [0.99, 1.0]},
           "vs_astar": {"expansions": {"value": 1.0, "ci95": [1.0, 1.0]}}}
    path = tmp_path / "r.json"
    path.write_text(__import__("json").dumps({"rows": {"astar": row, "alt-1": {**row, "bytes_per_city": 4}}}))
    report, why = effort.load_report(path)
    table = effort.effort_table(report)
    assert why is None and list(table["row"]) == ["astar", "alt-1"] and list(table["bytes a city"]) == [0, 4]
    assert effort.effort_chart(table).to_dict()["layer"]
