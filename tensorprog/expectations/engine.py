"""Dispatch: ``expect(expr, atoms, cov, params)`` → :class:`Expectation`.

``E[expr]`` for zero-mean jointly Gaussian ``atoms`` with covariance ``cov[b]`` at every batch
point ``b`` (docs/theory.md §4).  The expression is first decomposed exactly (:mod:`.decompose`: zero-
variance atoms, linearity, constants, independent groups); each factor of each term is then
evaluated by the first tier that applies:

1. ``exact`` (:mod:`.closed_forms`) — the only tier in symbolic mode;
2. ``quadrature`` (:mod:`.quadrature`) for effective dimension ≤ 3;
3. ``montecarlo`` (:mod:`.montecarlo`) otherwise.

``tier=`` forces one tier for every factor (decomposition still applies).  Errors of the factors
are propagated to first order: ``|c| Σ_f err_f Π_{g≠f} |E F_g|``, summed over terms.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import sympy as sp

from ..errors import ExpectationError, NotPositiveSemidefinite
from ..ir.expression import as_expression
from . import montecarlo, quadrature
from .canonical import canonical, original_names
from .closed_forms import evaluate_exact, exact_plan, peval
from .decompose import Factor, Term, as_pieces, plan_expectation
from .arraymath import NUMERIC, SYMBOLIC

__all__ = ["Expectation", "expect", "TIERS", "NeedsMonteCarlo", "NotPositiveSemidefinite"]

TIERS = ("auto", "exact", "quadrature", "montecarlo")
_ORDER = ("exact", "quadrature", "montecarlo")


class NeedsMonteCarlo(ExpectationError):
    """Raised by ``expect(..., montecarlo=False)`` when a factor is beyond the exact and quadrature
    tiers, before any integration: the caller has a better Monte-Carlo route (the limit
    evaluator samples whole atom families jointly, :mod:`tensorprog.limit.sampling`)."""


class Expectation(NamedTuple):
    """Result of :func:`expect`.

    value : ndarray of the batch shape (object array of sympy expressions when symbolic).
    error : ndarray of the batch shape, absolute error estimate (0 for exact; the difference of
        two rule orders for quadrature; the standard error for Monte Carlo).
    tier  : the tier(s) used, e.g. ``"exact"`` or ``"exact+quadrature"``.
    """

    value: np.ndarray
    error: np.ndarray
    tier: str


def _check_inputs(expr, atoms, cov, params, symbolic, tier, check_psd=True):
    if tier not in TIERS:
        raise ExpectationError(f"unknown tier {tier!r}; use one of {TIERS}")
    for a in atoms:
        if not isinstance(a, sp.Symbol):
            raise ExpectationError(f"atoms must be sympy Symbols, got {a!r} ({type(a).__name__})")
    if len(set(atoms)) != len(atoms):
        raise ExpectationError(f"atoms must be distinct: {atoms}")
    for s in params:
        if not isinstance(s, sp.Symbol):
            raise ExpectationError(f"parameter keys must be sympy Symbols, got {s!r}")
        if s in set(atoms):
            raise ExpectationError(f"{s} is both an atom and a parameter")
    unknown = expr.free_symbols - set(atoms) - set(params)
    if unknown:
        raise ExpectationError(
            f"E[{expr}]: symbol(s) {sorted(map(str, unknown))} are neither atoms nor parameters; "
            "pass them in `atoms` (Gaussian) or `params` (deterministic)")
    k = len(atoms)
    if cov.ndim < 2 or cov.shape[-2:] != (k, k):
        raise ExpectationError(f"E[{expr}]: cov must have shape (*batch, {k}, {k}) for {k} atoms, "
                               f"got {cov.shape}")
    batch = cov.shape[:-2]
    for s, v in params.items():
        try:
            shape = np.broadcast_shapes(np.shape(v), batch)
        except ValueError:
            shape = None
        if shape != batch:
            raise ExpectationError(f"E[{expr}]: parameter {s} of shape {np.shape(v)} does not "
                                   f"broadcast to the batch shape {batch}")
    if not symbolic and cov.size:
        if not np.isfinite(cov).all():
            raise ExpectationError(f"E[{expr}]: the covariance has non-finite entries")
        if not check_psd:
            return
        diag = [cov[..., i, i] for i in range(k)]
        scale = max(float(np.max(np.abs(d))) for d in diag)
        tiny = 1e-12 * max(scale, 1e-300)
        for i in range(k):
            if np.any(diag[i] < -tiny):
                raise NotPositiveSemidefinite(f"E[{expr}]: the covariance has a negative "
                                              "variance (it is not positive semidefinite)")
            for j in range(i + 1, k):
                cij = cov[..., i, j]
                if np.max(np.abs(cij - cov[..., j, i])) > 1e-9 * max(scale, 1e-300):
                    raise ExpectationError(f"E[{expr}]: the covariance is not symmetric")
                bound = np.sqrt(np.maximum(diag[i], 0.0) * np.maximum(diag[j], 0.0))
                if np.any(np.abs(cij) > bound * (1 + 1e-6) + tiny):
                    raise NotPositiveSemidefinite(
                        f"E[{expr}]: the covariance is not positive semidefinite "
                        f"(the correlation of {atoms[i]} and {atoms[j]} exceeds 1 in absolute "
                        "value)")
        if k >= 3:
            lam = np.linalg.eigvalsh(cov)
            if np.any(lam[..., 0] < -1e-10 * np.maximum(np.abs(lam[..., -1]), 1e-300)):
                raise NotPositiveSemidefinite(
                    f"E[{expr}]: the covariance is not positive semidefinite "
                    f"(smallest eigenvalue {float(lam[..., 0].min()):.3g})")


def _is_structural_zero(v):
    v = sp.sympify(v)
    return v == 0 or v.is_zero is True


def _zero_pattern(cov, k, symbolic):
    if symbolic:
        zero = np.vectorize(_is_structural_zero, otypes=[bool])(cov) if cov.size else \
            np.ones(cov.shape, bool)
    else:
        zero = cov == 0
    zero = zero.reshape(-1, k, k)
    allzero = zero.all(axis=0)
    zero_var = tuple(bool(allzero[i, i]) for i in range(k))
    nonzero = frozenset((i, j) for i in range(k) for j in range(i + 1, k)
                        if not (allzero[i, j] and allzero[j, i]))
    return zero_var, nonzero


def _subcov(cov, index):
    idx = np.asarray(index)
    return cov[..., idx[:, None], idx[None, :]]


def _factor(factor, cov, params, m, tier, whole, montecarlo_ok=True):
    """``(value, error, tier)`` of one factor."""
    sub = _subcov(cov, factor.index)
    if tier in ("auto", "exact"):
        plan = exact_plan(factor.expr, factor.atoms)
        if plan is not None:
            return evaluate_exact(plan, sub, params, m), 0.0, "exact"
        if m.symbolic or tier == "exact":
            where = "" if factor.expr == whole else f" (a factor of E[{whole}])"
            raise ExpectationError(
                f"no closed form for E[{factor.expr}]{where}: the exact tier knows polynomials, "
                "relu/step/|.|/leaky relu (at most two, or one with an offset), erf (at most two), "
                "exp/sin/cos of linear forms and Gaussian forms exp(quadratic); use numeric mode "
                "(symbolic=False) with tier='auto' or 'quadrature' for this expectation")
    if factor.expr.has(sp.DiracDelta):
        raise ExpectationError(
            f"E[{factor.expr}]: the integrand contains a DiracDelta (a derivative of a step), "
            "which is not a function; rewrite the expectation with Stein's lemma "
            "(E[x g(x)] = Var(x) E[g'(x)]) instead of differentiating the step")
    qp = quadrature.quad_plan(factor.expr, factor.atoms)
    if tier in ("auto", "quadrature"):
        try:
            value, err = quadrature.integrate(qp, sub, params)
            return value, err, "quadrature"
        except quadrature.TooManyDimensions as exc:
            if tier == "quadrature":
                raise ExpectationError(
                    f"E[{factor.expr}]: effective dimension {exc.args[0]} (after factorisation) "
                    f"is above what quadrature handles here ({quadrature.MAX_DIMENSION}, or 2 "
                    "for non-smooth integrands without a closed-form conditional); use "
                    "tier='montecarlo' or 'auto'") from None
    if not montecarlo_ok:
        raise NeedsMonteCarlo(f"E[{factor.expr}] needs the Monte-Carlo tier")
    value, err = montecarlo.integrate(qp.fn, sub, params, qp.params)
    return value, err, "montecarlo"


def _merge_numeric_terms(plan: tuple) -> tuple:
    """Merge terms that differ only in their one factor without a closed form (same atoms, same
    closed-form cofactors): ``Σ_t c_t A·F_t = A·(Σ_t c_t F_t)``, one quadrature or Monte-Carlo
    pass instead of one per term (a pair covariance of two sums of k terms has k² of them).
    Factors that are products of univariate functions of at most three linear forms stay
    apart: quadrature is fastest on those (Mehler's formula for two), and a sum would lose it."""
    merged: dict[tuple, list] = {}
    out = []
    for term in plan:
        numeric = [f for f in term.factors if exact_plan(f.expr, f.atoms) is None]
        pieces = as_pieces(numeric[0].expr, numeric[0].atoms) if len(numeric) == 1 else None
        if len(numeric) != 1 or (pieces is not None and len(pieces) <= 3):
            out.append(term)
            continue
        exact = tuple((f.expr, f.index) for f in term.factors if f is not numeric[0])
        merged.setdefault((exact, numeric[0].index), []).append((term, numeric[0]))
    for (exact, index), group in merged.items():
        if len(group) == 1:
            out.append(group[0][0])
            continue
        numeric = sp.Add(*[t.coef * f.expr for t, f in group])
        factors = [f for f in group[0][0].factors if f is not group[0][1]]
        factors.append(Factor(numeric, group[0][1].atoms, index))
        out.append(Term(sp.S.One, tuple(factors)))
    return tuple(out)


def _check_quadrature_suffices(plan, cov, params):
    """Raise :class:`NeedsMonteCarlo` if a factor without a closed form has more effective
    dimensions than quadrature handles (largest factors first, so the check is cheap)."""
    numeric = {(f.expr, f.index): f for t in plan for f in t.factors
               if exact_plan(f.expr, f.atoms) is None}
    for f in sorted(numeric.values(), key=lambda f: -len(f.atoms)):
        if len(f.atoms) <= quadrature.MAX_DIMENSION:
            return
        rank = quadrature.effective_rank(f.expr, f.atoms, _subcov(cov, f.index), params)
        if rank > quadrature.MAX_DIMENSION:
            raise NeedsMonteCarlo(f"E[{f.expr}] needs the Monte-Carlo tier")


def expect(expr, atoms, cov, params=None, *, symbolic: bool = False, tier: str = "auto",
           check_psd: bool = True, montecarlo: bool = True):
    """``E[expr]`` over zero-mean jointly Gaussian ``atoms`` for every covariance in ``cov``.

    Parameters
    ----------
    expr : sympy expression whose free symbols are among ``atoms`` and ``params``.
    atoms : sequence of k distinct sympy Symbols (the Gaussian variables).
    cov : array (*B, k, k), the atoms' covariance at every batch point (float64; with
        ``symbolic=True`` an object array of sympy expressions).
    params : {Symbol: array broadcastable to B} deterministic parameters (sympy values when
        symbolic).
    symbolic : closed forms only, returning sympy expressions.
    tier : "auto" (exact, then quadrature, then Monte Carlo) or one of "exact", "quadrature",
        "montecarlo" to force it.
    check_psd : verify that every covariance is symmetric positive semidefinite (callers that
        build covariances that are so by construction, like the limit evaluator, skip it).
    montecarlo : with ``False`` (and tier "auto"), raise :class:`NeedsMonteCarlo` instead of
        running the Monte-Carlo tier.

    Returns
    -------
    :class:`Expectation` ``(value, error, tier)``, value and error of shape B.
    """
    atoms = tuple(atoms)
    params = dict(params or {})
    # a string integrand is read by the ψ grammar over the atoms' and parameters' names
    names = {s.name: s for s in (*atoms, *params) if isinstance(s, sp.Symbol)}
    expr = as_expression(expr, names, what="the integrand")
    m = SYMBOLIC if symbolic else NUMERIC
    if symbolic:
        cov = np.asarray(cov, dtype=object)
        cov = np.vectorize(sp.sympify, otypes=[object])(cov) if cov.size else cov
        params = {s: (np.vectorize(sp.sympify, otypes=[object])(np.asarray(v, dtype=object))
                      if np.ndim(v) else sp.sympify(v)) for s, v in params.items()}
    else:
        try:
            cov = np.asarray(cov, dtype=float)
            params = {s: np.asarray(v, dtype=float) for s, v in params.items()}
        except (TypeError, ValueError) as exc:
            raise ExpectationError(f"E[{expr}]: covariance and parameters must be numeric "
                                   f"(or use symbolic=True): {exc}") from None
    _check_inputs(expr, atoms, cov, params, symbolic, tier, check_psd)
    named = canonical(expr, atoms, tuple(params))
    with original_names(named):
        return _expect(named.expr, named.atoms, cov, named.rename_values(params), m, tier,
                       montecarlo)


def _expect(expr, atoms, cov, params, m, tier, montecarlo):
    """:func:`expect` on checked inputs (atoms and parameters named by position)."""
    symbolic = m is SYMBOLIC
    k = len(atoms)
    batch = cov.shape[:-2]
    zero_var, nonzero = _zero_pattern(cov, k, symbolic)
    plan = plan_expectation(expr, atoms, zero_var, nonzero)
    if not symbolic and tier != "exact":
        plan = _merge_numeric_terms(plan)
        if not montecarlo and tier == "auto":
            _check_quadrature_suffices(plan, cov, params)

    total = m.zeros(batch)
    error = np.zeros(batch)
    used = set()
    cache = {}
    for term in plan:
        coef = peval(term.coef, params, m)
        results = []
        for f in term.factors:
            key = (f.expr, f.index)
            if key not in cache:
                cache[key] = _factor(f, cov, params, m, tier, expr, montecarlo)
            results.append(cache[key])
        val = coef
        for v, _, t in results:
            val = val * v
            used.add(t)
        total = total + val
        if not symbolic and any(np.any(e != 0) for _, e, _ in results):
            mags = [np.abs(v) for v, _, _ in results]
            prop = 0.0
            for i, (_, e, _) in enumerate(results):
                part = np.asarray(e, dtype=float)
                for j, mg in enumerate(mags):
                    if j != i:
                        part = part * mg
                prop = prop + part
            error = error + np.abs(coef) * prop

    if symbolic:
        value = np.empty(batch, dtype=object)
        value[...] = np.broadcast_to(np.asarray(total, dtype=object), batch)
        for v in value.flat:
            if sp.sympify(v).has(sp.nan, sp.zoo, sp.oo, -sp.oo):
                raise ExpectationError(f"E[{expr}] evaluated to {v}: check the covariance")
    else:
        value = np.array(np.broadcast_to(np.asarray(total, dtype=float), batch))
        error = np.array(np.broadcast_to(error, batch), dtype=float)
        bad = ~np.isfinite(value)
        if np.any(bad):
            raise ExpectationError(
                f"E[{expr}] is not finite at {int(bad.sum())} of {value.size} batch point(s): "
                "check that the covariance is finite and positive semidefinite, that parameters "
                "are finite, and that the integrand grows at most polynomially (exp of a "
                "quadratic can make the expectation infinite)")
        error = np.where(np.isfinite(error), error, np.inf)
    tier_name = "+".join(t for t in _ORDER if t in used) or "exact"
    return Expectation(value, error, tier_name)
