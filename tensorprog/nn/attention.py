r"""Self-attention over the tokens of a sequence, and the pre-LN transformer block.

A batch of N sequences of T tokens is one *family* of N·T vectors, ``"tokens"``, whose member
``a = i·T + t`` (token t of sequence i) is owned by input i (docs/theory.md §3, docs/compiler.md
"Families").  Every instruction below acts on the whole family — all tokens of all sequences at
once — and the pairs of tokens within a sequence are reached by SELECT views, so a head costs T
MOMENTs and 2T SELECTs whatever N is (nothing loops over token pairs or over inputs in Python).

Self-attention, head h (TP IIb Fig. 4; Yang 2019 §attention), on the family x:

    q = W_Q^h x,   k = W_K^h x,   u = W_V^h x                       (MATMUL, n×n, N(0, σ²/n))
    k⁽ᵗ⁾ = k[(i, s) ← (i, t)],  u⁽ᵗ⁾ = u[(i, s) ← (i, t)]            (SELECT, t = 0 … T−1)
    ℓ_t = β · avg(q ⊙ k⁽ᵗ⁾)   = β q_{(i,s)}·k_{(i,t)} / n          (MOMENT: one number per token)
    o   = Σ_t e^{ℓ_t} u⁽ᵗ⁾ / Σ_t e^{ℓ_t}                              (NONLIN of T vectors, T scalars)
    attn(x) = Σ_h W_O^h o^h,   W_O^h entries N(0, σ_O²/(H n))

**Scaling 1/n.**  The logit is a MOMENT, ``(1/n) Σ_α q_α k_α``, so it converges to the
deterministic ``ℓ̊_st = β E[Z^{q_s} Z^{k_t}]`` (ZMOMENT) and the softmax is an ordinary NONLIN⁺
with scalar parameters.  That NONLIN is pseudo-Lipschitz in *all* its arguments, scalars
included (the softmax weights are bounded and Lipschitz in ℓ, and ψ is linear in the u⁽ᵗ⁾), as
Assumption B.8 of TP IIb asks, even though it is written with ``exp`` (of scalars only, which
the ``PseudoLipschitzWarning`` check knows).

**What the limit is at initialisation.**  With independent W_Q, W_K (``query_key=
"independent"``, the standard layer) ``Z^q`` and ``Z^k`` are independent ZHAT Gaussians, so
``ℓ̊_st = β E[Z^q Z^k] = 0``: the infinite-width attention is *uniform*, ``o = (1/T) Σ_t u⁽ᵗ⁾``,
and the layer's NNGP/NTK are those of mean pooling of the values inside each sequence.  (The
finite-width logits are O(n^{-1/2}).)  Two variants keep the softmax non-trivial in the limit:

* ``query_key="shared"``: W_Q = W_K (one matrix), ``ℓ̊_st = β σ_Q² E[Z^{x_s} Z^{x_t}]``;
* ``query_key="identity"``: no query/key weights, ``ℓ_st = β avg(x_s ⊙ x_t) → β E[Z^{x_s}Z^{x_t}]``.

In every variant the query/key weights contribute *nothing* to the limit NTK (NTK
parametrization): ∂f/∂ℓ is O(1), so the scaled gradient ``dq = √n ∂f/∂q = (∂f/∂ℓ) k/√n`` is
O(n^{-1/2}) and W_Q's share ``‖∂f/∂q‖² avg(x²)`` is O(1/n).  The attention pattern is frozen at
its initial value in the kernel regime.

**Scaling 1/√n** (``scaling="1/sqrt(n)"``, the Transformer's q·k/√d_head) is refused with a
:class:`~tensorprog.errors.ProgramError`.  The logit ``q·k/√n = √n·avg(q ⊙ k)`` is a sum of n
products of O(1) coordinates divided by √n: by the central limit theorem it converges *in
distribution* to a Gaussian (variance ``β² σ_Q² σ_K² E[(Z^{x_s})²] E[(Z^{x_t})²]`` for independent
W_Q, W_K), not almost surely to a number.  The Master Theorem (TP IIb Thm. B.4, Setup B.2(3))
covers only scalars with deterministic limits, and NETSOR⊤+ has no instruction for "√n times a
MOMENT" (every MOMENT is an average (1/n)Σ_α), so no program represents it and the compiler cannot
return a number for it.  Its limit has *random* attention weights (a GP over the logits, Hron,
Bahri, Sohl-Dickstein & Novak 2020, "Infinite attention"); with W_Q = W_K the logits even diverge
like √n.  Use ``scaling="1/n"`` (this module's default, also the μP scaling of TP V).

Multi-head convention: ``Σ_h W_O^h o^h`` with W_O^h entries N(0, σ_O²/(H n)) is exactly the
standard ``W_O · concat(o¹…o^H)`` with head dimension n and fan-in H·n in NTK parametrization.
Query, key, value and output projections have no biases.
"""
from __future__ import annotations


import numpy as np
import sympy as sp

from ..errors import ProgramError
from ..ir.builder import Var, moment
from ..ir.program import INPUTS, SHARED
from .masking import masks, sequence_lengths
from .norm import layer_norm

TOKENS = "tokens"
SCALINGS = ("1/n", "1/sqrt(n)")
QUERY_KEY = ("independent", "shared", "identity")
VALUES = ("separate", "tied")
NORMS = ("pre", "post")


# ---------------------------------------------------------------------- sequences as families
def embed_tokens(p, X, var: float = 1.0, bias_var: float = 0.0, family: str = TOKENS,
                 name: str | None = None) -> Var:
    """Token embedding of N sequences ``X`` (N, T, d): declares the N inputs (if the program has
    none yet) and the family ``family`` of N·T tokens, member ``i·T + t`` owned by sequence i,
    and returns ``h = U x_{it} + b`` over it (``U_ij ~ N(0, var/d)``, ``b ~ N(0, bias_var)``):
    ``Cov(Z^{h_{it}}, Z^{h_{js}}) = var·x_{it}ᵀx_{js}/d + bias_var``."""
    X = np.asarray(X, dtype=float)
    if X.ndim != 3 or 0 in X.shape:
        raise ProgramError(f"token inputs must be a non-empty (N, T, d) array (N sequences of T "
                           f"tokens in R^d), got shape {X.shape}", f"FAMILY: {family}")
    N, T, d = X.shape
    if p.num_inputs is None:
        p.declare_inputs(N)
    elif p.num_inputs != N:
        raise ProgramError(f"the program has {p.num_inputs} inputs but X holds {N} sequences",
                           f"FAMILY: {family}")
    p.family(family, np.repeat(np.arange(N), T))
    return p.embed(X.reshape(N * T, d), var=var, bias_var=bias_var, family=family, name=name)


def sequence_layout(p, family: str) -> tuple[np.ndarray, int]:
    """``(members, T)``: ``members[i, t]`` is the member of ``family`` holding token t of
    sequence i (the members input i owns, in order).  Every sequence must have T tokens."""
    fam = p.get_family(family)
    if fam.owner is None or family == INPUTS:
        raise ProgramError(f"attention needs a family of tokens owned by sequences (see "
                           f"embed_tokens), not {family!r}")
    counts = np.bincount(fam.owner, minlength=p.num_inputs)
    if counts.min() != counts.max() or counts.min() == 0:
        raise ProgramError(f"every sequence of family {family!r} must have the same number of "
                           f"tokens (≥ 1); got {sorted(set(counts.tolist()))}")
    T = int(counts[0])
    members = np.argsort(fam.owner, kind="stable").reshape(p.num_inputs, T)
    return members, T


def token_index(p, family: str, t: int) -> np.ndarray:
    """SELECT index sending member (i, s) to member (i, t): token t of the same sequence."""
    members, _ = sequence_layout(p, family)
    return members[p.get_family(family).owner, t]


def gather_token(x: Var, t: int, name: str | None = None) -> Var:
    """The view of ``x`` (a token family) whose member (i, s) is member (i, t) of ``x``."""
    p = x.program
    family = _family_of(x)
    return p.select(x, token_index(p, family, t), family, name=name)


def pool_tokens(x: Var, how: str = "mean", name: str | None = None, lengths=None) -> Var:
    """Readout vector of each sequence, in the inputs family: the mean over its T tokens (a
    NONLIN of T SELECTs, ``(1/T) Σ_t x_{(i,t)}``) or its first token (``how="first"``).  With
    ``lengths`` (N integers), sequence i has ``lengths[i]`` real tokens followed by padding, and
    the mean runs over the real ones: ``Σ_t mask_{it} x_{(i,t)} / Σ_t mask_{it}`` with the masks
    of :mod:`tensorprog.nn.masking`."""
    p = x.program
    members, T = sequence_layout(p, _family_of(x))
    base = name or p.fresh_name("pool")
    if how == "first":
        return p.select(x, members[:, 0], INPUTS, name=name)
    if how != "mean":
        raise ProgramError(f"pool_tokens: how must be 'mean' or 'first', got {how!r}")
    parts = [p.select(x, members[:, t], INPUTS, name=f"{base}_t{t}") for t in range(T)]
    if lengths is not None:
        L = sequence_lengths(lengths, p.num_inputs, T)
        on = masks(p, INPUTS, np.arange(T)[None, :] < L[:, None], f"{base}_mask")
        num = sum((m.expr * s.expr for m, s in zip(on, parts)), sp.S.Zero)
        return Var(p, num / sum((m.expr for m in on), sp.S.Zero)).named(base)
    total = parts[0].expr
    for s in parts[1:]:
        total = total + s.expr
    return Var(p, total / T).named(base)


# ---------------------------------------------------------------------- attention
def self_attention(x: Var, heads: int = 1, name: str = "attn", wvar: float = 1.0,
                   ovar: float | None = None, query_key: str = "independent",
                   logit_scale: float = 1.0, scaling: str = "1/n", value: str = "separate",
                   causal: bool = False, lengths=None) -> Var:
    """Multi-head self-attention of the token family ``x`` (see the module docstring).

    Matrices: ``WQ_{name}_{h}``, ``WK_{name}_{h}``, ``WV_{name}_{h}`` with entries N(0, wvar/n)
    and ``WO_{name}_{h}`` with N(0, ovar/(heads·n)) (``ovar`` defaults to ``wvar``).  The logit
    between token s and token t of one sequence is the MOMENT ``{name}_l{h}_{t}`` =
    ``logit_scale · avg(q ⊙ k⁽ᵗ⁾)`` (scaling 1/n).  ``query_key`` is ``"independent"`` (W_Q, W_K;
    the limit logits are 0), ``"shared"`` (W_Q = W_K) or ``"identity"`` (logits
    ``avg(x_s ⊙ x_t)``, no query/key weights).  ``scaling="1/sqrt(n)"`` raises
    :class:`~tensorprog.errors.ProgramError`: those logits have no deterministic limit.
    ``value="tied"`` uses the query's matrix for the values too (W_V = W_Q; with
    ``query_key="shared"`` one matrix for query, key and value; with ``"identity"`` the values
    are ``x``).  ``causal=True`` lets token s attend to tokens t ≤ s only; ``lengths`` (N
    integers) marks tokens t ≥ lengths[i] of sequence i as padding, never attended to.  Both
    are softmax masks, ``o_s = Σ_t m_st e^{ℓ_t} u⁽ᵗ⁾ / Σ_t m_st e^{ℓ_t}`` with the exact 0/1 masks
    of :mod:`tensorprog.nn.masking`.  Returns the (pending) vector ``Σ_h W_O^h o^h``.
    """
    if not isinstance(x, Var) or not x.is_vector:
        raise ProgramError("self_attention takes a vector (a token family) of the program")
    p = x.program
    family = _family_of(x)
    _, T = sequence_layout(p, family)
    if not isinstance(heads, (int, np.integer)) or heads < 1:
        raise ProgramError(f"heads must be a positive integer, got {heads!r}")
    if query_key not in QUERY_KEY:
        raise ProgramError(f"query_key must be one of {QUERY_KEY}, got {query_key!r}")
    if value not in VALUES:
        raise ProgramError(f"value must be one of {VALUES}, got {value!r}")
    if scaling not in SCALINGS:
        raise ProgramError(f"scaling must be '1/n' (logits avg(q*k) = q·k/n) or '1/sqrt(n)', "
                           f"got {scaling!r}")
    if scaling == "1/sqrt(n)":
        q, k = ("x", "x") if query_key == "identity" else ("q", "q" if query_key == "shared"
                                                             else "k")
        raise ProgramError(
            f"the 1/√n-scaled logit q·k/√n = √n·avg({q}*{k}) is not a deterministic scalar in the "
            "infinite-width limit: it is a sum of n products of O(1) coordinates divided by √n, "
            "which by the central limit theorem stays an O(1) Gaussian (random attention weights"
            + ({"shared": ", and with W_Q = W_K its mean even grows like √n",
                "identity": ", and without query/key weights its mean even grows like √n"}
               .get(query_key, "")) +
            "), while the Master Theorem (TP IIb Thm. B.4) needs every scalar to converge to a "
            "deterministic value and NETSOR⊤+ has no instruction for √n times a MOMENT. "
            "Use scaling='1/n' (logits avg(q*k) = q·k/n, deterministic; the Tensor Programs / μP "
            "scaling). The 1/√n limit is a Gaussian process over the logits (Hron et al. 2020, "
            "'Infinite attention'), which this compiler does not derive",
            f"MOMENT: {name}_l1_0 := √n·avg({q}*{k}[(i,s) ← (i,0)])")
    ovar = wvar if ovar is None else ovar
    xn = x.materialize()
    mask = None
    if causal or lengths is not None:
        members, _ = sequence_layout(p, family)
        owner = p.get_family(family).owner
        position = np.empty(members.size, dtype=int)
        position[members] = np.arange(T)[None, :]
        allowed = np.ones((members.size, T), dtype=bool)
        if causal:
            allowed &= np.arange(T)[None, :] <= position[:, None]
        if lengths is not None:
            L = sequence_lengths(lengths, p.num_inputs, T)
            allowed &= np.arange(T)[None, :] < L[owner][:, None]
        mask = masks(p, family, allowed, f"{name}_mask")
    out = None
    for h in range(1, heads + 1):
        tag = f"{name}_{h}"
        if query_key == "identity":
            q = k = Var(p, sp.Symbol(xn, real=True))
        else:
            p.add_matrix(f"WQ_{tag}", wvar)
            q = _matmul(p, f"{name}_q{h}", f"WQ_{tag}", xn)
            if query_key == "shared":
                k = q
            else:
                p.add_matrix(f"WK_{tag}", wvar)
                k = _matmul(p, f"{name}_k{h}", f"WK_{tag}", xn)
        if value == "tied":
            u = q
        else:
            p.add_matrix(f"WV_{tag}", wvar)
            u = _matmul(p, f"{name}_v{h}", f"WV_{tag}", xn)
        logits, values = [], []
        for t in range(T):
            index = token_index(p, family, t)
            k_t = p.select(k, index, family, name=f"{name}_k{h}_{t}")
            logits.append(moment(sp.Float(logit_scale) * q * k_t if logit_scale != 1 else q * k_t,
                                 name=f"{name}_l{h}_{t}"))
            values.append(p.select(u, index, family, name=f"{name}_v{h}_{t}"))
        o = _softmax_mix(p, f"{name}_o{h}", logits, values, mask)
        p.add_matrix(f"WO_{tag}", ovar / heads)
        head = _matmul(p, f"{name}_out{h}", f"WO_{tag}", o.name)
        out = head if out is None else out + head
    return out


def transformer_block(x: Var, name: str = "blk", heads: int = 1, wvar: float = 1.0,
                      bvar: float = 0.0, activation=None, query_key: str = "independent",
                      logit_scale: float = 1.0, mlp: bool = True, eps: float = 1e-5,
                      scaling: str = "1/n", norm: str = "pre", value: str = "separate",
                      causal: bool = False, lengths=None) -> Var:
    """Transformer block on the token family ``x``, pre-LN (``norm="pre"``, the default):

        x' = x + attn(LN(x)),        x'' = x' + W₂ φ(W₁ LN(x') + b₁) + b₂

    or post-LN (``norm="post"``, the original Transformer's):

        x' = LN(x + attn(x)),        x'' = LN(x' + W₂ φ(W₁ x' + b₁) + b₂)

    LN is :func:`tensorprog.nn.layer_norm` (no affine parameters), attn is
    :func:`self_attention`, ``φ`` defaults to ReLU, the MLP matrices ``W1_{name}``, ``W2_{name}``
    are n×n N(0, wvar/n) and the biases N(0, bvar) (none when ``bvar = 0``).  ``mlp=False``
    stops after the attention sub-layer.  ``value``, ``causal`` and ``lengths`` are those of
    :func:`self_attention`."""
    from ..ir.builder import relu

    if norm not in NORMS:
        raise ProgramError(f"norm must be one of {NORMS} (LayerNorm before or after each "
                           f"residual sub-layer), got {norm!r}")
    phi = activation or relu
    p = x.program
    pre = norm == "pre"
    y = layer_norm(x, eps).named(f"{name}_ln1") if pre else x
    x = (x + self_attention(y, heads=heads, name=f"{name}_attn", wvar=wvar,
                            query_key=query_key, logit_scale=logit_scale, scaling=scaling,
                            value=value, causal=causal, lengths=lengths)).named(f"{name}_res1")
    if not pre:
        x = layer_norm(x, eps).named(f"{name}_ln1")
    if not mlp:
        return x
    z = layer_norm(x, eps).named(f"{name}_ln2") if pre else x
    h = _matmul(p, f"{name}_h1", _new_matrix(p, f"W1_{name}", wvar), z.name)
    if bvar > 0:
        h = h + p.bias(f"b1_{name}", bvar)
    g = phi(h).named(f"{name}_act")
    m = _matmul(p, f"{name}_h2", _new_matrix(p, f"W2_{name}", wvar), g.name)
    if bvar > 0:
        m = m + p.bias(f"b2_{name}", bvar)
    x = (x + m).named(f"{name}_res2")
    return x if pre else layer_norm(x, eps).named(f"{name}_ln2")


# ---------------------------------------------------------------------- helpers
def _family_of(x: Var) -> str:
    families = {x.program.node(s.name).family for s in x.expr.free_symbols
                if x.program.node(s.name).is_vector} - {SHARED}
    if len(families) != 1:
        raise ProgramError(f"`{x.expr}` is not a vector of one token family")
    return families.pop()


def _new_matrix(p, name, var):
    p.add_matrix(name, var)
    return name


def _matmul(p, name: str, matrix: str, arg: str) -> Var:
    p.add_matmul(name, matrix, arg)
    return Var(p, sp.Symbol(name, real=True))


def _softmax_mix(p, name: str, logits: list, values: list, mask: list | None = None) -> Var:
    """NONLIN ``o = Σ_t m_t e^{ℓ_t} u⁽ᵗ⁾ / Σ_t m_t e^{ℓ_t}`` (pseudo-Lipschitz in u and ℓ jointly:
    the softmax weights are bounded and Lipschitz; ``m_t`` the 0/1 masks, all 1 by default)."""
    weights = [sp.exp(l.expr) * (1 if mask is None else mask[t].expr)
               for t, l in enumerate(logits)]
    num = sum((w * u.expr for w, u in zip(weights, values)), sp.S.Zero)
    return Var(p, num / sum(weights, sp.S.Zero)).named(name)
