"""Fused kernels for the bivariate closed forms of one pair of atoms.

Most expectations of an MLP, CNN or RNN kernel are ``E[φ(u) ψ(v)]`` of two centred Gaussian
atoms ``(u, v)`` with variances ``Σ₁₁, Σ₂₂`` and covariance ``Σ₁₂``, φ and ψ from the
arc-cosine family (``relu = u·step(u)``, ``step``, their powers and products with powers of
the atom) or erf.  For them the generic closed forms (:func:`..expectations.closed_forms.
_eval_kink`: regression of the atoms on the forms, correlation, polynomial expansion of
``J_ab(θ)``) take some twenty passes over the pair batch; here they take one, reading
``(Σ₁₁, Σ₁₂, Σ₂₂)`` and writing the expectation:

* step · step with powers (the arc-cosine kernels, Cho & Saul; TP IIb App. B's orthant
  moments): ``E[1{u>0}1{v>0} u^a v^b] = s₁^a s₂^b J_ab(θ)``, ``θ = arccos(Σ₁₂/√(Σ₁₁Σ₂₂))``,
  ``J_ab`` a polynomial in ``θ, cos θ, sin θ`` (:func:`..expectations.closed_forms.orthant_J`),
  so a sum of such moments is one table of monomials ``c·s₁^a s₂^b θ^t cos^p θ sin^q θ``;
* ``E[erf(u) erf(v)] = (2/π) arcsin(2Σ₁₂/√((1+2Σ₁₁)(1+2Σ₂₂)))`` and
  ``E[1{u>0} erf(v)] = (1/π) arcsin(√2 Σ₁₂/√(Σ₁₁(1+2Σ₂₂)))``;
* the Gaussian form of two atoms ``E[exp(xᵀAx)] = det(I − 2ΣA)^{−1/2}`` (the ``erf'·erf'`` of
  an erf network's backward pass), NaN where an eigenvalue of ΣA is ≥ 1/2.

The formulas, their clipping and their zero-variance limits are those of the generic closed
forms, so the results agree with them to rounding.  Two engines compute the same formulas:
NumPy array expressions (the default: NumPy's SIMD ``arccos``/``arcsin`` make its few passes
over a tile faster than one scalar pass, docs/performance.md) and a numba kernel, one
multi-threaded pass (``pip install ".[fast]"``, selected by ``ENGINE = "numba"`` or the
environment variable ``TENSORPROG_FUSED_ENGINE=numba``).
"""
from __future__ import annotations

import math
import os
from functools import lru_cache

import numpy as np
import sympy as sp

from ..expectations.closed_forms import KinkTerm, _theta, orthant_J, peval
from ..expectations.arraymath import NUMERIC

#: ``"numpy"`` or ``"numba"`` (when installed): the engine of :func:`pair_kernel`.
ENGINE = os.environ.get("TENSORPROG_FUSED_ENGINE", "numpy")

#: Kinds of fused kernels (the code passed to the kernel).
ORTHANT, ERF_ERF, STEP_ERF, GAUSS = 0, 1, 2, 3


@lru_cache(maxsize=None)
def _j_monomials(a: int, b: int) -> tuple:
    """``J_ab(θ)`` as ``((c, t, p, q), …)``: ``Σ c θ^t cos^p θ sin^q θ``."""
    C, S = sp.Symbol("C"), sp.Symbol("S")
    J = sp.expand(orthant_J(a, b).subs({sp.cos(_theta): C, sp.sin(_theta): S}))
    poly = sp.Poly(J, _theta, C, S)
    return tuple((float(c), t, p, q) for (t, p, q), c in poly.terms())


@lru_cache(maxsize=4096)
def fused_form(plan, k: int):
    """The fused kernel of a closed-form plan, or None when it is not one pair's closed form.

    Returns ``(kind, (i, j), coef, rows)``: the kernel kind, the atoms read by the two
    elements, the term's coefficient and (for the orthant kind) the monomial table as
    ``(poly coefficient, a, b, c, t, p, q)`` rows, coefficients still sympy expressions.
    """
    if len(plan.terms) != 1 or not isinstance(plan.terms[0], KinkTerm):
        return None
    term = plan.terms[0]
    els = term.elements
    if len(els) != 2 or any(e.offset != 0 for e in els):
        return None
    reads = []
    for e in els:
        nz = [l for l, c in enumerate(e.coeffs) if c != 0]
        if len(nz) != 1 or e.coeffs[nz[0]] != 1:
            return None
        reads.append(nz[0])
    if reads[0] == reads[1]:
        return None
    kinds = tuple(e.kind for e in els)
    rows = []
    for mon, c in term.poly:
        if any(mon[:k]):
            return None
        beta = [0, 0]
        for g, j in enumerate(term.wmap):
            beta[j] += mon[k + g]
        rows.append((c, beta[0], beta[1]))
    if kinds == ("step", "step"):
        table = tuple((c, a, b) + m for c, a, b in rows for m in _j_monomials(a, b))
        return ORTHANT, tuple(reads), term.coef, table
    if kinds in (("erf", "erf"), ("step", "erf")) and all(a == b == 0 for _, a, b in rows):
        coef = term.coef * sp.Add(*[c for c, _, _ in rows])
        return (ERF_ERF if kinds[0] == "erf" else STEP_ERF), tuple(reads), coef, ()
    return None


def evaluate_fused(form, cov, params):
    """``E[expr]`` of a :func:`fused_form` on the covariance ``cov`` (entry by entry); None when
    a coefficient depends on the inputs or the two atoms are independent (the caller then runs
    the generic closed form)."""
    kind, (i, j), coef, table = form
    S11, S12, S22 = cov[..., i, i], cov[..., i, j], cov[..., j, j]
    if not all(_is_array(s) for s in (S11, S12, S22)):
        return None
    coef = peval(coef, params, NUMERIC)
    weights = [peval(row[0], params, NUMERIC) for row in table]
    if any(np.ndim(w) or isinstance(w, complex) for w in [coef] + weights):
        return None
    tab = np.array([[w * row[3]] + list(row[1:3]) + list(row[4:])
                    for w, row in zip(weights, table)], dtype=float).reshape(-1, 6)
    shape = np.broadcast_shapes(S11.shape, S12.shape, S22.shape)
    return float(coef) * pair_kernel(kind, S11, S12, S22, tab, shape)


def gaussian_form2(S11, S12, S22, A):
    """``det(I − 2ΣA)^{−1/2}`` of two atoms with ``Σ = [[S11, S12], [S12, S22]]`` and a
    symmetric 2 × 2 ``A`` of numbers; NaN where it is infinite.  None when an entry of Σ is not
    an array (independent atoms: the caller's generic form)."""
    if not all(_is_array(s) for s in (S11, S12, S22)):
        return None
    table = np.array([[A[0][0], A[0][1], A[1][1], 0.0, 0.0, 0.0]])
    shape = np.broadcast_shapes(S11.shape, S12.shape, S22.shape)
    return pair_kernel(GAUSS, S11, S12, S22, table, shape)


def _is_array(s) -> bool:
    """Whether a covariance entry is an array (NumPy or CuPy), not the number of independent
    atoms."""
    return not isinstance(s, (int, float))


def pair_kernel(kind, S11, S12, S22, table, shape):
    """The fused kernel on broadcasting arrays, by :data:`ENGINE` (NumPy without numba, and for
    arrays of another module: CuPy takes the NumPy expressions).  The NumPy expressions keep
    the precision of the covariances (float32 in, float32 out); numba computes in float64."""
    host = all(isinstance(s, np.ndarray) for s in (S11, S12, S22))
    if ENGINE == "numba" and host and numba_kernel() is not None:
        four = lambda a: np.ascontiguousarray(a, dtype=float).reshape((1,) * (4 - a.ndim) +
                                                                        a.shape)
        out = np.empty(shape)
        w = np.ascontiguousarray(table[:, 0] if kind != GAUSS else table[0, :3])
        ex = np.ascontiguousarray(table[:, 1:], dtype=np.int64)
        numba_kernel()(kind, four(S11), four(S12), four(S22), w, ex,
                      out.reshape((1,) * (4 - out.ndim) + out.shape))
        return out
    return np.broadcast_to(_numpy_kernel(kind, S11, S12, S22, table), shape)


def _numpy_kernel(kind, S11, S12, S22, table):
    if kind == GAUSS:
        (A00, A01, A11), = table[:, :3].tolist()      # Python numbers keep the precision
        m00, m01 = 1.0 - 2.0 * (S11 * A00 + S12 * A01), -2.0 * (S11 * A01 + S12 * A11)
        m10, m11 = -2.0 * (S12 * A00 + S22 * A01), 1.0 - 2.0 * (S12 * A01 + S22 * A11)
        det = m00 * m11 - m01 * m10
        ok = (m00 + m11 > 0) & (det > 0)
        return np.where(ok, 1.0 / np.sqrt(np.where(ok, det, 1.0)), np.nan)
    S11, S22 = np.maximum(S11, 0.0), np.maximum(S22, 0.0)
    if kind == ERF_ERF:
        r = 2 * S12 / np.sqrt(np.maximum((1 + 2 * S11) * (1 + 2 * S22), 0.0))
        return (2 / math.pi) * np.arcsin(np.clip(r, -1.0, 1.0))
    if kind == STEP_ERF:
        safe = np.where(S11 > 0, S11, 1.0)
        r = math.sqrt(2) * S12 / np.sqrt(np.maximum(safe * (1 + 2 * S22), 0.0))
        return np.where(S11 > 0, (1 / math.pi) * np.arcsin(np.clip(r, -1.0, 1.0)), 0.0)
    positive = bool(np.all(S11 > 0) and np.all(S22 > 0))
    root = np.sqrt(S11 * S22)                          # s₁s₂, one rounding as the generic form
    rho = np.divide(S12, root if positive else np.where(root > 0, root, 1.0))
    np.clip(rho, -1.0, 1.0, out=rho)
    theta = np.arccos(rho)
    sin = 1.0 - rho
    sin *= 1.0 + rho
    np.sqrt(sin, out=sin)
    total = 0.0
    for w, a, b, t, p, q in table.tolist():
        term = np.full_like(rho, w)
        for arr, e in ((theta, t), (rho, p), (sin, q)):
            for _ in range(int(e)):
                term *= arr
        if a == b:
            term *= root ** int(a)
        else:
            term *= np.sqrt(S11) ** int(a) * np.sqrt(S22) ** int(b)
        total = total + term
    return total if positive else np.where((S11 > 0) & (S22 > 0), total, 0.0)


prange = range      # numba.prange once the kernel is compiled


def _kernel_body(kind, S11, S12, S22, w, ex, out):  # pragma: no cover - compiled by numba
    n0, n1, n2, n3 = out.shape
    # index multipliers: 0 along the axes an input broadcasts over
    a0, a1, a2, a3 = (min(S11.shape[0], 2) - 1, min(S11.shape[1], 2) - 1,
                      min(S11.shape[2], 2) - 1, min(S11.shape[3], 2) - 1)
    b0, b1, b2, b3 = (min(S12.shape[0], 2) - 1, min(S12.shape[1], 2) - 1,
                      min(S12.shape[2], 2) - 1, min(S12.shape[3], 2) - 1)
    c0, c1, c2, c3 = (min(S22.shape[0], 2) - 1, min(S22.shape[1], 2) - 1,
                      min(S22.shape[2], 2) - 1, min(S22.shape[3], 2) - 1)
    for i in prange(n0):
        for j in range(n1):
            for p in range(n2):
                for q in range(n3):
                    a11 = S11[i * a0, j * a1, p * a2, q * a3]
                    a12 = S12[i * b0, j * b1, p * b2, q * b3]
                    a22 = S22[i * c0, j * c1, p * c2, q * c3]
                    if kind == 3:
                        m00 = 1.0 - 2.0 * (a11 * w[0] + a12 * w[1])
                        m01 = -2.0 * (a11 * w[1] + a12 * w[2])
                        m10 = -2.0 * (a12 * w[0] + a22 * w[1])
                        m11 = 1.0 - 2.0 * (a12 * w[1] + a22 * w[2])
                        det = m00 * m11 - m01 * m10
                        if m00 + m11 > 0 and det > 0:
                            out[i, j, p, q] = 1.0 / math.sqrt(det)
                        else:
                            out[i, j, p, q] = math.nan
                        continue
                    a11 = max(a11, 0.0)
                    a22 = max(a22, 0.0)
                    if kind == 1:
                        r = 2.0 * a12 / math.sqrt(max((1.0 + 2.0 * a11) * (1.0 + 2.0 * a22), 0.0))
                        out[i, j, p, q] = (2.0 / math.pi) * math.asin(min(max(r, -1.0), 1.0))
                        continue
                    if kind == 2:
                        if a11 > 0:
                            r = math.sqrt(2.0) * a12 / math.sqrt(max(a11 * (1.0 + 2.0 * a22), 0.0))
                            out[i, j, p, q] = (1.0 / math.pi) * math.asin(min(max(r, -1.0), 1.0))
                        else:
                            out[i, j, p, q] = 0.0
                        continue
                    prod = a11 * a22
                    if not prod > 0:
                        out[i, j, p, q] = 0.0
                        continue
                    root = math.sqrt(prod)
                    rho = min(max(a12 / root, -1.0), 1.0)
                    theta = math.acos(rho)
                    sn = math.sqrt((1.0 - rho) * (1.0 + rho))
                    total = 0.0
                    for m in range(w.shape[0]):
                        term = w[m]
                        if ex[m, 0] == ex[m, 1]:
                            for _ in range(ex[m, 0]):
                                term *= root
                        else:
                            term *= math.sqrt(a11) ** ex[m, 0] * math.sqrt(a22) ** ex[m, 1]
                        for _ in range(ex[m, 2]):
                            term *= theta
                        for _ in range(ex[m, 3]):
                            term *= rho
                        for _ in range(ex[m, 4]):
                            term *= sn
                        total += term
                    out[i, j, p, q] = total


@lru_cache(maxsize=None)
def numba_kernel():
    """The numba-compiled :func:`_kernel_body`, or None without numba (imported on first use:
    NumPy is the default engine)."""
    try:
        import numba
    except ImportError:  # pragma: no cover - depends on the environment
        return None
    if "NUMBA_THREADING_LAYER" not in os.environ:
        # OpenMP threads spin while they wait: on a loaded machine that costs more than the
        # parallel loop gains (docs/performance.md); numba's own work queue does not spin
        numba.config.THREADING_LAYER = "workqueue"
    globals()["prange"] = numba.prange
    return numba.njit(parallel=True, fastmath=False, cache=True)(_kernel_body)
