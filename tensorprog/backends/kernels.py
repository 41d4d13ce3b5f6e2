"""The exact finite-width NNGP sample, NTK and output of a network program (DESIGN §3, §5).

The network is ``f(ξ) = v·x(ξ)/√n + b_out`` in NTK parametrization (every trainable tensor is
N(0, 1) times ``σ/√fan_in``).  With the scaled gradients ``dy = √n ∂f/∂y`` that the backward
program computes exactly at any width (:func:`tensorprog.kernels.backward_program`), the
gradient of f with respect to each normalised parameter is an outer product of two vectors of
the program, so every NTK contribution ``⟨∂f(ξ_i)/∂w, ∂f(ξ_j)/∂w⟩`` is a product of empirical
inner products ``G(a, b)_ij = a(ξ_i)·b(ξ_j)/n`` and never needs an n×n gradient:

* matrix ``W`` (entries ``σ_W w/√n``) used as ``g = W h`` (``∂f/∂w = σ_W dg ⊗ h / n``) and as
  ``z = Wᵀ u`` (``∂f/∂w = σ_W u ⊗ dz / n``): with (L, R) = (dg, h) resp. (u, dz) per use,
  ``Θ_W = σ_W² Σ_{r,s} G(Lʳ, Lˢ) ∘ G(Rʳ, Rˢ)``  (TP IIb Eqs. 97–100 at finite n); for a
  generated matrix the tangent kernel ``T_ij`` of its entries takes the place of σ_W²;
* input layer ``h = Uξ + b`` (``U = σ_U u/√d``, ``b = σ_b β``), embeddings a, b sharing it:
  ``Θ_U = Σ_{a,b} (σ_U² ξ_aᵀξ_b/d + σ_b²) ∘ G(dh_a, dh_b)``; a trainable initial vector family
  with covariance K⁰ likewise ``K⁰ ∘ G(dx, dx)`` (exact for any factorisation of K⁰);
* trainable shared vector (bias, ``σ β``): ``Θ_b = σ² G(db, db)``;
* readout ``v = σ_v ν``, ``b_out = σ_b β``: ``Θ_v = σ_v² G(x, x) + σ_b²``.

The last is also the per-seed NNGP sample: the kernel of f *conditional on the body* (the
covariance of f over the readout layer's randomness with everything else fixed), whose seed
average is the finite-width NNGP ``E[f(ξ_i) f(ξ_j)]`` exactly.  These are the limit formulas of
:mod:`tensorprog.kernels.ntk` with empirical moments ``(1/n)Σ_α`` in place of expectations.

A gradient lives in the family of its vector (members owned by inputs, e.g. the pixels of an
image); a share computed between families A and B is summed over the members each input owns,
``Oₐᵀ Θ O_b`` with the owner matrices of :meth:`~tensorprog.ir.program.Program.owner_matrix`
(the gradient of f(ξ_i) with respect to a parameter is the sum over the members ξ_i owns).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir.program import INPUTS, SHARED, Program


@dataclass(frozen=True)
class Term:
    """``coef · Π_k G(a_k, b_k)`` (+ ``const``), one summand of a parameter's NTK share: an
    array over the members of ``families`` (summed to inputs × inputs by the owner matrices).

    ``coef`` is a number or an array (the input-layer kernel ``K⁰``).
    """

    param: str
    coef: object
    factors: tuple[tuple[str, str], ...]
    families: tuple[str, str]
    const: float = 0.0


def member_family(q: Program, vector: str, grad: str) -> str:
    """The family indexing ``∂f/∂param`` through ``vector``: the vector's own family, or, for a
    shared vector (a bias), the family its gradient lives in.  (A gradient computed as a shared
    vector — the same for every member — is broadcast over the vector's family.)"""
    family = q.node(vector).family
    return q.node(grad).family if family == SHARED else family


def ntk_terms(p: Program, backward) -> list[Term]:
    """Every summand of the finite-width NTK of ``p`` (see the module docstring).

    ``backward`` is :func:`tensorprog.kernels.backward_program` of ``p``; parameters whose
    gradient does not reach the output contribute nothing.
    """
    r = p.require_output()
    q, grad = backward.program, backward.grad
    terms: list[Term] = []
    for W in p.trained_matrices():
        uses = []
        for g in p.matmuls_of(W.name):
            arg, dg = g.attrs["args"][0], grad.get(g.name)
            if dg is None:
                continue
            fam = member_family(q, g.name, dg)
            # g = W h: ∂f/∂W = dg ⊗ h;  z = Wᵀ u: ∂f/∂W = u ⊗ dz
            uses.append((arg, dg, fam) if g.attrs["transpose"] else (dg, arg, fam))
        # a generated matrix's entries have the tangent kernel T_ij in place of σ_W²
        weight = W.attrs["tangent"] if "tangent" in W.attrs else W.attrs["var"]
        for L1, R1, f1 in uses:
            for L2, R2, f2 in uses:
                terms.append(Term(W.name, weight, ((L1, L2), (R1, R2)), (f1, f2)))
    groups: dict[str, list[str]] = {}
    for node in p.nodes("vector"):
        if not node.attrs["trainable"] or node.name not in grad:
            continue
        if node.attrs["source"] == "embed":
            groups.setdefault(node.attrs["weight"], []).append(node.name)
        elif node.family == SHARED:
            db = grad[node.name]
            fam = member_family(q, node.name, db)
            terms.append(Term(node.name, node.attrs["var"], ((db, db),), (fam, fam)))
        else:
            groups.setdefault(node.name, []).append(node.name)
    for key, members in groups.items():
        for a in members:
            for b in members:
                terms.append(Term(key, np.asarray(p.tangent_of(a, b)), ((grad[a], grad[b]),),
                                  (p.node(a).family, p.node(b).family)))
    if r.trainable:
        terms.append(readout_term(p))
    return terms


def readout_term(p: Program) -> Term:
    """``σ_v² G(x, x) + σ_b²``: the readout's NTK share and the per-seed NNGP sample."""
    r = p.require_output()
    return Term("readout", r.var, ((r.node, r.node),), (INPUTS, INPUTS), r.bias_var)


class Grams:
    """Memoised empirical inner products ``G(a, b) = aᵀb / n`` over the width axis, (S, m_a, m_b)."""

    def __init__(self, values: dict, width: int, xp):
        self.values, self.n, self.xp = values, width, xp
        self._cache: dict = {}

    def __call__(self, a: str, b: str):
        if (a, b) in self._cache:
            return self._cache[(a, b)]
        if (b, a) in self._cache:
            return self._cache[(b, a)].transpose(0, 2, 1)
        G = self.xp.matmul(self.values[a].transpose(0, 2, 1), self.values[b]) / self.n
        self._cache[(a, b)] = G
        return G


def evaluate_terms(terms: list[Term], p: Program, grams: Grams, seeds: int, xp, dtype) -> dict:
    """``{param: (S, N, N)}``: the sum of each parameter's terms on one chunk of seeds."""
    N = p.num_inputs
    owners: dict = {}

    def owner(family):
        if family not in owners:
            owners[family] = xp.asarray(p.owner_matrix(family), dtype=dtype)
        return owners[family]

    out: dict = {}
    for t in terms:
        value = xp.asarray(t.coef, dtype=dtype)
        for a, b in t.factors:
            value = value * grams(a, b)
        fa, fb = t.families
        value = xp.broadcast_to(value, (seeds, p.family_size(fa), p.family_size(fb)))
        if (fa, fb) != (INPUTS, INPUTS):
            value = xp.matmul(xp.matmul(owner(fa).T, value), owner(fb))
        value = value + t.const
        out[t.param] = out[t.param] + value if t.param in out else value
    return out


def network_outputs(p: Program, values: dict, readout_vector: str, readout_bias, width: int, xp):
    """``f(ξ_i) = v·x(ξ_i)/√n + b_out`` for every seed: (S, N)."""
    r = p.require_output()
    v, x = values[readout_vector], values[r.node]
    f = (v * x).sum(axis=1) / np.sqrt(width)
    return f + xp.asarray(readout_bias, dtype=f.dtype)[:, None]
