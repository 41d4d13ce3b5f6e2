"""Backprop written into the program (tensorprog/kernels/backprop.py): the backward pass is an
ordinary program whose limit gives every scaled gradient ``dx = √n ∂f/∂x``, checked here against
gradients derived by hand with the arc-cosine closed forms of tests/kernels/reference.py."""
import numpy as np
import pytest

import tensorprog as tp

from .reference import relu_pair

#: Two inputs with ξᵀξ/d = 1 and correlation 0.6 (d = 2).
X = np.sqrt(2) * np.array([[1.0, 0.0], [0.6, 0.8]])
K0 = X @ X.T / 2
WVAR, VVAR = 2.0, 1.5


def two_layer():
    """h = Uξ, x = relu(h), g = W x, f = v·relu(g)/√n (no biases)."""
    p = tp.Program("two")
    h = p.embed(X, var=1.0, name="h")
    x = tp.relu(h).named("x")
    g = p.matrix("W", WVAR) @ x  # MATMUL h1
    p.output(tp.relu(g).named("y"), var=VVAR)
    return p


def by_hand():
    """The forward and backward covariances of :func:`two_layer`, derived by hand:
    E[dy dy'] = σ_v² (v is one vector shared by all inputs: a 1×1 covariance), dg = dy ⊙ step(g), dx = Wᵀ dg (ZHAT, and no
    ZDOT since dg is linear in v), dh = dx ⊙ step(h) with dx independent of h."""
    Exx, Ess_h = relu_pair(K0)
    Kg = WVAR * Exx
    Eyy, Ess_g = relu_pair(Kg)
    dg = VVAR * Ess_g
    dx = WVAR * dg
    return dict(x=Exx, g=Kg, y=Eyy, dy=np.full((1, 1), VVAR), dg=dg, dx=dx, dh=dx * Ess_h)


def test_gradients_in_the_limit_match_hand_derivation():
    p = two_layer()
    bw = tp.backward_program(p)
    assert set(bw.grad) == {"y", "h1", "x", "h"}
    lim = tp.limit(bw.program)
    ref = by_hand()
    for name, key in (("x", "x"), ("h1", "g"), ("y", "y")):
        np.testing.assert_allclose(lim.cov(name), ref[key], rtol=1e-12)
    for name, key in (("y", "dy"), ("h1", "dg"), ("x", "dx"), ("h", "dh")):
        np.testing.assert_allclose(lim.cov(bw.grad[name]), ref[key], rtol=1e-12, err_msg=name)
    # the backward MATMUL Wᵀ dg has no ZDOT term: dg is linear in the readout vector
    zx = lim.Z(bw.grad["x"])
    assert len(zx.free_symbols) == 1


def test_backward_program_keeps_the_forward_program():
    p = two_layer()
    bw = tp.backward_program(p)
    assert bw.network is p  # inputs do not interact: nothing to lift
    text = str(bw.program)
    assert text.startswith("\n".join(str(p).splitlines()[:-1]))  # forward pass, then backward
    assert "MATMUL: " + bw.grad["x"] + " := W^T " + bw.grad["h1"] in text
    assert tp.limit(bw.program).cov("y") == pytest.approx(tp.limit(p).cov("y"), rel=1e-14)


def test_ntk_contributions_are_products_of_gradient_and_forward_covariances():
    """TP IIb Eq. (100): W contributes σ_W² E[Z^{dg}Z^{dg'}] E[Z^x Z^{x'}]; the input layer
    K⁰ E[Z^{dh}Z^{dh'}]; the readout the NNGP σ_v² E[Z^y Z^{y'}]."""
    ref = by_hand()
    parts = tp.ntk_contributions(two_layer())
    assert set(parts) == {"W", "U_h", "readout"}
    np.testing.assert_allclose(parts["W"], WVAR * ref["dg"] * ref["x"], rtol=1e-12)
    np.testing.assert_allclose(parts["U_h"], K0 * ref["dh"], rtol=1e-12)
    np.testing.assert_allclose(parts["readout"], VVAR * ref["y"], rtol=1e-12)


def test_shared_bias_gradient_and_moment():
    """A bias b (one vector shared by the inputs) gets the gradient of every input's use; a
    MOMENT's scalar gradient dθ = avg(dy ⊙ ∂ψ/∂θ) vanishes in the limit (TP IIb D.4.5)."""
    p = tp.Program("bias")
    h = p.embed(X, var=1.0, name="h")
    b = p.bias("b", var=0.5)
    x = tp.relu(h + b).named("x")
    th = (x * x).mean(name="th")
    y = tp.nonlin(lambda a, t: a * t, x, scalars=[th]).named("y")
    p.output(y, var=VVAR)
    bw = tp.backward_program(p)
    lim = tp.limit(bw.program)
    Kh = K0 + 0.5
    Exx, Ess = relu_pair(Kh)
    theta = Exx[0, 0]  # avg(x²) → E[relu(u)²] = Var/2, the same for both unit inputs
    np.testing.assert_allclose(lim.scalar("th"), [theta, theta], rtol=1e-12)
    # dy = v, dx = θ̊ v (the θ-path is o(1)), dh = dx ⊙ step(h + b) = d(b) per input
    np.testing.assert_allclose(lim.cov(bw.grad["x"]), VVAR * theta**2 * np.ones((2, 2)),
                               rtol=1e-12)
    np.testing.assert_allclose(lim.cov(bw.grad["h"]), VVAR * theta**2 * Ess, rtol=1e-12)
    parts = tp.ntk_contributions(p)
    np.testing.assert_allclose(parts["b"], 0.5 * VVAR * theta**2 * Ess, rtol=1e-12)


def test_select_gradient_scatters_back():
    """Average pooling over a family of positions: the gradient of each member is v/P."""
    P = 3
    Xp = np.random.default_rng(1).standard_normal((2 * P, 4))
    p = tp.Program("pool")
    p.declare_inputs(2)
    p.family("pos", np.repeat([0, 1], P))
    h = p.embed(Xp, var=1.0, family="pos", name="h")
    x = tp.relu(h).named("x")
    pools = [p.select(x, np.arange(2) * P + k) for k in range(P)]
    y = tp.nonlin(lambda *a: sum(a) / P, *pools).named("y")
    p.output(y, var=VVAR)
    bw = tp.backward_program(p)
    lim = tp.limit(bw.program)
    np.testing.assert_allclose(lim.cov(bw.grad["x"]), VVAR / P**2 * np.ones((2 * P, 2 * P)),
                               rtol=1e-12)
    _, Ess = relu_pair(Xp @ Xp.T / 4)
    np.testing.assert_allclose(lim.cov(bw.grad["h"]), VVAR / P**2 * Ess, rtol=1e-12)


def test_shared_vector_selected_into_two_families():
    """A trainable shared vector b read by the inputs' family and by a family of two members per
    input: its gradient is pooled into the inputs' family (∂f(ξ_i)/∂b sums over the members input
    i owns) and the NTK agrees with the finite-width network (4 standard errors + O(1/n));
    path sums refuse rather than follow b into one family only."""
    X = np.random.default_rng(1).standard_normal((2, 3))
    p = tp.Program("shared")
    h = p.embed(X, var=1.0, name="h0")
    fam = p.family("pix", np.repeat(np.arange(2), 2))
    b = p.bias("b", var=0.5)
    s1 = p.select(b, np.zeros(2, int), "inputs")
    s2 = p.select(b, np.zeros(4, int), fam)
    patches = np.random.default_rng(2).standard_normal((4, 3))
    g = p.matrix("W", 1.0) @ tp.relu(s2 + p.embed(patches, var=1.0, family=fam))
    pooled = sum(p.select(tp.relu(g), np.arange(2) * 2 + k, "inputs") for k in range(2)) / 2
    p.output(pooled + s1 + tp.relu(h), var=1.0)
    T = tp.ntk(p)
    sim = tp.simulate(p, width=512, seeds=24, backend="numpy", seed=3)
    assert np.all(np.abs(T - sim.ntk) < 4 * sim.ntk_stderr + 0.02 * np.abs(T).max())
    with pytest.raises(tp.LimitError, match="shared vector 'b' is used in the families"):
        tp.ntk(p, method="paths")
