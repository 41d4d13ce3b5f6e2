"""DAG versions of sympy's free symbols, substitution and derivative, and the evaluation tape,
against sympy itself on deep expressions with shared subexpressions."""
import numpy as np
import sympy as sp

from tensorprog.expectations.dag import FreeSymbols, derivative, subexpressions, substitute
from tensorprog.expectations.decompose import PROBE_SIZE, _varies_on_level_set, as_pieces
from tensorprog.expectations.tape import Tape
from tensorprog.functions import lambdify, relu, step

x, y, z, c = sp.symbols("x y z c", real=True)


def nested(depth=6):
    """A trained-network-like expression: each level reuses the previous one twice."""
    e = x
    for k in range(depth):
        e = sp.tanh(c * e + y) * (1 - sp.tanh(e) ** 2) + relu(e - z) / (k + 2)
    return e


def test_free_symbols_substitution_and_derivative_equal_sympys():
    e, free = nested(4), FreeSymbols()
    assert free(e) == e.free_symbols
    assert substitute(e, {y: z + 1}, free) == e.xreplace({y: z + 1})
    at = {x: 0.3, y: -0.7, z: 0.1, c: 1.3}
    for s in (x, y, z):
        d = derivative(e, s, free)
        assert abs(float(d.subs(at)) - float(sp.diff(e, s).subs(at))) < 1e-12
    assert derivative(e, sp.Symbol("w"), free) == 0
    nodes = list(subexpressions(e))
    assert len(nodes) == len(set(nodes)) and set(nodes) == set(sp.preorder_traversal(e))


def test_tape_equals_lambdify_on_several_expressions():
    exprs = [nested(), nested(3) ** 2, sp.erf(x) * step(y) + sp.Heaviside(z, 0.5), c]
    args = [np.random.default_rng(k).standard_normal((3, 5)) for k in range(4)]
    values = Tape([x, y, z, c], exprs)(*args)
    for e, v in zip(exprs, values):
        np.testing.assert_allclose(np.broadcast_to(v, (3, 5)),
                                   np.broadcast_to(lambdify([x, y, z, c], e)(*args), (3, 5)),
                                   rtol=1e-13, atol=1e-15)


def wide(u, terms=40):
    """A shallow expression of more than PROBE_SIZE distinct operations in ``u``."""
    return sp.Add(*[sp.tanh(k * u) * sp.cos(u / k) for k in range(1, terms + 1)])


def test_numeric_probe_rejects_only_what_is_not_a_function_of_the_form():
    atoms, form = (x, y, z), (sp.S.One, sp.S.One, sp.S.Zero)
    one = wide(x + y)
    assert len(Tape([x, y], [one]).ops) >= PROBE_SIZE
    assert not _varies_on_level_set(one, atoms, form, 0)
    pieces = as_pieces(one, atoms)  # a function of x + y: one piece
    assert pieces is not None and len(pieces) == 1 and pieces[0].coeffs == form
    other = one + sp.tanh(x)  # not a function of x + y
    assert _varies_on_level_set(other, atoms, form, 0)
    assert as_pieces(other * sp.tanh(z), atoms) is None
