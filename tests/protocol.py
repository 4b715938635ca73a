"""Checks every family's tests share: the refine protocol on a small graph, and a shipped checkpoint against
its card."""

from __future__ import annotations

import pytest

import citypath
from citypath.evaluate import sample_heldout_pairs
from citypath.metrics import verifier_key
from citypath.models import load_model


def check_refine_protocol(m, g, pairs, steps: int) -> None:
    """K legal paths from the source, best so far by the one verifier order, deterministic; src == dst yields
    [src] at every step; zero steps are refused."""
    for src, dst in pairs:
        paths = list(m.refine(g, src, dst, steps=steps))
        assert len(paths) == steps and all(p[0] == src for p in paths)
        assert citypath.evaluate_paths(g, paths, [src] * steps, [dst] * steps)["illegal_jumps"].sum() == 0
        keys = [verifier_key(g, p, src, dst) for p in paths]
        assert all(b <= a for a, b in zip(keys, keys[1:]))
        assert paths == list(m.refine(g, src, dst, steps=steps))
    assert list(m.refine(g, 2, 2, steps=3)) == [[2]] * 3
    with pytest.raises(ValueError):
        list(m.refine(g, 0, 1, steps=0))


def check_state_views(m, g, src: int, dst: int, steps: int, names: list[str]) -> list:
    """`trace` gives one state view per step, each the named per-city arrays; returns the views."""
    views = list(m.trace(g, src, dst, steps=steps))
    assert len(views) == steps and m.has_state_view
    for step in views:
        assert [v.name for v in step] == names
        assert all(v.values.shape == (g.n_cities,) for v in step)
    return views


def check_near_card(g, name: str, *, valid_tol: float, ratio_tol: float, n_pairs: int = 20):
    """Checkpoint `name` at its max steps on the first `n_pairs` of its card's held-out pairs: valid within
    `valid_tol` of the card, mean ratio of the valid ones within `ratio_tol`. Returns the model."""
    m = load_model(name, graph=g)
    card = m.card["metrics"]
    srcs, dsts = sample_heldout_pairs(g, n_pairs, seed=card["pair_seed"])
    top = m.max_steps
    paths = [list(m.refine(g, int(s), int(t), top))[-1] for s, t in zip(srcs, dsts)]
    df = citypath.evaluate_paths(g, paths, srcs, dsts)
    want = card["by_steps"][str(top)]
    assert df["valid"].mean() >= want["valid"] - valid_tol
    if df["valid"].any():
        assert df.loc[df["valid"], "length_ratio"].mean() <= want["length_ratio_mean"] + ratio_tol
    return m
