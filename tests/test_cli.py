import subprocess
import sys

from citypath.cli import main


def test_route_prints_the_optimal_path(capsys, small_graph):
    assert main(["route", "Providence, RI", "Boston, MA", "--states", "RI,MA"]) == 0
    out = capsys.readouterr().out
    s, t = small_graph.find_city("Providence, RI"), small_graph.find_city("Boston, MA")
    path = small_graph.shortest_path(s, t)
    assert f"{len(path) - 1} hops" in out
    assert f"{small_graph.path_length_km(path):,.1f} km" in out
    assert out.count("\n") == len(path) + 1


def test_unknown_city_exits_2_with_suggestions(capsys):
    assert main(["route", "Provdence, RI", "Boston, MA", "--states", "RI,MA"]) == 2
    err = capsys.readouterr().err
    assert "did you mean" in err and "Providence, RI" in err


def test_cities_search_and_build(capsys):
    assert main(["cities", "provid", "--states", "RI"]) == 0
    assert "Providence, RI" in capsys.readouterr().out
    assert main(["cities", "zzzz", "--states", "RI"]) == 1
    assert main(["build", "--states", "RI"]) == 0
    assert '"cities"' in capsys.readouterr().out
    assert main(["route", "Providence, RI", "Boston, MA", "--radius-km", "-5"]) == 2


def test_help_runs_as_a_module():
    out = subprocess.run([sys.executable, "-m", "citypath", "--help"], capture_output=True, text=True, check=True)
    for command in ("cities", "build", "route"):
        assert command in out.stdout


def test_the_route_table_reads_the_metric_table():
    """The CLI's per-step table: one column per metric of ROUTE_TABLE, headed and written as METRICS says."""
    import pandas as pd

    from citypath.cli import ROUTE_TABLE, route_table
    from citypath.metrics import METRICS

    row = {"step": 1, "valid": True, "illegal_jumps": 0, "reaches_target": True, "hops": 2, "length_km": 1234.4,
           "length_pct": 3.14, "frechet_km": 12.0, "ms": 8.04}
    header, line = route_table(pd.DataFrame([row])).splitlines()
    assert header.split("  ")[0] == "step" and all(METRICS[n].short in header for n in ROUTE_TABLE)
    assert line.split() == ["1", "yes", "0", "yes", "2", "1,234", "+3.1%", "12", "8.0"]


def test_the_route_table_says_when_a_route_did_not_arrive():
    """No length vs optimal or Fréchet for a step whose route did not arrive: "—", and a line says why."""
    import pandas as pd

    from citypath.cli import route_table
    from citypath.metrics import NOT_ARRIVED_NOTE

    rows = [{"step": 1, "valid": False, "illegal_jumps": 0, "reaches_target": False, "starts_at_source": True,
             "unknown_ids": 0, "hops": 2, "length_km": 300.0, "length_pct": -81.3, "frechet_km": 40.0, "ms": 1.0},
            {"step": 2, "valid": True, "illegal_jumps": 0, "reaches_target": True, "starts_at_source": True,
             "unknown_ids": 0, "hops": 5, "length_km": 1700.0, "length_pct": 2.0, "frechet_km": 12.0, "ms": 1.0}]
    lines = route_table(pd.DataFrame(rows)).splitlines()
    assert lines[1].split() == ["1", "no", "0", "no", "2", "300", "—", "—", "1.0"]
    assert lines[2].split() == ["2", "yes", "0", "yes", "5", "1,700", "+2.0%", "12", "1.0"]
    assert lines[-1] == NOT_ARRIVED_NOTE and "-81.3" not in "\n".join(lines)
