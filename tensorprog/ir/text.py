"""The textual form of a program, in the style of TP IIb Algorithm 1, and its parser.

Example (the README's MLP)::

    PROGRAM mlp inputs=6
    INPUT:  h1 := embed(X1, var=2.0, bias_var=0.1)
    MATRIX: W1 ~ N(0, 2.0/n)
    VECTOR: b1 ~ N(0, 0.1); bias
    NONLIN: x1 := relu(h1)
    MATMUL: h2 := W1 x1
    ...
    MOMENT: th1 := avg(x3**2)
    MATMUL: h4 := W1^T x3
    OUTPUT: readout(x3, var=2.0, bias_var=0.1)
    DATA:   X1 = [[...], ...]

One instruction per line; line k+1 holds the k-th variable, so error messages can cite lines.
Options follow a ``;`` (``trainable=False``, ``bias`` for a trainable shared vector,
``cross(v=C2)`` for covariances with earlier initial vectors, ``lr=…`` and ``bias_lr=…`` for
learning-rate multipliers other than 1 of trainable tensors).  ``#`` starts a comment.
``DATA`` lines hold arrays (inputs, covariances) as Python literals of full precision, so the
text round-trips exactly: ``Program.from_text(p.to_text()) == p``.  Unknown option or keyword
names, a second ``DATA`` line for one name and non-finite data are errors.

Printing and parsing are one rule per instruction record class (:data:`PRINT`, :data:`PARSE`);
a line's keyword (``MATMUL``, ...) names its record class (:data:`KEYWORDS`).
"""
from __future__ import annotations

import ast
import re
from dataclasses import replace

import numpy as np
import sympy as sp
from sympy.printing.str import StrPrinter

from ..errors import ParseError, ProgramError
from .expression import parse_expression
from .instructions import (INPUTS, SHARED, Embedding, InitialMatrix, InitialScalar,
                           InitialVector, MatMul, Moment, Nonlin, Select, symbol)
from .parametrization import NTK_HIDDEN, check_lr
from .rules import RuleTable


class _Printer(StrPrinter):
    """sympy's str printer with floats printed to full (round-trip) precision."""

    def _print_Float(self, expr):
        return repr(float(expr))


def expr_to_text(expr) -> str:
    """ψ printed so that the parser reads back the same expression (floats in full)."""
    return _Printer().doprint(expr)


def _options(items) -> str:
    items = [i for i in items if i]
    return ("; " + ", ".join(items)) if items else ""


def _lr_options(par, bias_par=None) -> list:
    """``lr=…`` / ``bias_lr=…`` for learning-rate multipliers other than the default 1."""
    pairs = [("lr", par), ("bias_lr", bias_par)]
    return [f"{key}={p.lr!r}" for key, p in pairs if p is not None and p.lr != 1.0]


# ---------------------------------------------------------------------- printing
#: ``PRINT(record, p, arrays, data)`` -> the record's line; arrays it refers to go in ``arrays``.
PRINT = RuleTable("print")


def _in_family(node) -> str:
    return f"family={node.family}" if node.family not in (SHARED, INPUTS) else ""


@PRINT.rule(InitialMatrix)
def _(node: InitialMatrix, p, arrays, data) -> str:
    var, opts = repr(node.var), ["trainable=False" if not node.trainable else ""]
    if node.generated:
        var = f"S_{node.name}"
        arrays[var], arrays[f"T_{node.name}"] = node.var, node.tangent
        opts.append(f"tangent=T_{node.name}")
    opts += _lr_options(node.parametrization)
    return f"MATRIX: {node.name} ~ N(0, {var}/n)" + _options(opts)


@PRINT.rule(Embedding)
def _(node: Embedding, p, arrays, data) -> str:
    X = arrays[node.data] = p.data[node.data]
    opts = [] if node.weight == f"U_{node.name}" else [f"weight={node.weight}"]
    opts += [_in_family(node)] if _in_family(node) else []
    line = (f"INPUT:  {node.name} := embed({node.data}, var={node.var!r}, "
            f"bias_var={node.bias_var!r}{''.join(', ' + o for o in opts)})")
    line += _options(["trainable=False" if not node.trainable else ""]
                     + _lr_options(node.parametrization, node.bias_parametrization))
    if not data:
        line += f"   # {node.data}: {X.shape[0]}×{X.shape[1]}"
    return line


@PRINT.rule(InitialVector)
def _(node: InitialVector, p, arrays, data) -> str:
    if node.family == SHARED:
        cov = repr(node.var)
    else:
        cov = f"C_{node.name}"
        arrays[cov] = p.init_cov_of(node.name, node.name)
    cross = []
    for other in p.covariance_partners(node.name):
        if isinstance(p.node(other), InitialVector):
            key = f"C_{node.name}_{other}"
            arrays[key] = p.init_cov[(node.name, other)]
            cross.append(f"{other}={key}")
    if node.tangent is not None:
        arrays[f"T_{node.name}"] = node.tangent
    bias = node.source == "bias"
    opts = ["bias" if bias else "",
            f"tangent=T_{node.name}" if node.tangent is not None else "",
            "trainable=False" if bias and not node.trainable else "",
            "trainable=True" if not bias and node.trainable else "",
            f"cross({', '.join(cross)})" if cross else "", _in_family(node)]
    opts += _lr_options(node.parametrization)
    return f"VECTOR: {node.name} ~ N(0, {cov})" + _options(opts)


@PRINT.rule(InitialScalar)
def _(node: InitialScalar, p, arrays, data) -> str:
    return f"SCALAR: {node.name} := {node.value!r}"


@PRINT.rule(MatMul)
def _(node: MatMul, p, arrays, data) -> str:
    return node.headline()  # "MATMUL: h := W x" or "MATMUL: h := W^T x"


@PRINT.rule(Select)
def _(node: Select, p, arrays, data) -> str:
    key = f"I_{node.name}"
    arrays[key] = node.index
    return f"SELECT: {node.name} := {node.arg}[{key}] in {node.family}"


@PRINT.rule(Nonlin, Moment)
def _(node, p, arrays, data) -> str:
    psi = expr_to_text(node.expr)
    return f"{node.kind.upper()}: {node.name} := " + (
        f"avg({psi})" if isinstance(node, Moment) else psi)


def program_to_text(p, data: bool = True) -> str:
    """Print ``p``; with ``data=False`` the DATA lines are replaced by shape comments."""
    lines = [f"PROGRAM {p.name} inputs={p.num_inputs if p.num_inputs is not None else 0}"]
    arrays: dict[str, np.ndarray] = {}
    for fam in p.families.values():
        if fam.name not in (SHARED, INPUTS):
            arrays[f"O_{fam.name}"] = fam.owner
            lines.append(f"FAMILY: {fam.name} owner=O_{fam.name}")
    lines += [PRINT(node, p, arrays, data) for node in p.nodes()]
    if p.readout is not None:
        r = p.readout
        if r.slots is not None:
            arrays["S_out"] = np.array(r.slots)
        lines.append(f"OUTPUT: readout({r.node}, var={r.var!r}, bias_var={r.bias_var!r})"
                     + _options(["trainable=False" if not r.trainable else "",
                                 "slots=S_out" if r.slots is not None else ""]
                                + _lr_options(r.parametrization, r.bias_parametrization)))
    if data:
        for key, arr in arrays.items():
            lines.append(f"DATA:   {key} = {np.asarray(arr).tolist()!r}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- parsing
_HEADER = re.compile(r"^PROGRAM\s+(\S+)\s+inputs=(\d+)$")
_LINE = re.compile(
    r"^(FAMILY|INPUT|MATRIX|VECTOR|SCALAR|MATMUL|SELECT|NONLIN|MOMENT|OUTPUT|DATA)\s*:\s*(.*)$")
_FAMILY = re.compile(r"^(\w+)\s+owner=(\w+)$")
_SELECT = re.compile(r"^(\w+)\[(\w+)\]\s+in\s+(\w+)$")
_ASSIGN = re.compile(r"^(\w+)\s*:=\s*(.+)$")
_MATRIX = re.compile(r"^(\w+)\s*~\s*N\(\s*0\s*,\s*([^/]+)/\s*n\s*\)$")
_VECTOR = re.compile(r"^(\w+)\s*~\s*N\(\s*0\s*,\s*([^)]+)\)$")
_MATMUL = re.compile(r"^(\w+)(\^T)?\s+(\w+)$")
_CALL = re.compile(r"^(\w+)\((.*)\)$")
_IDENT = re.compile(r"^[A-Za-z_]\w*$")

#: The record class of each instruction keyword.
KEYWORDS = {"INPUT": Embedding, "MATRIX": InitialMatrix, "VECTOR": InitialVector,
            "SCALAR": InitialScalar, "MATMUL": MatMul, "SELECT": Select, "NONLIN": Nonlin,
            "MOMENT": Moment}


def _number(text: str, where) -> float:
    try:
        value = ast.literal_eval(text.strip())
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError
        return float(value)
    except (ValueError, SyntaxError):
        raise ParseError(f"expected a number, got {text.strip()!r}", *where) from None


def _keys(given, valid, what: str, where) -> None:
    unknown = [k for k in given if k not in valid]
    if unknown:
        raise ParseError(f"unknown {what} {unknown[0]!r}; valid: "
                         f"{', '.join(sorted(valid)) or 'none'}", *where)


def _kwargs(text: str, valid, where) -> tuple[list[str], dict[str, str]]:
    pos, kw = [], {}
    for part in [s.strip() for s in text.split(",") if s.strip()]:
        if "=" in part:
            k, v = part.split("=", 1)
            kw[k.strip()] = v.strip()
        else:
            pos.append(part)
    _keys(kw, valid, "keyword", where)
    return pos, kw


def _bool(text: str, where) -> bool:
    if text not in ("True", "False"):
        raise ParseError(f"expected True or False, got {text!r}", *where)
    return text == "True"


def parse_psi(p, text: str, where, later: dict | None = None) -> sp.Expr:
    """Parse a ψ expression over the program's variables with the project's own grammar
    (:mod:`.expression`: never ``eval``); ``later`` maps names defined further down to their
    lines, for a precise message when one is used too early."""
    names = {n: symbol(n) for n in p.order if p.node(n).output != "matrix"}
    try:
        expr = parse_expression(text, names, line=where[1], instruction=where[0])
    except ParseError as e:
        if e.token in (later or {}):
            raise ParseError(
                f"{e.token!r} is not defined before this instruction (it is defined on line "
                f"{later[e.token]}); a variable cannot depend on a later one, so this is a cycle: "
                "unroll recurrences over time steps", *where) from None
        raise
    return expr.xreplace({f: sp.Float(float(f)) for f in expr.atoms(sp.Float)})


class _Line:
    """One instruction line being parsed: its text split into the main part and options."""

    def __init__(self, p, lineno, line, keyword, rest, arrays, later):
        self.p, self.where, self.keyword = p, (line, lineno), keyword
        self.arrays, self.later = arrays, later
        main, _, opt_text = rest.partition(";")
        self.main = main.strip()
        self.opts = [o.strip() for o in re.split(r",(?![^()]*\))", opt_text) if o.strip()]
        self.flags = {o.split("=", 1)[0].strip(): (o.split("=", 1)[1].strip() if "=" in o
                                                   else "True")
                      for o in self.opts if not o.startswith("cross(")}

    def options(self, *valid) -> None:
        """Only the options ``valid`` may appear."""
        given = list(self.flags) + ["cross" for o in self.opts if o.startswith("cross(")]
        _keys(given, valid, "option", self.where)

    def array(self, key):
        if key not in self.arrays:
            raise ParseError(f"no data for {key!r}: add a `DATA: {key} = [...]` line or pass "
                             f"data={{{key!r}: array}}", *self.where)
        return self.arrays[key]

    def fail(self, message):
        raise ParseError(message, *self.where)

    def lr(self, par, key: str = "lr"):
        """``par`` with the learning-rate multiplier of option ``key`` (unchanged without it)."""
        if key not in self.flags:
            return par
        value = _number(self.flags[key], self.where)
        return par.with_lr(check_lr(value, key, self.where[0]))

    def assignment(self, form: str, rhs=None):
        """``(name, right-hand side)`` of an assignment line without options; with the pattern
        ``rhs``, the right-hand side's match.  Fails with ``form`` when the line does not read
        so."""
        self.options()
        m = _ASSIGN.match(self.main)
        sub = rhs.match(m.group(2)) if m and rhs is not None else None
        if not m or (rhs is not None and not sub):
            self.fail(form)
        return m.group(1), m.group(2) if rhs is None else sub


#: ``PARSE.of(cls)(line)`` adds the instruction of a line whose keyword names record class
#: ``cls`` (:data:`KEYWORDS`).
PARSE = RuleTable("parse")


@PARSE.rule(InitialMatrix)
def _(ln: _Line) -> None:
    ln.options("trainable", "tangent", "lr")
    m = _MATRIX.match(ln.main)
    if not m:
        ln.fail("MATRIX must read `W ~ N(0, var/n)`; every matrix is n×n")
    var_text = m.group(2).strip()
    ln.p.add_matrix(m.group(1), ln.array(var_text) if _IDENT.match(var_text)
                    else _number(var_text, ln.where),
                    trainable=_bool(ln.flags.get("trainable", "True"), ln.where),
                    tangent=ln.array(ln.flags["tangent"]) if "tangent" in ln.flags else None,
                    parametrization=ln.lr(NTK_HIDDEN))


@PARSE.rule(Embedding)
def _(ln: _Line) -> None:
    ln.options("trainable", "lr", "bias_lr")
    m = _ASSIGN.match(ln.main)
    call = _CALL.match(m.group(2)) if m else None
    if not call or call.group(1) != "embed":
        ln.fail("INPUT must read `h := embed(X, var=..., bias_var=...)`")
    pos, kw = _kwargs(call.group(2), ("var", "bias_var", "weight", "family"), ln.where)
    if len(pos) != 1:
        ln.fail("embed takes one data name")
    ln.p.add_embedding(m.group(1), ln.array(pos[0]), _number(kw.get("var", "1.0"), ln.where),
                       _number(kw.get("bias_var", "0.0"), ln.where), weight=kw.get("weight"),
                       trainable=_bool(ln.flags.get("trainable", "True"), ln.where),
                       data_name=pos[0], family=kw.get("family", INPUTS))
    node = ln.p.node(m.group(1))
    ln.p.replace(node.name, parametrization=ln.lr(node.parametrization),
                 bias_parametrization=ln.lr(node.bias_parametrization, "bias_lr"))


@PARSE.rule(InitialVector)
def _(ln: _Line) -> None:
    ln.options("bias", "tangent", "trainable", "cross", "family", "lr")
    m = _VECTOR.match(ln.main)
    if not m:
        ln.fail("VECTOR must read `v ~ N(0, var)` or `v ~ N(0, C)` with C a DATA array")
    cov_text = m.group(2).strip()
    cov = ln.array(cov_text) if _IDENT.match(cov_text) else _number(cov_text, ln.where)
    cross = {}
    for o in ln.opts:
        if o.startswith("cross("):
            for part in o[len("cross("):-1].split(","):
                k, _, v = part.partition("=")
                cross[k.strip()] = ln.array(v.strip())
    bias = "bias" in ln.flags
    trainable = _bool(ln.flags.get("trainable", "True" if bias else "False"), ln.where)
    ln.p.add_vector(m.group(1), cov, cross=cross, trainable=trainable,
                    source="bias" if bias else "given", family=ln.flags.get("family"),
                    tangent=ln.array(ln.flags["tangent"]) if "tangent" in ln.flags else None)
    ln.p.replace(m.group(1), parametrization=ln.lr(ln.p.node(m.group(1)).parametrization))


@PARSE.rule(InitialScalar)
def _(ln: _Line) -> None:
    name, value = ln.assignment("SCALAR must read `s := value`")
    ln.p.add_scalar(name, _number(value, ln.where))


@PARSE.rule(MatMul)
def _(ln: _Line) -> None:
    name, mm = ln.assignment("MATMUL must read `h := W x` or `h := W^T x`", _MATMUL)
    ln.p.add_matmul(name, mm.group(1), mm.group(3), bool(mm.group(2)))


@PARSE.rule(Select)
def _(ln: _Line) -> None:
    name, sel = ln.assignment("SELECT must read `y := x[I] in family`", _SELECT)
    ln.p.add_select(name, sel.group(1), ln.array(sel.group(2)).astype(np.intp), sel.group(3))


@PARSE.rule(Nonlin)
def _(ln: _Line) -> None:
    name, psi = ln.assignment("NONLIN must read `x := ψ(...)`")
    ln.p.add_inferred("nonlin", name, parse_psi(ln.p, psi, ln.where, ln.later))


@PARSE.rule(Moment)
def _(ln: _Line) -> None:
    name, rhs = ln.assignment("MOMENT must read `x := ψ(...)`")
    call = _CALL.match(rhs)
    if not call or call.group(1) != "avg":
        ln.fail("MOMENT must read `θ := avg(ψ(...))`")
    ln.p.add_inferred("moment", name, parse_psi(ln.p, call.group(2), ln.where, ln.later))


def _family(ln: _Line) -> None:
    ln.options()
    m = _FAMILY.match(ln.main)
    if not m:
        ln.fail("FAMILY must read `name owner=O` with O a DATA array")
    ln.p.add_family(m.group(1), ln.array(m.group(2)).astype(np.intp))


def _output(ln: _Line) -> None:
    ln.options("trainable", "slots", "lr", "bias_lr")
    call = _CALL.match(ln.main)
    if not call or call.group(1) != "readout":
        ln.fail("OUTPUT must read `readout(x, var=..., bias_var=...)`")
    pos, kw = _kwargs(call.group(2), ("var", "bias_var"), ln.where)
    if len(pos) != 1:
        ln.fail("readout takes one vector")
    slots = ln.flags.get("slots")
    ln.p.set_readout(pos[0], _number(kw.get("var", "1.0"), ln.where),
                     _number(kw.get("bias_var", "0.0"), ln.where),
                     trainable=_bool(ln.flags.get("trainable", "True"), ln.where),
                     slots=None if slots is None else ln.array(slots).astype(np.intp))
    r = ln.p.readout
    ln.p.readout = replace(r, parametrization=ln.lr(r.parametrization),
                           bias_parametrization=ln.lr(r.bias_parametrization, "bias_lr"))


def _data(value: str, line: str, lineno: int) -> np.ndarray:
    try:
        arr = np.asarray(ast.literal_eval(value.strip()))
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise ParseError("DATA must be `DATA: NAME = [...]`", line, lineno) from None
    if arr.dtype.kind not in "biuf":
        raise ParseError("DATA must hold real numbers (no complex numbers, strings or ragged "
                         "lists)", line, lineno)
    arr = arr.astype(float)
    if not np.all(np.isfinite(arr)):
        raise ParseError("DATA must hold finite numbers (no nan or inf)", line, lineno)
    return arr


def program_from_text(text: str, cls, data: dict | None = None):
    """Parse the textual form printed by :func:`program_to_text` into a ``cls`` program."""
    raw = [(i + 1, line.split("#", 1)[0].strip()) for i, line in enumerate(text.splitlines())]
    raw = [(i, line) for i, line in raw if line]
    if not raw:
        raise ParseError("empty program text")
    m = _HEADER.match(raw[0][1])
    if not m:
        raise ParseError("the first line must be `PROGRAM <name> inputs=<N>`", raw[0][1], raw[0][0])
    p = cls(m.group(1))
    if int(m.group(2)):
        p.declare_inputs(int(m.group(2)))
    arrays = {k: np.asarray(v, dtype=float) for k, v in (data or {}).items()}
    body, data_lines = [], set()
    for lineno, line in raw[1:]:
        m = _LINE.match(line)
        if not m:
            raise ParseError("unknown instruction: lines start with FAMILY, INPUT, MATRIX, "
                             "VECTOR, SCALAR, MATMUL, SELECT, NONLIN, MOMENT, OUTPUT or DATA",
                             line, lineno)
        if m.group(1) == "DATA":
            key, eq, value = m.group(2).partition("=")
            key = key.strip()
            if not eq or not _IDENT.match(key):
                raise ParseError("DATA must be `DATA: NAME = [...]`", line, lineno)
            if key in data_lines:
                raise ParseError(f"a second DATA line for {key!r}: give each array once",
                                 line, lineno)
            data_lines.add(key)
            arrays[key] = _data(value, line, lineno)
        else:
            body.append((lineno, line, m.group(1), m.group(2).strip()))

    later = {}
    for lineno, _, _, rest in body:
        m = re.match(r"^(\w+)\s*(:=|~)", rest)
        if m:
            later.setdefault(m.group(1), lineno)

    for lineno, line, keyword, rest in body:
        ln = _Line(p, lineno, line, keyword, rest, arrays, later)
        try:
            if keyword == "FAMILY":
                _family(ln)
            elif keyword == "OUTPUT":
                _output(ln)
            else:
                PARSE.of(KEYWORDS[keyword])(ln)
        except ParseError:
            raise
        except ProgramError as e:
            raise ParseError(e.reason, line, lineno) from None
    p.validate()
    return p
