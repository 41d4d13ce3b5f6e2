"""The check pass: every instruction record is checked against the program it joins.

:func:`check` runs the rule of the record's class (TP IIb Def. 4.1 and B.1: MATMUL multiplies
a matrix by a vector, NONLIN⁺ and MOMENT read vectors and scalars of one family, variances
are finite and ≥ 0, covariances positive semidefinite, ...) and raises
:class:`~tensorprog.errors.ProgramError` naming the instruction (its :meth:`headline`).
The program's builders (``add_*``) normalise their arguments into a record and append it;
appending runs this pass.
"""
from __future__ import annotations

import keyword
import re
import warnings

import numpy as np
import sympy as sp

from ..errors import ProgramError, PseudoLipschitzWarning
from ..functions import NOT_PSEUDO_LIPSCHITZ
from .instructions import (INPUTS, SHARED, Embedding, InitialMatrix, InitialScalar,
                           InitialVector, MatMul, Moment, Nonlin, Select, symbol)
from .rules import RuleTable

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

CHECK = RuleTable("check")


def check(p, node) -> None:
    """Check record ``node`` before it joins program ``p``.

    Parameters
    ----------
    p : Program
        The program the record is appended to (its earlier variables, families, data).
    node : Instruction
        The record.

    Raises
    ------
    ProgramError
        Naming the instruction and what is wrong with it.
    """
    instruction = _Headline(node)
    check_new_name(p, node.name, instruction)
    CHECK(node, p, instruction)


class _Headline:
    """``node.headline()``, printed only when an error or warning names it (printing a ψ costs
    more than checking it, and a deep program checks thousands)."""

    def __init__(self, node):
        self.node = node

    def __str__(self) -> str:
        return self.node.headline()

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def check_new_name(p, name: str, instruction: str) -> None:
    """``name`` is a valid identifier not yet defined in ``p``."""
    if not isinstance(name, str) or not _NAME.match(name) or keyword.iskeyword(name):
        raise ProgramError(
            f"{name!r} is not a valid variable name: use letters, digits and '_'", instruction)
    if name in p:
        raise ProgramError(
            f"variable {name!r} is already defined (line {p.line_of(name)}); "
            "every variable is assigned once", instruction)


def require(p, name: str, what: str, instruction: str):
    """The record of ``name``, which must be defined and be a ``what`` (matrix, vector,
    scalar)."""
    if name not in p:
        raise ProgramError(
            f"{name!r} is not defined before this instruction; define it earlier", instruction)
    node = p.node(name)
    ok = {"matrix": node.output == "matrix", "vector": node.is_vector,
          "scalar": node.is_scalar}[what]
    if not ok:
        raise ProgramError(
            f"{name!r} is a {node.kind}, but a {what} is needed here"
            + (" (MATMUL multiplies a matrix by a vector)" if what != "scalar" else ""),
            instruction)
    return node


def check_variance(var, instruction: str) -> None:
    """``var`` is a finite number ≥ 0."""
    try:
        ok = float(var) >= 0 and np.isfinite(float(var))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ProgramError(f"variance {var!r} must be a finite number ≥ 0", instruction)


def check_psd(cov: np.ndarray, instruction: str) -> None:
    """``cov`` is a finite symmetric positive semidefinite matrix."""
    if not np.all(np.isfinite(cov)):
        raise ProgramError("covariance contains NaN or infinity", instruction)
    if not np.allclose(cov, cov.T, rtol=1e-10, atol=1e-12):
        raise ProgramError("covariance is not symmetric", instruction)
    eig = np.linalg.eigvalsh((cov + cov.T) / 2)
    if eig.min() < -1e-9 * max(1.0, abs(eig).max()):
        raise ProgramError(
            f"covariance is not positive semidefinite (smallest eigenvalue {eig.min():.3g}); "
            "pass a valid covariance, e.g. A @ A.T", instruction)


@CHECK.rule(InitialMatrix)
def _(node: InitialMatrix, p, instruction: str) -> None:
    if not node.generated:
        check_variance(node.var, instruction)
        if node.tangent is not None:
            raise ProgramError("tangent= is only for generated matrices (var an (N, N) "
                               "covariance)", instruction)
        return
    for key, arr in (("var", node.var), ("tangent", node.tangent)):
        if arr is None:
            raise ProgramError("a generated matrix needs tangent=, the (N, N) tangent "
                               "kernel of its entries", instruction)
        if arr.shape != (p.num_inputs, p.num_inputs):
            raise ProgramError(f"{key} must be an (N, N) array over the inputs", instruction)
        check_psd(arr, instruction)


@CHECK.rule(Embedding)
def _(node: Embedding, p, instruction: str) -> None:
    check_variance(node.var, instruction)
    check_variance(node.bias_var, instruction)
    X = p.data[node.data]
    for other in p.nodes("vector"):
        if isinstance(other, Embedding) and other.weight == node.weight:
            if (other.var, other.bias_var) != (node.var, node.bias_var):
                raise ProgramError(
                    f"embeddings sharing weight {node.weight!r} must have the same var and "
                    "bias_var", instruction)
            if p.data[other.data].shape[1] != X.shape[1]:
                raise ProgramError(
                    f"embeddings sharing weight {node.weight!r} need inputs of the same "
                    "dimension", instruction)


@CHECK.rule(InitialVector)
def _(node: InitialVector, p, instruction: str) -> None:
    p.get_family(node.family)
    if node.family == SHARED:
        check_variance(node.var, instruction)
    if node.tangent is not None:
        if not node.trainable or node.family == SHARED:
            raise ProgramError("tangent= is the (m, m) tangent kernel of a trainable vector "
                               "family, of the shape of its covariance", instruction)
        check_psd(node.tangent, instruction)


@CHECK.rule(InitialScalar)
def _(node: InitialScalar, p, instruction: str) -> None:
    if not np.isfinite(node.value):
        raise ProgramError("an initial scalar must be a finite number", instruction)


@CHECK.rule(MatMul)
def _(node: MatMul, p, instruction: str) -> None:
    W = require(p, node.matrix, "matrix", instruction)
    a = require(p, node.arg, "vector", instruction)
    if W.generated and a.family != INPUTS:
        raise ProgramError(
            f"{node.matrix!r} is generated per input, so it multiplies vectors of the inputs "
            f"family, not of {a.family!r}", instruction)


@CHECK.rule(Select)
def _(node: Select, p, instruction: str) -> None:
    a = require(p, node.arg, "vector", instruction)
    size = p.family_size(node.family)
    index, src = node.index, p.family_size(a.family)
    if index.shape != (size,) or not np.issubdtype(index.dtype, np.integer) or \
            (size and (index.min() < -1 or index.max() >= src)):
        raise ProgramError(
            f"index must hold {size} integers in [-1, {src}) (one per member of "
            f"{node.family!r})", instruction)


@CHECK.rule(Nonlin, Moment)
def _(node, p, instruction: str) -> None:
    nodes = [require(p, a, "vector", instruction) for a in node.args]
    for s in node.scalars:
        require(p, s, "scalar", instruction)
    if isinstance(node, Nonlin) and not node.args:
        raise ProgramError("a NONLIN needs at least one vector argument "
                           "(a function of scalars only is a scalar, not a vector)",
                           instruction)
    allowed = {symbol(a) for a in node.operands}
    extra = node.expr.free_symbols - allowed
    if extra:
        raise ProgramError(
            f"ψ uses {sorted(map(str, extra))} which are not among its arguments "
            f"{list(node.operands)}", instruction)
    for f in node.expr.atoms(sp.Function):
        if f.func in NOT_PSEUDO_LIPSCHITZ and not f.args[0].is_nonpositive and \
                any(p.node(s.name).is_vector for s in f.args[0].free_symbols):
            warnings.warn(
                f"{instruction}: {f.func.__name__} is not pseudo-Lipschitz (TP IIb Def. B.7); "
                "the Master Theorem is not guaranteed for it", PseudoLipschitzWarning,
                stacklevel=6)
    families = ({n.family for n in nodes} | {p.node(s).family for s in node.scalars}) - {SHARED}
    if len(families) > 1:
        raise ProgramError(
            f"arguments come from different families {sorted(families)}; bring them into "
            "one family with a SELECT first", instruction)


def family_of(p, operands) -> str:
    """The family of a coordinatewise instruction on ``operands``: the one non-shared family
    among them (shared ones broadcast), else ``"shared"``; unknown names are left to
    :func:`check`."""
    families = {p.node(a).family for a in operands if a in p} - {SHARED, None}
    return families.pop() if len(families) == 1 else SHARED
