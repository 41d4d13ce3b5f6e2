"""Reduced programs (TP IIb Definition 5.4).

In a reduced program only G-vars (initial vectors, MATMUL results) are arguments of NONLIN and
MOMENT, and only X-vars (NONLIN results) are arguments of MATMUL and of the readout.  Any
program becomes reduced by (1) composing chains of NONLINs into one ψ and (2) inserting the
identity NONLIN ``x := g`` between a G-var ``g`` and a MATMUL (or readout) that uses it.
"""
from __future__ import annotations

from dataclasses import replace

import sympy as sp

from .instructions import (Embedding, InitialMatrix, InitialScalar, InitialVector, MatMul,
                           Moment, Nonlin, Select, symbol)
from .rewrite import Rewrite, keep
from .rules import RuleTable

REDUCE = RuleTable("reduce")
REDUCE.rule(InitialMatrix, Embedding, InitialVector, InitialScalar)(keep)


class _Reduction(Rewrite):
    def __init__(self, p):
        super().__init__(p, p.empty_like(), REDUCE)
        self.composed: dict[str, sp.Expr] = {}  # X-var -> ψ over G-vars and scalars
        self.identity: dict[str, str] = {}      # G-var -> inserted identity X-var

    def as_xvar(self, name: str) -> str:
        """``name`` as an X-var of the target: its composed NONLIN, or an identity NONLIN."""
        q = self.target
        if self.source.node(name).is_xvar:
            if name not in q:
                q.add_inferred("nonlin", name, self.composed[name])
            return name
        if name not in self.identity:
            self.identity[name] = q.fresh_name(f"{name}_x")
            q.add_nonlin(self.identity[name], symbol(name), [name])
        return self.identity[name]

    def compose(self, node) -> sp.Expr:
        return node.expr.xreplace({symbol(x): self.composed[x] for x in node.args
                                   if x in self.composed})


@REDUCE.rule(MatMul, Select)
def _(node, rw: _Reduction) -> None:
    rw.target.append(replace(node, arg=rw.as_xvar(node.arg)))


@REDUCE.rule(Nonlin)
def _(node: Nonlin, rw: _Reduction) -> None:
    rw.composed[node.name] = rw.compose(node)


@REDUCE.rule(Moment)
def _(node: Moment, rw: _Reduction) -> None:
    rw.target.add_inferred("moment", node.name, rw.compose(node))


def reduce_program(p):
    """The reduced form of ``p`` (module docstring)."""
    rw = _Reduction(p)
    q = rw.run()
    if p.readout is not None:
        r = p.readout
        q.set_readout(rw.as_xvar(r.node), r.var, r.bias_var, r.trainable, slots=r.slots)
    return q
