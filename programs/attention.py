"""Transformer: self-attention blocks over sequences, mean-pooled readout.

Inputs X of shape (N, T, d): N sequences of T tokens.  The tokens form one family of N·T vectors
(member i·T + t is token t of sequence i, owned by input i), and every line below is one
instruction over the whole family:

    x⁰_{it} = U x_{it} + b,        U_ij ~ N(0, wvar/d),  b_i ~ N(0, bvar)
    for each block l = 1 … blocks (pre-LN):
        y = LN(x)                                          LN(x) = (x − avg x)/√(avg x² − (avg x)² + eps)
        q^h = W_Q^h y,  k^h = W_K^h y,  u^h = W_V^h y      (h = 1 … heads; N(0, wvar/n))
        ℓ^h_{st} = β avg(q^h_s ⊙ k^h_t)                    (MOMENT: scaling 1/n, β = logit_scale)
        o^h_s = Σ_t softmax_t(ℓ^h_{s·}) u^h_t               (NONLIN of T SELECTs and T scalars)
        x ← x + Σ_h W_O^h o^h                               (W_O^h ~ N(0, wvar/(heads·n)))
        x ← x + W₂ φ(W₁ LN(x) + b₁) + b₂                    (if mlp; N(0, wvar/n), b ~ N(0, bvar))
    f(X_i) = v · (1/T) Σ_t LN(x)_{it} / √n + b_out,        v_α ~ N(0, wvar), b_out ~ N(0, bvar)

(``readout="first"``: the first token instead of the mean; ``final_ln=False``: no last LN.)
NTK parametrization (every parameter N(0, 1) times σ/√fan_in), every parameter trained.  The
multi-head sum with W_O^h of variance wvar/heads is the usual ``W_O·concat(heads)`` with head
dimension n.

``norm="post"``: the original Transformer's post-LN blocks, ``x ← LN(x + attn(x))``,
``x ← LN(x + W₂ φ(W₁ x + b₁) + b₂)``.  ``value="tied"``: W_V = W_Q (with ``query_key="shared"``
one matrix for query, key and value).  ``causal=True``: token s attends to tokens t ≤ s.
``lengths`` (N integers ≤ T): sequence i has ``lengths[i]`` real tokens, then padding that is
never attended to and left out of the mean readout (masks as exact 0/1 scalars,
:mod:`tensorprog.nn.masking`).

``query_key``: ``"independent"`` (standard W_Q, W_K: the limit logits are 0, attention is uniform
at initialisation), ``"shared"`` (W_Q = W_K: ``ℓ̊_st = β·wvar·E[Z^{y_s} Z^{y_t}]``) or
``"identity"`` (``ℓ_st = β avg(y_s ⊙ y_t)``).  ``scaling="1/sqrt(n)"`` raises a ProgramError: the
q·k/√n logits have no deterministic limit (see :mod:`tensorprog.nn.attention`).
"""
from __future__ import annotations

import tensorprog as tp
from tensorprog.nn.sizes import count
from tensorprog.nn import activation as activation_named
from tensorprog.nn import layer_norm
from tensorprog.nn.attention import embed_tokens, pool_tokens, transformer_block

#: The command line's default inputs: 4 sequences of 3 tokens in R^8.
DEFAULT_INPUT_SHAPE = (4, 3, 8)


def build(X, heads: int = 1, blocks: int = 1, wvar: float = 1.0, bvar: float = 0.0,
          activation: str = "relu", query_key: str = "independent", logit_scale: float = 1.0,
          mlp: bool = True, readout: str = "mean", final_ln: bool = True, eps: float = 1e-5,
          scaling: str = "1/n", norm: str = "pre", value: str = "separate", causal: bool = False,
          lengths=None) -> tp.Program:
    """Transformer with ``blocks`` blocks (``norm="pre"`` or ``"post"``-LN) of ``heads``-head
    attention on ``X`` (N, T, d); ``value``, ``causal``, ``lengths`` as in
    :func:`tensorprog.nn.attention.self_attention`."""
    phi = activation_named(activation)
    blocks = count(blocks, "blocks")
    p = tp.Program("attention")
    x = embed_tokens(p, X, var=wvar, bias_var=bvar, name="x0")
    for l in range(1, blocks + 1):
        x = transformer_block(x, name=f"b{l}", heads=heads, wvar=wvar, bvar=bvar,
                              activation=phi, query_key=query_key,
                              logit_scale=logit_scale, mlp=mlp, eps=eps, scaling=scaling,
                              norm=norm, value=value, causal=causal, lengths=lengths)
    if final_ln:
        x = layer_norm(x, eps).named("ln_f")
    p.output(pool_tokens(x, readout, name="pooled", lengths=lengths), var=wvar, bias_var=bvar)
    return p
