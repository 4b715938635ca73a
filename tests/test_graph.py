import warnings

import networkx as nx
import numpy as np
import pytest

import citypath
from citypath import CityNotFound, CityNotInGraph, GraphConfig
from citypath.geo import haversine_km
from citypath.graph import _LOADED, build_graph, load_graph


def test_default_graph_is_large_connected_and_dense_in_ids(default_graph):
    g = default_graph
    assert g.n_cities >= 20_000
    assert list(g.cities.index) == list(range(g.n_cities))
    n_comp, _ = __import__("scipy.sparse.csgraph", fromlist=["x"]).connected_components(g.adjacency)
    assert n_comp == 1
    # The documented choice: at least 99.8% of the contiguous-US cities stay in one component.
    s = g.summary()
    assert s["cities"] / (s["cities"] + s["dropped_disconnected"]) > 0.998


def test_edges_are_exactly_the_pairs_within_the_radius(small_graph):
    g = small_graph
    d = haversine_km(g.lat[:, None], g.lon[:, None], g.lat[None, :], g.lon[None, :])
    within = (d <= g.radius_km) & ~np.eye(g.n_cities, dtype=bool)
    adj = g.adjacency.toarray()
    assert ((adj > 0) == within).all()
    np.testing.assert_allclose(adj[within], d[within], rtol=1e-12)
    assert (g.adjacency != g.adjacency.T).nnz == 0


def test_dropped_cities_are_reported_with_a_reason(default_graph):
    dropped = default_graph.dropped
    assert len(dropped) > 0
    assert dropped["reason"].str.contains("not connected to the main network").all()
    assert not set(dropped["label"]) & set(default_graph.cities["label"])
    assert (default_graph.outside["reason_code"] == "not_contiguous").sum() > 300  # Alaska and Hawaii


def test_shortest_paths_match_the_networkx_oracle(small_graph):
    g = small_graph
    ng = g.to_networkx()
    assert ng.number_of_nodes() == g.n_cities and ng.number_of_edges() == g.adjacency.nnz // 2
    rng = np.random.default_rng(0)
    for s, t in rng.integers(0, g.n_cities, size=(50, 2)):
        path = g.shortest_path(s, t)
        assert path[0] == s and path[-1] == t
        expected = nx.dijkstra_path_length(ng, int(s), int(t), weight="weight")
        assert g.path_length_km(path) == pytest.approx(expected, rel=1e-6, abs=1e-9)
        assert g.shortest_path_length_km(s, t) == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_shortest_paths_match_the_networkx_oracle_on_a_larger_region():
    g = load_graph(states=["CO", "NM", "UT", "AZ"])
    assert g.n_cities > 800
    ng = g.to_networkx()
    rng = np.random.default_rng(1)
    for s, t in rng.integers(0, g.n_cities, size=(12, 2)):
        expected = nx.dijkstra_path_length(ng, int(s), int(t), weight="weight")
        assert g.path_length_km(g.shortest_path(s, t)) == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_one_city_path_and_bad_ids(small_graph):
    g = small_graph
    assert g.shortest_path(3, 3) == [3]
    assert g.path_length_km([3]) == 0.0
    for bad in (-1, g.n_cities, 10**12, 2.0, "3", None, True):
        with pytest.raises(ValueError, match="city id"):
            g.shortest_path(bad, 0)


def test_find_city_exact_case_insensitive_prefix_and_accents(default_graph):
    g = default_graph
    boston = g.find_city("Boston, MA")
    assert g.label(boston) == "Boston, MA"
    assert g.find_city("boston, ma") == boston
    assert g.find_city("  BOSTON ma ") == boston
    assert g.find_city("Boston, M") == boston  # unique prefix
    assert g.label(g.find_city("canon city, co")) == "Cañon City, CO"
    assert g.find_city(boston) == boston


def test_find_city_errors_suggest_and_explain(default_graph):
    g = default_graph
    with pytest.raises(CityNotFound) as e:
        g.find_city("Springfield")
    assert "Springfield, MO" in e.value.suggestions and "matches" in str(e.value)
    with pytest.raises(CityNotFound) as e:
        g.find_city("Bostn, MA")
    assert e.value.suggestions[0] == "Boston, MA"
    with pytest.raises(CityNotInGraph, match="Alaska"):
        g.find_city("Juneau, AK")
    with pytest.raises(CityNotInGraph, match="not connected"):
        g.find_city(g.dropped["label"].iloc[0])
    for junk in ("", "   ", "x" * 100_000, "🙂🙂", "\x00"):
        with pytest.raises(CityNotFound):
            g.find_city(junk)


def test_a_city_outside_the_selected_states_says_so(ri_graph):
    with pytest.raises(CityNotInGraph, match="selected states"):
        ri_graph.find_city("Boston, MA")


def test_graph_config_is_validated():
    for kwargs in ({"radius_km": 0}, {"radius_km": float("nan")}, {"min_population": 10},
                   {"states": ["XX"]}, {"states": []}, {"states": ["AK"]}):
        with pytest.raises(ValueError):
            GraphConfig(**kwargs)
    assert GraphConfig(states=["ma", "RI"]).states == ("MA", "RI")


def test_cache_round_trip_and_corruption_is_rebuilt(tmp_path):
    g1 = load_graph(states=["RI"], cache_dir=tmp_path)
    [entry] = [p for p in tmp_path.iterdir() if p.name.startswith("graph-")]
    _LOADED.clear()
    g2 = load_graph(states=["RI"], cache_dir=tmp_path)
    assert g2 is not g1 and g2.fingerprint == g1.fingerprint
    assert (g2.adjacency != g1.adjacency).nnz == 0 and g2.cities.equals(g1.cities)

    # Flip bytes in the matrix file: the digest no longer matches, so it is rebuilt.
    data = bytearray((entry / "adjacency.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (entry / "adjacency.npz").write_bytes(bytes(data))
    _LOADED.clear()
    assert citypath.graph.CacheEntry(tmp_path, "graph", entry.name.split("-", 1)[1]).load() is None
    g3 = load_graph(states=["RI"], cache_dir=tmp_path)
    assert g3.fingerprint == g1.fingerprint

    # A truncated file, then a missing manifest: both rebuilt.
    (entry / "cities.parquet").write_bytes(b"PAR1")
    _LOADED.clear()
    assert load_graph(states=["RI"], cache_dir=tmp_path).fingerprint == g1.fingerprint
    (entry / "manifest.json").unlink()
    _LOADED.clear()
    assert load_graph(states=["RI"], cache_dir=tmp_path).fingerprint == g1.fingerprint
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_unwritable_cache_dir_falls_back_with_a_warning(tmp_path, monkeypatch):
    target = tmp_path / "file-not-dir"
    target.write_text("not a directory")
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    _LOADED.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        g = load_graph(states=["RI"], cache_dir=target / "cache")
    assert g.n_cities > 10
    assert any("not writable" in str(w.message) for w in caught)


def test_build_is_deterministic():
    a, b = build_graph(GraphConfig(states=("RI",))), build_graph(GraphConfig(states=("RI",)))
    assert a.fingerprint == b.fingerprint and a.cities.equals(b.cities)


def test_neighbors_and_distance(small_graph):
    g = small_graph
    for c in (0, 5, g.n_cities - 1):
        nb = g.neighbors(c)
        assert c not in nb and len(nb) > 0
        assert all(g.distance_km(c, int(n)) <= g.radius_km for n in nb)


def test_a_graph_rebuilt_from_its_edge_list_has_the_same_fingerprint(tiny_graph):
    from citypath.graph import graph_from_edges

    u, v, km = tiny_graph.edges()
    assert len(u) == tiny_graph.adjacency.nnz // 2 and (u < v).all()
    g = graph_from_edges(tiny_graph.config, tiny_graph.cities, u, v, km, tiny_graph.outside)
    assert g.fingerprint == tiny_graph.fingerprint and (g.adjacency != tiny_graph.adjacency).nnz == 0
    with pytest.raises(ValueError, match="once"):
        graph_from_edges(tiny_graph.config, tiny_graph.cities, np.r_[u, u[:1]], np.r_[v, v[:1]], np.r_[km, km[:1]],
                         tiny_graph.outside)
    with pytest.raises(ValueError, match="u < v"):
        graph_from_edges(tiny_graph.config, tiny_graph.cities, v, u, km, tiny_graph.outside)
    assert graph_from_edges(tiny_graph.config, tiny_graph.cities, u[1:], v[1:], km[1:],
                            tiny_graph.outside).fingerprint != tiny_graph.fingerprint
