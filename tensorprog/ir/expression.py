"""The grammar of ψ expressions, parsed without ``eval``.

A NONLIN⁺ or MOMENT instruction (TP IIb Def. 3.1, NONLIN⁺ / MOMENT) carries a coordinatewise
function ψ of its arguments.  In the textual form and wherever the API accepts ψ as a string,
ψ is read by this module's own tokenizer and recursive-descent parser; nothing of the text is
ever handed to Python's ``eval``/``exec`` or to ``sympy.sympify``, so a program file is data and
reading one cannot run code.  The grammar (Python's arithmetic precedence)::

    expr    := term (('+' | '-') term)*
    term    := factor (('*' | '/') factor)*
    factor  := ('+' | '-') factor | power
    power   := primary [('**' | '^') factor]           right-associative: a**b**c = a**(b**c)
    primary := NUMBER | NAME | FUNCTION '(' expr (',' expr)* ')' | '(' expr ')'

``NUMBER`` is an integer (exact) or a decimal/scientific float (``1.5``, ``.5``, ``2e-3``).
``NAME`` is a declared variable or scalar, else the constant ``pi`` or ``E``; an identifier
followed by ``(`` is always a function call, so a variable may be called ``erf``.  The functions
are those of :data:`FUNCTIONS`.  Anything else (attribute access, subscripts, strings, keyword
arguments, other operators, unknown names) is a :class:`~tensorprog.errors.ParseError` naming the
offending token and its column.
"""
from __future__ import annotations

import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import sympy as sp

from .. import functions as F
from ..errors import ParseError, ProgramError

__all__ = ["FUNCTIONS", "CONSTANTS", "parse_expression", "as_expression"]

#: Functions a ψ expression may call: name → (sympy callable, least and most argument count).
FUNCTIONS: dict[str, tuple] = {
    "relu": (F.relu, 1, 1),
    "step": (F.step, 1, 1),
    "sigmoid": (F.sigmoid, 1, 1),
    "gelu": (F.gelu, 1, 1),
    "leaky_relu": (F.leaky_relu, 1, 2),
    "erf": (sp.erf, 1, 1),
    "tanh": (sp.tanh, 1, 1),
    "sin": (sp.sin, 1, 1),
    "cos": (sp.cos, 1, 1),
    "exp": (sp.exp, 1, 1),
    "log": (sp.log, 1, 1),
    "sqrt": (sp.sqrt, 1, 1),
    "Abs": (sp.Abs, 1, 1),
    "abs": (sp.Abs, 1, 1),
    "sign": (sp.sign, 1, 1),
    "Heaviside": (sp.Heaviside, 1, 2),
    "DiracDelta": (sp.DiracDelta, 1, 2),
    "Max": (sp.Max, 1, None),
    "Min": (sp.Min, 1, None),
}

#: Named constants (a declared variable of the same name takes precedence).
CONSTANTS = {"pi": sp.pi, "E": sp.E}

#: Deepest nesting of parentheses, signs and powers accepted (a guard against stack overflow).
MAX_DEPTH = 100
#: Largest exact number a power of two numbers may produce, in bits (a guard against ``9**9**9``).
MAX_POWER_BITS = 4096

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\*\*|[-+*/^(),])
""", re.VERBOSE)


@dataclass(frozen=True)
class _Token:
    kind: str  # "number", "name", "op" or "end"
    text: str
    column: int  # 1-based


class _Parser:
    """One parse of one expression (tokens, position, nesting depth)."""

    def __init__(self, text: str, names: Mapping[str, sp.Symbol], instruction, line):
        self.text, self.names = text, names
        self.instruction, self.line = instruction, line
        self.tokens = self._tokenize()
        self.current: _Token | None = None
        self.depth = 0

    # ------------------------------------------------------------------ errors and tokens
    def error(self, token: _Token, message: str) -> ParseError:
        shown = "end of expression" if token.kind == "end" else repr(token.text)
        of = "" if self.instruction == self.text else f" of `{self.text}`"
        err = ParseError(f"{shown} at column {token.column}{of}: {message}",
                         self.instruction, self.line)
        err.token, err.column = (None if token.kind == "end" else token.text), token.column
        return err

    def _tokenize(self):
        """The tokens of the text, produced as the parser asks for them (so the first error
        reported is the leftmost one)."""
        i = 0
        while i < len(self.text):
            m = _TOKEN.match(self.text, i)
            if m is None:
                bad = _Token("op", self.text[i], i + 1)
                hint = {".": "attribute access is not part of ψ",
                        "[": "subscripts are not part of ψ", "=": "ψ takes no keyword arguments",
                        ":": "assignments are not part of ψ", "'": "ψ contains no strings",
                        '"': "ψ contains no strings"}.get(self.text[i], "not part of ψ")
                raise self.error(bad, f"{hint}; ψ is built from numbers, declared variables, "
                                      f"the operators + - * / ** and the functions "
                                      f"{', '.join(FUNCTIONS)}")
            if m.lastgroup != "space":
                yield _Token(m.lastgroup, m.group(), i + 1)
            i = m.end()
        while True:
            yield _Token("end", "", len(self.text) + 1)

    def peek(self) -> _Token:
        if self.current is None:
            self.current = next(self.tokens)
        return self.current

    def advance(self) -> _Token:
        token = self.peek()
        self.current = None
        return token

    def expect(self, text: str) -> _Token:
        token = self.advance()
        if token.text != text or token.kind != "op":
            raise self.error(token, f"expected {text!r}")
        return token

    # ------------------------------------------------------------------ grammar
    def parse(self) -> sp.Expr:
        if self.peek().kind == "end":
            raise self.error(self.peek(), "the expression is empty")
        expr = self.expr()
        token = self.peek()
        if token.kind != "end":
            raise self.error(token, "expected an operator (+ - * / **) or the end; write "
                                    "products with '*'")
        return expr

    def expr(self) -> sp.Expr:
        out = self.term()
        while self.peek().kind == "op" and self.peek().text in "+-":
            op = self.advance().text
            right = self.term()
            out = out + right if op == "+" else out - right
        return out

    def term(self) -> sp.Expr:
        out = self.factor()
        while self.peek().kind == "op" and self.peek().text in ("*", "/"):
            op = self.advance()
            right = self.factor()
            if op.text == "/" and right.is_zero:
                raise self.error(op, "division by zero")
            out = out * right if op.text == "*" else out / right
        return out

    def factor(self) -> sp.Expr:
        token = self.peek()
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(token, f"nested deeper than {MAX_DEPTH} levels")
        try:
            if token.kind == "op" and token.text in "+-":
                self.advance()
                value = self.factor()
                return -value if token.text == "-" else value
            return self.power()
        finally:
            self.depth -= 1

    def power(self) -> sp.Expr:
        base = self.primary()
        if self.peek().kind == "op" and self.peek().text in ("**", "^"):
            op = self.advance()
            exponent = self.factor()
            self._check_power(base, exponent, op)
            return base ** exponent
        return base

    def _check_power(self, base, exponent, op: _Token) -> None:
        if base.is_zero and exponent.is_number and (exponent.is_negative or exponent.is_zero):
            raise self.error(op, "0 to a non-positive power is undefined")
        if base.is_Rational and exponent.is_Integer and abs(base) not in (0, 1):
            bits = max(abs(base.p).bit_length(), base.q.bit_length()) * abs(int(exponent))
            if bits > MAX_POWER_BITS:
                raise self.error(op, f"the exact power would have about {bits} bits (more than "
                                     f"{MAX_POWER_BITS}); write a float base to get a float")

    def primary(self) -> sp.Expr:
        token = self.advance()
        if token.kind == "number":
            return self.number(token)
        if token.kind == "name":
            if self.peek().kind == "op" and self.peek().text == "(":
                return self.call(token)
            if token.text in self.names:
                return self.names[token.text]
            if token.text in CONSTANTS:
                return CONSTANTS[token.text]
            known = sorted(self.names)
            shown = ", ".join(known[:20]) + (f", … ({len(known)} in all)" if len(known) > 20
                                              else "")
            raise self.error(token, f"unknown name; ψ may use the declared names ({shown}) "
                                    "and the constants pi, E")
        if token.kind == "op" and token.text == "(":
            inner = self.expr()
            self.expect(")")
            return inner
        raise self.error(token, "expected a number, a name, a function call or '('")

    def number(self, token: _Token) -> sp.Expr:
        if re.fullmatch(r"\d+", token.text):
            if len(token.text) > 1000:
                raise self.error(token, "integer literal longer than 1000 digits")
            return sp.Integer(int(token.text))
        value = float(token.text)
        if value in (float("inf"), float("-inf")):
            raise self.error(token, "number out of the range of a float")
        return sp.Float(value)

    def call(self, name: _Token) -> sp.Expr:
        if name.text not in FUNCTIONS:
            raise self.error(name, "unknown name for a function; ψ may call "
                                   + ", ".join(FUNCTIONS))
        fn, least, most = FUNCTIONS[name.text]
        self.expect("(")
        args = [self.expr()]
        while self.peek().kind == "op" and self.peek().text == ",":
            self.advance()
            args.append(self.expr())
        closing = self.peek()
        self.expect(")")
        if len(args) < least or (most is not None and len(args) > most):
            count = str(least) if least == most else (
                f"{least} or more" if most is None else f"{least} to {most}")
            raise self.error(closing, f"{name.text} takes {count} argument(s), got {len(args)}")
        return fn(*args)


def parse_expression(text: str, names: Mapping[str, sp.Symbol], *, line: int | None = None,
                     instruction: str | None = None) -> sp.Expr:
    """Parse the ψ expression ``text`` over the declared ``names`` (TP IIb Def. 3.1, NONLIN⁺).

    Parameters
    ----------
    text : str
        The expression, e.g. ``"relu(h1) + 0.5*th**2"``.
    names : mapping of str to sympy.Symbol
        The declared variables and scalars that ``text`` may mention, by name.
    line : int, optional
        The line of the textual form holding the expression, for the error message.
    instruction : str, optional
        The instruction shown in the error message (default: ``text`` itself).

    Returns
    -------
    sympy.Expr
        The expression, equal to the one whose textual form ``text`` is.

    Raises
    ------
    ParseError
        On anything outside the grammar of this module: the message names the line, the
        offending token and its column (also the error's ``token`` and ``column`` attributes).

    Example
    -------
    >>> import sympy as sp
    >>> h = sp.Symbol("h", real=True)
    >>> parse_expression("2*relu(h) - h", {"h": h})
    -h + 2*relu(h)
    """
    if not isinstance(text, str):
        raise ParseError(f"a ψ expression must be a string, got {type(text).__name__}",
                         instruction, line)
    parser = _Parser(text, names, text if instruction is None else instruction, line)
    try:
        return parser.parse()
    except ParseError:
        raise
    except (ValueError, TypeError, ArithmeticError, RecursionError) as e:
        raise ParseError(f"cannot evaluate `{text}`: {e}", parser.instruction, line) from None


def as_expression(value, names: Mapping[str, sp.Symbol], *, what: str = "ψ",
                  instruction: str | None = None) -> sp.Basic:
    """``value`` as a sympy object without evaluating text: a string through
    :func:`parse_expression` over ``names``, a real number exactly, a sympy object as it is.

    Parameters
    ----------
    value : str, sympy.Basic, int, float or 0-d array
        The expression as the caller gave it.
    names : mapping of str to sympy.Symbol
        The names a string may mention.
    what : str
        What the value is, for the error message (e.g. ``"ψ"``, ``"a coefficient"``).
    instruction : str, optional
        The instruction shown in an error message.

    Returns
    -------
    sympy.Basic

    Raises
    ------
    ParseError
        ``value`` is a string outside the grammar of :func:`parse_expression`.
    ProgramError
        ``value`` is neither a string, a sympy object nor a real number, or holds a non-finite
        constant (nan, ±∞).

    Example
    -------
    >>> as_expression("x**2", {"x": sp.Symbol("x")})
    x**2
    """
    if isinstance(value, str):
        return parse_expression(value, names, instruction=instruction)
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = sp.sympify(value)
    if isinstance(value, sp.Basic):
        if value.has(sp.nan, sp.zoo, sp.oo, -sp.oo):
            where = f" in {instruction}" if instruction else ""
            raise ProgramError(f"{what}{where} must be finite, got {value}: give a finite number")
        return value
    raise ProgramError(f"{what} must be a sympy expression, a number or a string, got "
                       f"{type(value).__name__} {value!r}", instruction)
