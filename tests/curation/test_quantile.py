"""Radix selection of the k-th largest score: exact on any data, ties and signs included."""

import numpy as np
import pytest

from curation.quantile import PASSES, Selection, keep_count, order_keys, score_of


def select(scores: np.ndarray, keep_fraction: float, parts: int = 3) -> float | None:
    """The passes as the pipeline runs them: counts per part, summed, then refined."""
    keys = [order_keys(part) for part in np.array_split(np.asarray(scores, dtype=np.float64), parts)]
    selection = Selection.start(sum(Selection.first_counts(k) for k in keys), keep_fraction)
    if selection is None:
        return None
    for _ in range(1, PASSES):
        selection = selection.refine(sum(selection.counts(k) for k in keys))
    return selection.threshold


def kth_largest(scores: np.ndarray, keep_fraction: float) -> float:
    k = keep_count(len(scores), keep_fraction)
    return float(np.sort(scores)[::-1][k - 1])


def test_order_keys_keep_the_order_of_every_float():
    values = np.array([-np.inf, -1e308, -2.5, -1e-310, -0.0, 0.0, 5e-324, 1e-300, 0.25, 0.2500000000000001, 3.0, np.inf])
    keys = order_keys(values)
    assert keys.dtype == np.uint64
    assert np.all(keys[:-1] <= keys[1:]) and keys[4] == keys[5]  # -0.0 is 0.0
    assert [score_of(int(k)) for k in keys] == [float(v) + 0.0 for v in values]
    rng = np.random.default_rng(0)
    random = rng.standard_normal(10_000) * 10.0 ** rng.integers(-30, 30, 10_000)
    assert np.array_equal(np.argsort(order_keys(random), kind="stable"), np.argsort(random, kind="stable"))


@pytest.mark.parametrize("seed", range(5))
def test_selection_is_the_exact_kth_largest(seed):
    rng = np.random.default_rng(seed)
    cases = [
        rng.normal(0.3, 0.05, 5000),  # CLIP-like: all in a few top-16-bit buckets
        np.round(rng.normal(0.3, 0.05, 5000), 2),  # many ties
        rng.standard_normal(3000) * 1e6,  # both signs, wide range
        np.full(100, 0.25),  # all tied
        rng.choice([-0.0, 0.0, 1.0], 300),
    ]
    for scores in cases:
        for fraction in (1e-4, 0.01, 0.3137, 0.5, 0.9, 1.0):
            assert select(scores, fraction) == kth_largest(scores, fraction), fraction


def test_keep_count_and_empty_corpus():
    assert keep_count(0, 0.5) == 0 and keep_count(1, 0.01) == 1 and keep_count(10, 1.0) == 10
    assert keep_count(199_000, 0.3137) == 62426 and keep_count(10, 0.25) == 2  # half to even
    assert keep_count(100, 1 - (1 - 0.3)) == 30  # float noise does not move it
    assert select(np.array([]), 0.3) is None
    assert select(np.array([0.7]), 0.3) == 0.7
    with pytest.raises(ValueError):
        Selection(n=1, rank=1).threshold
