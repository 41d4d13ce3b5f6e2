"""Families beyond the inputs and SELECT views (positions of a CNN, tokens of attention)."""
import numpy as np
import pytest

import tensorprog as tp


def pixel_program(X, P=3):
    """Each input i owns P pixel vectors; a circular shift by one and a pooled readout."""
    N = len(X)
    p = tp.Program("pixels")
    p.embed(X, var=1.0, name="h0")  # declares the inputs family
    fam = p.family("pix", np.repeat(np.arange(N), P))
    rng = np.random.default_rng(0)
    patches = rng.standard_normal((N * P, 4))
    h = p.embed(patches, var=2.0, bias_var=0.1, family=fam)
    i, pos = np.divmod(np.arange(N * P), P)
    shift = p.select(h, i * P + (pos + 1) % P, fam)
    pad = p.select(h, np.where(pos + 1 < P, i * P + pos + 1, -1), fam)
    W = p.matrix("W", 2.0)
    g = W @ tp.relu(shift) + pad
    pooled = sum(p.select(tp.relu(g), np.arange(N) * P + k, "inputs") for k in range(P)) / P
    p.output(pooled, var=1.0)
    return p, patches


def test_select_round_trip_and_limits():
    X = np.random.default_rng(1).standard_normal((2, 3))
    p, patches = pixel_program(X)
    q = tp.Program.from_text(p.to_text())
    assert q == p
    lim = tp.limit(p)
    shift = [n.name for n in p.nodes("select")][0]
    K = lim.cov(shift)
    C = 2.0 * patches @ patches.T / 4 + 0.1
    i, pos = np.divmod(np.arange(6), 3)
    idx = i * 3 + (pos + 1) % 3
    np.testing.assert_allclose(K, C[np.ix_(idx, idx)], rtol=1e-13)
    pad = [n.name for n in p.nodes("select")][1]
    Kp = lim.cov(pad)
    assert np.all(Kp[pos == 2] == 0) and np.all(Kp[:, pos == 2] == 0)


def test_select_kernels_sum_over_owned_members():
    X = np.random.default_rng(1).standard_normal((2, 3))
    p, _ = pixel_program(X)
    T, parts = tp.ntk(p, contributions=True)
    assert T.shape == (2, 2)
    assert np.linalg.eigvalsh(T).min() > 0
    np.testing.assert_allclose(T, T.T, rtol=1e-12)
    np.testing.assert_allclose(tp.ntk(p, method="paths"), T, rtol=1e-12)


def test_family_errors():
    X = np.eye(2)
    p = tp.Program("f")
    h = p.embed(X)
    p.family("pix", [0, 0, 1, 1])
    with pytest.raises(tp.ProgramError, match="4 integers"):
        p.select(h, [0, 1], "pix")
    with pytest.raises(tp.ProgramError, match="owner"):
        p.family("bad", [0, 5])
    g = p.select(h, [0, 0, 1, 1], "pix")
    with pytest.raises(tp.ProgramError, match="different families"):
        (g + h).named("mix")
    with pytest.raises(tp.ProgramError, match="inputs family"):
        p.output(g)


def test_flatten_readout_with_slots():
    """f(ξ_i) = Σ_p v_p·x_(i,p)/√(nP): NNGP = σ_v²/P Σ_p E[x_(i,p) x_(j,p)] + σ_b²."""
    N, P = 2, 3
    rng = np.random.default_rng(4)
    p = tp.Program("flat")
    p.embed(rng.standard_normal((N, 2)), name="h0")
    fam = p.family("pix", np.repeat(np.arange(N), P))
    patches = rng.standard_normal((N * P, 3))
    h = p.embed(patches, var=1.5, family=fam)
    slots = np.tile(np.arange(P), N)
    p.output(h, var=2.0, bias_var=0.3, slots=slots)
    C = 1.5 * patches @ patches.T / 3
    same = slots[:, None] == slots[None, :]
    owner = np.repeat(np.eye(N), P, axis=0)
    expected = 2.0 / P * owner.T @ (C * same) @ owner + 0.3
    np.testing.assert_allclose(tp.nngp(p), expected, rtol=1e-13)
    # every parameter: readout (= NNGP) plus the patch embedding (K0 ⊙ E[dh dh])
    T = tp.ntk(p)
    np.testing.assert_allclose(T, expected + 2.0 / P * owner.T @ (C * same) @ owner, rtol=1e-12)
    assert tp.Program.from_text(p.to_text()) == p


def test_shared_vector_seen_from_two_family_sizes():
    """A bias broadcast into a family of 4 members and into the inputs (2): two distinct leaves."""
    p = tp.Program("leaf")
    p.embed(np.eye(2), name="h0")
    fam = p.family("pix", [0, 0, 1, 1])
    h = p.embed(np.random.default_rng(0).standard_normal((4, 3)), family=fam)
    b = p.bias("b", 1.0)
    x = tp.relu(h + b)
    pooled = p.select(x, [0, 2], "inputs") + p.select(x, [1, 3], "inputs") + b
    p.output(pooled)
    K = tp.nngp(p)
    assert K.shape == (2, 2) and np.all(np.isfinite(K))
    T, parts = tp.ntk(p, contributions=True)
    assert np.linalg.eigvalsh(parts["b"]).min() > 0
