import numpy as np
import pytest

from citypath import heldout_mask
from citypath.spd import SPDConfig, generate, load_spd, trace_paths


def test_trace_paths_matches_single_queries(small_graph):
    g = small_graph
    src = 7
    _, pred = g.distances_from(src)
    targets = np.array([0, 7, 50, g.n_cities - 1, 3])
    tokens, counts = trace_paths(np.asarray(pred), src, targets)
    paths = np.split(tokens, np.cumsum(counts)[:-1])
    for t, p in zip(targets, paths):
        assert list(p) == g.shortest_path(src, int(t))


def test_generated_paths_are_optimal_and_split_by_the_heldout_rule(small_graph):
    g = small_graph
    data = generate(g, SPDConfig(n_paths=3000, targets_per_source=50, seed=3), workers=1, progress=False)
    assert sum(len(d["src"]) for d in data.values()) == 3000
    assert not heldout_mask(data["train"]["src"], data["train"]["dst"]).any()
    assert heldout_mask(data["test"]["src"], data["test"]["dst"]).all()
    assert 0 < len(data["test"]["src"]) < 400
    for split in data.values():
        off, tok = split["offsets"], split["tokens"]
        assert off[0] == 0 and off[-1] == len(tok) and tok.dtype == np.int32
        for i in range(0, len(split["src"]), 37):
            p = tok[off[i]:off[i + 1]]
            s, t = int(split["src"][i]), int(split["dst"][i])
            assert p[0] == s and p[-1] == t and s != t
            assert g.path_length_km(p) == pytest.approx(split["length_km"][i], rel=1e-9)
            assert g.path_length_km(p) == pytest.approx(g.shortest_path_length_km(s, t), rel=1e-9)
    # Flipping makes both ends spread over the cities, not just the sampled sources.
    train = data["train"]
    assert len(np.unique(train["src"])) > 100 and len(np.unique(train["dst"])) > 100


def test_generation_does_not_depend_on_the_number_of_workers(small_graph):
    cfg = SPDConfig(n_paths=2000, targets_per_source=40, seed=5)
    one = generate(small_graph, cfg, workers=1, progress=False)
    two = generate(small_graph, cfg, workers=2, progress=False)
    for split in one:
        for name in one[split]:
            np.testing.assert_array_equal(one[split][name], two[split][name])
    other = generate(small_graph, SPDConfig(n_paths=2000, targets_per_source=40, seed=6), workers=1, progress=False)
    assert not np.array_equal(one["train"]["src"], other["train"]["src"])


def test_load_spd_caches_memory_maps_and_rebuilds_when_corrupt(small_graph, tmp_path):
    cfg = SPDConfig(n_paths=1500, targets_per_source=30, seed=1)
    train = load_spd(small_graph, "train", cfg, cache_dir=tmp_path, workers=1, progress=False)
    test = load_spd(small_graph, "test", cfg, cache_dir=tmp_path, build=False)
    assert len(train) + len(test) == 1500
    assert isinstance(train.tokens, np.memmap)
    assert list(train[0][[0, -1]]) == [train.src[0], train.dst[0]]
    [entry] = [p for p in tmp_path.iterdir() if p.name.startswith("spd-")]
    # Truncate the tokens file: detected by the size check, rebuilt to the same content.
    first = train[5].copy()
    (entry / "train_tokens.npy").write_bytes((entry / "train_tokens.npy").read_bytes()[:100])
    again = load_spd(small_graph, "train", cfg, cache_dir=tmp_path, workers=1, progress=False)
    np.testing.assert_array_equal(again[5], first)
    with pytest.raises(FileNotFoundError, match="build --spd"):
        load_spd(small_graph, "train", SPDConfig(n_paths=99), cache_dir=tmp_path, build=False)
    with pytest.raises(ValueError, match="split"):
        load_spd(small_graph, "validation", cfg, cache_dir=tmp_path)


@pytest.mark.parametrize("bad", [{"n_paths": 0}, {"n_paths": 1.5}, {"targets_per_source": 0}])
def test_bad_config_is_refused(bad):
    with pytest.raises(ValueError):
        SPDConfig(**bad)
