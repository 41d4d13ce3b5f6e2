"""The public interface: decomposition, dispatch, batch shapes, parameters, symbolic mode, errors."""
import math

import numpy as np
import pytest
import sympy as sp

from tensorprog.errors import ExpectationError
from tensorprog.expectations import Expectation, expect
from tensorprog.expectations.decompose import as_pieces, plan_expectation
from tensorprog.functions import gelu, relu, step

u, v, w, x = sp.symbols("u v w x", real=True)
theta, a = sp.symbols("theta a", real=True)


def cov2(s11, s12, s22):
    return np.array([[s11, s12], [s12, s22]], dtype=float)


def kernel_batch(N, seed=0):
    X = np.random.default_rng(seed).standard_normal((N, 3))
    G = X @ X.T / 3
    d = np.diag(G)
    C = np.empty((N, N, 2, 2))
    C[..., 0, 0], C[..., 1, 1] = d[:, None], d[None, :]
    C[..., 0, 1] = C[..., 1, 0] = G
    return C


# --------------------------------------------------------------------------- interface
def test_result_type_and_shapes():
    for batch in [(), (4,), (3, 5)]:
        C = np.broadcast_to(cov2(1.0, 0.3, 2.0), batch + (2, 2))
        r = expect(relu(u) * relu(v), (u, v), C)
        assert isinstance(r, Expectation)
        assert r.value.shape == batch and r.error.shape == batch
        assert r.value.dtype == float and r.tier == "exact"
        value, error, tier = r  # unpacks
        assert np.all(error == 0)


def test_kernel_batch_matches_pointwise():
    N = 6
    C = kernel_batch(N)
    for expr in (relu(u) * relu(v), sp.tanh(u) * sp.tanh(v)):
        r = expect(expr, (u, v), C)
        for i, j in [(0, 0), (2, 4), (5, 1)]:
            single = expect(expr, (u, v), C[i, j])
            assert float(r.value[i, j]) == pytest.approx(float(single.value), abs=1e-12)


def test_params_broadcast_over_the_batch():
    N = 5
    C = kernel_batch(N)
    th = np.linspace(-0.5, 0.5, N)
    expr = relu(u - theta) * relu(v) + a * u * v
    r = expect(expr, (u, v), C, {theta: th[:, None], a: 2.0})
    assert r.value.shape == (N, N) and r.tier == "exact+quadrature"
    for i, j in [(0, 3), (4, 4)]:
        single = expect(expr, (u, v), C[i, j], {theta: th[i], a: 2.0})
        assert float(r.value[i, j]) == pytest.approx(float(single.value), abs=1e-12)
    # a parameter coefficient inside a linear form
    C3 = np.broadcast_to(cov2(1.0, 0.2, 0.5), (3, 2, 2))
    r = expect(relu(a * u + v), (u, v), C3, {a: np.array([0.0, 1.0, -2.0])})
    var = np.array([0.5, 1.0 + 0.4 + 0.5, 4.0 - 0.8 + 0.5])
    assert np.allclose(r.value, np.sqrt(var / (2 * math.pi)), rtol=1e-13)


def test_constant_and_zero_expressions():
    C = cov2(1.0, 0.0, 1.0)
    r = expect(sp.Integer(3) * theta, (u, v), np.broadcast_to(C, (2, 2, 2)),
               {theta: np.array([1.0, 2.0])})
    assert np.allclose(r.value, [3.0, 6.0]) and r.tier == "exact"
    assert float(expect(sp.Integer(0), (u,), np.eye(1)).value) == 0.0


# --------------------------------------------------------------------------- decomposition
def test_linearity_and_tiers():
    C = cov2(1.0, 0.4, 1.0)
    r = expect(sp.tanh(u) * sp.tanh(v) + 3 * u * v, (u, v), C)
    assert r.tier == "exact+quadrature"
    t = expect(sp.tanh(u) * sp.tanh(v), (u, v), C)
    assert float(r.value) == pytest.approx(float(t.value) + 1.2, abs=1e-12)
    assert float(r.error) == pytest.approx(float(t.error))


def test_independence_factorisation():
    C = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.3], [0.0, 0.3, 2.0]])
    expr = sp.tanh(u) ** 2 * relu(v) * relu(w)
    plan = plan_expectation(expr, (u, v, w), (False, False, False), frozenset({(1, 2)}))
    assert len(plan) == 1 and len(plan[0].factors) == 2
    r = expect(expr, (u, v, w), C)
    assert r.tier == "exact+quadrature"
    t2 = expect(sp.tanh(u) ** 2, (u,), C[:1, :1]).value
    rr = expect(relu(v) * relu(w), (v, w), C[1:, 1:]).value
    assert float(r.value) == pytest.approx(float(t2 * rr), rel=1e-13)
    # u ⟂ w but both correlated with v: no factorisation
    C2 = np.array([[1.0, 0.5, 0.0], [0.5, 1.0, 0.5], [0.0, 0.5, 1.0]])
    plan2 = plan_expectation(expr, (u, v, w), (False,) * 3, frozenset({(0, 1), (1, 2)}))
    assert len(plan2[0].factors) == 1
    # …but a term in u and w only does factorise
    r2 = expect(sp.tanh(u) ** 2 * sp.tanh(w) ** 2, (u, v, w), C2)
    one = float(expect(sp.tanh(u) ** 2, (u,), np.eye(1)).value)
    assert float(r2.value) == pytest.approx(one ** 2, rel=1e-12)


def test_zero_variance_atoms_are_substituted():
    C = np.array([[0.0, 0.0], [0.0, 1.0]])
    r = expect(sp.tanh(v) ** 2 * u + relu(u) * sp.tanh(v) + step(u) + sp.cos(u) * v ** 2,
               (u, v), C)
    assert r.tier == "exact" and float(r.value) == pytest.approx(1.0)


def test_pieces_recognise_univariate_functions_of_linear_forms():
    p = as_pieces(relu(u - v + theta) * sp.tanh(2 * u - 2 * v) * (u - v) ** 2 * w, (u, v, w))
    assert len(p) == 2  # the three multiplicands in u − v merge into one piece
    assert as_pieces(sp.tanh(u * v), (u, v)) is None


def test_same_factor_evaluated_once(monkeypatch):
    from tensorprog.expectations import engine
    calls = []
    orig = engine._factor

    def spy(factor, *args):
        calls.append(factor.expr)
        return orig(factor, *args)

    monkeypatch.setattr(engine, "_factor", spy)
    C = np.array([[1.0, 0.0], [0.0, 1.0]])
    expect(sp.tanh(u) ** 2 * v ** 2 + sp.tanh(u) ** 2 * v ** 4, (u, v), C)
    # the engine plans with the atoms renamed by position (expectations/canonical.py)
    assert [c.xreplace({c.free_symbols.pop(): u}) for c in calls].count(sp.tanh(u) ** 2) == 1


# --------------------------------------------------------------------------- numerical safety
def test_no_nan_at_boundaries():
    eps = 1e-16
    for C in [cov2(1.0, 1.0 + eps, 1.0), cov2(1.0, -1.0 - eps, 1.0), cov2(0.0, 0.0, 1.0),
              cov2(1e-300, 0.0, 1.0), cov2(1e-20, 1e-20, 1e-20)]:
        for expr in (relu(u) * relu(v), step(u) * step(v), sp.erf(u) * sp.erf(v),
                     gelu(u) * sp.tanh(v), relu(u) * step(v) * v):
            r = expect(expr, (u, v), C)
            assert np.isfinite(r.value) and np.isfinite(r.error)


def test_rounding_in_linear_form_variance():
    C = cov2(0.1, 0.1, 0.1)  # u = v: Var(u − v) = 0 up to rounding
    assert float(expect(step(u - v), (u, v), C).value) == 0.0


# --------------------------------------------------------------------------- symbolic mode
def test_symbolic_mode_returns_sympy_matching_numeric():
    K11, K12, K22 = sp.symbols("K11 K12 K22", positive=True)
    S = np.array([[K11, K12], [K12, K22]], dtype=object)
    expr = 2 * relu(u) * relu(v) + theta * step(u) * step(v)
    r = expect(expr, (u, v), S, {theta: theta}, symbolic=True)
    assert r.tier == "exact" and r.value.dtype == object and r.value.shape == ()
    val = r.value.item()
    num = expect(expr, (u, v), cov2(2.0, -0.7, 1.5), {theta: 0.25})
    assert float(val.subs({K11: 2.0, K12: -0.7, K22: 1.5, theta: 0.25})) == pytest.approx(
        float(num.value), rel=1e-13)


def test_symbolic_with_numbers_in_the_covariance():
    S = np.array([[sp.Integer(1), sp.Rational(1, 2)], [sp.Rational(1, 2), sp.Integer(1)]],
                 dtype=object)
    r = expect(step(u) * step(v), (u, v), S, symbolic=True)
    assert sp.simplify(r.value.item() - sp.Rational(1, 3)) == 0  # (π − π/3)/(2π)


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("call, match", [
    (lambda: expect(sp.tanh(u) * sp.tanh(v), (u, v),
                    np.array([[sp.Symbol("a"), 0], [0, 1]], dtype=object), symbolic=True),
     "no closed form for E\\[tanh"),
    (lambda: expect(sp.tanh(u), (u,), np.eye(1), tier="exact"), "no closed form"),
    (lambda: expect(sp.DiracDelta(u) * sp.tanh(u), (u,), np.eye(1)), "not a function"),
    (lambda: expect(x * u, (u,), np.eye(1)), "neither atoms nor parameters"),
    (lambda: expect(u * v, (u, v), cov2(1, 2, 1)), "not positive semidefinite"),
    (lambda: expect(u * v * w, (u, v, w), 0.4 * np.eye(3) - 0.6 * np.ones((3, 3)) + np.eye(3)),
     "not positive semidefinite"),
    (lambda: expect(u * v, (u, v), np.array([[1, .2], [.3, 1.]])), "not symmetric"),
    (lambda: expect(u * v, (u, v), np.eye(3)), "shape"),
    (lambda: expect(u, (u,), np.array([[np.nan]])), "non-finite"),
    (lambda: expect(u, (u,), np.eye(1), tier="magic"), "unknown tier"),
    (lambda: expect(u, ("u",), np.eye(1)), "Symbols"),
    (lambda: expect(u, (u, u), np.eye(2)), "distinct"),
    (lambda: expect(relu(u - theta), (u,), np.ones((3, 1, 1)), {theta: np.zeros(4)}),
     "broadcast"),
    (lambda: expect(sp.exp(u ** 2), (u,), np.eye(1)), "infinite"),
    (lambda: expect(relu(u) * relu(v) * relu(w) * relu(x), (u, v, w, x),
                    0.2 + np.eye(4), tier="quadrature"), "effective dimension"),
])
def test_errors_are_expectation_errors(call, match):
    with pytest.raises(ExpectationError, match=match):
        call()


def test_non_finite_value_raises_instead_of_nan():
    # a parameter that makes the integrand infinite
    with pytest.raises(ExpectationError, match="not finite"):
        expect(theta * relu(u), (u,), np.eye(1), {theta: np.inf})
