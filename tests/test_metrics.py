import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citypath import METRIC_DEFINITIONS, evaluate_path, evaluate_paths
from citypath import metrics as M

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def far_pair(g):
    """Two cities farther apart than the radius, with the optimal path between them."""
    s = 0
    t = int(np.argmax([g.shortest_path_length_km(s, c) for c in range(g.n_cities)]))
    return s, t, g.shortest_path(s, t)


def test_every_metric_has_a_one_sentence_definition():
    for name, text in METRIC_DEFINITIONS.items():
        assert text.endswith(".") and text.count(". ") == 0, name


def test_the_optimal_path_is_perfect(small_graph):
    g = small_graph
    s, t, path = far_pair(g)
    m = evaluate_path(g, path, s, t)
    assert m["valid"] and m["bounded"] and m["exact_match"]
    assert m["illegal_jumps"] == 0 and m["unknown_ids"] == 0
    assert m["length_ratio"] == pytest.approx(1.0) and m["frechet_km"] == pytest.approx(0.0, abs=1e-6)
    assert m["hops"] == len(path) - 1 and m["cities"] == len(path)
    assert set(METRIC_DEFINITIONS) <= set(m)


def test_hand_built_paths(small_graph):
    g = small_graph
    s, t, path = far_pair(g)
    # A straight jump: starts and ends right, one illegal jump, shorter than optimal.
    m = evaluate_path(g, [s, t], s, t)
    assert (m["starts_at_source"], m["reaches_target"], m["valid"]) == (True, True, False)
    assert m["illegal_jumps"] == 1 and m["length_ratio"] < 1.0 and not m["exact_match"]
    # Stopping halfway: legal, but does not reach the target.
    half = path[: len(path) // 2]
    m = evaluate_path(g, half, s, t)
    assert m["illegal_jumps"] == 0 and not m["reaches_target"] and not m["valid"] and not m["bounded"]
    assert m["frechet_km"] > 0
    # A detour that wanders back and forth is valid but longer.
    detour = path[:2] + [path[0]] + path[1:]
    m = evaluate_path(g, detour, s, t)
    assert m["valid"] and m["length_ratio"] > 1.0 and not m["exact_match"]
    expected = (g.path_length_km(path) + 2 * g.distance_km(path[0], path[1])) / g.path_length_km(path)
    assert m["length_ratio"] == pytest.approx(expected)
    # Starting elsewhere.
    m = evaluate_path(g, path[1:], s, t)
    assert not m["starts_at_source"] and m["reaches_target"] and not m["valid"]
    # An empty path.
    m = evaluate_path(g, [], s, t)
    assert m["cities"] == 0 and not m["valid"] and m["length_ratio"] == 0.0 and math.isnan(m["frechet_km"])


def test_unknown_ids_are_counted_and_every_hop_touching_them_is_illegal(small_graph):
    g = small_graph
    s, t, path = far_pair(g)
    garbage = [s, -1, g.n_cities, "x", None, 2.5, 10**40, *path[1:]]
    m = evaluate_path(g, garbage, s, t)
    assert m["unknown_ids"] == 6
    assert m["illegal_jumps"] == 7 and not m["valid"]
    assert M.illegal_jumps(g, garbage) == 7
    assert math.isfinite(m["frechet_km"])  # measured over the known cities


def test_same_source_and_target(small_graph):
    g = small_graph
    m = evaluate_path(g, [4], 4, 4)
    assert m["valid"] and m["exact_match"] and m["length_ratio"] == 1.0 and m["optimal_km"] == 0.0
    m = evaluate_path(g, [4, int(g.neighbors(4)[0]), 4], 4, 4)
    assert m["valid"] and m["length_ratio"] == math.inf and not m["bounded"]


def test_bounded_uses_the_tolerance(small_graph):
    g = small_graph
    s, t, path = far_pair(g)
    detour = path[:2] + [path[0]] + path[1:]
    ratio = evaluate_path(g, detour, s, t)["length_ratio"]
    assert evaluate_path(g, detour, s, t, tolerance=ratio - 1 + 1e-9)["bounded"]
    assert not evaluate_path(g, detour, s, t, tolerance=ratio - 1 - 1e-9)["bounded"]


def test_bad_endpoints_are_refused(small_graph):
    with pytest.raises(ValueError, match="city id"):
        evaluate_path(small_graph, [0, 1], -1, 1)
    with pytest.raises(ValueError, match="paths"):
        evaluate_paths(small_graph, [[0]], [0, 1], [0])


@st.composite
def pairs(draw, g):
    s = draw(st.integers(0, g.n_cities - 1))
    t = draw(st.integers(0, g.n_cities - 1))
    return s, t


@pytest.fixture(scope="module")
def g(request):
    return request.getfixturevalue("small_graph")


@SETTINGS
@given(data=st.data())
def test_property_optimal_path_is_valid_with_ratio_one(g, data):
    s, t = data.draw(pairs(g))
    m = evaluate_path(g, g.shortest_path(s, t), s, t)
    assert m["valid"] and m["exact_match"] and m["illegal_jumps"] == 0
    assert m["length_ratio"] == pytest.approx(1.0)


@SETTINGS
@given(data=st.data())
def test_property_inserting_a_non_neighbour_adds_an_illegal_jump(g, data):
    s, t = data.draw(pairs(g))
    path = g.shortest_path(s, t)
    at = data.draw(st.integers(0, len(path) - 1))
    far = [c for c in range(g.n_cities) if g.distance_km(path[at], c) > g.radius_km]
    if not far:
        return
    x = data.draw(st.sampled_from(far))
    assert M.illegal_jumps(g, path[: at + 1] + [x] + path[at + 1:]) >= 1
    assert not evaluate_path(g, path[: at + 1] + [x] + path[at + 1:], s, t)["valid"]


@SETTINGS
@given(data=st.data())
def test_property_batch_equals_single_and_reversal_swaps_ends(g, data):
    s, t = data.draw(pairs(g))
    path = g.shortest_path(s, t)
    noisy = data.draw(st.lists(st.integers(-3, g.n_cities + 3), max_size=8))
    paths = [path, path[::-1], noisy]
    batch = evaluate_paths(g, paths, [s, s, s], [t, t, t])
    for i, p in enumerate(paths):
        single = evaluate_path(g, p, s, t)
        for k, v in single.items():
            b = batch.iloc[i][k]
            assert (math.isnan(v) and math.isnan(b)) if isinstance(v, float) and math.isnan(v) else v == b, k
    rev = batch.iloc[1]
    assert rev["starts_at_source"] == (s == t) and rev["reaches_target"] == (s == t)
    assert rev["illegal_jumps"] == 0 and rev["length_km"] == pytest.approx(batch.iloc[0]["length_km"])


def test_frechet_is_in_km(small_graph):
    g = small_graph
    s, t, path = far_pair(g)
    # Against the two-city path [s, t] every optimal city is coupled to s or to t, so the
    # distance is at least the middle city's distance to the nearer end (in km, up to 2% projection).
    m = evaluate_path(g, [s, t], s, t)
    mid = path[len(path) // 2]
    assert m["frechet_km"] >= min(g.distance_km(mid, s), g.distance_km(mid, t)) * 0.98
    assert m["frechet_km"] <= g.path_length_km(path)


def test_figures_against_the_optimal_route_need_a_route_that_arrives(small_graph):
    """`arrived`: from the source, to the target, through cities only; `Metric.read`/`value` show a figure
    against the optimal route only then (a walk that stops half way would read "-50%")."""
    import math

    from citypath.metrics import METRICS, NOT_ARRIVED, NOT_ARRIVED_SHORT, arrived

    g = small_graph
    s, t = 0, 7
    opt = g.shortest_path(s, t)
    half = evaluate_path(g, opt[: max(len(opt) // 2, 1)], s, t)
    via_unknown = evaluate_path(g, [s, -5, t], s, t)
    whole = evaluate_path(g, opt, s, t)
    assert not arrived(half) and not arrived(via_unknown) and arrived(whole)
    assert arrived(evaluate_path(g, [s, t], s, t))            # an illegal jump arrives (its count says the rest)
    half["length_pct"] = (half["length_ratio"] - 1) * 100
    assert half["length_pct"] < 0                              # what the figure would have claimed
    m = METRICS["length_pct"]
    assert m.read(half) == NOT_ARRIVED and m.read(half, short=True) == NOT_ARRIVED_SHORT
    assert math.isnan(m.value(half)) and METRICS["frechet_km"].read(via_unknown) == NOT_ARRIVED
    whole["length_pct"] = 0.0
    assert m.read(whole) == "+0.0%" and m.value(whole) == 0.0
    assert METRICS["length_km"].read(half).endswith("km")     # the km walked is a fact either way
    assert not METRICS["length_km"].shows_change(whole, half) and METRICS["hops"].shows_change(whole, half)
    assert {n for n, x in METRICS.items() if x.arrived_only} == {"length_ratio", "length_pct", "frechet_km"}
