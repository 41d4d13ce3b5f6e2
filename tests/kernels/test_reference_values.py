"""docs/theory.md §6 reference values from the literature, through the public API."""
import numpy as np
import pytest

import sympy as sp

import tensorprog as tp
from tensorprog.functions import step

s = sp.Symbol("s", real=True)


def unit_inputs(c, d=2):
    """Two inputs with ξᵀξ/d = 1 and correlation c."""
    return np.sqrt(d) * np.array([[1.0, 0.0], [c, np.sqrt(1 - c**2)]])


def critical_relu(X, layers, in_var=1.0, phi=tp.relu, wvar=2.0):
    """``layers`` nonlinear layers after an input layer of variance ``in_var``; no biases."""
    p = tp.Program("critical")
    h = p.embed(X, var=in_var)
    for l in range(1, layers):
        h = p.matrix(f"W{l}", wvar) @ phi(h)
    p.output(phi(h), var=wvar)
    return p


@pytest.mark.parametrize("c, nngp, ntk", [
    (0.0, [0.318310, 0.493731, 0.604826], [0.318310, 0.685709, 1.060388]),
    (0.5, [0.608998, 0.683906, 0.738128], [0.942331, 1.351480, 1.737845]),
])
def test_relu_critical_off_diagonal(c, nngp, ntk):
    for layers in (1, 2, 3):
        p = critical_relu(unit_inputs(c), layers)
        assert tp.nngp(p)[0, 1] == pytest.approx(nngp[layers - 1], abs=1e-6)
        assert tp.ntk(p)[0, 1] == pytest.approx(ntk[layers - 1], abs=1e-6)


def test_relu_critical_diagonal():
    X = np.random.default_rng(3).standard_normal((3, 7))
    K0 = 2 * np.sum(X**2, 1) / 7
    for layers in (1, 2, 4):
        p = critical_relu(X, layers, in_var=2.0)
        np.testing.assert_allclose(np.diag(tp.nngp(p)), K0, rtol=1e-12)
        np.testing.assert_allclose(np.diag(tp.ntk(p)), (layers + 1) * K0, rtol=1e-12)


def test_erf_reference():
    X = unit_inputs(0.5)
    one = critical_relu(X, 1, phi=tp.erf, wvar=1.0)
    K, T = tp.nngp(one), tp.ntk(one)
    assert K[0, 0] == pytest.approx(0.464559, abs=1e-6)
    assert K[0, 1] == pytest.approx(0.216347, abs=1e-6)
    assert T[0, 0] == pytest.approx(1.033969, abs=1e-6)
    assert T[0, 1] == pytest.approx(0.441426, abs=1e-6)
    two = critical_relu(X, 2, phi=tp.erf, wvar=1.0)
    K, T = tp.nngp(two), tp.ntk(two)
    np.testing.assert_allclose([K[0, 0], K[0, 1], T[0, 0], T[0, 1]],
                               [0.319909, 0.144017, 1.098606, 0.442980], atol=1e-6)


def test_order_chaos_chi1():
    """χ₁ = σ_w² E[φ'(√q* s)²] is 1 at criticality: relu at (σ_w², σ_b²) = (2, 0) for any q*,
    tanh at (1, 0) where q* = 0 (a zero-variance atom)."""
    p = tp.Program("chi")
    x = p.vector("x", 1.3)
    zero = p.vector("q0", 0.0)
    relu_chi = tp.moment(lambda u: 2.0 * step(u) ** 2, x)
    tanh_chi = tp.moment(lambda u: sp.diff(sp.tanh(s), s).subs(s, u) ** 2, zero)
    tanh_off = tp.moment(lambda u: sp.diff(sp.tanh(s), s).subs(s, u) ** 2, x)
    lim = tp.limit(p)
    assert lim.scalar(relu_chi.name)[0] == pytest.approx(1.0, abs=1e-14)
    assert lim.scalar(tanh_chi.name)[0] == pytest.approx(1.0, abs=1e-14)
    assert lim.scalar(tanh_off.name)[0] < 0.6  # away from q* = 0 tanh is ordered
