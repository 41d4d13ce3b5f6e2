"""ZDOT (TP IIb Def. B.3, Remarks B.5–B.6): the canonical check y = Wx, z = Wᵀφ(y) gives
(1/n) zᵀx → σ_W² E[φ'(Z^y)] E[(Z^x)²], not the gradient-independence answer 0."""
import numpy as np
import pytest

import tensorprog as tp


def canonical(phi, sigma2=1.5, xvar=0.8):
    p = tp.Program("zdot")
    x = p.vector("x", xvar)
    W = p.matrix("W", sigma2)
    y = W @ x
    z = W.T @ phi(y)
    th = (z * x).mean()
    return p, th.name, z.name


def gauss_mean(f, var, order=200):
    s, w = np.polynomial.hermite_e.hermegauss(order)
    return float((f(np.sqrt(var) * s) * w).sum() / w.sum())


@pytest.mark.parametrize("name, phi, dphi", [
    ("tanh", tp.tanh, lambda u: 1 / np.cosh(u) ** 2),
    ("erf", tp.erf, lambda u: 2 / np.sqrt(np.pi) * np.exp(-u**2)),
    ("sin", tp.sin, np.cos),
])
def test_canonical_smooth(name, phi, dphi):
    sigma2, xvar = 1.5, 0.8
    p, th, _ = canonical(phi, sigma2, xvar)
    expected = sigma2 * gauss_mean(dphi, sigma2 * xvar) * xvar
    value = tp.limit(p).scalar(th)[0]
    assert value == pytest.approx(expected, rel=1e-9)
    assert abs(value) > 0.1  # not the gradient-independence answer


def test_canonical_step_uses_stein():
    """φ = relu: φ' = step is fine, but φ = step has φ' = δ: the Stein form C⁺b applies."""
    sigma2, xvar = 2.0, 0.7
    p, th, _ = canonical(tp.step, sigma2, xvar)
    # E[step'(Z^y)] = density of N(0, σ² xvar) at 0, by Stein: E[Z step(Z)]/Var(Z)
    expected = sigma2 * (1 / np.sqrt(2 * np.pi * sigma2 * xvar)) * xvar
    assert tp.limit(p).scalar(th)[0] == pytest.approx(expected, rel=1e-9)
    p, th, _ = canonical(tp.relu, sigma2, xvar)
    assert tp.limit(p).scalar(th)[0] == pytest.approx(sigma2 * 0.5 * xvar, rel=1e-12)


def test_zdot_printed_and_expression():
    p, th, z = canonical(tp.tanh)
    phi_y = p.node(z).args[0]
    lim = tp.limit(p)
    text = str(lim)
    assert f"Z^{{{z}}} = Ẑ^{{Wᵀ {phi_y}}} + 1.5·c1·Z^{{x}}" in text
    assert f"c1 = E[∂Z^{{{phi_y}}}/∂Ẑ^{{W x}}]" in text
    Zz = lim.Z(z)
    assert {s.name for s in Zz.free_symbols} >= {f"Ẑ^{{Wᵀ {phi_y}}}", "Z^{x}"}


def test_remark_b5_derivative_as_written():
    """Remark B.5: for x = φ(W(y+z)) vs x = φ(Wy + Wz), Z^{Wᵀx} has the same ZDOT total."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((3, 3))
    C = A @ A.T / 3 + np.eye(3) * 0.2
    results = []
    for split in (False, True):
        p = tp.Program("b5")
        y = p.vector("y", C)
        z = p.vector("z", np.eye(3) * 0.5)
        W = p.matrix("W", 1.0)
        pre = (W @ y + W @ z) if split else W @ (y + z)
        u = W.T @ tp.tanh(pre)
        th = (u * y).mean()
        results.append(tp.limit(p).scalar(th.name))
    np.testing.assert_allclose(results[0], results[1], rtol=1e-9)
    assert np.all(np.abs(results[0]) > 1e-3)


def test_zero_variance_and_batched_inputs():
    """Input families: the ZDOT coefficient differs per input; a zero-variance input works."""
    p = tp.Program("batch")
    X = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    x = p.embed(X, var=1.0)
    W = p.matrix("W", 1.0)
    z = W.T @ tp.erf(W @ x)
    th = (z * x).mean()
    value = tp.limit(p).scalar(th.name)
    q = np.array([0.5, 2.0, 0.0])  # E[(Z^x)²] per input
    expected = 2 / np.sqrt(np.pi) / np.sqrt(1 + 2 * q) * q
    np.testing.assert_allclose(value, expected, rtol=1e-12)
    assert np.all(np.isfinite(value))


def test_slightly_indefinite_estimated_covariance_is_projected():
    """Covariance blocks estimated by quadrature or Monte Carlo can make a joint covariance
    slightly indefinite; the evaluator projects it onto the PSD cone instead of failing."""
    import sympy as sp

    p = tp.Program("psd")
    p.vector("x", 1.0)
    lim = tp.limit(p)
    a, b, c = sp.symbols("a b c", real=True)
    C = np.array([[1.0, 0.999, 0.0], [0.999, 1.0, 0.999], [0.0, 0.999, 1.0]])  # λ_min < 0
    lam, V = np.linalg.eigh(C)
    slightly = V @ np.diag(np.maximum(lam, -1e-6)) @ V.T  # one eigenvalue −1e-6
    expr = sp.tanh(a) * sp.tanh(b) * sp.tanh(c) + a * sp.sin(b) * sp.cos(c)
    psd = (V @ np.diag(np.maximum(lam, 0)) @ V.T)[None]
    value = lim._expect(expr, [a, b, c], slightly[None], {}, (1,), sample=None)
    reference = lim._expect(expr, [a, b, c], psd, {}, (1,), sample=None)
    np.testing.assert_allclose(value, reference, rtol=1e-9)


@pytest.mark.parametrize("threshold, expected", [(0.25, 1.0), (0.75, 0.0)])
def test_zdot_coefficient_of_a_function_of_limit_scalars_only(threshold, expected):
    """z = y·step(θ − c) with θ = E[y²] = 0.5: the ZDOT coefficient E[∂Z^z/∂Ẑ^{Wh}] = step(θ − c)
    has no atom left and is evaluated with the project's functions (step), giving
    Cov(Z^{Wᵀz}) = σ_W² E[z²] + step(θ − c)²·E[h²] (σ_W² = 1, E[h²] = E[y²] = 0.5)."""
    from tensorprog.functions import step
    p = tp.Program("scalar_zdot")
    h = p.embed(np.eye(2), var=1.0)
    W = p.matrix("W", var=1.0)
    y = W @ h
    th = (y * y).mean(name="th")
    z = tp.nonlin(lambda a, t: a * step(t - threshold), y, scalars=[th])
    g = W.T @ z
    np.testing.assert_allclose(tp.limit(p).cov(g.name), expected * np.eye(2), rtol=1e-12)
