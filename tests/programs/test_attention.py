"""Self-attention and the pre-LN transformer block (programs/attention.py, tensorprog/nn/attention.py).

* single- and multi-head programs (independent, shared and identity query/key; 1–2 blocks; mean
  or first-token readout) build, round-trip through the textual form, and have symmetric
  positive definite NNGP and NTK with NTK − NNGP PSD; every expectation is exact;
  the path method refuses (paths do not follow SELECT) and points to backprop;
* independent W_Q, W_K: the limit logits are exactly 0 (uniform attention) and W_Q, W_K carry no
  NTK; shared W_Q = W_K and identity logits are non-zero and equal β·σ²·K_y;
* an independent derivation: the NNGP and the NTK (every parameter's share) of shared-weight
  single-head attention with LayerNorms and no MLP, by hand in NumPy, agree to 1e-10 — and with
  the logits set to 0 the same formulas give the independent-weight program's kernels;
* scaling="1/sqrt(n)" raises a ProgramError that names the instruction and says what to do,
  before anything is added to the program; at finite width the simulated √n·avg(q·k) keeps O(1)
  fluctuations (the predicted CLT variance) while avg(q·k) concentrates like n^{-1/2};
* tp.validate at widths 64…512: per-draw errors of NNGP, NTK and every MOMENT fall like n^{-1/2}
  (slope within 0.1) and the seed means are within 4 standard errors of the limits.
"""
import numpy as np
import pytest

import tensorprog as tp
from programs.attention import build
from tensorprog.nn.attention import embed_tokens, self_attention, sequence_layout

pytestmark = pytest.mark.filterwarnings("ignore::tensorprog.PseudoLipschitzWarning")

WIDTHS = (64, 128, 256, 512)


def sequences(N=2, T=3, d=4, seed=0):
    return np.random.default_rng(seed).standard_normal((N, T, d))


def logit_names(p, block=1, head=1):
    _, T = sequence_layout(p, "tokens")
    return [f"b{block}_attn_l{head}_{t}" for t in range(T)]


# ---------------------------------------------------------------------- the limit by hand
def hand_kernels(X, w, b, beta, eps, logits="shared"):
    """NNGP and NTK shares of: x0 = embed, y = LN(x0), u = W_V y, logits β·avg(q_s q_t) with
    q = W_Q y (``"shared"``) or 0 (``"zero"``, independent W_Q, W_K), o = softmax-mix of u,
    x1 = x0 + W_O o, z = LN(x1), f = v·mean_t(z)/√n + b_out; every variance w, biases b.

    Limit (no Monte Carlo, no tensorprog): LN divides by √(K_aa + eps) (the mean of Z is 0),
    Cov(u) = w K_y, o = M u with M the softmax matrix, ZHAT gives x1's covariance; backward:
    dz = v/T, dx1 = dz/√(K1_aa+eps), do = W_Oᵀ dx1, du = Mᵀ do, dy = W_Vᵀ du, dx0 = dx1 + dy/√(K0_aa+eps)
    (MOMENT gradients and dq are O(n^{-1/2}) and vanish); share of W: w E[dg dg'] ∘ E[h h']."""
    N, T, d = X.shape
    Xf = X.reshape(N * T, d)
    own = np.repeat(np.arange(N), T)
    O = np.eye(N)[own]
    K0 = w * Xf @ Xf.T / d + b
    s0 = np.sqrt(np.diag(K0) + eps)
    Ky = K0 / np.outer(s0, s0)
    same = own[:, None] == own[None, :]
    L = np.where(same, beta * w * Ky if logits == "shared" else 0.0, -np.inf)
    M = np.exp(L - L.max(1, keepdims=True))
    M /= M.sum(1, keepdims=True)
    Ko = w * M @ Ky @ M.T
    K1 = K0 + w * Ko
    s1 = np.sqrt(np.diag(K1) + eps)
    Kz = K1 / np.outer(s1, s1)
    P = O / T
    nngp = w * P.T @ Kz @ P + b
    D1 = w / T**2 / np.outer(s1, s1)
    Kdu = w * M.T @ D1 @ M
    Kdx0 = D1 + w * Kdu / np.outer(s0, s0)
    parts = dict(readout=nngp, WO=O.T @ (w * D1 * Ko) @ O, WV=O.T @ (w * Kdu * Ky) @ O,
                 U=O.T @ (K0 * Kdx0) @ O)
    return nngp, parts, L


# ---------------------------------------------------------------------- building, kernels
@pytest.mark.parametrize("kw", [
    dict(),
    dict(heads=2),
    dict(query_key="shared", heads=2, blocks=2, T=2),
    dict(query_key="identity", readout="first", final_ln=False),
    dict(heads=2, activation="erf", bvar=0.1, mlp=True, T=2),
])
def test_programs_build_and_kernels_are_psd(kw):
    kw = dict(kw)
    X = sequences(T=kw.pop("T", 3))
    p = build(X, **kw)
    assert tp.Program.from_text(p.to_text()) == p
    K, Th = tp.nngp(p), tp.ntk(p)
    for A in (K, Th, Th - K):  # NTK = NNGP (readout) + PSD shares of the other parameters
        np.testing.assert_allclose(A, A.T, atol=1e-12)
        assert np.linalg.eigvalsh(A).min() > 1e-6
    lim = tp.limit(p)
    assert lim.tiers_used <= {"exact", "quadrature"} and lim.max_error < 1e-8
    # path sums through the token SELECTs and the softmax's MOMENT scalars
    np.testing.assert_allclose(tp.ntk(p, method="paths"), Th, rtol=1e-10, atol=1e-12)


def test_heads_and_family_layout():
    X = sequences(N=3, T=2)
    p = build(X, heads=2, mlp=False)
    assert p.family_size("tokens") == 6 and p.num_inputs == 3
    members, T = sequence_layout(p, "tokens")
    assert T == 2 and members.tolist() == [[0, 1], [2, 3], [4, 5]]
    # T MOMENTs and 2T SELECTs per head: nothing else loops over token pairs
    assert len([n for n in p.nodes("moment") if "_attn_l" in n.name]) == 2 * 2
    assert len([n for n in p.nodes("select") if "_attn_" in n.name]) == 2 * 2 * 2
    wo = [m for m in p.nodes("matrix") if m.name.startswith("WO_")]
    assert [m.var for m in wo] == [0.5, 0.5]  # wvar/heads: concat of heads


# ---------------------------------------------------------------------- the limits by hand
def test_shared_weight_attention_matches_hand_derivation():
    X = sequences()
    w, b, beta, eps = 1.3, 0.2, 1.7, 1e-5
    p = build(X, query_key="shared", mlp=False, wvar=w, bvar=b, logit_scale=beta, eps=eps)
    K, parts, L = hand_kernels(X, w, b, beta, eps)
    np.testing.assert_allclose(tp.nngp(p), K, rtol=1e-10, atol=1e-12)
    Th, shares = tp.ntk(p, contributions=True)
    np.testing.assert_allclose(Th, sum(parts.values()), rtol=1e-10, atol=1e-12)
    assert not shares["WQ_b1_attn_1"].any()  # query/key weights: no NTK at 1/n scaling
    by_path = tp.kernels.by_parameter(tp.ntk(p, method="paths", contributions=True)[1])
    for mine, theirs in (("readout", "readout"), ("WO_b1_attn_1", "WO"),
                         ("WV_b1_attn_1", "WV"), ("U_x0", "U")):
        np.testing.assert_allclose(shares[mine], parts[theirs], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(by_path[mine], parts[theirs], rtol=1e-10, atol=1e-12)
    lim = tp.limit(p)
    members, T = sequence_layout(p, "tokens")
    own = np.repeat(np.arange(2), T)
    for t, name in enumerate(logit_names(p)):  # non-trivial logits β σ_Q² K_y(s, t)
        np.testing.assert_allclose(lim.scalar(name), L[np.arange(6), members[own, t]],
                                   rtol=1e-10)
    assert np.ptp(L[np.isfinite(L)]) > 1.0


def test_independent_query_key_gives_uniform_attention():
    X = sequences()
    w, b, eps = 1.3, 0.2, 1e-5
    p = build(X, mlp=False, wvar=w, bvar=b, logit_scale=1.7, eps=eps)
    lim = tp.limit(p)
    for name in logit_names(p):
        assert not lim.scalar(name).any()  # E[Z^q Z^k] = 0 exactly
    K, parts, _ = hand_kernels(X, w, b, 1.7, eps, logits="zero")
    np.testing.assert_allclose(tp.nngp(p), K, rtol=1e-10, atol=1e-12)
    Th, shares = tp.ntk(p, contributions=True)
    np.testing.assert_allclose(Th, sum(parts.values()), rtol=1e-10, atol=1e-12)
    assert not shares["WQ_b1_attn_1"].any() and not shares["WK_b1_attn_1"].any()


def test_identity_logits():
    X = sequences()
    p = build(X, query_key="identity", mlp=False, wvar=1.3, logit_scale=0.7)
    q = build(X, query_key="shared", mlp=False, wvar=1.3, logit_scale=0.7 / 1.3)
    lim, lim_q = tp.limit(p), tp.limit(q)
    for a, b in zip(logit_names(p), logit_names(q)):
        np.testing.assert_allclose(lim.scalar(a), lim_q.scalar(b), rtol=1e-12)
    np.testing.assert_allclose(tp.nngp(p), tp.nngp(q), rtol=1e-12)


# ---------------------------------------------------------------------- 1/√n
@pytest.mark.parametrize("query_key", ["independent", "shared", "identity"])
def test_sqrt_n_scaling_is_a_clear_error(query_key):
    X = sequences()
    with pytest.raises(tp.ProgramError) as err:
        build(X, query_key=query_key, scaling="1/sqrt(n)")
    e = err.value
    assert "MOMENT" in e.instruction and "√n·avg(" in e.instruction
    assert "not a deterministic scalar" in str(e) and "scaling='1/n'" in str(e)
    assert "Hron" in str(e)
    # raised before any instruction is added
    p = tp.Program("s")
    x = embed_tokens(p, X)
    before = list(p.order)
    with pytest.raises(tp.ProgramError):
        self_attention(x, query_key=query_key, scaling="1/sqrt(n)")
    assert p.order == before
    with pytest.raises(tp.ProgramError, match="scaling must be"):
        self_attention(x, scaling="1/d")


def test_sqrt_n_logits_fluctuate_at_finite_width():
    """The same simulation gives the 1/n logit ℓ = avg(q·k) and the 1/√n one √n·ℓ: the first
    concentrates (std ∝ n^{-1/2}), the second keeps std ≈ σ_Q σ_K √(K_ss K_tt) (CLT)."""
    X = sequences(T=2)
    w = 1.5
    p = build(X, mlp=False, wvar=w)
    name = logit_names(p)[1]
    std = {}
    for n in (64, 256):
        sim = tp.simulate(p, width=n, seeds=300, backend="numpy", seed=3)
        std[n] = sim.scalars[name].std(axis=0)
    ratio = std[256] / std[64]
    np.testing.assert_allclose(ratio, 0.5, rtol=0.2)        # avg(q·k): law of large numbers
    sqrt_n = {n: s * np.sqrt(n) for n, s in std.items()}    # q·k/√n: no concentration
    np.testing.assert_allclose(sqrt_n[256], w, rtol=0.15)   # std σ_Qσ_K√(K_ss K_tt), K ≈ 1 (LN)
    np.testing.assert_allclose(sqrt_n[256] / sqrt_n[64], 1.0, rtol=0.2)


# ---------------------------------------------------------------------- finite width
@pytest.mark.slow
@pytest.mark.parametrize("kw", [
    dict(N=2, T=2, heads=1, query_key="independent", mlp=True),
    dict(N=2, T=3, heads=2, query_key="shared", mlp=False, logit_scale=1.5),
])
def test_finite_width_converges(kw):
    kw = dict(kw)
    X = sequences(N=kw.pop("N"), T=kw.pop("T"))
    p = build(X, **kw)
    rep = tp.validate(p, widths=WIDTHS, seeds=100, backend="numpy", seed=7)
    assert rep.passed, rep.to_markdown()
    assert {"nngp", "ntk"} <= set(rep.quantities)
    assert any(q.startswith("scalar:b1_attn_l") for q in rep.quantities)
    for q in ("nngp", "ntk"):
        slope, _ = rep.slopes[q]
        assert abs(slope + 0.5) <= 0.1, (q, slope)
        assert rep.rows(q)[-1].stats.max_z < 4
