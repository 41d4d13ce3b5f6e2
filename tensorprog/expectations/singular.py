"""Integrability of a function of Gaussian atoms at its singular hyperplanes.

The Master Theorem (TP IIb Thm. B.4) needs every ψ of a NONLIN⁺ to have finite moments under
the Gaussian of its arguments (pseudo-Lipschitz ψ, Def. B.7); quadrature of a ψ whose square
is not integrable returns a finite number that means nothing (``E[(1/h)²] = ∞``, yet any rule
that avoids ``h = 0`` sums to something).  Such ψ are found here before anything is
integrated.

A *singular hyperplane* is a real zero ``ℓ(x) = t₀`` of the base of a negative power (a
denominator), found wherever the power sits in ψ — ``exp(1/h)`` and ``sin(1/h)`` have the one of
``1/h``.  The base may be

* a polynomial of degree ≤ 2 in one linear form of the atoms (:func:`.decompose.algebraic_planes`;
  ``1/h``, ``h**-2``, ``(h² − 1)**-½``, ``1/(h₁ − h₂)``);
* a product of univariate functions of linear forms (:func:`.decompose.as_pieces`): each
  factor's real zeros, the roots of a polynomial or those of ``g(t)`` found numerically on
  ``|t| ≤`` :data:`WINDOW` (``1/(h₁h₂)``, ``1/tanh(h)``, ``(eʰ − 1)**-2``, ``1/(h³ − h)``);

and ``|p|`` counts as ``p``; ``tan``, ``cot``, ``sec`` and ``csc`` count as quotients of ``sin``
and ``cos``.  Near a hyperplane ``|F| ~ |ℓ − t₀|^κ``, and ``E|F|^p`` is finite iff ``pκ > −1``
(the Gaussian density is positive there).  The exponent κ is measured on the expression as a
whole — numerators that vanish on the hyperplane count, so ``h/|h|`` (κ = 0) is accepted while
``1/h`` (κ = −1) is not — from the envelope ``max |F|`` over a few points ``x* + δ'·d``,
δ' ∈ [δ, 2δ], for geometrically decreasing δ, where ``x*`` is a draw of the Gaussian at hand
conditioned on the hyperplane and ``d`` moves along ℓ only (the envelope of the bounded
``sin(1/h)`` stays flat however fast it oscillates); growth past the floating-point range
(``exp(1/h)``) counts as κ = −∞.  A hyperplane on which the Gaussian puts all its mass (ℓ − t₀
of variance 0 and mean 0) is singular whatever κ.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import sympy as sp
from scipy.optimize import minimize_scalar

from ..functions import lambdify
from ..linalg import symmetric_eigh
from .dag import subexpressions
from .decompose import T, algebraic_planes, as_pieces, is_algebraic_power

__all__ = ["singular_planes", "worst_singularity"]

#: Distances to the hyperplane probed, in standard deviations of its linear form.
STEPS = 10.0 ** -np.arange(3, 9)
#: Random points of the hyperplane probed per member.
DRAWS = 4
SEED = 20261201
#: Values below this fraction of the function's typical size count as rounding noise.
NOISE = 1e-6


#: Half-width of the interval searched for the zeros of a non-polynomial factor ``g(t)``.
WINDOW = 60.0
#: Zeros kept per factor (those nearest 0: a periodic factor has one per period).
ROOTS = 8
#: Points per distance δ of the envelope ``max |F|`` (module docstring).
ENVELOPE = 8
#: Denominators written as functions: ``f(u) = num(u)/den(u)``.
_QUOTIENTS = {sp.tan: sp.cos, sp.cot: sp.sin, sp.sec: sp.cos, sp.csc: sp.sin}


@lru_cache(maxsize=1024)
def singular_planes(expr: sp.Expr, atoms: tuple) -> tuple:
    """The hyperplanes ``(a, b)`` (``a·x + b = 0``) where a negative power in ``expr`` is singular
    (see the module docstring); empty for almost every ψ, and cheap to decide.

    Example
    -------
    >>> h1, h2 = sp.symbols("h1 h2", real=True)
    >>> [b for _, b in singular_planes(1 / sp.tanh(h1 - h2), (h1, h2))]
    [0]
    """
    aset = frozenset(atoms)
    out = []
    for node in subexpressions(expr):
        if is_algebraic_power(node) and node.exp.is_negative:
            base = node.base
        elif type(node) in _QUOTIENTS:
            base = _QUOTIENTS[type(node)](node.args[0])
        else:
            continue
        if not base.free_symbols & aset:
            continue
        out += _zero_planes(base.args[0] if isinstance(base, sp.Abs) else base, atoms)
    return tuple(dict.fromkeys(out))


def _zero_planes(base: sp.Expr, atoms: tuple) -> list:
    """The hyperplanes on which ``base`` vanishes (module docstring), as far as they are found."""
    planes = algebraic_planes(base, atoms)
    if planes is not None:
        return list(planes[0])
    pieces = as_pieces(base, atoms)
    out = []
    for piece in pieces or ():
        if not all(c.is_Number for c in piece.coeffs):
            continue
        for t0 in _real_zeros(piece.func):
            out.append((piece.coeffs, sp.Float(-t0)))
    return out


def _real_zeros(g: sp.Expr) -> list:
    """Real zeros of ``g(T)`` (numbers only): a polynomial's real roots, else the sign changes
    and touching zeros of ``g`` on ``|t| ≤ WINDOW``, nearest 0 first."""
    if g.free_symbols - {T}:
        return []
    try:
        poly = sp.Poly(g, T)
        if poly.degree() < 1 or not all(c.is_Number for c in poly.all_coeffs()):
            return []
        roots = np.roots([float(c) for c in poly.all_coeffs()])
        found = [float(r.real) for r in roots if abs(r.imag) <= 1e-9 * max(1.0, abs(r))]
    except (sp.PolynomialError, sp.GeneratorsNeeded):
        fn = lambdify((T,), g)
        t = np.linspace(-WINDOW, WINDOW, 24001)
        with np.errstate(all="ignore"):
            v = np.broadcast_to(np.real_if_close(np.asarray(fn(t), dtype=complex)), t.shape)
        if np.iscomplexobj(v):
            return []
        v = np.asarray(v, dtype=float)
        ok = np.isfinite(v)
        a = np.abs(v)
        cross = np.flatnonzero(ok[:-1] & ok[1:] & (np.sign(v[:-1]) * np.sign(v[1:]) < 0))
        found = [float(t[i] - v[i] * (t[i + 1] - t[i]) / (v[i + 1] - v[i])) for i in cross]
        found += [float(t[i]) for i in np.flatnonzero(ok & (a == 0))]
        scale = float(np.median(a[ok])) if ok.any() else 0.0
        dips = np.flatnonzero(ok[1:-1] & ok[:-2] & ok[2:] & (a[1:-1] <= a[:-2])
                              & (a[1:-1] <= a[2:]) & (a[1:-1] < 1e-2 * scale)) + 1
        for i in dips[np.argsort(np.abs(t[dips]))][:ROOTS]:  # touching zeros: 1 + cos t
            low = minimize_scalar(lambda x: abs(float(np.real(fn(x)))), method="bounded",
                                  bounds=(t[i - 1], t[i + 1]), options={"xatol": 1e-13})
            if low.fun <= 1e-10 * scale:
                found.append(float(low.x))
    return sorted(dict.fromkeys(round(r, 12) for r in found), key=abs)[:ROOTS]


def worst_singularity(expr: sp.Expr, atoms: tuple, cov: np.ndarray, params: dict):
    """``(κ, plane)``: the smallest local exponent κ of ``|expr| ~ |ℓ − t₀|^κ`` over its singular
    hyperplanes under the Gaussians ``cov`` (m, k, k) (``-inf`` for a hyperplane that carries all
    the mass), or None when ``expr`` has none.  ``params`` maps the other symbols to (m,) arrays.

    Example
    -------
    >>> h = sp.Symbol("h", real=True)
    >>> worst_singularity(1 / h, (h,), np.ones((1, 1, 1)), {})[0]    # doctest: +ELLIPSIS
    -1.0...
    """
    planes = singular_planes(expr, tuple(atoms))
    if not planes:
        return None
    names = sorted(params, key=str)
    fn = lambdify(tuple(atoms) + tuple(names), expr)
    m, k = cov.shape[0], cov.shape[-1]
    lam, V = symmetric_eigh(cov)
    G = V * np.sqrt(np.maximum(lam, 0.0))[:, None, :]
    rng = np.random.default_rng(SEED)
    x0 = np.einsum("mkr,mdr->mdk", G, rng.standard_normal((m, DRAWS, k)))  # (m, D, k)
    pvals = [np.asarray(params[s], dtype=float).reshape(m, 1, 1) for s in names]
    with np.errstate(all="ignore"):
        generic = np.abs(np.broadcast_to(fn(*np.moveaxis(x0, -1, 0), *pvals), x0.shape[:-1]))
    generic = float(np.median(generic[np.isfinite(generic)])) if np.isfinite(generic).any() \
        else 1.0
    worst = None
    for a, b in planes:
        av = np.array([float(c) for c in a])
        var = np.einsum("k,mkl,l->m", av, cov, av)  # Var ℓ per member
        off = x0 @ av + float(b)  # (m, D): ℓ − t₀ at the draws
        scale = np.sqrt(np.maximum(var, 0.0))
        if np.any(scale <= 1e-12 * np.sqrt(np.abs(cov).max() + 1e-300)):
            if np.any(np.abs(off[scale <= 1e-12 * np.sqrt(np.abs(cov).max() + 1e-300)]) < 1e-12):
                return -np.inf, (a, b)
            continue
        d = np.einsum("mkl,l->mk", cov, av) / var[:, None]  # moves ℓ by 1, the rest by regression
        on = x0 - off[..., None] * d[:, None, :]  # (m, D, k) on the hyperplane
        logs = []
        spread = 1.0 + np.arange(ENVELOPE) / ENVELOPE     # δ' ∈ [δ, 2δ): the envelope's points
        for sgn in (1.0, -1.0):
            dist = STEPS[:, None] * spread[None, :]     # (S, E)
            pts = on[None, None] + sgn * (dist[:, :, None, None, None]
                                          * scale[None, None, :, None, None]) \
                * d[None, None, :, None, :]  # (S, E, m, D, k)
            with np.errstate(all="ignore"):
                vals = np.abs(np.broadcast_to(fn(*np.moveaxis(pts, -1, 0), *pvals),
                                              pts.shape[:-1]))
                vals = np.where(np.isnan(vals), 0.0, vals).max(axis=1)  # (S, m, D)
                if np.any(np.isinf(vals[-1])):  # past the floating-point range: exp(1/h)
                    return -np.inf, (a, b)
                logs.append(np.log(vals))
        logs = np.stack(logs)  # (2, S, m, D)
        with np.errstate(invalid="ignore"):
            slope = (logs[:, -1] - logs[:, -3]) / np.log(STEPS[-1] / STEPS[-3])
        # growth that stays far below the function's size elsewhere is rounding noise of terms
        # that cancel (1/|h| − h·sign(h)/h²), not a singularity
        slope = slope[np.isfinite(slope) & (logs[:, -1] > np.log(NOISE * generic + 1e-300))]
        if slope.size:
            kappa = float(slope.min())
            if worst is None or kappa < worst[0] - 0.05:  # ties: the plane found first
                worst = (kappa, (a, b))
    return worst
