"""Generated matrices (hypernetwork weights): entries correlated across inputs by S(ξ, ξ'),
their NTK share weighted by the tangent kernel of the entries."""
import numpy as np
import pytest

import tensorprog as tp

from .reference import relu_pair


def build(X, S, T):
    p = tp.Program("hyper")
    h = p.embed(X, var=2.0)
    W = p.matrix("W", S, tangent=T)
    p.output(tp.relu(W @ tp.relu(h)), var=2.0, trainable=False)
    return p


def test_generated_matrix_kernels():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((3, 4))
    A = rng.standard_normal((3, 3))
    S = A @ A.T / 3 + 0.5
    T = 1.5 * S + np.eye(3)
    p = build(X, S, T)
    K0 = 2.0 * X @ X.T / 4
    E0, D0 = relu_pair(K0)
    K1 = S * E0                      # Cov(Ẑ^{W x}(ξ_i), Ẑ^{W x}(ξ_j)) = S_ij E[relu relu]
    E1, D1 = relu_pair(K1)
    np.testing.assert_allclose(tp.nngp(p), 2.0 * E1, rtol=1e-12)
    # NTK: generated entries (weight T) and the input layer (K0 through two relu' and S)
    expected = 2.0 * D1 * T * E0 + 2.0 * D1 * S * D0 * K0
    np.testing.assert_allclose(tp.ntk(p), expected, rtol=1e-12)
    np.testing.assert_allclose(tp.ntk(p, method="paths"), expected, rtol=1e-12)
    assert tp.Program.from_text(p.to_text()) == p


def test_generated_matrix_errors():
    p = tp.Program("bad")
    p.embed(np.eye(2))
    with pytest.raises(tp.ProgramError, match="tangent"):
        p.matrix("W", np.eye(2))
    W = p.matrix("V", np.eye(2), tangent=np.eye(2))
    b = p.bias("b", 1.0)
    with pytest.raises(tp.ProgramError, match="generated per input"):
        W @ b
