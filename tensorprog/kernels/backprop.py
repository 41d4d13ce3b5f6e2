"""Backpropagation written inside the program (TP IIb §4, Def. 4.2 and App. D.1).

:func:`backward_program` appends the backward pass of a network program to a copy of it, as
NETSOR⊤+ instructions, with *scaled* gradients ``dx = √n ∂f/∂x`` (so that every ``dx`` has
Θ(1) coordinates):

* readout ``f = v·x/√n``: ``dx += v`` with ``v`` an initial vector N(0, σ_v²); with P readout
  slots, ``v`` is a family of P independent vectors and ``dx_a += v_{slot(a)}/√P`` (a SELECT);
* NONLIN ``y = ψ(x¹…; θ…)``: ``dxʳ += dy ⊙ ∂ψ/∂xʳ`` (a NONLIN) and, for each scalar,
  ``dθ += avg(dy ⊙ ∂ψ/∂θ)`` (a MOMENT);
* MOMENT ``θ = avg ψ(x¹…; θ'…)``: ``dxʳ += dθ · ∂ψ/∂xʳ`` and ``dθ' += dθ · avg(∂ψ/∂θ')``
  (``∂θ/∂x_α = ψ'_α/n``, so the scaled gradients stay Θ(1));
* MATMUL ``g = W h``: ``dh += Wᵀ dg``; ``g = Wᵀ h``: ``dh += W dg``;
* SELECT ``x' = x[index]``: ``dx_k += Σ_{j: index[j] = k} dx'_j``, written as a few SELECTs of
  ``dx'`` back into the family of ``x`` (one per multiplicity) and their sum.

A gradient lives in the family of its vector; the gradient of a shared vector (a bias) lives in
the family of the vectors that use it, and kernels sum it over the members each input owns.

The result is an ordinary program: the Master-Theorem evaluator then gives every ``Z^{dx}``,
including the ZDOT terms of the backward MATMULs (which vanish when the forward pass passes the
gradient-independence check, and do not otherwise, e.g. ``Wᵀφ(Wx)``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

import numpy as np

from ..ir.program import SHARED, Family, Program, symbol
from .lift import lift_cross_input


@dataclass
class Backward:
    """A program with its backward pass.  ``grad[x]`` names the variable holding ``dx``;
    ``network`` is the forward program the pass differentiates (the user's program, or its
    lift when inputs interact, see :mod:`.lift`), ``program`` that program plus the pass."""

    program: Program
    readout_vector: str
    network: Program
    grad: dict[str, str] = field(default_factory=dict)


def backward_program(p: Program) -> Backward:
    """Append the backward pass of ``p`` (which must have an output) to a copy of ``p``."""
    p = lift_cross_input(p)
    r = p.require_output()
    q = p.copy()
    v = q.fresh_name("v_out")
    if r.slots is None:
        q.add_vector(v, r.var, source="readout")
        seed = symbol(v)
    else:
        P = r.num_slots
        q.families[v] = Family(v, P, None)
        q.add_vector(v, r.var * np.eye(P), source="readout", family=v)
        sel = q.fresh_name("v_slot")
        q.add_select(sel, v, np.asarray(r.slots), q.node(r.node).family)
        seed = symbol(sel) / sp.sqrt(P)
    out = Backward(q, v, p)
    vec_terms: dict[str, list[sp.Expr]] = {r.node: [seed]}
    sca_terms: dict[str, list[sp.Expr]] = {}

    def gradient(name: str) -> str | None:
        """Materialise ``d name`` as one variable (None when ``name`` does not reach f)."""
        if name in out.grad:
            return out.grad[name]
        terms = vec_terms.get(name)
        if not terms:
            return None
        total = sp.Add(*terms)
        if total.is_zero:
            return None
        if isinstance(total, sp.Symbol):
            out.grad[name] = total.name
        else:
            gname = q.fresh_name(f"d_{name}_")
            q.add_inferred("nonlin", gname, total)
            out.grad[name] = gname
        return out.grad[name]

    def scalar_gradient(name: str) -> sp.Expr | None:
        terms = sca_terms.get(name)
        if not terms:
            return None
        total = sp.Add(*terms)
        return None if total.is_zero else total

    def chain(a: dict, inside, outside) -> None:
        """Push a gradient through ψ: ``dx += outside·inside·∂ψ/∂x`` for its vectors and
        ``dθ += outside·avg(inside·∂ψ/∂θ)`` for its scalars (a NONLIN: inside = dy, outside = 1;
        a MOMENT: inside = 1, outside = dθ)."""
        for x in a["args"]:
            part = sp.diff(a["expr"], symbol(x))
            if not part.is_zero:
                vec_terms.setdefault(x, []).append(outside * inside * part)
        for s in a["scalars"]:
            part = sp.diff(a["expr"], symbol(s))
            if not part.is_zero:
                m = q.fresh_name(f"d_{s}_")
                q.add_inferred("moment", m, inside * part)
                sca_terms.setdefault(s, []).append(outside * symbol(m))

    for node in reversed(p.nodes()):
        a, name = node.attrs, node.name
        if node.kind == "matmul":
            dg = gradient(name)
            if dg is None:
                continue
            h = q.fresh_name(f"d_{a['args'][0]}_")
            q.add_matmul(h, a["matrix"], dg, transpose=not a["transpose"])
            vec_terms.setdefault(a["args"][0], []).append(symbol(h))
        elif node.kind == "select":
            dy = gradient(name)
            if dy is None:
                continue
            x = a["args"][0]
            for index in _scatter(a["index"], p.node(x).family == SHARED,
                                  p.family_size(p.node(x).family)):
                target = node.family if p.node(x).family == SHARED else p.node(x).family
                if q.node(dy).family == SHARED:  # the same gradient for every member
                    index = np.minimum(index, 0)
                sel = q.fresh_name(f"d_{x}_")
                q.add_select(sel, dy, index, target)
                vec_terms.setdefault(x, []).append(symbol(sel))
        elif node.kind == "nonlin":
            dy = gradient(name)
            if dy is not None:
                chain(a, symbol(dy), sp.S.One)
        elif node.kind == "moment":
            dth = scalar_gradient(name)
            if dth is not None:
                chain(a, sp.S.One, dth)
        elif node.kind == "vector":
            gradient(name)
    return out


def _scatter(index: np.ndarray, shared: bool, size: int) -> list[np.ndarray]:
    """Index arrays whose SELECTs, summed, scatter-add a family back through ``index``.

    For a shared source the gradient stays in the selecting family (masked where the select
    read nothing); otherwise the r-th array picks, for each target member k, the r-th member j
    with ``index[j] = k`` (or -1).
    """
    valid = index >= 0
    if shared:
        return [np.where(valid, np.arange(len(index)), -1)]
    js = np.flatnonzero(valid)
    ks = index[js]
    order = np.argsort(ks, kind="stable")
    js, ks = js[order], ks[order]
    first = np.searchsorted(ks, ks, side="left")
    rank = np.arange(len(ks)) - first
    out = []
    for r in range(int(rank.max()) + 1 if len(rank) else 0):
        sel = np.full(size, -1, dtype=np.intp)
        sel[ks[rank == r]] = js[rank == r]
        out.append(sel)
    return out
