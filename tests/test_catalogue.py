"""The catalogue read from cards alone: a model whose card measured no valid route at any step is listed, but
never opens a first visit's comparison."""

from __future__ import annotations

import json

from citypath.app import url
from citypath.models import catalogue


def _card(tmp_path, name, params, valid):
    card = {"name": name, "family": "gru", "num_parameters": params, "max_steps": 4, "weights": None,
            "graph": {"fingerprint": None, "config": {}},
            "metrics": None if valid is None else {"by_steps": {"1": {"valid": valid}, "4": {"valid": valid}}}}
    (tmp_path / f"{name}.json").write_text(json.dumps(card))


def test_a_model_that_never_arrives_is_listed_but_not_a_default(tmp_path):
    _card(tmp_path, "tiny", 10, 0.5)
    _card(tmp_path, "big-and-broken", 9_000, 0.0)
    _card(tmp_path, "mid", 500, None)                   # no measured metrics: nothing says it never arrives
    entries, unreadable = catalogue(tmp_path)
    assert not unreadable and {e.name for e in entries} == {"tiny", "big-and-broken", "mid"}
    ever = {e.name: e.ever_valid for e in entries}
    assert ever == {"tiny": True, "big-and-broken": False, "mid": True}
    sizes = {e.name: e.parameters for e in entries if e.learned and e.ever_valid}
    assert url.default_models([e.name for e in entries], sizes) == ("tiny", "mid")
