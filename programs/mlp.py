"""Multilayer perceptron, the README's example.

    h¹(ξ) = U ξ + b¹,             U_ij ~ N(0, wvar/d),  b¹_i ~ N(0, bvar)
    h^{l+1} = W^l φ(h^l) + b^{l+1},  W^l_ij ~ N(0, wvar/n), b^{l+1}_i ~ N(0, bvar)   (l = 1 … depth)
    f(ξ) = v·φ(h^{depth+1})/√n + b_out,   v_i ~ N(0, wvar), b_out ~ N(0, bvar)

NTK parametrization (every parameter N(0,1) times σ/√fan_in), all parameters trained.  With
``bias=False`` every bias variance is 0 and the biases are not parameters.  With
``bias_init="zero"`` the biases b¹ … b^{depth+1} start at 0 and are trained (their NTK share is
σ_b², ``tensorprog.nn.dense.zero_bias``): the NNGP is that of the network without biases, the
NTK gains σ_b² per layer; the readout's own bias then is absent (``b_out = 0``, not trained).  Its
NNGP and NTK are the standard recursion of docs/theory.md §3 (``Dense(W_std, b_std)`` in the NTK
parametrization of the usual kernel libraries).
"""
from __future__ import annotations

import tensorprog as tp
from tensorprog.nn.sizes import count
from tensorprog.nn import activation as activation_named
from tensorprog.nn.dense import BIAS_INITS
from tensorprog.nn.dense import bias as nn_bias


def build(X, depth: int = 2, wvar: float = 2.0, bvar: float = 0.1, activation: str = "relu",
          bias: bool = True, bias_init: str = "normal") -> tp.Program:
    """MLP with ``depth`` hidden n×n matrices on inputs ``X`` (N, d); ``bias_init`` is
    ``"normal"`` (biases N(0, bvar)) or ``"zero"`` (biases started at 0, trained)."""
    phi = activation_named(activation)
    if bias_init not in BIAS_INITS:
        raise tp.ProgramError(f"bias_init must be one of {BIAS_INITS}, got {bias_init!r}")
    bvar = bvar if bias else 0.0
    zero = bias_init == "zero"
    p = tp.Program("mlp")
    h = p.embed(X, var=wvar, bias_var=0.0 if zero else bvar)
    if zero and bias:
        h = h + nn_bias(h, "b0", bvar, bias_init)
    for l in range(1, count(depth, "depth") + 1):
        W = p.matrix(f"W{l}", var=wvar)
        h = W @ phi(h)
        if bias:
            h = h + nn_bias(h, f"b{l}", bvar, bias_init)
    p.output(phi(h), var=wvar, bias_var=0.0 if zero else bvar)
    return p
