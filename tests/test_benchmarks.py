"""The benchmark suite runs end to end (its figures are printed, never asserted: timings are noisy here)."""

import json

import pytest


def test_the_quick_suite_runs_every_section_and_reports_every_figure_as_a_positive_number(tmp_path, capsys):
    from benchmarks import run

    out = run.main(["--quick", "--out", str(tmp_path / "benchmarks.json")])
    s = out["summary"]
    expected = ["ratio_spd_speedup_vs_networkx", "networkx_ms_per_path", "spd_ms_per_path", "dijkstra_ms",
                "app_cold_start_s", "bare_page_cold_start_s", "ratio_app_cold_start_vs_bare_page",
                "app_rerun_ms", "bare_page_rerun_ms", "ratio_app_rerun_vs_bare_page",
                "mem_graph_build_max_rss_mb", "mem_spd_tree_rss_mb", "mem_app_max_rss_mb", "ratio_mem_app_vs_bare_page",
                "load_sessions_ok", "load_open_ms_p50", "load_stop_ms_p50", "ratio_load_stop_p50_vs_single_report",
                "app_report_ms", "app_first_paint_s"]
    expected += [f"train_{family}_paths_per_s" for family in ("gru", "refiner", "gnn")]
    assert len(out["models"]["models"]) == 3   # one checkpoint per family, trained by the training section
    for name in out["models"]["models"]:
        expected += [f"model_{name}_first_step_ms", f"model_{name}_mean_step_ms",
                     f"ratio_model_{name}_first_step_vs_dijkstra", f"ratio_model_{name}_mean_step_vs_dijkstra"]
    assert set(expected) <= set(s), set(expected) - set(s)
    bad = {k: v for k, v in s.items() if not (isinstance(v, (int, float)) and v > 0)}
    assert not bad, bad
    assert out["load"]["errors"] == [] and out["load"]["frames_checked"] == 2 * 3
    assert out["machine"]["cores"] > 0 and out["load_average"]["samples"] > 0
    assert json.loads((tmp_path / "benchmarks.json").read_text())["summary"] == s
    assert '"ratio_spd_speedup_vs_networkx"' in capsys.readouterr().out


def test_the_payload_benchmark_builds_each_pairs_player(tmp_path, small_graph, monkeypatch):
    """benchmarks/bench_payload.py builds and writes one player per pair for the app's default comparison."""
    from benchmarks import bench_payload
    from tests.fake_models import use_fake_app, write_checkpoint

    ckpt = tmp_path / "checkpoints"
    write_checkpoint(ckpt, "demo-refining", "fake-refining", small_graph)
    write_checkpoint(ckpt, "demo-garbage", "fake-garbage", small_graph)
    use_fake_app(monkeypatch, ckpt)
    out = bench_payload.main(["--states", "RI,MA", "--pairs", "3", "--steps", "4"])
    assert sorted(out["models"]) == ["demo-garbage", "demo-refining"] and out["steps"] == 4
    assert len(out["build_ms"]) == len(out["write_ms"]) == 3
    assert all(x > 0 for x in out["build_ms"] + out["write_ms"]) and out["total_ms_max"] >= out["total_ms_median"]


def test_before_after_says_within_noise_only_when_the_interval_holds_zero():
    from benchmarks.load_before_after import difference

    same = difference([10.0, 11.0, 12.0, 10.5], [10.2, 11.4, 11.8, 10.1])
    assert same["within_noise"] and same["ci95"][0] < 0 < same["ci95"][1]
    slower = difference([20.0, 20.5, 19.8, 20.2], [10.0, 10.4, 9.9, 10.1])
    assert not slower["within_noise"] and 9 < slower["ci95"][0] < slower["mean"] < slower["ci95"][1] < 11
    assert difference([1.0], [2.0])["ci95"] is None          # one run each: no interval, no verdict


def test_recorded_comparisons_pool_by_run_pair():
    from benchmarks.load_before_after import FIGURES, paired

    def report(before, after):
        runs = {"b": [dict.fromkeys(FIGURES, x) for x in before], "a": [dict.fromkeys(FIGURES, x) for x in after]}
        return {"before": "b", "after": "a", "runs": runs}

    # each pair moves with the machine (10 -> 14 s) but the after is always 1 s later: the pairing sees it
    out = paired([report([10.0, 12.0], [11.0, 13.1]), report([14.0, 11.0], [15.0, 11.9])])
    f = out["figures"]["open_ms_p50"]
    assert out["pairs"] == 4 and abs(f["difference"] - 1.0) < 1e-12 and not f["within_noise"]
    assert f["before_mean"] == 11.75 and abs(f["after_over_before"] - 12.75 / 11.75) < 1e-12
    same = paired([report([10.0, 12.0, 14.0], [10.5, 11.5, 14.2])])["figures"]["stop_ms_p50"]
    assert same["within_noise"]
    with pytest.raises(SystemExit, match="different commits"):
        paired([report([1.0], [2.0]), {**report([1.0], [2.0]), "after": "c"}])
