r"""Training through the scalars of the forward pass: the MOMENT rules of the unrolled program
and of the finite-width trainer (``docs/training.md``, "Gradients through scalars").

A forward scalar ``θ = avg ψ(x¹…; θ'…) = (1/n) Σ_α ψ(x¹_α, …)`` (TP IIb Eq. 61), read by later
NONLINs ``y = φ(…; θ)``, is one more path from the parameters to the output.  With the backward
vectors of the unrolled program, ``dx = n^{(1+s)/2} ∂f/∂x`` (Θ(1) coordinates, :mod:`.unroll`),
write ``θ̄ = n^{-(1−s)/2} ∂f/∂θ``.  Then (the powers of n cancel for every s)::

    NONLIN  y = φ(x; θ):   θ̄  += avg(dy ⊙ ∂φ/∂θ)                       (a MOMENT)
    MOMENT  θ = avg ψ(x; θ'):  dxʳ += θ̄ · ∂ψ/∂xʳ,   θ̄' += θ̄ · avg(∂ψ/∂θ')   (a NONLIN⁺, a MOMENT)

so the backward pass stays a NETSOR⊤+ program.  The forward pass re-evaluates the MOMENT on
the new vectors (feature learning), or, in the kernel regime, carries its δ-scalar
``δθ = n^ρ (θ_t − θ_0) → avg(Σ_r ∂ψ/∂xʳ δxʳ + Σ_θ' ∂ψ/∂θ' δθ')`` (TP IIb Eq. 93 for a
MOMENT).  The finite-width trainer applies the same rules to the exact gradients
(``∂θ/∂x_α = ∂ψ/∂x_α / n``).
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from ..ir.program import symbol
from .structure import MomentStep, derivative


def reads(st) -> tuple:
    """The names ψ of a NONLIN or MOMENT step reads: its vectors, then its scalars.

    Parameters
    ----------
    st : NonlinStep or MomentStep

    Returns
    -------
    tuple of str
    """
    return tuple(st.args) + tuple(st.scalars)


def renamed(st, names: dict) -> dict:
    """The substitution sending every argument of ``st`` to the program variable ``names[a]``
    (the vector or scalar of the current step).

    Parameters
    ----------
    st : NonlinStep or MomentStep
    names : dict
        Network variable → its program variable at the step.

    Returns
    -------
    dict
        sympy symbol → sympy symbol, for ``expr.xreplace``.
    """
    return {symbol(a): symbol(names[a]) for a in reads(st)}


def linear_change(st, at: dict, delta: dict) -> sp.Expr:
    """``Σ_a ∂ψ/∂a · δa`` over the vectors and scalars of ``st`` with a δ (TP IIb Eq. 93):
    the derivatives at the initial variables ``at``, ``delta[a]`` the δ-variable of ``a`` or
    None where it is 0.

    Parameters
    ----------
    st : NonlinStep or MomentStep
    at, delta : dict
        Network variable → program variable (``delta``: or None).

    Returns
    -------
    sympy.Expr
        0 when no argument has a δ.
    """
    sub = renamed(st, at)
    return sp.Add(*[derivative(st.expr, a).xreplace(sub) * symbol(delta[a])
                    for a in reads(st) if delta.get(a) is not None])


# ---------------------------------------------------------------------- unrolled program
def pull_into_scalars(b, st, g: str, cur: dict, acc: dict) -> None:
    """Backward of a NONLIN's scalars: ``θ̄ += avg(dy ⊙ ∂φ/∂θ)`` with ``dy`` the program
    vector ``g`` (``acc`` gathers the terms of every variable's backward value).

    Parameters
    ----------
    b : the unrolled program's builder (:mod:`.unroll`; its ``avg`` writes MOMENTs).
    st : NonlinStep
    g : str
        The program vector ``dy`` of the step.
    cur : dict
        Network variable → program variable at the step.
    acc : dict
        Network variable → list of backward terms, updated in place.
    """
    sub = renamed(st, cur)
    for th in st.scalars:
        d = derivative(st.expr, th).xreplace(sub)
        if d != 0:
            acc.setdefault(th, []).append(b.avg(symbol(g) * d))


def pull_moment(b, st: MomentStep, cur: dict, acc: dict) -> None:
    """Backward of a MOMENT: ``dxʳ += θ̄ · ∂ψ/∂xʳ`` and ``θ̄' += θ̄ · avg(∂ψ/∂θ')``, with
    ``θ̄`` the sum of the terms gathered for it (nothing when none were).

    Parameters
    ----------
    b, cur, acc : as :func:`pull_into_scalars`.
    st : MomentStep
    """
    terms = acc.pop(st.name, None)
    if not terms:
        return
    bar, sub = sp.Add(*terms), renamed(st, cur)
    for a in st.args:
        d = derivative(st.expr, a).xreplace(sub)
        if d != 0:
            acc.setdefault(a, []).append(bar * d)
    for th in st.scalars:
        d = derivative(st.expr, th).xreplace(sub)
        if d != 0:
            acc.setdefault(th, []).append(bar * b.avg(d))


def moment_forward(b, st: MomentStep, t: int, cur0: dict, new: dict) -> str | None:
    """The MOMENT at step t: its δ-scalar in the kernel regime (None where 0), the MOMENT of
    the step's vectors with feature learning.

    Parameters
    ----------
    b : the unrolled program's builder (``b.linear``: the kernel regime).
    st : MomentStep
    t : int
        The step.
    cur0, new : dict
        Network variable → program variable at initialisation and at step t (kernel regime:
        its δ-variable, or None).

    Returns
    -------
    str or None
        The program scalar.
    """
    if b.linear:
        d = linear_change(st, cur0, new)
        return None if d == 0 else b.avg(d, f"d{st.name}_{t}").name
    if all(new[a] == cur0[a] for a in reads(st)):
        return cur0[st.name]
    return b.avg(st.expr.xreplace(renamed(st, new)), f"{st.name}_{t}").name


# ---------------------------------------------------------------------- finite width
def finite_pull(st, dpsi: list, vals: dict, g: np.ndarray, G: dict, n: int) -> None:
    """Push ``g = ∂L/∂(st)`` back to the arguments of a NONLIN or MOMENT step at width n.

    ``dpsi`` are the numeric derivatives of ψ in the order of :func:`reads`, ``vals`` the
    forward values ((S, B, n) vectors, (S, B, 1) scalars), ``G`` the gradients gathered so
    far.  A NONLIN gives ``∂L/∂x_α = g_α ∂φ/∂x_α`` and ``∂L/∂θ = Σ_α g_α ∂φ/∂θ``; a MOMENT
    (``g`` of shape (S, B, 1)) the same with ψ and the factor 1/n of the average.

    Parameters
    ----------
    st : NonlinStep or MomentStep
    dpsi : list of callables
    vals : dict
    g : np.ndarray
    G : dict
        Updated in place.
    n : int
        The width.
    """
    scale = 1.0 / n if isinstance(st, MomentStep) else 1.0
    args = [vals[a] for a in reads(st)]
    shape = g.shape[:2] + (n,)
    for a, d in zip(reads(st), dpsi):
        part = np.broadcast_to(d(*args) * g * scale, shape)
        if a in st.args:
            G[a] = G.get(a, 0) + part
        else:
            G[a] = G.get(a, 0) + part.sum(axis=-1, keepdims=True)


def finite_moment(psi, st: MomentStep, vals: dict) -> np.ndarray:
    """The MOMENT's value ``(1/n) Σ_α ψ`` for every seed and input.

    Parameters
    ----------
    psi : callable
        ψ of the arguments in the order of :func:`reads`.
    st : MomentStep
    vals : dict
        Forward values, (S, N, n) vectors and (S, N, 1) scalars.

    Returns
    -------
    np.ndarray
        (S, N, 1), or (S, 1, 1) when every argument is shared.
    """
    args = [vals[a] for a in reads(st)]
    out = np.broadcast_to(psi(*args), np.broadcast_shapes(*[x.shape for x in args]))
    return out.mean(axis=-1, keepdims=True)
