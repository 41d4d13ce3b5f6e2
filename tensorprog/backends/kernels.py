"""The exact finite-width NNGP sample, NTK and output of a network program (DESIGN §3, §5).

The NTK is the sum of the terms of :mod:`tensorprog.kernels.terms` evaluated with the empirical
inner products ``G(a, b)_ij = a(ξ_i)·b(ξ_j)/n`` of the instantiated program and its backward
pass (scaled gradients ``dy = √n ∂f/∂y``, exact at any width): every share
``⟨∂f(ξ_i)/∂w, ∂f(ξ_j)/∂w⟩`` is a product of such inner products, so no n×n gradient is ever
formed.  The readout term ``σ_v² G(x, x) + σ_b²`` is also the per-seed NNGP sample: the kernel
of f *conditional on the body* (the covariance of f over the readout layer's randomness with
everything else fixed), whose seed average is the finite-width NNGP ``E[f(ξ_i) f(ξ_j)]``
exactly.  A term between families A and B is summed over the members each input owns,
``Oₐᵀ Θ O_b`` (:meth:`~tensorprog.ir.program.Program.owner_matrix`).
"""
from __future__ import annotations

import numpy as np

from ..ir.program import INPUTS, Program
from ..kernels.terms import Term


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
    owners: dict = {}

    def owner(family):
        if family not in owners:
            owners[family] = xp.asarray(p.owner_matrix(family), dtype=dtype)
        return owners[family]

    out: dict = {}
    for t in terms:
        value = xp.asarray(t.scale, dtype=dtype)
        if t.tangent_pair is not None:
            value = value * xp.asarray(p.tangent_of(*t.tangent_pair), dtype=dtype)
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
    """``f(ξ_i) = v·x(ξ_i)/√n + b_out`` for every seed: (S, N); with P readout slots
    ``Σ_{a owned by i} v_{slot(a)}·x_a/√(nP) + b_out``."""
    r = p.require_output()
    v, x = values[readout_vector], values[r.node]
    if r.slots is not None:
        v = v[:, :, np.asarray(r.slots)]
    f = (v * x).sum(axis=1) / np.sqrt(width * r.num_slots)
    if r.slots is not None:
        f = xp.matmul(f, xp.asarray(p.owner_matrix(p.node(r.node).family), dtype=f.dtype))
    return f + xp.asarray(readout_bias, dtype=f.dtype)[:, None]
