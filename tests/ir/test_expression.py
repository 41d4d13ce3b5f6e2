"""The ψ grammar (tensorprog/ir/expression.py): every printed expression parses back to an equal
one, Python's precedence, and text outside the grammar is a ParseError before anything runs."""
import builtins
import importlib

import numpy as np
import pytest
import sympy as sp

import tensorprog as tp
from tensorprog import functions as F
from tensorprog.ir.expression import FUNCTIONS, MAX_DEPTH, as_expression, parse_expression
from tensorprog.ir.program import symbol
from tensorprog.ir.text import expr_to_text

x, y, z, erf_var = (symbol(n) for n in ("x", "y", "z", "erf"))
NAMES = {"x": x, "y": y, "z": z}

#: Inputs each shipped program is built on (its documented input shape).
PROGRAM_INPUTS = {
    "attention": (2, 3, 4), "cnn": (2, 4, 4, 2), "autoencoder": (3, 5), "batchnorm": (4, 5),
    "gru": (3, 4), "hypernet": (3, 4), "layernorm": (3, 5), "mlp": (3, 5), "resnet": (3, 5),
    "rnn": (3, 4),
}


def parse(text, names, **kwargs):
    """parse_expression with Python's eval and exec unavailable while it runs."""
    def refuse(*args, **kw):
        raise AssertionError("eval/exec called while parsing")
    saved = builtins.eval, builtins.exec
    builtins.eval = builtins.exec = refuse
    try:
        return parse_expression(text, names, **kwargs)
    finally:
        builtins.eval, builtins.exec = saved


def psi_expressions(p):
    return [n.expr for n in p.nodes() if n.kind in ("nonlin", "moment")]


def names_of(p):
    return {n: symbol(n) for n in p.order if p.node(n).output != "matrix"}


@pytest.mark.parametrize("name", sorted(PROGRAM_INPUTS))
def test_round_trip_of_every_shipped_program(name):
    build = importlib.import_module(f"programs.{name}").build
    p = build(np.random.default_rng(0).standard_normal(PROGRAM_INPUTS[name]))
    exprs = psi_expressions(p)
    assert exprs
    for e in exprs:
        assert parse(expr_to_text(e), names_of(p)) == e


DERIVED = [
    F.leaky_relu(x, 0.2), F.absolute(x), F.gelu(x).diff(x), F.sigmoid(x).diff(x),
    sp.tanh(x).diff(x), sp.erf(x).diff(x), F.relu(x).diff(x, 2), sp.DiracDelta(x, 1),
    sp.Heaviside(x), sp.Heaviside(x, sp.Rational(1, 2)), sp.Max(x, y, 0), sp.Min(x, 1.5),
    sp.sign(x) * sp.Abs(y), sp.log(1 + x**2), x / sp.sqrt(y + sp.Float(1e-5)),
    x**sp.Rational(3, 2), x**sp.Rational(-1, 2), 1 / (x * y), -x**2 / 3, 2.5e-300 * x,
    sp.Float(1e300) * x - sp.pi * y + sp.E, (x - y)**-3, x**y**z, sp.exp(-x**2 / 2),
    sp.sin(x) * sp.cos(y) + 0.1 * z, F.step(x) * (1 - F.relu(-y)),
    (x - (x + y + z) / 3) / ((x**2 + y**2) / 2 + 1e-5)**0.5,
]


@pytest.mark.parametrize("e", DERIVED, ids=str)
def test_round_trip_of_derivatives_and_special_forms(e):
    assert parse(expr_to_text(e), NAMES) == e


def test_a_variable_may_be_named_like_a_function_or_constant():
    names = {"erf": erf_var, "pi": symbol("pi"), "x": x}
    assert parse("erf(erf) + erf", names) == sp.erf(erf_var) + erf_var
    assert parse("pi*x", names) == symbol("pi") * x
    assert parse("pi*x", NAMES) == sp.pi * x
    e = sp.erf(erf_var)
    assert parse(expr_to_text(e), names) == e


@pytest.mark.parametrize("text, expected", [
    ("1 + 2*3", sp.Integer(7)),
    ("2**3**2", sp.Integer(512)),           # right-associative
    ("-2**2", sp.Integer(-4)),               # ** binds tighter than unary minus
    ("2**-1", sp.Rational(1, 2)),            # a signed exponent
    ("2^3", sp.Integer(8)),                  # ^ is a power, as in the papers
    ("8/4/2", sp.Integer(1)),                # left-associative
    ("1 - 2 - 3", sp.Integer(-4)),
    ("-(1 - 3)*2", sp.Integer(4)),
    ("--x", x), ("+x", x), ("x - -y", x + y),
    ("1/3", sp.Rational(1, 3)),              # integers stay exact
    ("0.5", sp.Float(0.5)), (".5", sp.Float(0.5)), ("5.", sp.Float(5.0)),
    ("1e-3", sp.Float(1e-3)), ("2.5E+2", sp.Float(250.0)),
    ("x*y**2", x * y**2), ("(x*y)**2", (x * y)**2), ("-x**2", -(x**2)),
    ("x/y*z", x * z / y), ("x/(y*z)", x / (y * z)),
    ("relu(x) - relu(-x)", F.relu(x) - F.relu(-x)),
    ("abs(x) + Abs(y)", sp.Abs(x) + sp.Abs(y)),
    ("leaky_relu(x)", F.leaky_relu(x)), ("leaky_relu(x, 0.2)", F.leaky_relu(x, 0.2)),
    ("Max(x, y, z)", sp.Max(x, y, z)), ("sqrt(x**2 + 1)", sp.sqrt(x**2 + 1)),
    ("  x\t*  y ", x * y),
])
def test_precedence_and_associativity(text, expected):
    assert parse(text, NAMES) == expected


def test_error_names_line_token_and_column():
    with pytest.raises(tp.ParseError) as info:
        parse("relu(x) + foo(y)", NAMES, line=7, instruction="NONLIN: a := ...")
    err = info.value
    assert err.line == 7 and err.token == "foo" and err.column == 11
    assert "(line 7)" in str(err) and "'foo' at column 11" in str(err)
    assert "unknown name for a function" in str(err)


@pytest.mark.parametrize("text, token, column, reason", [
    ("", None, 1, "empty"),
    ("x +", None, 4, "expected a number"),
    ("(x + y", None, 7, "expected '\\)'"),
    ("x y", "y", 3, "write products with '\\*'"),
    ("2x", "x", 2, "expected an operator"),
    ("relu()", ")", 6, "expected a number"),
    ("relu(x, y)", ")", 10, "relu takes 1 argument"),
    ("leaky_relu(x, 0.1, 2)", ")", 21, "leaky_relu takes 1 to 2"),
    ("x % y", "%", 3, "not part of ψ"),
    ("x // y", "/", 4, "expected a number"),
    ("x @ y", "@", 3, "not part of ψ"),
    ("x < y", "<", 3, "not part of ψ"),
    ("1e999 * x", "1e999", 1, "out of the range"),
    ("x / 0", "/", 3, "division by zero"),
    ("0**-1", "**", 2, "non-positive power"),
    ("9**9**9", "**", 2, "bits"),
    ("I*x", "I", 1, "unknown name"),
    ("oo", "oo", 1, "unknown name"),
    ("nan", "nan", 1, "unknown name"),
    ("x;y", ";", 2, "not part of ψ"),
])
def test_malformed_expressions(text, token, column, reason):
    with pytest.raises(tp.ParseError, match=reason) as info:
        parse(text, NAMES)
    assert info.value.token == token and info.value.column == column


def test_nesting_is_bounded():
    deep = "(" * (MAX_DEPTH + 1) + "x" + ")" * (MAX_DEPTH + 1)
    with pytest.raises(tp.ParseError, match="nested deeper"):
        parse(deep, NAMES)
    with pytest.raises(tp.ParseError, match="nested deeper"):
        parse("-" * 10_000 + "x", NAMES)
    shallow = "(" * 50 + "x" + ")" * 50
    assert parse(shallow, NAMES) == x


def test_every_function_of_the_grammar_is_callable():
    for name, (fn, least, _) in FUNCTIONS.items():
        args = ", ".join(["x", "y"][:least])
        assert parse(f"{name}({args})", NAMES) == fn(*[x, y][:least])


def test_as_expression():
    assert as_expression("x + 1", NAMES) == x + 1
    assert as_expression(np.float64(0.25), {}) == sp.Float(0.25)
    assert as_expression(np.array(3), {}) == 3
    assert as_expression(x, {}) is x
    with pytest.raises(tp.ProgramError, match="must be a sympy expression, a number"):
        as_expression([1, 2], {})
    with pytest.raises(tp.ProgramError, match="must be a sympy expression, a number"):
        as_expression(True, {})


#: Text that would run code, read files or reach Python's internals if it were evaluated.
INJECTIONS = [
    "__import__('os').system('touch {sentinel}')",
    "relu(x) + 0*__import__('os').system('touch {sentinel}')",
    "x.__class__",
    "x.__class__.__mro__[1].__subclasses__()",
    "().__class__.__bases__[0].__subclasses__()",
    "lambda: open('{sentinel}', 'w')",
    "(lambda q: q)(x)",
    "eval(\"open('{sentinel}', 'w')\")",
    "exec(\"open('{sentinel}', 'w')\")",
    "open('{sentinel}', 'w')",
    "getattr(x, '__class__')",
    "compile('1', 'f', 'eval')",
    "globals()", "locals()", "vars()", "dir()", "breakpoint()", "input()",
    "__builtins__", "__import__",
    "x[0]", "x['a']",
    "'a string'", '"a string"', "f'{{x}}'", "b'bytes'",
    "(y := 1)",
    "[q for q in (1, 2)]", "{{q for q in (1,)}}", "(q for q in (1,))",
    "relu(x=1)", "Max(x, key=1)", "relu(*x)", "relu(**x)",
    "sympy.sympify('1')", "sp.exp(x)", "os.system('true')",
    "Symbol('x')", "Function('f')(x)", "Lambda(x, x)", "Integer(1)", "S(1)",
    "unknown_function(x)", "unknown_name + x",
    "x if y else z", "not x", "x and y", "x or y", "x == y", "x != y", "~x", "x & y", "x | y",
    "x << 1", "x >> 1", "x, y", "x;y", "x\ny", "x # comment", "\\x", "`x`", "$x", "x!",
    "0x10", "1_000", "1j", "1e", "Ø",
]


@pytest.mark.parametrize("template", INJECTIONS)
def test_injection_is_refused_and_nothing_runs(template, tmp_path):
    sentinel = tmp_path / "sentinel"
    with pytest.raises(tp.ParseError):
        parse(template.format(sentinel=sentinel), NAMES, line=3)
    assert not sentinel.exists()
