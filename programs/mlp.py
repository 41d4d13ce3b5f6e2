"""Multilayer perceptron, the README's example.

    h¹(ξ) = U ξ + b¹,             U_ij ~ N(0, wvar/d),  b¹_i ~ N(0, bvar)
    h^{l+1} = W^l φ(h^l) + b^{l+1},  W^l_ij ~ N(0, wvar/n), b^{l+1}_i ~ N(0, bvar)   (l = 1 … depth)
    f(ξ) = v·φ(h^{depth+1})/√n + b_out,   v_i ~ N(0, wvar), b_out ~ N(0, bvar)

NTK parametrization (every parameter N(0,1) times σ/√fan_in), all parameters trained.  With
``bias=False`` every bias variance is 0 and the biases are not parameters.  Its NNGP and NTK are
the standard recursion of docs/theory.md §3 (``Dense(W_std, b_std)`` in the NTK parametrization of the
usual kernel libraries).
"""
from __future__ import annotations

import tensorprog as tp
from tensorprog.nn import activation as activation_named


def build(X, depth: int = 2, wvar: float = 2.0, bvar: float = 0.1, activation: str = "relu",
          bias: bool = True) -> tp.Program:
    """MLP with ``depth`` hidden n×n matrices on inputs ``X`` (N, d)."""
    phi = activation_named(activation)
    bvar = bvar if bias else 0.0
    p = tp.Program("mlp")
    h = p.embed(X, var=wvar, bias_var=bvar)
    for l in range(1, depth + 1):
        W = p.matrix(f"W{l}", var=wvar)
        h = W @ phi(h)
        if bias:
            h = h + p.bias(f"b{l}", var=bvar)
    p.output(phi(h), var=wvar, bias_var=bvar)
    return p
