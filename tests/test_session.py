"""The app's plain parts without a browser: links (citypath.app.url), clicks and pairs (picks), model loading
(resources), replays and live metrics (citypath.view.present)."""

from __future__ import annotations

import numpy as np
import pytest

from citypath import replay
from citypath.app import picks, resources, url
from citypath.app.url import ViewState
from citypath.models import FAMILIES
from citypath.registry import Family
from citypath.view import present
from tests.fake_models import FAKE_FAMILIES, CrashingFake, GarbageFake, RefiningFake, write_checkpoint


def fake(cls, g, name="m"):
    return cls(name, {"num_parameters": 10, "max_steps": 8, "graph": {"fingerprint": g.fingerprint}})


def test_default_pair_is_heldout_and_distinct(small_graph):
    src, dst = url.default_pair(small_graph)
    assert src != dst
    from citypath import is_heldout
    assert is_heldout(src, dst)


def test_query_params_round_trip(small_graph):
    g = small_graph
    state = ViewState(g.find_city("Worcester, MA"), g.find_city("Providence, RI"), ("a", "b"), 5, 7)
    params = url.to_query_params(state, g)
    assert params["source"] == "Worcester, MA"
    parsed, notices = url.parse_query_params(params, g, ["a", "b", "c"], max_steps=16)
    assert parsed == state and notices == []


def test_missing_params_give_defaults_silently(small_graph):
    parsed, notices = url.parse_query_params({}, small_graph, ["a", "b", "c", "d"], max_steps=16)
    assert notices == []
    assert parsed.models == ("a", "b", "c")  # at most three models by default
    assert (parsed.source, parsed.target) == url.default_pair(small_graph)


@pytest.mark.parametrize("params, word", [
    ({"source": "Nowhere, XX", "target": "Boston, MA"}, "source"),
    ({"source": "Boston, MA", "target": "Honolulu, HI"}, "Honolulu"),  # a real city outside the graph
    ({"source": "Boston, MA"}, "one end"),
    ({"steps": "0"}, "steps"),
    ({"steps": "abc"}, "whole number"),
    ({"seed": "99999999999"}, "seed"),
    ({"models": "zzz,a"}, "zzz"),
])
def test_bad_params_give_notices(small_graph, params, word):
    parsed, notices = url.parse_query_params(params, small_graph, ["a"], max_steps=16)
    assert any(word in n for n in notices), notices
    assert 1 <= parsed.steps <= 16 and 0 <= parsed.seed <= url.MAX_SEED
    assert 0 <= parsed.source < small_graph.n_cities


def test_params_accept_lists_and_ids(small_graph):
    parsed, notices = url.parse_query_params({"source": ["3"], "target": ["5"], "steps": ["2"]}, small_graph,
                                                 [], max_steps=16)
    assert (parsed.source, parsed.target, parsed.steps) == (3, 5, 2) and not notices


def test_apply_click_rules():
    assert picks.apply_click(1, 2, 9, "source") == (9, 2, "target")
    assert picks.apply_click(1, 2, 9, "target") == (1, 9, "source")
    src, dst, nxt = picks.apply_click(1, 2, 9, "alternate", "source")
    assert (src, dst, nxt) == (9, 2, "target")
    assert picks.apply_click(src, dst, 8, "alternate", nxt) == (9, 8, "source")
    with pytest.raises(ValueError):
        picks.apply_click(1, 2, 3, "middle")


def test_random_pair_is_heldout(small_graph):
    from citypath import is_heldout
    rng = np.random.default_rng(0)
    for _ in range(5):
        a, b = picks.random_heldout_pair(small_graph, rng)
        assert a != b and is_heldout(a, b)


def test_replay_of_a_refining_model(small_graph):
    g = small_graph
    src, dst = url.default_pair(g)
    r = replay.compute_replay(fake(RefiningFake, g), g, src, dst, 6, seed=1)
    assert r.error is None and len(r.paths) == 6 and len(r.step_ms) == 6
    assert list(r.metrics["step"]) == [1, 2, 3, 4, 5, 6]
    assert r.path(99) == r.paths[-1] and r.path(0) == r.paths[0]
    assert r.metrics["valid"].iloc[-1]


def test_replay_of_garbage_is_scored_not_raised(small_graph):
    g = small_graph
    r = replay.compute_replay(fake(GarbageFake, g), g, 0, 5, 5)
    assert r.error is None and len(r.metrics) == 5
    assert not r.metrics["valid"].any()
    assert r.metrics["unknown_ids"].iloc[1] >= 4
    assert r.paths[3] == [] and r.paths[4] == []


def test_replay_of_a_crash_keeps_what_came_before(small_graph):
    r = replay.compute_replay(fake(CrashingFake, small_graph), small_graph, 0, 5, 4)
    assert len(r.paths) == 1 and "simulated failure" in r.error


def test_metric_cards_and_deltas(small_graph):
    g = small_graph
    src, dst = url.default_pair(g)
    r = replay.compute_replay(fake(RefiningFake, g), g, src, dst, 6)
    first = present.metric_cards_by_step(r.metrics, [1])[0]
    assert [c.label for c in first][:3] == ["Valid", "Illegal jumps", "Reaches target"]
    assert all(c.delta is None for c in first)
    later = {c.label: c for c in present.metric_cards_by_step(r.metrics, [6])[0]}
    assert later["Illegal jumps"].delta_color == "inverse"
    assert bool(r.metrics.iloc[4]["valid"]) and bool(r.metrics.iloc[5]["valid"])
    assert later["Length"].delta_color == "inverse"          # between valid routes, shorter is better
    bad = replay.compute_replay(fake(GarbageFake, g), g, src, dst, 6)
    assert not bad.metrics["valid"].any()
    for k in range(2, 7):                                        # an invalid route shrinking is not progress
        cards = {c.label: c for c in present.metric_cards_by_step(bad.metrics, [k])[0]}
        assert {cards[x].delta_color for x in ("Length", "vs optimal", "Fréchet")} == {"off"}
    # every step's cards at once (the player's strip) are each step's cards, clamped to 1..K
    for m in (r.metrics, bad.metrics):
        ks = [0, 1, 2, 5, 6, 9]
        one_by_one = [present.metric_cards_by_step(m, [k])[0] for k in ks]
        assert present.metric_cards_by_step(m, ks) == one_by_one and one_by_one[0] == one_by_one[1]
        assert one_by_one[-1] == one_by_one[-2]
    assert present.metric_cards_by_step(r.metrics.iloc[:0], [1, 2]) == [[], []]


def test_records_are_the_rows_as_python_values(small_graph):
    g = small_graph
    src, dst = url.default_pair(g)
    m = replay.compute_replay(fake(GarbageFake, g), g, src, dst, 4).metrics
    rows, want = present.records(m), m.to_dict("records")
    assert len(rows) == len(want) == 4 and [list(r) for r in rows] == [list(w) for w in want]
    for row, w in zip(rows, want):
        for key, v in row.items():
            assert type(v) is type(w[key]) and (v == w[key] or (v != v and w[key] != w[key])), key
    assert present.records(m.iloc[:0]) == []


def test_load_models_reports_failures(tmp_path, small_graph, monkeypatch):
    for family, target in FAKE_FAMILIES.items():
        monkeypatch.setitem(FAMILIES, family, Family(target))
    write_checkpoint(tmp_path, "good", "fake-refining", small_graph)
    write_checkpoint(tmp_path, "other-graph", "fake-refining", small_graph, fingerprint="f" * 64)
    write_checkpoint(tmp_path, "unknown-family", "no-such-family", small_graph)
    (tmp_path / "broken.json").write_text("{")
    (tmp_path / "broken.safetensors").write_bytes(b"")
    ms = resources.load_models(small_graph, directory=tmp_path)
    assert ms.names == ["good"]
    assert set(ms.failures) == {"other-graph", "unknown-family", "broken"}
    assert "trained on graph" in ms.failures["other-graph"]


def test_register_families_from_env(monkeypatch):
    monkeypatch.setattr("citypath.registry.FAMILIES", dict(FAMILIES))
    from citypath import registry

    added = resources.register_families_from_env({"CITYPATH_MODEL_FAMILIES": "x-fam=mod:Cls, gru=evil:Cls, bad"})
    assert added == {"x-fam": "mod:Cls"} and registry.FAMILIES["gru"].model != "evil:Cls"
    assert "x-fam" in registry.FAMILIES and "x-fam" not in FAMILIES     # the real registry is untouched


def test_default_comparison_is_the_smallest_model_against_the_largest():
    names = ["a-mid", "b-big", "c-tiny", "d-mid"]
    sizes = {"a-mid": 5_000, "b-big": 3_000_000, "c-tiny": 1_500, "d-mid": 5_000}
    assert url.default_models(names, sizes) == ("c-tiny", "b-big")
    # Without sizes (unreadable cards), the first few, as listed.
    assert url.default_models(names) == tuple(names[: url.MAX_DEFAULT_MODELS])
    assert url.default_models(["only"], {"only": 10}) == ("only",)


def test_links_keep_the_shown_step_speed_and_click_mode(small_graph):
    g = small_graph
    state = url.ViewState(3, 9, ("a",), 8, 0, step=3, speed=4.0, click="target")
    parsed, notices = url.parse_query_params(url.to_query_params(state, g), g, ["a"], max_steps=16)
    assert parsed == state and notices == []
    assert url.ViewState(3, 9, ("a",), 8).step == 8                 # no step: the final answer


def test_bad_links_say_exactly_what_was_changed(small_graph):
    g = small_graph
    params = {"source": g.label(3), "target": g.label(9), "steps": "8", "step": "99", "speed": "3.5", "click": "x"}
    parsed, notices = url.parse_query_params(params, g, ["a"], max_steps=16)
    assert (parsed.step, parsed.speed, parsed.click) == (8, 4.0, "alternate")
    assert "step=99 is outside 1..8; using 8" in notices
    assert any(n.startswith("speed=3.5 is not one of") and n.endswith("using 4") for n in notices)
    assert any(n.startswith("click='x' is not one of") for n in notices)
    parsed, notices = url.parse_query_params({"source": "Nowhere, ZZ", "target": "Elsewhere, ZZ"}, g, ["a"],
                                             max_steps=16)
    assert any(n.startswith("showing the default pair") for n in notices)
    assert (parsed.source, parsed.target) == url.default_pair(g)


def test_one_unknown_end_keeps_the_other(small_graph):
    """An unknown source with a valid target keeps the target (and the other way round): only the bad end is
    replaced, from the default pair, and the notice says so."""
    g = small_graph
    base_src, base_dst = url.default_pair(g)
    parsed, notices = url.parse_query_params({"source": "Nowhere, ZZ", "target": g.label(9)}, g, ["a"], max_steps=16)
    assert parsed.target == 9 and parsed.source == (base_src if base_src != 9 else base_dst)
    assert notices[0].startswith("source:") and f"keeping the target {g.label(9)}" in notices[-1]
    assert not any(n.startswith("showing the default pair") for n in notices)
    parsed, notices = url.parse_query_params({"source": g.label(3), "target": "zzzz"}, g, ["a"], max_steps=16)
    assert parsed.source == 3 and parsed.target == (base_dst if base_dst != 3 else base_src)
    assert f"keeping the source {g.label(3)}" in notices[-1]
    parsed, notices = url.parse_query_params({"target": g.label(base_src)}, g, ["a"], max_steps=16)
    assert parsed.target == base_src and parsed.source == base_dst and parsed.source != parsed.target
    assert notices[0] == "the link names only one end of the route"


def test_a_view_asks_one_question_the_caches_key_on():
    """The question (pair, models, steps, seed, mode, budget) is frozen and hashable; with equal compute every
    model runs up to the catalogue's steps and the shown step, speed and click mode are not part of it."""
    import dataclasses

    from citypath.replay import Question

    view = url.ViewState(3, 9, ("a", "b"), 8, 5, step=2, speed=4.0)
    q = view.question()
    assert q == Question(3, 9, ("a", "b"), 8, 5) and not q.equal and hash(q) == hash(Question(3, 9, ("a", "b"), 8, 5))
    assert dataclasses.replace(view, step=7, speed=1.0).question() == q
    eq = view.question(equal=True, budget=1e8, steps_max=64)
    assert eq.equal and (eq.steps, eq.budget) == (64, 1e8) and eq != q
    with pytest.raises(dataclasses.FrozenInstanceError):
        q.steps = 4
    with pytest.raises(ValueError, match="mode"):
        Question(0, 1, (), 1, mode="fast")
