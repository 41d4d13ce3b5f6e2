"""Gated recurrent unit (Cho et al. 2014) unrolled over T steps, weights shared across time.

Inputs ``X`` of shape (N, T, d) (an (N, D) array: ``steps`` steps of D/steps features).
With h_0 = 0 and, at every step t = 1 … T,

    z_t = σ(W_z h_{t−1} + U_z ξ_t + b_z)             update gate   (a 2-argument NONLIN)
    r_t = σ(W_r h_{t−1} + U_r ξ_t + b_r)             reset gate    (a 2-argument NONLIN)
    h̃_t = tanh(W_h (r_t ⊙ h_{t−1}) + U_h ξ_t + b_h)  candidate     (a 2-argument NONLIN)
    h_t = (1 − z_t) ⊙ h_{t−1} + z_t ⊙ h̃_t            new state     (a 3-argument NONLIN)
    f(ξ) = v·h_T/√n + b_out

(σ the logistic sigmoid and tanh are the defaults of ``gate`` and ``candidate``; the biases'
means μ_z, μ_r, μ_h (``bias_mean``, default 0) are added inside the gates; at t = 1 the
matrices act on h_0 = 0, so h_1 = σ(U_z ξ_1 + b_z) ⊙ tanh(U_h ξ_1 + b_h)).  The three n×n matrices W_z, W_r, W_h (N(0, wvar/n)) and the three input
layers (U_·, b_·) (N(0, uvar/d), N(0, bvar)) are the *same* at every step; readout
v_i ~ N(0, vvar), b_out ~ N(0, bvar).  NTK parametrization, every parameter trained.

**Limit and its accuracy.**  The gates are NONLINs of several Gaussian atoms; the state h_t is
a function of all the atoms of steps 1 … t (two at step 1, six more at each further step:
Ẑ^{W_z h}, Ẑ^{W_r h}, Ẑ^{W_h(r⊙h)} and the three input layers), so the covariance of h_T for
a pair of inputs is an expectation over up to 2·(2 + 6(T−1)) correlated Gaussians, without a
closed form.  Expectations of at most three effective dimensions go to quadrature; the others
to the Monte-Carlo tier, which draws the atoms of all inputs jointly
(``tensorprog/limit/sampling.py``).  Tiers used (``tp.limit(p).tiers_used``) and the largest
error estimate of one expectation (``tp.limit(p).max_error``), measured:

* T = 1 (N = 3): quadrature only, max_error 1.5e-13; against an independent Gauss–Hermite
  reference the NNGP and NTK agree to 4e-13;
* T = 2 (N = 3, the tests): quadrature + Monte Carlo, max_error 7.5e-5; path sums and backprop
  (each with its own draws) differ by 1.0e-4 relative, 1.7e-5 with 16× the points;
  the finite-width check (n ≤ 512, 120 seeds) passes with a seed-mean noise floor of ~4e-3;
* T = 3 (N = 4, benchmarks/study_architectures_a.py): max_error 1.5e-4, paths vs backprop
  3.2e-4; validation up to n = 2048 (50 seeds) passes with a noise floor of 2.3e-3.

Kernel time on N = 100 inputs, T = 3: 4.5 s (``tp.nngp``) and 43 s (``tp.ntk``) on two
cores; see ``docs/architectures/gru.md``.
"""
from __future__ import annotations

import tensorprog as tp
from tensorprog.nn.dense import readout
from tensorprog.nn.recurrent import as_sequences, gru_cell, masked_sum


def build(X, wvar: float = 1.0, uvar: float = 1.0, bvar: float = 0.1,
          vvar: float = 1.0, steps: int = 2, gate: str = "sigmoid", candidate: str = "tanh",
          bias_mean=0.0, lengths=None) -> tp.Program:
    """GRU on sequences ``X`` (N, T, d), read out from the last state; ``gate``, ``candidate``
    and ``bias_mean`` as in :func:`tensorprog.nn.recurrent.gru_cell`; with ``lengths`` (N
    integers ≤ T, the rest of ``X[i]`` padding) from the state at step ``lengths[i]``."""
    X = as_sequences(X, steps)
    p = tp.Program("gru")
    h, states = None, []
    for t in range(X.shape[1]):
        h = gru_cell(p, h, X[:, t, :], wvar=wvar, uvar=uvar, bvar=bvar, name="gru",
                     step=t + 1, gate=gate, candidate=candidate, bias_mean=bias_mean)
        states.append(h)
    readout(h if lengths is None else masked_sum(states, lengths), vvar, bvar)
    return p
