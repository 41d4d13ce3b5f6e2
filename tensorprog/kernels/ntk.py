"""NNGP kernel and NTK of a network program in the infinite-width limit.

The network is ``f(ξ) = v·x(ξ)/√n + b`` with ``x`` the program's readout vector (DESIGN §3,
TP IIb Def. 4.2), in NTK parametrization.

* NNGP: ``K(ξ_i, ξ_j) = σ_v² E[Z^{x}(ξ_i) Z^{x}(ξ_j)] + σ_b²``.
* NTK by backprop (TP IIb Eqs. 97–100 with D.4.1 for the input and output layers): the backward
  pass is written into the program (:mod:`.backprop`) and every parameter contributes
  - a matrix ``W`` with uses ``g = W h`` and ``z = Wᵀ u``:
    ``σ_W² Σ_{r,s} E[Z^{Lʳ}Z^{Lˢ}] E[Z^{Rʳ}Z^{Rˢ}]`` over uses with (L, R) = (dg, h) or (u, dz);
  - an input layer ``h = Uξ + b`` (embeddings sharing U summed pairwise):
    ``(σ_U² ξ_iᵀξ_j/d + σ_b²) E[Z^{dh}(ξ_i) Z^{dh}(ξ_j)]``;
  - a trainable shared vector (bias) of variance σ²: ``σ² E[Z^{db} Z^{db}]``;
  - the readout: ``σ_v² E[Z^x Z^x] + σ_b²``.
* NTK by path sums (TP IIb Prop. D.3): :mod:`.paths`.
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from ..ir.program import Program
from ..limit.evaluator import Limit
from .backprop import backward_program


def _to_output(array: np.ndarray, symbolic: bool):
    return sp.Matrix(array) if symbolic else np.asarray(array, dtype=float)


def nngp(program: Program, symbolic: bool = False, tier: str = "auto"):
    """Infinite-width NNGP kernel of ``program``'s output on its N inputs: an (N, N) array
    (a sympy Matrix in the Gram entries ``G_i_j = ξ_iᵀξ_j`` with ``symbolic=True``)."""
    r = program.require_output()
    lim = Limit(program, symbolic=symbolic, tier=tier)
    return _to_output(_readout_kernel(lim, r, symbolic), symbolic)


def _readout_kernel(lim: Limit, r, symbolic: bool):
    """``σ_v² E[Z^x Z^x] + σ_b²``; with slots ``σ_v²/P Σ_{same slot} E[Z^{x_a} Z^{x_b}] + σ_b²``."""
    c = (lambda x: sp.Float(x)) if symbolic else float
    cov = lim.cov(r.node)
    if r.slots is not None:
        slots = np.asarray(r.slots)
        same = (slots[:, None] == slots[None, :]) / r.num_slots
        family = lim.program.node(r.node).family
        cov = to_inputs(lim.program, cov * same, family, family)
    return c(r.var) * cov + c(r.bias_var)


def ntk(program: Program, method: str = "backprop", symbolic: bool = False,
        contributions: bool = False, tier: str = "auto"):
    """Infinite-width NTK of ``program`` (every trainable parameter, NTK parametrization).

    ``method`` is ``"backprop"`` (the backward pass written in the program) or ``"paths"``
    (path sums, TP IIb Prop. D.3).  With ``contributions=True`` returns ``(Θ, parts)`` where
    ``parts`` maps each parameter (and, for paths, each ``(parameter, matrix sequence)`` path
    class) to its (N, N) share of Θ.
    """
    if method == "backprop":
        parts = ntk_contributions(program, symbolic=symbolic, tier=tier)
    elif method == "paths":
        from .paths import path_contributions

        parts = path_contributions(program, symbolic=symbolic, tier=tier)
    else:
        raise ValueError(f"method must be 'backprop' or 'paths', got {method!r}")
    total = sum(parts.values())
    total = _to_output(total, symbolic)
    if contributions:
        return total, {k: _to_output(v, symbolic) for k, v in parts.items()}
    return total


def ntk_contributions(program: Program, symbolic: bool = False, tier: str = "auto") -> dict:
    """Per-parameter NTK contributions by backprop-in-the-program (see module docstring)."""
    r = program.require_output()
    bw = backward_program(program)
    q = bw.program
    lim = Limit(q, symbolic=symbolic, tier=tier)
    c = (lambda x: sp.Float(x)) if symbolic else float
    parts: dict[str, np.ndarray] = {}

    def add(key, value, side_a, side_b):
        """Add a (family × family) array, summed over the members each input owns; the
        families are those of the vectors on each side (shared ones broadcast)."""
        value = to_inputs(q, value, _family(q, side_a), _family(q, side_b))
        parts[key] = parts[key] + value if key in parts else value

    for W in program.trained_matrices():
        uses = []
        for g in program.matmuls_of(W.name):
            h = g.attrs["args"][0]
            dg = bw.grad.get(g.name)
            if dg is None:
                continue
            # g = Wh: ∂f/∂W = dg ⊗ h;  z = Wᵀu: ∂f/∂W = u ⊗ dz
            uses.append((h, dg) if g.attrs["transpose"] else (dg, h))
        weight = parameter_weight(lim, W)
        for L1, R1 in uses:
            for L2, R2 in uses:
                add(W.name, weight * lim.cov(L1, L2) * lim.cov(R1, R2), (L1, R1), (L2, R2))
    embeds: dict[str, list[str]] = {}
    for node in program.nodes("vector"):
        if not node.attrs["trainable"] or node.name not in bw.grad:
            continue
        dv = bw.grad[node.name]
        if node.attrs["source"] == "embed":
            embeds.setdefault(node.attrs["weight"], []).append(node.name)
        elif node.family == "shared":
            add(node.name, c(node.attrs["var"]) * lim.cov(dv), (dv,), (dv,))
        else:
            embeds.setdefault(node.name, []).append(node.name)
    for key, members in embeds.items():
        for a in members:
            for b in members:
                K0 = lim.tangent(a, b)
                add(key, K0 * lim.cov(bw.grad[a], bw.grad[b]), (a, bw.grad[a]), (b, bw.grad[b]))
    if r.trainable:
        parts["readout"] = _readout_kernel(lim, r, symbolic)
    return parts


def parameter_weight(lim: Limit, W):
    """σ_W² of an ordinary matrix; the tangent kernel of a generated one's entries."""
    if "tangent" in W.attrs:
        T = W.attrs["tangent"]
        return np.vectorize(sp.Float, otypes=[object])(T) if lim.symbolic else T
    return lim.matrix_var(W.name)


def _family(program: Program, names) -> str:
    """The family of a product of vectors: the non-shared one among theirs."""
    families = {program.node(n).family for n in names} - {"shared"}
    return families.pop() if families else "shared"


def to_inputs(program: Program, value, family_a: str, family_b: str):
    """Sum a (family_a × family_b) array over the members each input owns: an (N, N) array."""
    sizes = (program.family_size(family_a), program.family_size(family_b))
    value = np.broadcast_to(value, sizes)
    if family_a == family_b == "inputs":
        return value
    Oa, Ob = program.owner_matrix(family_a), program.owner_matrix(family_b)
    if value.dtype == object:
        Oa, Ob = Oa.astype(int).astype(object), Ob.astype(int).astype(object)
    return Oa.T @ value @ Ob
