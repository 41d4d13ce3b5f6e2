r"""Tier 1: closed-form Gaussian expectations (numeric arrays and sympy, one code path).

A factor is first rewritten (``gelu(y) = y/2 + y·erf(y/√2)/2``, ``|y| = 2relu(y) − y``,
``sign(y) = 2step(y) − 1``, ``Heaviside → step``, ``Max(y, 0) → relu(y)``, ``cosh/sinh → exp``),
distributed over the sums this creates (bounded), and every product is then recognised as one of
two families.  Below ``x`` are the atoms, ``Σ`` their covariance, ``P`` a polynomial.

**Gaussian-exponential family** ``P(x)·exp(xᵀAx + bᵀx + c)·Π cos/sin(ℓ_j)`` (ℓ affine).
Each cosine/sine is written ``cos ℓ = (e^{iℓ} + e^{−iℓ})/2``, ``sin ℓ = (e^{iℓ} − e^{−iℓ})/(2i)``,
and each resulting term is evaluated by completing the square (tilting the Gaussian)::

    E[P(x) e^{xᵀAx + bᵀx}] = det(I − 2ΣA)^{−1/2} · exp(½ bᵀΣ'b) · E_{N(Σ'b, Σ')}[P],
    Σ' = (I − 2ΣA)^{−1} Σ,

with Gaussian moments from the Isserlis/Wick recursion (Stein's identity)
``E[x_i x^β] = m_i E[x^β] + Σ_j Σ_ij β_j E[x^{β−e_j}]``.  Special cases: polynomials (any degree,
any number of atoms), ``E[e^u] = e^{Var u/2}``, ``E[cos w] = e^{−Var w/2}``, ``E[sin w] = 0``,
``cos u cos v = (cos(u+v) + cos(u−v))/2``, Gaussian forms ``E[e^{−a u²}] = (1 + 2a Var u)^{−1/2}``.

**Kink/erf family** ``P(x)·Π_j g_j(w_j + c_j)`` with at most two ``g_j`` ∈ {step, erf, δ}
(``relu(y) = y·step(y)``, so relu, relu², relu·linear, … are of this form) and ``w_j = a_j·x``.
The factor ``ℓ`` that ``relu(ℓ) = ℓ·step(ℓ)`` contributes stays a variable ``w_j`` of the
polynomial; the atoms that remain in it are regressed on ``w``: ``x = L w + r`` with
``L = Cov(x, w) Cov(w)⁺`` and ``r`` independent of ``w`` with covariance ``Σ − L Cov(w, x)`` (an
atom that *is* a multiple of some ``w_j`` is substituted exactly).  ``P(Lw + r)`` is expanded and
``E[P g] = Σ coef · E[w^β Π g_j] · E[r^γ]`` with the base moments

* one step (offset c, ``u ~ N(0, s²)``): ``M_a = E[u^a 1{u + c > 0}]``:
  ``M_0 = Φ(c/s)``, ``M_1 = s φ(c/s)``, ``M_a = s²[(−c)^{a−1} p(−c) + (a−1) M_{a−2}]`` where
  ``p(−c) = φ(c/s)/s`` (integration by parts); ``relu``: ``E[relu(u+c)] = cΦ(c/s) + sφ(c/s)``;
* one erf: ``E[erf(u + c)] = erf(c/√(1+2s²))`` and Stein
  ``E[u^a erf(u+c)] = s²[(a−1)E[u^{a−2}erf(u+c)] + (2/√π)E[u^{a−1}e^{−(u+c)²}]]``;
* two steps without offsets (arc-cosine kernels, Cho & Saul), ``θ = arccos ρ``:
  ``E[1{u>0}1{v>0} u^a v^b] = s_u^a s_v^b J_ab(θ)`` with
  ``J_ab(θ) = 2^{(a+b)/2} Γ((a+b)/2 + 1)/(2π) · ∫_{θ−π/2}^{π/2} cos^a φ cos^b(φ − θ) dφ``
  (polar coordinates), derived symbolically for each (a, b).  In particular
  ``E[step step] = (π − θ)/(2π)``, ``E[relu(u) step(v)] = s_u (1 + ρ)/(2√(2π))``,
  ``E[relu relu] = s_u s_v (sin θ + (π − θ) cos θ)/(2π)``;
* two erfs: ``E[erf(u) erf(v)] = (2/π) arcsin(2Σ_uv / √((1+2Σ_uu)(1+2Σ_vv)))`` (Williams 1997);
* step and erf: ``E[1{u>0} erf(v)] = (1/π) arcsin(√2 Σ_uv / √(Σ_uu (1+2Σ_vv)))``;
* a Dirac delta: ``E[u^a δ(u + c)] = (−c)^a φ(c/s)/s`` and
  ``E[δ(u) 1{v>0} v^b] = (2π Σ_uu)^{−1/2} E[1{v'>0} v'^b]`` with ``v' ~ N(0, Var(v | u = 0))``.

Zero variances follow the limits (``step(0) = 0``, ``relu`` of a constant-zero form is 0), and
correlations ``ρ = Σ12/√(Σ11Σ22)`` (one square root of the product, as the kernel libraries
write it, so that ρ is exactly 1 when ``Σ11 = Σ12 = Σ22``) are clipped into [−1, 1] (numeric
mode) before ``arccos``/``arcsin``.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import sympy as sp

from ..errors import ExpectationError
from ..functions import gelu, lambdify, relu, step
from .decompose import affine_form
from .arraymath import device_array

__all__ = [
    "ExactPlan", "exact_plan", "evaluate_exact", "gaussian_moments", "orthant_J",
    "orthant_moment", "truncated_moment", "erf_moment", "erf_erf", "step_erf", "peval",
]


# =========================================================================== parameters
@lru_cache(maxsize=8192)
def _param_fn(syms, expr):
    return lambdify(syms, expr)


def _sort_key(s):
    return sp.default_sort_key(s)


@lru_cache(maxsize=8192)
def parameter_symbols(expr) -> tuple:
    """The free symbols of a sympy expression, sorted (cached: the coefficients of a plan's
    terms are evaluated again on every batch)."""
    return tuple(sorted(expr.free_symbols, key=_sort_key))


def peval(expr, params, m):
    """Value of a sympy expression in the parameters: an array over the batch (or a scalar)."""
    expr = sp.sympify(expr)
    syms = parameter_symbols(expr)
    if not syms:
        return m.c(expr)
    missing = [s for s in syms if s not in params]
    if missing:
        raise ExpectationError(f"no value given for parameter(s) {missing} of `{expr}`")
    if m.symbolic:
        vals = [np.asarray(params[s], dtype=object) for s in syms]
        if all(v.ndim == 0 for v in vals):
            return expr.xreplace({s: sp.sympify(v.item()) for s, v in zip(syms, vals)})
        f = np.vectorize(lambda *vs: expr.xreplace(dict(zip(syms, map(sp.sympify, vs)))),
                         otypes=[object])
        return f(*vals)
    value = _param_fn(syms, expr)(*[params[s] for s in syms])
    return value if device_array(value) else np.asarray(value)


def _is_zero(c):
    if isinstance(c, np.ndarray):
        return c.dtype != object and c.ndim == 0 and c == 0
    try:
        return bool(c == 0)
    except Exception:  # pragma: no cover - exotic objects
        return False


# =========================================================================== Gaussian moments
def gaussian_moments(cov, m, mean=None):
    """``moment(alpha) = E[Π_i x_i^{alpha_i}]`` for ``x ~ N(mean, cov)`` (Isserlis/Wick).

    Recursion (Stein's identity): ``E[x_i x^β] = mean_i E[x^β] + Σ_j cov_ij β_j E[x^{β−e_j}]``.
    ``cov`` is indexable as ``cov[i][j]`` (arrays over the batch or sympy), ``mean`` a list or
    None (zero mean: odd moments vanish).
    """
    memo: dict[tuple, object] = {}
    one, zero = m.c(1), m.c(0)

    def moment(alpha):
        alpha = tuple(alpha)
        if alpha in memo:
            return memo[alpha]
        total = sum(alpha)
        if total == 0:
            val = one
        elif mean is None and total % 2:
            val = zero
        else:
            i = next(n for n, a in enumerate(alpha) if a)
            beta = list(alpha)
            beta[i] -= 1
            val = zero
            if mean is not None and not _is_zero(mean[i]):
                val = val + mean[i] * moment(beta)
            for j, bj in enumerate(beta):
                if bj and not _is_zero(cov[i][j]):
                    gamma = list(beta)
                    gamma[j] -= 1
                    val = val + bj * cov[i][j] * moment(gamma)
        memo[alpha] = val
        return val

    return moment


# =========================================================================== base formulas
_theta = sp.Symbol("theta", real=True)
_phi = sp.Symbol("phi", real=True)


@lru_cache(maxsize=None)
def _cos_sin_antiderivative(p: int, q: int) -> sp.Expr:
    """``∫ cos^p φ sin^q φ dφ`` by the standard reduction formulas."""
    c, s = sp.cos(_phi), sp.sin(_phi)
    if q >= 2:
        return (-c ** (p + 1) * s ** (q - 1) + (q - 1) * _cos_sin_antiderivative(p, q - 2)) / (p + q)
    if p >= 2:
        return (c ** (p - 1) * s ** (q + 1) + (p - 1) * _cos_sin_antiderivative(p - 2, q)) / (p + q)
    return {(0, 0): _phi, (1, 0): s, (0, 1): -c, (1, 1): s ** 2 / 2}[(p, q)]


@lru_cache(maxsize=None)
def orthant_J(a: int, b: int) -> sp.Expr:
    """``J_ab(θ)``: ``E[1{u>0}1{v>0} u^a v^b]`` for unit variances and correlation ``cos θ``.

    Polar coordinates ``u = r cos φ``, ``v = r cos(φ − θ)``, the positive quadrant being
    ``φ ∈ (θ − π/2, π/2)``:
    ``J_ab = (1/2π) ∫_0^∞ r^{a+b+1} e^{−r²/2} dr · ∫ cos^a φ cos^b(φ−θ) dφ``.
    """
    total = sp.S.Zero
    for k in range(b + 1):
        F = _cos_sin_antiderivative(a + k, b - k)
        angular = F.subs(_phi, sp.pi / 2) - F.subs(_phi, _theta - sp.pi / 2)
        total += sp.binomial(b, k) * sp.cos(_theta) ** k * sp.sin(_theta) ** (b - k) * angular
    n = a + b
    radial = 2 ** sp.Rational(n, 2) * sp.gamma(sp.Rational(n, 2) + 1)
    J = sp.collect(sp.expand(radial * total / (2 * sp.pi)), [sp.cos(_theta), sp.sin(_theta)])
    return sp.factor_terms(J)


@lru_cache(maxsize=None)
def _theta_fn(a: int, b: int):
    return sp.lambdify((_theta,), orthant_J(a, b), "numpy")


def _eval_theta(a, b, theta, m):
    if m.symbolic:
        J = orthant_J(a, b)
        return np.vectorize(lambda t: J.subs(_theta, t), otypes=[object])(
            np.asarray(theta, dtype=object))
    return np.asarray(_theta_fn(a, b)(theta), dtype=float) * np.ones_like(theta, dtype=float)


def _heaviside(c, m):
    """``1{c > 0}`` (numeric only; used as a zero-variance limit)."""
    if m.symbolic:
        return step(c) if not isinstance(c, np.ndarray) else np.vectorize(step, otypes=[object])(c)
    return (np.asarray(c) > 0) * 1.0


def _half_moment(a, m):
    """``E[Z^a 1{Z>0}] = 2^{a/2} Γ((a+1)/2) / (2√π)`` for a standard normal Z."""
    return m.c(2 ** sp.Rational(a, 2) * sp.gamma(sp.Rational(a + 1, 2)) / (2 * sp.sqrt(sp.pi)))


def orthant_moment(a, b, s1, s2, rho, m):
    """``E[1{u>0} 1{v>0} u^a v^b] = s1^a s2^b J_ab(arccos ρ)``; 0 when either side is the
    constant 0 (``step(0) = 0``)."""
    theta = m.acos(m.clip_corr(rho))
    val = s1 ** a * s2 ** b * _eval_theta(a, b, theta, m)
    return m.if_zero(s1, 0.0, m.if_zero(s2, 0.0, val))


def truncated_moment(a, s, c, m):
    """``E[u^a 1{u + c > 0}]`` for ``u ~ N(0, s²)`` (see the module docstring)."""
    if _is_zero(c):
        val = s ** a * _half_moment(a, m)
        return m.if_zero(s, 0.0, val) if a == 0 else val
    ss = m.safe(s)
    dens = m.phi(c / ss) / ss
    M = [m.Phi(c / ss), ss * m.phi(c / ss)]
    for n in range(2, a + 1):
        M.append(ss ** 2 * ((-c) ** (n - 1) * dens + (n - 1) * M[n - 2]))
    return m.if_zero(s, _heaviside(c, m) if a == 0 else 0.0, M[a])


def erf_moment(a, s, c, m):
    """``E[u^a erf(u + c)]`` for ``u ~ N(0, s²)`` (see the module docstring)."""
    var = s ** 2
    one = m.c(1)
    denom = one + 2 * var
    E = [m.erf(c / m.sqrt(denom))]
    if a == 0:
        return E[0]
    # G_n = E[u^n exp(-(u+c)^2)] = Z * E_{N(mu, tau^2)}[u^n]
    Z = m.exp(-c ** 2 / denom) / m.sqrt(denom)
    tau2 = var / denom
    mu = -2 * c * tau2
    mom = [one, mu]
    for n in range(2, a):
        mom.append(mu * mom[n - 1] + (n - 1) * tau2 * mom[n - 2])
    two_over_sqrt_pi = m.c(2 / sp.sqrt(sp.pi))
    for n in range(1, a + 1):
        prev2 = E[n - 2] if n >= 2 else 0
        E.append(var * ((n - 1) * prev2 + two_over_sqrt_pi * Z * mom[n - 1]))
    return E[a]


def erf_erf(S11, S12, S22, m):
    """``E[erf(u) erf(v)] = (2/π) arcsin(2Σ12/√((1+2Σ11)(1+2Σ22)))``."""
    one = m.c(1)
    return m.c(2 / sp.pi) * m.asin(m.clip_corr(2 * S12 / m.sqrt_prod(one + 2 * S11, one + 2 * S22)))


def step_erf(S11, S12, S22, m):
    """``E[1{u>0} erf(v)] = (1/π) arcsin(√2 Σ12/√(Σ11(1+2Σ22)))``; 0 when Var u = 0."""
    one = m.c(1)
    s11 = m.safe(S11)
    val = m.c(1 / sp.pi) * m.asin(m.clip_corr(m.c(sp.sqrt(2)) * S12 / m.sqrt_prod(s11, one + 2 * S22)))
    return m.if_zero(S11, 0.0, val)


def delta_moment(a, s, c, m):
    """``E[u^a δ(u + c)] = (−c)^a φ(c/s)/s`` (requires s > 0)."""
    return (-c) ** a * m.phi(c / s) / s


def delta_step_moment(a, b, s1, s2, rho, m):
    """``E[δ(u) 1{v>0} u^a v^b]``: 0 for a > 0, else
    ``(2π)^{−1/2}/s1 · (s2√(1−ρ²))^b · E[Z^b 1{Z>0}]``."""
    if a > 0:
        return m.c(0)
    cond = s2 * m.sqrt(m.c(1) - m.clip_corr(rho) ** 2)
    return m.c(1 / sp.sqrt(2 * sp.pi)) / s1 * cond ** b * _half_moment(b, m)


# =========================================================================== plans
class _NoClosedForm(Exception):
    pass


@dataclass(frozen=True)
class Element:
    """A non-polynomial univariate function ``kind(coeffs·x + offset)``."""

    kind: str  # "step", "erf" or "delta"
    coeffs: tuple
    offset: sp.Expr


@dataclass(frozen=True)
class GaussTerm:
    """``coef · P(x) · exp(xᵀAx + bᵀx + c)`` (A, b None when zero)."""

    coef: sp.Expr
    poly: tuple  # ((monomial exponents), coefficient) pairs
    A: tuple | None
    b: tuple | None
    c: sp.Expr


@dataclass(frozen=True)
class KinkTerm:
    """``coef · P(x, w) · Π elements``; the polynomial's variables are the atoms then the linear
    forms ``w_j`` of the elements ``wmap[0], wmap[1], …``."""

    coef: sp.Expr
    poly: tuple
    elements: tuple
    wmap: tuple = ()


@dataclass(frozen=True)
class ExactPlan:
    atoms: tuple
    terms: tuple
    has_delta: bool


_KIND_ORDER = {"delta": 0, "step": 1, "erf": 2}


def _rewrite(expr):
    """Express gelu, |.|, sign, Heaviside, Max/Min with 0, sinh/cosh through relu/step/erf/exp."""
    expr = expr.replace(gelu, lambda y: y / 2 + y * sp.erf(y / sp.sqrt(2)) / 2)
    expr = expr.replace(sp.Abs, lambda y: 2 * relu(y) - y)
    expr = expr.replace(sp.sign, lambda y: 2 * step(y) - 1)
    expr = expr.replace(sp.Heaviside, lambda y, *rest: step(y))
    expr = expr.replace(sp.cosh, lambda y: (sp.exp(y) + sp.exp(-y)) / 2)
    expr = expr.replace(sp.sinh, lambda y: (sp.exp(y) - sp.exp(-y)) / 2)

    def _max(*args):
        if len(args) == 2 and 0 in args:
            return relu(args[1] if args[0] == 0 else args[0])
        return sp.Max(*args)

    def _min(*args):
        if len(args) == 2 and 0 in args:
            y = args[1] if args[0] == 0 else args[0]
            return y - relu(y)
        return sp.Min(*args)

    expr = expr.replace(sp.Max, _max)
    expr = expr.replace(sp.Min, _min)
    return expr


def _expanded_size(expr):
    """Upper bound on the number of terms distributing products over sums would create."""
    if expr.is_Add:
        return sum(_expanded_size(a) for a in expr.args)
    if expr.is_Mul:
        n = 1
        for a in expr.args:
            n *= _expanded_size(a)
        return n
    if expr.is_Pow and expr.exp.is_Integer and expr.exp > 0 and expr.base.is_Add:
        return len(expr.base.args) ** int(expr.exp)
    return 1


def _affine(arg, atoms):
    aff = affine_form(arg, atoms)
    if aff is None:
        raise _NoClosedForm
    return aff


_W_SYMBOLS: dict = {}


def _wsym(coeffs):
    """A placeholder for the linear form ``coeffs·x`` inside polynomials (``relu(ℓ) = ℓ·step(ℓ)``
    keeps ``ℓ`` as one variable, so nothing has to be regressed on it)."""
    if coeffs not in _W_SYMBOLS:
        _W_SYMBOLS[coeffs] = sp.Dummy(f"w{len(_W_SYMBOLS)}", real=True)
    return _W_SYMBOLS[coeffs]


def _parse_product(rest, atoms):
    poly, elements, exps, trigs = [], [], [], []
    for f in sp.Mul.make_args(rest):
        if not f.free_symbols & set(atoms):
            poly.append(f)
            continue
        if f.is_polynomial(*atoms):
            poly.append(f)
            continue
        base, n = f, 1
        if f.is_Pow:
            if not (f.exp.is_Integer and f.exp > 0):
                raise _NoClosedForm
            base, n = f.base, int(f.exp)
        if isinstance(base, relu):
            coeffs, offset = _affine(base.args[0], atoms)
            poly.append((_wsym(coeffs) + offset) ** n)
            elements.append(Element("step", coeffs, offset))
        elif isinstance(base, step):
            elements.append(Element("step", *_affine(base.args[0], atoms)))
        elif isinstance(base, sp.erf):
            elements.extend([Element("erf", *_affine(base.args[0], atoms))] * n)
        elif isinstance(base, sp.DiracDelta):
            if len(base.args) != 1 or n != 1:
                raise _NoClosedForm
            elements.append(Element("delta", *_affine(base.args[0], atoms)))
        elif isinstance(base, sp.exp):
            exps.append(n * base.args[0])
        elif isinstance(base, (sp.cos, sp.sin)):
            aff = _affine(base.args[0], atoms)
            trigs.extend([(type(base), aff)] * n)
        else:
            raise _NoClosedForm
    return poly, elements, exps, trigs


def _poly_terms(factors, gens):
    P = sp.expand(sp.Mul(*factors)) if factors else sp.S.One
    p = sp.Poly(P, *gens)
    return tuple((mon, coef) for mon, coef in p.terms() if coef != 0), p.total_degree()


def _plan_product(coef, rest, atoms):
    poly_f, elements, exps, trigs = _parse_product(rest, atoms)
    if elements and (exps or trigs):
        raise _NoClosedForm
    wcoeffs = list(dict.fromkeys(e.coeffs for e in elements if e.kind == "step"))
    wgens = [_wsym(c) for c in wcoeffs]
    poly, deg = _poly_terms(poly_f, tuple(atoms) + tuple(wgens))
    if elements:
        uniq = []
        for e in elements:
            if e.kind == "step" and e in uniq:
                continue  # step² = step
            uniq.append(e)
        elements = sorted(uniq, key=lambda e: _KIND_ORDER[e.kind])
        kinds = tuple(e.kind for e in elements)
        no_offsets = all(e.offset == 0 for e in elements)
        if len(elements) > 2:
            raise _NoClosedForm
        if len(elements) == 2:
            ok = {("step", "step"): no_offsets,
                  ("erf", "erf"): no_offsets and deg <= 1,
                  ("step", "erf"): no_offsets and deg == 0,
                  ("delta", "step"): no_offsets,
                  ("delta", "erf"): no_offsets and deg == 0}.get(kinds, False)
            if not ok:
                raise _NoClosedForm
        wmap = tuple(next(j for j, e in enumerate(elements) if e.kind == "step" and e.coeffs == c)
                     for c in wcoeffs)
        return [KinkTerm(coef, poly, tuple(elements), wmap)]
    # Gaussian-exponential family
    A = b = None
    c = sp.S.Zero
    if exps:
        try:
            q = sp.Poly(sp.expand(sp.Add(*exps)), *atoms)
        except sp.PolynomialError:  # exp of a non-polynomial: exp(−1/h²)
            raise _NoClosedForm from None
        if q.total_degree() > 2:
            raise _NoClosedForm
        k = len(atoms)
        Am = [[sp.S.Zero] * k for _ in range(k)]
        bv = [sp.S.Zero] * k
        for mon, co in q.terms():
            nz = [i for i, e in enumerate(mon) if e]
            if sum(mon) == 0:
                c += co
            elif sum(mon) == 1:
                bv[nz[0]] += co
            elif len(nz) == 1:
                Am[nz[0]][nz[0]] += co
            else:
                Am[nz[0]][nz[1]] += co / 2
                Am[nz[1]][nz[0]] += co / 2
        if any(x != 0 for row in Am for x in row):
            A = tuple(tuple(r) for r in Am)
        if any(x != 0 for x in bv):
            b = tuple(bv)
    terms = []
    for signs in itertools.product((1, -1), repeat=len(trigs)):
        tcoef, tb, tc = coef, list(b) if b else [sp.S.Zero] * len(atoms), c
        for sgn, (kind, (a, off)) in zip(signs, trigs):
            tcoef = tcoef * (sp.Rational(1, 2) if kind is sp.cos else sgn / (2 * sp.I))
            tb = [x + sgn * sp.I * ai for x, ai in zip(tb, a)]
            tc = tc + sgn * sp.I * off
        tbt = tuple(tb) if any(x != 0 for x in tb) else None
        terms.append(GaussTerm(tcoef, poly, A, tbt, tc))
    return terms


@lru_cache(maxsize=4096)
def exact_plan(expr: sp.Expr, atoms: tuple) -> ExactPlan | None:
    """The closed-form plan of ``E[expr]`` over ``atoms``, or None when there is none."""
    aset = set(atoms)
    rewritten = _rewrite(expr)
    if _expanded_size(rewritten) > 256:
        return None
    expanded = sp.expand(rewritten, deep=False, mul=True, multinomial=True, power_exp=False,
                         power_base=False, log=False)
    terms = []
    try:
        for term in sp.Add.make_args(expanded):
            coef, rest = term.as_independent(*atoms, as_Add=False)
            if not rest.free_symbols & aset:
                terms.append(GaussTerm(coef * rest, ((tuple(0 for _ in atoms), sp.S.One),),
                                       None, None, sp.S.Zero))
                continue
            terms.extend(_plan_product(coef, rest, atoms))
    except _NoClosedForm:
        return None
    has_delta = any(isinstance(t, KinkTerm) and any(e.kind == "delta" for e in t.elements)
                    for t in terms)
    return ExactPlan(tuple(atoms), tuple(terms), has_delta)


# =========================================================================== evaluation
class _Cov:
    """``cov[i][j]`` access to a (..., k, k) array."""

    def __init__(self, arr):
        self.arr = arr

    def __getitem__(self, i):
        return _Row(self.arr, i)


class _Row:
    def __init__(self, arr, i):
        self.arr, self.i = arr, i

    def __getitem__(self, j):
        return self.arr[..., self.i, j]


def _eval_poly(poly, params, m):
    return [(mon, peval(c, params, m)) for mon, c in poly]


def _poly_mul(p, q):
    out = {}
    for (e1, c1), (e2, c2) in itertools.product(p.items(), q.items()):
        e = tuple(a + b for a, b in zip(e1, e2))
        out[e] = out[e] + c1 * c2 if e in out else c1 * c2
    return out


def _eval_gauss(term, cov, params, m):
    k = cov.shape[-1]
    coef = peval(term.coef, params, m)
    if _is_zero(coef):
        return m.c(0)
    poly = _eval_poly(term.poly, params, m)
    pref = m.c(1)
    if term.A is not None:
        A = np.empty(cov.shape[:-2] + (k, k), dtype=object if m.symbolic else complex)
        for i in range(k):
            for j in range(k):
                A[..., i, j] = peval(term.A[i][j], params, m)
        if not m.symbolic:
            A = A.real
            SA = cov @ A
            ev = np.linalg.eigvals(SA).real
            if np.any(ev >= 0.5 - 1e-12):
                raise ExpectationError(
                    "the expectation of a Gaussian-exponential form exp(xᵀAx + …) is infinite "
                    "(an eigenvalue of ΣA is ≥ 1/2)")
        eye = np.eye(k) if not m.symbolic else np.array(sp.eye(k).tolist(), dtype=object)
        M = eye - 2 * (cov @ A)
        cov_t = m.solve(M, cov)
        pref = pref * m.sqrt(m.c(1) / m.det(M)) if m.symbolic else pref / np.sqrt(m.det(M))
        if not m.symbolic:
            cov_t = np.asarray(cov_t)
    else:
        cov_t = cov  # an array, or entry-by-entry blocks (tensorprog.plan.pairs.BlockCov)
    C = _Cov(cov_t)
    mean = None
    expo = peval(term.c, params, m)
    if term.b is not None:
        b = [peval(x, params, m) for x in term.b]
        mean = []
        for i in range(k):
            mi = m.c(0)
            for j in range(k):
                if not _is_zero(b[j]):
                    mi = mi + C[i][j] * b[j]
            mean.append(mi)
        quad = m.c(0)
        for i in range(k):
            if not _is_zero(b[i]):
                quad = quad + b[i] * mean[i]
        expo = expo + quad / 2
    if not _is_zero(expo):
        pref = pref * m.exp(expo)
    mom = gaussian_moments(C, m, mean)
    total = m.c(0)
    for mon, c in poly:
        total = total + c * mom(mon)
    return coef * pref * total


def _var_ref(a, cov, m):
    """``(Σ_l |a_l| √Σ_ll)²``: the variance of a·x without cancellations (for rounding)."""
    if m.symbolic:
        return None
    tot = 0.0
    for l, al in enumerate(a):
        if not _is_zero(al):
            tot = tot + np.abs(al) * np.sqrt(np.maximum(cov[..., l, l], 0.0))
    return tot * tot


@lru_cache(maxsize=256)
def _sym_inv2(a, b, d):
    """Inverse (pseudo-inverse when singular) of the symmetric sympy matrix [[a, b], [b, d]]."""
    M = sp.Matrix([[a, b], [b, d]])
    return M.pinv() if sp.simplify(a * d - b * b) == 0 else M.inv()


def _eval_kink(term, cov, params, m):
    k = cov.shape[-1]
    coef = peval(term.coef, params, m)
    if _is_zero(coef):
        return m.c(0)
    els = term.elements
    ne = len(els)
    a = [[peval(c, params, m) if c != 0 else 0 for c in e.coeffs] for e in els]
    offs = [peval(e.offset, params, m) if e.offset != 0 else 0 for e in els]
    S = _Cov(cov)
    # Cov(x_i, w_j) and Cov(w)
    C = [[sum((S[i][l] * a[j][l] for l in range(k) if not _is_zero(a[j][l])), m.c(0))
          for j in range(ne)] for i in range(k)]
    W = [[sum((a[j][l] * C[l][jj] for l in range(k) if not _is_zero(a[j][l])), m.c(0))
          for jj in range(ne)] for j in range(ne)]
    for j in range(ne):
        W[j][j] = m.clean_var(W[j][j], _var_ref(a[j], cov, m))
    s = [m.sqrt(W[j][j]) for j in range(ne)]
    if not m.symbolic and any(e.kind == "delta" for e in els):
        for j, e in enumerate(els):
            if e.kind == "delta" and np.any(np.asarray(s[j]) == 0):
                raise ExpectationError(
                    "the integrand contains DiracDelta of a linear form with zero variance: "
                    "it is not a function (use Stein's lemma instead of differentiating a step)")
    # correlation of the two linear forms
    rho = None
    if ne == 2:
        # Σ12/√(Σ11Σ22), one square root of the product as the kernel libraries write it: it is
        # exactly 1 when Σ11 = Σ12 = Σ22 (√(x²) = x in IEEE arithmetic), e.g. on a diagonal
        prod = W[0][0] * W[1][1]
        rho = m.if_zero(prod, 0.0, W[0][1] / m.safe(m.sqrt_prod(W[0][0], W[1][1])))
        rho = m.clip_corr(rho)
    # substitution x_i = L_i·w + r_i
    used = sorted({i for mon, _ in term.poly for i, e in enumerate(mon[:k]) if e})
    structural = {}
    for i in used:
        for j, e in enumerate(els):
            if e.coeffs[i] != 0 and all(c == 0 for l, c in enumerate(e.coeffs) if l != i):
                structural[i] = (j, 1 / e.coeffs[i])
                break
    regressed = [i for i in used if i not in structural]
    nv = ne + len(regressed)
    lin = {}
    for i, (j, inv) in structural.items():
        ex = [0] * nv
        ex[j] = 1
        lin[i] = {tuple(ex): peval(inv, params, m)}
    for g, j in enumerate(term.wmap):
        ex = [0] * nv
        ex[j] = 1
        lin[k + g] = {tuple(ex): m.c(1)}
    if regressed:
        if ne == 1:
            w0 = W[0][0]
            inv = [[m.if_zero(w0, 0.0, m.c(1) / m.safe(w0))]]
        elif m.symbolic:
            entry = np.vectorize(lambda x, y, z, a, b: _sym_inv2(x, y, z)[a, b], otypes=[object])
            inv = [[entry(W[0][0], W[0][1], W[1][1], a, b) for b in range(2)] for a in range(2)]
        else:
            Wm = np.empty(np.broadcast_shapes(*[np.shape(x) for row in W for x in row]) + (2, 2))
            for j in range(2):
                for jj in range(2):
                    Wm[..., j, jj] = W[j][jj]
            P = m.pinv(Wm)
            inv = [[P[..., j, jj] for jj in range(2)] for j in range(2)]
        L = {i: [sum((C[i][jj] * inv[jj][j] for jj in range(ne)), m.c(0)) for j in range(ne)]
             for i in regressed}
        for n, i in enumerate(regressed):
            d = {}
            for j in range(ne):
                ex = [0] * nv
                ex[j] = 1
                d[tuple(ex)] = L[i][j]
            ex = [0] * nv
            ex[ne + n] = 1
            d[tuple(ex)] = m.c(1)
            lin[i] = d
        R = [[S[i][ii] - sum((L[i][j] * C[ii][j] for j in range(ne)), m.c(0))
              for ii in regressed] for i in regressed]
        rmom = gaussian_moments(R, m)
    else:
        rmom = None
    # expand P(Lw + r)
    expanded: dict[tuple, object] = {}
    for mon, c in _eval_poly(term.poly, params, m):
        prod = {tuple([0] * nv): c}
        for i, e in enumerate(mon):
            for _ in range(e):
                prod = _poly_mul(prod, lin[i])
        for ex, cc in prod.items():
            expanded[ex] = expanded[ex] + cc if ex in expanded else cc
    base_cache: dict[tuple, object] = {}

    def base(beta):
        if beta in base_cache:
            return base_cache[beta]
        kinds = tuple(e.kind for e in els)
        if ne == 1:
            f = {"step": truncated_moment, "erf": erf_moment, "delta": delta_moment}[kinds[0]]
            val = f(beta[0], s[0], offs[0], m)
        elif kinds == ("step", "step"):
            val = orthant_moment(beta[0], beta[1], s[0], s[1], rho, m)
        elif kinds == ("erf", "erf"):
            val = erf_erf(W[0][0], W[0][1], W[1][1], m) if sum(beta) == 0 else m.c(0)
            if sum(beta) % 2 == 0 and sum(beta) > 0:
                raise ExpectationError("internal: erf·erf with an even polynomial")
        elif kinds == ("step", "erf"):
            val = step_erf(W[0][0], W[0][1], W[1][1], m)
        elif kinds == ("delta", "step"):
            val = delta_step_moment(beta[0], beta[1], s[0], s[1], rho, m)
        elif kinds == ("delta", "erf"):
            val = m.c(0)
        else:  # pragma: no cover - excluded by the planner
            raise ExpectationError(f"internal: no closed form for {kinds}")
        base_cache[beta] = val
        return val

    total = m.c(0)
    for ex, c in expanded.items():
        if _is_zero(c):
            continue
        beta, gamma = ex[:ne], ex[ne:]
        val = c * base(beta)
        if gamma and any(gamma):
            val = val * rmom(gamma)
        total = total + val
    return coef * total


def evaluate_exact(plan: ExactPlan, cov, params, m):
    """``E[expr]`` from its plan: ``cov`` is (..., k, k) over ``plan.atoms``; params arrays
    broadcast against the batch.  Returns an array (object array in symbolic mode)."""
    total = m.c(0)
    for term in plan.terms:
        if isinstance(term, KinkTerm):
            total = total + _eval_kink(term, cov, params, m)
        else:
            total = total + _eval_gauss(term, cov, params, m)
    return m.real(total)
