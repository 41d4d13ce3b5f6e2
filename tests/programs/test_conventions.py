"""Common conventions as arguments of the architecture builders, each against an independent
recursion or a finite-width simulation: zero-initialised trained biases (programs/mlp.py)."""
import numpy as np
import pytest

import tensorprog as tp
from programs import mlp

from ..helpers import rel, unit_rows
from ..kernels.reference import PAIRS


def zero_bias_mlp_kernels(X, depth, wvar, bvar, activation):
    """The NTK-parametrization recursion with every bias started at 0 and trained: the biases
    leave the NNGP K and add σ_b² to every layer's Θ.

        K¹ = σ_w² ξᵀξ'/d,  Θ¹ = K¹ + σ_b²
        K^{l+1} = σ_w² E[φφ'],  Θ^{l+1} = K^{l+1} + σ_b² + σ_w² E[φ̇φ̇'] Θ^l
    """
    pair = PAIRS[activation]
    K = wvar * X @ X.T / X.shape[1]
    T = K + bvar
    for layer in range(depth + 1):
        E, Ed = pair(K)
        K_next = wvar * E
        T = K_next + wvar * Ed * T + (bvar if layer < depth else 0.0)
        K = K_next
    return K, T


@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_zero_initialised_biases_against_recursion(activation):
    X = unit_rows((5, 4), seed=3)
    X[1] *= 1.7
    p = mlp.build(X, depth=2, wvar=1.8, bvar=0.3, activation=activation, bias_init="zero")
    K_ref, T_ref = zero_bias_mlp_kernels(X, 2, 1.8, 0.3, activation)
    assert rel(tp.nngp(p), K_ref) < 1e-10
    assert rel(tp.ntk(p), T_ref) < 1e-10
    assert rel(tp.ntk(p, method="paths"), T_ref) < 1e-10
    # the default (biases N(0, σ_b²)) differs: the biases are in the NNGP too
    assert rel(tp.nngp(mlp.build(X, depth=2, wvar=1.8, bvar=0.3, activation=activation)),
               K_ref) > 1e-2


def test_zero_initialised_biases_at_finite_width():
    """The simulated network's biases are exactly 0 and its NTK carries their share: the
    finite-width NTK's seed mean agrees with the limit within 4 standard errors."""
    X = unit_rows((3, 4), seed=1)
    p = mlp.build(X, depth=1, wvar=2.0, bvar=0.5, bias_init="zero")
    sim = tp.simulate(p, width=512, seeds=64, backend="numpy", seed=5, keep_parameters=True)
    for name in ("b0", "b1"):
        assert not np.any(sim.parameters[name])
    for samples, limit in ((sim.ntk_samples, tp.ntk(p)), (sim.nngp_samples, tp.nngp(p))):
        se = samples.std(0, ddof=1) / np.sqrt(samples.shape[0])
        assert np.all(np.abs(samples.mean(0) - limit) < 4 * se + 1e-12)


def test_bias_init_is_checked():
    with pytest.raises(tp.ProgramError, match="bias_init must be one of"):
        mlp.build(np.eye(3), bias_init="zeros")


# ---------------------------------------------------------------------- GRU
def gru_one_step_reference(X1, gate, dgate, cand, dcand, mu_z, mu_h, uvar, bvar, vvar):
    """One GRU step, h_1 = g(a + μ_z) c(e + μ_h) with a, e independent N(0, K⁰) atoms
    (K⁰ = uvar ξᵀξ'/d + bvar): NNGP vvar E[g g'] E[c c'] + bvar, NTK adds the two input
    layers K⁰ ∘ vvar (E[ġ ġ'] E[c c'] + E[g g'] E[ċ ċ'])."""
    from .test_gru import gauss_hermite_pair

    K0 = uvar * X1 @ X1.T / X1.shape[1] + bvar

    def shift(f, m):
        return lambda u: f(u + m)

    gg = gauss_hermite_pair(shift(gate, mu_z), shift(gate, mu_z), K0)
    cc = gauss_hermite_pair(shift(cand, mu_h), shift(cand, mu_h), K0)
    dgg = gauss_hermite_pair(shift(dgate, mu_z), shift(dgate, mu_z), K0)
    dcc = gauss_hermite_pair(shift(dcand, mu_h), shift(dcand, mu_h), K0)
    K = vvar * gg * cc + bvar
    return K, K + K0 * vvar * (dgg * cc + gg * dcc)


def test_gru_gate_functions_and_bias_means_against_reference():
    from scipy.special import erf

    from programs import gru

    X = unit_rows((3, 1, 4), seed=2)
    X[1] *= 1.5
    p = gru.build(X, uvar=1.5, bvar=0.2, vvar=1.0, gate="erf", candidate="sin",
                  bias_mean={"z": 1.0, "h": -0.5})
    K_ref, T_ref = gru_one_step_reference(
        X[:, 0], erf, lambda u: 2 / np.sqrt(np.pi) * np.exp(-u**2), np.sin, np.cos,
        1.0, -0.5, 1.5, 0.2, 1.0)
    assert rel(tp.nngp(p), K_ref) < 1e-9
    assert rel(tp.ntk(p), T_ref) < 1e-9
    # the defaults are the sigmoid/tanh GRU with centred biases
    q = gru.build(X, uvar=1.5, bvar=0.2, vvar=1.0)
    assert rel(tp.nngp(q), K_ref) > 1e-2


def test_gru_reset_gate_bias_mean_at_finite_width():
    """Two steps (the reset gate acts): the limit kernels against the finite-width network's
    seed means (within 4 standard errors plus the O(1/n) finite-width bias)."""
    from programs import gru

    X = unit_rows((2, 2, 3), seed=4)
    kw = dict(wvar=1.5, uvar=1.0, bvar=0.1, bias_mean={"z": -0.5, "r": 2.0, "h": 0.3})
    p = gru.build(X, **kw)
    K, T = tp.nngp(p), tp.ntk(p)
    sim = tp.simulate(p, width=512, seeds=48, backend="numpy", seed=11)
    for samples, limit in ((sim.nngp_samples, K), (sim.ntk_samples, T)):
        se = samples.std(0, ddof=1) / np.sqrt(samples.shape[0])
        assert np.all(np.abs(samples.mean(0) - limit) < 4 * se + 2e-3 * np.abs(limit).max())
    # the reset gate's mean matters: another μ_r moves the NTK by far more than the tolerance
    T_other = tp.ntk(gru.build(X, **{**kw, "bias_mean": {"z": -0.5, "r": -2.0, "h": 0.3}}))
    se = sim.ntk_samples.std(0, ddof=1) / np.sqrt(48)
    assert np.abs(T_other - T).max() > 8 * se.max()


def test_gru_bias_mean_is_checked():
    from programs import gru

    with pytest.raises(tp.ProgramError, match="bias_mean keys"):
        gru.build(unit_rows((2, 1, 3)), bias_mean={"u": 1.0})
    with pytest.raises(tp.ProgramError, match="finite number"):
        gru.build(unit_rows((2, 1, 3)), bias_mean=float("nan"))
