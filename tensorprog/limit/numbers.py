"""Numbers as a limit holds them: floats, or sympy Floats when the limit is symbolic."""
from __future__ import annotations

import numpy as np
import sympy as sp


def limit_number(value, symbolic: bool):
    """``value`` (a number or an array) as a limit of the given kind holds it.

    Parameters
    ----------
    value : float or numpy.ndarray
    symbolic : bool
        Whether the limit computes with sympy expressions (``Limit(..., symbolic=True)``).

    Returns
    -------
    ``value`` itself, or with every entry a ``sympy.Float`` (an object array) when symbolic.

    Example
    -------
    >>> limit_number(0.5, True)
    0.500000000000000
    """
    if not symbolic:
        return value
    if isinstance(value, np.ndarray):
        return np.vectorize(sp.Float, otypes=[object])(value)
    return sp.Float(value)
