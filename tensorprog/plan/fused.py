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


def evaluate_fused(form, cov, params, angles=None):
    """``E[expr]`` of a :func:`fused_form` on the covariance ``cov`` (entry by entry); None when
    a coefficient depends on the inputs or the two atoms are independent (the caller then runs
    the generic closed form).

    ``angles`` (a dict, optional) caches ``θ = arccos ρ`` by the structural keys of the
    covariance entries (``cov.keys``, :class:`.pairs.BlockCov`), so that the expectations of
    one linear form (a layer's forward ``E[relu relu]`` and backward ``E[step step]``) share
    one ``arccos``.
    """
    kind, (i, j), coef, table = form
    S11, S12, S22 = cov[..., i, i], cov[..., i, j], cov[..., j, j]
    if not all(is_array(s) for s in (S11, S12, S22)):
        return None
    numbers = _numeric_table(form)
    coef, tab = numbers if numbers is not None else _table(form, params)
    if tab is None:
        return None
    shape = np.broadcast_shapes(S11.shape, S12.shape, S22.shape)
    key = None
    keys = getattr(cov, "keys", None)
    if angles is not None and kind == ORTHANT and keys is not None:
        k11, k12, k22 = keys[i][i], keys[i][j], keys[j][j]
        if None not in (k11, k12, k22):
            key = (frozenset((k11, k22)), k12)
    return pair_kernel(kind, S11, S12, S22, tab, shape, coef, angles, key)


@lru_cache(maxsize=4096)
def _numeric_table(form):
    """:func:`_table` of a form whose coefficients are numbers (None otherwise)."""
    _, _, coef, table = form
    if any(sp.sympify(c).free_symbols for c in [coef] + [row[0] for row in table]):
        return None
    return _table(form, {})


def _table(form, params):
    """``(coef, rows)`` of a form with its coefficients evaluated: the rows ``(weight, a, b,
    t, p, q)`` of :func:`_orthant`; rows None when a coefficient depends on the inputs."""
    _, _, coef, table = form
    coef = peval(coef, params, NUMERIC)
    weights = [peval(row[0], params, NUMERIC) for row in table]
    if any(np.ndim(w) or isinstance(w, complex) for w in [coef] + weights):
        return coef, None
    tab = np.array([[w * row[3]] + list(row[1:3]) + list(row[4:])
                    for w, row in zip(weights, table)], dtype=float).reshape(-1, 6)
    return float(coef), tab


def gaussian_form2(S11, S12, S22, A, scale=1.0):
    """``scale · det(I − 2ΣA)^{−1/2}`` of two atoms with ``Σ = [[S11, S12], [S12, S22]]`` and
    a symmetric 2 × 2 ``A`` of numbers; NaN where it is infinite.  None when an entry of Σ is
    not an array (independent atoms: the caller's generic form)."""
    if not all(is_array(s) for s in (S11, S12, S22)):
        return None
    table = np.array([[A[0][0], A[0][1], A[1][1], 0.0, 0.0, 0.0]])
    shape = np.broadcast_shapes(S11.shape, S12.shape, S22.shape)
    return pair_kernel(GAUSS, S11, S12, S22, table, shape, scale)


def is_array(v) -> bool:
    """Whether ``v`` is an array of the batch (NumPy or a device's), not a number (a covariance
    entry of independent atoms is the number 0)."""
    return getattr(v, "ndim", 0) > 0


def pair_kernel(kind, S11, S12, S22, table, shape, scale=1.0, angles=None, key=None):
    """``scale`` times the fused kernel on broadcasting arrays, by :data:`ENGINE` (NumPy
    without numba, and for arrays of another module: CuPy takes the NumPy expressions);
    ``angles[key]`` caches θ of the orthant kind (:func:`evaluate_fused`).  The NumPy
    expressions keep the precision of the covariances (float32 in, float32 out); the numba
    kernel reads and writes arrays of that precision (a float32 pair batch is not copied to
    float64) and computes each entry in float64 registers, rounded once when stored."""
    host = all(isinstance(s, np.ndarray) for s in (S11, S12, S22))
    if ENGINE == "numba" and host and numba_kernel() is not None:
        dt = np.result_type(S11, S12, S22)
        dt = dt if dt in (np.float32, np.float64) else np.dtype(np.float64)
        four = lambda a: np.ascontiguousarray(a, dtype=dt).reshape((1,) * (4 - a.ndim) +
                                                                     a.shape)
        out = np.empty(shape, dtype=dt)
        w = np.ascontiguousarray(table[:, 0] if kind != GAUSS else table[0, :3])
        ex = np.ascontiguousarray(table[:, 1:], dtype=np.int64)
        numba_kernel()(kind, four(S11), four(S12), four(S22), w, ex,
                      out.reshape((1,) * (4 - out.ndim) + out.shape))
        if scale != 1.0:
            out *= scale
        return out
    if kind == GAUSS:
        out = _gauss(S11, S12, S22, table[0, :3], scale)
    elif kind == ORTHANT:
        out = _orthant(S11, S12, S22, table, scale, angles, key)
    else:
        out = _erf(kind, S11, S12, S22, scale)
    return out if np.shape(out) == shape else np.broadcast_to(out, shape)


def _gauss(S11, S12, S22, A, scale):
    """``scale · det(I − 2ΣA)^{−1/2}``, the determinant as ``αβ − 4A₀₁²S₁₁S₂₂ − 4A₀₁S₁₂ −
    4 det(A) S₁₂²`` with ``α = 1 − 2A₀₀S₁₁``, ``β = 1 − 2A₁₁S₂₂`` (the variances broadcast
    from the inputs' self blocks, so the pair batch sees four passes); NaN where the trace
    ``α + β`` or the determinant is not positive (an eigenvalue of ΣA ≥ 1/2)."""
    A00, A01, A11 = A.tolist()                         # Python numbers keep the precision
    alpha, beta = 1.0 - 2.0 * A00 * S11, 1.0 - 2.0 * A11 * S22
    base = alpha * beta
    if A01 != 0.0:
        base -= 4.0 * A01 * A01 * (S11 * S22)
    det = np.multiply(S12, -4.0 * (A00 * A11 - A01 * A01))
    if A01 != 0.0:
        det -= 4.0 * A01
    det *= S12
    det += base
    if bool(np.all(alpha > 0) and np.all(beta > 0) and np.all(det > 0)):
        np.sqrt(det, out=det)
        return np.divide(scale, det, out=det)
    ok = (alpha + beta > 0) & (det > 0)
    return np.where(ok, scale / np.sqrt(np.where(ok, det, 1.0)), np.nan)


def _erf(kind, S11, S12, S22, scale):
    """``E[erf erf] = (2/π) arcsin(2Σ₁₂ / √((1+2Σ₁₁)(1+2Σ₂₂)))`` and ``E[step erf] =
    (1/π) arcsin(√2 Σ₁₂ / √(Σ₁₁(1+2Σ₂₂)))`` (0 where Σ₁₁ = 0), the normalisers taken per
    side and multiplied together before they meet Σ₁₂ (for erf-erf ``2/√(1+2Σ₁₁)·1/√(1+2Σ₂₂)``
    rounds as its mirror image, so a pair's entry does not depend on which side of a tile
    its inputs are on)."""
    S11, S22 = np.maximum(S11, 0.0), np.maximum(S22, 0.0)
    if kind == ERF_ERF:
        left, c = 2.0 / np.sqrt(1.0 + 2.0 * S11), 2.0 / math.pi
    else:
        pos = S11 > 0
        left = np.where(pos, math.sqrt(2.0) / np.sqrt(np.where(pos, S11, 1.0)), 0.0)
        c = 1.0 / math.pi
    r = np.multiply(left, 1.0 / np.sqrt(1.0 + 2.0 * S22))
    if np.broadcast_shapes(r.shape, np.shape(S12)) == r.shape:
        r *= S12
    else:
        r = np.multiply(S12, r)
    np.clip(r, -1.0, 1.0, out=r)
    np.arcsin(r, out=r)
    r *= c * scale
    return r


def _orthant(S11, S12, S22, table, scale, angles, key):
    """``scale · Σ w s₁^a s₂^b θ^t cos^p θ sin^q θ`` over the rows ``(w, a, b, t, p, q)`` of
    ``table``, ``θ = arccos(Σ₁₂/√(Σ₁₁Σ₂₂))`` (0 where a variance is 0); ``θ`` is read from
    and stored in ``angles[key]`` when given."""
    S11, S22 = np.maximum(S11, 0.0), np.maximum(S22, 0.0)
    positive = bool(np.all(S11 > 0) and np.all(S22 > 0))
    arrays = {}

    def root():
        if "root" not in arrays:              # s₁s₂, one rounding as the generic form
            arrays["root"] = np.sqrt(S11 * S22)
        return arrays["root"]

    def rho():
        if "rho" not in arrays:
            r = root()
            r = np.divide(S12, r if positive else np.where(r > 0, r, 1.0))
            arrays["rho"] = np.clip(r, -1.0, 1.0, out=r)
        return arrays["rho"]

    def theta():
        if "theta" not in arrays:
            cached = None if angles is None or key is None else angles.get(key)
            arrays["theta"] = np.arccos(rho()) if cached is None else cached
            if angles is not None and key is not None:
                angles[key] = arrays["theta"]
        return arrays["theta"]

    def sin():
        if "sin" not in arrays:
            r = rho()
            s = 1.0 - r
            s *= 1.0 + r
            arrays["sin"] = np.sqrt(s, out=s)
        return arrays["sin"]

    factor = {0: theta, 1: rho, 2: sin}
    full = np.broadcast_shapes(S11.shape, S12.shape, S22.shape)
    groups: dict = {}
    for w, a, b, t, p, q in table.tolist():            # Python numbers keep the precision
        groups.setdefault((int(a), int(b)), []).append((w * scale, int(t), int(p), int(q)))
    total = None
    for (a, b), rows in groups.items():
        part, const = None, 0.0
        for w, *powers in rows:
            if not any(powers):
                const += w
                continue
            term = None
            for f, e in enumerate(powers):
                for _ in range(e):
                    term = np.multiply(factor[f](), w, out=np.empty_like(S12, shape=full)) \
                        if term is None else \
                        np.multiply(term, factor[f](), out=term)
            part = term if part is None else np.add(part, term, out=part)
        if part is None:
            part = np.full_like(S12, const, shape=full)
        elif const:
            part += const
        if a == b:
            for _ in range(a):
                part *= root()
        elif a or b:
            part *= np.sqrt(S11) ** a * np.sqrt(S22) ** b
        total = part if total is None else np.add(total, part, out=total)
    if total is None:
        total = np.zeros_like(S12, shape=full)
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
