r"""Tier 2: deterministic quadrature for factors of effective dimension ≤ 3.

A factor ``F`` over atoms ``x ~ N(0, Σ)`` is integrated in whitened coordinates ``z ~ N(0, I_r)``:
if ``F`` is a product of univariate pieces ``Π_j g_j(ℓ_j)`` of m distinct linear forms
(:func:`.decompose.as_pieces`), ``y = (ℓ_1..ℓ_m) = G z`` with ``G Gᵀ = Cov(y)`` (eigendecomposition,
so rank-deficient covariances — correlations ±1, zero variances — are exact); otherwise
``x = G z`` with ``G Gᵀ = Σ``.  The *effective dimension* r is the numerical rank (eigenvalues
above 1e-14 of the largest; a dropped direction of relative variance ε changes a step-function
expectation by O(√ε) ≲ 1e-7).  Every batch point is integrated at once (no Python loop over the
batch); the batch is processed in chunks that keep temporaries near 200 MB.  Each method
returns an error estimate, the difference between two rules of different order (3/4 or 2/3 of
the points), and the rule is refined (per batch point) until the estimate is below ``RTOL = 1e-9``
of the integrand's scale (``E|F|``, or ``‖f‖‖g‖`` for Mehler).  Since the estimate is the error of
the lower rule, the value returned (the higher rule) is typically 10–1000× more accurate.

**Smooth factors** (no relu/step/|.|/… of the atoms)
* r = 1 (or one piece): Gauss–Hermite on ``E[h(Z)]``, orders 48→96→192→384 (estimate against
  3/4 of the order).
* two pieces ``f(y1) g(y2)``: **Mehler's formula** ``E[f(y1)g(y2)] = Σ_k ρ^k α_k β_k``,
  ``α_k = E[f(s1 Z) h_k(Z)]``, ``β_k = E[g(s2 Z) h_k(Z)]`` (orthonormal Hermite ``h_k``), the
  coefficients computed by n-point Gauss–Hermite (all n of them, so that at ρ = ±1 the sum is
  exactly the 1-D Gauss–Hermite rule of ``f·g``).  Only O(n) evaluations of each function per
  batch point, and the coefficients are computed once per distinct (variance, parameters) —
  on an (N, N) kernel batch the variances depend on one index only.  This is what makes
  ``E[tanh(u)tanh(v)]`` on a 1000×1000 batch take a second or two at ~1e-10 accuracy.
* otherwise: tensor Gauss–Hermite in r ≤ 3 dimensions.

**Non-smooth factors** (kinks along hyperplanes ``a·x = b``, offsets b allowed).  Gauss–Hermite
converges only algebraically across a kink, so the integration range is split at the kinks:
* composite Gauss–Legendre on ``z ∈ [−10, 10]`` with fixed panel edges
  (0, ±1.25, ±2.5, ±4, ±6) plus every kink point, and, for a smooth transition of width w
  (the conditional expectations below, tanh/sigmoid/erf), points at ±(0.5, 1.5, 3, 5, 8)w;
* **conditioning** (r = m ≤ 3): one piece ``g*`` whose Gaussian smoothing has a closed form
  (relu/step/erf/polynomial/exp/…, any offset: ``E[relu(μ+sZ)] = μΦ(μ/s) + sφ(μ/s)``,
  ``E[step(μ+sZ)] = Φ(μ/s)``, ``E[erf(μ+sZ)] = erf(μ/√(1+2s²))``, …, from the exact tier) is
  integrated analytically along the direction orthogonal to the other pieces, leaving an
  (r−1)-dimensional integral whose only non-smoothness is a transition of known centre and
  width (a kink again when that width is 0);
* r − 1 = 1 (or r = 1): one composite rule; r − 1 = 2 (or r = 2 without conditioning): iterated
  composite rules, the outer one split at the projections of the kink lines and at their
  pairwise intersections, the inner one at the kink points along each outer node.
Kinky factors of dimension 3 that cannot be conditioned go to Monte Carlo
(:class:`TooManyDimensions`).  Accuracy ~1e-12 on relu·gelu, step·tanh, relu(u−0.3)·relu(v).

**Narrow transitions** (docs/accuracy.md).  Gauss–Hermite and Mehler converge geometrically only
while the integrand's complex singularities stay away from the real axis in standard deviations:
``tanh(h)`` at ``Var h = 100`` has poles at ±iπ/20.  Transitions are located symbolically
(tanh/sigmoid/erf/gelu of linear forms; complex roots ``c ± iw`` of the base of a negative or
fractional power — BatchNorm's ``(ℓ² + ε)^-½``, width √ε; real roots, singular points), and
batch points where one is narrower than ``NARROW`` standard deviations, or where the fast rules
do not converge, go to the composite rules with panels graded geometrically towards it
(``c ± w·2^k``), which converge geometrically whatever the width; in 2-D the coordinates are
first rotated so the narrowest transition depends on the outer one only.  Estimates that stay
above ``TARGET_RTOL`` after every refinement raise an :class:`AccuracyWarning`.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import sympy as sp
from scipy.special import roots_hermitenorm, roots_legendre

from ..errors import AccuracyWarning, NotPositiveSemidefinite
from ..functions import lambdify
from .closed_forms import ExactPlan, evaluate_exact, exact_plan, peval
from .decompose import T, affine_kinks, affine_soft, as_pieces, features, is_kinky
from .shim import NUMERIC

__all__ = ["QuadPlan", "quad_plan", "integrate", "effective_rank", "TooManyDimensions",
           "MAX_DIMENSION"]

MAX_DIMENSION = 3
L_Z = 10.0
FIXED_EDGES = np.array([-L_Z, -6.0, -4.0, -2.5, -1.25, 0.0, 1.25, 2.5, 4.0, 6.0, L_Z])
RTOL = 1e-9
#: Relative accuracy (of the integrand's scale E|F|) promised for smooth integrands; points whose
#: error estimate stays above it after every refinement raise an :class:`AccuracyWarning`.
TARGET_RTOL = 1e-8
#: Relative rounding error of a quadrature sum (a floor for every error estimate).
ROUNDOFF = 1e-15
#: Transitions narrower than this (in standard deviations of the whitened Gaussian) are out of
#: Gauss–Hermite's reach: such factors go to composite rules graded towards the transition.
NARROW = 0.4
#: Narrowest transition width resolved by grading (in standard deviations).
MIN_WIDTH = 1e-18
MEMORY_BUDGET = 200e6  # bytes of temporaries per chunk
RANK_RTOL = 1e-14

GH_LEVELS = {1: ((48, 36), (96, 72), (192, 144), (384, 288)),
             2: ((24, 18), (48, 36), (96, 72), (160, 120)),
             3: ((16, 12), (28, 20), (40, 30), (60, 45))}
MEHLER_LEVELS = ((96, 72), (192, 144), (384, 288))
GL_LEVELS = ((10, 7), (16, 11), (24, 16), (40, 28))
GL_LEVELS_2D = ((8, 6), (12, 8), (18, 12), (26, 18))


class TooManyDimensions(Exception):
    """The factor needs more dimensions than deterministic quadrature handles here."""


# =========================================================================== rules
@lru_cache(maxsize=None)
def gauss_hermite(n: int):
    """Nodes and weights of ``E[f(Z)] ≈ Σ w_i f(z_i)``, Z standard normal."""
    z, w = roots_hermitenorm(n)
    return z, w / math.sqrt(2 * math.pi)


@lru_cache(maxsize=None)
def hermite_basis(n: int):
    """``U[i, k] = √w_i h_k(z_i)`` (orthonormal Hermite ``h_k = He_k/√k!``): an orthogonal
    matrix, so ``α_k = Σ_i √w_i f(z_i) U[i, k]`` are the Hermite coefficients of f."""
    z, w = gauss_hermite(n)
    U = np.empty((n, n))
    U[:, 0] = np.sqrt(w)
    if n > 1:
        U[:, 1] = z * U[:, 0]
    for k in range(1, n - 1):
        U[:, k + 1] = (z * U[:, k] - math.sqrt(k) * U[:, k - 1]) / math.sqrt(k + 1)
    return U


@lru_cache(maxsize=None)
def gauss_legendre(q: int):
    return roots_legendre(q)


_INV_SQRT_2PI = 1.0 / math.sqrt(2 * math.pi)


def composite_rule(breaks, q):
    """Composite Gauss–Legendre rule for ``∫ f(z) φ(z) dz`` on [−10, 10] split at the fixed
    edges and at ``breaks`` (shape (..., nb); NaN entries ignored).  Returns nodes and weights
    (density included) of shape (..., n_nodes)."""
    used = np.isfinite(breaks).any(axis=tuple(range(breaks.ndim - 1)))
    if not used.all():  # breakpoints absent at every point (graded levels beyond the range)
        breaks = breaks[..., used]
    br = np.where(np.isfinite(breaks), np.clip(breaks, -L_Z, L_Z), -L_Z)
    lead = br.shape[:-1]
    edges = np.concatenate([np.broadcast_to(FIXED_EDGES, lead + FIXED_EDGES.shape), br], axis=-1)
    edges.sort(axis=-1)
    a, b = edges[..., :-1, None], edges[..., 1:, None]
    x, w = gauss_legendre(q)
    half = (b - a) / 2
    nodes = (a + b) / 2 + half * x
    weights = half * w * np.exp(-0.5 * nodes * nodes) * _INV_SQRT_2PI
    shape = lead + (-1,)
    return nodes.reshape(shape), weights.reshape(shape)


def _sdiv(a, b):
    """a/b, NaN where b = 0 (a kink parallel to the axis is not a breakpoint there); huge
    quotients are harmless, :func:`composite_rule` clips breakpoints into [−10, 10]."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.where(b != 0, a / np.where(b == 0, 1.0, b), np.nan)


def _chunks(n, per_point_bytes):
    size = max(1, int(MEMORY_BUDGET // max(per_point_bytes, 1)))
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


# =========================================================================== plans
@dataclass(frozen=True)
class PieceInfo:
    coeffs: tuple
    func: sp.Expr
    params: tuple
    fn: object
    hard: tuple
    soft: tuple
    cond: ExactPlan | None
    mean_symbol: sp.Symbol
    cond_atom: sp.Symbol


@dataclass(frozen=True)
class QuadPlan:
    expr: sp.Expr
    atoms: tuple
    params: tuple
    fn: object
    pieces: tuple | None
    kinky: bool
    kinks: tuple | None  # affine kink hyperplanes (a, b): a·x + b = 0
    soft: tuple  # smooth transitions across hyperplanes (a, b, width)


def _symbols(expr, atoms):
    return tuple(sorted(expr.free_symbols - set(atoms), key=sp.default_sort_key))


@lru_cache(maxsize=1024)
def quad_plan(expr: sp.Expr, atoms: tuple) -> QuadPlan:
    """Everything the quadrature needs to know about a factor, derived once."""
    params = _symbols(expr, atoms)
    fn = lambdify(tuple(atoms) + params, expr)
    kinky = is_kinky(expr, atoms)
    pieces = None
    raw = as_pieces(expr, atoms)
    if raw is not None:
        infos = []
        for pc in raw:
            feats = features(pc.func)
            if feats is None:
                infos = None
                break
            hard, soft = feats
            pp = _symbols(pc.func, (T,))
            mu, zc = sp.Dummy("mu", real=True), sp.Dummy("z", real=True)
            cond = exact_plan(pc.func.xreplace({T: mu + zc}), (zc,))
            if cond is not None and cond.has_delta:
                cond = None
            infos.append(PieceInfo(pc.coeffs, pc.func, pp, lambdify((T,) + pp, pc.func),
                                   hard, soft, cond, mu, zc))
        pieces = tuple(infos) if infos is not None else None
    kinks = affine_kinks(expr, atoms)
    soft = affine_soft(expr, atoms) if pieces is None else ()
    return QuadPlan(expr, tuple(atoms), params, fn, pieces, kinky, kinks, soft)


# =========================================================================== helpers
def _flat_params(params, names, batch, n):
    return {s: np.broadcast_to(np.asarray(params[s], dtype=float), batch).reshape(n)
            for s in names}


def _piece_call(piece, t, pflat, idx):
    shape = (len(idx),) + (1,) * (t.ndim - 1)
    args = [pflat[s][idx].reshape(shape) for s in piece.params]
    return np.broadcast_to(piece.fn(t, *args), np.broadcast_shapes(t.shape, shape))


def whiten(S):
    """``G`` with ``G Gᵀ = S`` for a batch (n, m, m) of PSD matrices, its max rank r and G's
    columns restricted to the r leading eigenvectors."""
    lam, V = np.linalg.eigh(S)
    top = lam[:, -1:]
    if np.any(lam < -1e-8 * np.maximum(np.abs(top), 1e-300) - 1e-300):
        worst = float(lam.min())
        raise NotPositiveSemidefinite(f"covariance is not positive semidefinite (eigenvalue {worst:.3g})")
    keep = lam > RANK_RTOL * np.maximum(top, 1e-300)
    r = int(keep.sum(axis=1).max()) if len(lam) else 0
    lam = np.where(keep, lam, 0.0)
    G = V[:, :, S.shape[1] - r:] * np.sqrt(lam[:, None, S.shape[1] - r:])
    return G, r


def _linear_forms(pieces, cov, pflat, n):
    """Coefficients A (n, k, m) of the pieces' linear forms and their covariance AᵀΣA."""
    k, m = cov.shape[-1], len(pieces)
    if all(sp.sympify(c).is_Number for pc in pieces for c in pc.coeffs):
        A0 = np.array([[float(c) for c in pc.coeffs] for pc in pieces]).T  # (k, m)
        S = (cov.reshape(n, k * k) @ np.kron(A0, A0)).reshape(n, m, m)
        return np.broadcast_to(A0, (n, k, m)), S
    A = np.zeros((n, k, m))
    for j, pc in enumerate(pieces):
        for i, c in enumerate(pc.coeffs):
            if c != 0:
                A[:, i, j] = np.broadcast_to(peval(c, pflat, NUMERIC), (n,))
    return A, np.einsum("nki,nkl,nlj->nij", A, cov, A)


def effective_rank(expr: sp.Expr, atoms: tuple, cov, params) -> int:
    """Largest numerical rank, over the batch, of what a factor depends on: its linear forms
    when it is a product of univariate functions of them, else all its atoms.  Cheap (nothing
    is compiled), so callers can choose a tier before integrating."""
    cov = np.asarray(cov, dtype=float)
    batch = cov.shape[:-2]
    n = int(np.prod(batch)) if batch else 1
    covf = cov.reshape(n, len(atoms), len(atoms))
    pieces = as_pieces(expr, tuple(atoms))
    if pieces is None:
        return whiten(covf)[1]
    pflat = _flat_params(params, _symbols(expr, atoms), batch, n)
    return whiten(_linear_forms(pieces, covf, pflat, n)[1])[1]


# =========================================================================== integrators
def _adaptive(n, levels, run, idx=None):
    """Run ``run(idx, level) -> (value, err, scale)`` on the points ``idx`` (default all), then
    again at the next level on those whose error estimate is above RTOL·scale.  Returns value,
    err and scale over all n points (points outside ``idx`` stay 0, inf, 0)."""
    value, err, scale = np.zeros(n), np.full(n, np.inf), np.zeros(n)
    idx = np.arange(n) if idx is None else idx
    for level in levels:
        if idx.size == 0:
            break
        v, e, s = run(idx, level)
        e = np.maximum(e, ROUNDOFF * s)  # no estimate is below the sums' rounding
        value[idx], err[idx], scale[idx] = v, e, s
        idx = idx[e > RTOL * s + 1e-300]
    return value, err, scale


def _gh_1d(n, evalf, idx=None):
    """``E[h(Z)]`` with ``evalf(idx, z) -> (len(idx), N)`` values at nodes ``z`` (1, N)."""

    def run(idx, level):
        out = []
        for order in level:
            z, w = gauss_hermite(order)
            vals, absv = np.empty(len(idx)), np.empty(len(idx))
            for sl in _chunks(len(idx), order * 8 * 6):
                f = np.broadcast_to(evalf(idx[sl], z[None, :]), (len(idx[sl]), order))
                vals[sl] = f @ w
                absv[sl] = np.abs(f) @ w
            out.append((vals, absv))
        (vh, ah), (vl, _) = out
        return vh, np.abs(vh - vl), ah

    return _adaptive(n, GH_LEVELS[1], run, idx)


def _gh_nd(n, r, evalf, idx=None):
    """Tensor Gauss–Hermite: ``evalf(idx, zs)`` with zs a list of r broadcastable node arrays."""

    def run(idx, level):
        out = []
        for order in level:
            z, w = gauss_hermite(order)
            zs = []
            for d in range(r):
                shape = [1] * (r + 1)
                shape[d + 1] = order
                zs.append(z.reshape(shape))
            W = w
            for _ in range(r - 1):
                W = np.multiply.outer(W, w)
            vals, absv = np.empty(len(idx)), np.empty(len(idx))
            for sl in _chunks(len(idx), order ** r * 8 * 6):
                f = evalf(idx[sl], *zs)
                f = np.broadcast_to(f, (len(idx[sl]),) + (order,) * r)
                vals[sl] = np.tensordot(f, W, axes=r)
                absv[sl] = np.tensordot(np.abs(f), W, axes=r)
            out.append((vals, absv))
        (vh, ah), (vl, _) = out
        return vh, np.abs(vh - vl), ah

    return _adaptive(n, GH_LEVELS[r], run, idx)


def _unique_rows(piece, s, pflat):
    """Distinct (s, parameter values) of a piece over the batch, and the inverse map."""
    cols = [s] + [pflat[p] for p in piece.params]
    if len(cols) == 1:
        uniq, inv = np.unique(cols[0], return_inverse=True)
        uniq = uniq[:, None]
    else:
        uniq, inv = np.unique(np.column_stack(cols), axis=0, return_inverse=True)
    return uniq, inv.reshape(-1)


def _unique_ints(x, size):
    """``np.unique(x, return_inverse=True)`` for integers in [0, size), without sorting."""
    mark = np.zeros(size, bool)
    mark[x] = True
    values = np.flatnonzero(mark)
    remap = np.cumsum(mark) - 1
    return values, remap[x]


def _hermite_coefficients(piece, rows, order):
    """Hermite coefficients ``α_k = E[g(s Z) h_k(Z)]`` (n-point Gauss–Hermite) of ``t ↦ g(s t)``
    for each row (s, params...)."""
    z, w = gauss_hermite(order)
    U = hermite_basis(order)
    sw = np.sqrt(w)
    coef = np.empty((len(rows), order))
    for sl in _chunks(len(rows), order * 8 * 4):
        t = rows[sl, :1] * z[None, :]
        args = [rows[sl, 1 + i:2 + i] for i in range(len(piece.params))]
        F = np.broadcast_to(piece.fn(t, *args), t.shape)
        coef[sl] = (F * sw) @ U
    return coef


def _mehler(n, f, g, s1, s2, rho, pflat):
    """``E[f(y1) g(y2)] = Σ_k ρ^k α_k β_k`` (Mehler), see the module docstring.

    Per level (n, n'), the coefficients of both rules are computed for the distinct rows only.
    The difference of the two series is first bounded, per batch point and in O(1), by
    Cauchy–Schwarz: ``‖δα‖‖β‖ + ‖α‖‖δβ‖ + ‖α_{≥n'}‖‖β_{≥n'}‖`` (|ρ| ≤ 1); points whose bound is
    below RTOL·‖α‖‖β‖ need one series.  For the others both series are summed and their actual
    difference decides; points that still fail go to the next level."""
    uf, inv_f = _unique_rows(f, s1, pflat)
    ug, inv_g = _unique_rows(g, s2, pflat)
    value = np.zeros(n)
    err = np.full(n, np.inf)
    scales = np.zeros(n)
    undecided = np.arange(n)
    for li, (nh, nl) in enumerate(MEHLER_LEVELS):
        last = li == len(MEHLER_LEVELS) - 1
        rf, inv_rf = _unique_ints(inv_f[undecided], len(uf))
        rg, inv_rg = _unique_ints(inv_g[undecided], len(ug))
        stats = []
        for piece, rows in ((f, uf[rf]), (g, ug[rg])):
            hi = _hermite_coefficients(piece, rows, nh)
            lo = _hermite_coefficients(piece, rows, nl)
            norm = np.sqrt(np.sum(hi * hi, axis=1))
            diff = np.sqrt(np.sum((hi[:, :nl] - lo) ** 2, axis=1))
            tail = np.sqrt(np.sum(hi[:, nl:] ** 2, axis=1))
            stats.append((hi, lo, norm, diff, tail))
        (A, Alo, nA, dA, tA), (B, Blo, nB, dB, tB) = stats
        ia, ib = inv_rf.reshape(-1), inv_rg.reshape(-1)
        est = dA[ia] * nB[ib] + nA[ia] * dB[ib] + tA[ia] * tB[ib]
        scale = nA[ia] * nB[ib]
        scales[undecided] = scale
        ok = est <= RTOL * scale + 1e-300
        pa, pb = nA[nA > 0], nB[nB > 0]
        tol = 1e-3 * RTOL * float(pa.min()) * float(pb.min()) if pa.size and pb.size else 0.0
        pts = undecided[ok]
        value[pts] = _series(A, B, ia[ok], ib[ok], rho[pts], tol)
        err[pts] = est[ok] + tol
        # the bound is pessimistic: where it fails, compare the two series themselves
        rest = undecided[~ok]
        hi_val = _series(A, B, ia[~ok], ib[~ok], rho[rest], tol)
        diff = np.abs(hi_val - _series(Alo, Blo, ia[~ok], ib[~ok], rho[rest], tol)) + tol
        good = (diff <= RTOL * scale[~ok] + 1e-300) | last
        value[rest[good]] = hi_val[good]
        err[rest[good]] = diff[good]
        undecided = rest[~good]
        if undecided.size == 0:
            break
    return value, err, scales


_RHO_BINS = (0.25, 0.5, 0.7, 0.85, 0.93, 0.97, 0.99, 0.997, 1.0)


def _series(A, B, ia, ib, rho, tol):
    """``Σ_k ρ^k A[ia, k] B[ib, k]`` by Horner's rule, chunked; the points are binned by |ρ| and
    each bin's sum truncated where ``Σ_{k≥K} |ρ|^k max|A_k| max|B_k|`` drops below ``tol``."""
    order = A.shape[1]
    AT, BT = np.ascontiguousarray(A.T), np.ascontiguousarray(B.T)
    mags = np.abs(AT).max(axis=1) * np.abs(BT).max(axis=1)  # (order,)
    out = np.empty(len(ia))
    arho = np.abs(rho)
    lo = -1.0
    for hi in _RHO_BINS:
        sel = np.flatnonzero((arho > lo) & (arho <= hi)) if hi < 1.0 else np.flatnonzero(arho > lo)
        lo = hi
        if sel.size == 0:
            continue
        rmax = float(arho[sel].max())
        tail = np.cumsum((mags * rmax ** np.arange(order))[::-1])[::-1]  # Σ_{k≥K}
        K = int(np.searchsorted(-tail, -tol, side="left")) if tail[-1] <= tol else order
        K = max(1, min(order, K))
        for sl in _chunks(len(sel), 8 * 8):
            pts = sel[sl]
            r = rho[pts]
            ja, jb = ia[pts], ib[pts]
            acc = AT[K - 1][ja] * BT[K - 1][jb]
            for k in range(K - 2, -1, -1):
                acc *= r
                acc += AT[k][ja] * BT[k][jb]
            out[pts] = acc
    return out


def _grades(planes):
    """For each plane, how many graded breakpoints each side of its transition (see
    :func:`_graded`) its narrowest instance needs (None for a kink)."""
    out = []
    for c, _, w in planes:
        if w is None:
            out.append(None)
            continue
        widths = _sdiv(w, np.linalg.norm(c, axis=-1))
        widths = widths[np.isfinite(widths) & (widths > 0)]
        low = max(float(widths.min()), MIN_WIDTH) if widths.size else 2 * L_Z
        out.append(max(1, int(np.ceil(np.log2(4 * L_Z / low)))))
    return out


def _graded(z0, ww, grades):
    """Breakpoints ``z0 ± ww·2^k`` (k = −1, 0, …) inside the integration range: panels that grow
    geometrically away from a transition of width ww, so that each panel sees the transition's
    complex singularities (tanh's poles at ±iπw/2, the branch points ``±i√ε`` of ``√(t² + ε)``)
    at a distance comparable to its length, and Gauss–Legendre converges geometrically there
    whatever the width (algebraic tails included)."""
    pts = [z0]
    resolution = 1e-13 * np.maximum(np.abs(z0), 1.0)  # finer panels would collapse onto z0
    for k in range(grades):
        ow = ww * 2.0 ** (k - 1)
        ow = np.where((ow < 2 * L_Z) & (ow > resolution), ow, np.nan)
        pts += [z0 - ow, z0 + ow]
    return pts


def _planes_1d(planes, idx, grades):
    """Breakpoints in z of hyperplanes ``c z = t`` (with soft widths) for points idx."""
    pts = []
    for (c, t, w), g in zip(planes, grades):
        cc = c[idx, 0]
        z0 = _sdiv(t[idx], cc)
        if w is None:
            pts.append(z0)
        else:
            pts += _graded(z0, _sdiv(w[idx], np.abs(cc)), g)
    if not pts:
        return np.empty((len(idx), 0))
    return np.stack(pts, axis=-1)


def _breaks_per_plane(grades):
    return sum(1 if g is None else 1 + 2 * g for g in grades)


def _weighted_only(f, w):
    """The integrand values ``f`` with those at nodes of weight 0 (the nodes of empty panels,
    which may sit on a kink or a removable singularity such as that of ``h/|h|``), and non-finite
    ones at nodes of negligible weight (rounded onto such a point), set to 0."""
    f = np.broadcast_to(f, w.shape)
    with np.errstate(invalid="ignore"):
        return np.where((w != 0) & (np.isfinite(f) | (w > 1e-30)), f, 0.0)


def _composite_1d(n, planes, evalf, idx=None):
    """``E[h(Z)]`` split at the breakpoints of ``planes``; ``evalf(idx, z (c, N))``."""
    grades = _grades(planes)

    def run(idx, level):
        out = []
        for q in level:
            vals, absv = np.empty(len(idx)), np.empty(len(idx))
            nb = _breaks_per_plane(grades) + len(FIXED_EDGES)
            for sl in _chunks(len(idx), nb * q * 8 * 8):
                z, w = composite_rule(_planes_1d(planes, idx[sl], grades), q)
                f = _weighted_only(evalf(idx[sl], z), w)
                vals[sl] = np.einsum("cn,cn->c", f, w)
                absv[sl] = np.einsum("cn,cn->c", np.abs(f), w)
            out.append((vals, absv))
        (vh, ah), (vl, _) = out
        return vh, np.abs(vh - vl), ah

    return _adaptive(n, GL_LEVELS, run, idx)


def _composite_2d(n, planes, evalf, idx=None):
    """Iterated composite rule in 2-D; ``evalf(idx, z1 (c, N1, 1), z2 (c, N1, N2))``."""
    grades = _grades(planes)

    def outer_breaks(idx):
        pts = []
        for (c, t, w), g in zip(planes, grades):
            z0 = _sdiv(t[idx], c[idx, 0])
            if w is None:
                pts.append(z0)
            else:
                pts += _graded(z0, _sdiv(w[idx], np.abs(c[idx, 0])), g)
        for a in range(len(planes)):
            for b in range(a + 1, len(planes)):
                ca, ta, _ = planes[a]
                cb, tb, _ = planes[b]
                det = ca[idx, 0] * cb[idx, 1] - ca[idx, 1] * cb[idx, 0]
                pts.append(_sdiv(ta[idx] * cb[idx, 1] - tb[idx] * ca[idx, 1], det))
        return np.stack(pts, axis=-1) if pts else np.empty((len(idx), 0))

    def inner_breaks(idx, z1):
        pts = []
        for (c, t, w), g in zip(planes, grades):
            c1, c2 = c[idx, 0][:, None], c[idx, 1][:, None]
            z0 = _sdiv(t[idx][:, None] - c1 * z1, c2)
            if w is None:
                pts.append(z0)
            else:
                pts += _graded(z0, _sdiv(w[idx][:, None], np.abs(c2)), g)
        if not pts:
            return np.empty(z1.shape + (0,))
        return np.stack(pts, axis=-1)

    def run(idx, level):
        out = []
        for q in level:
            nb2 = len(FIXED_EDGES) + _breaks_per_plane(grades)
            nb1 = nb2 + len(planes) ** 2
            vals, absv = np.empty(len(idx)), np.empty(len(idx))
            for sl in _chunks(len(idx), nb1 * nb2 * q * q * 8 * 8):
                ii = idx[sl]
                z1, w1 = composite_rule(outer_breaks(ii), q)
                z2, w2 = composite_rule(inner_breaks(ii, z1), q)
                f = _weighted_only(evalf(ii, z1[:, :, None], z2), w1[:, :, None] * w2)
                vals[sl] = np.einsum("ca,cab->c", w1, f * w2)
                absv[sl] = np.einsum("ca,cab->c", w1, np.abs(f) * w2)
            out.append((vals, absv))
        (vh, ah), (vl, _) = out
        return vh, np.abs(vh - vl), ah

    return _adaptive(n, GL_LEVELS_2D, run, idx)


# =========================================================================== dispatch
def _piece_planes(pc, c, pflat, n):
    """Hyperplanes ``c·z = t*`` of a piece's kinks (hard) and transitions (soft)."""
    planes = []
    for h in pc.hard:
        planes.append((c, np.broadcast_to(peval(h, pflat, NUMERIC), (n,)).astype(float), None))
    for centre, width in pc.soft:
        planes.append((c, np.broadcast_to(peval(centre, pflat, NUMERIC), (n,)).astype(float),
                       np.broadcast_to(peval(width, pflat, NUMERIC), (n,)).astype(float)))
    return planes


def _cond_eval(pc, sigma, pflat):
    """``H(t) = E[g*(t + σZ)]`` from the exact tier, as an evaluator ``(idx, t) -> array``."""

    def evalf(idx, t):
        shape = (len(idx),) + (1,) * (t.ndim - 1)
        s2 = (sigma[idx] ** 2).reshape(shape)
        cov = np.broadcast_to(s2, t.shape)[..., None, None]
        params = {s: pflat[s][idx].reshape(shape) for s in pc.params}
        params[pc.mean_symbol] = t
        return np.broadcast_to(evaluate_exact(pc.cond, cov, params, NUMERIC), t.shape)

    return evalf


def _linear(c, idx, zs):
    """``c[idx]·z`` on the node arrays ``zs`` (one per coordinate, broadcastable)."""
    t = None
    for d, z in enumerate(zs):
        cd = c[idx, d]
        if not np.any(cd != 0):
            continue
        term = cd.reshape((-1,) + (1,) * (z.ndim - 1)) * z
        t = term if t is None else t + term
    if t is None:
        t = np.zeros((len(idx),) + (1,) * (zs[0].ndim - 1))
    return t


def _product_evaluator(pieces, cs, pflat, extra=None):
    """``evalf(idx, *zs)``: Π_j g_j(c_j·z) (+ an extra evaluator on its own linear form)."""

    def evalf(idx, *zs):
        out = None
        items = [(c, (lambda ii, t, pc=pc: _piece_call(pc, t, pflat, ii))) for pc, c in
                 zip(pieces, cs)]
        if extra is not None:
            items.append(extra)
        for c, call in items:
            v = call(idx, _linear(c, idx, zs))
            out = v if out is None else out * v
        return out

    return evalf


def integrate(plan: QuadPlan, cov, params):
    """``E[factor]`` and its error estimate over the batch of ``cov`` (..., k, k).

    Parameters
    ----------
    plan : :class:`QuadPlan` of the factor (:func:`quad_plan`).
    cov : array (..., k, k), the atoms' covariance at every batch point.
    params : {Symbol: array broadcastable to the batch} values of the plan's parameters.

    Returns
    -------
    ``(value, error)``, arrays of the batch shape; ``error`` is the absolute difference of the
    last two rules (the error estimate of the lower one).

    Raises
    ------
    TooManyDimensions
        when the factor needs more dimensions than the rules here handle.

    Warns
    -----
    AccuracyWarning
        at batch points whose error estimate stays above ``TARGET_RTOL`` times the integrand's
        scale ``E|F|`` after every refinement (the warning gives the worst relative error).
    """
    cov = np.asarray(cov, dtype=float)
    batch = np.broadcast_shapes(cov.shape[:-2], *[np.shape(params[s]) for s in plan.params])
    cov = np.broadcast_to(cov, batch + cov.shape[-2:])
    n = int(np.prod(batch)) if batch else 1
    k = len(plan.atoms)
    covf = cov.reshape(n, k, k)
    pflat = _flat_params(params, plan.params, batch, n)
    if plan.pieces is not None:
        value, err, scale = _integrate_pieces(plan, covf, pflat, n)
    else:
        value, err, scale = _integrate_general(plan, covf, pflat, n)
    _warn_if_inaccurate(plan.expr, err, scale)
    return value.reshape(batch), err.reshape(batch)


def _warn_if_inaccurate(expr, err, scale):
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(scale > 0, err / scale, np.where(err > 0, np.inf, 0.0))
    bad = ~(rel <= TARGET_RTOL)
    if np.any(bad):
        warnings.warn(
            f"E[{expr}]: quadrature did not reach the target relative accuracy {TARGET_RTOL:g} "
            f"at {int(bad.sum())} of {bad.size} batch point(s): worst error estimate "
            f"{float(np.max(err[bad])):.3g} ({float(np.max(rel[bad])):.3g} of E|F|); the error "
            "estimates returned with the value say by how much", AccuracyWarning, stacklevel=3)


def _refine(n, narrow, fast, robust):
    """``fast(idx)`` (Gauss–Hermite, Mehler) on the points without narrow features, then
    ``robust(idx)`` (graded composite rules, or None) on the narrow points and on those where the
    fast rule did not converge; each returns (value, err, scale) over all n points."""
    value, err, scale = np.zeros(n), np.full(n, np.inf), np.zeros(n)
    idx = np.flatnonzero(~narrow)
    if idx.size:
        v, e, sc = fast(idx)
        value[idx], err[idx], scale[idx] = v[idx], e[idx], sc[idx]
    redo = np.flatnonzero(narrow | (err > RTOL * scale + 1e-300))
    if redo.size and robust is not None:
        v, e, sc = robust(redo)
        better = redo[~(e[redo] > err[redo])]
        value[better], err[better], scale[better] = v[better], e[better], sc[better]
    return value, err, scale


def _narrow_pieces(pieces, S, pflat, n):
    """Points where a piece has a transition narrower than NARROW standard deviations of its
    linear form, or a singular point (a real root of the base of a negative power)."""
    narrow = np.zeros(n, bool)
    for j, pc in enumerate(pieces):
        sd = np.sqrt(np.maximum(S[:, j, j], 0.0))
        if pc.hard:
            narrow |= sd > 0
        for _, width in pc.soft:
            w = np.broadcast_to(peval(width, pflat, NUMERIC), (n,)).astype(float)
            narrow |= w < NARROW * sd
    return narrow


def _mehler_on(pieces, S, pflat, n):
    """Mehler's series (:func:`_mehler`) on a subset of the points, as a ``fast`` rule."""

    def fast(idx):
        s1 = np.sqrt(np.maximum(S[idx, 0, 0], 0.0))
        s2 = np.sqrt(np.maximum(S[idx, 1, 1], 0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            rho = np.where((s1 > 0) & (s2 > 0), S[idx, 0, 1] / (s1 * s2), 0.0)
        sub = {p: v[idx] for p, v in pflat.items()}
        out = [np.zeros(n), np.full(n, np.inf), np.zeros(n)]
        for o, x in zip(out, _mehler(len(idx), pieces[0], pieces[1], s1, s2,
                                     np.clip(rho, -1.0, 1.0), sub)):
            o[idx] = x
        return tuple(out)

    return fast


def _align(G, planes):
    """``G R`` with R a rotation of the 2-D whitened coordinates (per point) that makes the
    narrowest transition of ``planes`` depend on the outer coordinate alone, so that the inner
    rules need no grading towards it; G unchanged where no transition is narrow."""
    soft = [(c, w) for c, _, w in planes if w is not None]
    if G.shape[-1] != 2 or not soft:
        return G
    norms = np.stack([np.linalg.norm(c, axis=-1) for c, _ in soft], axis=-1)
    widths = np.stack([_sdiv(w, nc) for (_, w), nc in zip(soft, norms.T)], axis=-1)
    widths = np.where(np.isfinite(widths), widths, np.inf)
    pick = np.argmin(widths, axis=-1)
    rows = np.arange(len(G))
    c = np.stack([c for c, _ in soft], axis=1)[rows, pick]
    norm = norms[rows, pick]
    narrow = widths[rows, pick] < NARROW
    u = np.where(narrow[:, None] & (norm[:, None] > 0), c / np.where(norm > 0, norm, 1.0)[:, None],
                 np.array([1.0, 0.0]))
    R = np.stack([u, np.stack([-u[:, 1], u[:, 0]], axis=-1)], axis=-1)  # columns u, u⊥
    return np.einsum("nkr,nrs->nks", G, R)


def _composite(r, n, planes, evalf):
    """The graded composite rule of dimension r ≤ 2 as a ``robust`` rule (None above 2)."""
    if r == 1:
        return lambda idx: _composite_1d(n, planes, lambda ii, z: evalf(ii, z), idx)
    if r == 2:
        return lambda idx: _composite_2d(n, planes, evalf, idx)
    return None


def _integrate_pieces(plan, covf, pflat, n):
    pieces = plan.pieces
    m = len(pieces)
    _, S = _linear_forms(pieces, covf, pflat, n)
    smooth = not plan.kinky
    narrow = _narrow_pieces(pieces, S, pflat, n) if smooth else None
    if smooth and m == 2 and not narrow.any():
        fast = _mehler_on(pieces, S, pflat, n)
        value, err, scale = fast(np.arange(n))
        if not np.any(err > RTOL * scale + 1e-300):
            return value, err, scale
    if m == 1:
        G, r = np.sqrt(np.maximum(S, 0.0)), 1
    else:
        G, r = whiten(S)
    r_eff = max(r, 1)
    if r == 0:
        G = np.zeros((n, m, 1))
    cs = [G[:, j, :] for j in range(m)]
    planes = [p for pc, c in zip(pieces, cs) for p in _piece_planes(pc, c, pflat, n)]
    if r_eff == 2 and (smooth or not any(pc.cond is not None for pc in pieces)):
        G = _align(G, planes)
        cs = [G[:, j, :] for j in range(m)]
        planes = [p for pc, c in zip(pieces, cs) for p in _piece_planes(pc, c, pflat, n)]
    evalf = _product_evaluator(pieces, cs, pflat)
    if smooth:
        if m == 2:
            fast = _mehler_on(pieces, S, pflat, n)
        elif r_eff == 1:
            fast = lambda idx: _gh_1d(n, evalf, idx)  # noqa: E731
        elif r_eff > MAX_DIMENSION:
            raise TooManyDimensions(r_eff)
        else:
            fast = lambda idx: _gh_nd(n, r_eff, evalf, idx)  # noqa: E731
        return _refine(n, narrow, fast, _composite(r_eff, n, planes, evalf))
    if r_eff == 1:
        return _composite_1d(n, planes, evalf)
    if m == r_eff and r_eff <= MAX_DIMENSION:
        cands = [j for j, pc in enumerate(pieces) if pc.cond is not None]
        if cands:
            star = max(cands, key=lambda j: (len(pieces[j].hard), j))
            return _conditioned(pieces, cs, star, pflat, n, r_eff)
    if r_eff == 2:
        return _composite_2d(n, planes, evalf)
    raise TooManyDimensions(r_eff)


def _conditioned(pieces, cs, star, pflat, n, r):
    """Integrate piece ``star`` analytically along the direction orthogonal to the others."""
    others = [j for j in range(len(pieces)) if j != star]
    M = np.stack([cs[j] for j in others] + [cs[star]], axis=-1)  # (n, r, r) columns
    Q, _ = np.linalg.qr(M)
    rot = [np.einsum("nab,na->nb", Q, c) for c in cs]
    d = r - 1
    sigma = np.abs(rot[star][:, d])
    c_star = np.ascontiguousarray(rot[star][:, :d])
    pc = pieces[star]
    planes = []
    for j in others:
        planes += _piece_planes(pieces[j], np.ascontiguousarray(rot[j][:, :d]), pflat, n)
    for h in pc.hard:
        planes.append((c_star, np.broadcast_to(peval(h, pflat, NUMERIC), (n,)).astype(float),
                       sigma))
    for centre, width in pc.soft:
        wv = np.broadcast_to(peval(width, pflat, NUMERIC), (n,)).astype(float)
        planes.append((c_star, np.broadcast_to(peval(centre, pflat, NUMERIC), (n,)).astype(float),
                       np.sqrt(wv ** 2 + sigma ** 2)))
    evalf = _product_evaluator([pieces[j] for j in others],
                               [np.ascontiguousarray(rot[j][:, :d]) for j in others], pflat,
                               extra=(c_star, _cond_eval(pc, sigma, pflat)))
    if d == 1:
        return _composite_1d(n, planes, evalf)
    return _composite_2d(n, planes, evalf)


def _general_evaluator(plan, G, pflat):
    def evalf(idx, *zs):
        k = len(plan.atoms)
        xs = [_linear(G[:, i, :], idx, zs) for i in range(k)]
        shape = (len(idx),) + (1,) * (zs[0].ndim - 1)
        args = [pflat[s][idx].reshape(shape) for s in plan.params]
        out = plan.fn(*xs, *args)
        full = np.broadcast_shapes(*[np.shape(x) for x in xs], shape)
        return np.broadcast_to(out, full)

    return evalf


def _general_planes(plan, G, pflat, n):
    """The kinks (hard) and transitions (soft) of a general factor as planes ``c·z = t`` in
    whitened coordinates."""
    def plane(a, b):
        av = np.zeros((n, len(plan.atoms)))
        for i, c in enumerate(a):
            if c != 0:
                av[:, i] = np.broadcast_to(peval(c, pflat, NUMERIC), (n,))
        return np.einsum("nk,nkr->nr", av, G), \
            -np.broadcast_to(peval(b, pflat, NUMERIC), (n,)).astype(float)

    hard = [plane(a, b) + (None,) for a, b in plan.kinks or ()]
    soft = [plane(a, b) + (np.broadcast_to(peval(w, pflat, NUMERIC), (n,)).astype(float),)
            for a, b, w in plan.soft]
    return hard, soft


def _integrate_general(plan, covf, pflat, n):
    G, r = whiten(covf)
    r_eff = max(r, 1)
    if r == 0:
        G = np.zeros((n, len(plan.atoms), 1))
    if r_eff > MAX_DIMENSION:
        raise TooManyDimensions(r_eff)
    hard, soft = _general_planes(plan, G, pflat, n)
    if r_eff == 2 and soft:
        G = _align(G, soft)
        hard, soft = _general_planes(plan, G, pflat, n)
    evalf = _general_evaluator(plan, G, pflat)
    if plan.kinky and plan.kinks is not None and r_eff <= 2:
        return _composite(r_eff, n, hard + soft, evalf)(np.arange(n))
    if plan.kinky and r_eff == MAX_DIMENSION:
        raise TooManyDimensions(r_eff)
    narrow = np.zeros(n, bool)
    for c, _, w in soft:
        narrow |= w < NARROW * np.linalg.norm(c, axis=-1)
    if hard:
        narrow |= True
    if r_eff == 1:
        fast = lambda idx: _gh_1d(n, lambda ii, z: evalf(ii, z), idx)  # noqa: E731
    else:
        fast = lambda idx: _gh_nd(n, r_eff, evalf, idx)  # noqa: E731
    robust = _composite(r_eff, n, hard + soft, evalf) if plan.kinks is not None else None
    return _refine(n, narrow, fast, robust)
