"""The Master-Theorem rules of tensorprog/limit/evaluator.py (TP IIb Def. B.3) against closed
forms: ZINIT, ZNONLIN⁺, ZMOMENT, ZHAT (one independent family per matrix and orientation), ZDOT
with the derivative of Remark B.5 and the Stein form of Remark B.6."""
import math

import numpy as np
import pytest
from scipy import integrate

import tensorprog as tp

from ..kernels.reference import relu_pair


def gauss_mean(f, var):
    """E f(u) for u ~ N(0, var), by adaptive quadrature (independent of tensorprog)."""
    dens = lambda u: math.exp(-u * u / (2 * var)) / math.sqrt(2 * math.pi * var)
    return integrate.quad(lambda u: f(u) * dens(u), -np.inf, np.inf, epsabs=1e-13)[0]


def test_zinit_given_covariances():
    p = tp.Program("init")
    p.vector("u", 1.3)
    p.vector("v", 0.7, cross={"u": 0.4})
    lim = tp.limit(p)
    assert lim.cov("u")[0, 0] == pytest.approx(1.3, rel=1e-15)
    assert lim.cov("u", "v")[0, 0] == pytest.approx(0.4, rel=1e-15)
    assert str(lim.Z("u")) == "Z^{u}"


def test_znonlin_and_zmoment():
    """Z^{relu(u)} = relu(Z^u); avg(x²) → E relu(Z^u)² = Var/2; avg(x) → √(Var/2π)."""
    p = tp.Program("nonlin")
    u = p.vector("u", 1.3)
    x = tp.relu(u).named("x")
    (x * x).mean(name="m2")
    x.mean(name="m1")
    lim = tp.limit(p)
    assert str(lim.Z("x")) == "relu(Z^{u})"
    assert lim.scalar("m2")[0] == pytest.approx(1.3 / 2, rel=1e-14)
    assert lim.scalar("m1")[0] == pytest.approx(math.sqrt(1.3 / (2 * math.pi)), rel=1e-14)
    assert lim.cov("x")[0, 0] == pytest.approx(1.3 / 2, rel=1e-14)


def test_zmoment_feeds_later_instructions():
    """A limit scalar θ̊ enters ZNONLIN⁺ as a deterministic parameter."""
    p = tp.Program("scaled")
    u = p.vector("u", 2.0)
    th = (u * u).mean(name="th")
    y = tp.nonlin(lambda a, t: a / t, u, scalars=[th]).named("y")
    (y * y).mean(name="r")
    lim = tp.limit(p)
    assert lim.scalar("r")[0] == pytest.approx(2.0 / 4.0, rel=1e-14)


def test_zhat_covariances_and_independence():
    """Cov(Ẑ^{Wx}, Ẑ^{Wy}) = σ_W² E[Z^x Z^y]; Ẑ^{Vx} (another matrix) and Ẑ^{Wᵀx} (the other
    orientation) are independent of Ẑ^{Wx}."""
    p = tp.Program("zhat")
    x = p.vector("x", 1.0)
    y = p.vector("y", 2.0, cross={"x": 0.5})
    W, V = p.matrix("W", 1.7), p.matrix("V", 0.9)
    wx, wy, vx, wtx = W @ tp.relu(x), W @ tp.relu(y), V @ tp.relu(x), W.T @ tp.relu(x)
    lim = tp.limit(p)
    Err, _ = relu_pair(np.array([[1.0, 0.5], [0.5, 2.0]]))
    assert lim.cov(wx.name, wy.name)[0, 0] == pytest.approx(1.7 * Err[0, 1], rel=1e-13)
    assert lim.cov(wy.name)[0, 0] == pytest.approx(1.7 * Err[1, 1], rel=1e-13)
    assert lim.cov(vx.name)[0, 0] == pytest.approx(0.9 * Err[0, 0], rel=1e-13)
    assert lim.cov(wx.name, vx.name)[0, 0] == 0.0
    assert lim.cov(wx.name, wtx.name)[0, 0] == 0.0
    assert lim.zdot[wtx.name] == []  # relu(x) holds no Ẑ^{W·}: no ZDOT term


def canonical(phi, sw, vx):
    """The limit of ``z = Wᵀφ(Wx)``, ``θ = avg(z·x)`` with Var x = vx, σ_W² = sw, and the names
    of z and θ."""
    p = tp.Program("canonical")
    x = p.vector("x", vx)
    W = p.matrix("W", sw)
    z = W.T @ phi(W @ x)
    th = (z * x).mean()
    return tp.limit(p), z.name, th.name


def test_zdot_canonical_program():
    """y = Wx, z = Wᵀφ(y): Z^z = Ẑ^{Wᵀφ(y)} + σ_W² Z^x E[φ'(Z^y)] (Def. B.3, ZDOT), so
    avg(z·x) → σ_W² E[φ'(Z^y)] E[(Z^x)²] with Var Z^y = σ_W² Var Z^x."""
    sw, vx = 2.0, 1.3
    lim, z, th = canonical(tp.tanh, sw, vx)
    dphi = gauss_mean(lambda u: 1 - math.tanh(u) ** 2, sw * vx)
    assert lim.scalar(th)[0] == pytest.approx(sw * dphi * vx, rel=1e-9)
    [(coef, sigma2, partner, _)] = lim.zdot[z]
    assert sigma2 == sw and partner == "x"


def test_zdot_stein_form_with_a_singular_covariance():
    """Remark B.6 with two partners whose covariance C is singular: x = step(Wu + Wu') with u' a
    copy of u, so Ẑ^{Wu} and Ẑ^{Wu'} are perfectly correlated.  C⁺b splits the expected
    derivative between them, and the ZDOT term of Wᵀx is Z^u (a₁ + a₂) with
    a₁ + a₂ = 2 E[δ(S)] = 2/√(2π Var S), Var S = 4 σ_W² Var u:  avg(z·u) → σ_W² Var u (a₁ + a₂)."""
    sw, vu = 1.5, 0.8
    p = tp.Program("stein2")
    u = p.vector("u", vu)
    copy = tp.identity(u).named("u_copy")
    W = p.matrix("W", sw)
    z = W.T @ tp.step((W @ u) + (W @ copy))
    th = (z * u).mean()
    lim = tp.limit(p)
    assert len(lim.zdot[z.name]) == 2
    expected = sw * vu * 2 / math.sqrt(2 * math.pi * 4 * sw * vu)
    assert lim.scalar(th.name)[0] == pytest.approx(expected, rel=1e-10)


def test_zdot_derivative_as_the_program_is_written():
    """Remark B.5: x = φ(W(y+z)) and x = φ(Wy + Wz) have different atoms, but Z^{Wᵀx} gets the
    same ZDOT term (Z^y + Z^z) E[φ'(Z^{W(y+z)})] either way."""
    values = []
    for split in (False, True):
        p = tp.Program("remark")
        y = p.vector("y", 1.0)
        z = p.vector("z", 0.5, cross={"y": 0.2})
        W = p.matrix("W", 1.2)
        pre = (W @ y) + (W @ z) if split else W @ (y + z)
        out = W.T @ tp.tanh(pre)
        (out * y).mean(name="a")
        (out * z).mean(name="b")
        lim = tp.limit(p)
        values.append([lim.scalar("a")[0], lim.scalar("b")[0]])
    var = 1.2 * (1.0 + 0.5 + 2 * 0.2)
    dphi = gauss_mean(lambda u: 1 - math.tanh(u) ** 2, var)
    expected = [1.2 * dphi * (1.0 + 0.2), 1.2 * dphi * (0.2 + 0.5)]
    np.testing.assert_allclose(values[0], expected, rtol=1e-9)
    np.testing.assert_allclose(values[1], expected, rtol=1e-9)


def test_covariances_over_input_families():
    """Every covariance is an (N, N) array over all input pairs at once."""
    X = np.random.default_rng(0).standard_normal((4, 3))
    p = tp.Program("fam")
    h = p.embed(X, var=2.0, bias_var=0.1, name="h")
    x = tp.relu(h).named("x")
    lim = tp.limit(p)
    K = 2.0 * X @ X.T / 3 + 0.1
    np.testing.assert_allclose(lim.cov("h"), K, rtol=1e-14)
    np.testing.assert_allclose(lim.cov("x"), relu_pair(K)[0], rtol=1e-12)


def test_queries_that_make_no_sense_raise():
    p = tp.Program("q")
    u = p.vector("u", 1.0)
    p.matrix("W", 1.0)
    lim = tp.limit(p)
    with pytest.raises(tp.LimitError, match="is a matrix"):
        lim.Z("W")
    with pytest.raises(tp.LimitError, match="is a vector"):
        lim.scalar(u.name)
    with pytest.raises(tp.LimitError, match="no variable"):
        lim.cov("nope")


@pytest.mark.parametrize("query", ["Z", "mean", "cov"])
def test_vector_queries_on_a_scalar_name_the_scalar(query):
    lim = tp.limit(tp.demo_program(moment=True))
    with pytest.raises(tp.LimitError, match="'th' is a scalar.*scalar\\('th'\\)"):
        getattr(lim, query)("th")
