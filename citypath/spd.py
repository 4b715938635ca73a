"""The Shortest Path Dataset (SPD): millions of optimal source->target paths on a graph.

Pairs are drawn at random: a chunk of random sources, each with `targets_per_source`
random targets, all solved by one Dijkstra per source (`scipy.sparse.csgraph`) and
traced back with vectorised predecessor walks. Half of the pairs are then flipped
(the reverse of a shortest path is a shortest path), so both ends of a pair are
uniform over cities. Pairs are split with `citypath.split.heldout_mask` into `train`
and `test` (about 5%), stored as flat int32 tokens plus int64 offsets and memory-mapped
on load; validation pairs stay in `train`, and training leaves them out
(`citypath.training.spd_training_split`). Each chunk has its own seed, so the result
does not depend on the number of worker processes.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra
from tqdm.auto import tqdm

from citypath.cache import CacheEntry, cache_root, config_key
from citypath.graph import CityGraph
from citypath.split import heldout_mask

SPLITS = ("train", "test")
SOURCES_PER_CHUNK = 32


@dataclass(frozen=True)
class SPDConfig:
    """How many paths, and how they are drawn."""

    n_paths: int = 2_000_000
    targets_per_source: int = 256
    seed: int = 0

    def __post_init__(self):
        if int(self.n_paths) != self.n_paths or self.n_paths < 1:
            raise ValueError(f"n_paths={self.n_paths!r}: must be a positive integer")
        if int(self.targets_per_source) != self.targets_per_source or self.targets_per_source < 1:
            raise ValueError(f"targets_per_source={self.targets_per_source!r}: must be a positive integer")


class ShortestPathDataset:
    """One split of the SPD: path i is `tokens[offsets[i]:offsets[i + 1]]` (city ids, src first)."""

    def __init__(self, directory: Path, split: str):
        def arr(name):
            return np.load(directory / f"{split}_{name}.npy", mmap_mode="r", allow_pickle=False)

        self.split = split
        self.src, self.dst, self.offsets = arr("src"), arr("dst"), arr("offsets")
        self.tokens, self.length_km = arr("tokens"), arr("length_km")

    def __len__(self) -> int:
        return len(self.src)

    def __getitem__(self, i: int) -> np.ndarray:
        return np.asarray(self.tokens[self.offsets[i]:self.offsets[i + 1]])

    def __repr__(self) -> str:
        return f"ShortestPathDataset({self.split!r}, {len(self)} paths, {len(self.tokens)} tokens)"


def trace_paths(pred: np.ndarray, src: int, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Paths src->t for every target, from one Dijkstra predecessor array.

    Returns (tokens, counts): the paths concatenated src-first, and each path's city count.
    """
    k = len(targets)
    walk = [np.asarray(targets, dtype=np.int64)]
    while True:
        cur = walk[-1]
        active = cur != src
        if not active.any():
            break
        walk.append(np.where(active, pred[cur], src))
    back = np.stack(walk)                       # (L, k): t, pred(t), ..., src, src, ...
    counts = (back != src).sum(axis=0) + 1      # cities per path
    # Read each column backwards from its src entry to get src-first order.
    rows = counts[None, :] - 1 - np.arange(back.shape[0])[:, None]
    inside = rows >= 0
    fwd = back[np.clip(rows, 0, None), np.arange(k)[None, :]]
    return fwd.T[inside.T].astype(np.int32), counts


_ADJACENCY: sp.csr_matrix | None = None


def _init_worker(adjacency: sp.csr_matrix) -> None:
    global _ADJACENCY
    _ADJACENCY = adjacency


def _solve_chunk(args: tuple[int, int, int, int]) -> tuple[np.ndarray, ...]:
    """Paths for one chunk of sources; chunk `index` always draws the same pairs."""
    seed, index, n_sources, targets_per_source = args
    adj = _ADJACENCY
    n = adj.shape[0]
    rng = np.random.default_rng([seed, index])
    sources = rng.integers(0, n, size=n_sources)
    # Targets uniform over the other n-1 cities.
    targets = rng.integers(0, n - 1, size=(n_sources, targets_per_source))
    targets += targets >= sources[:, None]
    flip = rng.random((n_sources, targets_per_source)) < 0.5
    dist, pred = dijkstra(adj, directed=True, indices=sources, return_predecessors=True)
    srcs, dsts, counts, tokens, lengths = [], [], [], [], []
    for row, s in enumerate(sources):
        toks, cnt = trace_paths(pred[row], int(s), targets[row])
        starts = np.r_[0, np.cumsum(cnt)[:-1]]
        for j in np.flatnonzero(flip[row]):      # reverse the flipped paths in place
            toks[starts[j]:starts[j] + cnt[j]] = toks[starts[j]:starts[j] + cnt[j]][::-1]
        srcs.append(np.where(flip[row], targets[row], s))
        dsts.append(np.where(flip[row], s, targets[row]))
        counts.append(cnt)
        tokens.append(toks)
        lengths.append(dist[row, targets[row]])
    return (np.concatenate(srcs).astype(np.int32), np.concatenate(dsts).astype(np.int32),
            np.concatenate(counts).astype(np.int64), np.concatenate(tokens), np.concatenate(lengths))


def generate(g: CityGraph, config: SPDConfig, workers: int | None = None,
             progress: bool = True) -> dict[str, dict[str, np.ndarray]]:
    """Draw and solve `config.n_paths` pairs; returns per split the arrays that `ShortestPathDataset` reads."""
    if g.n_cities < 2:
        raise ValueError("a graph needs at least 2 cities to draw source/target pairs")
    n_sources = -(-config.n_paths // config.targets_per_source)
    chunks = [(config.seed, i, min(SOURCES_PER_CHUNK, n_sources - i * SOURCES_PER_CHUNK),
               config.targets_per_source) for i in range(-(-n_sources // SOURCES_PER_CHUNK))]
    workers = workers or min(len(chunks), os.cpu_count() or 1)
    parts = []
    bar = tqdm(total=config.n_paths, unit="path", unit_scale=True, desc="shortest paths", disable=not progress)
    if workers > 1:
        with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(g.adjacency,)) as pool:
            for part in pool.map(_solve_chunk, chunks):
                parts.append(part)
                bar.update(len(part[0]))
    else:
        _init_worker(g.adjacency)
        for chunk in chunks:
            parts.append(_solve_chunk(chunk))
            bar.update(len(parts[-1][0]))
    bar.close()
    src, dst, counts, tokens, lengths = (np.concatenate(x) for x in zip(*parts))
    # Trim the last chunk's overshoot so exactly n_paths are kept.
    keep_tokens = int(counts[:config.n_paths].sum())
    n = config.n_paths
    src, dst, counts, lengths = src[:n], dst[:n], counts[:n], lengths[:n]
    tokens = tokens[:keep_tokens]
    held = heldout_mask(src, dst)
    out = {}
    for split, mask in (("train", ~held), ("test", held)):
        token_mask = np.repeat(mask, counts)
        out[split] = {
            "src": src[mask], "dst": dst[mask],
            "offsets": np.r_[0, np.cumsum(counts[mask])].astype(np.int64),
            "tokens": tokens[token_mask], "length_km": lengths[mask].astype(np.float64),
        }
    return out


def load_spd(g: CityGraph, split: str = "train", config: SPDConfig | None = None, *, cache_dir=None,
             build: bool = True, workers: int | None = None, progress: bool = True) -> ShortestPathDataset:
    """One split of the SPD for graph `g`, from the disk cache, else generated (with a progress bar).

    >>> train = load_spd(load_graph(states=["RI"]), "train", SPDConfig(n_paths=1000))  # doctest: +SKIP
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: choose one of {SPLITS}")
    config = config or SPDConfig()
    entry = CacheEntry(cache_root(cache_dir), "spd", config_key(g.fingerprint, asdict(config)))
    if entry.load() is None:
        if not build:
            raise FileNotFoundError(f"no SPD cached for {config} at {entry.dir}; run `python -m citypath build --spd`")
        data = generate(g, config, workers=workers, progress=progress)
        meta = {"config": asdict(config), "graph": g.fingerprint,
                "paths": {s: int(len(d["src"])) for s, d in data.items()}}
        with entry.writer(meta) as d:
            for s, arrays in data.items():
                for name, arr in arrays.items():
                    np.save(d / f"{s}_{name}.npy", arr, allow_pickle=False)
    return ShortestPathDataset(entry.dir, split)
