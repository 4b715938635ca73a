"""README's figures come from results/ (citypath/findings.py): the committed README agrees with the committed
results, and the generator puts what the results say, no more."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from citypath.evaluate import load_results
from citypath.findings import (
    DOCS,
    DOCS_ONLY,
    disagreements,
    guided_frontier,
    load_depthlm,
    load_guided,
    load_json,
    load_tradeoff,
    render,
    rewrite,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def results() -> dict:
    return load_results(ROOT / "results" / "eval.json")


def test_readme_agrees_with_results(results):
    text = (ROOT / "README.md").read_text()
    depthlm = load_depthlm(ROOT / "results" / "depthlm-loops.json")
    guided = load_guided(ROOT / "results" / "guided-frontier.json")
    sweep = load_tradeoff(ROOT / "results" / "tradeoff.json")
    blocks = render(results, depthlm, guided, sweep, load_json(ROOT / "results" / "benchmarks.json"))
    readme_blocks = {k: v for k, v in blocks.items() if k not in DOCS_ONLY}
    assert disagreements(text, readme_blocks) == [], "run: python -m citypath findings"
    for doc in DOCS:                 # the docs that hold a block say the same
        held = (ROOT / doc).read_text()
        theirs = {k: v for k, v in blocks.items() if f"<!-- findings:{k} -->" in held}
        assert theirs and disagreements(held, theirs) == [], doc


def _guided_report(expansions: list[float], alt_ci: list[float]) -> dict:
    def row(kind, e, **kw):
        return {"kind": kind, "certified": True, "bytes_per_city": 4, "stored_bytes_per_city": 4, "parameters": 10,
                "expansions": {"value": e, "ci95": [e, e]}, "ms": {"value": 1.0, "ci95": [1.0, 1.0]},
                "exact": {"value": 1.0, "ci95": [0.99, 1.0]},
                "vs_astar": {"expansions": {"value": e / expansions[0], "ci95": [e / expansions[0] - 0.01,
                                                                                 e / expansions[0] + 0.01]},
                             "ms": {"value": 0.9, "ci95": [0.8, 0.95]}}, **kw}
    alt = {"row": "alt-1", "expansions": {"value": sum(alt_ci) / 2, "ci95": alt_ci, "below_1": alt_ci[1] < 1,
                                          "above_1": alt_ci[0] > 1}}
    return {"pairs": 10, "split": "test", "pair_seed": 0, "command": "x",
            "rows": {"astar": row("classical", expansions[0]), "guided-m4": row("guided", expansions[1],
                                                                             vs_alt_equal_bytes=alt)}}


def test_the_guided_block_says_no_gain_when_the_interval_holds_1():
    """A learned gain over ALT whose interval holds 1 is written as none; one that excludes it as fewer."""
    none = guided_frontier(_guided_report([1000.0, 600.0], [0.97, 1.02]))
    assert "no learned gain" in none and "reaches the bar of 0.73x" in none
    fewer = guided_frontier(_guided_report([1000.0, 800.0], [0.9, 0.95]))
    assert "fewer than ALT" in fewer and "does not reach the bar" in fewer


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
