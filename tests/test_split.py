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
