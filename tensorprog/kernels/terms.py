"""The NTK of a network program as a sum of products of inner products of its vectors.

With the scaled gradients ``dy = √n ∂f/∂y`` of the backward program (:mod:`.backprop`), the
gradient of f with respect to each normalised parameter is an outer product of two vectors of
the program, so every share ``⟨∂f(ξ_i)/∂w, ∂f(ξ_j)/∂w⟩`` is a product of inner products
``G(a, b)_ij = a(ξ_i)·b(ξ_j)/n`` (TP IIb Eqs. 97–100, D.4.1):

* matrix ``W`` (entries ``σ_W w/√n``) used as ``g = W h`` (``∂f/∂w = σ_W dg ⊗ h / n``) and as
  ``z = Wᵀ u`` (``∂f/∂w = σ_W u ⊗ dz / n``): with (L, R) = (dg, h) resp. (u, dz) per use,
  ``Θ_W = σ_W² Σ_{r,s} G(Lʳ, Lˢ) ∘ G(Rʳ, Rˢ)``; for a generated matrix the tangent kernel of its
  entries takes the place of σ_W²;
* input layer ``h = Uξ + b``, embeddings a, b sharing (U, b):
  ``Θ_U = Σ_{a,b} (σ_U² ξ_aᵀξ_b/d + σ_b²) ∘ G(dh_a, dh_b)``; a trainable initial vector family
  likewise with its covariance (or its given tangent kernel);
* trainable shared vector (bias, ``σ β``): ``Θ_b = σ² G(db, db)``;
* readout ``v = σ_v ν``, ``b_out = σ_b β``: ``Θ_v = σ_v² G(x, x) + σ_b²`` (with P readout
  slots, ``σ_v²/P Σ_{same slot} G(x_a, x_b) + σ_b²``).

The same terms give the infinite-width NTK with ``G(a, b) → E[Z^a Z^b]``
(:func:`tensorprog.kernels.ntk.ntk_contributions`) and the exact finite-width NTK with the
empirical ``G`` (:mod:`tensorprog.backends.kernels`).  A term lives on the members of two
families and is summed over the members each input owns (``Oₐᵀ Θ O_b``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir.instructions import SHARED, Embedding
from ..ir.program import INPUTS, Program
from ..limit.numbers import limit_number


@dataclass(frozen=True)
class Term:
    """``scale · K · Π_k G(a_k, b_k) + const``, one summand of a parameter's NTK share, over the
    members of ``families``.  ``scale`` is a number or an array over those members;
    ``tangent_pair``, when given, names the initial vectors (a, b) whose tangent kernel ``K``
    multiplies."""

    param: str
    scale: object
    factors: tuple[tuple[str, str], ...]
    families: tuple[str, str]
    const: float = 0.0
    tangent_pair: tuple[str, str] | None = None


def member_family(q: Program, vector: str, grad: str) -> str:
    """The family indexing ``∂f/∂param`` through ``vector``: the vector's own family, or, for a
    shared vector (a bias), the family its gradient lives in."""
    family = q.node(vector).family
    return q.node(grad).family if family == SHARED else family


def parameter_groups(p: Program, among=None) -> tuple[list, dict[str, list[str]]]:
    """The trainable initial vectors of ``p`` (those in ``among`` when given) as NTK
    parameters: the shared ones (biases, each its own parameter of variance ``var``) and
    ``{parameter: [member vectors]}`` for families (embeddings grouped by the weight they
    share, other families on their own)."""
    shared, groups = [], {}
    for node in p.nodes("vector"):
        if not node.trainable or (among is not None and node.name not in among):
            continue
        if isinstance(node, Embedding):
            groups.setdefault(node.weight, []).append(node.name)
        elif node.family == SHARED:
            shared.append(node)
        else:
            groups.setdefault(node.name, []).append(node.name)
    return shared, groups


def ntk_terms(backward) -> list[Term]:
    """Every summand of the NTK of the network ``backward.network`` (see module docstring);
    parameters whose gradient does not reach the output contribute nothing."""
    p, q, grad = backward.network, backward.program, backward.grad
    r = p.require_output()
    terms: list[Term] = []
    for W in p.trained_matrices():
        uses = []
        for g in p.matmuls_of(W.name):
            arg, dg = g.arg, grad.get(g.name)
            if dg is None:
                continue
            fam = member_family(q, g.name, dg)
            # g = W h: ∂f/∂W = dg ⊗ h;  z = Wᵀ u: ∂f/∂W = u ⊗ dz
            uses.append((arg, dg, fam) if g.transpose else (dg, arg, fam))
        weight = W.tangent if W.generated else W.var
        for L1, R1, f1 in uses:
            for L2, R2, f2 in uses:
                terms.append(Term(W.name, weight, ((L1, L2), (R1, R2)), (f1, f2)))
    shared, groups = parameter_groups(p, among=grad)
    for node in shared:
        db = grad[node.name]
        fam = member_family(q, node.name, db)
        terms.append(Term(node.name, node.var, ((db, db),), (fam, fam)))
    for key, members in groups.items():
        for a in members:
            for b in members:
                terms.append(Term(key, 1.0, ((grad[a], grad[b]),),
                                  (p.node(a).family, p.node(b).family), tangent_pair=(a, b)))
    if r.trainable:
        terms.append(readout_term(p))
    return terms


def readout_term(p: Program) -> Term:
    """``σ_v² G(x, x) + σ_b²``: the readout's NTK share, and the NNGP (its limit) or the
    per-seed NNGP sample (at finite width: the kernel of f given the body)."""
    r = p.require_output()
    family = p.node(r.node).family
    scale = r.var
    if r.slots is not None:
        slots = np.asarray(r.slots)
        scale = r.var * (slots[:, None] == slots[None, :]) / r.num_slots
    return Term("readout", scale, ((r.node, r.node),), (family, family), r.bias_var)


def evaluate_term(term: Term, lim):
    """``term`` in the limit ``lim``, ``G(a, b) = E[Z^a Z^b]``: an (N, N) array."""
    value = limit_number(term.scale, lim.symbolic)
    if term.tangent_pair is not None:
        value = value * lim.tangent(*term.tangent_pair)
    for a, b in term.factors:
        value = value * lim.cov(a, b)
    return to_inputs(lim.program, value, *term.families) + limit_number(term.const, lim.symbolic)


def parameter_weight(lim, W):
    """σ_W² of an ordinary matrix; the tangent kernel of a generated one's entries."""
    return limit_number(W.tangent, lim.symbolic) if W.generated else lim.matrix_var(W.name)


def to_inputs(program: Program, value, family_a: str, family_b: str):
    """Sum a (family_a × family_b) array over the members each input owns: an (N, N) array."""
    sizes = (program.family_size(family_a), program.family_size(family_b))
    value = np.broadcast_to(value, sizes)
    if family_a == family_b == INPUTS:
        return value
    Oa, Ob = program.owner_matrix(family_a), program.owner_matrix(family_b)
    if value.dtype == object:
        Oa, Ob = Oa.astype(int).astype(object), Ob.astype(int).astype(object)
    return Oa.T @ value @ Ob
