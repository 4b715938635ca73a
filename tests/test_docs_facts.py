"""Facts a newcomer reads in more than one place say the same everywhere: the port and how to change it, and how
long the first build of the city graph takes (measured: 6.2-10.1 s on the 2-core CPU, 0.7 s from the cache)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PLACES = ["README.md", "docs/app.md", "citypath/app/launch.py", "citypath/app/resources.py", "docs/benchmarks.md"]


def test_the_port_and_how_to_change_it_are_in_the_readme_and_the_app_docs():
    for name in ("README.md", "docs/app.md"):
        text = (REPO / name).read_text()
        assert "8501" in text and "--server.port 8502" in text, name
    assert "--server.port" in (REPO / "citypath/app/launch.py").read_text()


def test_the_graph_build_time_is_the_same_wherever_it_is_stated():
    said = {}
    for name in PLACES:
        text = (REPO / name).read_text()
        assert not re.search(r"graph[^.]{0,80}about (a minute|4 s)", text), name       # the old, unmeasured figures
        assert "about a minute" not in text or name == "docs/benchmarks.md", name
        said[name] = re.findall(r"(\d+-\d+ s|about \d+ s)", text)
    for name in ("README.md", "docs/app.md", "citypath/app/launch.py", "docs/benchmarks.md"):
        assert "6-10 s" in said[name], (name, said[name])
    assert "about 10 s" in said["citypath/app/resources.py"]          # the spinner: the range's upper end


def test_every_results_file_is_listed_with_its_command():
    """results/README.md names every committed result file (and so the command that makes it)."""
    root = REPO / "results"
    listing = (root / "README.md").read_text()
    files = [p for p in root.rglob("*") if p.is_file() and p.name != "README.md" and not p.name.startswith(".")]
    assert files
    assert [str(p.relative_to(root)) for p in files if p.name not in listing] == []
