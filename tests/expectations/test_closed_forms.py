"""Tier 1: closed forms against literature values, against quadrature, and symbolic vs numeric."""
import math
import zlib

import numpy as np
import pytest
import sympy as sp

from tensorprog.expectations import expect
from tensorprog.expectations.closed_forms import exact_plan, orthant_J
from tensorprog.functions import absolute, gelu, leaky_relu, relu, step

u, v, w = sp.symbols("u v w", real=True)
theta = sp.Symbol("theta", real=True)


def cov2(s11, s12, s22):
    return np.array([[s11, s12], [s12, s22]], dtype=float)


def random_cov(rng, k):
    A = rng.standard_normal((k, k))
    return A @ A.T / k + 0.1 * np.eye(k)


# --------------------------------------------------------------------------- literature values
def test_relu_arccos_unit_variance_zero_correlation():
    C = cov2(1, 0, 1)
    r = expect(relu(u) * relu(v), (u, v), C)
    assert r.tier == "exact" and float(r.error) == 0.0
    assert float(r.value) == pytest.approx(1 / (2 * math.pi), abs=1e-15)
    assert float(expect(step(u) * step(v), (u, v), C).value) == pytest.approx(0.25, abs=1e-15)


def test_design_erf_reference_values():
    """docs/theory.md §6: erf, σ_w² = 1, K⁰ = [[1, .5], [.5, 1]] → K11, K12, Θ11, Θ12 after one layer."""
    K0 = cov2(1, 0.5, 1)
    K = expect(sp.erf(u) * sp.erf(v), (u, v), K0).value
    K11 = expect(sp.erf(u) ** 2, (u,), K0[:1, :1]).value
    assert float(K11) == pytest.approx(0.464559, abs=1e-6)
    assert float(K) == pytest.approx(0.216347, abs=1e-6)
    d = sp.diff(sp.erf(u), u)  # 2/√π exp(−u²): a Gaussian form
    dd = expect(d * d.subs(u, v), (u, v), K0)
    dd11 = expect(d ** 2, (u,), K0[:1, :1])
    assert dd.tier == "exact"
    assert float(K11 + dd11.value * 1.0) == pytest.approx(1.033969, abs=1e-6)
    assert float(K + dd.value * 0.5) == pytest.approx(0.441426, abs=1e-6)


@pytest.mark.parametrize("c, nngp, ntk", [
    (0.0, (0.318310, 0.493731, 0.604826), (0.318310, 0.685709, 1.060388)),
    (0.5, (0.608998, 0.683906, 0.738128), (0.942331, 1.351480, 1.737845)),
])
def test_design_relu_critical_recursion(c, nngp, ntk):
    """docs/theory.md §6: critical ReLU (σ_w² = 2), unit inputs, no bias, NNGP and NTK after 1..3 layers."""
    K = cov2(1.0, c, 1.0)
    Theta = K.copy()
    for layer in range(3):
        Kn = 2 * expect(relu(u) * relu(v), (u, v), K).value
        Kd = 2 * expect(relu(u) ** 2, (u,), K[:1, :1]).value
        dot = 2 * expect(step(u) * step(v), (u, v), K).value
        dot_d = 2 * expect(step(u), (u,), K[:1, :1]).value
        Theta = np.array([[Kd + dot_d * Theta[0, 0], Kn + dot * Theta[0, 1]],
                          [Kn + dot * Theta[0, 1], Kd + dot_d * Theta[1, 1]]], dtype=float)
        K = cov2(float(Kd), float(Kn), float(Kd))
        assert K[0, 1] == pytest.approx(nngp[layer], abs=1e-6)
        assert Theta[0, 1] == pytest.approx(ntk[layer], abs=1e-6)
        assert K[0, 0] == pytest.approx(1.0, abs=1e-14)


def test_orthant_J_is_the_design_arccos_formula():
    J11 = orthant_J(1, 1)
    design = (sp.sin(theta) + (sp.pi - theta) * sp.cos(theta)) / (2 * sp.pi)
    assert sp.simplify(J11.subs(sp.Symbol("theta", real=True), theta) - design) == 0
    assert sp.simplify(orthant_J(0, 0).subs(sp.Symbol("theta", real=True), theta)
                       - (sp.pi - theta) / (2 * sp.pi)) == 0


@pytest.mark.parametrize("rho", [-0.9, -0.3, 0.0, 0.4, 0.95])
def test_relu_step_derivation(rho):
    """E[relu(u) step(v)] = s_u (1 + ρ)/(2√(2π)) (Stein's lemma on E[u 1{u>0} 1{v>0}])."""
    C = cov2(2.0, rho * math.sqrt(2.0 * 0.7), 0.7)
    r = expect(relu(u) * step(v), (u, v), C)
    assert float(r.value) == pytest.approx(math.sqrt(2.0) * (1 + rho) / (2 * math.sqrt(2 * math.pi)),
                                           rel=1e-13)


def test_isserlis_polynomials():
    C = cov2(1.5, 0.5, 2.0)
    r = expect(u ** 4 * v ** 2, (u, v), C)
    assert float(r.value) == pytest.approx(3 * 1.5 ** 2 * 2.0 + 12 * 1.5 * 0.25, rel=1e-14)
    var = 1.5 + 2 * 0.5 + 2.0
    assert float(expect((u + v) ** 4, (u, v), C).value) == pytest.approx(3 * var ** 2, rel=1e-14)
    assert float(expect(u ** 3 * v ** 2, (u, v), C).value) == 0.0
    C3 = np.array([[1, .2, .3], [.2, 1, .4], [.3, .4, 1.]])
    # E[uvw·w] = Σ12Σ33 + Σ13Σ23 + Σ13Σ23 (Wick)
    assert float(expect(u * v * w ** 2, (u, v, w), C3).value) == pytest.approx(.2 + 2 * .3 * .4)


def test_exponential_and_trigonometric_forms():
    C = cov2(0.7, 0.2, 1.1)
    assert float(expect(sp.exp(u), (u,), C[:1, :1]).value) == pytest.approx(math.exp(0.35))
    assert float(expect(sp.cos(u) * sp.cos(v), (u, v), C).value) == pytest.approx(
        0.5 * (math.exp(-(0.7 + 0.4 + 1.1) / 2) + math.exp(-(0.7 - 0.4 + 1.1) / 2)), rel=1e-14)
    assert float(expect(sp.sin(u), (u,), C[:1, :1]).value) == 0.0
    assert float(expect(sp.exp(-u ** 2), (u,), C[:1, :1]).value) == pytest.approx(
        1 / math.sqrt(1 + 1.4), rel=1e-14)


def test_exp_of_quadratic_that_diverges_raises():
    from tensorprog.errors import ExpectationError
    with pytest.raises(ExpectationError, match="infinite"):
        expect(sp.exp(u ** 2), (u,), np.array([[1.0]]))


# --------------------------------------------------------------------------- against quadrature
CLOSED = [
    (relu(u) * relu(v), (u, v)),
    (step(u) * step(v), (u, v)),
    (relu(u) * step(v), (u, v)),
    (relu(u) ** 2, (u,)),
    (relu(u) * v, (u, v)),
    (step(u) * v, (u, v)),
    (relu(u - 0.4), (u,)),
    (step(u + 0.3) * u ** 2, (u,)),
    (relu(u) ** 2 * relu(v) ** 2, (u, v)),
    (relu(u) * relu(v) * w ** 2, (u, v, w)),
    (relu(u + v) * w, (u, v, w)),
    (relu(u - 0.5) ** 3 * v, (u, v)),
    (sp.erf(u) * sp.erf(v), (u, v)),
    (sp.erf(u) ** 2, (u,)),
    (sp.erf(u) * v, (u, v)),
    (sp.erf(u - 0.4) * v ** 2, (u, v)),
    (sp.erf(u + 0.3) * u ** 3 * w, (u, w)),
    (step(u) * sp.erf(v), (u, v)),
    (sp.cos(u) * sp.cos(v), (u, v)),
    (sp.cos(u + 0.2) * sp.sin(v) * u * v, (u, v)),
    (sp.exp(-u ** 2 / 2 + 0.3 * v) * v ** 2, (u, v)),
    (gelu(u) * v, (u, v)),
    (absolute(u) * absolute(v), (u, v)),
    (leaky_relu(u, 0.2) * leaky_relu(v, 0.2), (u, v)),
    (sp.sign(u) * v, (u, v)),
    ((relu(u) + 1) * (relu(v) - u), (u, v)),
]


@pytest.mark.parametrize("expr, atoms", CLOSED, ids=[str(e) for e, _ in CLOSED])
def test_closed_form_matches_quadrature(expr, atoms):
    # a seed fixed by the expression's text (str hashes change with every process)
    rng = np.random.default_rng(zlib.crc32(str(expr).encode()))
    C = random_cov(rng, len(atoms))
    ex = expect(expr, atoms, C)
    assert ex.tier == "exact" and float(ex.error) == 0.0
    q = expect(expr, atoms, C, tier="quadrature")
    assert q.tier == "quadrature"
    assert abs(float(ex.value) - float(q.value)) < max(1e-9, 1e-8 * abs(float(ex.value)))
    assert abs(float(ex.value) - float(q.value)) <= 10 * float(q.error) + 1e-12


@pytest.mark.parametrize("rho", [-1.0, -0.999999, 0.0, 0.999999, 1.0])
def test_degenerate_correlations(rho):
    C = cov2(1.3, rho * math.sqrt(1.3 * 0.8), 0.8)
    for expr in (relu(u) * relu(v), step(u) * step(v), sp.erf(u) * sp.erf(v), relu(u) * step(v),
                 relu(u) * relu(v) * (u - v) ** 2):
        ex = expect(expr, (u, v), C)
        q = expect(expr, (u, v), C, tier="quadrature")
        assert np.isfinite(ex.value)
        assert float(ex.value) == pytest.approx(float(q.value), abs=1e-9)
    if rho == -1.0:
        assert float(expect(relu(u) * relu(v), (u, v), C).value) == pytest.approx(0, abs=1e-15)
    if rho == 1.0:
        assert float(expect(step(u) * step(v), (u, v), C).value) == pytest.approx(0.5)
        assert float(expect(relu(u) * relu(v), (u, v), C).value) == pytest.approx(
            math.sqrt(1.3 * 0.8) / 2)


def test_zero_variance_limits():
    # u ≡ 0 at some batch points, not all: relu(0) = step(0) = 0; the offset decides step(u + c)
    C = np.array([cov2(0.0, 0.0, 1.0), cov2(1.0, 0.3, 1.0)])
    r = expect(relu(u) * relu(v) + step(u) + step(u + 0.3) + relu(u - 0.2) * v, (u, v), C)
    assert r.tier == "exact"
    assert float(r.value[0]) == 1.0  # only step(0 + 0.3) = 1 survives
    assert np.all(np.isfinite(r.value))
    # a linear form whose variance cancels exactly: Var(u - v) = 0
    Cs = cov2(1.0, 1.0, 1.0)
    assert float(expect(relu(u - v), (u, v), Cs).value) == 0.0
    assert float(expect(step(u - v) * u ** 2, (u, v), Cs).value) == 0.0
    assert float(expect(relu(u - v + 0.5), (u, v), Cs).value) == pytest.approx(0.5)


def test_delta_closed_forms():
    r = expect(sp.DiracDelta(u - 0.5) * u ** 2, (u,), np.array([[2.0]]))
    assert float(r.value) == pytest.approx(0.25 * math.exp(-0.25 / 4) / math.sqrt(4 * math.pi))
    r = expect(sp.DiracDelta(u) * step(v), (u, v), cov2(2.0, 0.7, 1.0))
    assert float(r.value) == pytest.approx(1 / (2 * math.sqrt(2 * math.pi * 2.0)))


def test_delta_of_zero_variance_form_raises():
    from tensorprog.errors import ExpectationError
    with pytest.raises(ExpectationError, match="not a function"):
        expect(sp.DiracDelta(u - v) * step(u), (u, v), cov2(1.0, 1.0, 1.0))


# --------------------------------------------------------------------------- symbolic mode
SYMBOLIC = [relu(u) * relu(v), step(u) * step(v), sp.erf(u) * sp.erf(v), relu(u) * step(v),
            u * relu(v), leaky_relu(u, sp.Rational(1, 10)) * leaky_relu(v, sp.Rational(1, 10)),
            absolute(u) * absolute(v), sp.cos(u) * sp.cos(v), sp.sin(u) * sp.sin(v),
            sp.exp(u + v), relu(u - theta), u ** 2 * v ** 2, relu(u) ** 2,
            sp.exp(-u ** 2 - v ** 2)]


@pytest.mark.parametrize("expr", SYMBOLIC, ids=[str(e) for e in SYMBOLIC])
def test_symbolic_matches_numeric(expr):
    K11, K12, K22 = sp.symbols("K11 K12 K22", positive=True)
    S = np.array([[K11, K12], [K12, K22]], dtype=object)
    r = expect(expr, (u, v), S, {theta: theta}, symbolic=True)
    assert r.tier == "exact" and r.value.dtype == object and r.value.shape == ()
    val = r.value.item()
    assert isinstance(val, sp.Basic)
    assert val.free_symbols <= {K11, K12, K22, theta}
    num = expect(expr, (u, v), cov2(1.2, 0.4, 0.9), {theta: 0.3})
    sub = float(val.subs({K11: 1.2, K12: 0.4, K22: 0.9, theta: 0.3}))
    assert sub == pytest.approx(float(num.value), rel=1e-12, abs=1e-14)


def test_symbolic_batch_of_covariances():
    a = sp.symbols("a0:3", positive=True)
    S = np.empty((3, 2, 2), dtype=object)
    for i in range(3):
        S[i] = [[a[i], a[i] / 2], [a[i] / 2, 1]]
    r = expect(relu(u) * relu(v), (u, v), S, symbolic=True)
    assert r.value.shape == (3,) and r.error.shape == (3,)
    for i in range(3):
        val = float(r.value[i].subs(a[i], 2.0))
        num = expect(relu(u) * relu(v), (u, v), cov2(2.0, 1.0, 1.0)).value
        assert val == pytest.approx(float(num), rel=1e-13)


def test_plans_are_cached_and_none_without_closed_form():
    assert exact_plan(sp.tanh(u) * sp.tanh(v), (u, v)) is None
    assert exact_plan(relu(u - 0.3) * relu(v), (u, v)) is None  # two kinks with an offset
    p1 = exact_plan(relu(u) * relu(v), (u, v))
    assert p1 is exact_plan(relu(u) * relu(v), (u, v))
