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


def test_compute_axes_read_in_si_units_with_enough_ticks():
    """1 M, 10 M, 1 G: never 10,000,000; a short span still gets at least four ticks."""
    assert [tables.si_label(v) for v in (1e6, 1e7, 1e8, 1e9, 3e9, 1e10, 2e3, 0.5)] == [
        "1 M", "10 M", "100 M", "1 G", "3 G", "10 G", "2 k", "0.5"]
    assert tables.log_ticks(6.7e5, 4.5e10) == [1e6, 1e7, 1e8, 1e9, 1e10]
    short = tables.log_ticks(2e7, 9e7)
    assert len(short) >= 4 and all(2e7 <= t <= 9e7 for t in short)
    axis = tables.compute_axis([1.9e6, 3.2e8, 3.1e10], "flops_total")
    assert axis["values"] == [3e6, 1e7, 3e7, 1e8, 3e8, 1e9, 3e9, 1e10, 3e10]
    assert all(f'"{t}"' in axis["labelExpr"] for t in ("3 M", "10 M", "1 G", "30 G"))
    ms = tables.compute_axis([20.0, 1500.0], "cpu_ms_total_mean")
    assert '"100 ms"' in ms["labelExpr"] and '"1 s"' in ms["labelExpr"]


def test_the_frontier_chart_colours_every_row_its_own_and_labels_one_model_at_a_time():
    import pandas as pd

    from citypath import palette

    rows = [{"model": m, "kind": k, "steps": s, "flops_total": f * s, "length_pct_mean": 10.0 / s, "label": str(s)}
            for m, k, f in (("bellman-tiny", "learned", 2e6), ("astar", "no learning", 1e6),
                            ("bellman-tiny.scaffold", "control", 2e6), ("my-model", "learned", 5e6))
            for s in (1, 2, 4)]
    frontier = pd.DataFrame(rows)
    spec = tables.frontier_chart(frontier).to_dict()
    line, steps = spec["layer"]
    colour = line["encoding"]["color"]
    assert colour["scale"] == palette.altair_scale(sorted(frontier["model"].unique()))
    assert len(set(colour["scale"]["range"])) == 4 and colour["legend"]["title"].startswith("model")
    assert line["encoding"]["x"]["axis"]["values"] and "labelExpr" in line["encoding"]["x"]["axis"]
    assert len(line["encoding"]["y"]["axis"]["values"]) >= 4
    # the step numbers are drawn only for the model picked in the legend: none until one is picked
    pick = spec["params"][0]
    assert pick["bind"] == "legend" and steps["transform"] == [{"filter": {"param": pick["name"], "empty": False}}]
    assert "legend" not in tables.frontier_chart(frontier, labels=False).to_dict()["layer"][0]["encoding"]["color"] \
        or tables.frontier_chart(frontier, labels=False).to_dict()["layer"][0]["encoding"]["color"]["legend"] is None


def test_the_training_headline_draws_the_pass_rate_on_its_own_scale():
    import pandas as pd

    head = pd.DataFrame([{"model": "post-rnn-small", "paths_seen": 1000 * i, "val_nll": 3.0 / i,
                          "passes": 0.005 * (i % 2), "reaches": 0.01} for i in range(1, 6)])
    spec = tables.headline_chart(head).to_dict()
    loss, passes = spec["hconcat"]
    assert loss["encoding"]["y"]["field"] == "val_nll" and loss["encoding"]["y"]["scale"]["type"] == "log"
    rate = passes["layer"][0]["encoding"]["y"]
    assert rate["field"] == "passes" and rate["scale"]["domain"] == [0, tables.HEADLINE_MIN_TOP]
    reference = passes["layer"][1]
    assert "100%" in spec["datasets"][reference["data"]["name"]][0]["text"]


def test_the_dataset_page_says_what_its_left_out_count_holds(small_graph, default_graph):
    n, text = tables.left_out(default_graph)
    summary = default_graph.summary()
    assert n == summary["dropped_disconnected"] + summary["outside_contiguous_us"] == 395
    assert "375 outside the contiguous US (Hawaii 254, Alaska 121)" in text and "20 in 8 groups" in text
    assert "README.md and docs/data.md count only these 20" in text
    n_small, small = tables.left_out(small_graph)
    assert "README.md" not in small and str(n_small) in small
