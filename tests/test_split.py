import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from citypath import heldout_mask, is_heldout

ids = st.integers(min_value=0, max_value=2**31 - 1)


@given(ids, ids)
def test_split_is_symmetric_and_matches_the_vectorised_form(a, b):
    assert is_heldout(a, b) == is_heldout(b, a) == bool(heldout_mask([a], [b])[0])


def test_about_five_percent_of_pairs_are_held_out():
    rng = np.random.default_rng(1)
    src, dst = rng.integers(0, 21_000, 200_000), rng.integers(0, 21_000, 200_000)
    assert abs(heldout_mask(src, dst).mean() - 0.05) < 0.003


def test_split_is_a_pure_function_of_the_pair():
    rng = np.random.default_rng(2)
    src, dst = rng.integers(0, 21_000, 1000), rng.integers(0, 21_000, 1000)
    assert (heldout_mask(src, dst) == heldout_mask(src.copy(), dst.copy())).all()
    assert [is_heldout(int(s), int(t)) for s, t in zip(src, dst)] == list(heldout_mask(src, dst))


@pytest.mark.parametrize("bad", [-1, 2**40, 1.5, "3", None, True])
def test_bad_ids_are_refused(bad):
    with pytest.raises(ValueError):
        is_heldout(bad, 3)


def test_one_sampler_for_both_sides_of_the_split():
    import numpy as np

    from citypath.split import heldout_mask, sample_pairs

    for heldout in (True, False):
        s, t = sample_pairs(500, 300, np.random.default_rng(1), heldout=heldout)
        assert len(s) == len(t) == 300 and (s != t).all()
        assert (heldout_mask(s, t) == heldout).all()
        s2, t2 = sample_pairs(500, 300, np.random.default_rng(1), heldout=heldout)
        assert (s == s2).all() and (t == t2).all()


# -- the validation split: carved out of the training side by a second hash ---------------------

def test_the_test_side_is_exactly_what_it_was_before_the_validation_split():
    """A digest of `heldout_mask` on fixed pairs, taken from the implementation that predates the
    validation split: the test pairs, and every held-out figure, stay as they were."""
    import hashlib

    rng = np.random.default_rng(2024)
    s, t = rng.integers(0, 2**31, 100_000), rng.integers(0, 2**31, 100_000)
    grid_s, grid_t = np.meshgrid(np.arange(300), np.arange(300))
    m1, m2 = heldout_mask(s, t), heldout_mask(grid_s.ravel(), grid_t.ravel())
    assert (int(m1.sum()), int(m2.sum())) == (5070, 4317)
    assert hashlib.sha256(np.packbits(m1).tobytes() + np.packbits(m2).tobytes()).hexdigest() == \
        "056a8803d54cd3cb32348d86d79bd9457254ccb9ac2d99a0e8eb930fa518c41b"


@given(ids, ids)
def test_validation_is_symmetric_and_one_side_of_three(a, b):
    from citypath.split import is_validation, pair_split, validation_mask

    assert is_validation(a, b) == is_validation(b, a) == bool(validation_mask([a], [b])[0])
    side = pair_split(a, b)
    assert side == pair_split(b, a)
    assert (side == "test") == is_heldout(a, b) and (side == "validation") == is_validation(a, b)


def test_about_five_percent_of_training_side_pairs_are_validation_pairs():
    from citypath.split import train_mask, validation_mask

    rng = np.random.default_rng(3)
    src, dst = rng.integers(0, 21_000, 400_000), rng.integers(0, 21_000, 400_000)
    held, val = heldout_mask(src, dst), validation_mask(src, dst)
    assert not (held & val).any()
    assert abs(val[~held].mean() - 0.05) < 0.002          # ~5% of the old training side ...
    assert abs(val.mean() - 0.0475) < 0.002               # ... 4.75% of all pairs
    # independent of the held-out hash: as common in a subset of the training side as in all of it
    assert abs(val[~held & (src < 1000)].mean() - 0.05) < 0.006
    assert (train_mask(src, dst) == (~held & ~val)).all()
    assert (train_mask(src, dst, exclude_validation=False) == ~held).all()


@pytest.mark.parametrize("bad", [-1, 2**40, 1.5, "3", None, True])
def test_bad_ids_are_refused_by_every_scalar_form(bad):
    from citypath.split import is_validation, pair_split

    for fn in (is_validation, pair_split):
        with pytest.raises(ValueError):
            fn(bad, 3)


def test_one_sampler_for_all_three_sides():
    from citypath.split import pair_split, sample_pairs, validation_mask

    for split in ("train", "validation", "test"):
        s, t = sample_pairs(2000, 300, np.random.default_rng(1), split=split, batch=20_000)
        assert len(s) == len(t) == 300 and (s != t).all()
        assert {pair_split(int(a), int(b)) for a, b in zip(s, t)} == {split}
        s2, t2 = sample_pairs(2000, 300, np.random.default_rng(1), split=split, batch=20_000)
        assert (s == s2).all() and (t == t2).all()
    # heldout= keeps its meaning: True is the test side, False any pair not held out (validation included)
    s, t = sample_pairs(2000, 300, np.random.default_rng(1), heldout=True, batch=20_000)
    assert heldout_mask(s, t).all()
    s, t = sample_pairs(2000, 3000, np.random.default_rng(1), heldout=False)
    assert not heldout_mask(s, t).any() and validation_mask(s, t).any()
    for bad in ({}, {"heldout": True, "split": "test"}, {"split": "heldout"}):
        with pytest.raises(ValueError):
            sample_pairs(2000, 3, np.random.default_rng(1), **bad)


def test_evaluate_split_validation_scores_validation_pairs(tiny_graph, tiny_gru_dir, tmp_path, monkeypatch):
    from citypath.cli import main
    from citypath.evaluate import load_results, sample_validation_pairs
    from citypath.split import validation_mask

    s, t = sample_validation_pairs(tiny_graph, 40, seed=1)
    assert len(s) == 40 and (s != t).all() and validation_mask(s, t).all()
    assert (sample_validation_pairs(tiny_graph, 40, seed=1)[0] == s).all()
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", "--split", "validation", "--models", "gru-tiny", "--steps", "1", "--pairs", "10",
                 "--radius-km", "20", "--states", "RI,MA", "--checkpoints", str(tiny_gru_dir),
                 "--bootstrap", "10", "--no-progress"]) == 0
    results = load_results(tmp_path / "results" / "eval-validation.json")
    assert results["pairs"] == {"n": 10, "seed": 0, "heldout": False, "split": "validation"}
    assert results["models"]["gru-tiny"]["pairs"] == 10
