"""Common conventions as arguments of the architecture builders, each against an independent
recursion, an independent Monte Carlo, a NumPy network or the finite-width network:
zero-initialised trained biases (programs/mlp.py), GRU gate functions and bias means
(programs/gru.py), BatchNorm placement and eps = 0 (programs/batchnorm.py), post-LN
transformers with tied query/key/value and a causal mask (programs/attention.py), sequences of
different lengths (attention, rnn, gru); every variant round-trips through the textual form."""
import importlib

import numpy as np
import pytest

import tensorprog as tp
from programs import mlp

from ..helpers import rel, unit_rows
from ..kernels.reference import PAIRS


def assert_seed_means(sim, K, T, bias):
    """The finite-width network's seed means of the NNGP and NTK samples lie within 4 standard
    errors of the limits ``K``, ``T``, plus ``bias`` times the largest entry (the O(1/n)
    finite-width bias).  Returns the NTK's standard errors."""
    for samples, limit in ((sim.nngp_samples, K), (sim.ntk_samples, T)):
        se = samples.std(0, ddof=1) / np.sqrt(samples.shape[0])
        assert np.all(np.abs(samples.mean(0) - limit) < 4 * se + bias * np.abs(limit).max())
    return se


def zero_bias_mlp_kernels(X, depth, wvar, bvar, activation):
    """The NTK-parametrization recursion with every bias started at 0 and trained: the biases
    leave the NNGP K and add σ_b² to every layer's Θ.

        K¹ = σ_w² ξᵀξ'/d,  Θ¹ = K¹ + σ_b²
        K^{l+1} = σ_w² E[φφ'],  Θ^{l+1} = K^{l+1} + σ_b² + σ_w² E[φ̇φ̇'] Θ^l
    """
    pair = PAIRS[activation]
    K = wvar * X @ X.T / X.shape[1]
    T = K + bvar
    for layer in range(depth + 1):
        E, Ed = pair(K)
        K_next = wvar * E
        T = K_next + wvar * Ed * T + (bvar if layer < depth else 0.0)
        K = K_next
    return K, T


@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_zero_initialised_biases_against_recursion(activation):
    X = unit_rows((5, 4), seed=3)
    X[1] *= 1.7
    p = mlp.build(X, depth=2, wvar=1.8, bvar=0.3, activation=activation, bias_init="zero")
    K_ref, T_ref = zero_bias_mlp_kernels(X, 2, 1.8, 0.3, activation)
    assert rel(tp.nngp(p), K_ref) < 1e-10
    assert rel(tp.ntk(p), T_ref) < 1e-10
    assert rel(tp.ntk(p, method="paths"), T_ref) < 1e-10
    # the default (biases N(0, σ_b²)) differs: the biases are in the NNGP too
    assert rel(tp.nngp(mlp.build(X, depth=2, wvar=1.8, bvar=0.3, activation=activation)),
               K_ref) > 1e-2


@pytest.mark.parametrize("blocks, alpha", [(1, 1.0), (3, 0.5)])
def test_zero_initialised_biases_in_resnet_against_recursion(blocks, alpha):
    from programs import resnet

    from .test_resnet import resnet_reference, unit_inputs

    X = unit_inputs()
    X[1] *= 1.7
    p = resnet.build(X, blocks=blocks, wvar=1.8, bvar=0.2, alpha=alpha, bias_init="zero")
    K_ref, T_ref = resnet_reference(X, blocks, 1.8, 0.2, alpha, bias_init="zero")
    assert rel(tp.nngp(p), K_ref) < 1e-10
    assert rel(tp.ntk(p), T_ref) < 1e-10
    assert rel(tp.ntk(p, method="paths"), T_ref) < 1e-10
    assert rel(resnet_reference(X, blocks, 1.8, 0.2, alpha)[1], T_ref) > 1e-2


def test_zero_initialised_biases_at_finite_width():
    """The simulated network's biases are exactly 0 and its NTK carries their share: the
    finite-width NTK's seed mean agrees with the limit within 4 standard errors."""
    X = unit_rows((3, 4), seed=1)
    p = mlp.build(X, depth=1, wvar=2.0, bvar=0.5, bias_init="zero")
    sim = tp.simulate(p, width=512, seeds=64, backend="numpy", seed=5, keep_parameters=True)
    for name in ("b0", "b1"):
        assert not np.any(sim.parameters[name])
    assert_seed_means(sim, tp.nngp(p), tp.ntk(p), 1e-12)


def test_bias_init_is_checked():
    with pytest.raises(tp.ProgramError, match="bias_init must be one of"):
        mlp.build(np.eye(3), bias_init="zeros")


# ---------------------------------------------------------------------- GRU
def gru_one_step_reference(X1, gate, dgate, cand, dcand, mu_z, mu_h, uvar, bvar, vvar):
    """One GRU step, h_1 = g(a + μ_z) c(e + μ_h) with a, e independent N(0, K⁰) atoms
    (K⁰ = uvar ξᵀξ'/d + bvar): NNGP vvar E[g g'] E[c c'] + bvar, NTK adds the two input
    layers K⁰ ∘ vvar (E[ġ ġ'] E[c c'] + E[g g'] E[ċ ċ'])."""
    from .test_gru import gauss_hermite_pair

    K0 = uvar * X1 @ X1.T / X1.shape[1] + bvar

    def shift(f, m):
        return lambda u: f(u + m)

    gg = gauss_hermite_pair(shift(gate, mu_z), shift(gate, mu_z), K0)
    cc = gauss_hermite_pair(shift(cand, mu_h), shift(cand, mu_h), K0)
    dgg = gauss_hermite_pair(shift(dgate, mu_z), shift(dgate, mu_z), K0)
    dcc = gauss_hermite_pair(shift(dcand, mu_h), shift(dcand, mu_h), K0)
    K = vvar * gg * cc + bvar
    return K, K + K0 * vvar * (dgg * cc + gg * dcc)


def test_gru_gate_functions_and_bias_means_against_reference():
    from scipy.special import erf

    from programs import gru

    X = unit_rows((3, 1, 4), seed=2)
    X[1] *= 1.5
    p = gru.build(X, uvar=1.5, bvar=0.2, vvar=1.0, gate="erf", candidate="sin",
                  bias_mean={"z": 1.0, "h": -0.5})
    K_ref, T_ref = gru_one_step_reference(
        X[:, 0], erf, lambda u: 2 / np.sqrt(np.pi) * np.exp(-u**2), np.sin, np.cos,
        1.0, -0.5, 1.5, 0.2, 1.0)
    assert rel(tp.nngp(p), K_ref) < 1e-9
    assert rel(tp.ntk(p), T_ref) < 1e-9
    # the defaults are the sigmoid/tanh GRU with centred biases
    q = gru.build(X, uvar=1.5, bvar=0.2, vvar=1.0)
    assert rel(tp.nngp(q), K_ref) > 1e-2


def test_gru_reset_gate_bias_mean_at_finite_width():
    """Two steps (the reset gate acts): the limit kernels against the finite-width network's
    seed means (within 4 standard errors plus the O(1/n) finite-width bias)."""
    from programs import gru

    X = unit_rows((2, 2, 3), seed=4)
    kw = dict(wvar=1.5, uvar=1.0, bvar=0.1, bias_mean={"z": -0.5, "r": 2.0, "h": 0.3})
    p = gru.build(X, **kw)
    K, T = tp.nngp(p), tp.ntk(p)
    sim = tp.simulate(p, width=512, seeds=48, backend="numpy", seed=11)
    se = assert_seed_means(sim, K, T, 2e-3)
    # the reset gate's mean matters: another μ_r moves the NTK by far more than the tolerance
    T_other = tp.ntk(gru.build(X, **{**kw, "bias_mean": {"z": -0.5, "r": -2.0, "h": 0.3}}))
    assert np.abs(T_other - T).max() > 8 * se.max()


def test_gru_bias_mean_is_checked():
    from programs import gru

    with pytest.raises(tp.ProgramError, match="bias_mean keys"):
        gru.build(unit_rows((2, 1, 3)), bias_mean={"u": 1.0})
    with pytest.raises(tp.ProgramError, match="finite number"):
        gru.build(unit_rows((2, 1, 3)), bias_mean=float("nan"))


# ---------------------------------------------------------------------- BatchNorm
def batchnorm_nngp_reference(X, eps, every, wvar, bvar, samples, seed):
    """NNGP of programs/batchnorm.py (depth 1, erf, one batch holding all N inputs) by Monte
    Carlo over the batch's joint Gaussian, layer by layer: g⁰ ~ N(0, wvar XXᵀ/d + bvar),
    K¹ = wvar E[erf(BN(g⁰)) erf(BN(g⁰))ᵀ] (BN(g⁰) replaced by g⁰ without ``every``),
    g¹ ~ N(0, K¹), K = wvar E[erf(BN(g¹)) erf(BN(g¹))ᵀ] + bvar."""
    from scipy.special import erf

    rng = np.random.default_rng(seed)

    def bn(g):
        centred = g - g.mean(-1, keepdims=True)
        return centred / np.sqrt((centred**2).mean(-1, keepdims=True) + eps)

    def layer(K, normalise):
        g = rng.standard_normal((samples, len(K))) @ np.linalg.cholesky(K).T
        x = erf(bn(g) if normalise else g)
        return wvar * x.T @ x / samples

    K1 = layer(wvar * X @ X.T / X.shape[1] + bvar, every)
    return layer(K1, True) + bvar


@pytest.mark.parametrize("placement", ["hidden", "every"])
def test_batchnorm_placement_and_eps_zero_against_monte_carlo(placement):
    """eps = 0, batches of 3: the compiler's Monte-Carlo tier against an independent Monte
    Carlo of the batch (8 replicates of 2·10⁵ draws; tolerance 4 standard errors of both)."""
    from programs import batchnorm

    X = unit_rows((3, 3), seed=0)
    X[1] *= 1.5
    p = batchnorm.build(X, batch_size=3, depth=1, activation="erf", eps=0.0,
                        placement=placement)
    lim = tp.limit(p, tier="montecarlo")
    K = 2.0 * lim.cov(p.readout.node) + 0.1
    reps = np.array([batchnorm_nngp_reference(X, 0.0, placement == "every", 2.0, 0.1,
                                              200_000, seed) for seed in range(8)])
    se = reps.std(0, ddof=1) / np.sqrt(len(reps))
    assert np.all(np.abs(K - reps.mean(0)) < 4 * np.hypot(se, 2.0 * lim.max_error))
    # the placement matters by far more than the tolerance
    other = batchnorm_nngp_reference(X, 0.0, placement != "every", 2.0, 0.1, 200_000, 99)
    assert np.abs(other - K).max() > 20 * se.max()


def test_batchnorm_after_every_layer_at_finite_width():
    """BN after the input layer (``depth=0``: the only linear layer before the readout;
    batches of 2, eps = 0.5): the limit NNGP and NTK against the finite-width network's seed
    means (n = 512, 64 seeds; 4 standard errors + O(1/n)).  The gradient reaches U through the
    batch statistics; b¹ cancels."""
    from programs import batchnorm

    X = unit_rows((4, 3), seed=1)
    p = batchnorm.build(X, batch_size=2, depth=0, activation="erf", eps=0.5, placement="every")
    sim = tp.simulate(p, width=512, seeds=64, backend="numpy", seed=2)
    assert_seed_means(sim, tp.nngp(p), tp.ntk(p), 2e-3)


def test_batchnorm_arguments_are_checked():
    from programs import batchnorm

    with pytest.raises(tp.ProgramError, match="placement must be one of"):
        batchnorm.build(np.eye(4), placement="all")
    with pytest.raises(tp.ProgramError, match="eps must be a finite number ≥ 0"):
        batchnorm.build(np.eye(4), eps=-1e-5)
    with pytest.raises(tp.ProgramError, match="> 0 for batches of one"):
        batchnorm.build(np.eye(4), batch_size=1, eps=0.0)


# ---------------------------------------------------------------------- transformer
def numpy_transformer(P, X, lengths, n, norm, causal, tied, eps=1e-5):
    """One block (attention with W_Q = W_K, values W_V or W_Q when ``tied``; then the MLP,
    relu) of programs/attention.py written out in NumPy for one seed's sampled parameters
    ``P``, with the final LayerNorm and the mean readout over each sequence's real tokens."""
    def ln(x):
        mu = x.mean(-1, keepdims=True)
        return (x - mu) / np.sqrt((x**2).mean(-1, keepdims=True) - mu**2 + eps)

    N, T, _ = X.shape
    f = np.empty(N)
    for i in range(N):
        x = X[i] @ P["U_x0"].T + P["U_x0.bias"]                    # (T, n)
        y = ln(x) if norm == "pre" else x
        q = y @ P["WQ_b1_attn_1"].T
        u = q if tied else y @ P["WV_b1_attn_1"].T
        logits = q @ q.T / n                                         # W_K = W_Q
        allowed = np.arange(T)[None, :] < lengths[i]
        if causal:
            allowed = allowed & (np.arange(T)[None, :] <= np.arange(T)[:, None])
        w = np.where(allowed, np.exp(logits), 0.0)
        x = x + (w / w.sum(1, keepdims=True)) @ u @ P["WO_b1_attn_1"].T
        if norm == "post":
            x = ln(x)
        z = ln(x) if norm == "pre" else x
        m = np.maximum(z @ P["W1_b1"].T + P["b1_b1"], 0) @ P["W2_b1"].T + P["b2_b1"]
        x = x + m if norm == "pre" else ln(x + m)
        pooled = ln(x)[: lengths[i]].mean(0)
        f[i] = P["v_out1"] @ pooled / np.sqrt(n) + P["readout.bias"]
    return f


@pytest.mark.parametrize("norm, causal, tied, lengths", [
    ("post", True, True, [2, 3, 1]),
    ("pre", True, False, [3, 3, 3]),
    ("post", False, False, [1, 3, 2]),
])
def test_transformer_conventions_compute_the_network(norm, causal, tied, lengths):
    """The program's finite-width network is exactly the masked transformer: its outputs equal
    a NumPy transformer run on the same sampled parameters (1e-10)."""
    from programs import attention

    X = unit_rows((3, 3, 4), seed=5)
    p = attention.build(X, bvar=0.1, norm=norm, query_key="shared",
                        value="tied" if tied else "separate", causal=causal, lengths=lengths)
    n = 32
    sim = tp.simulate(p, width=n, seeds=2, backend="numpy", seed=1, keep_parameters=True)
    for s in range(2):
        P = {k: v[s] for k, v in sim.parameters.items()}
        f = numpy_transformer(P, X, np.array(lengths), n, norm, causal, tied)
        np.testing.assert_allclose(sim.outputs[s], f, rtol=1e-10, atol=1e-12)


def test_masked_post_ln_transformer_limit_at_finite_width():
    """Post-LN, tied query/key/value, causal mask and sequences of lengths (2, 3): the limit
    NNGP and NTK against the finite-width network's seed means (n = 256, 48 seeds; 4 standard
    errors + O(1/n)), and the masks change the kernel by far more than that."""
    from programs import attention

    X = unit_rows((2, 3, 4), seed=0)
    kw = dict(mlp=False, norm="post", query_key="shared", value="tied", logit_scale=2.0)
    p = attention.build(X, causal=True, lengths=[2, 3], **kw)
    K, T = tp.nngp(p), tp.ntk(p)
    sim = tp.simulate(p, width=256, seeds=48, backend="numpy", seed=4)
    se = assert_seed_means(sim, K, T, 4e-3)
    assert rel(tp.ntk(p, method="paths"), T) < 1e-10
    unmasked = tp.ntk(attention.build(X, **kw))
    assert np.abs(unmasked - T).max() > 10 * se.max()


def test_transformer_arguments_are_checked():
    from programs import attention

    X = unit_rows((2, 3, 4))
    with pytest.raises(tp.ProgramError, match="norm must be one of"):
        attention.build(X, norm="sandwich")
    with pytest.raises(tp.ProgramError, match="value must be one of"):
        attention.build(X, value="shared")
    with pytest.raises(tp.ProgramError, match="lengths must be 2 integers in 1 … 3"):
        attention.build(X, lengths=[0, 3])
    with pytest.raises(tp.ProgramError, match="lengths must be 2 integers"):
        attention.build(X, lengths=[4, 3])


# ---------------------------------------------------------------------- sequences of lengths
@pytest.mark.parametrize("activation", ["erf", "relu"])
@pytest.mark.parametrize("readout", ["last", "mean"])
def test_rnn_sequences_of_different_lengths_against_recursion(activation, readout):
    from programs import rnn

    from .test_rnn import BVAR, UVAR, VVAR, WVAR, rnn_reference

    X = unit_rows((4, 4, 5), seed=0)
    X[1] *= 1.5
    lengths = [4, 2, 1, 3]
    p = rnn.build(X, activation=activation, wvar=WVAR, uvar=UVAR, bvar=BVAR, readout=readout,
                  vvar=VVAR, lengths=lengths)
    K_ref, T_ref = rnn_reference(X, activation, readout, lengths)
    assert rel(tp.nngp(p), K_ref) < 1e-10
    if readout == "last":
        tol = 1e-10 * np.abs(T_ref).max()
    else:
        # the backward pass of the masked mean scales each step's gradient by a scalar that
        # differs per sequence; each NTK entry sums T² = 16 step pairs, each within the
        # reported per-expectation error (0: the scalars are pulled out of the closed forms,
        # test_masked_mean_scalars_stay_out_of_the_expectations)
        from tensorprog.kernels import backward_program

        bw = backward_program(p).program
        lim = tp.limit(bw)
        for node in bw.nodes("nonlin"):
            lim.cov(node.name)
        tol = 16 * lim.max_error + 1e-10 * np.abs(T_ref).max()
    for method in ("backprop", "paths"):
        assert np.abs(tp.ntk(p, method=method) - T_ref).max() < tol
    # padding is ignored: other values after the end leave the kernels as they are
    Y = X.copy()
    Y[1, 2:] = unit_rows((2, 5), seed=9)
    q = rnn.build(Y, activation=activation, wvar=WVAR, uvar=UVAR, bvar=BVAR, readout=readout,
                  vvar=VVAR, lengths=lengths)
    assert np.abs(tp.ntk(q) - T_ref).max() < tol
    # and the lengths matter
    assert rel(rnn_reference(X, activation, readout)[1], T_ref) > 1e-2


@pytest.mark.parametrize("activation", ["erf", "relu"])
def test_masked_mean_scalars_stay_out_of_the_expectations(activation):
    """The per-sequence factor 1/L_i of a masked mean multiplies the erf′·erf′ (or step·step)
    expectations of the backward pass as a constant: closed forms only, the recursion to
    rounding (it used to be put over one denominator with exp(−u²) and sampled)."""
    from programs import rnn

    from .test_rnn import BVAR, UVAR, VVAR, WVAR, rnn_reference

    X = unit_rows((4, 4, 5), seed=0)
    lengths = [4, 2, 1, 3]
    p = rnn.build(X, activation=activation, wvar=WVAR, uvar=UVAR, bvar=BVAR, readout="mean",
                  vvar=VVAR, lengths=lengths)
    T_ref = rnn_reference(X, activation, "mean", lengths)[1]
    lim = tp.limit(tp.backward_program(p).program)
    assert lim.max_error == 0 and lim.tiers_used == {"exact"}
    for method in ("backprop", "paths"):
        assert np.abs(tp.ntk(p, method=method) - T_ref).max() < 1e-12 * np.abs(T_ref).max()


def test_gru_sequences_of_different_lengths_at_finite_width():
    """GRU read out at step L_i of each sequence (lengths 1 and 2): the limit against the
    finite-width network (n = 512, 48 seeds; 4 standard errors + O(1/n)); sequence 0's entry is
    the one-step GRU's."""
    from programs import gru

    X = unit_rows((2, 2, 3), seed=4)
    p = gru.build(X, wvar=1.5, bvar=0.1, lengths=[1, 2])
    K, T = tp.nngp(p), tp.ntk(p)
    sim = tp.simulate(p, width=512, seeds=48, backend="numpy", seed=3)
    assert_seed_means(sim, K, T, 2e-3)
    one_step = gru.build(X[:, :1], wvar=1.5, bvar=0.1)
    lim = tp.limit(p)
    lim.cov(p.readout.node)
    err = 6 * lim.max_error + 1e-12  # the masked program's expectations: Monte Carlo
    assert np.abs(K[0, 0] - tp.nngp(one_step)[0, 0]) < err
    assert np.abs(K - tp.nngp(gru.build(X, wvar=1.5, bvar=0.1))).max() > 100 * err


def test_lengths_are_checked():
    from programs import gru, rnn

    with pytest.raises(tp.ProgramError, match="lengths must be 2 integers in 1 … 2"):
        gru.build(unit_rows((2, 2, 3)), lengths=[1, 3])
    with pytest.raises(tp.ProgramError, match="lengths must be 2 integers"):
        rnn.build(unit_rows((2, 2, 3)), lengths=[1.0, 2.0])


@pytest.mark.parametrize("name, shape, kwargs", [
    ("attention", (2, 3, 4), dict(causal=True, lengths=[2, 3], norm="post", value="tied",
                                  query_key="shared")),
    ("gru", (2, 2, 3), dict(lengths=[1, 2], bias_mean={"z": 1.0}, gate="erf")),
    ("rnn", (3, 3, 4), dict(lengths=[1, 2, 3], readout="mean")),
    ("mlp", (3, 4), dict(bias_init="zero")),
    ("resnet", (3, 4), dict(bias_init="zero")),
    ("batchnorm", (4, 3), dict(eps=0.0, placement="every")),
], ids=["attention", "gru", "rnn", "mlp", "resnet", "batchnorm"])
def test_conventions_round_trip_through_text(name, shape, kwargs):
    p = importlib.import_module(f"programs.{name}").build(unit_rows(shape), **kwargs)
    assert tp.Program.from_text(p.to_text()) == p
