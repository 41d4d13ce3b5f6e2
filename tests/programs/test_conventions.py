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
