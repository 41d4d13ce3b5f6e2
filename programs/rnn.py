"""Elman recurrent network with weight sharing across time (TP IIb §4's RNN example).

Inputs ``X`` of shape (N, T, d): sequence i is ``ξ_{i,1}, …, ξ_{i,T}`` in R^d (an (N, D)
array, like the command line's default inputs, is split into ``steps`` steps of D/steps
features).

    h_1 = U ξ_1 + b
    h_t = W φ(h_{t−1}) + U ξ_t + b                       (t = 2 … T)
    f(ξ) = v·φ(h_T)/√n + b_out                   readout="last"
    f(ξ) = v·(1/T Σ_t φ(h_t))/√n + b_out          readout="mean"

with **the same** ``W`` (n×n, W_ij ~ N(0, wvar/n)) at every step and **the same** input layer
``(U, b)`` (U_ij ~ N(0, uvar/d), b_i ~ N(0, bvar)) at every step (h_0 = 0 and φ(0) = 0 for the
activations offered: erf, tanh, relu).  Readout v_i ~ N(0, vvar), b_out ~ N(0, bvar).
NTK parametrization, every parameter trained (U and b form one parameter group, the bias of
variance 0 is not a parameter).

In the limit ``Ẑ^{W φ(h_s)}`` and ``Ẑ^{W φ(h_t)}`` are jointly Gaussian with covariance
``wvar E[φ(Z^{h_s}) φ(Z^{h_t})]`` and the embeddings have covariance ``uvar ξ_sᵀξ'_t/d + bvar``,
so with C and Θ indexed by (step, input) pairs and E over the pair's Gaussian of covariance C:

    C[(s,i),(t,j)] = uvar ξ_{i,s}ᵀξ_{j,t}/d + bvar + 1{s,t>1} wvar E[φ(h_{s−1})φ(h'_{t−1})]
    Θ[(s,i),(t,j)] = uvar ξ_{i,s}ᵀξ_{j,t}/d + bvar
                     + 1{s,t>1} wvar (E[φ(h_{s−1})φ(h'_{t−1})] + E[φ'φ'] Θ[(s−1,i),(t−1,j)])
    NNGP = vvar E[x x'] + bvar,   NTK = NNGP + vvar E[φ'φ'] Θ   (x = φ(h_T), or averaged over
                                                                 the step pairs for "mean")

(the recurrent NTK of Alemohammad et al. 2021).  Sequences of different lengths
(``lengths``): X holds them padded to T steps and the readout reads φ(h_{L_i}) (or averages
steps 1 … L_i) of sequence i, through exact 0/1 masks (``tensorprog.nn.masking``); the kernel
of two sequences then pairs steps L_i and L_j, where the shared W correlates different steps.  The compiler does not use this formula: the
NTK comes from backprop through time written into the program (the backward MATMULs by Wᵀ of
every step, W's contributions summed over all pairs of its uses) or from path sums, and the
tests compare both with it.  Read out at the last step, only pairs (t, t) enter, so the kernels
equal those of the *untied* network (a fresh W per step); the "mean" readout sees the
cross-step terms of the shared W and differs.
"""
from __future__ import annotations

import tensorprog as tp
from tensorprog.nn.dense import readout as dense_readout
from tensorprog.nn.recurrent import as_sequences, masked_sum, rnn_cell

ACTIVATIONS = {"erf": tp.erf, "tanh": tp.tanh, "relu": tp.relu}


def build(X, activation: str = "erf", wvar: float = 1.0, uvar: float = 1.0, bvar: float = 0.1,
          readout: str = "last", vvar: float = 1.0, steps: int = 2, lengths=None) -> tp.Program:
    """Elman RNN on sequences ``X`` (N, T, d), read out at the last step or averaged; with
    ``lengths`` (N integers ≤ T) sequence i ends at step ``lengths[i]`` (the rest of ``X[i]``
    is padding): the readout reads φ(h_{lengths[i]}) or averages its first lengths[i] steps."""
    X = as_sequences(X, steps)
    if activation not in ACTIVATIONS:
        raise tp.ProgramError(f"unknown activation {activation!r}; choose from "
                              f"{sorted(ACTIVATIONS)}")
    if readout not in ("last", "mean"):
        raise tp.ProgramError(f"readout must be 'last' or 'mean', got {readout!r}")
    phi = ACTIVATIONS[activation]
    p = tp.Program(f"rnn-{activation}-{readout}")
    h, activations = None, []
    for t in range(X.shape[1]):
        a = None
        if h is not None:  # φ(h_{t−1}): one NONLIN, used by W and (mean readout) by the readout
            a = phi(h).named(p.fresh_name("x"))
            activations.append(a)
        h = rnn_cell(p, h, X[:, t, :], phi=phi, wvar=wvar, uvar=uvar, bvar=bvar, step=t + 1,
                     activated=a)
    if lengths is not None:
        x = masked_sum(activations + [phi(h).named(p.fresh_name("x"))], lengths, readout)
    elif readout == "last":
        x = phi(h)
    else:
        x = sum(activations, phi(h)) * (1.0 / X.shape[1])
    dense_readout(x, vvar, bvar)
    return p
