"""Expectations up to the names of their atoms and parameters.

``E[ψ(x₁, …, x_k; θ)]`` over Gaussian atoms with covariance Σ depends on ψ, Σ and θ, not on what
the atoms are called.  A deep network asks the same expectation of every layer — ``relu`` of
that layer's Ẑ atom, the step of its pre-activation times its gradient — under other names, and
the symbolic work on an integrand (its decomposition into independent factors,
:mod:`.decompose`; the closed-form plan, :mod:`.closed_forms`; the quadrature plan,
:mod:`.quadrature`), all cached per integrand, is then redone once per layer.  Renaming the atoms
and parameters by their position (:func:`canonical`) before planning makes those caches hit
from the second layer on, so that a program of depth L is planned a bounded number of times
instead of L times (docs/performance.md, "Deep programs").
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from functools import lru_cache

import sympy as sp

from ..errors import ExpectationError


@lru_cache(maxsize=None)
def _symbol(prefix: str, i: int, assumptions: tuple) -> sp.Symbol:
    return sp.Symbol(f"_{prefix}{i}_", **dict(assumptions))


def _renamed(prefix: str, i: int, s: sp.Symbol) -> sp.Symbol:
    return _symbol(prefix, i, tuple(sorted(s._assumptions_orig.items())))


class Renaming:
    """An integrand with its atoms and parameters renamed by position (:func:`canonical`).

    Attributes
    ----------
    expr : sympy.Expr
        The renamed integrand.
    atoms : tuple of sympy.Symbol
        The renamed atoms, in the order given.
    params : dict
        ``{original parameter: renamed parameter}``.
    """

    def __init__(self, expr, atoms, params, back):
        self.expr = expr
        self.atoms = atoms
        self.params = params
        self._back = back

    def rename_values(self, values: dict) -> dict:
        """``{parameter: value}`` keyed by the renamed parameters."""
        return {self.params.get(s, s): v for s, v in values.items()}

    def restore(self, text: str) -> str:
        """``text`` (an error message) with the original names put back."""
        for new, old in self._back:
            text = text.replace(new, old)
        return text


@contextmanager
def original_names(*renamings: Renaming):
    """Errors (:class:`ExpectationError`) and warnings raised inside name the atoms and
    parameters as the caller did, not by position."""
    def restore(text):
        for named in renamings:
            text = named.restore(text)
        return text

    with warnings.catch_warnings(record=True) as caught:
        try:
            yield
        except ExpectationError as exc:
            raise type(exc)(restore(str(exc))) from None
    for w in caught:  # shown once per place and text, as a warning raised there would be
        warnings.warn_explicit(restore(str(w.message)), w.category, w.filename, w.lineno,
                               registry=_SHOWN)


#: The warnings registry of :func:`original_names` (the ``__warningregistry__`` it stands for).
_SHOWN: dict = {}


def canonical(expr: sp.Expr, atoms, params=(), start=(0, 0)) -> Renaming:
    """``expr`` with atom i named ``_a{i}_`` and parameter j named ``_p{j}_`` (each keeping its
    sympy assumptions), counting from ``start``.

    Parameters
    ----------
    expr : sympy.Expr
        An integrand over ``atoms`` and ``params``.
    atoms : sequence of sympy.Symbol
        The Gaussian atoms, in the order of their covariance's rows.
    params : sequence of sympy.Symbol
        The deterministic parameters.
    start : (int, int)
        The first atom and parameter numbers (the second factor of a product renamed apart
        from the first starts after it).

    Returns
    -------
    Renaming

    Example
    -------
    >>> h3, h7 = sp.symbols("h3 h7", real=True)
    >>> canonical(sp.Heaviside(h7) * h3, (h7, h3)).expr
    _a1_*Heaviside(_a0_)
    """
    sub = {s: _renamed("a", i, s) for i, s in enumerate(atoms, start[0])}
    sub.update({s: _renamed("p", j, s) for j, s in enumerate(params, start[1])})
    back = [(new.name, old.name) for old, new in sub.items()]
    return Renaming(expr.xreplace(sub), tuple(sub[s] for s in atoms),
                    {s: sub[s] for s in params}, back)


@lru_cache(maxsize=4096)
def expand_products(expr: sp.Expr, atoms: tuple) -> sp.Expr:
    """Products of sums distributed at the top level only (``E[(a + b)(c + d)] = E[ac] + …``,
    so that each term factorises over independent atom groups); function arguments and powers
    are left alone, and so are the factors free of ``atoms`` (per-member scalars such as the
    ``1/Σ_t mask_t`` of a masked mean): they multiply every term as they are, instead of being
    put over a common denominator with the atoms' ``exp(−u²)``, which no closed form reads.
    Cached: renamed integrands repeat.

    Example
    -------
    >>> u, v, c = sp.symbols("u v c", real=True)
    >>> expand_products(sp.exp(-u**2) * (u + v) / (c + 1), (u, v))
    u*exp(-u**2)/(c + 1) + v*exp(-u**2)/(c + 1)
    """
    const, rest = expr.as_independent(*atoms, as_Add=False)
    rest = rest.expand(deep=False, mul=True, multinomial=False, power_base=False,
                       power_exp=False, log=False)
    if const == 1:
        return rest
    return sp.Add(*[sp.Mul(const, term) for term in sp.Add.make_args(rest)])


def derivative(expr: sp.Expr, var: sp.Symbol) -> sp.Expr:
    """``∂expr/∂var``, computed once per integrand up to the names of its symbols (the
    derivative of ``relu(h7)`` is that of ``relu(_a0_)`` renamed back).

    Parameters
    ----------
    expr : sympy.Expr
    var : sympy.Symbol

    Returns
    -------
    sympy.Expr

    Example
    -------
    >>> from tensorprog.functions import relu
    >>> h = sp.Symbol("h7", real=True)
    >>> derivative(relu(h), h)
    step(h7)
    """
    others = sorted(expr.free_symbols - {var}, key=sp.default_sort_key)
    named = canonical(expr, (var, *others))
    back = {new: old for old, new in zip((var, *others), named.atoms)}
    return _derivative(named.expr, named.atoms[0]).xreplace(back)


@lru_cache(maxsize=4096)
def _derivative(expr: sp.Expr, var: sp.Symbol) -> sp.Expr:
    return sp.diff(expr, var)
