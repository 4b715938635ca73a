"""The train/held-out split of city pairs: a fixed hash of the unordered pair.

About 5% of pairs are held out. The split is symmetric, so a held-out pair's reverse
path is held out too, and it depends only on the two ids, never on a random state:
anyone can tell whether (src, dst) was eligible for training.

    >>> is_heldout(3, 17) == is_heldout(17, 3)
    True
"""

from __future__ import annotations

import numpy as np

HELDOUT_PER_10K = 500  # 5.00% of pairs
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    # SplitMix64 finaliser: a well-mixed 64-bit hash; uint64 arithmetic wraps as intended.
    x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
    x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
    x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
    return x ^ (x >> np.uint64(31))


def heldout_mask(src, dst) -> np.ndarray:
    """Vectorised `is_heldout` over arrays of non-negative city ids."""
    src = np.asarray(src, dtype=np.int64)
    dst = np.asarray(dst, dtype=np.int64)
    if (src < 0).any() or (dst < 0).any():
        raise ValueError("city ids must be non-negative integers")
    lo, hi = np.minimum(src, dst).astype(np.uint64), np.maximum(src, dst).astype(np.uint64)
    with np.errstate(over="ignore"):
        h = _splitmix64((lo << np.uint64(32)) | hi)
    return (h % np.uint64(10_000)) < np.uint64(HELDOUT_PER_10K)


def sample_pairs(n_cities: int, n: int, rng: np.random.Generator, *, heldout: bool, batch: int = 1024,
                 max_batches: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """`n` random (src, dst) pairs of distinct cities, all held out (`heldout=True`) or all training pairs.

    The one sampler of pairs by split: the harness's held-out pairs, the app's random pair and the
    families' validation pairs (training side) all draw here. Draws `batch` candidates at a time
    from `rng` (src ids, then dst ids) and keeps those on the asked side, in order.
    """
    if n_cities < 2:
        raise ValueError("a graph needs at least 2 cities to draw pairs")
    srcs, dsts, have = [], [], 0
    for _ in range(max_batches):
        if have >= n:
            break
        s = rng.integers(0, n_cities, size=batch)
        t = rng.integers(0, n_cities, size=batch)
        held = heldout_mask(s, t)
        keep = (s != t) & (held if heldout else ~held)
        srcs.append(s[keep])
        dsts.append(t[keep])
        have += int(keep.sum())
    if have < n:
        side = "held-out" if heldout else "training"
        raise ValueError(f"could not find {n} {side} pairs in a graph of {n_cities} cities")
    return np.concatenate(srcs)[:n], np.concatenate(dsts)[:n]


def is_heldout(src: int, dst: int) -> bool:
    """True if the pair (src, dst) is a test pair: never in training data (about 5% of pairs)."""
    for v in (src, dst):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"city ids must be integers, not {type(v).__name__} {v!r:.40}")
        if not 0 <= v < 2**31:
            raise ValueError(f"city id {v} is out of range (ids are 0..2**31-1)")
    return bool(heldout_mask(src, dst))
