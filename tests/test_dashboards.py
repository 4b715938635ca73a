"""citypath.app.tables: the tables behind the Test-time compute, Training and Dataset pages."""

from __future__ import annotations

import numpy as np

from citypath.app import tables
from tests.fake_models import RefiningFake


def test_results_table_layouts():
    nested = {"models": {"a": {"family": "gru", "by_steps": {"1": {"valid": 0.1}, "4": {"valid": 0.5}}}}}
    df = tables.results_table(nested)
    assert list(df["steps"]) == [1, 4] and list(df["valid"]) == [0.1, 0.5] and df["family"].iloc[0] == "gru"
    flat = tables.results_table([{"model": "a", "steps": "2", "valid": 1.0}, {"junk": 1}])
    assert len(flat) == 1 and flat["steps"].iloc[0] == 2
    assert tables.results_table({"weird": 1}).empty and tables.results_table(None).empty


def test_missing_results_file(tmp_path):
    df, problem = tables.load_results_table(tmp_path / "eval.json")
    assert df.empty and "does not exist" in problem
    (tmp_path / "eval.json").write_text("{broken")
    df, problem = tables.load_results_table(tmp_path / "eval.json")
    assert df.empty and "cannot be read" in problem


def test_quick_eval_and_cards(small_graph):
    g = small_graph
    m = RefiningFake("r", {"num_parameters": 5, "max_steps": 8, "graph": {"fingerprint": g.fingerprint},
                           "metrics": {"by_steps": {"1": {"valid": 0.2}}},
                           "curves": [{"epoch": 1, "paths_seen": 10, "train_loss": 1.0, "val_valid": 0.3}]})
    seen = []
    df = tables.quick_eval({"r": m}, g, 4, [1, 2, 8], progress=lambda f, text: seen.append(f), bootstrap=10)
    assert list(df["steps"]) == [1, 2, 8] and (df["pairs"] == 4).all()
    assert df["valid"].iloc[-1] >= df["valid"].iloc[0]
    assert seen[-1] == 1.0
    assert tables.card_table({"r": m})["valid"].tolist() == [0.2]
    curves = tables.curves_table({"r": m})
    assert set(curves["metric"]) == {"train_loss", "val_valid"}


def test_dataset_tables(small_graph):
    g = small_graph
    deg = tables.degree_counts(g)
    assert deg["cities"].sum() == g.n_cities
    comp = tables.component_sizes(g)
    assert comp["cities"].iloc[0] == g.n_cities
    sample = tables.path_length_sample(g, sources=3)
    assert len(sample) == 3 * (g.n_cities - 1) and (sample["hops"] >= 1).all() and np.isfinite(sample["km"]).all()


def test_the_posts_finding_as_a_curve_and_sentences(small_graph):
    import pandas as pd

    g = small_graph
    card = {"num_parameters": 5, "max_steps": 8, "graph": {"fingerprint": g.fingerprint},
            "curves": [{"paths_seen": 10, "val_loss": 3.0, "val_passes_three_checks": 0.0, "val_reaches_target": 0.0},
                       {"paths_seen": 20, "val_loss": 0.5, "val_passes_three_checks": 0.02,
                        "val_reaches_target": 0.03, "val_illegal_jump_rate": 0.4}]}
    post, other = RefiningFake("post", card), RefiningFake("other", card)
    post.family = "postrnn"                      # the headline keeps the post's family only
    head = tables.headline_curve({"post": post, "other": other})
    assert head["model"].unique().tolist() == ["post"] and head["val_nll"].tolist() == [3.0, 0.5]
    s = tables.curve_sentence("post", post)
    assert "validation loss 0.5" in s and "2% of its validation routes pass all three checks" in s and "40%" in s
    results = pd.DataFrame([{"model": "post", "steps": 1, "n": 1000, "nll_per_city": 1.14, "reaches_target": 0.005,
                             "passes_three_checks": 0.004},
                            {"model": "post", "steps": 32, "n": 1000, "nll_per_city": 1.14, "reaches_target": 0.066,
                             "passes_three_checks": 0.02}])
    held = tables.heldout_sentence("post", results)
    assert "NLL 1.14" in held and "0.4% pass" in held and "at 32 steps, 6.6%" in held
    assert tables.heldout_sentence("missing", results) is None
    from citypath.registry import FAMILIES

    trained = {name for name, f in FAMILIES.items() if f.task}
    assert set(tables.LOSS_MEANING) == trained            # every trainable family says what its loss means, once
    assert set(tables.POST_FAMILIES) == {"postrnn", "depthlm"}
