"""GRU (programs/gru.py): gates as multi-argument NONLINs, weights shared over time.

* one step has a closed structure (h_1 = σ(U_z ξ + b_z) ⊙ tanh(U_h ξ + b_h), two independent
  Gaussian factors): the compiler against a 2-D Gauss–Hermite reference written here;
* two steps: the expectations fall to quasi-Monte Carlo; the tiers are reported, the error
  estimate is small, path sums agree with backprop to that accuracy, a forced all-Monte-Carlo
  evaluation agrees with the default within its error bars, and the limit passes a finite-width
  validation (per-draw slope −1/2 ± 0.1, seed mean within 4 standard errors at n = 512).
"""
import numpy as np
import pytest

import tensorprog as tp
from programs.gru import build

from ..helpers import assert_validates, rel, unit_rows

WVAR, UVAR, BVAR, VVAR = 1.5, 1.5, 0.1, 1.0


def sequences(N=3, T=2, d=4, seed=0):
    return unit_rows((N, T, d), seed)


@pytest.fixture(scope="module")
def two_steps():
    p = build(sequences(), wvar=WVAR, uvar=UVAR, bvar=BVAR, vvar=VVAR)
    lim = tp.limit(p)
    lim.cov(p.readout.node)
    return p, lim, tp.nngp(p), tp.ntk(p, contributions=True)


# ---------------------------------------------------------------------- one step: reference
def gauss_hermite_pair(f, g, K, order=200):
    """E[f(u) g(v)] for (u, v) ~ N(0, K of the pair), all pairs, by a tensor Gauss–Hermite rule
    (the integrands are smooth; 200 points per axis: converged to ~1e-13 here)."""
    x, w = np.polynomial.hermite_e.hermegauss(order)
    w = w / w.sum()
    kd = np.diag(K)
    rho = np.clip(K / np.sqrt(np.outer(kd, kd)), -1, 1)[:, :, None, None]
    a = np.sqrt(kd)[:, None, None, None] * x[None, None, :, None]
    b = np.sqrt(kd)[None, :, None, None] * (rho * x[None, None, :, None]
                                            + np.sqrt(1 - rho**2) * x[None, None, None, :])
    return (f(a) * g(b) * w[:, None] * w[None, :]).sum((-1, -2))


def sig(x):
    return 1 / (1 + np.exp(-x))


def dsig(x):
    return sig(x) * (1 - sig(x))


def dtanh(x):
    return 1 / np.cosh(x) ** 2


def one_step_reference(X1):
    """h_1 = σ(a) tanh(c), a = U_z ξ + b_z and c = U_h ξ + b_h independent Gaussians with the
    same covariance K⁰ = UVAR ξᵀξ'/d + BVAR.  NNGP: VVAR E[σσ'] E[tanh tanh'] + BVAR.  NTK:
    the readout term plus the two input layers, (U_z, b_z): K⁰ ∘ VVAR E[σ'σ'] E[tanh tanh'],
    (U_h, b_h): K⁰ ∘ VVAR E[σσ'] E[tanh' tanh']."""
    K0 = UVAR * X1 @ X1.T / X1.shape[1] + BVAR
    ss, tt = gauss_hermite_pair(sig, sig, K0), gauss_hermite_pair(np.tanh, np.tanh, K0)
    dss, dtt = gauss_hermite_pair(dsig, dsig, K0), gauss_hermite_pair(dtanh, dtanh, K0)
    K = VVAR * ss * tt + BVAR
    return K, K + K0 * VVAR * (dss * tt + ss * dtt)


def test_one_step_matches_reference():
    X = sequences(T=1)
    X[2] *= 1.6
    p = build(X, wvar=WVAR, uvar=UVAR, bvar=BVAR, vvar=VVAR)
    K_ref, T_ref = one_step_reference(X[:, 0])
    lim = tp.limit(p)
    lim.cov(p.readout.node)
    assert "montecarlo" not in lim.tiers_used
    assert rel(tp.nngp(p), K_ref) < 1e-10
    assert rel(tp.ntk(p), T_ref) < 1e-10
    assert rel(tp.ntk(p, method="paths"), T_ref) < 1e-10


# ---------------------------------------------------------------------- two steps
def test_gates_are_multi_argument_nonlins(two_steps):
    p = two_steps[0]
    assert [n.name for n in p.nodes("matrix")] == ["gru_Wz", "gru_Wr", "gru_Wh"]
    for gate in ("gru_z2", "gru_r2", "gru_c2"):
        node = p.node(gate)
        assert node.kind == "nonlin" and len(node.args) == 2
        kinds = sorted(p.node(a).kind for a in node.args)
        assert kinds == ["matmul", "vector"]  # W h (a MATMUL) and U ξ + b (an input layer)
    assert len(p.node("gru_s2").args) == 3  # (1 − z) ⊙ h + z ⊙ h̃
    # the input layers of the two steps share (U_z, b_z): correlated initial vectors
    X = sequences()
    np.testing.assert_allclose(p.init_cov_of("gru_Uz_x1", "gru_Uz_x2"),
                               UVAR * X[:, 0] @ X[:, 1].T / 4 + BVAR, rtol=1e-12)


def test_tiers_and_error_estimate(two_steps):
    p, lim, K, _ = two_steps
    assert "montecarlo" in lim.tiers_used
    assert 0 < lim.max_error < 1e-4
    assert np.all(np.linalg.eigvalsh(K) > 0)


def test_paths_agree_with_backprop_within_the_monte_carlo_error(two_steps, monkeypatch):
    """Both NTKs go through the Monte-Carlo tier with their own draws, so they differ by its
    noise (max_error ≈ 7e-5 per expectation): below 1e-3 at the default points, and below 1e-4
    with 16× the points, where the noise is a quarter as large and a wrong formula would still
    leave its gap."""
    from tensorprog.limit import sampling

    p, _, _, (T_bp, parts) = two_steps
    gap = rel(tp.ntk(p, method="paths"), T_bp)
    assert set(parts) == {"gru_Wz", "gru_Wr", "gru_Wh", "gru_Uz", "gru_Ur", "gru_Uh", "readout"}
    monkeypatch.setattr(sampling, "POINTS", 16 * sampling.POINTS)
    fine_gap = rel(tp.ntk(p, method="paths"), tp.ntk(p))
    assert gap < 1e-3 and fine_gap < 1e-4, (gap, fine_gap)


def test_forced_monte_carlo_agrees_within_its_error(two_steps):
    """Every expectation by quasi-Monte Carlo (tier='montecarlo') against the default mix:
    the NNGPs differ by no more than a few reported standard errors."""
    p, lim, K, _ = two_steps
    lim_mc = tp.limit(p, tier="montecarlo")
    K_mc = VVAR * lim_mc.cov(p.readout.node) + BVAR
    err = VVAR * max(lim.max_error, lim_mc.max_error)
    assert np.abs(K_mc - K).max() < 6 * err + 1e-12


@pytest.mark.slow
def test_finite_width_validation(two_steps):
    """The Monte-Carlo limit is accurate enough to pass the finite-width check: per-draw error
    ∝ n^-1/2 (slope within 0.1) and the seed mean within 4 standard errors at n = 512."""
    p = two_steps[0]
    rep = assert_validates(p, seeds=120, seed=3)
    assert set(rep.quantities) == {"nngp", "ntk"}
    for q in rep.quantities:
        # the compiler's Monte-Carlo error is far below the finite-width resolution
        last = rep.rows(q)[-1].stats
        assert two_steps[1].max_error < 0.1 * last.noise_floor * np.linalg.norm(rep.limits[q])
