"""NNGP kernel and NTK of a network program in the infinite-width limit.

The network is ``f(ξ) = v·x(ξ)/√n + b`` with ``x`` the program's readout vector (DESIGN §3,
TP IIb Def. 4.2), in NTK parametrization.

* NNGP: ``K(ξ_i, ξ_j) = σ_v² E[Z^{x}(ξ_i) Z^{x}(ξ_j)] + σ_b²``.
* NTK by backprop (TP IIb Eqs. 97–100 with D.4.1 for the input and output layers): the backward
  pass is written into the program (:mod:`.backprop`) and every parameter contributes the terms
  of :mod:`.terms` with ``G(a, b) = E[Z^a Z^b]``, e.g. a matrix with uses ``g = W h``:
  ``σ_W² Σ_{r,s} E[Z^{dgʳ}Z^{dgˢ}] E[Z^{hʳ}Z^{hˢ}]``.
* NTK by path sums (TP IIb Prop. D.3): :mod:`.paths`.
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from ..ir.program import Program
from ..limit.evaluator import Limit
from ..resources import check_kernel
from .backprop import backward_program
from .paths import path_contributions
from .terms import evaluate_term, ntk_terms, readout_term


def _to_output(array: np.ndarray, symbolic: bool):
    return sp.Matrix(array) if symbolic else np.asarray(array, dtype=float)


def nngp(program: Program, symbolic: bool = False, tier: str = "auto"):
    """Infinite-width NNGP kernel of ``program``'s output on its N inputs: an (N, N) array
    (a sympy Matrix in the Gram entries ``G_i_j = ξ_iᵀξ_j`` with ``symbolic=True``).  Numeric
    kernels of programs with a per-input template reuse the derivation of any earlier program
    of the same structure (:func:`tensorprog.plan.compiled.cached_kernels`)."""
    program.require_output()
    if not symbolic:
        from ..plan.compiled import cached_kernels

        value = cached_kernels(program, "nngp", tier)
        if value is not None:
            return value
    check_kernel(program, "nngp")
    lim = Limit(program, symbolic=symbolic, tier=tier)
    return _to_output(evaluate_term(readout_term(program), lim), symbolic)


def ntk(program: Program, method: str = "backprop", symbolic: bool = False,
        contributions: bool = False, tier: str = "auto"):
    """Infinite-width NTK of ``program`` (every trainable parameter, NTK parametrization).

    ``method`` is ``"backprop"`` (the backward pass written in the program) or ``"paths"``
    (path sums, TP IIb Prop. D.3).  With ``contributions=True`` returns ``(Θ, parts)`` where
    ``parts`` maps each parameter (and, for paths, each ``(parameter, matrix sequence)`` path
    class) to its (N, N) share of Θ.
    """
    program.require_output()
    if method == "backprop" and not (symbolic or contributions):
        from ..plan.compiled import cached_kernels

        value = cached_kernels(program, "ntk", tier)
        if value is not None:
            return value
    check_kernel(program, "ntk")
    if method == "backprop":
        parts = ntk_contributions(program, symbolic=symbolic, tier=tier)
    elif method == "paths":
        parts = path_contributions(program, symbolic=symbolic, tier=tier)
    else:
        raise ValueError(f"method must be 'backprop' or 'paths', got {method!r}")
    total = _to_output(sum(parts.values()), symbolic)
    if contributions:
        return total, {k: _to_output(v, symbolic) for k, v in parts.items()}
    return total


def ntk_contributions(program: Program, symbolic: bool = False, tier: str = "auto") -> dict:
    """Per-parameter NTK contributions by backprop-in-the-program (see :mod:`.terms`)."""
    program.require_output()
    check_kernel(program, "ntk")
    bw = backward_program(program)
    lim = Limit(bw.program, symbolic=symbolic, tier=tier)
    parts: dict[str, np.ndarray] = {}
    for term in ntk_terms(bw):
        value = evaluate_term(term, lim)
        parts[term.param] = parts[term.param] + value if term.param in parts else value
    return parts
