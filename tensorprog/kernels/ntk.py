"""NNGP kernel and NTK of a network program in the infinite-width limit.

The network is ``f(ξ) = v·x(ξ)/√n + b`` with ``x`` the program's readout vector (docs/theory.md §3,
TP IIb Def. 4.2), in NTK parametrization.

* NNGP: ``K(ξ_i, ξ_j) = σ_v² E[Z^{x}(ξ_i) Z^{x}(ξ_j)] + σ_b²``.
* NTK by backprop (TP IIb Eqs. 97–100 with D.4.1 for the input and output layers): the backward
  pass is written into the program (:mod:`.backprop`) and every parameter contributes the terms
  of :mod:`.terms` with ``G(a, b) = E[Z^a Z^b]``, e.g. a matrix with uses ``g = W h``:
  ``σ_W² Σ_{r,s} E[Z^{dgʳ}Z^{dgˢ}] E[Z^{hʳ}Z^{hˢ}]``.
* NTK by path sums (TP IIb Prop. D.3): :mod:`.paths`.

**Error estimates** (``with_error=True``; docs/accuracy.md).  Every kernel comes with an
absolute error estimate array of its shape: each term ``c·Π_k G_k`` contributes
``|c| Σ_k δG_k Π_{j≠k} |G_j|`` (δG the error estimate of the expectation that gave G: 0 for
closed forms, the difference of two quadrature rules, the standard error of Monte Carlo), plus
``|c Π_k G_k| · r`` with r the largest relative error of the ZHAT covariances the expectations
were computed from (``Limit.upstream_rel_error``; the errors of limit scalars and ZDOT
coefficients are in ``Limit.max_error`` but not propagated).  Path sums take
``2·r'·Σ|share|`` with r' the largest relative error of any expectation
(``Limit.max_rel_error``).  Kernels whose
estimate exceeds :data:`TARGET_RTOL` of their largest entry raise an :class:`AccuracyWarning`.
"""
from __future__ import annotations

import warnings

import numpy as np
import sympy as sp

from ..errors import AccuracyWarning, LimitError
from ..expectations.quadrature import TARGET_RTOL
from ..ir.program import Program
from ..limit.evaluator import Limit
from ..resources import check_kernel
from .backprop import backward_program
from .paths import path_sums
from .terms import (LimitInnerProducts, Term, evaluate_term, evaluate_terms, ntk_terms,
                    readout_term, to_inputs)


def _to_output(array: np.ndarray, symbolic: bool):
    return sp.Matrix(array) if symbolic else np.asarray(array, dtype=float)


def nngp(program: Program, symbolic: bool = False, tier: str = "auto",
         with_error: bool = False):
    """Infinite-width NNGP kernel of ``program``'s output on its N inputs.

    ``K(ξ_i, ξ_j) = σ_v² E[Z^{x}(ξ_i) Z^{x}(ξ_j)] + σ_b²`` for the readout ``f = v·x/√n + b``
    (``docs/theory.md`` §3.1; TP IIb Def. 4.2 and Thm. B.4).  Numeric kernels of programs with a
    per-input template reuse the derivation of any earlier program of the same structure
    (:func:`tensorprog.plan.compiled.cached_kernels`).

    Parameters
    ----------
    program : Program
        A network program (with an output).
    symbolic : bool
        Closed forms only; the kernel is a sympy Matrix in the Gram entries ``G_i_j = ξ_iᵀξ_j``.
    tier : str
        The expectation tier: ``"auto"``, ``"exact"``, ``"quadrature"`` or ``"montecarlo"``
        (``docs/theory.md`` §4).
    with_error : bool
        Also return the absolute error estimate of every entry (module docstring,
        ``docs/accuracy.md``).

    Returns
    -------
    numpy.ndarray or sympy.Matrix, shape (N, N)
        The kernel ``K``; ``(K, error)`` with ``with_error=True`` (``error`` an (N, N) array,
        zeros when symbolic).

    Raises
    ------
    ProgramError
        When the program has no output.
    ResourceError
        When the derivation is estimated not to fit (:mod:`tensorprog.resources`).
    ExpectationError
        When an expectation has no closed form and ``symbolic`` or ``tier="exact"`` asks for one.

    Warns
    -----
    AccuracyWarning
        When the error estimate exceeds ``TARGET_RTOL`` of the kernel's largest entry.

    Example
    -------
    >>> p = tp.demo_program()
    >>> tp.nngp(p).round(4)               # 2 E[relu(Z^{h2}(ξ_i)) relu(Z^{h2}(ξ_j))]
    array([[1.1   , 0.5745],
           [0.5745, 1.1   ]])
    >>> tp.nngp(p, symbolic=True)[0, 0]
    1.0*G_0_0 + 0.1
    >>> K, error = tp.nngp(tp.demo_program(activation="tanh"), with_error=True)
    >>> bool(error.max() < 1e-8)          # quadrature, to about 1e-10
    True
    """
    program.require_output()
    if not symbolic:
        from ..plan.compiled import cached_kernels  # the plan builds on this module

        check_kernel(program, "nngp", tiled=True)
        value = cached_kernels(program, "nngp", tier)
        if value is not None:  # closed forms only: exact to rounding
            return (value, np.zeros(value.shape)) if with_error else value
    check_kernel(program, "nngp")
    lim = Limit(program, symbolic=symbolic, tier=tier)
    term = readout_term(program)
    value = evaluate_term(term, lim)
    error = _checked_error(term_error(term, lim), value, "NNGP kernel")
    out = _to_output(value, symbolic)
    return (out, error) if with_error else out


def ntk(program: Program, method: str = "backprop", symbolic: bool = False,
        contributions: bool = False, tier: str = "auto", with_error: bool = False):
    """Infinite-width NTK of ``program`` (every trainable parameter, NTK parametrization).

    ``Θ(ξ_i, ξ_j) = Σ_θ ⟨∂f(ξ_i)/∂θ, ∂f(ξ_j)/∂θ⟩`` over the trainable parameters, in the limit:
    by the backward pass written into the program (``docs/theory.md`` §3.5; TP IIb Eqs. 97–100
    with D.4.1) or by path sums (§3.6; Prop. D.3).

    Parameters
    ----------
    program, symbolic, tier
        As for :func:`nngp`.
    method : str
        ``"backprop"`` (the backward pass written in the program), ``"paths"`` (path sums) or
        ``"both"``: both derivations, which must agree within ``AGREEMENT`` times the sum of
        their error estimates; the backprop kernel is returned.
    contributions : bool
        Also return ``parts``, each parameter's (and, for paths, each
        ``(parameter, matrix sequence)`` path class's) (N, N) share of Θ.
    with_error : bool
        Also return the absolute error estimate of Θ (module docstring).

    Returns
    -------
    numpy.ndarray or sympy.Matrix, shape (N, N), or tuple
        ``Θ``, then ``parts`` if ``contributions``, then ``error`` if ``with_error`` (a tuple
        when more than Θ is asked for).

    Raises
    ------
    ValueError
        On an unknown ``method``.
    LimitError
        With ``method="both"``, when the two derivations disagree beyond their errors.
    ProgramError, ResourceError, ExpectationError
        As :func:`nngp` does.

    Warns
    -----
    AccuracyWarning
        When the error estimate exceeds ``TARGET_RTOL`` of Θ's largest entry.

    Example
    -------
    >>> p = tp.demo_program()
    >>> Theta, parts = tp.ntk(p, method="both", contributions=True)
    >>> Theta.round(4)
    array([[3.3   , 0.8558],
           [0.8558, 3.3   ]])
    >>> sorted(parts), np.allclose(parts["readout"], tp.nngp(p))   # v's share is the NNGP
    (['U_h1', 'W', 'readout'], True)
    """
    if method not in ("backprop", "paths", "both"):
        raise ValueError(f"method must be 'backprop', 'paths' or 'both', got {method!r}")
    program.require_output()
    if method == "backprop" and not (symbolic or contributions):
        from ..plan.compiled import cached_kernels  # the plan builds on this module

        check_kernel(program, "ntk", tiled=True)
        value = cached_kernels(program, "ntk", tier)
        if value is not None:  # closed forms only: exact to rounding
            return (value, np.zeros(value.shape)) if with_error else value
    check_kernel(program, "ntk")
    if method == "paths":
        parts, error = _paths(program, symbolic, tier)
    else:
        parts, error = _backprop(program, symbolic, tier)
    total = sum(parts.values(), np.zeros((program.num_inputs,) * 2))
    if method == "both":
        _require_agreement(program, total, error, *_paths(program, symbolic, tier))
    error = _checked_error(error, total, f"NTK ({method})")
    out = (_to_output(total, symbolic),)
    if contributions:
        out += ({k: _to_output(v, symbolic) for k, v in parts.items()},)
    if with_error:
        out += (error,)
    return out if len(out) > 1 else out[0]


#: ``method="both"`` fails where backprop and path sums differ by more than this many times the
#: sum of their error estimates (Monte-Carlo estimates are standard errors, not bounds).
AGREEMENT = 4.0


def _require_agreement(program, value, error, path_parts, path_error):
    other = sum(path_parts.values(), np.zeros(value.shape))
    if value.dtype == object:
        if any(sp.simplify(a - b) != 0 for a, b in zip(value.ravel(), other.ravel())):
            raise LimitError(f"NTK of {program.name!r}: backprop and path sums disagree "
                             "symbolically")
        return
    gap = np.abs(value - other)
    allowed = AGREEMENT * (error + path_error) + 1e-12 * max(float(np.max(np.abs(value))), 1.0)
    bad = gap > allowed
    if np.any(bad):
        i, j = np.unravel_index(np.argmax(np.where(bad, gap - allowed, -np.inf)), gap.shape)
        raise LimitError(
            f"NTK of {program.name!r}: backprop and path sums disagree at inputs ({i}, {j}) by "
            f"{gap[i, j]:.3g} ({value[i, j]:.6g} vs {other[i, j]:.6g}), more than {AGREEMENT:g}× "
            f"their error estimates ({error[i, j]:.3g} + {path_error[i, j]:.3g}); one "
            "derivation's expectations are wrong: report this program")


def _checked_error(error, value, what):
    """The error array of a numeric kernel (zeros for a symbolic one); warns when it is above
    the target accuracy."""
    if value.dtype == object:
        return np.zeros(value.shape)
    top = float(np.max(np.abs(value), initial=0.0))
    worst = float(np.max(error, initial=0.0))
    if worst > TARGET_RTOL * max(top, 1e-300):
        warnings.warn(f"the {what} is accurate to about {worst:.3g} absolute "
                      f"({worst / max(top, 1e-300):.3g} of its largest entry), short of the "
                      f"target {TARGET_RTOL:g}; "
                      "with_error=True returns the error estimate of every entry",
                      AccuracyWarning, stacklevel=3)
    return error


def _backprop(program, symbolic, tier):
    """Per-parameter NTK shares by backprop and the absolute error estimate of their sum."""
    program.require_output()
    bw = backward_program(program)
    lim = Limit(bw.program, symbolic=symbolic, tier=tier)
    terms = ntk_terms(bw)
    parts = evaluate_terms(terms, LimitInnerProducts(lim))
    error = sum((term_error(term, lim) for term in terms), 0.0)
    return parts, error


def _paths(program, symbolic, tier):
    """Path-sum shares and their error estimate ``2·r·Σ|share|`` (module docstring)."""
    parts, lim = path_sums(program, symbolic=symbolic, tier=tier)
    if symbolic:
        return parts, 0.0
    error = 2 * lim.max_rel_error * sum(np.abs(v) for v in parts.values())
    return parts, error


def ntk_contributions(program: Program, symbolic: bool = False, tier: str = "auto") -> dict:
    """Per-parameter NTK contributions by backprop-in-the-program (see :mod:`.terms`).

    The same shares as ``tp.ntk(program, contributions=True)[1]`` (TP IIb Eqs. 97–100): one
    ``σ² Σ_{r,s} E[Z^{dgʳ}Z^{dgˢ}] E[Z^{hʳ}Z^{hˢ}]`` per matrix, one per input layer, bias and
    readout.

    Parameters
    ----------
    program : Program
        A network program with an output.
    symbolic : bool
        Closed forms in the Gram entries ``G_i_j``.
    tier : str
        The expectation tier.

    Returns
    -------
    dict
        Parameter name (``"W"``, ``"U_h1"``, ``"readout"``, …) → its (N, N) share of Θ.

    Raises
    ------
    ProgramError
        When ``program`` has no readout.

    Example
    -------
    >>> shares = tp.ntk_contributions(tp.demo_program())
    >>> shares["W"].round(4)
    array([[1.1   , 0.2486],
           [0.2486, 1.1   ]])
    >>> np.allclose(sum(shares.values()), tp.ntk(tp.demo_program()))
    True
    """
    program.require_output()
    check_kernel(program, "ntk")
    return _backprop(program, symbolic, tier)[0]


def term_error(term: Term, lim: Limit):
    """Absolute error estimate of :func:`evaluate_term` (module docstring): an (N, N) array."""
    if lim.symbolic:
        return 0.0
    scale = np.abs(term.scale)
    if term.tangent_pair is not None:
        scale = scale * np.abs(lim.tangent(*term.tangent_pair))
    mags = [np.abs(lim.cov(a, b)) for a, b in term.factors]
    errs = [lim.cov_error(a, b) for a, b in term.factors]
    total = scale
    for mg in mags:
        total = total * mg
    error = total * lim.upstream_rel_error
    for k, e in enumerate(errs):
        part = scale * e
        for j, mg in enumerate(mags):
            if j != k:
                part = part * mg
        error = error + part
    return to_inputs(lim.program, error, *term.families)
