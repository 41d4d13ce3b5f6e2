"""LayerNorm networks: an MLP with LayerNorm before every nonlinearity, or a pre-LN residual
network.  LayerNorm is written with two MOMENT scalars per layer (``tensorprog.nn.layer_norm``):

    μ^l = avg(h^l),  m^l = avg((h^l)²),   LN(h^l) = (h^l − μ^l)/√(m^l − (μ^l)² + ε)

    h¹(ξ) = U ξ + b¹,                        U_ij ~ N(0, wvar/d),  b¹_i ~ N(0, bvar)
    block="mlp":       h^{l+1} = W^l φ(LN(h^l)) + b^{l+1}           (l = 1 … depth)
    block="residual":  h^{l+1} = h^l + W^l φ(LN(h^l)) + b^{l+1}     (l = 1 … depth)
    f(ξ) = v·φ(LN(h^{depth+1}))/√n + b_out,    v_i ~ N(0, wvar), b_out ~ N(0, bvar)

with W^l_ij ~ N(0, wvar/n), b^{l+1}_i ~ N(0, bvar), φ = relu by default (erf, tanh, gelu
available), no affine LayerNorm parameters.  NTK parametrization, every parameter trained.

**Limit.**  Every h^l is a zero-mean Gaussian in the limit, so by ZMOMENT μ̊^l = E Z^{h^l} = 0
and m̊^l = E (Z^{h^l})² = K^l(ξ, ξ), one number per input; LN(h) becomes h/√(K(ξ,ξ) + ε)
(the fluctuation of μ and m is O(n^{-1/2}), and their backward contributions vanish in the
limit).  With ``K̃_ij = K_ij/√((K_ii + ε)(K_jj + ε))`` and E over (u, v) ~ N(0, K̃ of the pair):

    mlp:       K ← wvar E[φ(u)φ(v)] + bvar,        Θ ← K + wvar E[φ'(u)φ'(v)] Θ / √((K_ii+ε)(K_jj+ε))
    residual:  K ← K + wvar E[φ(u)φ(v)] + bvar,    Θ ← Θ + wvar E[φ'(u)φ'(v)] Θ / √((K_ii+ε)(K_jj+ε))
                                                          + wvar E[φ(u)φ(v)] + bvar

starting from K = Θ = wvar ξ_iᵀξ_j/d + bvar, and the readout is one more "mlp" step.  The
compiler does not use this formula: it derives the limit from the program, and the tests
compare the two.  At finite width the MOMENT scalars μ and m are random; ``tp.validate``
checks them against μ̊ = 0 and m̊ = K(ξ, ξ) along with the kernels.
"""
from __future__ import annotations

import tensorprog as tp
from tensorprog.nn.sizes import count
from tensorprog.nn.dense import dense, readout
from tensorprog.nn.norm import layer_norm

ACTIVATIONS = {"relu": tp.relu, "erf": tp.erf, "tanh": tp.tanh, "gelu": tp.gelu}


def build(X, depth: int = 2, wvar: float = 2.0, bvar: float = 0.1, block: str = "mlp",
          activation: str = "relu", eps: float = 1e-5) -> tp.Program:
    """LayerNorm MLP (``block="mlp"``) or pre-LN residual network (``block="residual"``)."""
    if block not in ("mlp", "residual"):
        raise tp.ProgramError(f"block must be 'mlp' or 'residual', got {block!r}")
    if activation not in ACTIVATIONS:
        raise tp.ProgramError(f"unknown activation {activation!r}; choose from "
                              f"{sorted(ACTIVATIONS)}")
    depth = count(depth, "depth")
    phi = ACTIVATIONS[activation]
    p = tp.Program(f"layernorm-{block}")
    h = p.embed(X, var=wvar, bias_var=bvar)
    for l in range(1, depth + 1):
        branch = dense(phi(layer_norm(h, eps=eps)), f"{l}", wvar, bvar)
        h = h + branch if block == "residual" else branch
    readout(phi(layer_norm(h, eps=eps)), wvar, bvar)
    return p
