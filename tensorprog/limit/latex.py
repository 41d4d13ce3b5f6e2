"""The LaTeX form of a limit (``tensorprog show --latex``).

One ``align*`` row per instruction, as in the printed limit (:mod:`.printing`): the Z of every
initial vector (a ZINIT atom) and NONLIN, the Ẑ and ZDOT terms of every MATMUL (TP IIb
Def. B.3; ``docs/theory.md`` §2.2), the limit θ̊ of every scalar (closed forms in the Gram
entries ``G_{i,j}`` with ``tp.limit(p, symbolic=True)``), then the ZDOT coefficients.
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from ..ir.instructions import (Embedding, InitialMatrix, InitialScalar, InitialVector, MatMul,
                               Moment, Nonlin, Select, symbol)
from ..ir.rules import RuleTable


def _z(name: str) -> sp.Symbol:
    return sp.Symbol(f"Z^{{{name}}}", real=True)


def _value(values) -> str:
    """One number when every member agrees, else the tuple over the members."""
    values = np.asarray(values, dtype=object).ravel()
    distinct = list(dict.fromkeys(values.tolist()))
    if len(distinct) == 1:
        return sp.latex(sp.sympify(distinct[0]))
    return r"\left(" + ", ".join(sp.latex(sp.sympify(v)) for v in values) + r"\right)_i"


def _body(node) -> str:
    sub = {symbol(v): _z(v) for v in node.args}
    sub.update({symbol(s): sp.Symbol(rf"\mathring{{\theta}}_{{{s}}}") for s in node.scalars})
    return sp.latex(node.expr.xreplace(sub))


class _Rows:
    """The limit being written: its rows and the ZDOT coefficient rows."""

    def __init__(self, limit):
        self.limit, self.rows, self.coefficients = limit, [], []


#: ``LIMIT_LATEX(record, rows)`` appends the record's row of the LaTeX limit.
LIMIT_LATEX = RuleTable("limit latex")


@LIMIT_LATEX.rule(InitialMatrix, Select)
def _(node, out: _Rows) -> None:
    """Matrices have no row (their MATMULs do); a SELECT is a view of its argument's Z."""


@LIMIT_LATEX.rule(Embedding, InitialVector)
def _(node, out: _Rows) -> None:
    out.rows.append(rf"Z^{{{node.name}}} &\sim \text{{Gaussian atom (ZINIT)}}")


@LIMIT_LATEX.rule(InitialScalar)
def _(node: InitialScalar, out: _Rows) -> None:
    out.rows.append(rf"\mathring{{\theta}}_{{{node.name}}} &= {_value(node.value)}")


@LIMIT_LATEX.rule(Nonlin)
def _(node: Nonlin, out: _Rows) -> None:
    out.rows.append(rf"Z^{{{node.name}}} &= {_body(node)}")


@LIMIT_LATEX.rule(Moment)
def _(node: Moment, out: _Rows) -> None:
    out.rows.append(rf"\mathring{{\theta}}_{{{node.name}}} &= \mathbb{{E}}\left[{_body(node)}\right]"
                    rf" = {_value(out.limit.scalars[node.name])}")


@LIMIT_LATEX.rule(MatMul)
def _(node: MatMul, out: _Rows) -> None:
    limit = out.limit
    terms = [rf"\hat Z^{{{node.matrix}{'^T' if node.transpose else ''} {node.arg}}}"]
    for c, sigma2, y, _ in limit.zdot[node.name]:
        k = len(out.coefficients) + 1
        out.coefficients.append(rf"c_{{{k}}} &= {_value(limit.leaves.info[c][0].values)}")
        terms.append(rf"{sp.latex(sp.sympify(sigma2))}\, c_{{{k}}}\, Z^{{{y}}}")
    out.rows.append(rf"Z^{{{node.name}}} &= " + " + ".join(terms))


def limit_to_latex(limit) -> str:
    """The limit as a LaTeX ``align*`` environment (module docstring).

    Parameters
    ----------
    limit : Limit
        A derived limit (``tp.limit(p)``, numeric or symbolic).

    Returns
    -------
    str
        ``\\begin{align*} … \\end{align*}``, one row per vector, scalar and ZDOT coefficient.

    Example
    -------
    >>> import tensorprog as tp
    >>> print(limit_to_latex(tp.limit(tp.demo_program(moment=True))).splitlines()[-2])
    \\mathring{\\theta}_{th} &= \\mathbb{E}\\left[\\left(Z^{y}\\right)^{2}\\right] = 0.55
    """
    out = _Rows(limit)
    for node in limit.program.nodes():
        LIMIT_LATEX(node, out)
    return "\\begin{align*}\n" + " \\\\\n".join(out.rows + out.coefficients) + "\n\\end{align*}"
