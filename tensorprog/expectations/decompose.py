"""Decomposition of an expectation before any integral is computed.

``E[expr]`` over zero-mean jointly Gaussian atoms is split, exactly, into pieces that are cheap
and often available in closed form:

1. **Zero-variance atoms** (variance exactly 0 at every batch point) are the constant 0 and are
   substituted (``relu(0) = step(0) = 0``).
2. **Linearity**: ``E[Σ_t c_t F_t] = Σ_t c_t E[F_t]`` over the top-level sum
   (``sympy.Add.make_args``; nothing is expanded here).
3. **Constants and parameters** are pulled out of each product (``as_independent``).
4. **Independence**: for jointly Gaussian variables, zero covariance between two sets of atoms
   means independence.  The atoms of a term are grouped into the connected components of the
   graph "covariance not identically zero over the batch, or used together inside one
   multiplicand"; the product over components factorises: ``E[Π_g F_g] = Π_g E[F_g]``.

It also recognises the structure the integrators exploit: **affine forms** ``a·x + b`` of the
atoms, and **pieces** — a factor written as ``Π_j g_j(ℓ_j)``, a product of univariate functions
``g_j`` of distinct linear forms ``ℓ_j = a_j·x`` (offsets live inside ``g_j``) — together with the
kink points of each ``g_j`` (arguments of relu/step/|.|/… where the function is not smooth) and
its soft features (the centre and width of a tanh/sigmoid/erf/gelu transition).

All results are cached on the sympy expression and the atom tuple.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import sympy as sp

from ..functions import gelu, relu, sigmoid, step
from .tape import Tape

__all__ = [
    "T", "Piece", "Factor", "Term", "affine_form", "as_pieces", "features", "plan_expectation",
    "affine_kinks", "affine_soft", "algebraic_planes", "KINK_FUNCTIONS", "SOFT_FUNCTIONS",
]

#: The argument of a univariate piece ``g(T)``.
T = sp.Dummy("t", real=True)

#: Functions that are not smooth where their argument vanishes.
KINK_FUNCTIONS = (relu, step, sp.Heaviside, sp.Abs, sp.sign, sp.DiracDelta, sp.floor,
                  sp.ceiling)
#: Width given to a singular point (a real root of the base of a negative or fractional power)
#: so that quadrature grades its panels geometrically down to it.
SINGULAR_WIDTH = sp.Float(1e-18)
#: Smooth functions with a sharp transition (poles or fast growth near the imaginary axis
#: around the point where their argument vanishes).
SOFT_FUNCTIONS = (sp.tanh, sigmoid, sp.erf, gelu)


def _atomset(atoms):
    return frozenset(atoms)


@lru_cache(maxsize=8192)
def affine_form(expr: sp.Expr, atoms: tuple) -> tuple[tuple, sp.Expr] | None:
    """``(a, b)`` with ``expr = Σ_i a_i atoms_i + b`` and ``a``, ``b`` free of atoms, or None."""
    expr = sp.sympify(expr)
    aset = _atomset(atoms)
    if not expr.free_symbols & aset:
        return tuple(sp.S.Zero for _ in atoms), expr
    coeffs = []
    for a in atoms:
        d = sp.diff(expr, a)
        if d.free_symbols & aset or d.has(sp.DiracDelta, sp.Subs, sp.Derivative):
            return None
        coeffs.append(d)
    offset = expr.xreplace({a: sp.S.Zero for a in atoms})
    return tuple(coeffs), offset


# ----------------------------------------------------------------------------------- pieces
class Piece(NamedTuple):
    """``g(ℓ)`` with ``ℓ = Σ_i coeffs_i atoms_i`` and ``g = func`` a sympy expression in :data:`T`."""

    coeffs: tuple
    func: sp.Expr


def _candidate(arg, atoms, aset):
    """A linear form the multiplicand ``arg`` may be a univariate function of (its coeffs)."""
    for node in sp.preorder_traversal(arg):
        if not (getattr(node, "free_symbols", set()) & aset):
            continue
        inner = None
        if isinstance(node, sp.Function):
            inner = [x for x in node.args if x.free_symbols & aset]
        elif isinstance(node, sp.Pow) and node.base.free_symbols & aset:
            inner = [node.base]
        for x in inner or ():
            aff = affine_form(x, atoms)
            if aff is not None and any(c != 0 for c in aff[0]):
                return aff[0]
    aff = affine_form(arg, atoms)
    if aff is not None and any(c != 0 for c in aff[0]):
        return aff[0]
    used = [a for a in atoms if a in arg.free_symbols]
    if len(used) == 1:
        return tuple(sp.S.One if a == used[0] else sp.S.Zero for a in atoms)
    return None


def _normalise(coeffs):
    """Scale a coefficient vector so that its pivot (first nonzero number, else first nonzero)
    is 1; returns (normalised coeffs, pivot index, scale)."""
    idx = [i for i, c in enumerate(coeffs) if c != 0]
    numeric = [i for i in idx if c_is_number(coeffs[i])]
    p = numeric[0] if numeric else idx[0]
    lam = coeffs[p]
    return tuple(sp.S.One if i == p else (c / lam) if c != 0 else sp.S.Zero
                 for i, c in enumerate(coeffs)), p, lam


def c_is_number(c):
    return sp.sympify(c).is_Number and c != 0


def _univariate(arg, atoms, aset):
    coeffs = _candidate(arg, atoms, aset)
    if coeffs is None:
        return None
    norm, p, _ = _normalise(coeffs)
    if _varies_on_level_set(arg, atoms, norm, p):
        return None
    sub = T - sum((norm[i] * atoms[i] for i in range(len(atoms)) if i != p and norm[i] != 0),
                  sp.S.Zero)
    g = arg.subs(atoms[p], sub)
    if g.free_symbols & aset:
        g = sp.expand(g, deep=True, mul=True, multinomial=False, power_exp=False,
                      power_base=False, log=False)
        if g.free_symbols & aset:
            return None
    return norm, g


#: Multiplicands of fewer distinct operations are rewritten symbolically without a numeric probe.
PROBE_SIZE = 64
#: A probe rejects a linear form when ``arg`` changes by more than this (relative) along it.
PROBE_RTOL = 1e-6


def _varies_on_level_set(arg, atoms, norm, p) -> bool:
    """True when ``arg`` is numerically seen to change between two points with the same
    ``ℓ = norm·x`` (so it is not a function of ℓ): a cheap test that spares large
    multiplicands (a trained network's nested Z expressions) the symbolic rewriting of
    :func:`_univariate`.  False when it cannot tell (small, or not finite at the points)."""
    free = sorted(arg.free_symbols, key=lambda s: s.name)
    tape = Tape(free, [arg])
    if len(tape.ops) < PROBE_SIZE:
        return False
    rng = np.random.default_rng(0)
    at = {s: rng.uniform(-1.0, 1.0) for s in free}
    try:
        lam = [float(sp.sympify(c).xreplace(at)) for c in norm]
    except (TypeError, ValueError):
        return False
    move = {a: rng.uniform(-1.0, 1.0) for i, a in enumerate(atoms) if i != p}
    move[atoms[p]] = -sum(lam[i] * move[a] for i, a in enumerate(atoms) if i != p)
    args = [np.array([at[s], at[s] + move.get(s, 0.0)]) for s in free]
    with np.errstate(all="ignore"):
        try:
            a, b = tape(*args)[0] * np.ones(2)
        except (TypeError, ValueError, ZeroDivisionError):
            return False
    return bool(np.isfinite(a) and np.isfinite(b) and
                abs(a - b) > PROBE_RTOL * (1.0 + abs(a) + abs(b)))


@lru_cache(maxsize=4096)
def as_pieces(factor: sp.Expr, atoms: tuple) -> tuple[Piece, ...] | None:
    """Write ``factor`` as ``Π_j g_j(ℓ_j)`` with distinct (non-proportional) linear forms, or None.

    Multiplicands (``Mul.make_args``) are recognised one by one as univariate functions of a
    linear form; those with proportional linear forms are merged into one piece.
    """
    aset = _atomset(atoms)
    pieces: dict[tuple, sp.Expr] = {}
    const = sp.S.One
    for arg in sp.Mul.make_args(factor):
        if not arg.free_symbols & aset:
            const *= arg
            continue
        uni = _univariate(arg, atoms, aset)
        if uni is None:
            return None
        coeffs, g = uni
        pieces[coeffs] = pieces.get(coeffs, sp.S.One) * g
    if not pieces:
        return None
    out = [Piece(c, g) for c, g in pieces.items()]
    out[0] = Piece(out[0].coeffs, const * out[0].func)
    return tuple(out)


# ----------------------------------------------------------------------------------- features
def _zero_form(z, atoms):
    """``(a, b)`` with ``{z = 0} = {a·x + b = 0}``: ``z`` affine, or a quotient whose numerator is
    affine (``ℓ/√(ℓ² + ε)`` vanishes where ℓ does: BatchNorm's normalised coordinate); else
    None."""
    aff = affine_form(z, atoms)
    if aff is not None:
        return aff
    if not any(isinstance(f, sp.Pow) and f.exp.is_negative for f in sp.Mul.make_args(z)):
        return None
    numer, _ = z.as_numer_denom()
    return affine_form(numer, atoms)


def is_algebraic_power(node) -> bool:
    """A power ``base**e`` of the atoms that is not a polynomial (e negative or fractional)."""
    return isinstance(node, sp.Pow) and node.exp.is_Number and \
        not (node.exp.is_Integer and node.exp >= 0)


def algebraic_planes(base: sp.Expr, atoms: tuple):
    """Where the base of ``base**e`` (e negative or fractional) is singular, when ``base`` is a
    polynomial of degree ≤ 2 in one linear form ``ℓ = u·x`` with numeric coefficients:
    ``(hard, soft)`` with ``hard`` the hyperplanes ``(a, b)`` (``a·x + b = 0``) of its real roots
    and ``soft`` the ``(a, b, width)`` of a pair of complex roots ``centre ± i·width`` (the peak
    of ``1/√(ℓ² + ε)`` has width √ε).  None when ``base`` is not of that form."""
    try:
        poly = sp.Poly(base, *atoms)
    except sp.PolynomialError:
        return None
    if poly.total_degree() < 1 or poly.total_degree() > 2 or \
            not all(c.is_Number for c in poly.coeffs()):
        return None
    if poly.total_degree() == 1:
        return (affine_form(base, atoms),), ()
    k = len(atoms)
    A = np.zeros((k, k))
    b = np.zeros(k)
    c = 0.0
    for monom, coef in poly.terms():
        idx = [i for i, e in enumerate(monom) for _ in range(e)]
        if len(idx) == 2:
            A[idx[0], idx[1]] += float(coef) / 2
            A[idx[1], idx[0]] += float(coef) / 2
        elif len(idx) == 1:
            b[idx[0]] = float(coef)
        else:
            c = float(coef)
    lam, V = np.linalg.eigh(A)
    j = int(np.argmax(np.abs(lam)))
    top = abs(lam[j])
    if np.sum(np.abs(lam) > 1e-12 * top) != 1:
        return None
    u, lam = V[:, j], lam[j]
    beta = float(b @ u)
    if np.linalg.norm(b - beta * u) > 1e-12 * (np.linalg.norm(b) + top):
        return None
    centre, disc = -beta / (2 * lam), beta * beta - 4 * lam * c
    coeffs = tuple(sp.Float(x) for x in u)
    if disc < 0:
        return (), ((coeffs, sp.Float(-centre), sp.Float(math.sqrt(-disc) / (2 * abs(lam)))),)
    half = math.sqrt(disc) / (2 * abs(lam))
    return tuple(dict.fromkeys((coeffs, sp.Float(-(centre + s))) for s in (-half, half))), ()


def _kink_zeros(node):
    """The expressions whose zeros are the kinks of ``node`` (Max/Min, relu/step/|.|/sign), or
    None when ``node`` is none of those."""
    if isinstance(node, (sp.Max, sp.Min)):
        args = node.args
        return [args[i] - args[j] for i in range(len(args)) for j in range(i + 1, len(args))]
    if isinstance(node, KINK_FUNCTIONS):
        return [node.args[0]]
    return None


@lru_cache(maxsize=4096)
def features(func: sp.Expr, var: sp.Symbol = T):
    """Kink points and soft features of a univariate ``func(var)``.

    Returns ``(hard, soft)``: ``hard`` a tuple of sympy values of ``var`` where ``func`` is not
    smooth (arguments of relu/step/|.|/sign/Max/Min that vanish), ``soft`` a tuple of
    ``(centre, width)`` of transitions: tanh, sigmoid, erf, gelu; complex roots
    ``centre ± i·width`` of the base of a negative or fractional power (the peak of width √ε of
    ``1/√(t² + ε)``); real roots of such a base (integrable singularities such as ``|t|^-½``) with
    the width :data:`SINGULAR_WIDTH`.  Returns None when a kink sits at an argument whose zeros
    are not known in closed form.
    """
    hard, soft = [], []
    for node in sp.preorder_traversal(func):
        if not (isinstance(node, sp.Basic) and node.has(var)):
            continue
        if isinstance(node, sp.Piecewise):
            return None
        if isinstance(node, SOFT_FUNCTIONS):
            aff = affine_form(node.args[0], (var,))
            if aff is not None and aff[0][0] != 0:
                alpha, beta = aff[0][0], aff[1]
                soft.append((-beta / alpha, 1 / sp.Abs(alpha)))
            continue
        if is_algebraic_power(node):
            base = node.base.args[0] if isinstance(node.base, sp.Abs) else node.base
            planes = algebraic_planes(base, (var,)) or ((), ())
            for (alpha,), beta in planes[0]:
                soft.append((-beta / alpha, SINGULAR_WIDTH))
            for (alpha,), beta, width in planes[1]:
                soft.append((-beta / alpha, width / sp.Abs(alpha)))
            continue
        zeros = _kink_zeros(node)
        if zeros is None:
            continue
        for z in zeros:
            if not z.has(var):
                continue
            aff = _zero_form(z, (var,))
            if aff is None:
                return None
            alpha, beta = aff[0][0], aff[1]
            if alpha != 0:
                hard.append(-beta / alpha)
    return tuple(dict.fromkeys(hard)), tuple(dict.fromkeys(soft))


def is_kinky(expr: sp.Expr, atoms: tuple) -> bool:
    """Whether ``expr`` contains a non-smooth function of the atoms."""
    aset = _atomset(atoms)
    for node in sp.preorder_traversal(expr):
        if isinstance(node, (sp.Max, sp.Min, sp.Piecewise) + KINK_FUNCTIONS) \
                and node.free_symbols & aset:
            return True
    return False


@lru_cache(maxsize=2048)
def affine_kinks(expr: sp.Expr, atoms: tuple):
    """The hyperplanes ``a·x + b = 0`` where ``expr`` has a kink, as a tuple of ``(a, b)``, or
    None when some kink sits at an argument whose zeros are not a known hyperplane."""
    aset = _atomset(atoms)
    out = []
    for node in sp.preorder_traversal(expr):
        if not (isinstance(node, sp.Basic) and node.free_symbols & aset):
            continue
        if isinstance(node, sp.Piecewise):
            return None
        if is_algebraic_power(node):
            continue
        zeros = _kink_zeros(node)
        if zeros is None:
            continue
        for z in zeros:
            aff = _zero_form(z, atoms)
            if aff is None:
                return None
            if any(c != 0 for c in aff[0]):
                out.append(aff)
    return tuple(dict.fromkeys(out))


@lru_cache(maxsize=2048)
def affine_soft(expr: sp.Expr, atoms: tuple):
    """The transitions of ``expr`` across hyperplanes, as a tuple of ``(a, b, width)``:
    tanh/sigmoid/erf/gelu of an affine argument ``a·x + b`` (width 1 in units of the argument),
    complex roots of the base of a negative or fractional power (:func:`algebraic_planes`), and
    its real roots, singular points given the width :data:`SINGULAR_WIDTH` so that quadrature
    grades its panels towards them."""
    aset = _atomset(atoms)
    out = []
    for node in sp.preorder_traversal(expr):
        if not (isinstance(node, sp.Basic) and node.free_symbols & aset):
            continue
        if isinstance(node, SOFT_FUNCTIONS):
            aff = affine_form(node.args[0], atoms)
            if aff is not None and any(c != 0 for c in aff[0]):
                out.append(aff + (sp.S.One,))
        elif is_algebraic_power(node):
            base = node.base.args[0] if isinstance(node.base, sp.Abs) else node.base
            planes = algebraic_planes(base, atoms) or ((), ())
            out += [(a, b, SINGULAR_WIDTH) for a, b in planes[0]] + list(planes[1])
    return tuple(dict.fromkeys(out))


# ----------------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class Factor:
    """A factor of a term: ``expr`` depends on ``atoms`` only; ``index`` are their positions in
    the atom tuple of the whole expectation."""

    expr: sp.Expr
    atoms: tuple
    index: tuple


@dataclass(frozen=True)
class Term:
    """``coef · Π factors`` where ``coef`` is free of atoms and the factors are independent."""

    coef: sp.Expr
    factors: tuple


def _components(n, edges):
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in edges:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[ri] = rj
    return [find(i) for i in range(n)]


@lru_cache(maxsize=1024)
def plan_expectation(expr: sp.Expr, atoms: tuple, zero_var: tuple, nonzero: frozenset):
    """Decompose ``E[expr]`` into a tuple of :class:`Term`.

    ``zero_var[i]`` says atom i has variance 0 at every batch point; ``nonzero`` is the set of
    pairs ``(i, j)`` (i < j) whose covariance is not identically zero.
    """
    zeros = {a: sp.S.Zero for a, z in zip(atoms, zero_var) if z}
    if zeros:
        expr = expr.xreplace(zeros)
    position = {a: i for i, a in enumerate(atoms)}
    aset = _atomset(atoms)
    terms = []
    for term in sp.Add.make_args(expr):
        if term == 0:
            continue
        coef, rest = term.as_independent(*atoms, as_Add=False)
        if not rest.free_symbols & aset:
            terms.append(Term(coef * rest, ()))
            continue
        args = [a for a in sp.Mul.make_args(rest)]
        used = sorted({position[s] for s in rest.free_symbols & aset})
        local = {g: n for n, g in enumerate(used)}
        edges = [(local[i], local[j]) for i in used for j in used
                 if i < j and (i, j) in nonzero]
        arg_atoms = []
        for a in args:
            idx = sorted(local[position[s]] for s in a.free_symbols & aset)
            arg_atoms.append(idx)
            edges += [(idx[0], j) for j in idx[1:]]
        comp = _components(len(used), edges)
        groups: dict[int, list] = {}
        for a, idx in zip(args, arg_atoms):
            if not idx:
                coef *= a
                continue
            groups.setdefault(comp[idx[0]], []).append(a)
        factors = []
        for root, members in sorted(groups.items()):
            fexpr = sp.Mul(*members)
            fidx = tuple(g for g in used if comp[local[g]] == root and atoms[g] in fexpr.free_symbols)
            factors.append(Factor(fexpr, tuple(atoms[g] for g in fidx), fidx))
        terms.append(Term(coef, tuple(factors)))
    return tuple(terms)
