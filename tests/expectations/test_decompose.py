"""The exact decomposition of an expectation before integration (tensorprog/expectations/
decompose.py): linearity, constants, zero-variance atoms, independent groups, affine forms,
univariate pieces and their kinks."""
import sympy as sp

from tensorprog.expectations.decompose import (T, affine_form, affine_kinks, as_pieces, features,
                                               is_kinky, plan_expectation)
from tensorprog.functions import relu, step

u, v, w, z = sp.symbols("u v w z", real=True)
ATOMS = (u, v, w, z)


def plan(expr, zero_var=(False,) * 4, nonzero=frozenset({(0, 1)})):
    return plan_expectation(expr, ATOMS, zero_var, frozenset(nonzero))


def groups(term):
    return sorted(tuple(str(a) for a in f.atoms) for f in term.factors)


def test_independent_groups_factorise():
    """u and v correlated, w and z independent of them and of each other: E[relu(u) v² w² tanh(z)]
    is the product of three factors."""
    [term] = plan(relu(u) * v**2 * w**2 * sp.tanh(z))
    assert term.coef == 1
    assert groups(term) == [("u", "v"), ("w",), ("z",)]
    assert sp.simplify(sp.Mul(*(f.expr for f in term.factors)) - relu(u) * v**2 * w**2
                       * sp.tanh(z)) == 0
    for f in term.factors:
        assert tuple(ATOMS[i] for i in f.index) == f.atoms


def test_an_argument_using_two_atoms_joins_their_groups():
    [term] = plan(sp.tanh(w + z) * u)
    assert groups(term) == [("u",), ("w", "z")]


def test_linearity_and_constants():
    terms = plan(3 * u * v + sp.Rational(1, 2) * w**2 + 5)
    assert len(terms) == 3
    coefs = sorted(t.coef for t in terms)
    assert coefs == [sp.Rational(1, 2), 3, 5]
    const = [t for t in terms if not t.factors]
    assert const[0].coef == 5


def test_zero_variance_atoms_are_substituted():
    """An atom of variance 0 is the constant 0: relu(0) = 0 removes the term."""
    terms = plan(relu(w) * u + v**2, zero_var=(False, False, True, False))
    assert len(terms) == 1 and groups(terms[0]) == [("v",)]


def test_affine_forms():
    assert affine_form(2 * u - 3 * v + 1, (u, v)) == ((2, -3), 1)
    assert affine_form(u * v, (u, v)) is None
    assert affine_form(sp.Integer(4), (u, v)) == ((0, 0), 4)


def test_pieces_merge_proportional_forms():
    """relu(u+v) step(2u+2v) tanh(u): two pieces, g₁(u+v) = relu(t)·step(2t) and g₂(u) = tanh(t)."""
    pieces = as_pieces(relu(u + v) * step(2 * u + 2 * v) * sp.tanh(u), (u, v))
    assert len(pieces) == 2
    by_form = {p.coeffs: p.func for p in pieces}
    assert set(by_form) == {(1, 1), (1, 0)}
    assert by_form[(1, 0)] == sp.tanh(T)
    assert as_pieces(sp.exp(u * v), (u, v)) is None  # not a product of univariate pieces


def test_kinks_and_soft_features():
    hard, soft = features(relu(T - 1) + sp.tanh(2 * T + 1))
    assert hard == (1,)
    assert soft == ((-sp.Rational(1, 2), sp.Rational(1, 2)),)
    assert is_kinky(sp.Abs(u) * v, (u, v)) and not is_kinky(sp.tanh(u) * v, (u, v))
    assert affine_kinks(relu(u - v + 2) * step(u), (u, v)) == (((1, -1), 2), ((1, 0), 0))
