"""Bad input at scale for the data layer: every public entry point either answers or refuses clearly."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citypath import CityNotFound, evaluate_path, is_heldout

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
junk = st.one_of(st.integers(-10**20, 10**20), st.floats(allow_nan=True), st.text(max_size=20), st.none(),
                 st.booleans(), st.binary(max_size=8))


@FUZZ
@given(st.text(max_size=300))
def test_find_city_answers_or_raises_city_not_found(small_graph, text):
    try:
        city = small_graph.find_city(text)
    except CityNotFound as e:
        assert str(e) and len(str(e)) < 600
    else:
        assert 0 <= city < small_graph.n_cities


@FUZZ
@given(junk)
def test_ids_that_are_not_cities_are_refused_with_a_value_error(small_graph, value):
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < small_graph.n_cities:
        assert small_graph.shortest_path(value, value) == [value]
        return
    with pytest.raises(ValueError, match="city id"):
        small_graph.shortest_path(value, 0)
    if not (isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31):
        with pytest.raises(ValueError):
            is_heldout(value, 0)


@FUZZ
@given(st.lists(junk, max_size=12), st.data())
def test_any_path_is_scored_never_crashes(small_graph, path, data):
    s = data.draw(st.integers(0, small_graph.n_cities - 1))
    t = data.draw(st.integers(0, small_graph.n_cities - 1))
    m = evaluate_path(small_graph, path, s, t)
    assert m["cities"] == len(path)
    assert 0 <= m["illegal_jumps"] <= max(len(path) - 1, 0)
    assert m["valid"] == (m["starts_at_source"] and m["reaches_target"] and m["illegal_jumps"] == 0)
    assert m["length_ratio"] >= 0 and (math.isnan(m["frechet_km"]) or m["frechet_km"] >= 0)


@FUZZ
@given(st.lists(st.integers(0, 400), min_size=1, max_size=60), st.data())
def test_paths_with_repeats_and_cycles_are_scored_consistently(small_graph, path, data):
    g = small_graph
    path = [c % g.n_cities for c in path]
    m = evaluate_path(g, path, path[0], path[-1])
    assert m["starts_at_source"] and m["reaches_target"]
    assert m["length_km"] == pytest.approx(g.path_length_km(path))
    # Walking the path twice (a cycle back through it) never makes it shorter or more legal.
    loop = path + path[::-1][1:] + path[1:]
    m2 = evaluate_path(g, loop, path[0], path[-1])
    assert m2["length_km"] >= m["length_km"] - 1e-9 and m2["illegal_jumps"] >= m["illegal_jumps"]


def test_huge_inputs_do_not_hang(default_graph):
    g = default_graph
    with pytest.raises(CityNotFound):
        g.find_city("Springfield" * 100_000)
    path = np.random.default_rng(0).integers(0, g.n_cities, 200_000)
    m = evaluate_path(g, path, int(path[0]), int(path[-1]))
    assert m["illegal_jumps"] > 150_000
