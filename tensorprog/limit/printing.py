"""The printed form of a limit: one line per variable, in the program's own terms.

Each vector's line gives its Z through the Z of its arguments (``Z^{x2} = relu(Z^{h2} +
Z^{b1})``), each MATMUL its Ẑ and ZDOT terms (``Z^{z} = Ẑ^{W1ᵀ x2} + 2.0·c₁·Z^{x}`` with
``c₁ = E[∂Z^{x2}/∂Ẑ^{W1 x}]`` and its value), each scalar its limit θ̊ (TP IIb Def. B.3;
``docs/theory.md`` §2.2).

One rule table, :data:`LIMIT_TEXT`, says what each instruction contributes; a *style* says how
it is written: :class:`Plain` for ``print(tp.limit(p))`` (:func:`limit_to_text`) and
:class:`Latex` for an ``align*`` environment (:func:`limit_to_latex`,
``tensorprog show --latex``).
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


class Plain:
    """The plain-text style of a printed limit (one indented line per variable)."""

    def theta(self, name: str) -> sp.Symbol:
        return sp.Symbol(f"θ̊_{name}", real=True)

    def expr(self, e: sp.Expr) -> str:
        return str(e)

    def zinit(self, name: str) -> str:
        return f"  Z^{{{name}}} = Gaussian atom (ZINIT)"

    def nonlin(self, name: str, body: str) -> str:
        return f"  Z^{{{name}}} = {body}"

    def moment(self, name: str, body: str, values) -> str:
        return f"  θ̊_{name} = E[{body}] = {format_values(values)}"

    def select(self, node: Select) -> str:
        return f"  Z^{{{node.name}}} = Z^{{{node.arg}}}[index] in {node.family} (SELECT)"

    def scalar(self, name: str, value) -> str:
        return f"  θ̊_{name} = {value}"

    def zhat(self, limit, node: MatMul) -> str:
        return str(limit.leaves.natural(limit.leaves.base(zhat_key(node.name)),
                                        limit.size(node.name)))

    def zdot(self, sigma2, k: int, y: str) -> str:
        return f"{sigma2}·c{k}·Z^{{{y}}}"

    def coefficient(self, k: int, base) -> str:
        return f"  c{k} = {base.display} = {format_values(base.values)}"

    def matmul(self, name: str, terms: list) -> str:
        return f"  Z^{{{name}}} = " + " + ".join(terms)


def _latex_value(values) -> str:
    """One number when every member agrees, else the tuple over the members."""
    values = np.asarray(values, dtype=object).ravel()
    distinct = list(dict.fromkeys(values.tolist()))
    if len(distinct) == 1:
        return sp.latex(sp.sympify(distinct[0]))
    return r"\left(" + ", ".join(sp.latex(sp.sympify(v)) for v in values) + r"\right)_i"


class Latex:
    """The LaTeX style: one ``align*`` row per variable (a SELECT, a view, has none)."""

    def theta(self, name: str) -> sp.Symbol:
        return sp.Symbol(rf"\mathring{{\theta}}_{{{name}}}")

    def expr(self, e: sp.Expr) -> str:
        return sp.latex(e)

    def zinit(self, name: str) -> str:
        return rf"Z^{{{name}}} &\sim \text{{Gaussian atom (ZINIT)}}"

    def nonlin(self, name: str, body: str) -> str:
        return rf"Z^{{{name}}} &= {body}"

    def moment(self, name: str, body: str, values) -> str:
        return (rf"\mathring{{\theta}}_{{{name}}} &= \mathbb{{E}}\left[{body}\right]"
                rf" = {_latex_value(values)}")

    def select(self, node: Select) -> None:
        return None

    def scalar(self, name: str, value) -> str:
        return rf"\mathring{{\theta}}_{{{name}}} &= {_latex_value(value)}"

    def matmul(self, name: str, terms: list) -> str:
        return rf"Z^{{{name}}} &= " + " + ".join(terms)

    def zhat(self, limit, node: MatMul) -> str:
        return rf"\hat Z^{{{node.matrix}{'^T' if node.transpose else ''} {node.arg}}}"

    def coefficient(self, k: int, base) -> str:
        return rf"c_{{{k}}} &= {_latex_value(base.values)}"

    def zdot(self, sigma2, k: int, y: str) -> str:
        return rf"{sp.latex(sp.sympify(sigma2))}\, c_{{{k}}}\, Z^{{{y}}}"


class _Text:
    """The limit being printed in a style: its lines and the ZDOT coefficient lines."""

    def __init__(self, limit, style):
        self.limit, self.style, self.lines, self.coef_lines = limit, style, [], []

    def add(self, line) -> None:
        if line is not None:
            self.lines.append(line)


#: ``LIMIT_TEXT(record, text)`` appends the record's line of the printed limit.
LIMIT_TEXT = RuleTable("limit text")


@LIMIT_TEXT.rule(InitialMatrix)
def _(node, out: _Text) -> None:
    """Matrices have no line: their MATMULs do."""


@LIMIT_TEXT.rule(Embedding, InitialVector)
def _(node, out: _Text) -> None:
    out.add(out.style.zinit(node.name))


def _body(node, style) -> str:
    sub = {symbol(v): _zsym(v) for v in node.args}
    sub.update({symbol(s): style.theta(s) for s in node.scalars})
    return style.expr(node.expr.xreplace(sub))


@LIMIT_TEXT.rule(Nonlin)
def _(node: Nonlin, out: _Text) -> None:
    out.add(out.style.nonlin(node.name, _body(node, out.style)))


@LIMIT_TEXT.rule(Moment)
def _(node: Moment, out: _Text) -> None:
    out.add(out.style.moment(node.name, _body(node, out.style), out.limit.scalars[node.name]))


@LIMIT_TEXT.rule(Select)
def _(node: Select, out: _Text) -> None:
    out.add(out.style.select(node))


@LIMIT_TEXT.rule(InitialScalar)
def _(node: InitialScalar, out: _Text) -> None:
    out.add(out.style.scalar(node.name, node.value))


@LIMIT_TEXT.rule(MatMul)
def _(node: MatMul, out: _Text) -> None:
    limit, style = out.limit, out.style
    terms = [style.zhat(limit, node)]
    for c, sigma2, y, _ in limit.zdot[node.name]:
        k = len(out.coef_lines) + 1
        out.coef_lines.append(style.coefficient(k, limit.leaves.info[c][0]))
        terms.append(style.zdot(sigma2, k, y))
    out.add(style.matmul(node.name, terms))


def _written(limit, style) -> _Text:
    out = _Text(limit, style)
    for node in limit.program.nodes():
        LIMIT_TEXT(node, out)
    return out


def limit_to_text(limit) -> str:
    """The printed limit (module docstring)."""
    p = limit.program
    inputs = f"{p.num_inputs} inputs" if p.num_inputs else "no inputs"
    out = _written(limit, Plain())
    lines = [f"Master-Theorem limit of program {p.name!r} "
             f"({inputs}; Z expressions hold for every input ξ_i)"] + out.lines
    if out.coef_lines:
        lines += ["ZDOT coefficients:"] + out.coef_lines
    return "\n".join(lines)


def limit_to_latex(limit) -> str:
    """The limit as a LaTeX ``align*`` environment: a row per vector and scalar (closed forms
    in the Gram entries ``G_{i,j}`` when the limit is symbolic), then the ZDOT coefficients.

    Parameters
    ----------
    limit : Limit
        A derived limit (``tp.limit(p)``, numeric or symbolic).

    Returns
    -------
    str
        ``\\begin{align*} … \\end{align*}``.

    Example
    -------
    >>> import tensorprog as tp
    >>> print(limit_to_latex(tp.limit(tp.demo_program(moment=True))).splitlines()[-2])
    \\mathring{\\theta}_{th} &= \\mathbb{E}\\left[\\left(Z^{y}\\right)^{2}\\right] = 0.55
    """
    out = _written(limit, Latex())
    return "\\begin{align*}\n" + " \\\\\n".join(out.lines + out.coef_lines) + "\n\\end{align*}"
