"""The tile size estimate bounds what a tile allocates: the numbers per input pair measured on
the template (cached cross arrays, the largest cross expectation's factors and entries, closed
form temporaries) against the peak that ``tracemalloc`` sees while a kernel is computed."""
import tracemalloc
import warnings

import numpy as np
import pytest

import tensorprog as tp
from programs import attention, cnn, mlp, rnn


def _peak(f):
    """Peak bytes allocated while ``f()`` runs (and its result)."""
    tracemalloc.start()
    try:
        out = f()
        return tracemalloc.get_traced_memory()[1], out
    finally:
        tracemalloc.stop()


CASES = {
    # the attention block's backward pass: an expectation over all pairs of 16 ZHAT members
    # holds 256 cached Wick factors, 13× the cross arrays the estimate used to count
    "attention": (lambda X: attention.build(X), (4, 8), 24),
    "mlp": (lambda X: mlp.build(X, depth=3), (16,), 60),
    "cnn": (lambda X: cnn.build(X, depth=2, filter_size=3, padding="circular"), (8, 4), 30),
    "rnn": (lambda X: rnn.build(X, steps=4), (4, 8), 60),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_estimate_bounds_the_peak_of_one_tile(name):
    """Both kinds of tile: a diagonal (symmetric) one, and an off-diagonal (cross) one, which
    also holds the cross arrays ``y`` of the other order."""
    build, shape, n = CASES[name]
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((n,) + shape), rng.standard_normal((n,) + shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tp.PseudoLipschitzWarning)
        p = build(X[:2])
        kfn = tp.compile(p)
        left, right = kfn._data(X), kfn._data(Y)
        peaks = [_peak(lambda: kfn._template.evaluate(left, other, ("nngp", "ntk")))[0]
                 for other in (None, right)]
    estimate = 8 * kfn._template.arrays_per_pair * n * n
    for peak in peaks:
        assert peak <= estimate, (peak / (8 * n * n), kfn._template.arrays_per_pair)
    if name == "attention":       # nor a gross overestimate (tiles needlessly small)
        assert peaks[1] >= estimate / 2


def test_default_budget_holds_for_attention():
    X = np.random.default_rng(1).standard_normal((40, 4, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tp.PseudoLipschitzWarning)
        kfn = tp.compile(attention.build(X[:2]))
        budget = 8 * kfn._template.arrays_per_pair * 20 ** 2      # tiles of 20 × 20
        peak, out = _peak(lambda: kfn(X, get="ntk", max_memory=budget))
    # the estimate counts numbers per pair of a tile; per-input arrays (the self blocks of
    # both sides of a tile, O(b) against O(b²)) and the kernels assembled come on top
    assert peak <= 1.1 * budget + out.nbytes
