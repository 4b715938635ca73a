"""README's figures come from results/ (citypath/findings.py): the committed README agrees with the committed
results, and the generator puts what the results say, no more."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from citypath.evaluate import load_results
from citypath.findings import disagreements, load_depthlm, render, rewrite

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def results() -> dict:
    return load_results(ROOT / "results" / "eval.json")


def test_readme_agrees_with_results(results):
    text = (ROOT / "README.md").read_text()
    depthlm = load_depthlm(ROOT / "results" / "depthlm-loops.json")
    assert disagreements(text, render(results, depthlm)) == [], "run: python -m citypath findings"


def test_every_evaluated_row_is_in_the_table(results):
    table = render(results)["results-table"]
    for name in results["models"]:
        assert f"| `{name}` |" in table


def test_classical_rows_and_controls_were_evaluated(results):
    """The ruler's floor and the attribution controls are in the committed results, on the same pairs."""
    models = results["models"]
    for name in ("dijkstra", "astar", "anytime-astar", "bellman-ford"):
        assert name in models and models[name]["learned"] is False
    for learned in ("bellman-tiny", "looped-small", "memory-search"):
        control = models[f"{learned}.scaffold"]
        assert control["control_of"] == learned


def test_a_changed_result_makes_readme_disagree(results):
    text = (ROOT / "README.md").read_text()
    changed = copy.deepcopy(results)
    by_steps = changed["models"]["astar"]["by_steps"]
    entry = by_steps[max(by_steps, key=int)]                 # the step the floor's sentence quotes
    entry["cpu_ms_total_mean"] = entry["cpu_ms_total_mean"] * 3 + 1
    assert "classical-floor" in disagreements(text, render(changed))


def test_rewrite_replaces_bodies_and_refuses_a_missing_block():
    text = "a\n<!-- findings:x -->\nold\n<!-- /findings:x -->\nb\n"
    assert rewrite(text, {"x": "new\n"}) == "a\n<!-- findings:x -->\nnew\n<!-- /findings:x -->\nb\n"
    with pytest.raises(ValueError, match="no block"):
        rewrite(text, {"y": "z\n"})


def test_no_rate_or_count_interval_is_zero_width(results):
    """Rates get Wilson intervals, mean counts the exact Poisson one: none collapses at 0% or 100%."""
    from citypath.evaluate import RATES

    for name, entry in results["models"].items():
        for k, summary in entry["by_steps"].items():
            for metric in (*RATES, "illegal_hop_rate", "illegal_jumps_mean"):
                lo, hi = summary["ci95"][metric]
                assert lo <= summary[metric] <= hi and hi > lo, (name, k, metric)
