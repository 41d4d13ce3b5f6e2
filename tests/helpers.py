"""Small helpers the tests share: inputs, relative errors, the finite-width check."""
import numpy as np

import tensorprog as tp

#: Widths of the program tests' finite-width checks.
WIDTHS = (64, 128, 256, 512)


def unit_rows(shape, seed=0):
    """Standard normal inputs of ``shape``, each feature vector (last axis) of unit norm."""
    X = np.random.default_rng(seed).standard_normal(shape)
    return X / np.linalg.norm(X, axis=-1, keepdims=True)


def rel(a, b):
    """Relative Frobenius error of ``a`` against ``b``."""
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def assert_validates(p, seeds, seed):
    """``tp.validate`` over :data:`WIDTHS` passes, and every quantity's per-draw error falls
    like n^-1/2 (slope within 0.1, its standard error below 0.06).  Returns the report."""
    rep = tp.validate(p, widths=WIDTHS, seeds=seeds, backend="numpy", seed=seed)
    assert rep.passed, rep.to_markdown()
    for q in rep.quantities:
        slope, se = rep.slopes[q]
        assert abs(slope + 0.5) < 0.1 and se < 0.06, (q, slope, se)
    return rep
