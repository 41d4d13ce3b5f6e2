"""Tier 2: quadrature against independent adaptive integration (scipy), exact values and MC."""
import math

import numpy as np
import pytest
import sympy as sp
from scipy import integrate
from scipy.special import ndtr

from tensorprog.errors import ExpectationError
from tensorprog.expectations import expect
from tensorprog.expectations import quadrature
from tensorprog.functions import gelu, relu, sigmoid, step

u, v, w, x = sp.symbols("u v w x", real=True)
theta = sp.Symbol("theta", real=True)


def cov2(s11, s12, s22):
    return np.array([[s11, s12], [s12, s22]], dtype=float)


def _phi(z):
    return np.exp(-z * z / 2) / math.sqrt(2 * math.pi)


def reference_2d(f, g, C, kinks=(0.0,)):
    """E[f(u) g(v)] by nested adaptive scipy quadrature, split at the kink points."""
    s1, s2 = math.sqrt(C[0, 0]), math.sqrt(C[1, 1])
    rho = C[0, 1] / (s1 * s2)
    c = math.sqrt(max(1 - rho ** 2, 0.0))

    def inner(z1):
        pts = [(p / s2 - rho * z1) / c for p in kinks] if c > 1e-9 else None
        pts = [p for p in pts if -12 < p < 12] if pts else None
        return integrate.quad(lambda z2: g(s2 * (rho * z1 + c * z2)) * _phi(z2), -12, 12,
                              epsabs=1e-14, epsrel=1e-13, limit=200, points=pts or None)[0]

    pts = [p / s1 for p in kinks if -12 < p / s1 < 12]
    return integrate.quad(lambda z1: f(s1 * z1) * inner(z1) * _phi(z1), -12, 12, epsabs=1e-14,
                          epsrel=1e-13, limit=200, points=pts or None)[0]


np_relu = lambda t: np.maximum(t, 0.0)  # noqa: E731
np_step = lambda t: (t > 0) * 1.0  # noqa: E731
np_gelu = lambda t: t * ndtr(t)  # noqa: E731
np_sigmoid = lambda t: 1 / (1 + np.exp(-t))  # noqa: E731

SMOOTH = [
    (sp.tanh(u) * sp.tanh(v), np.tanh, np.tanh),
    (gelu(u) * gelu(v), np_gelu, np_gelu),
    (sigmoid(u) * sigmoid(v), np_sigmoid, np_sigmoid),
    (u ** 2 * sp.tanh(u) * sp.tanh(v), lambda t: t * t * np.tanh(t), np.tanh),
    ((1 - sp.tanh(u) ** 2) * (1 - sp.tanh(v) ** 2), lambda t: 1 - np.tanh(t) ** 2,
     lambda t: 1 - np.tanh(t) ** 2),
]
KINKY = [
    (relu(u) * gelu(v), np_relu, np_gelu),
    (step(u) * sp.tanh(v), np_step, np.tanh),
    (relu(u - 0.3) * relu(v), lambda t: np_relu(t - 0.3), np_relu),
    (relu(u) * sp.tanh(v), np_relu, np.tanh),
    (step(u + 0.5) * step(v - 0.2), lambda t: np_step(t + 0.5), lambda t: np_step(t - 0.2)),
]
COVS = [cov2(1, .5, 1), cov2(2, -1.2, 1.5), cov2(1, .999, 1), cov2(4, 3, 4), cov2(.3, .05, .5)]


@pytest.mark.parametrize("C", COVS, ids=lambda C: f"{C[0, 0]}-{C[0, 1]}-{C[1, 1]}")
@pytest.mark.parametrize("expr, f, g", SMOOTH, ids=[str(e) for e, _, _ in SMOOTH])
def test_smooth_to_1e8(expr, f, g, C):
    r = expect(expr, (u, v), C)
    assert r.tier == "quadrature"
    ref = reference_2d(f, g, C, kinks=())
    assert abs(float(r.value) - ref) < 1e-9
    assert float(r.error) < 1e-8


@pytest.mark.parametrize("C", COVS, ids=lambda C: f"{C[0, 0]}-{C[0, 1]}-{C[1, 1]}")
@pytest.mark.parametrize("expr, f, g", KINKY, ids=[str(e) for e, _, _ in KINKY])
def test_kinks_to_1e7_relative(expr, f, g, C):
    r = expect(expr, (u, v), C)
    assert r.tier == "quadrature"
    ref = reference_2d(f, g, C, kinks=(0.0, 0.3, -0.5, 0.2))
    assert abs(float(r.value) - ref) <= 1e-7 * abs(ref) + 1e-13
    assert float(r.error) <= 1e-7 * max(abs(ref), 1e-6)


@pytest.mark.parametrize("rho", [-1.0, -0.99999, 0.99999, 1.0])
def test_kinks_at_and_near_perfect_correlation(rho):
    C = cov2(1.2, rho * math.sqrt(1.2 * 0.7), 0.7)
    for expr, f, g in KINKY[:4]:
        r = expect(expr, (u, v), C)
        mc = expect(expr, (u, v), C, tier="montecarlo")
        assert np.isfinite(r.value)
        assert abs(float(r.value) - float(mc.value)) < 5 * float(mc.error) + 1e-12
    # exact limits at ρ = ±1: E[relu(u) tanh(v)] with v = ±(s2/s1) u
    if abs(rho) == 1.0:
        s1, s2 = math.sqrt(1.2), math.sqrt(0.7)
        ref = integrate.quad(lambda z: np_relu(s1 * z) * np.tanh(rho * s2 * z) * _phi(z), 0, 12,
                             epsabs=1e-14)[0]
        assert float(expect(relu(u) * sp.tanh(v), (u, v), C).value) == pytest.approx(ref, abs=1e-12)


@pytest.mark.parametrize("s", [(1.0, 0.6, 1.0), (2.5, -0.4, 0.8), (1.0, 1.0, 1.0), (4.0, -4.0, 4.0)])
def test_forced_quadrature_matches_exact(s):
    C = cov2(*s)
    for expr in (relu(u) * relu(v), step(u) * step(v), sp.erf(u) * sp.erf(v),
                 relu(u) * relu(v) * u * v, step(u) * sp.erf(v), relu(u - 0.2)):
        ex = expect(expr, (u, v), C)
        q = expect(expr, (u, v), C, tier="quadrature")
        assert ex.tier == "exact" and q.tier == "quadrature"
        assert abs(float(ex.value) - float(q.value)) < 1e-10 + 1e-9 * abs(float(ex.value))


def test_one_dimensional_with_params_and_batch():
    N = 7
    s = np.linspace(0.2, 3.0, N)
    C = s[:, None, None] ** 2 * np.ones((N, 1, 1))
    th = np.linspace(-1, 1, N)
    r = expect(relu(u - theta) * sp.tanh(u), (u,), C, {theta: th})
    assert r.value.shape == (N,) and r.tier == "quadrature"
    for i in range(N):
        ref = integrate.quad(lambda z: np_relu(s[i] * z - th[i]) * np.tanh(s[i] * z) * _phi(z),
                             th[i] / s[i], 12, epsabs=1e-14, epsrel=1e-13)[0]
        assert float(r.value[i]) == pytest.approx(ref, rel=1e-9, abs=1e-13)


def test_three_dimensional_kinks_and_smooth():
    C3 = np.array([[1, .5, .2], [.5, 1, .3], [.2, .3, 1.]])
    for expr in (relu(u) * relu(v) * relu(w), relu(u - 0.2) * sp.tanh(v) * step(w),
                 sp.tanh(u) * sp.tanh(v) * sp.tanh(w + 0.3)):
        q = expect(expr, (u, v, w), C3)
        mc = expect(expr, (u, v, w), C3, tier="montecarlo")
        assert q.tier == "quadrature"
        assert abs(float(q.value) - float(mc.value)) < 5 * float(mc.error)
        assert float(q.error) < 1e-8


def test_tensor_gauss_hermite_against_stein_identity():
    """E[w tanh(u) tanh(v)] (3-D tensor rule) = Σ_wu E[sech²u tanh v] + Σ_wv E[tanh u sech²v]
    (2-D Mehler rules): two independent routes."""
    C3 = np.array([[1, .5, .2], [.5, 1.4, .3], [.2, .3, 1.]])
    lhs = expect(w * sp.tanh(u + 0.2) * sp.tanh(v), (u, v, w), C3)
    a = expect((1 - sp.tanh(u + 0.2) ** 2) * sp.tanh(v), (u, v), C3[:2, :2]).value
    b = expect(sp.tanh(u + 0.2) * (1 - sp.tanh(v) ** 2), (u, v), C3[:2, :2]).value
    assert float(lhs.value) == pytest.approx(.2 * float(a) + .3 * float(b), abs=1e-10)


def test_non_product_integrands():
    C = cov2(1.0, 0.5, 1.3)
    # Max(u, v) = v + relu(u - v): kink along u = v (iterated rule with breakpoints)
    r = expect(sp.Max(u, v), (u, v), C)
    assert float(r.value) == pytest.approx(math.sqrt((1 + 1.3 - 1) / (2 * math.pi)), abs=1e-12)
    # smooth, not a product of univariate functions: tensor Gauss–Hermite
    r = expect(sp.tanh(u * v), (u, v), C)
    ref = integrate.dblquad(lambda b, a: math.tanh(a * b) * _mvn(a, b, C), -11, 11, -11, 11,
                            epsabs=1e-12, epsrel=1e-12)[0]
    assert float(r.value) == pytest.approx(ref, abs=1e-7)


def _mvn(a, b, C):
    det = C[0, 0] * C[1, 1] - C[0, 1] ** 2
    q = (C[1, 1] * a * a - 2 * C[0, 1] * a * b + C[0, 0] * b * b) / det
    return math.exp(-q / 2) / (2 * math.pi * math.sqrt(det))


def test_mehler_on_kernel_batch_shares_coefficients():
    N = 12
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, 4))
    G = X @ X.T / 4
    d = np.diag(G)
    C = np.empty((N, N, 2, 2))
    C[..., 0, 0], C[..., 1, 1] = d[:, None], d[None, :]
    C[..., 0, 1] = C[..., 1, 0] = G
    r = expect(sp.tanh(u) * sp.tanh(v), (u, v), C)
    assert r.value.shape == (N, N)
    assert np.allclose(r.value, r.value.T, atol=1e-14, rtol=0)
    for i, j in [(0, 0), (1, 5), (3, 9)]:
        ref = reference_2d(np.tanh, np.tanh, C[i, j], kinks=())
        assert float(r.value[i, j]) == pytest.approx(ref, abs=1e-9)


def test_chunking_does_not_change_results(monkeypatch):
    N = 6
    C = np.broadcast_to(cov2(1.0, 0.3, 0.8), (N, 2, 2)).copy()
    C[:, 0, 1] = C[:, 1, 0] = np.linspace(-0.8, 0.8, N)
    th = np.linspace(-0.5, 0.5, N)
    ref = expect(relu(u - theta) * sp.tanh(v), (u, v), C, {theta: th}).value
    monkeypatch.setattr(quadrature, "MEMORY_BUDGET", 1.0)  # one batch point per chunk
    small = expect(relu(u - theta) * sp.tanh(v), (u, v), C, {theta: th}).value
    assert np.array_equal(ref, small)


def test_forced_quadrature_refuses_high_dimension():
    C4 = np.eye(4) + 0.2
    with pytest.raises(ExpectationError, match="effective dimension"):
        expect(relu(u) * relu(v) * relu(w) * relu(x), (u, v, w, x), C4, tier="quadrature")


def test_rank_deficient_high_dimensional_factor_uses_quadrature():
    """Four atoms whose covariance has rank 2: the effective dimension is 2."""
    A = np.array([[1.0, 0.0], [0.6, 0.8], [0.3, -0.5], [-0.7, 0.2]])
    C = A @ A.T
    e = sp.tanh(u) * sp.tanh(v) * sp.tanh(w) * sp.tanh(x)
    q = expect(e, (u, v, w, x), C, tier="quadrature")
    mc = expect(e, (u, v, w, x), C, tier="montecarlo")
    assert abs(float(q.value) - float(mc.value)) < 5 * float(mc.error)
    assert quadrature.effective_rank(e, (u, v, w, x), C, {}) == 2


# ------------------------------------------------------------------ narrow transitions
# True values by mpmath adaptive quadrature (30 digits), split at the transition.
EPS = 1e-5
NARROW_CASES = [
    # tanh at variance 100: poles ±iπ/20 standard deviations from the real axis
    (sp.tanh(u) ** 2, cov2(100, 0, 1), 0.920536863430516671),
    ((1 - sp.tanh(u) ** 2) ** 2, cov2(100, 0, 1), 0.0531067877481158341),
    # the peak of width √ε of BatchNorm over two inputs: E[(t² + ε)^-½] = e^{ε/4} K₀(ε/4)/√(2π)
    (1 / sp.sqrt(u ** 2 + EPS), cov2(1, 0, 1), 5.19230713680727777),
    ((EPS / (u ** 2 + EPS) ** sp.Rational(3, 2)) ** 2, cov2(1, 0, 1), 148.624525954120471),
    # the same peak along u − v of a correlated pair (Var(u − v) = 1)
    (1 / sp.sqrt((u - v) ** 2 + EPS), cov2(1.5, 1.0, 1.5), 5.19230713680727777),
    (1 / sp.sqrt(u ** 2 - 2 * u * v + v ** 2 + EPS), cov2(1.5, 1.0, 1.5), 5.19230713680727777),
]


@pytest.mark.parametrize("expr, C, truth", NARROW_CASES)
def test_narrow_transitions_to_1e8_with_honest_errors(expr, C, truth):
    res = expect(expr, (u, v), C)
    assert res.tier == "quadrature"
    assert abs(float(res.value) - truth) <= 1e-8 * abs(truth)
    assert abs(float(res.value) - truth) <= float(res.error) + 1e-14 * abs(truth)


def test_wide_transitions_keep_the_fast_rules(monkeypatch):
    """Well-scaled smooth factors never reach the graded composite rules."""
    def fail(*args, **kwargs):
        raise AssertionError("composite rule used")

    monkeypatch.setattr(quadrature, "_composite_1d", fail)
    monkeypatch.setattr(quadrature, "_composite_2d", fail)
    C = np.stack([cov2(s, 0.5 * s, s) for s in (0.5, 1.0, 2.0)])
    res = expect(sp.tanh(u) * sp.tanh(v) + sigmoid(u) ** 2, (u, v), C)
    assert np.all(res.error < 1e-9)


def test_unreachable_target_warns_with_the_size_of_the_error(monkeypatch):
    from tensorprog.errors import AccuracyWarning

    monkeypatch.setattr(quadrature, "RTOL", 1e-17)
    monkeypatch.setattr(quadrature, "TARGET_RTOL", 1e-17)
    with pytest.warns(AccuracyWarning, match="did not reach the target"):
        res = expect(1 / sp.sqrt(u ** 2 + EPS), (u,), np.array([[1.0]]))
    assert abs(float(res.value) - 5.19230713680727777) <= float(res.error)
