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


def is_heldout(src: int, dst: int) -> bool:
    """True if the pair (src, dst) is a test pair: never in training data (about 5% of pairs)."""
    for v in (src, dst):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"city ids must be integers, not {type(v).__name__} {v!r:.40}")
        if not 0 <= v < 2**31:
            raise ValueError(f"city id {v} is out of range (ids are 0..2**31-1)")
    return bool(heldout_mask(src, dst))
