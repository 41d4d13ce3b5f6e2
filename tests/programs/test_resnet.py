"""ResNet (programs/resnet.py): the compiler's kernels against the residual recursion of the
usual kernel libraries (neural-tangents ``stax.serial(Dense, [FanOut(2), parallel(serial(Relu,
Dense), Identity), FanInSum] × blocks, Relu, Dense)`` in NTK parametrization, branch scaled by
α), written out below independently of tensorprog; path sums against backprop; and a
finite-width validation.
"""
import numpy as np
import pytest

import tensorprog as tp
from tensorprog.kernels import by_parameter
from programs.mlp import build as build_mlp
from programs.resnet import build

from ..helpers import assert_validates, rel, unit_rows
from ..kernels.reference import relu_pair


def unit_inputs(N=4, d=5, seed=0):
    return unit_rows((N, d), seed)


# ---------------------------------------------------------------------- the reference
# E[relu(u)relu(v)], E[relu'(u)relu'(v)]: the arc-cosine kernels of order 1 and 0 (Cho & Saul
# 2009), from the tests' reference recursion (tests/kernels/reference.py)
def resnet_reference(X, blocks, wvar, bvar, alpha, bias_init="normal"):
    """NNGP and NTK of Dense → [h + α(Dense(Relu(h)))] × blocks → Relu → Dense.

    Input layer: K = Θ = wvar XXᵀ/d + bvar.  Residual block, h' = h + α(W relu(h) + b): the
    identity and the branch are independent given h (W is fresh, zero mean), so their
    covariances add, K' = K + α²(wvar E[φφ] + bvar).  For the NTK, the gradient of h' with
    respect to earlier parameters is ∂h + α W (φ'(h) ⊙ ∂h), whose kernel is Θ + α² wvar
    E[φ'φ'] Θ (cross terms vanish with W's mean), and the block's own parameters (W, b scaled
    by α) add α²(wvar E[φφ] + bvar).  Readout: the Dense step K_out = wvar E[φφ] + bvar,
    Θ_out = K_out + wvar E[φ'φ'] Θ.  With ``bias_init="zero"`` the biases start at 0: their
    bvar leaves every K and stays in every Θ (and the readout has no bias).
    """
    kb = bvar if bias_init == "normal" else 0.0  # the biases' share of the NNGP
    K = wvar * X @ X.T / X.shape[1] + kb
    T = K + bvar - kb
    for _ in range(blocks):
        E, Ed = relu_pair(K)
        T = T + alpha**2 * (wvar * Ed * T + wvar * E + bvar)
        K = K + alpha**2 * (wvar * E + kb)
    E, Ed = relu_pair(K)
    K_out = wvar * E + kb
    return K_out, K_out + wvar * Ed * T


CASES = [(1, 1.0, 0.1), (2, 0.5, 0.0), (3, 1.0, 0.3), (4, 0.3, 0.1), (2, 1.7, 0.05)]


@pytest.mark.parametrize("blocks,alpha,bvar", CASES)
def test_matches_residual_recursion(blocks, alpha, bvar):
    X = unit_inputs()
    X[1] *= 1.7  # inputs of different norms exercise the diagonal too
    p = build(X, blocks=blocks, wvar=1.8, bvar=bvar, alpha=alpha)
    K_ref, T_ref = resnet_reference(X, blocks, 1.8, bvar, alpha)
    K = tp.nngp(p)
    T_bp = tp.ntk(p)
    T_path = tp.ntk(p, method="paths")
    assert rel(K, K_ref) < 1e-6
    assert rel(T_bp, T_ref) < 1e-6
    assert rel(T_path, T_ref) < 1e-6
    assert rel(T_path, T_bp) < 1e-10


def test_reference_is_sensitive_to_the_convention():
    """The test can fail: scaling the branch by α instead of α² gives another kernel."""
    X = unit_inputs()
    p = build(X, blocks=2, wvar=2.0, bvar=0.1, alpha=0.5)
    K_ref, T_ref = resnet_reference(X, 2, 2.0, 0.1, 0.5)
    K_wrong, T_wrong = resnet_reference(X, 2, 2.0, 0.1, np.sqrt(0.5))
    assert rel(tp.nngp(p), K_ref) < 1e-6 and rel(K_wrong, K_ref) > 1e-2
    assert rel(tp.ntk(p), T_ref) < 1e-6 and rel(T_wrong, T_ref) > 1e-2


def test_no_blocks_is_the_one_layer_mlp():
    X = unit_inputs()
    p, q = build(X, blocks=0, wvar=2.0, bvar=0.1), build_mlp(X, depth=0, wvar=2.0, bvar=0.1)
    np.testing.assert_allclose(tp.nngp(p), tp.nngp(q), rtol=1e-12)
    np.testing.assert_allclose(tp.ntk(p), tp.ntk(q), rtol=1e-12)


def test_path_classes_and_parameter_shares():
    """Per-parameter shares agree between the two NTK methods, and every block matrix has a
    share (the identity path carries the gradient of every earlier layer)."""
    p = build(unit_inputs(), blocks=3, wvar=2.0, bvar=0.1, alpha=0.8)
    T_bp, parts_bp = tp.ntk(p, contributions=True)
    T_path, parts_path = tp.ntk(p, method="paths", contributions=True)
    by_param = by_parameter(parts_path)
    assert set(by_param) == set(parts_bp) == {"U_h1", "W_1", "W_2", "W_3", "b_1", "b_2", "b_3",
                                              "readout"}
    for key, value in parts_bp.items():
        np.testing.assert_allclose(by_param[key], value, rtol=1e-10, atol=1e-13)
        assert np.linalg.eigvalsh(value).min() > -1e-10


def test_bad_arguments():
    with pytest.raises(tp.ProgramError, match="blocks"):
        build(unit_inputs(), blocks=-1)


@pytest.mark.slow
def test_finite_width_validation():
    """Per-draw error ∝ n^-1/2 (slope within 0.1) and seed mean within 4 standard errors of the
    compiler's NNGP and NTK at n = 512 (fixed seed)."""
    p = build(unit_inputs(N=3), blocks=2, wvar=2.0, bvar=0.1, alpha=0.7)
    rep = assert_validates(p, seeds=150, seed=11)
    assert set(rep.quantities) == {"nngp", "ntk"}
    for q in rep.quantities:
        assert rep.rows(q)[-1].stats.max_z < 4
