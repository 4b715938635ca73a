"""The exported datasets (citypath/dataset.py): export -> load gives the same graph and the same paths, the files
match metadata.json, and a partial, corrupt or foreign directory is refused with the file and the reason."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from citypath import dataset
from citypath.cli import main
from citypath.spd import SPDConfig, load_spd
from citypath.split import pair_split

SPD = SPDConfig(n_paths=3000)


@pytest.fixture(scope="module")
def exported(tiny_graph, tmp_path_factory) -> Path:
    """An export of the tiny graph and a 3,000-path SPD, written in row groups of 1,000 paths."""
    out = tmp_path_factory.mktemp("export") / "data"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dataset, "CHUNK_PATHS", 1000)
        dataset.export(tiny_graph, SPD, out, progress=False)
    return out


@pytest.fixture
def copy(exported, tmp_path) -> Path:
    """A copy of the export to damage."""
    return Path(shutil.copytree(exported, tmp_path / "copy"))


def test_export_writes_the_files_and_their_checksums(exported, tiny_graph):
    meta = json.loads((exported / "metadata.json").read_text())
    assert sorted(p.name for p in exported.iterdir()) == sorted([*dataset.FILES, "metadata.json"])
    for name, info in meta["files"].items():
        assert info["sha256"] == dataset.sha256(exported / name)
        assert info["rows"] == pq.ParquetFile(exported / name).metadata.num_rows
    assert meta["graph"]["fingerprint"] == tiny_graph.fingerprint
    assert meta["graph"]["cities"] == tiny_graph.n_cities == meta["files"]["cities.parquet"]["rows"]
    assert meta["files"]["edges.parquet"]["rows"] == tiny_graph.adjacency.nnz // 2
    assert meta["files"]["excluded.parquet"]["rows"] == len(tiny_graph.outside)
    assert meta["spd"]["paths"] == SPD.n_paths == sum(meta["spd"]["by_split"].values())
    assert meta["excluded"]["by_reason"]["disconnected"] == len(tiny_graph.dropped)
    assert "--radius-km 20 " in meta["command"] and "--states MA,RI" in meta["command"]
    assert "GeoNames" in meta["license"]["attribution"] and meta["license"]["name"] == "CC BY 4.0"
    assert pq.ParquetFile(exported / "paths.parquet").metadata.num_row_groups > 1     # streamed in chunks


def test_plain_pandas_reads_the_same_graph_and_paths(exported, tiny_graph):
    cities = pd.read_parquet(exported / "cities.parquet")
    assert cities["id"].tolist() == list(range(tiny_graph.n_cities))
    assert cities["label"].tolist() == tiny_graph.labels
    np.testing.assert_array_equal(cities[["lat", "lon"]].to_numpy(), np.c_[tiny_graph.lat, tiny_graph.lon])
    edges = pd.read_parquet(exported / "edges.parquet")
    assert (edges["u"] < edges["v"]).all() and (edges["km"] <= tiny_graph.radius_km).all()
    np.testing.assert_array_equal(edges["km"], np.asarray(tiny_graph.adjacency[edges["u"], edges["v"]]).ravel())

    paths = pd.read_parquet(exported / "paths.parquet")
    spd = [load_spd(tiny_graph, s, SPD, progress=False) for s in ("train", "test")]
    assert len(paths) == sum(len(d) for d in spd)
    expected = [list(d[i]) for d in spd for i in range(len(d))]
    assert [list(p) for p in paths["path"]] == expected
    assert paths["source"].tolist() == np.concatenate([d.src for d in spd]).tolist()
    assert paths["target"].tolist() == np.concatenate([d.dst for d in spd]).tolist()
    np.testing.assert_array_equal(paths["km"], np.concatenate([d.length_km for d in spd]))
    assert (paths["hops"] == paths["path"].map(len) - 1).all()
    for row in paths.sample(300, random_state=0).itertuples():
        assert row.split == pair_split(int(row.source), int(row.target))
        assert row.path[0] == row.source and row.path[-1] == row.target
        assert row.km == pytest.approx(tiny_graph.path_length_km(row.path), rel=1e-9)
    assert set(paths["split"]) == {"train", "validation", "test"}


def test_load_export_rebuilds_the_same_graph(exported, tiny_graph):
    ex = dataset.load_export(exported)
    g = ex.graph
    assert g.fingerprint == tiny_graph.fingerprint and g.config == tiny_graph.config
    pd.testing.assert_frame_equal(g.cities, tiny_graph.cities)
    pd.testing.assert_frame_equal(g.outside, tiny_graph.outside, check_dtype=False)
    assert (g.adjacency != tiny_graph.adjacency).nnz == 0
    src, dst = g.find_city("Boston, MA"), g.find_city("Providence, RI")
    assert g.shortest_path(src, dst) == tiny_graph.shortest_path(src, dst)
    assert ex.spd_config == SPD and ex.paths(["source"]).num_rows == SPD.n_paths
    assert sum(b.num_rows for b in ex.iter_paths(batch_size=500)) == SPD.n_paths
    assert dataset.load_graph_from_export(exported).fingerprint == tiny_graph.fingerprint


# -- refused directories ----------------------------------------------------------------------

def test_a_non_empty_directory_is_refused_unless_force(exported, tiny_graph, tmp_path):
    with pytest.raises(FileExistsError, match="not empty.*--force"):
        dataset.export(tiny_graph, SPD, exported, progress=False)
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="previous citypath export only.*notes.txt"):
        dataset.export(tiny_graph, SPD, other, force=True, progress=False)
    assert (other / "notes.txt").read_text() == "keep me"


def test_force_replaces_a_previous_export(copy, tiny_graph):
    before = json.loads((copy / "metadata.json").read_text())
    meta = dataset.export(tiny_graph, SPDConfig(n_paths=1000), copy, force=True, progress=False)
    assert meta["spd"]["paths"] == 1000 != before["spd"]["paths"]
    assert dataset.load_export(copy).metadata["spd"]["paths"] == 1000
    assert sorted(p.name for p in copy.iterdir()) == sorted([*dataset.FILES, "metadata.json"])


def test_an_unwritable_directory_is_refused(tiny_graph, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(NotADirectoryError, match="is a file"):
        dataset.export(tiny_graph, SPD, blocker, progress=False)
    with pytest.raises(OSError, match="cannot write to export directory"):
        dataset.export(tiny_graph, SPD, blocker / "sub", progress=False)
    if os.geteuid() != 0:           # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(OSError, match="cannot write to export directory"):
            dataset.export(tiny_graph, SPD, locked, progress=False)


class Interrupted(BaseException):
    pass


def _interrupt(*args, **kwargs):
    raise Interrupted


def test_an_interrupted_export_leaves_nothing_that_looks_complete(tiny_graph, tmp_path, monkeypatch):
    monkeypatch.setattr(dataset, "_write_paths", _interrupt)
    out = tmp_path / "out"
    with pytest.raises(Interrupted):
        dataset.export(tiny_graph, SPD, out, progress=False)
    assert list(out.iterdir()) == []                       # the temporary files are gone too
    with pytest.raises(dataset.ExportError, match="metadata.json: missing file"):
        dataset.load_export(out)


def test_an_interrupted_replacement_keeps_the_previous_export(copy, tiny_graph, monkeypatch):
    monkeypatch.setattr(dataset, "_write_paths", _interrupt)
    with pytest.raises(Interrupted):
        dataset.export(tiny_graph, SPDConfig(n_paths=1000), copy, force=True, progress=False)
    assert dataset.load_export(copy).metadata["spd"]["paths"] == SPD.n_paths


# -- refused exports: the file and the reason -------------------------------------------------

def _reseal(directory: Path, name: str) -> None:
    """Record a changed file's checksum and rows in metadata.json, as a careless tool would."""
    meta = json.loads((directory / "metadata.json").read_text())
    meta["files"][name].update(sha256=dataset.sha256(directory / name),
                               rows=pq.ParquetFile(directory / name).metadata.num_rows)
    (directory / "metadata.json").write_text(json.dumps(meta))


def test_a_damaged_file_is_refused_by_checksum(copy):
    data = bytearray((copy / "edges.parquet").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "edges.parquet").write_bytes(bytes(data))
    with pytest.raises(dataset.ExportError, match=r"edges\.parquet: checksum mismatch"):
        dataset.load_export(copy)


def test_a_missing_file_is_refused(copy):
    (copy / "paths.parquet").unlink()
    with pytest.raises(dataset.ExportError, match=r"paths\.parquet: missing file"):
        dataset.load_export(copy)


def test_a_missing_column_is_refused(copy):
    pq.write_table(pq.read_table(copy / "cities.parquet").drop_columns(["lat"]), copy / "cities.parquet")
    _reseal(copy, "cities.parquet")
    with pytest.raises(dataset.ExportError, match=r"cities\.parquet: missing column 'lat'"):
        dataset.load_export(copy)


def test_a_mistyped_column_is_refused(copy):
    table = pq.read_table(copy / "edges.parquet")
    pq.write_table(table.set_column(2, "km", table.column("km").cast(pa.float32())), copy / "edges.parquet")
    _reseal(copy, "edges.parquet")
    with pytest.raises(dataset.ExportError, match=r"edges\.parquet: column 'km' is float, expected double"):
        dataset.load_export(copy)


def test_a_changed_graph_is_refused_by_fingerprint(copy):
    pq.write_table(pq.read_table(copy / "edges.parquet").slice(1), copy / "edges.parquet")
    _reseal(copy, "edges.parquet")
    with pytest.raises(dataset.ExportError, match=r"edges\.parquet: .*fingerprint"):
        dataset.load_export(copy)


def test_a_wrong_row_count_and_broken_metadata_are_refused(copy):
    meta = json.loads((copy / "metadata.json").read_text())
    meta["files"]["cities.parquet"]["rows"] += 1
    (copy / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(dataset.ExportError, match=r"cities\.parquet: \d+ rows, metadata.json records"):
        dataset.load_export(copy)
    (copy / "metadata.json").write_text("{broken")
    with pytest.raises(dataset.ExportError, match="metadata.json: unreadable"):
        dataset.load_export(copy)
    with pytest.raises(dataset.ExportError, match="no such directory"):
        dataset.load_export(copy / "nowhere")


# -- the command line and git ------------------------------------------------------------------

def test_cli_exports_checks_and_refuses(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["dataset", "export", "--out", str(out), "--radius-km", "20", "--states", "RI,MA",
            "--paths", "1000", "--no-progress"]
    assert main(args) == 0
    assert "paths.parquet: 1,000 rows" in capsys.readouterr().out
    assert main(args) == 1
    assert "not empty" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0
    assert main(["dataset", "check", str(out)]) == 0
    assert "every file matches metadata.json" in capsys.readouterr().out
    (out / "cities.parquet").write_bytes(b"not parquet")
    assert main(["dataset", "check", str(out)]) == 2
    assert "cities.parquet: checksum mismatch" in capsys.readouterr().err


def test_the_default_export_directory_is_ignored_by_git():
    root = Path(__file__).resolve().parents[1]
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    probe = f"{dataset.DEFAULT_OUT}/paths.parquet"
    assert subprocess.run(["git", "check-ignore", "-q", probe], cwd=root).returncode == 0


# -- the datasheet's figures --------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


def test_the_datasheet_quotes_the_committed_counts():
    """Every count docs/datasheet.md gives comes from results/ (the default export's metadata, the source counts)."""
    meta = json.loads((REPO / "results" / "dataset-metadata.json").read_text())
    source = json.loads((REPO / "results" / "geonames-counts.json").read_text())
    text = (REPO / "docs" / "datasheet.md").read_text()
    excluded = meta["excluded"]
    figures = [meta["graph"]["cities"], meta["graph"]["edges"], excluded["total"], excluded["disconnected_groups"],
               excluded["by_reason"]["disconnected"], *excluded["not_contiguous_by_state"].values(),
               meta["spd"]["paths"], *meta["spd"]["by_split"].values(),
               *(f[k] for f in meta["files"].values() for k in ("rows", "bytes")),
               source["records"], source["us_records"], source["us_below_min_population"], source["us_cities"],
               *source["territories_not_read"].values()]
    missing = [n for n in figures if f"{n:,}" not in text]
    assert missing == []
    assert meta["graph"]["fingerprint"][:12] in text
    assert source["us_cities"] == meta["graph"]["cities"] + excluded["total"]


@pytest.mark.slow
def test_the_committed_metadata_is_the_default_graphs(default_graph):
    meta = json.loads((REPO / "results" / "dataset-metadata.json").read_text())
    assert meta["graph"]["fingerprint"] == default_graph.fingerprint
    assert meta["excluded"] == dataset.excluded_counts(default_graph)
