"""Bad input, parsing: every string the API takes as an expression goes through the ψ grammar,
so text that would run code is a ParseError naming the offending token, and nothing runs."""
import numpy as np
import pytest
import sympy as sp

import tensorprog as tp

#: Payloads that write the sentinel file if they are ever evaluated as Python.
PAYLOADS = [
    "__import__('os').system('touch {s}')",
    "0*__import__('os').system('touch {s}') + h1",
    "open('{s}', 'w').close()",
    "eval(\"open('{s}', 'w')\")",
    "exec(\"open('{s}', 'w')\")",
    "(lambda: open('{s}', 'w'))()",
    "h1.__class__.__mro__[-1].__subclasses__()",
    "getattr(__builtins__, 'open')('{s}', 'w')",
    "[open('{s}', 'w') for _ in (1,)]",
    "(f := open('{s}', 'w'))",
    "relu(h1, key=open('{s}', 'w'))",
    "f'{{open(\"{s}\", \"w\")}}'",
]


def small_mlp():
    p = tp.Program("small")
    h = p.embed(np.eye(3), var=1.0, bias_var=0.0)
    p.output(p.matrix("W", 1.0) @ tp.relu(h))
    return p


@pytest.fixture
def sentinel(tmp_path):
    path = tmp_path / "sentinel"
    yield path
    assert not path.exists(), "an expression string was evaluated as code"


def payloads(sentinel):
    return [t.format(s=sentinel) for t in PAYLOADS]


def test_simulate_moment_strings(sentinel):
    p = small_mlp()
    for text in payloads(sentinel):
        with pytest.raises(tp.ParseError, match="at column"):
            tp.simulate(p, width=8, backend="numpy", moments={"m": text})


def test_program_nonlin_and_moment_strings(sentinel):
    for text in payloads(sentinel):
        p = small_mlp()
        for add in (lambda: p.add_nonlin("a", text, ["h1"]),
                    lambda: p.add_inferred("nonlin", "a", text),
                    lambda: p.add_inferred("moment", "a", text)):
            with pytest.raises(tp.ParseError, match="at column"):
                add()
        assert "a" not in p


def test_builder_strings(sentinel):
    p = small_mlp()
    h = p.var("h1")
    for text in payloads(sentinel):
        with pytest.raises(tp.ParseError):
            tp.nonlin(lambda a, b: a * b, h, text)
        with pytest.raises(tp.ParseError):
            tp.nonlin(lambda a: text, h)
        with pytest.raises(tp.ParseError):
            tp.polynomial(h, [0, text])
        with pytest.raises(tp.ParseError):
            tp.leaky_relu(h, text)
        with pytest.raises(tp.ParseError):
            tp.Var(p, text)


def test_textual_form_does_not_run_code(tmp_path):
    """A program file whose ψ would run a command: refused on its line, and nothing runs."""
    sentinel = tmp_path / "sentinel"
    text = (
        "PROGRAM evil inputs=2\n"
        "INPUT:  h1 := embed(X1, var=1.0, bias_var=0.0)\n"
        f"NONLIN: x1 := relu(h1) + 0*__import__('os').system('touch {sentinel}')\n"
        "OUTPUT: readout(x1, var=1.0, bias_var=0.0)\n"
        "DATA:   X1 = [[1.0, 0.0], [0.0, 1.0]]\n")
    try:
        tp.Program.from_text(text)
    except tp.ParseError as e:
        assert e.line == 3
    else:
        pytest.fail("the program was accepted")
    finally:
        assert not sentinel.exists(), "reading the program ran its code"


def test_variable_named_like_a_function_round_trips():
    p = tp.Program("names")
    h = p.embed(np.eye(2), var=1.0, bias_var=0.0, name="erf")
    p.output(tp.erf(h).named("pi") * 2)
    assert tp.Program.from_text(p.to_text()) == p


@pytest.mark.parametrize("text, token", [
    ("relu(h1) + foo(h1)", "foo"), ("h1 + zz", "zz"), ("h1.real", "."), ("h1[0]", "["),
    ("relu(h1", None), ("h1 h1", "h1"), ("h1 ** ", None), ("W*h1", "W"),
])
def test_messages_name_the_token(text, token):
    p = small_mlp()
    with pytest.raises(tp.ParseError) as info:
        p.add_inferred("nonlin", "a", text)
    assert info.value.token == token
    assert f"column {info.value.column}" in str(info.value)


def test_strings_within_the_grammar_are_accepted():
    p = small_mlp()
    a = p.add_inferred("nonlin", "a", "relu(h1) - 0.5*h1**2 + erf(h1)/3")
    h = tp.ir.program.symbol("h1")
    assert a.expr == tp.relu(p.var("h1")).expr - sp.Float(0.5) * h**2 + sp.erf(h) / 3
    sim = tp.simulate(p, width=64, seeds=2, backend="numpy", moments={"m": "h1**2", "e": h**2})
    np.testing.assert_array_equal(sim.scalars["m"], sim.scalars["e"])


def test_expectation_integrand_strings(sentinel):
    from tensorprog.expectations import expect

    u = tp.ir.program.symbol("u")
    cov = np.array([[1.0]])
    assert float(expect("relu(u)**2", (u,), cov).value) == pytest.approx(0.5, rel=1e-12)
    for text in payloads(sentinel):
        with pytest.raises(tp.ParseError):
            expect(text.replace("h1", "u"), (u,), cov)
