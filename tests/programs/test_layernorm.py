"""LayerNorm networks (programs/layernorm.py): LayerNorm written with MOMENT scalars, in an MLP
and in pre-LN residual blocks.  The compiler's kernels and MOMENT limits against the recursion
written below (independent of tensorprog), path sums against backprop, and a finite-width
validation in which the MOMENT scalars (means and second moments) are validated too.
"""
import numpy as np
import pytest
import sympy as sp

import tensorprog as tp
from programs.layernorm import build

from ..helpers import assert_validates, rel, unit_rows
from ..kernels.reference import relu_pair

WVAR, BVAR, EPS = 2.0, 0.1, 1e-5


def inputs(N=4, d=5, seed=0):
    X = unit_rows((N, d), seed)
    X[1] *= 2.5  # LayerNorm removes the scale: inputs of different norms
    return X


def layernorm_reference(X, depth, block):
    """(NNGP, NTK, [K(ξ,ξ) of every normalised layer]).

    In the limit μ = avg(h) → 0 and avg(h²) → K(ξ,ξ), so LN(h) = h/s with s = √(K(ξ,ξ) + ε)
    per input; the gradient through μ and avg(h²) vanishes.  With K̃ = K/(s sᵀ):
        mlp:       K ← wvar E_K̃[φφ] + bvar;       Θ ← K + wvar E_K̃[φ'φ'] Θ/(s sᵀ)
        residual:  K ← K + wvar E_K̃[φφ] + bvar;   Θ ← Θ + wvar E_K̃[φ'φ'] Θ/(s sᵀ) + wvar E_K̃[φφ] + bvar
    and the readout is one more mlp step.
    """
    K = WVAR * X @ X.T / X.shape[1] + BVAR
    T = K.copy()
    second_moments = []

    def step(K):
        s = np.sqrt(np.diag(K) + EPS)
        second_moments.append(np.diag(K).copy())
        E, Ed = relu_pair(K / np.outer(s, s))
        return WVAR * E + BVAR, WVAR * Ed / np.outer(s, s)

    for _ in range(depth):
        new, jac = step(K)
        if block == "mlp":
            K, T = new, new + jac * T
        else:
            K, T = K + new, T + jac * T + new
    new, jac = step(K)
    return new, new + jac * T, second_moments


@pytest.mark.parametrize("block", ["mlp", "residual"])
@pytest.mark.parametrize("depth", [1, 3])
def test_matches_recursion_and_moments(block, depth):
    X = inputs()
    p = build(X, depth=depth, wvar=WVAR, bvar=BVAR, block=block, eps=EPS)
    K_ref, T_ref, m2 = layernorm_reference(X, depth, block)
    assert rel(tp.nngp(p), K_ref) < 1e-10
    assert rel(tp.ntk(p), T_ref) < 1e-10
    assert rel(tp.ntk(p, method="paths"), T_ref) < 1e-10
    lim = tp.limit(p)
    moments = p.nodes("moment")
    assert len(moments) == 2 * (depth + 1)
    for layer in range(depth + 1):
        mu, m = moments[2 * layer], moments[2 * layer + 1]
        assert isinstance(m.expr, sp.Pow) and not mu.expr.has(sp.Pow)
        np.testing.assert_allclose(lim.scalar(mu.name), 0.0, atol=1e-12)
        np.testing.assert_allclose(lim.scalar(m.name), m2[layer], rtol=1e-12)


def test_layernorm_removes_the_input_scale():
    """Scaling an input by c > 0 changes the embedding but (up to ε and the biases) not what
    comes out of the first LayerNorm: with bvar = 0 the kernels are scale invariant."""
    X = inputs()
    Y = X.copy()
    Y[0] *= 7.0
    kw = dict(depth=2, wvar=WVAR, bvar=0.0, block="mlp", eps=1e-12)
    np.testing.assert_allclose(tp.nngp(build(X, **kw)), tp.nngp(build(Y, **kw)), rtol=1e-9)
    np.testing.assert_allclose(tp.ntk(build(X, **kw))[1:, 1:], tp.ntk(build(Y, **kw))[1:, 1:],
                               rtol=1e-9)


def test_bad_arguments():
    with pytest.raises(tp.ProgramError, match="block"):
        build(inputs(), block="post")
    with pytest.raises(tp.ProgramError, match="activation"):
        build(inputs(), activation="softplus")


@pytest.mark.slow
@pytest.mark.parametrize("block", ["mlp", "residual"])
def test_finite_width_validation(block):
    """NNGP, NTK and every MOMENT scalar (μ^l, whose limit is 0, by absolute error; avg(h²)
    by relative error): per-draw slope −1/2 ± 0.1 and seed mean within 4 standard errors at
    n = 512."""
    p = build(inputs(N=3), depth=2, wvar=WVAR, bvar=BVAR, block=block, eps=EPS)
    rep = assert_validates(p, seeds=120, seed=7)
    scalars = [q for q in rep.quantities if q.startswith("scalar:")]
    assert {"nngp", "ntk"} <= set(rep.quantities) and len(scalars) == 6
    # the means μ^l have limit 0 and are checked by absolute error
    assert sum(not rep.rows(q)[-1].stats.relative for q in scalars) == 3
