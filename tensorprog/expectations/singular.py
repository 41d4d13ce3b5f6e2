"""Integrability of a function of Gaussian atoms at its singular hyperplanes.

The Master Theorem (TP IIb Thm. B.4) needs every ψ of a NONLIN⁺ to have finite moments under
the Gaussian of its arguments (pseudo-Lipschitz ψ, Def. B.7); quadrature of a ψ whose square
is not integrable returns a finite number that means nothing (``E[(1/h)²] = ∞``, yet any rule
that avoids ``h = 0`` sums to something).  Such ψ are found here before anything is
integrated.

A *singular hyperplane* is a real root ``ℓ(x) = t₀`` of the base of a negative power whose base
is a polynomial of degree ≤ 2 in one linear form of the atoms
(:func:`.decompose.algebraic_planes`; ``1/h``, ``h**-2``, ``(h² − 1)**-½``; a base ``|p|`` counts
as ``p``).  Near it ``|F| ~ |ℓ − t₀|^κ``,
and ``E|F|^p`` is finite iff ``pκ > −1`` (the Gaussian density is positive there).  The exponent
κ is measured on the expression as a whole — numerators that vanish on the hyperplane count, so
``h/|h|`` (κ = 0) is accepted while ``1/h`` (κ = −1) is not — by evaluating ``F`` at points
``x* + δ·d`` for geometrically decreasing δ, where ``x*`` is a draw of the Gaussian at hand
conditioned on the hyperplane and ``d`` moves along ℓ only.  A hyperplane on which the Gaussian
puts all its mass (ℓ − t₀ of variance 0 and mean 0) is singular whatever κ.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import sympy as sp

from ..functions import lambdify
from ..linalg import symmetric_eigh
from .dag import subexpressions
from .decompose import algebraic_planes, is_algebraic_power

__all__ = ["singular_planes", "worst_singularity"]

#: Distances to the hyperplane probed, in standard deviations of its linear form.
STEPS = 10.0 ** -np.arange(3, 9)
#: Random points of the hyperplane probed per member.
DRAWS = 4
SEED = 20261201
#: Values below this fraction of the function's typical size count as rounding noise.
NOISE = 1e-6


@lru_cache(maxsize=1024)
def singular_planes(expr: sp.Expr, atoms: tuple) -> tuple:
    """The hyperplanes ``(a, b)`` (``a·x + b = 0``) where a negative power in ``expr`` is singular
    (see the module docstring); empty for almost every ψ, and cheap to decide."""
    aset = frozenset(atoms)
    out = []
    for node in subexpressions(expr):
        if not (is_algebraic_power(node) and node.exp.is_negative
                and node.base.free_symbols & aset):
            continue
        base = node.base.args[0] if isinstance(node.base, sp.Abs) else node.base
        planes = algebraic_planes(base, atoms)
        out += list(planes[0]) if planes is not None else []
    return tuple(dict.fromkeys(out))


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
        for sgn in (1.0, -1.0):
            pts = on[None] + sgn * (STEPS[:, None, None, None] * scale[None, :, None, None]) \
                * d[None, :, None, :]  # (S, m, D, k)
            with np.errstate(all="ignore"):
                vals = np.abs(np.broadcast_to(fn(*np.moveaxis(pts, -1, 0), *pvals),
                                              pts.shape[:-1]))
                logs.append(np.log(vals))
        logs = np.stack(logs)  # (2, S, m, D)
        with np.errstate(invalid="ignore"):
            slope = (logs[:, -1] - logs[:, -3]) / np.log(STEPS[-1] / STEPS[-3])
        # growth that stays far below the function's size elsewhere is rounding noise of terms
        # that cancel (1/|h| − h·sign(h)/h²), not a singularity
        slope = slope[np.isfinite(slope) & (logs[:, -1] > np.log(NOISE * generic + 1e-300))]
        if slope.size:
            kappa = float(slope.min())
            if worst is None or kappa < worst[0]:
                worst = (kappa, (a, b))
    return worst
