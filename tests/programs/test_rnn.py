"""Elman RNN (programs/rnn.py): one matrix W used at every step, one input layer (U, b) shared
by every step.  The compiler's NNGP and NTK against an independent recursion over pairs of time
steps (the recurrent NTK of Alemohammad et al. 2021, written below for erf and relu), path sums
against backprop (1e-10), the weight sharing itself, and a finite-width validation.
"""
import numpy as np
import pytest

import tensorprog as tp
from tensorprog.kernels import by_parameter
from programs.mlp import build as build_mlp
from programs.rnn import build

from ..helpers import assert_validates, rel, unit_rows

WVAR, UVAR, BVAR, VVAR = 1.3, 1.1, 0.1, 1.0


def sequences(N=3, T=4, d=5, seed=0):
    return unit_rows((N, T, d), seed)


# ---------------------------------------------------------------------- the reference
def pair_expectations(C, activation):
    """E[φ(u)φ(v)] and E[φ'(u)φ'(v)] for (u, v) ~ N(0, C of the pair), for all pairs."""
    cd = np.diag(C)
    if activation == "erf":
        den = np.outer(1 + 2 * cd, 1 + 2 * cd)
        return (2 / np.pi * np.arcsin(2 * C / np.sqrt(den)),
                4 / np.pi / np.sqrt(den - 4 * C**2))
    nrm = np.sqrt(np.outer(cd, cd))
    theta = np.arctan2(np.sqrt(np.maximum(np.outer(cd, cd) - C**2, 0.0)), C)
    return (nrm * (np.sin(theta) + (np.pi - theta) * np.cos(theta)) / (2 * np.pi),
            (np.pi - theta) / (2 * np.pi))


def rnn_reference(X, activation, readout, lengths=None):
    """NNGP and NTK of the RNN by a recursion over all (step, input) pairs.

    Index a = (t, i).  Pre-activations h_t = W φ(h_{t−1}) + U ξ_t + b:
        C[(s,i),(t,j)] = UVAR ξ_sᵀξ_t/d + BVAR + 1{s,t>1} WVAR E[φ(h_{s−1})φ(h_{t−1})]
    (W's outputs at two steps are jointly Gaussian with covariance WVAR E[φφ], independent of
    the inputs' embeddings).  Coordinate tangent kernel, every parameter trained; W and (U, b)
    are the same parameters at every step, so their gradients at steps s and t overlap:
        Θ[(s,i),(t,j)] = UVAR ξ_sᵀξ_t/d + BVAR
                         + 1{s,t>1} WVAR (E[φ(h_{s−1})φ(h_{t−1})] + E[φ'φ'] Θ[(s−1,i),(t−1,j)]).
    The readout x = φ(h_T) or (1/T) Σ_t φ(h_t) gives K = VVAR E[x x'] + BVAR and
    Θ_f = K + VVAR E[φ'φ' Θ] (averaged over the step pairs for the mean readout).  With
    ``lengths`` sequence i is read at step L_i (or averaged over steps 1 … L_i): the step
    weights w[t, i] then differ per sequence and different steps of two sequences pair up.
    """
    N, T, d = X.shape
    Xf = X.transpose(1, 0, 2).reshape(T * N, d)  # row t*N + i
    C = UVAR * Xf @ Xf.T / d + BVAR
    Th = C.copy()
    for t in range(1, T):  # fill step t (0-based) from step t-1, row/column blocks
        E, Ed = pair_expectations(C, activation)
        new, old = slice(t * N, (t + 1) * N), slice((t - 1) * N, t * N)
        for s in range(1, t + 1):
            a, a_prev = slice(s * N, (s + 1) * N), slice((s - 1) * N, s * N)
            C[new, a] = C[new, a] + WVAR * E[old, a_prev]
            C[a, new] = C[new, a].T
            Th[new, a] = Th[new, a] + WVAR * (E[old, a_prev] + Ed[old, a_prev] * Th[old, a_prev])
            Th[a, new] = Th[new, a].T
    E, Ed = pair_expectations(C, activation)
    L = np.full(N, T) if lengths is None else np.asarray(lengths)
    steps = np.arange(1, T + 1)[:, None]
    w = (steps == L) * 1.0 if readout == "last" else (steps <= L) / L  # w[t, i]
    E, Ed, Th = (A.reshape(T, N, T, N) for A in (E, Ed, Th))
    K = VVAR * np.einsum("si,sitj,tj->ij", w, E, w) + BVAR
    return K, K + VVAR * np.einsum("si,sitj,tj->ij", w, Ed * Th, w)


@pytest.mark.parametrize("activation", ["erf", "relu"])
@pytest.mark.parametrize("readout", ["last", "mean"])
def test_matches_recurrent_recursion(activation, readout):
    X = sequences()
    X[1] *= 1.5
    p = build(X, activation=activation, wvar=WVAR, uvar=UVAR, bvar=BVAR, readout=readout,
              vvar=VVAR)
    K_ref, T_ref = rnn_reference(X, activation, readout)
    assert rel(tp.nngp(p), K_ref) < 1e-10
    assert rel(tp.ntk(p), T_ref) < 1e-10


@pytest.mark.parametrize("activation", ["erf", "tanh", "relu"])
@pytest.mark.parametrize("readout", ["last", "mean"])
def test_paths_agree_with_backprop(activation, readout):
    p = build(sequences(T=3), activation=activation, wvar=WVAR, uvar=UVAR, bvar=BVAR,
              readout=readout)
    T_bp, parts_bp = tp.ntk(p, contributions=True)
    T_path, parts_path = tp.ntk(p, method="paths", contributions=True)
    assert rel(T_path, T_bp) < 1e-10
    by_param = by_parameter(parts_path)
    assert set(by_param) == set(parts_bp) == {"W", "U", "readout"}
    for key, value in parts_bp.items():
        np.testing.assert_allclose(by_param[key], value, rtol=1e-9, atol=1e-12)
    # W is reached by paths through 1, 2 (…) applications of W: classes ("W",), ("W", "W")
    assert {seq for (param, seq) in parts_path if param == "W"} == {("W",), ("W", "W")}


def test_weight_sharing_structure():
    T = 5
    p = build(sequences(T=T), activation="tanh")
    assert [n.name for n in p.nodes("matrix")] == ["W"]
    assert len(p.matmuls_of("W")) == T - 1
    embeds = [n for n in p.nodes("vector") if getattr(n, "source", None) == "embed"]
    assert len(embeds) == T and {n.weight for n in embeds} == {"U"}
    # the embeddings of different steps are correlated initial vectors (shared U, b)
    X = sequences(T=T)
    C = p.init_cov_of(embeds[0].name, embeds[3].name)
    np.testing.assert_allclose(C, 1.0 * X[:, 0] @ X[:, 3].T / 5 + 0.1, rtol=1e-12)


def untied_rnn(X, readout):
    """The same network with a fresh matrix W_t at every step (no weight sharing)."""
    T = X.shape[1]
    q = tp.Program("rnn-untied")
    h = q.embed(X[:, 0], var=UVAR, bias_var=BVAR, weight="U")
    states = [h]
    for t in range(1, T):
        h = q.matrix(f"W{t}", var=WVAR) @ tp.erf(h) + q.embed(X[:, t], var=UVAR, bias_var=BVAR,
                                                               weight="U")
        states.append(h)
    x = tp.erf(h) if readout == "last" else sum(tp.erf(s) for s in states) * (1.0 / T)
    q.output(x, var=VVAR, bias_var=BVAR)
    return q


def test_weight_sharing_shows_in_the_mean_readout():
    """Read out at the last step, the tied and the untied RNN have the same NNGP and NTK: only
    pairs (t, t) of the same step enter the recursion, and sharing W only adds cross-step
    terms (s ≠ t).  A readout that averages over steps sees those terms: sharing changes both
    kernels."""
    X = sequences(T=3)
    for readout in ("last", "mean"):
        p = build(X, activation="erf", wvar=WVAR, uvar=UVAR, bvar=BVAR, readout=readout,
                  vvar=VVAR)
        q = untied_rnn(X, readout)
        if readout == "last":
            np.testing.assert_allclose(tp.nngp(q), tp.nngp(p), rtol=1e-12)
            np.testing.assert_allclose(tp.ntk(q), tp.ntk(p), rtol=1e-12)
        else:
            assert rel(tp.nngp(q), tp.nngp(p)) > 0.05
            assert rel(tp.ntk(q), tp.ntk(p)) > 0.05


def test_one_step_is_the_one_layer_mlp():
    X = sequences(T=1)
    p = build(X, activation="relu", wvar=2.0, uvar=2.0, bvar=0.1, vvar=2.0)
    q = build_mlp(X[:, 0], depth=0, wvar=2.0, bvar=0.1)
    np.testing.assert_allclose(tp.nngp(p), tp.nngp(q), rtol=1e-12)
    np.testing.assert_allclose(tp.ntk(p), tp.ntk(q), rtol=1e-12)


def test_bad_arguments():
    with pytest.raises(tp.ProgramError, match="activation"):
        build(sequences(), activation="softplus")
    with pytest.raises(tp.ProgramError, match="readout"):
        build(sequences(), readout="first")


@pytest.mark.slow
@pytest.mark.parametrize("activation,readout", [("erf", "last"), ("tanh", "mean")])
def test_finite_width_validation(activation, readout):
    """Per-draw error ∝ n^-1/2 (slope within 0.1) and the seed mean within 4 standard errors
    of the compiler's NNGP and NTK at n = 512."""
    p = build(sequences(N=3, T=4), activation=activation, wvar=WVAR, uvar=UVAR, bvar=BVAR,
              readout=readout)
    rep = assert_validates(p, seeds=150, seed=5)
    assert set(rep.quantities) == {"nngp", "ntk"}
