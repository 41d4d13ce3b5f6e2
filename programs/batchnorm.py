"""MLP with BatchNorm over batches of B inputs.

    h¹(ξ) = U ξ + b¹                                      U_ij ~ N(0, wvar/d), b¹ ~ N(0, bvar)
    g^l = W^l φ(h^l),  h^{l+1}_i = (g^l_i − μ_β)/√(σ²_β + eps)   (l = 1 … depth)
    μ_β = (1/B) Σ_{j∈β(i)} g^l_j,  σ²_β = (1/B) Σ_{j∈β(i)} (g^l_j − μ_β)²   (coordinatewise)
    f(ξ_i) = v·φ(h^{depth+1}_i)/√n + b_out                 v ~ N(0, wvar), b_out ~ N(0, bvar)

With ``placement="every"`` BatchNorm follows every linear layer, the input layer included
(``h¹ = BN(U ξ + b¹)``; b¹ then cancels in the limit and at finite width alike); the default
``"hidden"`` normalises the hidden layers only.  ``eps`` may be 0 (no regularisation: the
normalised coordinates lie on a sphere of radius √B around 0 — for B = 2 they are ±1 —, and
``batch_size`` must then be ≥ 2).

Inputs are split into consecutive batches of B (the batch statistics are taken over the
*inputs*, coordinate by coordinate, as in training), NTK parametrization, every parameter
trained.  BatchNorm is a NONLIN across the batch's vectors (TP IIb: "the definition of path
should be altered to express dependency on multiple samples"): the NNGP couples the inputs of a
batch — ``K(ξ_i, ξ_j)`` depends on the whole batches of i and j, and is different for pairs
inside one batch and across batches — and the NTK's backward pass runs on dependency pairs
(``tensorprog.kernels.lift``), so each output's gradient reaches the other inputs of its batch.
With B ≥ 2 the limit expectations involve 2B Gaussian atoms per input pair and fall to the
Monte-Carlo tier (error estimates in ``tp.limit(p).max_error``).
"""
from __future__ import annotations

import tensorprog as tp
from tensorprog.nn.sizes import count
from tensorprog import nn


PLACEMENTS = ("hidden", "every")


def build(X, batch_size: int = 2, depth: int = 1, wvar: float = 2.0, bvar: float = 0.1,
          activation: str = "relu", eps: float = 1e-5, placement: str = "hidden") -> tp.Program:
    """BatchNorm MLP with ``depth`` hidden matrices on inputs ``X`` (N, d), N a multiple of
    ``batch_size``; ``placement="every"`` normalises the input layer too."""
    phi = nn.activation(activation)
    if placement not in PLACEMENTS:
        raise tp.ProgramError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
    p = tp.Program("batchnorm")
    h = p.embed(X, var=wvar, bias_var=bvar)
    if placement == "every":
        h = nn.batch_norm(h, batch_size, eps)
    for l in range(1, count(depth, "depth") + 1):
        g = p.matrix(f"W{l}", var=wvar) @ phi(h)
        h = nn.batch_norm(g, batch_size, eps)
    p.output(phi(h), var=wvar, bias_var=bvar)
    return p
