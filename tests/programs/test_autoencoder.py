"""Weight-tied autoencoder (programs/autoencoder.py): y = W x, z = Wᵀ φ(y), f = v·φ(z)/√n.

The ZDOT term is non-zero at initialization (TP IIb §3.2, D.4.2).  Checked here:
* the limit's NNGP against the closed form with the ZDOT term (erf), written independently;
* the untied network (an independent W₂ for Wᵀ: the gradient-independence answer) has a
  clearly different NNGP and NTK;
* at finite width the tied network converges to the compiler's kernels (``tp.validate``
  passes) and *not* to the untied ones (validating against them fails, z ≫ 4);
* ``tp.ntk(p, method="paths")`` raises a LimitError for the tied program (Prop. D.3 assumes no
  matrix is used with its transpose) and agrees with backprop on the untied one.
"""
import numpy as np
import pytest

import tensorprog as tp
from programs.autoencoder import build

from ..helpers import assert_validates, rel, unit_rows
from ..kernels.reference import erf_pair

WVAR, UVAR, BVAR, VVAR = 1.5, 1.0, 0.1, 1.0


def inputs(N=3, d=5, seed=0):
    X = unit_rows((N, d), seed)
    X[0] *= 1.8
    return X


def autoencoder_nngp(X, tied):
    """K⁰ = UVAR XXᵀ/d + BVAR (the code x), K¹ = WVAR K⁰ (y = W x).  Tied decoder:
    Z^z = Ẑ^{Wᵀφ(y)} + WVAR E[φ'(Z^y)] Z^x, so Cov(z) = WVAR E[φφ'] + WVAR² m mᵀ ∘ K⁰ with
    m_i = E[erf'(Z^{y_i})] = (2/√π)/√(1 + 2K¹_ii) (the two terms are independent: Ẑ^{Wᵀ·} is
    independent of x).  Untied: Cov(z) = WVAR E[φφ'] only.  NNGP = VVAR E[φ(z)φ(z')] + BVAR."""
    K0 = UVAR * X @ X.T / X.shape[1] + BVAR
    K1 = WVAR * K0
    Cz = WVAR * erf_pair(K1)[0]
    if tied:
        m = 2 / np.sqrt(np.pi) / np.sqrt(1 + 2 * np.diag(K1))
        Cz = Cz + WVAR**2 * np.outer(m, m) * K0
    return VVAR * erf_pair(Cz)[0] + BVAR


@pytest.fixture(scope="module")
def kernels():
    X = inputs()
    p = build(X, wvar=WVAR, uvar=UVAR, bvar=BVAR, vvar=VVAR)
    q = build(X, wvar=WVAR, uvar=UVAR, bvar=BVAR, vvar=VVAR, tied=False)
    return p, q, tp.nngp(p), tp.ntk(p), tp.nngp(q), tp.ntk(q)


def test_nngp_has_the_zdot_term(kernels):
    p, q, K, _, Kq, _ = kernels
    X = inputs()
    assert rel(K, autoencoder_nngp(X, tied=True)) < 1e-10
    assert rel(Kq, autoencoder_nngp(X, tied=False)) < 1e-10
    lim = tp.limit(p)
    (c, sigma2, y, _), = lim.zdot["h2"]  # z = Wᵀφ(y) gets σ² c Z^x, c = E[φ'(Z^y)]
    assert y == "x" and float(sigma2) == WVAR
    K1 = WVAR * (UVAR * X @ X.T / X.shape[1] + BVAR)
    np.testing.assert_allclose(lim.leaves.info[c][0].values,
                               2 / np.sqrt(np.pi) / np.sqrt(1 + 2 * np.diag(K1)), rtol=1e-12)
    assert tp.limit(q).zdot["h2"] == []


def test_gradient_independence_gives_another_kernel(kernels):
    _, _, K, T, Kq, Tq = kernels
    assert rel(Kq, K) > 0.1
    assert rel(Tq, T) > 0.02
    # the tied NTK has a share for W only (both uses, cross terms included), the untied one
    # splits it between W and W2
    _, parts = tp.ntk(kernels[0], contributions=True)
    _, parts_q = tp.ntk(kernels[1], contributions=True)
    assert set(parts) == {"W", "U_x", "readout"} and set(parts_q) == {"W", "W2", "U_x", "readout"}


def test_paths_method_refuses_the_tied_program(kernels):
    p, q, *_ = kernels
    with pytest.raises(tp.LimitError, match="transpose"):
        tp.ntk(p, method="paths")
    assert rel(tp.ntk(q, method="paths"), tp.ntk(q)) < 1e-10


@pytest.mark.slow
def test_finite_width_converges_to_the_zdot_limit(kernels):
    """The exact finite-width NTK (and NNGP) of tp.simulate converge to tp.ntk / tp.nngp:
    per-draw slope −1/2 ± 0.1, seed mean within 4 standard errors at n = 512.  Against the
    gradient-independence kernels (the untied network's) the same samples fail."""
    p, q, K, T, Kq, Tq = kernels
    rep = assert_validates(p, seeds=150, seed=9)
    assert set(rep.quantities) == {"nngp", "ntk"}
    gia = tp.validate(p, widths=(128, 256, 512), seeds=150, backend="numpy", seed=9,
                      limits={"nngp": Kq, "ntk": Tq})
    assert not gia.passed
    assert gia.rows("nngp")[-1].stats.max_z > 20 and gia.rows("ntk")[-1].stats.max_z > 8


@pytest.mark.slow
def test_relu_autoencoder_validates():
    """With relu, E[φ'] = 1/2 and the ZDOT derivative holds a step function."""
    p = build(inputs(), wvar=2.0, uvar=UVAR, bvar=BVAR, vvar=VVAR, activation="relu")
    rep = tp.validate(p, widths=(64, 128, 256, 512), seeds=120, backend="numpy", seed=4)
    assert rep.passed, rep.to_markdown()


def test_bad_arguments():
    with pytest.raises(tp.ProgramError, match="activation"):
        build(inputs(), activation="softplus")
