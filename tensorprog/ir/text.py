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
``cross(v=C2)`` for covariances with earlier initial vectors).  ``#`` starts a comment.
``DATA`` lines hold arrays (inputs, covariances) as Python literals of full precision, so the
text round-trips exactly: ``Program.from_text(p.to_text()) == p``.
"""
from __future__ import annotations

import ast
import re

import numpy as np
import sympy as sp
from sympy.printing.str import StrPrinter
from sympy.parsing.sympy_parser import auto_number, parse_expr

from ..errors import ParseError, ProgramError
from ..functions import SYMPY_FUNCTIONS
from .program import Program, symbol


class _Printer(StrPrinter):
    """sympy's str printer with floats printed to full (round-trip) precision."""

    def _print_Float(self, expr):
        return repr(float(expr))


def expr_to_text(expr) -> str:
    return _Printer().doprint(expr)


def _options(items) -> str:
    items = [i for i in items if i]
    return ("; " + ", ".join(items)) if items else ""


def program_to_text(p: Program, data: bool = True) -> str:
    """Print ``p``; with ``data=False`` the DATA lines are replaced by shape comments."""
    lines = [f"PROGRAM {p.name} inputs={p.num_inputs if p.num_inputs is not None else 0}"]
    arrays: dict[str, np.ndarray] = {}
    for fam in p.families.values():
        if fam.name not in ("shared", "inputs"):
            arrays[f"O_{fam.name}"] = fam.owner
            lines.append(f"FAMILY: {fam.name} owner=O_{fam.name}")
    for node in p.nodes():
        in_family = f"family={node.family}" if node.family not in ("shared", "inputs") else ""
        a = node.attrs
        if node.kind == "matrix":
            var, opts = repr(a["var"]), ["trainable=False" if not a["trainable"] else ""]
            if p.is_generated(node.name):
                var = f"S_{node.name}"
                arrays[var], arrays[f"T_{node.name}"] = a["var"], a["tangent"]
                opts.append(f"tangent=T_{node.name}")
            line = f"MATRIX: {node.name} ~ N(0, {var}/n)" + _options(opts)
        elif node.kind == "vector" and a["source"] == "embed":
            X = p.data[a["data"]]
            arrays[a["data"]] = X
            opts = [] if a["weight"] == f"U_{node.name}" else [f"weight={a['weight']}"]
            opts += [in_family] if in_family else []
            line = (f"INPUT:  {node.name} := embed({a['data']}, var={a['var']!r}, "
                    f"bias_var={a['bias_var']!r}{''.join(', ' + o for o in opts)})")
            line += _options(["trainable=False" if not a["trainable"] else ""])
            if not data:
                line += f"   # {a['data']}: {X.shape[0]}×{X.shape[1]}"
        elif node.kind == "vector":
            if node.family == "shared":
                cov = repr(a["var"])
            else:
                cov = f"C_{node.name}"
                arrays[cov] = p.init_cov_of(node.name, node.name)
            cross = []
            for other in p.order[: p.order.index(node.name)]:
                if (node.name, other) in p.init_cov and p.node(other).kind == "vector" \
                        and p.node(other).attrs["source"] != "embed":
                    key = f"C_{node.name}_{other}"
                    arrays[key] = p.init_cov[(node.name, other)]
                    cross.append(f"{other}={key}")
            if "tangent" in a:
                arrays[f"T_{node.name}"] = a["tangent"]
            opts = ["bias" if a["source"] == "bias" else "",
                    f"tangent=T_{node.name}" if "tangent" in a else "",
                    "trainable=False" if a["source"] == "bias" and not a["trainable"] else "",
                    "trainable=True" if a["source"] != "bias" and a["trainable"] else "",
                    f"cross({', '.join(cross)})" if cross else "", in_family]
            line = f"VECTOR: {node.name} ~ N(0, {cov})" + _options(opts)
        elif node.kind == "scalar":
            line = f"SCALAR: {node.name} := {a['value']!r}"
        elif node.kind == "matmul":
            t = "^T" if a["transpose"] else ""
            line = f"MATMUL: {node.name} := {a['matrix']}{t} {a['args'][0]}"
        elif node.kind == "select":
            key = f"I_{node.name}"
            arrays[key] = a["index"]
            line = f"SELECT: {node.name} := {a['args'][0]}[{key}] in {node.family}"
        elif node.kind == "nonlin":
            line = f"NONLIN: {node.name} := {expr_to_text(a['expr'])}"
        else:
            line = f"MOMENT: {node.name} := avg({expr_to_text(a['expr'])})"
        lines.append(line)
    if p.readout is not None:
        r = p.readout
        if r.slots is not None:
            arrays["S_out"] = np.array(r.slots)
        lines.append(f"OUTPUT: readout({r.node}, var={r.var!r}, bias_var={r.bias_var!r})"
                     + _options(["trainable=False" if not r.trainable else "",
                                 "slots=S_out" if r.slots is not None else ""]))
    if data:
        for key, arr in arrays.items():
            lines.append(f"DATA:   {key} = {arr.tolist()!r}")
    return "\n".join(lines) + "\n"


_HEADER = re.compile(r"^PROGRAM\s+(\w+)\s+inputs=(\d+)$")
_LINE = re.compile(
    r"^(FAMILY|INPUT|MATRIX|VECTOR|SCALAR|MATMUL|SELECT|NONLIN|MOMENT|OUTPUT|DATA)\s*:\s*(.*)$")
_FAMILY = re.compile(r"^(\w+)\s+owner=(\w+)$")
_SELECT = re.compile(r"^(\w+)\[(\w+)\]\s+in\s+(\w+)$")
_ASSIGN = re.compile(r"^(\w+)\s*:=\s*(.+)$")
_MATRIX = re.compile(r"^(\w+)\s*~\s*N\(\s*0\s*,\s*([^/]+)/\s*n\s*\)$")
_VECTOR = re.compile(r"^(\w+)\s*~\s*N\(\s*0\s*,\s*([^)]+)\)$")
_MATMUL = re.compile(r"^(\w+)(\^T)?\s+(\w+)$")
_CALL = re.compile(r"^(\w+)\((.*)\)$")

_GLOBALS = {"Integer": sp.Integer, "Float": sp.Float, "Rational": sp.Rational,
            "pi": sp.pi, "E": sp.E, **SYMPY_FUNCTIONS}


def _number(text: str, where) -> float:
    try:
        return float(ast.literal_eval(text.strip()))
    except (ValueError, SyntaxError):
        raise ParseError(f"expected a number, got {text.strip()!r}", *where) from None


def _kwargs(text: str, where) -> tuple[list[str], dict[str, str]]:
    pos, kw = [], {}
    for part in [s.strip() for s in text.split(",") if s.strip()]:
        if "=" in part:
            k, v = part.split("=", 1)
            kw[k.strip()] = v.strip()
        else:
            pos.append(part)
    return pos, kw


def _bool(text: str, where) -> bool:
    if text not in ("True", "False"):
        raise ParseError(f"expected True or False, got {text!r}", *where)
    return text == "True"


def parse_psi(p: Program, text: str, where, later: dict | None = None) -> sp.Expr:
    """Parse a ψ expression over the program's variables (``later`` maps names defined further
    down to their lines, for a precise message when one is used too early)."""
    local = {name: symbol(name) for name in p.order if p.node(name).kind != "matrix"}
    try:
        expr = parse_expr(text, local_dict=local, global_dict=dict(_GLOBALS),
                          transformations=(auto_number,), evaluate=True)
    except NameError as e:
        missing = re.search(r"name '(\w+)' is not defined", str(e))
        if missing and missing.group(1) in (later or {}):
            name = missing.group(1)
            raise ParseError(
                f"{name!r} is not defined before this instruction (it is defined on line "
                f"{later[name]}); a variable cannot depend on a later one, so this is a cycle: "
                "unroll recurrences over time steps", *where) from None
        raise ParseError(f"unknown name in `{text}` ({e}): use variables defined earlier and "
                         f"the functions {sorted(SYMPY_FUNCTIONS)}", *where) from None
    except Exception as e:  # sympy's tokenizer raises many kinds
        raise ParseError(f"cannot parse `{text}`: {e}", *where) from None
    if not isinstance(expr, sp.Expr):
        raise ParseError(f"`{text}` is not an expression", *where)
    return expr.xreplace({f: sp.Float(float(f)) for f in expr.atoms(sp.Float)})


def program_from_text(text: str, cls=Program, data: dict | None = None) -> Program:
    """Parse the textual form printed by :func:`program_to_text`."""
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
    body = []
    for lineno, line in raw[1:]:
        m = _LINE.match(line)
        if not m:
            raise ParseError("unknown instruction: lines start with FAMILY, INPUT, MATRIX, "
                             "VECTOR, SCALAR, MATMUL, SELECT, NONLIN, MOMENT, OUTPUT or DATA",
                             line, lineno)
        if m.group(1) == "DATA":
            key, _, value = m.group(2).partition("=")
            try:
                arrays[key.strip()] = np.asarray(ast.literal_eval(value.strip()), dtype=float)
            except (ValueError, SyntaxError):
                raise ParseError("DATA must be `DATA: NAME = [...]`", line, lineno) from None
        else:
            body.append((lineno, line, m.group(1), m.group(2).strip()))

    def array(key, where):
        if key not in arrays:
            raise ParseError(f"no data for {key!r}: add a `DATA: {key} = [...]` line or pass "
                             f"data={{{key!r}: array}}", *where)
        return arrays[key]

    defined = {}
    for lineno, _, _, rest in body:
        m = re.match(r"^(\w+)\s*(:=|~)", rest)
        if m:
            defined.setdefault(m.group(1), lineno)

    for lineno, line, kind, rest in body:
        where = (line, lineno)
        main, _, opt_text = rest.partition(";")
        main = main.strip()
        opts = [o.strip() for o in re.split(r",(?![^()]*\))", opt_text) if o.strip()]
        flags = {o.split("=", 1)[0]: (o.split("=", 1)[1] if "=" in o else "True") for o in opts
                 if not o.startswith("cross(")}
        try:
            if kind == "FAMILY":
                m = _FAMILY.match(main)
                if not m:
                    raise ParseError("FAMILY must read `name owner=O` with O a DATA array", *where)
                p.add_family(m.group(1), array(m.group(2), where).astype(np.intp))
            elif kind == "SELECT":
                m = _ASSIGN.match(main)
                sel = _SELECT.match(m.group(2)) if m else None
                if not sel:
                    raise ParseError("SELECT must read `y := x[I] in family`", *where)
                p.add_select(m.group(1), sel.group(1), array(sel.group(2), where).astype(np.intp),
                             sel.group(3))
            elif kind == "MATRIX":
                m = _MATRIX.match(main)
                if not m:
                    raise ParseError("MATRIX must read `W ~ N(0, var/n)`; every matrix is n×n",
                                     *where)
                var_text = m.group(2).strip()
                generated = re.match(r"^[A-Za-z_]\w*$", var_text)
                p.add_matrix(m.group(1), array(var_text, where) if generated
                             else _number(var_text, where),
                             trainable=_bool(flags.get("trainable", "True"), where),
                             tangent=array(flags["tangent"], where) if "tangent" in flags
                             else None)
            elif kind == "SCALAR":
                m = _ASSIGN.match(main)
                if not m:
                    raise ParseError("SCALAR must read `s := value`", *where)
                p.add_scalar(m.group(1), _number(m.group(2), where))
            elif kind == "INPUT":
                m = _ASSIGN.match(main)
                call = _CALL.match(m.group(2)) if m else None
                if not call or call.group(1) != "embed":
                    raise ParseError("INPUT must read `h := embed(X, var=..., bias_var=...)`",
                                     *where)
                pos, kw = _kwargs(call.group(2), where)
                if len(pos) != 1:
                    raise ParseError("embed takes one data name", *where)
                p.add_embedding(m.group(1), array(pos[0], where),
                                _number(kw.get("var", "1.0"), where),
                                _number(kw.get("bias_var", "0.0"), where),
                                weight=kw.get("weight"),
                                trainable=_bool(flags.get("trainable", "True"), where),
                                data_name=pos[0], family=kw.get("family", "inputs"))
            elif kind == "VECTOR":
                m = _VECTOR.match(main)
                if not m:
                    raise ParseError("VECTOR must read `v ~ N(0, var)` or `v ~ N(0, C)` with C "
                                     "a DATA array", *where)
                cov_text = m.group(2).strip()
                cov = (array(cov_text, where) if re.match(r"^[A-Za-z_]\w*$", cov_text)
                       else _number(cov_text, where))
                cross = {}
                for o in opts:
                    if o.startswith("cross("):
                        for part in o[len("cross("):-1].split(","):
                            k, _, v = part.partition("=")
                            cross[k.strip()] = array(v.strip(), where)
                bias = "bias" in flags
                trainable = _bool(flags.get("trainable", "True" if bias else "False"), where)
                p.add_vector(m.group(1), cov, cross=cross, trainable=trainable,
                             source="bias" if bias else "given", family=flags.get("family"),
                             tangent=array(flags["tangent"], where) if "tangent" in flags
                             else None)
            elif kind == "MATMUL":
                m = _ASSIGN.match(main)
                mm = _MATMUL.match(m.group(2)) if m else None
                if not mm:
                    raise ParseError("MATMUL must read `h := W x` or `h := W^T x`", *where)
                p.add_matmul(m.group(1), mm.group(1), mm.group(3), bool(mm.group(2)))
            elif kind in ("NONLIN", "MOMENT"):
                m = _ASSIGN.match(main)
                if not m:
                    raise ParseError(f"{kind} must read `x := ψ(...)`", *where)
                body_text = m.group(2)
                if kind == "MOMENT":
                    call = _CALL.match(body_text)
                    if not call or call.group(1) != "avg":
                        raise ParseError("MOMENT must read `θ := avg(ψ(...))`", *where)
                    body_text = call.group(2)
                p.add_inferred(kind.lower(), m.group(1), parse_psi(p, body_text, where, defined))
            elif kind == "OUTPUT":
                call = _CALL.match(main)
                if not call or call.group(1) != "readout":
                    raise ParseError("OUTPUT must read `readout(x, var=..., bias_var=...)`",
                                     *where)
                pos, kw = _kwargs(call.group(2), where)
                slots = flags.get("slots")
                p.set_readout(pos[0], _number(kw.get("var", "1.0"), where),
                              _number(kw.get("bias_var", "0.0"), where),
                              trainable=_bool(flags.get("trainable", "True"), where),
                              slots=None if slots is None else array(slots, where).astype(np.intp))
        except ParseError:
            raise
        except ProgramError as e:
            raise ParseError(e.reason, line, lineno) from None
    p.validate()
    return p
