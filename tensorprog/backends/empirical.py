"""The exact finite-width NNGP sample, NTK and output of a network program (docs/theory.md §3, §5).

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


class Grams:
    """Memoised empirical inner products ``G(a, b) = aᵀb / n`` over the width axis, (S, m_a, m_b),
    of one chunk of ``seeds`` seeds of program ``p``: the finite-width inner products of
    :func:`tensorprog.kernels.terms.evaluate_terms`."""

    def __init__(self, values: dict, width: int, xp, p: Program, seeds: int, dtype):
        self.values, self.n, self.xp = values, width, xp
        self.p, self.seeds, self.dtype = p, seeds, dtype
        self._cache: dict = {}
        self._owners: dict = {}

    def __call__(self, a: str, b: str):
        if (a, b) in self._cache:
            return self._cache[(a, b)]
        if (b, a) in self._cache:
            return self._cache[(b, a)].transpose(0, 2, 1)
        G = self.xp.matmul(self.values[a].transpose(0, 2, 1), self.values[b]) / self.n
        self._cache[(a, b)] = G
        return G

    def number(self, x):
        return self.xp.asarray(x, dtype=self.dtype)

    def tangent(self, a: str, b: str):
        return self.number(self.p.tangent_of(a, b))

    def _owner(self, family):
        if family not in self._owners:
            self._owners[family] = self.number(self.p.owner_matrix(family))
        return self._owners[family]

    def to_inputs(self, value, family_a: str, family_b: str, const):
        """``Oₐᵀ value O_b + const`` for every seed: (S, N, N)."""
        xp, p = self.xp, self.p
        value = xp.broadcast_to(value, (self.seeds, p.family_size(family_a),
                                        p.family_size(family_b)))
        if (family_a, family_b) != (INPUTS, INPUTS):
            value = xp.matmul(xp.matmul(self._owner(family_a).T, value), self._owner(family_b))
        return value + const


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
