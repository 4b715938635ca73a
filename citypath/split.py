"""The split of city pairs into train, validation and test: fixed hashes of the unordered pair.

About 5% of pairs are held out for testing (`is_heldout`: the SplitMix64 hash of the pair mod
10,000 is below 500). Of the rest, about 5% are validation pairs (`is_validation`: a second
SplitMix64 hash of the same pair, salted, independent of the first), for choosing checkpoints
and settings without looking at test pairs; the remaining ~90% are training pairs. The split is
symmetric, so a pair's reverse is on the same side, and it depends only on the two ids, never
on a random state: anyone can tell which side (src, dst) is on.

    >>> is_heldout(3, 17) == is_heldout(17, 3)
    True
    >>> pair_split(3, 17) in ("train", "validation", "test")
    True
"""

from __future__ import annotations

import numpy as np

HELDOUT_PER_10K = 500     # 5.00% of all pairs are test pairs
VALIDATION_PER_10K = 500  # 5.00% of the other pairs are validation pairs (4.75% of all pairs)
PAIR_SPLITS = ("train", "validation", "test")
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)
# XORed into the pair's key before the second hash; any constant with high bits set would do
# ("validate" in ASCII): the held-out hash is left exactly as it was.
_VALIDATION_SALT = np.uint64(0x76616C6964617465)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    # SplitMix64 finaliser: a well-mixed 64-bit hash; uint64 arithmetic wraps as intended.
    x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
    x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
    x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
    return x ^ (x >> np.uint64(31))


def _pair_keys(src, dst) -> np.ndarray:
    """`min << 32 | max` of each pair, as uint64 (the unordered pair's key)."""
    src = np.asarray(src, dtype=np.int64)
    dst = np.asarray(dst, dtype=np.int64)
    if (src < 0).any() or (dst < 0).any():
        raise ValueError("city ids must be non-negative integers")
    lo, hi = np.minimum(src, dst).astype(np.uint64), np.maximum(src, dst).astype(np.uint64)
    return (lo << np.uint64(32)) | hi


def heldout_mask(src, dst) -> np.ndarray:
    """Vectorised `is_heldout` over arrays of non-negative city ids."""
    keys = _pair_keys(src, dst)
    with np.errstate(over="ignore"):
        h = _splitmix64(keys)
    return (h % np.uint64(10_000)) < np.uint64(HELDOUT_PER_10K)


def validation_mask(src, dst) -> np.ndarray:
    """Vectorised `is_validation` over arrays of non-negative city ids."""
    keys = _pair_keys(src, dst)
    with np.errstate(over="ignore"):
        h = _splitmix64(keys ^ _VALIDATION_SALT)
    return ((h % np.uint64(10_000)) < np.uint64(VALIDATION_PER_10K)) & ~heldout_mask(src, dst)


def train_mask(src, dst, *, exclude_validation: bool = True) -> np.ndarray:
    """True where training may use the pair: never a test pair, and not a validation pair unless
    `exclude_validation=False` (how runs trained before the validation split drew their pairs)."""
    allowed = ~heldout_mask(src, dst)
    return allowed & ~validation_mask(src, dst) if exclude_validation else allowed


def _side_mask(src, dst, split: str) -> np.ndarray:
    if split == "test":
        return heldout_mask(src, dst)
    if split == "validation":
        return validation_mask(src, dst)
    return train_mask(src, dst)


def sample_pairs(n_cities: int, n: int, rng: np.random.Generator, *, heldout: bool | None = None,
                 split: str | None = None, batch: int = 1024,
                 max_batches: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """`n` random (src, dst) pairs of distinct cities, all on one side of the split.

    The one sampler of pairs by split: the harness's test pairs, the app's random pair, model
    selection's validation pairs and the families' own validation pairs all draw here. Ask for
    `split="train"`, `"validation"` or `"test"`; or, as before the validation split existed,
    `heldout=True` (the same as `split="test"`) or `heldout=False` (any pair not held out: training
    or validation). Draws `batch` candidates at a time from `rng` (src ids, then dst ids) and keeps
    those on the asked side, in order.
    """
    if (heldout is None) == (split is None):
        raise ValueError("sample_pairs needs exactly one of heldout= or split=")
    if split is not None and split not in PAIR_SPLITS:
        raise ValueError(f"split={split!r}: choose one of {PAIR_SPLITS}")
    if n_cities < 2:
        raise ValueError("a graph needs at least 2 cities to draw pairs")
    srcs, dsts, have = [], [], 0
    for _ in range(max_batches):
        if have >= n:
            break
        s = rng.integers(0, n_cities, size=batch)
        t = rng.integers(0, n_cities, size=batch)
        if split is None:
            held = heldout_mask(s, t)
            side = held if heldout else ~held
        else:
            side = _side_mask(s, t, split)
        keep = (s != t) & side
        srcs.append(s[keep])
        dsts.append(t[keep])
        have += int(keep.sum())
    if have < n:
        side = split or ("held-out" if heldout else "training")
        raise ValueError(f"could not find {n} {side} pairs in a graph of {n_cities} cities")
    return np.concatenate(srcs)[:n], np.concatenate(dsts)[:n]


def _check_ids(src: int, dst: int) -> None:
    for v in (src, dst):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"city ids must be integers, not {type(v).__name__} {v!r:.40}")
        if not 0 <= v < 2**31:
            raise ValueError(f"city id {v} is out of range (ids are 0..2**31-1)")


def is_heldout(src: int, dst: int) -> bool:
    """True if the pair (src, dst) is a test pair: never in training data (about 5% of pairs)."""
    _check_ids(src, dst)
    return bool(heldout_mask(src, dst))


def is_validation(src: int, dst: int) -> bool:
    """True if the pair (src, dst) is a validation pair: for model selection, not trained on since the
    split existed (about 5% of the pairs that are not held out)."""
    _check_ids(src, dst)
    return bool(validation_mask(src, dst))


def pair_split(src: int, dst: int) -> str:
    """Which side of the split the pair (src, dst) is on: "train", "validation" or "test"."""
    _check_ids(src, dst)
    return "test" if heldout_mask(src, dst) else "validation" if validation_mask(src, dst) else "train"
