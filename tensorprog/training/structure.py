"""The network a program describes, read once for training.

This is the only module of :mod:`tensorprog.training` that reads a program's internal records;
everything else works with the :class:`Network` it returns.  A trainable network is built from
input layers (``p.embed``), n×n matrices (``p.matrix``) and biases (``p.bias``), MATMULs (either
orientation, a matrix may be reused), NONLINs without scalar arguments, and a readout
``p.output`` of a vector of the inputs family (TP IIb Setup D.1 without assumptions A1–A2: every
layer is trained and a matrix may be used with its transpose).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import sympy as sp

from ..errors import ProgramError
from ..ir.instructions import (Embedding, InitialMatrix, InitialScalar, InitialVector, MatMul,
                               Moment, Nonlin, Select)
from ..ir.parametrization import Parametrization
from ..ir.program import INPUTS, SHARED, Program, symbol
from ..ir.rules import RuleTable


@dataclass(frozen=True)
class Tensor:
    """One trainable tensor: ``role`` is ``"input"`` (an embedding's weight, fan-in d),
    ``"hidden"`` (an n×n matrix), ``"bias"`` (a hidden bias or an embedding's bias),
    ``"output"`` (the readout vector) or ``"output_bias"``; ``var`` its σ², ``fan_in`` the
    constant fan-in (d for input weights, else 1), ``lr`` its learning-rate multiplier λ and
    ``parametrization`` the abc record the program carries."""

    name: str
    role: str
    var: float
    fan_in: float
    lr: float
    trainable: bool
    parametrization: Parametrization


@dataclass(frozen=True)
class Step:
    """One instruction of the network in program order, as a record of its own class: the
    declarations :class:`MatrixStep` and :class:`BiasStep`, then :class:`EmbedStep`,
    :class:`MatMulStep` and :class:`NonlinStep` (the trainers dispatch on the class; ``kind``
    is its short name)."""

    name: str
    kind: ClassVar[str] = ""


@dataclass(frozen=True)
class MatrixStep(Step):
    """An n×n matrix ``W`` (declaration)."""

    kind: ClassVar[str] = "matrix"


@dataclass(frozen=True)
class BiasStep(Step):
    """A bias vector ``b`` (declaration)."""

    kind: ClassVar[str] = "bias"


@dataclass(frozen=True)
class EmbedStep(Step):
    """The input layer ``h = Uξ + b`` on the inputs ``data``, its tensors named ``weight``
    (U) and ``bias`` (b)."""

    data: np.ndarray
    weight: str
    bias: str
    kind: ClassVar[str] = "embed"


@dataclass(frozen=True)
class MatMulStep(Step):
    """``h = W x`` (or ``Wᵀ x``): ``args == (x,)``."""

    args: tuple
    matrix: str
    transpose: bool
    kind: ClassVar[str] = "matmul"


@dataclass(frozen=True)
class NonlinStep(Step):
    """``x = ψ(args)`` with ψ the sympy expression ``expr``."""

    args: tuple
    expr: sp.Expr
    kind: ClassVar[str] = "nonlin"


@dataclass
class Network:
    """A program read as a trainable network: ``steps`` in program order, ``tensors`` by name,
    the readout node ``readout`` and the inputs ``num_inputs``."""

    name: str
    num_inputs: int
    steps: list
    tensors: dict
    biases: list
    matrices: list
    readout: str

    def tensor(self, name: str) -> Tensor:
        return self.tensors[name]


def _where(node) -> str:
    return node.headline()


@dataclass
class _Reading:
    """What :func:`read_network` collects while walking the program."""

    p: Program
    steps: list
    tensors: dict
    biases: list
    matrices: list
    weights: set


#: How each instruction of a trainable network is read (one rule per record class).
READ = RuleTable("training")


@READ.rule(InitialMatrix)
def _(node: InitialMatrix, r: _Reading) -> None:
    if node.generated:
        raise ProgramError("training: generated matrices are not supported", _where(node))
    par = node.parametrization
    r.tensors[node.name] = Tensor(node.name, "hidden", node.var, 1.0, par_lr(par),
                                  node.trainable, par)
    r.matrices.append(node.name)
    r.steps.append(MatrixStep(node.name))


@READ.rule(Embedding)
def _(node: Embedding, r: _Reading) -> None:
    if node.weight in r.weights:
        raise ProgramError("training: embeddings sharing a weight are not supported; "
                           "give each input layer its own weight", _where(node))
    r.weights.add(node.weight)
    X = r.p.data[node.data]
    par, bpar = node.parametrization, node.bias_parametrization
    w, b = f"{node.name}_U", f"{node.name}_b"
    r.tensors[w] = Tensor(w, "input", node.var, float(X.shape[1]), par_lr(par), node.trainable,
                          par)
    r.tensors[b] = Tensor(b, "bias", node.bias_var, 1.0, par_lr(bpar), node.trainable, bpar)
    r.steps.append(EmbedStep(node.name, data=X, weight=w, bias=b))


@READ.rule(InitialVector)
def _(node: InitialVector, r: _Reading) -> None:
    if node.source != "bias":
        raise ProgramError("training supports biases (p.bias) as initial vectors, not given "
                           "vector families", _where(node))
    par = node.parametrization
    r.tensors[node.name] = Tensor(node.name, "bias", node.var, 1.0, par_lr(par), node.trainable,
                                  par)
    r.biases.append(node.name)
    r.steps.append(BiasStep(node.name))


@READ.rule(MatMul)
def _(node: MatMul, r: _Reading) -> None:
    r.steps.append(MatMulStep(node.name, args=node.args, matrix=node.matrix,
                              transpose=node.transpose))


@READ.rule(Nonlin)
def _(node: Nonlin, r: _Reading) -> None:
    if node.scalars:
        raise ProgramError("training: NONLINs with scalar arguments (MOMENTs in the forward "
                           "pass) are not supported", _where(node))
    r.steps.append(NonlinStep(node.name, args=node.args, expr=node.expr))


@READ.rule(InitialScalar, Moment, Select)
def _(node, r: _Reading) -> None:
    raise ProgramError(f"training supports embed, matrix, bias, MATMUL and NONLIN "
                       f"instructions; a {node.kind} is not supported", _where(node))


def read_network(p: Program) -> Network:
    """Read ``p`` as a :class:`Network`.

    Raises
    ------
    ProgramError : an instruction training does not support (MOMENTs, SELECTs, scalars,
        families other than the inputs, generated matrices, shared embedding weights, a
        readout with slots, no output).
    """
    out = p.require_output()
    if out.slots is not None:
        raise ProgramError("training: a readout with slots is not supported; read one vector "
                           "of the inputs family", f"OUTPUT: readout({out.node})")
    r = _Reading(p, [], {}, [], [], set())
    for node in p.nodes():
        if node.family not in (INPUTS, SHARED, None):
            raise ProgramError(f"training supports vectors of the inputs family only, not "
                               f"{node.family!r}", _where(node))
        READ(node, r)
    steps, tensors, biases, matrices = r.steps, r.tensors, r.biases, r.matrices
    rpar = out.parametrization
    rbpar = out.bias_parametrization
    tensors["v"] = Tensor("v", "output", out.var, 1.0, par_lr(rpar), out.trainable, rpar)
    tensors["v_b"] = Tensor("v_b", "output_bias", out.bias_var, 1.0, par_lr(rbpar),
                            out.trainable, rbpar)
    return Network(p.name, p.num_inputs, steps, tensors, biases, matrices, out.node)


def par_lr(par: Parametrization) -> float:
    """The learning-rate multiplier λ a parametrization record carries (1 by default)."""
    return float(getattr(par, "lr", 1.0))


def derivative(expr: sp.Expr, arg: str) -> sp.Expr:
    """``∂ψ/∂arg`` of a NONLIN's ψ (the derivative the backward pass and the linearised
    forward pass use)."""
    return sp.diff(expr, symbol(arg))
