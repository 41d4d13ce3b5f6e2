"""Residual network (pre-activation ResNet blocks on a dense trunk).

    h⁰(ξ) = U ξ + b⁰,                       U_ij ~ N(0, wvar/d),  b⁰_i ~ N(0, bvar)
    h^{l} = h^{l−1} + α·(W^l φ(h^{l−1}) + b^l),  W^l_ij ~ N(0, wvar/n), b^l_i ~ N(0, bvar)
                                                                        (l = 1 … blocks)
    f(ξ) = v·φ(h^{blocks})/√n + b_out,      v_i ~ N(0, wvar), b_out ~ N(0, bvar)

with φ = relu.  NTK parametrization (every parameter N(0,1) times σ/√fan_in), all parameters
trained; a bias of variance 0 is not a parameter.  The branch scale α multiplies the whole
branch (weight and bias), as ``Dense(α σ_w, α σ_b)`` would.

This is the residual convention of the usual kernel libraries (neural-tangents
``stax.serial(Dense, [FanOut(2), parallel(serial(Relu, Dense), Identity), FanInSum] × blocks,
Relu, Dense)`` in NTK parametrization, branch scaled by α).  Its kernels, with E over
``(u, v) ~ N(0, [[K_ii, K_ij], [K_ij, K_jj]])`` of the current K:

    K⁰ = wvar ξ_iᵀξ_j/d + bvar,                         Θ⁰ = K⁰
    K ← K + α² (wvar E[φ(u)φ(v)] + bvar)                 (each block)
    Θ ← Θ + α² (wvar E[φ'(u)φ'(v)] Θ + wvar E[φ(u)φ(v)] + bvar)
    K_out = wvar E[φ(u)φ(v)] + bvar,   Θ_out = K_out + wvar E[φ'(u)φ'(v)] Θ

(the identity path carries Θ unchanged; the cross terms between the identity and the branch
vanish because W^l is independent of everything before it and has mean zero).
"""
from __future__ import annotations

import tensorprog as tp
from tensorprog.nn.sizes import count
from tensorprog.nn.dense import BIAS_INITS, bias, dense, readout
from tensorprog.nn.residual import residual


def build(X, blocks: int = 2, wvar: float = 2.0, bvar: float = 0.1,
          alpha: float = 1.0, bias_init: str = "normal") -> tp.Program:
    """ResNet with ``blocks`` residual blocks ``h ← h + α(W φ(h) + b)`` on inputs X (N, d);
    ``bias_init="zero"``: biases started at 0 and trained (the readout then has no bias)."""
    blocks = count(blocks, "blocks")
    if bias_init not in BIAS_INITS:
        raise tp.ProgramError(f"bias_init must be one of {BIAS_INITS}, got {bias_init!r}")
    zero = bias_init == "zero"
    p = tp.Program("resnet")
    h = p.embed(X, var=wvar, bias_var=0.0 if zero else bvar)
    if zero and bvar > 0:
        h = h + bias(h, "b0", bvar, bias_init)
    for l in range(1, int(blocks) + 1):
        h = residual(h, lambda x, l=l: dense(tp.relu(x), f"{l}", wvar, bvar, bias_init),
                     alpha=alpha)
    readout(tp.relu(h), wvar, 0.0 if zero else bvar)
    return p
