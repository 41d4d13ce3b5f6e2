"""Recurrent cells with weight sharing across time steps (what the fixed layer catalogues of the
usual kernel libraries cannot express).

A recurrent network unrolled over T steps is an ordinary NETSOR⊤+ program in which the *same*
initial matrix is used by T MATMULs (TP IIb §4, the RNN example: Ẑ^{W x_s} and Ẑ^{W x_t} are
jointly Gaussian with covariance σ_W² E[Z^{x_s} Z^{x_t}]).  The input weights are shared too:
every step's input layer is an embedding naming the same ``weight``, so ``U ξ_s + b`` and
``U ξ_t + b`` are correlated initial vectors (covariance ``uvar ξ_sᵀξ_t/d + bvar``) and one
parameter group in the NTK.

Each cell takes the program, the previous state ``h`` (``None`` for the zero initial state
``h_0 = 0``) and the step's inputs ``xi`` (an (N, d) array, one row per network input) and
returns the new state.  Matrices and input weights are looked up by name and created on first
use, so calling a cell T times with the same names shares them.  ``step`` (optional) only names
the new variables (``U_x3`` for the input layer of step 3, ``gru_z3`` for a gate).  NTK
parametrization throughout.
"""
from __future__ import annotations

from collections.abc import Mapping
from numbers import Real
from typing import Callable

import numpy as np

from ..errors import ProgramError
from ..ir.builder import BuilderProgram, Matrix, Var, erf, sigmoid, tanh
from ..ir.instructions import InitialMatrix
from ..ir.program import INPUTS
from .activations import activation
from .masking import masks, sequence_lengths

__all__ = ["rnn_cell", "gru_cell", "shared_matrix", "shared_embed", "as_sequences",
           "masked_sum"]


def as_sequences(X, steps: int = 2) -> np.ndarray:
    """Inputs as an (N, T, d) array of sequences: an (N, T, d) array as it is, an (N, D) array
    split into ``steps`` consecutive chunks of D/steps features (``X[i]`` becomes the sequence
    ``X[i, :D/T], X[i, D/T:2D/T], …``)."""
    X = np.asarray(X, dtype=float)
    if X.ndim == 2:
        if int(steps) != steps or steps < 1 or X.shape[1] % steps:
            raise ProgramError(f"cannot split inputs of shape {X.shape} into {steps!r} steps of "
                               "equal size; pass an (N, T, d) array of sequences")
        X = X.reshape(X.shape[0], int(steps), X.shape[1] // int(steps))
    if X.ndim != 3 or 0 in X.shape:
        raise ProgramError(f"X must be a non-empty (N, T, d) array of sequences (or (N, D), "
                           f"split into steps), got shape {X.shape}")
    return X


def _name(p: BuilderProgram, prefix: str, step) -> str:
    return p.fresh_name(prefix) if step is None else f"{prefix}{step}"


def shared_matrix(p: BuilderProgram, name: str, var: float) -> Matrix:
    """The n×n matrix ``name`` of ``p`` (N(0, var/n)), created on its first use."""
    if name in p:
        node = p.node(name)
        if not isinstance(node, InitialMatrix):
            raise ProgramError(f"{name!r} is a {node.kind}, not a matrix")
        if float(node.var) != float(var):
            raise ProgramError(f"matrix {name!r} already exists with variance "
                               f"{node.var}, not {var}")
        return Matrix(p, name)
    return p.matrix(name, var=var)


def shared_embed(p: BuilderProgram, xi, weight: str, var: float, bias_var: float,
                 step=None) -> Var:
    """``U ξ + b`` with the input weight (U, b) called ``weight``, shared with every other call
    naming it (U_ij ~ N(0, var/d), b_i ~ N(0, bias_var))."""
    return p.embed(xi, var=var, bias_var=bias_var, weight=weight,
                   name=_name(p, weight + "_x", step))


def rnn_cell(p: BuilderProgram, h: Var | None, xi, *, phi: Callable | None = None,
             wvar: float = 1.0, uvar: float = 1.0, bvar: float = 0.0, matrix: str = "W",
             weight: str = "U", step=None, activated: Var | None = None) -> Var:
    """Elman step ``h_t = W φ(h_{t−1}) + U ξ_t + b``.

    ``W`` (named ``matrix``, N(0, wvar/n)) and ``(U, b)`` (named ``weight``, N(0, uvar/d) and
    N(0, bvar)) are shared by every call with the same names.  With ``h=None`` the step is
    ``h_1 = U ξ_1 + b`` (the zero initial state, for φ with φ(0) = 0: erf, tanh, relu).  ``phi``
    is a tensorprog nonlinearity (default ``tp.erf``).  ``activated``: the vector φ(h_{t−1})
    when the caller has already made it (to reuse it elsewhere, e.g. in a readout over steps)
    instead of a new NONLIN.
    """
    phi = erf if phi is None else phi
    e = shared_embed(p, xi, weight, uvar, bvar, step)
    if h is None:
        return e
    W = shared_matrix(p, matrix, wvar)
    return W @ (phi(h) if activated is None else activated) + e


def gru_cell(p: BuilderProgram, h: Var | None, xi, *, wvar: float = 1.0, uvar: float = 1.0,
             bvar: float = 0.0, name: str = "gru", step=None, gate: Callable | str = sigmoid,
             candidate: Callable | str = tanh, bias_mean=0.0) -> Var:
    """Gated recurrent unit step (Cho et al. 2014), every gate a multi-argument NONLIN:

        z  = g(W_z h + U_z ξ + b_z + μ_z)              update gate
        r  = g(W_r h + U_r ξ + b_r + μ_r)              reset gate
        h̃  = c(W_h (r ⊙ h) + U_h ξ + b_h + μ_h)        candidate
        h' = (1 − z) ⊙ h + z ⊙ h̃

    ``gate`` g (default the logistic sigmoid) and ``candidate`` c (default tanh) are tensorprog
    nonlinearities or their names (``"sigmoid"``, ``"erf"``, …, see
    :func:`tensorprog.nn.activation`).  ``bias_mean`` is the mean μ of the biases, whose
    coordinates are N(μ, bvar): a number for all three or a mapping with keys ``"z"``, ``"r"``,
    ``"h"`` (missing keys: 0); a bias N(μ, σ²) is μ plus the bias N(0, σ²), so μ enters the
    NONLIN as a constant and the bias's NTK share is unchanged.

    Matrices ``{name}_Wz, {name}_Wr, {name}_Wh`` (N(0, wvar/n)) and input weights
    ``{name}_Uz, {name}_Ur, {name}_Uh`` (with their biases; N(0, uvar/d), N(0, bvar)) are shared
    by every call with the same ``name``.  With ``h=None`` (``h_0 = 0``) the matrices act on the
    zero vector, the reset gate has no effect and the step is
    ``h_1 = g(U_z ξ + b_z + μ_z) ⊙ c(U_h ξ + b_h + μ_h)``.  The gates, the candidate and the new
    state are materialised as NONLINs ``{name}_z…``, ``{name}_r…``, ``{name}_c…``, ``{name}_s…``.
    """
    g = activation(gate) if isinstance(gate, str) else gate
    c_fn = activation(candidate) if isinstance(candidate, str) else candidate
    mu = _bias_means(bias_mean)
    ez = _shifted(shared_embed(p, xi, f"{name}_Uz", uvar, bvar, step), mu["z"])
    eh = _shifted(shared_embed(p, xi, f"{name}_Uh", uvar, bvar, step), mu["h"])
    if h is None:
        z = g(ez).named(_name(p, f"{name}_z", step))
        c = c_fn(eh).named(_name(p, f"{name}_c", step))
        return (z * c).named(_name(p, f"{name}_s", step))
    er = _shifted(shared_embed(p, xi, f"{name}_Ur", uvar, bvar, step), mu["r"])
    Wz = shared_matrix(p, f"{name}_Wz", wvar)
    Wr = shared_matrix(p, f"{name}_Wr", wvar)
    Wh = shared_matrix(p, f"{name}_Wh", wvar)
    h = p.var(h.name)  # the state as one program variable (materialised once, reused)
    z = g(Wz @ h + ez).named(_name(p, f"{name}_z", step))
    r = g(Wr @ h + er).named(_name(p, f"{name}_r", step))
    c = c_fn(Wh @ (r * h) + eh).named(_name(p, f"{name}_c", step))
    return ((1 - z) * h + z * c).named(_name(p, f"{name}_s", step))


def _shifted(x: Var, mean: float) -> Var:
    return x if mean == 0 else x + mean


def _bias_means(bias_mean) -> dict[str, float]:
    """``{"z": μ_z, "r": μ_r, "h": μ_h}`` from a number or a mapping over those keys."""
    if isinstance(bias_mean, Mapping):
        unknown = set(bias_mean) - {"z", "r", "h"}
        if unknown:
            raise ProgramError(f"gru_cell: bias_mean keys are 'z', 'r', 'h', got "
                               f"{sorted(unknown)}")
        means = {k: bias_mean.get(k, 0.0) for k in ("z", "r", "h")}
    else:
        means = dict.fromkeys(("z", "r", "h"), bias_mean)
    for k, v in means.items():
        if not isinstance(v, Real) or not np.isfinite(v):
            raise ProgramError(f"gru_cell: the bias mean of {k!r} must be a finite number, "
                               f"got {v!r}")
    return {k: float(v) for k, v in means.items()}


def masked_sum(steps: list[Var], lengths, how: str = "last", name: str = "len") -> Var:
    """Per-step vectors ``steps`` (x_1 … x_T, in the inputs family) of sequences of lengths
    ``lengths`` (N integers in 1 … T; the inputs hold every sequence padded to T steps) reduced
    to one vector per sequence: ``how="last"`` gives x_{L_i} (the state at sequence i's own last
    step, what masking that carries the state past the end reads), ``"mean"`` gives
    ``(1/L_i) Σ_{t ≤ L_i} x_t``.  A NONLIN ``Σ_t m_t x_t / Σ_t m_t`` with the exact 0/1 masks of
    :mod:`tensorprog.nn.masking` (``m_t = 1{t = L_i}`` or ``1{t ≤ L_i}``)."""
    if how not in ("last", "mean"):
        raise ProgramError(f"how must be 'last' or 'mean', got {how!r}")
    p = steps[0].program
    T = len(steps)
    L = sequence_lengths(lengths, p.num_inputs, T)
    t = np.arange(1, T + 1)[None, :]
    on = masks(p, INPUTS, t == L[:, None] if how == "last" else t <= L[:, None], name)
    total = sum((m.expr * x.expr for m, x in zip(on, steps)), 0)
    if how == "mean":
        total = total / sum((m.expr for m in on), 0)
    return Var(p, total)
