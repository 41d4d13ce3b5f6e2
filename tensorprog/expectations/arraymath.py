"""Array math of the exact tier: one closed-form code path for float arrays and sympy expressions.

The exact tier (:mod:`.closed_forms`) writes every formula once, against an object ``m`` that is
either :data:`NUMERIC` (numpy float/complex arrays over the batch) or :data:`SYMBOLIC` (numpy
object arrays of sympy expressions over the batch).  The two differ only where numerics need
care:

* correlations are clipped into [-1, 1] before ``arccos``/``arcsin`` (numeric only);
* ``safe(s)`` replaces zero standard deviations by 1 so that a formula can be evaluated without
  dividing by zero, and ``if_zero(s, value_at_zero, value)`` then selects the zero-variance
  limit (numeric only: in symbolic mode variances are taken to be positive);
* ``clean_var`` sets to exactly 0 a variance that is zero up to rounding;
* small linear algebra on (..., m, m) batches (pseudo-inverse, determinant, solve).

Constants are written as sympy numbers and converted with ``m.c(...)`` so that symbolic results
stay exact (``pi``, ``sqrt(2)``, rationals) and numeric results are plain floats.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.special as sc
import sympy as sp

__all__ = ["NUMERIC", "SYMBOLIC", "NumericMath", "SymbolicMath"]


class NumericMath:
    """Float64 (or complex128) arrays."""

    symbolic = False
    pi = math.pi

    @staticmethod
    def c(x):
        """A constant (sympy number or python number) as a float (complex if it has to be)."""
        x = sp.sympify(x)
        if x.is_real is False or x.has(sp.I):
            return complex(x)
        return float(x)

    @staticmethod
    def sqrt(x):
        return np.sqrt(np.maximum(x, 0.0))

    @staticmethod
    def acos(x):
        return np.arccos(np.clip(x, -1.0, 1.0))

    @staticmethod
    def asin(x):
        return np.arcsin(np.clip(x, -1.0, 1.0))

    @staticmethod
    def clip_corr(x):
        """Clip into [-1, 1] (no snapping: the kernel libraries compute
        ``arccos(clip(Σ12/√(Σ11Σ22)))`` and we must agree with them to rounding; note that a
        correlation rounded 1 ulp away from ±1 moves arccos by ~1.5e-8)."""
        return np.clip(x, -1.0, 1.0)

    exp = staticmethod(np.exp)
    erf = staticmethod(sc.erf)

    @staticmethod
    def sqrt_prod(a, b):
        """``√(a·b)`` for nonnegative a, b (one rounding: exact when a = b)."""
        return np.sqrt(np.maximum(a * b, 0.0))

    @staticmethod
    def Phi(x):
        """Standard normal CDF."""
        return sc.ndtr(x)

    @staticmethod
    def phi(x):
        """Standard normal density."""
        return np.exp(-0.5 * x * x) * (1.0 / math.sqrt(2.0 * math.pi))

    @staticmethod
    def safe(s):
        """``s`` with zeros replaced by 1 (evaluate formulas without 0/0, then use ``if_zero``)."""
        return np.where(s > 0, s, 1.0)

    @staticmethod
    def if_zero(s, value_at_zero, value):
        """``value`` where ``s > 0``, ``value_at_zero`` where ``s == 0``."""
        return np.where(s > 0, value, value_at_zero)

    @staticmethod
    def clean_var(var, ref):
        """A variance that is below 1e-12 of ``ref`` (the same variance without cancellation)
        is zero: rounding must not turn ``Var(u - u)`` into a tiny positive number."""
        var = np.asarray(var, dtype=float)
        return np.where(var <= 1e-12 * ref, 0.0, var)

    @staticmethod
    def pinv(S):
        """Batched Moore–Penrose pseudo-inverse of symmetric PSD (..., m, m) matrices."""
        return np.linalg.pinv(S, rcond=1e-11, hermitian=True)

    @staticmethod
    def det(M):
        return np.linalg.det(M)

    @staticmethod
    def solve(M, B):
        return np.linalg.solve(M, B)

    @staticmethod
    def real(x):
        if device_array(x):                     # a CuPy array stays on its device
            return x.real if np.iscomplexobj(x) else x
        x = np.asarray(x)
        return x.real if np.iscomplexobj(x) else x

    @staticmethod
    def zeros(shape):
        return np.zeros(shape)

    @staticmethod
    def asarray(x):
        return np.asarray(x)


def device_array(x) -> bool:
    """Whether ``x`` is an array of another module than NumPy (CuPy's refuse ``np.asarray``)."""
    return hasattr(x, "shape") and not isinstance(x, (np.ndarray, np.generic))


def _vectorize(f):
    vf = np.vectorize(f, otypes=[object])

    def apply(x):
        return vf(np.asarray(x, dtype=object))

    return apply


def _obj_matrix_op(op):
    """Apply ``op`` (on a sympy Matrix) to every matrix of a (..., m, m) object array."""

    def apply(*arrays):
        arrays = [np.asarray(a, dtype=object) for a in arrays]
        batch = np.broadcast_shapes(*[a.shape[:-2] for a in arrays])
        arrays = [np.broadcast_to(a, batch + a.shape[-2:]) for a in arrays]
        out = None
        for idx in np.ndindex(*batch):
            res = op(*[sp.Matrix(a[idx]) for a in arrays])
            if out is None:
                shape = batch + ((res.shape) if isinstance(res, sp.MatrixBase) else ())
                out = np.empty(shape, dtype=object)
            out[idx] = np.array(res.tolist(), dtype=object) if isinstance(res, sp.MatrixBase) \
                else res
        if out is None:  # empty batch
            out = np.empty(batch, dtype=object)
        return out

    return apply


class SymbolicMath:
    """Numpy object arrays of sympy expressions (no clipping; variances taken positive)."""

    symbolic = True
    pi = sp.pi

    @staticmethod
    def c(x):
        return sp.nsimplify(x) if isinstance(x, float) else sp.sympify(x)

    sqrt = staticmethod(_vectorize(sp.sqrt))
    acos = staticmethod(_vectorize(sp.acos))
    asin = staticmethod(_vectorize(sp.asin))
    exp = staticmethod(_vectorize(sp.exp))
    erf = staticmethod(_vectorize(sp.erf))

    @staticmethod
    def clip_corr(x):
        return x

    @staticmethod
    def sqrt_prod(a, b):
        """``√(a·b)`` for nonnegative a, b; exactly ``a`` when ``a`` and ``b`` are the same
        expression (sympy would write ``sqrt(a**2)``, which evaluates to 1 ulp off ``a``)."""
        def one(x, y):
            return x if x == y else sp.sqrt(x * y)
        return np.vectorize(one, otypes=[object])(np.asarray(a, dtype=object),
                                                  np.asarray(b, dtype=object))

    @classmethod
    def Phi(cls, x):
        return (1 + cls.erf(np.asarray(x, dtype=object) / sp.sqrt(2))) / 2

    @classmethod
    def phi(cls, x):
        x = np.asarray(x, dtype=object)
        return cls.exp(-x * x / 2) / sp.sqrt(2 * sp.pi)

    @staticmethod
    def safe(s):
        return s

    @staticmethod
    def if_zero(s, value_at_zero, value):
        return value

    @staticmethod
    def clean_var(var, ref):
        return var

    pinv = staticmethod(_obj_matrix_op(lambda S: S.inv()))
    det = staticmethod(_obj_matrix_op(lambda M: M.det()))
    solve = staticmethod(_obj_matrix_op(lambda M, B: M.LUsolve(B)))

    @staticmethod
    def real(x):
        x = np.asarray(x, dtype=object)
        if any(sp.sympify(v).has(sp.I) for v in x.flat):
            return _vectorize(lambda v: sp.simplify(sp.expand_complex(v)) if v.has(sp.I) else v)(x)
        return x

    @staticmethod
    def zeros(shape):
        return np.full(shape, sp.S.Zero, dtype=object)

    @staticmethod
    def asarray(x):
        return np.asarray(x, dtype=object)


NUMERIC = NumericMath()
SYMBOLIC = SymbolicMath()
