"""The instructions of a NETSOR⊤+ program as typed, immutable records (TP IIb Def. 4.1, B.1).

One record class per instruction kind, each with typed fields and a typed output:

==================  ==========  ========  ==================================================
record              ``kind``    output    instruction
==================  ==========  ========  ==================================================
``InitialMatrix``   matrix      matrix    initial n×n matrix ``W``, entries N(0, σ²/n)
``Embedding``       vector      vector    input layer ``h(ξ) = Uξ + b`` of a data array
``InitialVector``   vector      vector    initial Gaussian vector (given, bias, readout ``v``)
``InitialScalar``   scalar      scalar    initial (deterministic) scalar
``MatMul``          matmul      vector    MATMUL ``h := W x`` or ``h := Wᵀ x``
``Nonlin``          nonlin      vector    NONLIN⁺ ``x := ψ(x¹…; θ…)`` coordinatewise
``Moment``          moment      scalar    MOMENT ``θ := (1/n) Σ_α ψ(x¹_α…; θ…)``
``Select``          select      vector    view ``x' := x[index]`` of members of a family
==================  ==========  ========  ==================================================

A vector or scalar record belongs to a *family* (``"inputs"``, ``"shared"`` or a declared one);
matrices belong to none.  The output layer :class:`Readout` is a record of the program rather
than a variable.  Records hold names of other variables, never the variables themselves, so a
program is a graph of records (:class:`~tensorprog.ir.program.Program`); ψ is a sympy
expression in the symbols of its arguments (:func:`symbol`).

Every interpreter of a program (limit, finite width, backward pass, printer, parser,
renderer, rewrites) keeps one rule per record class in a :class:`~tensorprog.ir.rules.RuleTable`.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np
import sympy as sp

from .parametrization import NTK_FIXED, NTK_HIDDEN, Parametrization

INPUTS = "inputs"
SHARED = "shared"


def symbol(name: str) -> sp.Symbol:
    """The sympy symbol that stands for the variable ``name`` inside ψ expressions."""
    return sp.Symbol(name, real=True)


@dataclass(frozen=True, slots=True, eq=False)
class Instruction:
    """Base of the instruction records: ``name`` is the variable the instruction defines.

    Class attributes: ``kind`` (the instruction's short name, as in ``p.nodes("matmul")``) and
    ``output`` (``"matrix"``, ``"vector"`` or ``"scalar"``).
    """

    name: str

    kind: ClassVar[str] = ""
    output: ClassVar[str] = ""
    #: G-vars are initial vectors and MATMUL results (TP IIb Def. 5.4); X-vars NONLIN results.
    is_gvar: ClassVar[bool] = False
    is_xvar: ClassVar[bool] = False

    @property
    def is_vector(self) -> bool:
        return self.output == "vector"

    @property
    def is_scalar(self) -> bool:
        return self.output == "scalar"

    @property
    def args(self) -> tuple[str, ...]:
        """Vector arguments, in position order."""
        return ()

    @property
    def scalars(self) -> tuple[str, ...]:
        """Scalar arguments, in position order."""
        return ()

    @property
    def operands(self) -> tuple[str, ...]:
        """Every variable the instruction reads (the graph's in-edges)."""
        return self.args + self.scalars

    def headline(self) -> str:
        """The instruction as error messages name it (``"MATMUL: h := W^T x"``)."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True, eq=False)
class InitialMatrix(Instruction):
    """Initial n×n matrix with entries N(0, var/n); ``var`` an (N, N) input covariance for a
    *generated* matrix (a hypernetwork's output), with ``tangent`` its entries' tangent kernel."""

    var: float | np.ndarray = 1.0
    trainable: bool = True
    parametrization: Parametrization = NTK_HIDDEN
    tangent: np.ndarray | None = None

    kind: ClassVar[str] = "matrix"
    output: ClassVar[str] = "matrix"
    family: ClassVar[None] = None

    @property
    def generated(self) -> bool:
        """Whether the entries depend on the input (``var`` an array)."""
        return isinstance(self.var, np.ndarray)

    def headline(self) -> str:
        return f"MATRIX: {self.name} ~ N(0, ...)"


@dataclass(frozen=True, slots=True, eq=False)
class Embedding(Instruction):
    """Input layer ``h(ξ) = Uξ + b`` on the rows of data array ``data``: ``U_ij ~ N(0, var/d)``,
    ``b ~ N(0, bias_var)``; embeddings naming the same ``weight`` share (U, b)."""

    family: str = INPUTS
    data: str = ""
    var: float = 1.0
    bias_var: float = 0.0
    weight: str = ""
    trainable: bool = True
    parametrization: Parametrization = NTK_FIXED
    bias_parametrization: Parametrization = NTK_FIXED

    kind: ClassVar[str] = "vector"
    output: ClassVar[str] = "vector"
    is_gvar: ClassVar[bool] = True
    source: ClassVar[str] = "embed"

    def headline(self) -> str:
        return f"INPUT: {self.name} := embed(...)"


@dataclass(frozen=True, slots=True, eq=False)
class InitialVector(Instruction):
    """Initial Gaussian vector: ``source`` ``"given"`` (a covariance of the user), ``"bias"``
    (a trainable shared vector) or ``"readout"`` (the readout vector v of a backward pass).
    A shared vector holds its coordinates' variance ``var``; a family's covariance lives in
    the program (:meth:`~tensorprog.ir.program.Program.init_cov_of`).  ``tangent`` replaces
    the covariance as the NTK weight of a trainable family."""

    family: str = SHARED
    source: str = "given"
    trainable: bool = False
    var: float | None = None
    tangent: np.ndarray | None = None
    parametrization: Parametrization = NTK_FIXED

    kind: ClassVar[str] = "vector"
    output: ClassVar[str] = "vector"
    is_gvar: ClassVar[bool] = True

    def headline(self) -> str:
        return f"VECTOR: {self.name} ~ N(0, ...)"


@dataclass(frozen=True, slots=True, eq=False)
class InitialScalar(Instruction):
    """Initial scalar, a deterministic number."""

    value: float = 0.0
    family: str = SHARED

    kind: ClassVar[str] = "scalar"
    output: ClassVar[str] = "scalar"

    def headline(self) -> str:
        return f"SCALAR: {self.name} := {self.value}"


@dataclass(frozen=True, slots=True, eq=False)
class MatMul(Instruction):
    """MATMUL ``name := matrix arg`` (``matrixᵀ arg`` when ``transpose``)."""

    family: str = INPUTS
    matrix: str = ""
    arg: str = ""
    transpose: bool = False

    kind: ClassVar[str] = "matmul"
    output: ClassVar[str] = "vector"
    is_gvar: ClassVar[bool] = True

    @property
    def args(self) -> tuple[str, ...]:
        return (self.arg,)

    @property
    def operands(self) -> tuple[str, ...]:
        return (self.matrix, self.arg)

    @property
    def label(self) -> str:
        """The matrix with its orientation, ``"W"`` or ``"Wᵀ"``."""
        return self.matrix + ("ᵀ" if self.transpose else "")

    def headline(self) -> str:
        return f"MATMUL: {self.name} := {self.matrix}{'^T' if self.transpose else ''} {self.arg}"


@dataclass(frozen=True, slots=True, eq=False)
class Coordinatewise(Instruction):
    """Base of NONLIN⁺ and MOMENT: ψ, the sympy expression ``expr`` of the vectors ``args``
    and the scalars ``scalars`` (held in the fields ``vectors`` and ``parameters``)."""

    family: str = SHARED
    expr: sp.Expr = sp.S.Zero
    vectors: tuple[str, ...] = ()
    parameters: tuple[str, ...] = ()

    @property
    def args(self) -> tuple[str, ...]:
        return self.vectors

    @property
    def scalars(self) -> tuple[str, ...]:
        return self.parameters


@dataclass(frozen=True, slots=True, eq=False)
class Nonlin(Coordinatewise):
    """NONLIN⁺ ``name := ψ(args; scalars)``, coordinatewise."""

    kind: ClassVar[str] = "nonlin"
    output: ClassVar[str] = "vector"
    is_xvar: ClassVar[bool] = True

    def headline(self) -> str:
        return f"NONLIN: {self.name} := {self.expr}"


@dataclass(frozen=True, slots=True, eq=False)
class Moment(Coordinatewise):
    """MOMENT ``name := avg ψ(args; scalars)``, the scalar ``(1/n) Σ_α ψ(...)``."""

    kind: ClassVar[str] = "moment"
    output: ClassVar[str] = "scalar"

    def headline(self) -> str:
        return f"MOMENT: {self.name} := avg({self.expr})"


@dataclass(frozen=True, slots=True, eq=False)
class Select(Instruction):
    """SELECT ``name := arg[index]`` in ``family``: member j is member ``index[j]`` of ``arg``
    (``-1``: the zero vector)."""

    family: str = INPUTS
    arg: str = ""
    index: np.ndarray = None

    kind: ClassVar[str] = "select"
    output: ClassVar[str] = "vector"

    @property
    def args(self) -> tuple[str, ...]:
        return (self.arg,)

    def headline(self) -> str:
        return f"SELECT: {self.name} := {self.arg}[...] in {self.family}"


@dataclass(frozen=True, slots=True)
class Readout:
    """The output layer ``f(ξ) = v·x(ξ)/√n + b``, ``v_α ~ N(0, var)``, ``b ~ N(0, bias_var)``.

    With ``slots`` the readout reads a vector of another family (e.g. every position of a CNN,
    the "flatten" readout): ``f(ξ_i) = Σ_{a owned by i} v_{slots[a]}·x_a/√(nP)`` with P
    independent readout vectors ``v_0 … v_{P−1}``.
    """

    node: str
    var: float
    bias_var: float = 0.0
    trainable: bool = True
    parametrization: Parametrization = NTK_HIDDEN
    slots: tuple | None = None
    bias_parametrization: Parametrization = NTK_FIXED

    @property
    def num_slots(self) -> int:
        return 1 if self.slots is None else max(self.slots) + 1

    def headline(self) -> str:
        return f"OUTPUT: readout({self.node}, var={self.var}, bias_var={self.bias_var})"


#: Every instruction record class; each rule table has one rule per class.
INSTRUCTIONS = (InitialMatrix, Embedding, InitialVector, InitialScalar, MatMul, Nonlin, Moment,
                Select)
#: Instruction kinds, in the order of :data:`INSTRUCTIONS` (``p.nodes(kind)``).
KINDS = tuple(dict.fromkeys(c.kind for c in INSTRUCTIONS))


def same(a: Instruction, b: Instruction) -> bool:
    """Whether two records are the same instruction (arrays compared by value)."""
    if type(a) is not type(b):
        return False
    for f in fields(a):
        v, w = getattr(a, f.name), getattr(b, f.name)
        if isinstance(v, np.ndarray) or isinstance(w, np.ndarray):
            if not (isinstance(v, np.ndarray) and isinstance(w, np.ndarray)
                    and np.array_equal(v, w)):
                return False
        elif v != w:
            return False
    return True
