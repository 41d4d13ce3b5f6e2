"""The finite-width NTK of ``tp.simulate`` is the exact NTK of the sampled network.

For one seed, the sampled parameters (``keep_parameters=True``) are put into a network written
here in plain NumPy, independently of the program, and every per-parameter gradient
``∂f(ξ_i)/∂w`` (w the normalised N(0, 1) parameter of the NTK parametrization) is computed by
the complex step ``Im f(w + i·h·e_k)/h`` (exact to rounding; for ReLU, which is piecewise linear,
``relu(z) = z·1{Re z > 0}``).  The brute-force NTK ``Σ_k ∂f(ξ_i)/∂w_k ∂f(ξ_j)/∂w_k`` must equal
the simulation's, per parameter, to 1e-8 relative; so must the network's outputs.
"""
import numpy as np
import pytest
import sympy as sp

import tensorprog as tp

STEP = 1e-30  # complex-step size: no subtractive cancellation, so it can be tiny
EPS = 1e-3    # layernorm's epsilon

ACTIVATIONS = {
    "relu": (tp.relu, lambda z: z * (z.real > 0)),
    "tanh": (tp.tanh, np.tanh),
}


def inputs(N=3, d=4, seed=1):
    return np.random.default_rng(seed).standard_normal((N, d))


def rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


# --------------------------------------------------------------------- the programs
def mlp_program(X, phi, layernorm=False, wvar=1.5, bvar=0.2, vvar=1.3, obvar=0.1):
    """embed → φ → W1 → +b1 → φ → [layernorm] → W2 → +b2 → φ → readout."""
    p = tp.Program("mlp")
    h = p.embed(X, var=wvar, bias_var=bvar, name="h1")
    x = phi(h)
    x = p.matrix("W1", var=wvar) @ x + p.bias("b1", var=bvar)
    x = phi(x)
    if layernorm:
        th = (x * x).mean(name="theta")
        x = tp.nonlin(lambda a, t: a / sp.sqrt(t + EPS), x, scalars=[th])
    x = p.matrix("W2", var=wvar) @ x + p.bias("b2", var=bvar)
    p.output(phi(x), var=vvar, bias_var=obvar)
    return p


def mlp_forward(P, X, act, layernorm, n):
    """The same network in plain NumPy; ``P`` maps parameter names to (batched) arrays."""
    h1 = P["U_h1"] @ X.T + P["U_h1.bias"][..., None]
    x = P["W1"] @ act(h1) + P["b1"][..., None]
    x = act(x)
    if layernorm:
        x = x / np.sqrt((x * x).mean(axis=-2, keepdims=True) + EPS)
    x = P["W2"] @ x + P["b2"][..., None]
    x = act(x)
    return (P["v"][..., None, :] @ x)[..., 0, :] / np.sqrt(n) + P["readout.bias"][..., None]


def zdot_program(X, wvar=1.7, vvar=1.1):
    """y = W tanh(h), z = Wᵀ tanh(y): one matrix used with its transpose."""
    p = tp.Program("zdot")
    h = p.embed(X, var=1.0, bias_var=0.3, name="h1")
    W = p.matrix("W", var=wvar)
    y = W @ tp.tanh(h)
    z = W.T @ tp.tanh(y)
    p.output(tp.tanh(z), var=vvar, bias_var=0.0)
    return p


def zdot_forward(P, X, act, layernorm, n):
    h1 = P["U_h1"] @ X.T + P["U_h1.bias"][..., None]
    y = P["W"] @ np.tanh(h1)
    z = np.swapaxes(P["W"], -1, -2) @ np.tanh(y)
    return (P["v"][..., None, :] @ np.tanh(z))[..., 0, :] / np.sqrt(n) + P["readout.bias"][..., None]


# --------------------------------------------------------------------- brute force
def multipliers(p, n):
    """NTK parametrization: parameter = multiplier × normalised N(0, 1) variable."""
    out = {}
    for node in p.nodes():
        if node.kind == "matrix":
            out[node.name] = np.sqrt(node.var / n)
        elif node.kind == "vector" and node.source == "embed":
            out[node.weight] = np.sqrt(node.var / p.data[node.data].shape[1])
            out[node.weight + ".bias"] = np.sqrt(node.bias_var)
        elif node.kind == "vector" and node.trainable:
            out[node.name] = np.sqrt(node.var)
    out["v"] = np.sqrt(p.readout.var)
    out["readout.bias"] = np.sqrt(p.readout.bias_var)
    return out


def brute_force_ntk(forward, P, X, mult, n, **kw):
    """Per-parameter NTK ``{name: (N, N)}`` from complex-step gradients of ``forward``."""
    parts = {}
    for name, value in P.items():
        size = value.size
        batch = np.broadcast_to(P[name], (size,) + value.shape).astype(complex)
        flat = batch.reshape(size, size)
        flat[np.arange(size), np.arange(size)] += 1j * STEP * mult[name]
        Q = {k: (batch if k == name else v.astype(complex)) for k, v in P.items()}
        grads = forward(Q, X, n=n, **kw).imag / STEP      # (size, N): ∂f(ξ_i)/∂w_k
        parts[name] = grads.T @ grads
    return parts


def sampled_parameters(sim, s=0):
    P = {k: np.asarray(v[s], dtype=float) for k, v in sim.parameters.items()}
    P["v"] = P.pop(sim.readout_vector)
    P["readout.bias"] = np.asarray(P["readout.bias"])
    return P


def group(parts):
    """Brute-force parts keyed like ``Simulation.ntk_contributions``."""
    out = {}
    for k, v in parts.items():
        key = "readout" if k in ("v", "readout.bias") else k.removesuffix(".bias")
        out[key] = out.get(key, 0) + v
    return out


CASES = [
    ("relu", False, 16),
    ("tanh", False, 12),
    ("tanh", True, 12),
    ("relu", True, 8),
]


@pytest.mark.parametrize("act,layernorm,n", CASES)
def test_mlp_ntk_equals_brute_force(act, layernorm, n):
    X = inputs()
    p = mlp_program(X, ACTIVATIONS[act][0], layernorm=layernorm)
    sim = tp.simulate(p, width=n, seeds=2, backend="numpy", seed=3, keep_parameters=True)
    mult = multipliers(p, n)
    for s in range(2):
        P = sampled_parameters(sim, s)
        f = mlp_forward(P, X, ACTIVATIONS[act][1], layernorm, n)
        assert rel(sim.outputs[s], f) < 1e-12
        bf = group(brute_force_ntk(mlp_forward, P, X, mult, n, act=ACTIVATIONS[act][1],
                                   layernorm=layernorm))
        assert set(bf) == set(sim.ntk_contributions)
        for k in bf:
            assert rel(sim.ntk_contributions[k][s], bf[k]) < 1e-8, k
        assert rel(sim.ntk_samples[s], sum(bf.values())) < 1e-8
        if layernorm:
            phi = ACTIVATIONS[act][1]
            x2 = phi(P["W1"] @ phi(P["U_h1"] @ X.T + P["U_h1.bias"][:, None]) + P["b1"][:, None])
            np.testing.assert_allclose(sim.scalars["theta"][s], (x2 * x2).mean(axis=0),
                                       rtol=1e-12)


def test_weight_used_with_its_transpose_ntk_equals_brute_force():
    X = inputs()
    n = 10
    p = zdot_program(X)
    sim = tp.simulate(p, width=n, seeds=1, backend="numpy", seed=5, keep_parameters=True)
    P = sampled_parameters(sim)
    assert rel(sim.outputs[0], zdot_forward(P, X, None, False, n)) < 1e-12
    bf = group(brute_force_ntk(zdot_forward, P, X, multipliers(p, n), n, act=None,
                               layernorm=False))
    for k in bf:
        assert rel(sim.ntk_contributions[k][0], bf[k]) < 1e-8, k


def test_nngp_sample_is_the_readout_kernel_given_the_body():
    """σ_v² x·x̄/n + σ_b² is the covariance of f over (v, b_out) with the body fixed."""
    X = inputs()
    n = 16
    p = mlp_program(X, tp.tanh)
    sim = tp.simulate(p, width=n, seeds=1, backend="numpy", keep_parameters=True)
    P = sampled_parameters(sim)
    x = np.tanh(P["W2"] @ np.tanh(P["W1"] @ np.tanh(P["U_h1"] @ X.T + P["U_h1.bias"][:, None])
                                 + P["b1"][:, None]) + P["b2"][:, None])
    K = p.readout.var * x.T @ x / n + p.readout.bias_var
    assert rel(sim.nngp_samples[0], K) < 1e-12
    assert rel(sim.ntk_contributions["readout"][0], K) < 1e-12


def pixel_program(X, patches, P):
    """Each input owns P pixel vectors (a family); a circular shift, a zero-padded shift, a
    shared bias added per pixel, and average pooling into the inputs family by SELECTs."""
    N = len(X)
    p = tp.Program("pixels")
    p.embed(X, var=1.0, name="h0", trainable=False)  # declares the inputs family
    fam = p.family("pix", np.repeat(np.arange(N), P))
    h = p.embed(patches, var=2.0, bias_var=0.1, family=fam, name="h1")
    i, pos = np.divmod(np.arange(N * P), P)
    shift = p.select(h, i * P + (pos + 1) % P, fam)
    pad = p.select(h, np.where(pos + 1 < P, i * P + pos + 1, -1), fam)
    g = p.matrix("W", 2.0) @ tp.tanh(shift) + tp.tanh(pad) + p.bias("b", var=0.3)
    pooled = sum(p.select(tp.tanh(g), np.arange(N) * P + k, "inputs") for k in range(P)) / P
    p.output(pooled, var=1.2, bias_var=0.05)
    return p


def pixel_forward(P_, X, patches, P, n):
    N = len(X)
    i, pos = np.divmod(np.arange(N * P), P)
    h = P_["U_h1"] @ patches.T + P_["U_h1.bias"][..., None]          # (…, n, N·P)
    zero = np.zeros(h.shape[:-1] + (1,))
    shift = h[..., i * P + (pos + 1) % P]
    pad = np.concatenate([h, zero], axis=-1)[..., np.where(pos + 1 < P, i * P + pos + 1, -1)]
    g = P_["W"] @ np.tanh(shift) + np.tanh(pad) + P_["b"][..., None]
    a = np.tanh(g)
    pooled = sum(a[..., np.arange(N) * P + k] for k in range(P)) / P
    return (P_["v"][..., None, :] @ pooled)[..., 0, :] / np.sqrt(n) + P_["readout.bias"][..., None]


def test_families_and_selects_ntk_equals_brute_force():
    """Gradients living in another family are summed over the members each input owns."""
    X, n, P = inputs(N=2), 10, 3
    patches = np.random.default_rng(4).standard_normal((2 * P, 4))
    p = pixel_program(X, patches, P)
    sim = tp.simulate(p, width=n, seeds=1, backend="numpy", seed=7, keep_parameters=True)
    P_ = sampled_parameters(sim)
    P_.pop("U_h0"), P_.pop("U_h0.bias")  # the untrained input layer
    assert rel(sim.outputs[0], pixel_forward(P_, X, patches, P, n)) < 1e-12
    mult = multipliers(p, n)
    bf = group(brute_force_ntk(lambda Q, X_, n: pixel_forward(Q, X_, patches, P, n),
                               P_, X, mult, n))
    assert set(bf) == set(sim.ntk_contributions)
    for k in bf:
        assert rel(sim.ntk_contributions[k][0], bf[k]) < 1e-8, k


def test_shared_moment_and_input_independent_gradient_equal_brute_force():
    """θ = avg(b²) of a shared bias scales every input: d_h is then one shared vector."""
    X, n = inputs(), 9
    p = tp.Program("shared")
    h = p.embed(X, var=1.0, bias_var=0.2, name="h1")
    b = p.bias("b", var=2.0)
    th = (b * b).mean(name="bb")
    p.output(tp.nonlin(lambda x, t: tp.functions.relu(x) * t, h, scalars=[th]), var=1.0,
             bias_var=0.1)

    def forward(P, X, n):
        x = P["U_h1"] @ X.T + P["U_h1.bias"][..., None]
        t = (P["b"] * P["b"]).mean(axis=-1)[..., None, None]
        y = x * (x.real > 0) * t
        return (P["v"][..., None, :] @ y)[..., 0, :] / np.sqrt(n) + P["readout.bias"][..., None]

    sim = tp.simulate(p, width=n, seeds=1, backend="numpy", seed=2, keep_parameters=True)
    P = sampled_parameters(sim)
    assert rel(sim.outputs[0], forward(P, X, n)) < 1e-12
    bf = group(brute_force_ntk(forward, P, X, multipliers(p, n), n))
    assert set(bf) == set(sim.ntk_contributions)
    for k in bf:
        assert rel(sim.ntk_contributions[k][0], bf[k]) < 1e-8, k


def test_generated_matrix_ntk_equals_brute_force():
    """A matrix generated per input (hypernetwork weights, entries w_ab(ξ_i)/√n with tangent
    kernel T_ij): Θ_W(i, j) = T_ij Σ_ab ∂f(ξ_i)/∂w_ab(ξ_i) ∂f(ξ_j)/∂w_ab(ξ_j), the gradients
    taken by complex step on the matrix each input sees."""
    rng = np.random.default_rng(5)
    X, n = rng.standard_normal((3, 4)), 8
    A = rng.standard_normal((3, 3))
    C = A @ A.T / 3 + 0.5
    T = 1.5 * C + np.eye(3)
    p = tp.Program("hyper")
    h = p.embed(X, var=2.0, bias_var=0.1, name="h1")
    W = p.matrix("W", C, tangent=T)
    p.output(tp.tanh(W @ tp.relu(h)), var=2.0, bias_var=0.1)
    relu = ACTIVATIONS["relu"][1]

    def forward(P, X, n):
        x = relu(P["U_h1"] @ X.T + P["U_h1.bias"][..., None])          # (…, n, N)
        g = np.einsum("...iab,...bi->...ai", P["W"], x)                 # W(ξ_i) x(ξ_i)
        return (P["v"][..., None, :] @ np.tanh(g))[..., 0, :] / np.sqrt(n) \
            + P["readout.bias"][..., None]

    sim = tp.simulate(p, width=n, seeds=1, backend="numpy", seed=3, keep_parameters=True)
    P = sampled_parameters(sim)
    assert P["W"].shape == (3, n, n)
    assert rel(sim.outputs[0], forward(P, X, n)) < 1e-12
    grads = []
    eye = np.eye(n * n).reshape(n * n, n, n)
    for i in range(3):                       # ∂f(ξ_i)/∂w_ab(ξ_i), w = √n W
        batch = np.broadcast_to(P["W"], (n * n,) + P["W"].shape).astype(complex)
        batch[:, i] += 1j * STEP / np.sqrt(n) * eye
        Q = {k: (batch if k == "W" else v.astype(complex)) for k, v in P.items()}
        grads.append(forward(Q, X, n).imag[:, i] / STEP)
    G = np.array(grads)                      # (N, n²)
    assert rel(sim.ntk_contributions["W"][0], T * (G @ G.T)) < 1e-8
    others = {k: v for k, v in P.items() if k != "W"}
    bf = group(brute_force_ntk(lambda Q, X_, n: forward({**Q, "W": P["W"]}, X_, n),
                               others, X, multipliers(p, n), n))
    for k in bf:
        assert rel(sim.ntk_contributions[k][0], bf[k]) < 1e-8, k


def test_generated_matrix_converges_to_its_limit():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((3, 4))
    A = rng.standard_normal((3, 3))
    C = A @ A.T / 3 + 0.5
    p = tp.Program("hyper")
    h = p.embed(X, var=2.0)
    p.output(tp.relu(p.matrix("W", C, tangent=1.5 * C + np.eye(3)) @ tp.relu(h)), var=2.0,
             trainable=False)
    sim = tp.simulate(p, width=128, seeds=400, backend="numpy", seed=1)
    for got, se, want in ((sim.nngp, sim.nngp_stderr, tp.nngp(p)),
                          (sim.ntk, sim.ntk_stderr, tp.ntk(p))):
        assert np.max(np.abs(got - want) / se) < 4


def batchnorm_program(X, B, eps=1e-3):
    """BatchNorm over batches of B consecutive inputs: every output reads its whole batch (a
    SELECT across inputs), so backprop runs on the lifted program (tensorprog.kernels.lift)."""
    N = len(X)
    p = tp.Program("batchnorm")
    h = p.embed(X, var=1.5, bias_var=0.2, name="h1")
    g = p.matrix("W1", var=1.5) @ tp.tanh(h)
    base = (np.arange(N) // B) * B
    members = [p.select(g, base + k, "inputs") for k in range(B)]
    mu = sum(members) / B
    var = sum((m - mu) * (m - mu) for m in members) / B
    x = (g - mu) / (var + eps) ** 0.5
    p.output(tp.tanh(x), var=1.3, bias_var=0.1)
    return p


def batchnorm_forward(P, X, act, layernorm, n, B=2, eps=1e-3):
    h1 = P["U_h1"] @ X.T + P["U_h1.bias"][..., None]
    g = P["W1"] @ np.tanh(h1)
    gb = g.reshape(g.shape[:-1] + (g.shape[-1] // B, B))
    mu = gb.mean(axis=-1, keepdims=True)
    var = ((gb - mu) ** 2).mean(axis=-1, keepdims=True)
    x = ((gb - mu) / np.sqrt(var + eps)).reshape(g.shape)
    return (P["v"][..., None, :] @ np.tanh(x))[..., 0, :] / np.sqrt(n) + P["readout.bias"][..., None]


def test_batchnorm_across_inputs_ntk_equals_brute_force():
    X = inputs(N=4)
    n = 10
    p = batchnorm_program(X, B=2)
    sim = tp.simulate(p, width=n, seeds=1, backend="numpy", seed=7, keep_parameters=True)
    P = sampled_parameters(sim)
    assert rel(sim.outputs[0], batchnorm_forward(P, X, None, False, n)) < 1e-12
    bf = group(brute_force_ntk(batchnorm_forward, P, X, multipliers(p, n), n, act=None,
                               layernorm=False))
    assert set(bf) == set(sim.ntk_contributions)
    for k in bf:
        assert rel(sim.ntk_contributions[k][0], bf[k]) < 1e-8, k
    # the cross-batch blocks of the NTK are non-zero: inputs of one batch interact
    assert np.abs(bf["W1"][0, 1]) > 1e-3 * np.abs(bf["W1"][0, 0])
