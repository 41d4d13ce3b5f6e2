"""Weight-tied autoencoder: one matrix used with its transpose in the forward pass
(TP IIb §3.2 and D.4.2), so the ZDOT term is non-zero already at initialization.

    x(ξ) = U ξ + b,              U_ij ~ N(0, uvar/d), b_i ~ N(0, bvar)     (the n-dim code input)
    y = W x,                     W_ij ~ N(0, wvar/n)                       (encoder)
    z = Wᵀ φ(y)                  (tied decoder;  ``tied=False``: z = W₂ φ(y), W₂ an independent
                                 copy of W — the gradient-independence answer)
    f(ξ) = v·φ(z)/√n + b_out,     v_i ~ N(0, vvar), b_out ~ N(0, bvar)

NTK parametrization, every parameter trained; φ = erf by default (tanh, relu available).

**Limit (TP IIb Def. B.3, ZDOT).**  ``Z^y = Ẑ^{Wx}``, Gaussian with covariance
``K¹ = wvar K⁰`` where ``K⁰ = uvar ξᵀξ'/d + bvar``; the decoder is

    Z^z = Ẑ^{Wᵀφ(y)} + wvar E[φ'(Z^y)] Z^x,

the second term (ZDOT) coming from W being the same matrix as in y = W x.  Hence, with
``m_i = E[φ'(Z^{y(ξ_i)})]`` (for erf ``m_i = (2/√π)/√(1 + 2K¹_ii)``),

    E[Z^z Z^z'] = wvar E[φ(u)φ(u')] + wvar² m_i m_j K⁰_ij         (u ~ N(0, K¹))
    NNGP       = vvar E[φ(s)φ(s')] + bvar,   s ~ N(0, E[Z^z Z^z'])

whereas the untied network (``tied=False``) has only the first term.  The NTK also carries
ZDOT terms, in the backward pass (the backward MATMULs by W and Wᵀ of the tied matrix) and in
the cross terms between W's two uses; ``tp.ntk(p)`` (backprop) includes them and is checked
against the exact finite-width NTK of ``tp.simulate``.  The path-sum NTK (Prop. D.3) assumes no
matrix is used with its transpose and raises ``LimitError`` for the tied program.
"""
from __future__ import annotations

import tensorprog as tp

ACTIVATIONS = {"erf": tp.erf, "tanh": tp.tanh, "relu": tp.relu}


def build(X, wvar: float = 1.5, uvar: float = 1.0, bvar: float = 0.1, vvar: float = 1.0,
          activation: str = "erf", tied: bool = True) -> tp.Program:
    """``f = v·φ(Wᵀφ(W x))/√n`` on the input layer ``x = Uξ + b`` (``tied=False``: W₂
    in place of Wᵀ)."""
    if activation not in ACTIVATIONS:
        raise tp.ProgramError(f"unknown activation {activation!r}; choose from "
                              f"{sorted(ACTIVATIONS)}")
    phi = ACTIVATIONS[activation]
    p = tp.Program("autoencoder" if tied else "autoencoder-untied")
    x = p.embed(X, var=uvar, bias_var=bvar, name="x")
    W = p.matrix("W", var=wvar)
    y = W @ x
    decoder = W.T if tied else p.matrix("W2", var=wvar)
    z = decoder @ phi(y)
    p.output(phi(z), var=vvar, bias_var=bvar)
    return p
