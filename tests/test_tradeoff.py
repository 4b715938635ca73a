"""The train/test-compute trade-off: contours checked against a hand-worked example, and the sweep's evaluation
run end to end on a tiny graph with two tiny sizes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from citypath.evaluate import evaluate_model, sample_heldout_pairs
from citypath.models import list_models, load_model
from citypath.tradeoff import LEVELS, Level, Run, contour, least_compute, terciles, tradeoff_report


def run(name, train_flops, steps, valid, ratio, flops, parameters=100):
    """A Run from per-step lists (the same FLOPs for every pair at a step unless a list is given)."""
    n = len(valid[0])
    as_flops = [np.full(n, f, dtype=float) if np.isscalar(f) else np.asarray(f, float) for f in flops]
    ratio_all = [np.where(np.asarray(v) > 0, r, 2.0) for v, r in zip(valid, ratio)]
    return Run(name, "toy", parameters, train_flops, list(steps),
               {k: np.asarray(v, float) for k, v in zip(steps, valid)},
               {k: np.asarray(r, float) for k, r in zip(steps, ratio_all)},
               {k: f for k, f in zip(steps, as_flops)})


ONE = [1.0, 1.0, 1.0, 1.0]

# Hand-worked: at "valid >= 75%" the smallest run needs 2 steps (100 FLOPs a query), the middle one 1 step
# (10 FLOPs), the largest 1 step (1 FLOP): test compute 100, 10, 1 against training compute 1e9, 1e10, 1e11,
# a log-log slope of exactly -1, so 10x the training compute removes 10x the test-time compute.
SMALL = run("small", 1e9, [1, 2, 4], [[1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]],
            [ONE, [1, 1, 1.1, 9], [1, 1, 1.1, 1.1]], [50, 100, 200])
MIDDLE = run("middle", 1e10, [1, 2], [[1, 1, 1, 0], [1, 1, 1, 1]], [ONE, ONE], [10, 20], parameters=1000)
LARGE = run("large", 1e11, [1], [[1, 1, 1, 1]], [[1, 1, 1, 1.02]], [1], parameters=10000)
RUNS = [SMALL, MIDDLE, LARGE]


def least(r, level, idx):
    step, comp = least_compute(r, level, idx)
    return step.tolist(), comp.tolist()


def test_least_compute_is_the_first_step_count_meeting_the_level():
    everything = np.arange(4)[None, :]
    assert least(SMALL, Level("valid", ">=", 0.75), everything) == ([2], [100.0])
    # Mean ratio over all pairs: 1.275 at 2 steps (the failed route counts 2.0), 1.05 at 4 steps.
    assert least(SMALL, Level("ratio_all", "<=", 1.05), everything) == ([4], [200.0])
    step, comp = least_compute(SMALL, Level("ratio_all", "<=", 1.01), everything)
    assert step.tolist() == [0] and np.isinf(comp).all()
    # Only the pairs asked for count: on pairs 0 and 1 alone, one step already meets it.
    assert least(SMALL, Level("valid", ">=", 0.75), np.array([[0, 1]])) == ([1], [50.0])


def test_contour_slope_matches_the_hand_worked_example():
    level = Level("valid", ">=", 0.75)
    boot = np.random.default_rng(0).integers(0, 4, size=(300, 4))
    c = contour(RUNS, level, np.arange(4), boot)
    assert [(p["name"], p["step"], p["test_flops"]) for p in c["points"]] == \
        [("small", 2, 100.0), ("middle", 1, 10.0), ("large", 1, 1.0)]
    assert c["fit"]["slope"] == pytest.approx(-1.0)
    assert c["fit"]["factor_per_10x"] == pytest.approx(10.0)
    assert "removes 10x of the test-time compute" in c["fit"]["sentence"]
    for p in c["points"]:          # each point inside its own interval (open above when a resample misses)
        lo, hi = p["ci95"]
        assert lo <= p["test_flops"] and (hi is None or p["test_flops"] <= hi)
    # Against parameters (100, 1000, 10000) the same three points give the same slope.
    assert contour(RUNS, level, np.arange(4), boot, x="parameters")["fit"]["slope"] == pytest.approx(-1.0)


def test_contour_says_why_no_line_fits():
    c = contour(RUNS, Level("ratio_all", "<=", 1.01), np.arange(4), np.zeros((10, 4), dtype=int))
    assert c["fit"] is None
    assert "2 of 3 sizes reach mean ratio <= 1.01" in c["why_no_fit"] and "small never" in c["why_no_fit"]


def test_report_sentences_follow_the_contours():
    """The headline states the hand-worked slope; on the long third (pair 3, which the smallest run needs
    more steps for) the difficulty sentence says whether the smallest size reaches the level by thinking longer."""
    from citypath.tradeoff import difficulty_sentences, headline

    report = tradeoff_report({r.name: r for r in RUNS}, [1, 2, 3, 4], [Level("valid", ">=", 0.75)], resamples=50)
    assert headline(report) == [f"toy: {report['families']['toy']['all']['valid>=0.75']['fit']['sentence']}."]
    assert "removes 10x" in headline(report)[0]
    (line,) = difficulty_sentences(report, [Level("valid", ">=", 0.75)])
    assert line.startswith("toy at valid >= 75%")
    assert "long routes: the smallest reaches it at 4 steps, 200x the largest's test-time FLOPs" in line
    assert "short routes: the smallest reaches it at 1 step, 50x" in line
    two = tradeoff_report({"small": SMALL, "middle": MIDDLE}, [1, 2, 3, 4], resamples=20)
    assert headline(two)[0].startswith("toy: no line fits: at most 2 of its 2 sizes reach a level") and \
        "(a line needs 3)" in headline(two)[0]


def test_terciles_split_by_hop_count():
    parts = terciles(np.array([5, 1, 3, 2, 4, 6]))
    assert {k: v.tolist() for k, v in parts.items()} == {"short": [1, 3], "medium": [2, 4], "long": [0, 5]}


def test_report_refuses_records_of_other_pairs():
    with pytest.raises(ValueError, match="cover 4 pairs"):
        tradeoff_report({"small": SMALL}, [1, 2, 3])
    with pytest.raises(ValueError, match="compares"):
        Level("exact", ">=", 0.5)


def test_sweep_evaluation_end_to_end_on_a_tiny_graph(tiny_graph, tiny_gru_dir, tmp_path):
    """Two tiny GRU sizes through experiments.tradeoff's evaluate: the file holds both, and every contour point
    is what the per-pair records it stored give by hand."""
    from citypath.models.gru import GRUConfig
    from citypath.tasks.gru import GRUTask
    from citypath.training import TrainConfig, train
    from experiments.tradeoff import evaluate

    ck = tmp_path / "sweep"
    ck.mkdir()
    for suffix in (".json", ".safetensors"):
        shutil.copy(tiny_gru_dir / f"gru-tiny{suffix}", ck / f"gru-tiny{suffix}")
    cfg = TrainConfig(name="gru-nano", total_paths=1500, batch_paths=64, epoch_paths=1500, val_paths=20, card_pairs=0,
                      spd_paths=20000, progress=False, checkpoints_dir=str(ck), runs_dir=str(tmp_path / "runs"))
    train(GRUTask(tiny_graph, "tiny", GRUConfig(n_cities=tiny_graph.n_cities, embed_dim=4, hidden_dim=8), cfg,
                  command="(test)"), tiny_graph, cfg)
    out = tmp_path / "tradeoff.json"
    doc = evaluate(tiny_graph, ["gru-nano", "gru-tiny"], ck, 30, 0, out, {"gru": (1, 2, 4)}, progress=False,
                   resamples=100, min_points=2)
    assert json.loads(out.read_text())["models"].keys() == {"gru-nano", "gru-tiny"}
    nano, tiny = doc["models"]["gru-nano"], doc["models"]["gru-tiny"]
    assert nano["num_parameters"] < tiny["num_parameters"] and 0 < nano["train_flops"] < tiny["train_flops"]
    assert len(doc["hops"]) == 30 and min(doc["hops"]) >= 1
    report = doc["report"]["families"]["gru"]
    for level in LEVELS:
        for p in report["all"][level.key]["points"]:
            rec = doc["models"][p["name"]]["per_pair"]
            expected = None
            for k in (1, 2, 4):
                v = np.array(rec[str(k)]["valid"], float)
                r = np.array([2.0 if x is None else x for x in rec[str(k)]["length_ratio"]])
                stat = v.mean() if level.metric == "valid" else np.where(v > 0, r, 2.0).mean()
                if level.met(stat):
                    expected = (k, float(np.mean(rec[str(k)]["flops"])))
                    break
            assert (p["step"], p["test_flops"]) == (expected or (None, None))
    # The classical floor on the same pairs: A* exact on every one, kept beside the sweep, the sweep untouched.
    from experiments.tradeoff import evaluate_floor

    floored = evaluate_floor(tiny_graph, 30, 0, out, progress=False)
    astar = floored["floor"]["astar"]
    assert astar["valid"] == 1.0 and astar["length_ratio_all_mean"] == pytest.approx(1.0) and astar["flops_total"] > 0
    assert floored["models"] == doc["models"]
    # A second evaluation on other pairs is refused, and the file is left as it was.
    before = out.read_bytes()
    with pytest.raises(SystemExit, match="other pairs"):
        evaluate(tiny_graph, ["gru-nano"], ck, 31, 0, out, {"gru": (1, 2)}, progress=False)
    assert out.read_bytes() == before


SWEEP_DIR = Path(__file__).resolve().parents[1] / "checkpoints" / "sweep"


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models(SWEEP_DIR) or ["sweep-gru-tiny"])
def test_sweep_checkpoint_scores_near_its_card(name, default_graph):
    """Every sweep checkpoint, re-measured through the protocol on 20 of its card's pairs at 1 and 4 steps, is
    within noise of its card's valid share and records the training compute the sweep's x-axis reads."""
    if not (SWEEP_DIR / f"{name}.safetensors").exists():
        pytest.skip(f"{name} is not in {SWEEP_DIR}")
    card = json.loads((SWEEP_DIR / f"{name}.json").read_text())
    assert card["training"]["flops"] > 0 and card["training"]["command"].startswith("python -m citypath train")
    assert "--checkpoints checkpoints/sweep" in card["training"]["command"]
    metrics = card["metrics"]
    m = load_model(name, directory=SWEEP_DIR, graph=default_graph)
    s, t = sample_heldout_pairs(default_graph, metrics["pairs"], seed=metrics["pair_seed"])
    n = 20
    r = evaluate_model(m, default_graph, s[:n], t[:n], steps=(1, 4), bootstrap=0, progress=False,
                       seed=metrics["pair_seed"])
    for k in ("1", "4"):
        p, got = metrics["by_steps"][k]["valid"], r["by_steps"][k]["valid"]
        assert abs(got - p) <= 3 * np.sqrt(max(p * (1 - p), 0.02) / n) + 0.02, (k, got, p)


def test_training_an_unknown_sweep_run_is_refused_with_the_runs_listed(tmp_path, capsys):
    from experiments.tradeoff import main

    assert main(["train", "--only", "sweep-gru-huge", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not in the sweep: sweep-gru-huge" in err and "sweep-gnn-large" in err
    assert list(tmp_path.iterdir()) == []          # nothing trained, nothing written
