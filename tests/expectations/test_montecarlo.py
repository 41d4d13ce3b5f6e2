"""Tier 3: randomised quasi-Monte Carlo against closed forms, with its reported standard error."""
import math

import numpy as np
import pytest
import sympy as sp

from tensorprog.expectations import expect
from tensorprog.expectations import montecarlo
from tensorprog.functions import relu, sigmoid, step

u, v, w, x = sp.symbols("u v w x", real=True)
theta = sp.Symbol("theta", real=True)


def cov2(s11, s12, s22):
    return np.array([[s11, s12], [s12, s22]], dtype=float)


CASES = [
    (relu(u) * relu(v), (u, v)),
    (step(u) * step(v), (u, v)),
    (sp.erf(u) * sp.erf(v), (u, v)),
    (sp.cos(u) * sp.cos(v), (u, v)),
    (u ** 2 * v ** 2, (u, v)),
    (relu(u) * step(v) * v, (u, v)),
    (sp.cos(u) * sp.cos(v) * sp.cos(w) * sp.cos(x), (u, v, w, x)),
]


@pytest.mark.parametrize("expr, atoms", CASES, ids=[str(e) for e, _ in CASES])
@pytest.mark.parametrize("corr", [0.0, 0.6, -0.95, 1.0])
def test_montecarlo_within_five_standard_errors_of_exact(expr, atoms, corr):
    k = len(atoms)
    if k > 2 and corr < 0:
        corr = -0.3  # an equicorrelation matrix needs ρ ≥ −1/(k−1)
    C = np.full((k, k), corr * 0.9) + np.eye(k) * (1 - corr * 0.9)
    C = C * np.linspace(0.5, 1.5, k)[:, None] ** 0.5 * np.linspace(0.5, 1.5, k)[None, :] ** 0.5
    ex = expect(expr, atoms, C)
    mc = expect(expr, atoms, C, tier="montecarlo")
    assert ex.tier == "exact" and mc.tier == "montecarlo"
    assert float(mc.error) >= 0  # 0 happens: E[step(u)] over a balanced Sobol set is exact
    assert abs(float(mc.value) - float(ex.value)) < 5 * float(mc.error) + 1e-12


def test_montecarlo_batched_with_params():
    N = 5
    C = np.broadcast_to(cov2(1.0, 0.0, 1.0), (N, 2, 2)).copy()
    C[:, 0, 1] = C[:, 1, 0] = np.linspace(-0.9, 0.9, N)
    th = np.linspace(-1.0, 1.0, N)
    ex = expect(relu(u - theta), (u,), C[:, :1, :1], {theta: th})
    mc = expect(relu(u - theta), (u,), C[:, :1, :1], {theta: th}, tier="montecarlo")
    assert mc.value.shape == (N,) and mc.error.shape == (N,)
    assert np.all(np.abs(mc.value - ex.value) < 5 * mc.error)
    q = expect(relu(u - theta) * relu(v), (u, v), C, {theta: th})
    mc2 = expect(relu(u - theta) * relu(v), (u, v), C, {theta: th}, tier="montecarlo")
    assert np.all(np.abs(mc2.value - q.value) < 5 * mc2.error)


def test_montecarlo_is_deterministic():
    C = np.array([[1, .3, .1], [.3, 1, .2], [.1, .2, 1.]])
    e = sigmoid(u) * sp.tanh(v) * sigmoid(w - 0.5)
    a = expect(e, (u, v, w), C, tier="montecarlo")
    b = expect(e, (u, v, w), C, tier="montecarlo")
    assert a.value == b.value and a.error == b.error


def test_high_dimension_falls_back_to_montecarlo():
    """A GRU-like product of four gates over four correlated atoms: dimension 4 → tier 3."""
    C = 0.3 * np.ones((4, 4)) + 0.7 * np.eye(4)
    e = sigmoid(u) * sp.tanh(v) * sigmoid(w) * sp.tanh(x + 0.2)
    r = expect(e, (u, v, w, x), C)
    assert r.tier == "montecarlo"
    assert 0 < float(r.error) < 1e-3
    # the same factor with a rank-2 covariance is 2-dimensional: quadrature, and MC agrees
    A = np.array([[1.0, 0.0], [0.6, 0.8], [0.3, -0.5], [-0.7, 0.2]])
    q = expect(e, (u, v, w, x), A @ A.T)
    assert q.tier == "quadrature"
    mc = expect(e, (u, v, w, x), A @ A.T, tier="montecarlo")
    assert abs(float(q.value) - float(mc.value)) < 5 * float(mc.error)


def test_sobol_points_are_standard_normal_and_cached():
    Z = montecarlo.sobol_normal(2)
    assert Z.shape == (montecarlo.REPLICAS, montecarlo.POINTS, 2)
    assert montecarlo.sobol_normal(2) is Z
    assert abs(Z.mean()) < 1e-3
    assert abs(Z.var() - 1) < 1e-2
    assert not Z.flags.writeable


def test_zero_covariance_constant_integrand():
    # every atom has zero variance at the only batch point but not structurally everywhere
    C = np.zeros((2, 2, 2))
    C[1] = cov2(1.0, 0.5, 1.0)
    r = expect(sp.tanh(u + 1) * sp.tanh(v + 1), (u, v), C, tier="montecarlo")
    assert float(r.value[0]) == pytest.approx(math.tanh(1) ** 2, rel=1e-14)
    assert float(r.error[0]) == 0.0
