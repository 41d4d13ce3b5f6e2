"""Accuracy guarantees on limits: no silent wrong kernel.

True values were computed independently with mpmath adaptive quadrature (30 digits) of the 1-D
and 2-D Gaussian integrals (iterated, split at the transitions), not with tensorprog.
"""
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

import tensorprog as tp
from tensorprog.errors import AccuracyWarning, ExpectationError, LimitError

PROGRAMS = Path(__file__).resolve().parents[2] / "programs"


def one_layer(act, variance):
    """f(ξ) = v·act(Uξ)/√n on two inputs of norm √variance in R² at correlation 0.6, with
    σ_U² = 2 (so that Var h = |ξ|²) and σ_v² = 2."""
    X = np.sqrt(variance) * np.array([[1.0, 0.0], [0.6, 0.8]])
    p = tp.Program("one_layer")
    h = p.embed(X, var=2.0, bias_var=0.0)
    p.output(getattr(tp, act)(h), var=2.0, bias_var=0.0)
    return p


# 2·E[φ(u)φ(v)] and 2·(E[φφ] + q₁₂ E[φ'φ']) for Var u = Var v = q, correlation 0.6 (mpmath)
TRUTH = {
    ("tanh", 100): (2 * np.array([[0.9205368634305167, 0.405790474846451],
                                  [0.405790474846451, 0.9205368634305167]]),
                    2 * np.array([[6.2312156382421, 0.8772331947868483],
                                  [0.8772331947868483, 6.2312156382421]])),
    ("sigmoid", 500): (2 * np.array([[0.4822170528208121, 0.3516393238805689],
                                     [0.3516393238805689, 0.4822170528208121]]),
                       2 * np.array([[1.967073843370456, 0.4697966469255143],
                                     [0.4697966469255143, 1.967073843370456]])),
}


@pytest.mark.parametrize("act, variance", sorted(TRUTH))
def test_saturating_activations_at_large_variance(act, variance):
    """tanh at variance 100 (NTK[0,0] = 12.46, not 9.82) and sigmoid at variance 500: within
    1e-6 of the truth, and the reported error bars cover the true error."""
    K_true, T_true = TRUTH[(act, variance)]
    p = one_layer(act, variance)
    K, K_err = tp.nngp(p, with_error=True)
    T, T_err = tp.ntk(p, with_error=True)
    assert np.abs(K - K_true).max() < 1e-6 and np.abs(T - T_true).max() < 1e-6
    assert np.all(np.abs(K - K_true) <= K_err + 1e-12)
    assert np.all(np.abs(T - T_true) <= T_err + 1e-12)
    assert K_err.max() < 1e-8 and T_err.max() < 1e-7


def test_tanh_ntk_matches_the_reported_value_of_the_issue():
    assert tp.ntk(one_layer("tanh", 100))[0, 0] == pytest.approx(12.4624, abs=1e-4)


def _batchnorm():
    sys.path.insert(0, str(PROGRAMS))
    try:
        import batchnorm
    finally:
        sys.path.remove(str(PROGRAMS))
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2, 8))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return batchnorm.build(X)


@pytest.mark.slow
def test_batchnorm_sqrt_eps_peak_both_derivations():
    """BatchNorm over batches of 2 with eps = 1e-5: the NTK diagonal is 124.33 (an independent
    integral and the finite-width network), by backprop and by path sums, which must agree."""
    T, err = tp.ntk(_batchnorm(), method="both", with_error=True)
    assert np.diag(T) == pytest.approx([124.33, 124.33], rel=2e-2)
    assert np.diag(T) == pytest.approx([124.3297, 124.3297], abs=1e-3)
    assert err.max() < 1e-4 * np.abs(T).max()


@pytest.mark.parametrize("psi, exponent", [(lambda h: 1 / h, "-1"), (lambda h: h ** -2, "-2")])
def test_infinite_second_moment_is_refused_with_its_name(psi, exponent):
    p = tp.Program("singular")
    h = p.embed(np.array([[1.0, 0.5], [0.3, -1.0]]), var=1.0, bias_var=0.0)
    p.output(tp.nonlin(psi, h), var=1.0, bias_var=0.0)
    for kernel in (tp.nngp, tp.ntk):
        with pytest.raises(ExpectationError, match="infinite second moment") as info:
            kernel(p)
        assert "NONLIN 'x1'" in str(info.value) and f"|^{exponent} near it" in str(info.value)


def test_sign_written_as_h_over_abs_h_has_its_arcsine_kernel():
    """h/|h| = sign(h) is bounded: E[sign(u) sign(v)] = (2/π) arcsin ρ."""
    X = np.array([[1.0, 0.5], [0.3, -1.0]])
    p = tp.Program("sign")
    h = p.embed(X, var=1.0, bias_var=0.0)
    p.output(tp.nonlin(lambda a: a / sp.Abs(a), h), var=1.0, bias_var=0.0)
    K, err = tp.nngp(p, with_error=True)
    G = X @ X.T
    rho = G / np.sqrt(np.outer(np.diag(G), np.diag(G)))
    assert K == pytest.approx(2 / np.pi * np.arcsin(np.clip(rho, -1, 1)), abs=1e-8)
    assert err.max() < 1e-8


def _two_layer(act, variance):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((3, 4))
    X *= np.sqrt(variance * 4) / np.linalg.norm(X, axis=1, keepdims=True)
    p = tp.Program("two_layer")
    h = p.embed(X, var=1.0, bias_var=0.1)
    W = p.matrix("W", var=1.5)
    p.output(getattr(tp, act)(W @ getattr(tp, act)(h)), var=1.0, bias_var=0.1)
    return p


@pytest.mark.parametrize("act, variance", [("relu", 1.0), ("relu", 30.0), ("erf", 1.0),
                                           ("erf", 60.0)])
def test_error_bars_are_honest_against_closed_forms(act, variance):
    """Kernels by quadrature alone (tier="quadrature") against the closed forms (arc-cosine,
    arcsine): the true error never exceeds the reported error."""
    p = _two_layer(act, variance)
    for kernel, kw in ((tp.nngp, {}), (tp.ntk, {}), (tp.ntk, {"method": "paths"})):
        exact = kernel(p, tier="exact", **kw)
        value, err = kernel(p, tier="quadrature", with_error=True, **kw)
        assert np.all(np.abs(value - exact) <= err + 1e-13 * np.abs(exact).max()), kw
        assert err.max() < 1e-6 * np.abs(exact).max(), kw  # and not vacuous


def test_monte_carlo_kernels_warn_and_carry_their_standard_errors():
    """The Monte-Carlo tier cannot reach the 1e-8 target: a warning says by how much, and the
    returned standard errors describe the actual deviation."""
    p = _two_layer("relu", 1.0)
    exact = tp.nngp(p)
    with pytest.warns(AccuracyWarning, match="short of the target"):
        value, err = tp.nngp(p, tier="montecarlo", with_error=True)
    assert 0 < err.max() < 1e-2
    assert np.all(np.abs(value - exact) <= 5 * err)


def test_both_derivations_must_agree(monkeypatch):
    """method="both" fails when path sums and backprop disagree beyond their errors."""
    import importlib

    ntk_module = importlib.import_module("tensorprog.kernels.ntk")

    p = _two_layer("relu", 1.0)
    T, err = tp.ntk(p, method="both", with_error=True)
    assert T == pytest.approx(tp.ntk(p, method="paths"), abs=1e-10)
    real = ntk_module._paths

    def skewed(*args):
        parts, error = real(*args)
        return {k: v * (1 + 1e-6) for k, v in parts.items()}, error

    monkeypatch.setattr(ntk_module, "_paths", skewed)
    with pytest.raises(LimitError, match="disagree"):
        tp.ntk(p, method="both")


def _singular_program(psi):
    """f = v·ψ(h, g)/√n with h, g two independent embeddings of the same two inputs (the
    variance of h on the first input is 0.625)."""
    X = np.array([[1.0, 0.5], [0.3, -1.0]])
    p = tp.Program("singular")
    h = p.embed(X, var=1.0, bias_var=0.0)
    g = p.embed(X, var=1.0, bias_var=0.0)
    p.output(tp.nonlin(psi, h, g), var=1.0, bias_var=0.0)
    return p


@pytest.mark.parametrize("psi", [
    lambda h, g: 1 / (h - g), lambda h, g: 1 / (h * g), lambda h, g: 1 / sp.tanh(h),
    lambda h, g: sp.tan(h), lambda h, g: (sp.exp(h) - 1) ** -2, lambda h, g: 1 / (h**3 - h),
    lambda h, g: sp.exp(1 / h), lambda h, g: sp.Abs(h) ** -0.5, lambda h, g: 1 / (1 + sp.cos(h)),
    lambda h, g: 1 / (h - 1.5), lambda h, g: sp.erf(g) / sp.sin(h + g)],
    ids=["1/(h-g)", "1/(hg)", "1/tanh", "tan", "(e^h-1)^-2", "1/(h^3-h)", "exp(1/h)",
         "|h|^-1/2", "1/(1+cos)", "1/(h-1.5)", "erf/sin"])
def test_psi_with_a_non_square_integrable_singularity_is_refused(psi):
    """Denominators that vanish on a hyperplane of the atoms, wherever they sit in ψ."""
    p = _singular_program(psi)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tp.PseudoLipschitzWarning)
        with pytest.raises(ExpectationError, match="infinite second moment") as info:
            tp.nngp(p)
    assert "NONLIN 'x1'" in str(info.value) and "regularise it" in str(info.value)


@pytest.mark.parametrize("psi, truth", [
    (lambda h, g: 1 / (2 + sp.sin(h)), 0.34175780379702407386),
    (lambda h, g: sp.exp(-1 / h**2), 0.079673190644640683035),
    (lambda h, g: sp.sin(1 / h), 0.6033809327774068518)], ids=["1/(2+sin)", "exp(-1/h^2)",
                                                               "sin(1/h)"])
def test_bounded_psi_with_denominators_keeps_its_value(psi, truth):
    """Denominators without real zeros, or singularities ψ stays bounded at: E[ψ(h)²] against
    mpmath (h ~ N(0, 0.625)); sin(1/h) oscillates without limit at 0, so its quadrature warns
    and its error estimate covers the true error."""
    p = _singular_program(psi)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        K, err = tp.nngp(p, with_error=True)
    assert abs(K[0, 0] - truth) <= max(err[0, 0], 1e-8 * truth)
