"""The printed form of a limit: one line per variable, in the program's own terms.

Each vector's line gives its Z through the Z of its arguments (``Z^{x2} = relu(Z^{h2} +
Z^{b1})``), each MATMUL its Ẑ and ZDOT terms (``Z^{z} = Ẑ^{W1ᵀ x2} + 2.0·c₁·Z^{x}`` with
``c₁ = E[∂Z^{x2}/∂Ẑ^{W1 x}]`` and its value), each scalar its limit θ̊.
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from ..ir.instructions import (Embedding, InitialMatrix, InitialScalar, InitialVector, MatMul,
                               Moment, Nonlin, Select, symbol)
from ..ir.rules import RuleTable
from .atoms import zhat_key


def _zsym(name: str) -> sp.Symbol:
    return sp.Symbol(f"Z^{{{name}}}", real=True)


def format_values(values: np.ndarray) -> str:
    """A short readable form of a per-input array (one number when constant)."""
    values = np.asarray(values)
    if values.dtype == object:
        uniq = {sp.srepr(v): v for v in values.ravel()}
        if len(uniq) == 1:
            return str(next(iter(uniq.values())))
        return f"[{', '.join(str(v) for v in values.ravel()[:4])}{', …' if values.size > 4 else ''}]"
    if values.size and np.allclose(values, values.ravel()[0], rtol=1e-12, atol=1e-15):
        return f"{values.ravel()[0]:.6g}"
    if values.size <= 6:
        return "[" + ", ".join(f"{v:.6g}" for v in values.ravel()) + "]"
    return f"[{values.min():.6g} … {values.max():.6g}] over {values.size} inputs"


class _Text:
    """The limit being printed: its lines and the ZDOT coefficient lines."""

    def __init__(self, limit):
        self.limit, self.lines, self.coef_lines = limit, [], []


#: ``LIMIT_TEXT(record, text)`` appends the record's line of the printed limit.
LIMIT_TEXT = RuleTable("limit text")


@LIMIT_TEXT.rule(InitialMatrix)
def _(node, out: _Text) -> None:
    """Matrices have no line: their MATMULs do."""


@LIMIT_TEXT.rule(Embedding, InitialVector)
def _(node, out: _Text) -> None:
    out.lines.append(f"  Z^{{{node.name}}} = Gaussian atom (ZINIT)")


def _body(node) -> sp.Expr:
    sub = {symbol(v): _zsym(v) for v in node.args}
    sub.update({symbol(s): sp.Symbol(f"θ̊_{s}", real=True) for s in node.scalars})
    return node.expr.xreplace(sub)


@LIMIT_TEXT.rule(Nonlin)
def _(node: Nonlin, out: _Text) -> None:
    out.lines.append(f"  Z^{{{node.name}}} = {_body(node)}")


@LIMIT_TEXT.rule(Moment)
def _(node: Moment, out: _Text) -> None:
    out.lines.append(f"  θ̊_{node.name} = E[{_body(node)}] = "
                     f"{format_values(out.limit.scalars[node.name])}")


@LIMIT_TEXT.rule(Select)
def _(node: Select, out: _Text) -> None:
    out.lines.append(f"  Z^{{{node.name}}} = Z^{{{node.arg}}}[index] in {node.family} (SELECT)")


@LIMIT_TEXT.rule(InitialScalar)
def _(node: InitialScalar, out: _Text) -> None:
    out.lines.append(f"  θ̊_{node.name} = {node.value}")


@LIMIT_TEXT.rule(MatMul)
def _(node: MatMul, out: _Text) -> None:
    limit, name = out.limit, node.name
    terms = [str(limit.leaves.natural(limit.leaves.base(zhat_key(name)), limit.size(name)))]
    for c, sigma2, y, idx in limit.zdot[name]:
        label = f"c{len(out.coef_lines) + 1}"
        base = limit.leaves.info[c][0]
        out.coef_lines.append(f"  {label} = {base.display} = {format_values(base.values)}")
        terms.append(f"{sigma2}·{label}·Z^{{{y}}}")
    out.lines.append(f"  Z^{{{name}}} = " + " + ".join(terms))


def limit_to_text(limit) -> str:
    """The printed limit (module docstring)."""
    p = limit.program
    inputs = f"{p.num_inputs} inputs" if p.num_inputs else "no inputs"
    out = _Text(limit)
    out.lines.append(f"Master-Theorem limit of program {p.name!r} "
                     f"({inputs}; Z expressions hold for every input ξ_i)")
    for node in p.nodes():
        LIMIT_TEXT(node, out)
    if out.coef_lines:
        out.lines.append("ZDOT coefficients:")
        out.lines.extend(out.coef_lines)
    return "\n".join(out.lines)
