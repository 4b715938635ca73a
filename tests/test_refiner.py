"""The refiner (citypath/models/refiner.py): protocol, legality, determinism, learning, checkpoints.

A refiner is trained for a few seconds on Rhode Island + Massachusetts through the shared
training loop; the shipped checkpoint is checked against its card on the default graph.
"""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

import numpy as np
import pytest

import citypath
from citypath.metrics import verifier
from citypath.models import load_model
from citypath.models.refiner import (
    NumpyScorer,
    RefinerConfig,
    Scorer,
    draft_path,
    graph_tables,
    refine_batch,
)
from citypath.tasks.refiner import training_task
from citypath.training import train

REPO = Path(__file__).resolve().parents[1]


def _args(**kw) -> argparse.Namespace:
    base = dict(size="tiny", name=None, seed=0, max_minutes=None, paths=None, batch_paths=None, lr=None,
                threads=1, epoch_paths=None, checkpoints=None, runs=None, set=None, no_progress=True)
    base.update(kw)
    return argparse.Namespace(**base)


def _pairs(g, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    s, d = rng.integers(0, g.n_cities, count * 2), rng.integers(0, g.n_cities, count * 2)
    keep = s != d
    return s[keep][:count], d[keep][:count]


def _quality(g, model, srcs, dsts, steps: int) -> list[tuple[float, float]]:
    """(valid rate, mean length ratio of valid paths) at every step 1..steps."""
    runs = model.refine_batch(g, srcs, dsts, steps)
    out = []
    for k in range(steps):
        df = citypath.evaluate_paths(g, [r[k] for r in runs], list(srcs), list(dsts))
        out.append((float(df["valid"].mean()), float(df.loc[df["valid"], "length_ratio"].mean())))
    return out


@pytest.fixture(scope="module")
def trained(small_graph, tmp_path_factory):
    """A tiny refiner trained for a few seconds on RI + MA, saved and loaded back."""
    d = tmp_path_factory.mktemp("refiner")
    args = _args(name="refiner-test", paths=1_600, batch_paths=32, epoch_paths=800, max_minutes=2.0,
                 checkpoints=str(d / "ck"), runs=str(d / "runs"))
    task, cfg = training_task(small_graph, args)
    cfg.card_pairs = 0       # the harness is not under test here
    cfg.val_paths = 20
    train(task, small_graph, cfg, fresh=True)
    return load_model("refiner-test", directory=d / "ck", graph=small_graph), task


def test_draft_goes_from_source_to_target_along_the_great_circle(small_graph):
    t = graph_tables(small_graph, RefinerConfig())
    s, d = 0, small_graph.n_cities - 1
    draft = draft_path(t, s, d)
    assert draft[0] == s and draft[-1] == d and len(set(draft.tolist())) == len(draft)
    # every draft city is close to the straight line: within a radius of it, say
    assert max(small_graph.distance_km(s, c) + small_graph.distance_km(c, d) for c in draft) \
        < small_graph.distance_km(s, d) + 2 * small_graph.radius_km


def test_refine_yields_k_legal_paths_from_the_source(trained, small_graph):
    model, _ = trained
    srcs, dsts = _pairs(small_graph, 12, seed=1)
    for s, d in zip(srcs, dsts):
        paths = list(model.refine(small_graph, int(s), int(d), steps=5))
        assert len(paths) == 5
        for p in paths:
            assert isinstance(p, list) and all(isinstance(c, int) for c in p)
            m = citypath.evaluate_path(small_graph, p, int(s), int(d))
            assert m["starts_at_source"] and m["illegal_jumps"] == 0     # legal by construction
            assert len(set(p)) == len(p)                                 # no city twice
    assert list(model.refine(small_graph, 3, 3, steps=2)) == [[3], [3]]
    with pytest.raises(ValueError):
        list(model.refine(small_graph, 0, 1, steps=0))


def test_refine_is_deterministic_and_matches_the_batched_walks(trained, small_graph):
    model, _ = trained
    srcs, dsts = _pairs(small_graph, 8, seed=2)
    one = [list(model.refine(small_graph, int(s), int(d), steps=4, seed=0)) for s, d in zip(srcs, dsts)]
    two = [list(model.refine(small_graph, int(s), int(d), steps=4, seed=7)) for s, d in zip(srcs, dsts)]
    assert one == two
    assert one == model.refine_batch(small_graph, srcs, dsts, 4)


def test_refine_is_thread_safe(trained, small_graph):
    model, _ = trained
    srcs, dsts = _pairs(small_graph, 16, seed=3)
    expected = [list(model.refine(small_graph, int(s), int(d), steps=3)) for s, d in zip(srcs, dsts)]
    got: dict[int, list] = {}

    def work(i: int) -> None:
        got[i] = list(model.refine(small_graph, int(srcs[i]), int(dsts[i]), steps=3))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(srcs))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert [got[i] for i in range(len(srcs))] == expected


def test_training_learns_and_more_steps_do_not_hurt(trained, small_graph):
    model, task = trained
    srcs, dsts = _pairs(small_graph, 60, seed=4)
    untrained = Scorer(model.config)
    t = graph_tables(small_graph, model.config)
    base = refine_batch(t, model.config, NumpyScorer(untrained), srcs, dsts, 1, verify=verifier(small_graph))
    base_df = citypath.evaluate_paths(small_graph, [r[0] for r in base], list(srcs), list(dsts))
    base_ratio = base_df.loc[base_df["valid"], "length_ratio"].mean()
    q = _quality(small_graph, model, srcs, dsts, 2 * model.max_steps)
    print("untrained", base_df["valid"].mean(), base_ratio, "trained by step", q)
    (v1, r1), (vmax, rmax), (v2x, r2x) = q[0], q[model.max_steps - 1], q[-1]
    assert v1 >= 0.9 and r1 < base_ratio - 0.05     # it learned: far shorter than an untrained walker
    # refinement never makes things worse here: as valid and as short at max and 2x max steps
    assert vmax >= v1 - 0.02 and rmax <= r1 + 0.005
    assert v2x >= vmax - 0.02 and r2x <= rmax + 0.005
    assert rmax < 1.06


def test_checkpoint_round_trip_gives_the_same_paths(trained, small_graph):
    model, task = trained
    srcs, dsts = _pairs(small_graph, 10, seed=5)
    ours = refine_batch(graph_tables(small_graph, model.config), model.config, NumpyScorer(task.model.scorer),
                        srcs, dsts, 3, verify=verifier(small_graph))
    assert model.refine_batch(small_graph, srcs, dsts, 3) == ours
    assert model.card["family"] == "refiner" and model.num_parameters == sum(
        p.numel() for p in task.model.parameters())


def test_a_checkpoint_for_another_graph_is_refused(trained, ri_graph):
    model, _ = trained
    with pytest.raises(citypath.models.IncompatibleGraph):
        list(model.refine(ri_graph, 0, 1, steps=1))


@pytest.mark.slow
@pytest.mark.skipif(not (REPO / "checkpoints" / "refiner-small.json").exists(), reason="no shipped refiner")
def test_shipped_refiner_scores_near_its_card(default_graph):
    from citypath.split import heldout_mask

    model = load_model("refiner-small", graph=default_graph)
    card = model.card["metrics"]["by_steps"][str(model.max_steps)]
    rng = np.random.default_rng(99)
    s, d = rng.integers(0, default_graph.n_cities, 20000), rng.integers(0, default_graph.n_cities, 20000)
    keep = heldout_mask(s, d) & (s != d)
    srcs, dsts = s[keep][:60], d[keep][:60]
    runs = model.refine_batch(default_graph, srcs, dsts, model.max_steps)
    df = citypath.evaluate_paths(default_graph, [r[-1] for r in runs], list(srcs), list(dsts))
    # 60 pairs: allow sampling noise of a few standard errors around the card's figures
    assert df["valid"].mean() >= card["valid"] - 0.08
    assert df.loc[df["valid"], "length_ratio"].mean() <= card["length_ratio_mean"] + 0.03
    assert df["illegal_jumps"].sum() == 0


def test_counted_operations_are_the_walks_each_step_ran(tiny_graph):
    """Each step's operations, pinned against a count by hand: the walks re-run with a record of every decision
    (pairs whose walks meet no dead end, so the path says where each decision was taken); step 1 the
    great-circle draft; per walk its set-up over every city and its guide; per hop the radius test; per decision
    the candidates at the neighbour row's width, the features, the placement on the guide and the scorer from
    the config's dimensions; the verifier, the repeat test and the next guide; nothing once a walk repeats."""
    import torch

    from citypath.models.refiner import SIZES, RefinerModel, WalkRecord, gc_km, walk

    g = tiny_graph
    config = RefinerConfig(**SIZES["tiny"])
    torch.manual_seed(0)
    card = {"name": "refiner-untrained", "family": "refiner", "num_parameters": 1, "max_steps": 4,
            "graph": {"fingerprint": g.fingerprint, "config": {}}}
    m = RefinerModel("refiner-untrained", card, Scorer(config), config)
    t = graph_tables(g, config)
    n, deg = g.n_cities, np.diff(g.adjacency.indptr)
    gc, bear, cands, win, look, levels, sectors = 14, 12, 64, 12, 5, 4, 16
    fc, fx, hidden = 6 + look + 1 + sectors * levels, 12 + 4 * look, 32
    per_candidate = (3 + 2 * gc + bear + 1 + 4 + 2 + 3 + 1 + look * (gc + 2) + win * (gc + 1)
                     + bear + 7 + 7 * levels * sectors + 4 * sectors + 2 * fc + 3 + 2 * look)
    context = 6 + gc + bear + 3 * win + look * (7 + gc + bear + 1 + 3) + cands + 20 + gc + 5 * look + 2 * fx
    scorer = (2 * cands * fc * hidden + 2 * fx * hidden + hidden + cands * hidden
              + 4 * cands * hidden + 2 * cands * hidden + cands)
    decision = win * (6 + gc) + 3 + 2 * win + 2 + cands * per_candidate + context + (cands + 2 * cands + 5) + scorer

    def candidates(width):
        return 16 * width + 3 + (width + 2 * width if width > cands else 0) + 2 * cands + cands

    checked = repeated = 0
    for src, dst in zip(*_pairs(g, 12, seed=6)):
        src, dst = int(src), int(dst)
        steps = 10
        run = list(m.refine_with_compute(g, src, dst, steps))
        assert [p for p, _ in run] == list(m.refine(g, src, dst, steps))          # the same routes
        points = max(2, int(np.ceil(float(gc_km(t.xyz[src], t.xyz[dst])) / (0.8 * g.radius_km))) + 1)
        expected = [gc + 4 + points + (points - 2) * (15 + 8 * np.log2(n)) + 3 * points] + [0.0] * (steps - 1)
        guide, seen, clean = draft_path(t, src, dst), set(), True
        for k in range(steps):
            record = WalkRecord()
            p = walk(t, config, NumpyScorer(m.scorer), np.array([src]), np.array([dst]), [guide], record=record)[0]
            reached = p[-1] == dst
            decided = p[:-2] if reached else p[:-1]
            clean &= len(record.cur) == len(decided)                # no dead end: every decision is on the path
            G = len(guide)
            ops = gc + 4 + 2 * G + (G - 1) * (gc + 1) + (G + 1) + G + 1 + n + 8
            ops += (len(decided) + 1) * (20 + 7 + 2)                # every hop's radius and budget tests
            ops += sum(candidates(max(deg[u], cands)) + decision for u in decided)
            ops += 4 * (len(p) - 1) + len(p) + 1 + (0 if reached else len(p) + 1)
            expected[k] += ops
            if p.tobytes() in seen:
                break                                                # a repeat: no more walks
            seen.add(p.tobytes())
            guide = p if reached else np.r_[p, dst]
        if clean:
            assert [f for _, f in run] == pytest.approx(expected, rel=1e-12)
            checked += 1
            repeated += run[-1][1] == 0
    assert checked >= 3 and repeated >= 1
