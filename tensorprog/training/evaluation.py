"""The Master-Theorem limit of an unrolled training program.

The program's δ-vectors are sums (one term per update) and a NONLIN of a δ-vector multiplies
such sums (``δx = ψ'(h)·δh``, TP IIb Eq. 93), so its Z-expressions are nested products of sums.
:class:`TrainingLimit` multiplies them out at every level before an expectation is taken, so
that the engine's linearity and independence rules reduce every term to a few correlated atoms
(closed forms where the single-layer kernels have them) instead of one high-dimensional
integral.  A term that is linear in an atom of an independence class (initial vectors, or
the ZHAT family of one matrix orientation) that no other atom of the product belongs to has
expectation 0 and is dropped before any integral: the backward atoms ``Ẑ^{Wᵀ dg}`` enter the
δ-vectors this way.  The values are the Master Theorem's (TP IIb Thm B.4) either way.
"""
from __future__ import annotations

import sympy as sp

from ..limit import Limit


def distribute(expr: sp.Expr) -> sp.Expr:
    """``expr`` with every product of sums multiplied out (powers and functions kept)."""
    return sp.expand(expr, deep=True, mul=True, multinomial=False, power_exp=False,
                     power_base=False, log=False)


class TrainingLimit(Limit):
    """:class:`~tensorprog.limit.Limit` whose expectations see distributed expressions with
    the terms of zero mean removed (module docstring)."""

    def _single_form(self, expr):
        return self._prune(distribute(expr))

    def expect_pair(self, ea, ma, eb, mb):
        ea, eb = distribute(ea), distribute(eb)
        ga, gb = self._groups(ea), self._groups(eb)
        return super().expect_pair(self._prune(ea, gb), ma, self._prune(eb, ga), mb)

    def _group(self, atom):
        base = self.leaves.info[atom][0]
        return base.group if base.kind in ("init", "zhat") else None

    def _groups(self, expr) -> list:
        return [g for g in (self._group(a) for a in self.leaves.split(expr)[0]) if g]

    def _prune(self, expr, partner_groups=()) -> sp.Expr:
        atoms = set(self.leaves.split(expr)[0])
        if not atoms:
            return expr
        kept = []
        for term in sp.Add.make_args(expr):
            present = [a for a in term.free_symbols & atoms if self._group(a)]
            groups = [self._group(a) for a in present] + list(partner_groups)
            if not any(groups.count(self._group(a)) == 1 and
                       term.as_independent(a, as_Add=False)[1] == a for a in present):
                kept.append(term)
        return sp.Add(*kept)
