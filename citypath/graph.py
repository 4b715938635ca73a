"""The city graph: cities within `radius_km` of each other are connected.

Built from the City Dataset: neighbours are found with a KD-tree on unit vectors,
weighted by exact haversine km, and only the largest connected component is kept
(city ids are re-numbered 0..n-1 over it, in the city table's order). Held as a
symmetric `scipy.sparse` CSR matrix; Dijkstra runs through `scipy.sparse.csgraph`.
The built graph is cached on disk (see `citypath.cache`).

    >>> import citypath
    >>> g = citypath.load_graph()
    >>> path = g.shortest_path(g.find_city("Boston, MA"), g.find_city("Denver, CO"))
    >>> round(g.path_length_km(path))  # doctest: +SKIP
    2868
"""

from __future__ import annotations

import difflib
import hashlib
import re
import time
import unicodedata
from dataclasses import asdict, dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components, dijkstra
from scipy.spatial import cKDTree

from citypath import cities as city_data
from citypath.cache import CacheEntry, cache_root, config_key
from citypath.geo import chord_for_km, haversine_km, unit_vectors

# 90 km keeps 99.91% of cities in one component (80 km: 99.80%, losing Roswell and Carlsbad, NM);
# see docs/data.md for the measurement.
DEFAULT_RADIUS_KM = 90.0
DEFAULT_MIN_POPULATION = 500
MAX_QUERY_CHARS = 200


class CityNotFound(LookupError):
    """No city matches a query; `suggestions` holds close labels, best first."""

    def __init__(self, message: str, query: object = None, suggestions: list[str] | None = None):
        super().__init__(message)
        self.query = query
        self.suggestions = suggestions or []

    def __str__(self) -> str:
        return self.args[0]


class CityNotInGraph(CityNotFound):
    """The query names a real US city that this graph does not contain (and says why)."""


@dataclass(frozen=True)
class GraphConfig:
    """What a graph is built from; equal configs give identical graphs and city ids."""

    radius_km: float = DEFAULT_RADIUS_KM
    min_population: int = DEFAULT_MIN_POPULATION
    states: tuple[str, ...] | None = None  # None: the 48 contiguous states and DC

    def __post_init__(self):
        if not (np.isfinite(self.radius_km) and 0 < self.radius_km <= 2000):
            raise ValueError(f"radius_km={self.radius_km!r}: must be a distance in (0, 2000] km")
        if int(self.min_population) != self.min_population or self.min_population < 500:
            raise ValueError(f"min_population={self.min_population!r}: must be an integer >= 500")
        if self.states is not None:
            states = tuple(sorted({s.upper() for s in self.states}))
            unknown = [s for s in states if s not in city_data.CONTIGUOUS_STATES]
            if unknown or not states:
                raise ValueError(f"states={self.states!r}: use two-letter codes of the contiguous US "
                                 f"(e.g. 'MA', 'DC'); not {unknown or 'an empty list'}")
            object.__setattr__(self, "states", states)
        object.__setattr__(self, "radius_km", float(self.radius_km))
        object.__setattr__(self, "min_population", int(self.min_population))


def normalise_label(text: str) -> str:
    """Lower-case, accents and punctuation dropped, spaces collapsed: 'Cañon City, CO' -> 'canon city co'."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    return " ".join(re.sub(r"[^\w\s#]", " ", text).split())


class CityGraph:
    """US cities connected when within `radius_km`; immutable once built.

    Attributes: `cities` (DataFrame indexed by city_id), `adjacency` (CSR, km weights),
    `config`, `outside` (US cities not in the graph, with a `reason`), `fingerprint`.
    """

    def __init__(self, config: GraphConfig, cities: pd.DataFrame, adjacency: sp.csr_matrix,
                 outside: pd.DataFrame, fingerprint: str):
        self.config = config
        self.cities = cities
        self.adjacency = adjacency
        self.outside = outside
        self.fingerprint = fingerprint
        self.lat = cities["lat"].to_numpy(np.float64)
        self.lon = cities["lon"].to_numpy(np.float64)
        # Dijkstra results per source, shared by repeated queries (the app, the harness): the most recent
        # DISTANCES_KEPT, oldest first (`distances_from`, `remember_distances`).
        self._distances: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    # -- basics -------------------------------------------------------------------------
    @property
    def radius_km(self) -> float:
        return self.config.radius_km

    @property
    def n_cities(self) -> int:
        return len(self.cities)

    def __len__(self) -> int:
        return len(self.cities)

    def __repr__(self) -> str:
        return (f"CityGraph({self.n_cities} cities, {self.adjacency.nnz // 2} edges, "
                f"radius_km={self.radius_km:g}, fingerprint={self.fingerprint[:12]})")

    @property
    def dropped(self) -> pd.DataFrame:
        """Cities of the selected states left out because they are not in the largest component."""
        return self.outside[self.outside["reason_code"] == "disconnected"]

    def check_id(self, city: object) -> int:
        """`city` as an int id of this graph, or ValueError saying what is wrong."""
        if isinstance(city, (bool, np.bool_)) or not isinstance(city, (int, np.integer)):
            raise ValueError(f"city id must be an integer, not {type(city).__name__} {city!r:.60}")
        if not 0 <= city < self.n_cities:
            raise ValueError(f"city id {city} is out of range: this graph has {self.n_cities} cities "
                             f"(ids 0..{self.n_cities - 1})")
        return int(city)

    def label(self, city: int) -> str:
        return self.labels[self.check_id(city)]

    @cached_property
    def labels(self) -> list[str]:
        """Every city's label, by id (shared: never modify it)."""
        # A list, not the DataFrame: `.at` cost ~10 us a label, 11% of the app server's time under load.
        return [str(x) for x in self.cities["label"].tolist()]

    def neighbors(self, city: int) -> np.ndarray:
        """Ids of the cities within the radius of `city` (itself excluded)."""
        c = self.check_id(city)
        return self.adjacency.indices[self.adjacency.indptr[c]:self.adjacency.indptr[c + 1]]

    def distance_km(self, a: int, b: int) -> float:
        a, b = self.check_id(a), self.check_id(b)
        return float(haversine_km(self.lat[a], self.lon[a], self.lat[b], self.lon[b]))

    # -- finding cities ---------------------------------------------------------------
    @cached_property
    def _normalised_labels(self) -> np.ndarray:
        return np.array([normalise_label(s) for s in self.cities["label"]], dtype=object)

    @cached_property
    def _label_index(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.cities["label"])}

    def find_city(self, query: str | int) -> int:
        """The id of the city named `query`: an exact label, or a case-insensitive unique prefix.

        Accents and punctuation are ignored ("canon city co" finds "Cañon City, CO").
        Raises CityNotFound with close suggestions, or CityNotInGraph for a US city that this
        graph leaves out (Alaska, Hawaii, an island beyond the radius), saying why.

        >>> g.find_city("Boston, MA")  # doctest: +SKIP
        20
        """
        if isinstance(query, (int, np.integer)) and not isinstance(query, (bool, np.bool_)):
            return self.check_id(query)
        if not isinstance(query, str):
            raise CityNotFound(f"a city name must be a string like 'Boston, MA', not {type(query).__name__}", query)
        if query in self._label_index:
            return self._label_index[query]
        key = normalise_label(query[:MAX_QUERY_CHARS])
        if not key:
            raise CityNotFound(f"{query!r:.40} has no letters or digits to look up; type a name like 'Boston, MA'",
                               query)
        labels = self._normalised_labels
        exact = np.flatnonzero(labels == key)
        if len(exact) == 1:
            return int(exact[0])
        prefix = [i for i, s in enumerate(labels) if s.startswith(key)]
        if len(prefix) == 1:
            return prefix[0]
        if len(prefix) > 1:
            # Rows are by population, so the first candidates are the likeliest.
            names = [self.cities.at[i, "label"] for i in prefix[:8]]
            raise CityNotFound(f"{query!r:.80} matches {len(prefix)} cities; did you mean "
                               f"{', '.join(names[:5])}?", query, names)
        self._raise_if_outside(query, key)
        close = difflib.get_close_matches(key, list(labels), n=12, cutoff=0.6)
        by_norm = {s: i for i, s in enumerate(labels)}
        # Equal scores: the more populous city (lower id) first.
        scored = sorted(close, key=lambda s: (-round(difflib.SequenceMatcher(None, key, s).ratio(), 3), by_norm[s]))
        names = [self.cities.at[by_norm[s], "label"] for s in scored[:5]]
        hint = f"; did you mean {', '.join(names)}?" if names else "; try a label like 'Boston, MA'"
        raise CityNotFound(f"no city named {query!r:.80} in this graph{hint}", query, names)

    @cached_property
    def _normalised_outside_labels(self) -> pd.Series:
        return self.outside["label"].map(normalise_label)

    def _raise_if_outside(self, query: str, key: str) -> None:
        if self.outside.empty:
            return
        norm = self._normalised_outside_labels
        hit = self.outside[(norm == key) | norm.str.startswith(key)]
        if len(hit):
            row = hit.iloc[0]
            raise CityNotInGraph(f"{row['label']} is not in this graph: {row['reason']}", query, [])

    # -- shortest paths ---------------------------------------------------------------
    DISTANCES_KEPT = 256

    def distances_from(self, src: int) -> tuple[np.ndarray, np.ndarray]:
        """Dijkstra from `src`: every city's km from it and its predecessor on the way (read-only arrays), searched
        once and kept while `src` is among the DISTANCES_KEPT sources used last (or handed over by
        `remember_distances`)."""
        src = self.check_id(src)
        held = self._distances.pop(src, None)
        return self.remember_distances(src, *(held if held is not None else self._distances_from(src)))

    def _distances_from(self, src: int) -> tuple[np.ndarray, np.ndarray]:
        """`distances_from` searched anew and not kept (training's targets, which rarely repeat)."""
        # The matrix is symmetric already; directed=False would re-symmetrise it on every call.
        dist, pred = dijkstra(self.adjacency, directed=True, indices=src, return_predecessors=True)
        dist.setflags(write=False)
        pred.setflags(write=False)
        return dist, pred

    def has_distances(self, src: int) -> bool:
        """Whether `distances_from(src)` is kept already (answers without a search)."""
        return int(src) in self._distances

    def remember_distances(self, src: int, dist: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keep `distances_from(src)`'s answer searched elsewhere (another process holding this same graph: the
        app's search process, `citypath.app.searches`), as the most recent; returns it, read-only."""
        n = self.n_cities
        if np.shape(dist) != (n,) or np.shape(pred) != (n,):
            raise ValueError(f"distances from city {src} need {n} entries each, got {np.shape(dist)} and "
                             f"{np.shape(pred)}")
        dist, pred = np.asarray(dist, np.float64), np.asarray(pred)
        dist.setflags(write=False)
        pred.setflags(write=False)
        self._distances.pop(int(src), None)
        self._distances[int(src)] = (dist, pred)
        while len(self._distances) > self.DISTANCES_KEPT:
            self._distances.pop(next(iter(self._distances)), None)
        return dist, pred

    def clear_distances(self) -> None:
        """Forget every kept search (a benchmark's cold start)."""
        self._distances.clear()

    def shortest_path(self, src: int, dst: int) -> list[int]:
        """The optimal (Dijkstra) path from src to dst as city ids, src first and dst last.

        src == dst gives the one-city path [src].
        """
        src, dst = self.check_id(src), self.check_id(dst)
        _, pred = self.distances_from(src)
        path = [dst]
        while path[-1] != src:
            path.append(int(pred[path[-1]]))
        return path[::-1]

    def shortest_path_length_km(self, src: int, dst: int) -> float:
        """Length in km of the optimal path from src to dst."""
        src, dst = self.check_id(src), self.check_id(dst)
        return float(self.distances_from(src)[0][dst])

    def path_length_km(self, path) -> float:
        """Sum of the great-circle lengths of a path's hops, in km (legal or not)."""
        ids = np.array([self.check_id(c) for c in path], dtype=np.int64)
        if len(ids) < 2:
            return 0.0
        return float(haversine_km(self.lat[ids[:-1]], self.lon[ids[:-1]], self.lat[ids[1:]], self.lon[ids[1:]]).sum())

    # -- views ------------------------------------------------------------------------
    def edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every edge once, as arrays (u, v, km) with u < v, ordered by u then v."""
        upper = sp.triu(self.adjacency, k=1).tocsr()
        upper.sort_indices()
        u = np.repeat(np.arange(self.n_cities, dtype=np.int32), np.diff(upper.indptr))
        return u, upper.indices.astype(np.int32), upper.data.astype(np.float64)

    def to_networkx(self):
        """A `networkx.Graph` view: nodes are city ids with their table columns, edges carry `weight` km."""
        import networkx as nx

        g = nx.from_scipy_sparse_array(self.adjacency, edge_attribute="weight")
        nx.set_node_attributes(g, self.cities.to_dict(orient="index"))
        return g

    def summary(self) -> dict:
        """Counts a reader wants first: cities, edges, degree, what was dropped and why."""
        deg = np.diff(self.adjacency.indptr)
        reasons = self.outside["reason_code"].value_counts().to_dict() if len(self.outside) else {}
        return {
            "cities": self.n_cities,
            "edges": int(self.adjacency.nnz // 2),
            "radius_km": self.radius_km,
            "min_population": self.config.min_population,
            "states": list(self.config.states) if self.config.states else "contiguous US (48 states + DC)",
            "mean_degree": float(deg.mean()),
            "max_degree": int(deg.max()),
            "dropped_disconnected": int(reasons.get("disconnected", 0)),
            "dropped_components": int(self.dropped["component"].nunique()),
            "outside_contiguous_us": int(reasons.get("not_contiguous", 0)),
            "fingerprint": self.fingerprint,
        }


# -- building -------------------------------------------------------------------------

def radius_edges(lat: np.ndarray, lon: np.ndarray, radius_km: float) -> sp.csr_matrix:
    """Symmetric CSR of haversine km between all pairs of points within radius_km."""
    n = len(lat)
    tree = cKDTree(unit_vectors(lat, lon))
    # A hair of slack on the chord, then the exact haversine test decides.
    pairs = tree.query_pairs(chord_for_km(radius_km) * (1 + 1e-9), output_type="ndarray")
    if len(pairs) == 0:
        return sp.csr_matrix((n, n))
    i, j = pairs[:, 0], pairs[:, 1]
    d = haversine_km(lat[i], lon[i], lat[j], lon[j])
    keep = d <= radius_km
    i, j, d = i[keep], j[keep], d[keep]
    # Coincident cities (d == 0) would vanish from a sparse matrix; give them a tiny weight.
    d = np.maximum(d, 1e-9)
    adj = sp.coo_matrix((np.r_[d, d], (np.r_[i, j], np.r_[j, i])), shape=(n, n)).tocsr()
    adj.sort_indices()
    return adj


def _fingerprint(config: GraphConfig, cities: pd.DataFrame, adj: sp.csr_matrix) -> str:
    h = hashlib.sha256(repr(asdict(config)).encode())
    for arr in (cities["geonameid"].to_numpy(np.int64), cities["lat"].to_numpy(np.float64),
                cities["lon"].to_numpy(np.float64), adj.indptr.astype(np.int64), adj.indices.astype(np.int32)):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def build_graph(config: GraphConfig) -> CityGraph:
    """Build a graph from the City Dataset (no cache): KD-tree edges, then the largest component."""
    table = city_data.us_cities(config.min_population)
    reasons = table["state"].map(lambda s: city_data.outside_reason(s, config.states))
    inside = table[reasons.isna()].reset_index(drop=True)
    outside = table[reasons.notna()].assign(
        reason=reasons[reasons.notna()],
        reason_code=np.where(table.loc[reasons.notna(), "state"].isin(city_data.CONTIGUOUS_STATES),
                             "state_filter", "not_contiguous"),
        component=-1, component_size=0)

    lat, lon = inside["lat"].to_numpy(), inside["lon"].to_numpy()
    adj = radius_edges(lat, lon, config.radius_km)
    n_comp, comp = connected_components(adj, directed=False)
    sizes = np.bincount(comp, minlength=n_comp)
    main = int(np.argmax(sizes))
    keep = comp == main
    lost = inside[~keep].assign(
        reason=[f"not connected to the main network within {config.radius_km:g} km "
                f"(a group of {sizes[c]} cities)" for c in comp[~keep]],
        reason_code="disconnected", component=comp[~keep], component_size=sizes[comp[~keep]])
    outside = pd.concat([outside, lost], ignore_index=True)

    cities = inside[keep].reset_index(drop=True)
    cities.index.name = "city_id"
    idx = np.flatnonzero(keep)
    adj = adj[idx][:, idx].tocsr()
    adj.sort_indices()
    return CityGraph(config, cities, adj, outside.reset_index(drop=True), _fingerprint(config, cities, adj))


def graph_from_edges(config: GraphConfig, cities: pd.DataFrame, u: np.ndarray, v: np.ndarray, km: np.ndarray,
                     outside: pd.DataFrame) -> CityGraph:
    """A CityGraph from its tables (e.g. an exported dataset's files): the adjacency rebuilt from the edge
    list (`CityGraph.edges()`), the fingerprint recomputed, so equal tables give the built graph's fingerprint."""
    n = len(cities)
    u, v = np.asarray(u, dtype=np.int64), np.asarray(v, dtype=np.int64)
    if len(u) and not (0 <= min(u.min(), v.min()) and max(u.max(), v.max()) < n and (u < v).all()):
        raise ValueError(f"edges must join distinct city ids 0..{n - 1} with u < v")
    km = np.asarray(km, dtype=np.float64)
    adj = sp.coo_matrix((np.r_[km, km], (np.r_[u, v], np.r_[v, u])), shape=(n, n)).tocsr()
    adj.sort_indices()
    if adj.nnz != 2 * len(u):
        raise ValueError("edges must list each pair of cities once")
    return CityGraph(config, cities, adj, outside, _fingerprint(config, cities, adj))


def _save(g: CityGraph, entry: CacheEntry, meta: dict) -> None:
    with entry.writer(meta) as d:
        g.cities.reset_index().to_parquet(d / "cities.parquet", index=False)
        g.outside.to_parquet(d / "outside.parquet", index=False)
        np.savez(d / "adjacency.npz", indptr=g.adjacency.indptr, indices=g.adjacency.indices,
                 data=g.adjacency.data, shape=np.array(g.adjacency.shape))


def _load(entry: CacheEntry, config: GraphConfig, meta: dict) -> CityGraph:
    cities = pd.read_parquet(entry.path("cities.parquet")).set_index("city_id")
    outside = pd.read_parquet(entry.path("outside.parquet"))
    with np.load(entry.path("adjacency.npz"), allow_pickle=False) as z:
        adj = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
    return CityGraph(config, cities, adj, outside, meta["fingerprint"])


_LOADED: dict[tuple, CityGraph] = {}


def graph_kwargs_from_env(env=None) -> dict:
    """load_graph arguments from $CITYPATH_STATES (e.g. "RI,MA") and $CITYPATH_RADIUS_KM (the app, benchmarks)."""
    from citypath import settings

    return {"states": settings.graph_states(env), "radius_km": settings.graph_radius_km(env) or DEFAULT_RADIUS_KM}


def load_graph(radius_km: float = DEFAULT_RADIUS_KM, min_population: int = DEFAULT_MIN_POPULATION,
               states: tuple[str, ...] | list[str] | None = None, *, cache_dir=None,
               verbose: bool = False) -> CityGraph:
    """The city graph for a config: from memory, else the disk cache, else built (and cached).

    The default (90 km, population >= 500, contiguous US) has 21,217 cities.
    `states=("RI", "MA")` builds a small regional graph, handy for tests.

    >>> g = load_graph(states=["RI"])  # doctest: +SKIP
    """
    config = GraphConfig(radius_km, min_population, tuple(states) if states is not None else None)
    root = cache_root(cache_dir)
    mem_key = (config, str(root))
    if mem_key in _LOADED:
        return _LOADED[mem_key]
    entry = CacheEntry(root, "graph", config_key(asdict(config), city_data.source_digest()))
    meta = entry.load()
    if meta is not None and "fingerprint" in meta:
        g = _load(entry, config, meta)
    else:
        t0 = time.perf_counter()
        if verbose:
            print(f"building city graph ({config}) into {entry.dir} ...", flush=True)
        g = build_graph(config)
        _save(g, entry, {"fingerprint": g.fingerprint, "config": asdict(config),
                         "build_seconds": time.perf_counter() - t0})
        if verbose:
            print(f"built {g!r} in {time.perf_counter() - t0:.1f} s", flush=True)
    _LOADED[mem_key] = g
    return g
