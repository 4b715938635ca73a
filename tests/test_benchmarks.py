"""The benchmark scripts run (their figures are printed, never asserted: timings are noisy here)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def test_data_benchmark_runs_and_reports_every_figure(capsys):
    import bench_data

    out = bench_data.main(["--quick", "--paths", "3000", "--nx-pairs", "3"])
    for key in ("graph_build_from_scratch_s", "graph_load_from_cache_s", "spd_seconds", "peak_rss_after_spd_mb",
                "networkx_seconds_per_path", "spd_speedup_vs_networkx"):
        assert out[key] > 0, key
    assert out["spd_paths"] == 3000 and '"spd_speedup_vs_networkx"' in capsys.readouterr().out
