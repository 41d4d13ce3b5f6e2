"""Expectations of functions of jointly Gaussian atoms, vectorised over a batch of covariances.

    >>> import numpy as np, sympy as sp
    >>> from tensorprog.functions import relu
    >>> from tensorprog.expectations import expect
    >>> u, v = sp.symbols("u v", real=True)
    >>> res = expect(relu(u) * relu(v), (u, v), np.array([[1.0, 0.0], [0.0, 1.0]]))
    >>> float(res.value), res.tier          # 1/(2π)
    (0.15915494309189535, 'exact')

Three tiers (docs/theory.md §4), chosen per independent factor after an exact decomposition
(:mod:`.decompose`): closed forms (:mod:`.closed_forms`, also symbolic), deterministic quadrature
for effective dimension ≤ 3 (:mod:`.quadrature`) and randomised quasi-Monte Carlo
(:mod:`.montecarlo`); :mod:`.engine` dispatches.
"""
from .engine import Expectation, expect

__all__ = ["expect", "Expectation"]
