"""The network a program describes, read once for training.

This is the only module of :mod:`tensorprog.training` that reads a program's internal records;
everything else works with the :class:`Network` it returns.  A trainable network is built from
input layers (``p.embed``; several may share one weight, as the steps of a recurrent network
do), n×n matrices (``p.matrix``) and biases (``p.bias``), MATMULs (either orientation, a matrix
may be reused), NONLINs and MOMENTs (the scalars of LayerNorm; :mod:`.scalars` differentiates
through them), SELECTs that keep every member with its own input, and a readout ``p.output``
of a vector of the inputs family (TP IIb Setup D.1 without assumptions A1–A2: every layer is
trained and a matrix may be used with its transpose).  A tensor used several times is one
tensor: its gradient is the sum over its uses.

Vectors may belong to any family whose members are owned by inputs (a CNN's (image, position)
family, ``docs/theory.md`` §3.2): a weight applied to every member of such a family — a
convolution's filter tap at every position — is one tensor whose gradient on input j sums over
the members j owns.  This holds because a SELECT that keeps owners (member b reads a member of
the same input, or the zero vector: shifts within an image, pooling an image's positions) makes
each output f(ξ_j) a function of the members owned by j only; its backward pass is the
transpose of the selection (:func:`transpose_index`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import sympy as sp

from ..errors import TrainingError
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
    :class:`MatMulStep`, :class:`NonlinStep` and :class:`MomentStep` (the trainers dispatch on the class; ``kind``
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
    """The input layer ``h = Uξ + b`` on the inputs ``data`` (one row per member of
    ``family``), its tensors named ``weight`` (U) and ``bias`` (b)."""

    data: np.ndarray
    weight: str
    bias: str
    family: str = INPUTS
    kind: ClassVar[str] = "embed"


@dataclass(frozen=True)
class _VectorStep(Step):
    """A vector computed from the vectors ``args`` of the forward pass."""

    args: tuple


@dataclass(frozen=True)
class MatMulStep(_VectorStep):
    """``h = W x`` (or ``Wᵀ x``): ``args == (x,)``."""

    matrix: str
    transpose: bool
    kind: ClassVar[str] = "matmul"


@dataclass(frozen=True)
class SelectStep(_VectorStep):
    """``x' = x[index]`` in ``family`` (``args == (x,)``; ``-1`` the zero vector); ``back``
    the selections of its transpose (:func:`transpose_index`), which the backward pass sums."""

    index: np.ndarray
    family: str
    back: tuple
    kind: ClassVar[str] = "select"


@dataclass(frozen=True)
class _CoordinatewiseStep(_VectorStep):
    """ψ, the sympy expression ``expr`` of the vectors ``args`` and the scalars ``scalars``
    (MOMENTs of the network)."""

    expr: sp.Expr
    scalars: tuple = ()


@dataclass(frozen=True)
class NonlinStep(_CoordinatewiseStep):
    """``x = ψ(args; scalars)``, coordinatewise."""

    kind: ClassVar[str] = "nonlin"


@dataclass(frozen=True)
class MomentStep(_CoordinatewiseStep):
    """The scalar ``θ = avg ψ(args; scalars)`` (TP IIb Eq. 61), one number per input: a
    statistic of the forward pass such as LayerNorm's mean and second moment."""

    kind: ClassVar[str] = "moment"


@dataclass
class Network:
    """A program read as a trainable network: ``steps`` in program order, ``tensors`` by name,
    the readout node ``readout``, the inputs ``num_inputs`` and ``families``, the owner array
    (input of each member) of every family other than the inputs and the shared one."""

    name: str
    num_inputs: int
    steps: list
    tensors: dict
    biases: list
    matrices: list
    readout: str
    families: dict = field(default_factory=dict)

    def tensor(self, name: str) -> Tensor:
        return self.tensors[name]

    def owner(self, family: str) -> np.ndarray:
        """The input owning each member of ``family`` (``arange(N)`` for the inputs)."""
        return self.families[family] if family != INPUTS else np.arange(self.num_inputs)


def _unsupported(where: str, why: str) -> TrainingError:
    """The error for an instruction ``tp.train`` cannot unroll, naming it and why."""
    return TrainingError(f"tp.train cannot unroll `{where}`: {why}")


#: Why a program with a given initial scalar is not unrolled.
_SCALARS = ("a given initial scalar (p.scalar) is not a statistic of the forward pass; "
            "tp.train differentiates through the MOMENTs of the network (LayerNorm's mean and "
            "second moment) but not through given numbers: write a constant into the NONLIN's "
            "expression instead")

#: Why a readout with slots (the flatten readout of a CNN) is not unrolled.
_SLOTS = ("a readout with slots (one readout vector per position, a CNN's flatten readout) is "
          "not supported: the unrolled program reads out a vector of the inputs family; pool "
          "the positions first (global_avg_pool) or, in the NTK parametrization, use "
          "tp.predict.from_program for its kernel-regime training")


@dataclass
class _Reading:
    """What :func:`read_network` collects while walking the program."""

    p: Program
    steps: list
    tensors: dict
    biases: list
    matrices: list
    weights: dict


#: How each instruction of a trainable network is read (one rule per record class).
READ = RuleTable("training")


@READ.rule(InitialMatrix)
def _(node: InitialMatrix, r: _Reading) -> None:
    if node.generated:
        raise _unsupported(node.headline(), "a generated matrix (given by its covariance, "
                           "e.g. a hypernetwork's output) is not a parameter tp.train can "
                           "update; declare the trained matrices with p.matrix")
    par = node.parametrization
    r.tensors[node.name] = Tensor(node.name, "hidden", node.var, 1.0, par_lr(par),
                                  node.trainable, par)
    r.matrices.append(node.name)
    r.steps.append(MatrixStep(node.name))


@READ.rule(Embedding)
def _(node: Embedding, r: _Reading) -> None:
    X = r.p.data[node.data]
    par, bpar = node.parametrization, node.bias_parametrization
    if node.weight in r.weights:  # a shared input layer (U, b): one tensor pair, many uses
        w, b = r.weights[node.weight]
        U, bias = r.tensors[w], r.tensors[b]
        if (U.var, bias.var, U.fan_in, U.lr, bias.lr, U.trainable) != (
                node.var, node.bias_var, float(X.shape[1]), par_lr(par), par_lr(bpar),
                node.trainable):
            raise _unsupported(node.headline(), f"the input layers sharing the weight "
                               f"{node.weight!r} differ in variance, input dimension, learning "
                               "rate or trainability; a shared weight is one tensor")
    else:
        w, b = f"{node.name}_U", f"{node.name}_b"
        r.weights[node.weight] = (w, b)
        r.tensors[w] = Tensor(w, "input", node.var, float(X.shape[1]), par_lr(par),
                              node.trainable, par)
        r.tensors[b] = Tensor(b, "bias", node.bias_var, 1.0, par_lr(bpar), node.trainable, bpar)
    r.steps.append(EmbedStep(node.name, data=X, weight=w, bias=b, family=node.family))


@READ.rule(InitialVector)
def _(node: InitialVector, r: _Reading) -> None:
    if node.source != "bias":
        raise _unsupported(node.headline(), "a given initial vector (p.vector) has no "
                           "parameters to train; tp.train trains input layers (p.embed), "
                           "matrices (p.matrix), biases (p.bias) and the readout")
    par = node.parametrization
    r.tensors[node.name] = Tensor(node.name, "bias", node.var, 1.0, par_lr(par), node.trainable,
                                  par)
    r.biases.append(node.name)
    r.steps.append(BiasStep(node.name))


@READ.rule(MatMul)
def _(node: MatMul, r: _Reading) -> None:
    r.steps.append(MatMulStep(node.name, args=node.args, matrix=node.matrix,
                              transpose=node.transpose))


@READ.rule(Nonlin, Moment)
def _(node, r: _Reading) -> None:
    step = MomentStep if isinstance(node, Moment) else NonlinStep
    r.steps.append(step(node.name, args=node.args, expr=node.expr, scalars=node.scalars))


@READ.rule(InitialScalar)
def _(node: InitialScalar, r: _Reading) -> None:
    raise _unsupported(node.headline(), _SCALARS)


@READ.rule(Select)
def _(node: Select, r: _Reading) -> None:
    source = r.p.node(node.arg).family
    owner, src_owner = (r.p.get_family(f).owner for f in (node.family, source))
    index = np.asarray(node.index)
    kept = index >= 0
    if owner is None or src_owner is None or np.any(owner[kept] != src_owner[index[kept]]):
        raise _unsupported(node.headline(), "a select that mixes the vectors of different "
                           "inputs (BatchNorm over the batch, a member of one input read by "
                           "another, a shared vector) is not supported: the output of input j "
                           "must depend on the members j owns only, so that its gradient sums "
                           "over them; selects within one input (a convolution's shifts, "
                           "pooling an image's positions) are")
    r.steps.append(SelectStep(node.name, args=(node.arg,), index=index, family=node.family,
                              back=transpose_index(index, r.p.family_size(source))))


def transpose_index(index: np.ndarray, size: int) -> tuple:
    """The transpose of the selection ``x'_b = x_{index[b]}`` as a sum of selections.

    The backward pass of a SELECT scatters: ``dx_a = Σ_{b: index[b] = a} dx'_b``.  Member a has
    ``m_a`` such b; the r-th returned index array picks, for every a, its r-th one (``-1``, the
    zero vector, where a has fewer), so ``dx = Σ_r dx'[back_r]`` with ``max_a m_a`` SELECTs
    (one for a shift, which is a permutation up to padding).

    Parameters
    ----------
    index : np.ndarray
        The SELECT's index (one source member per target member, ``-1`` the zero vector).
    size : int
        The number of members of the source family.

    Returns
    -------
    tuple of np.ndarray
        Index arrays of length ``size`` into the target family.

    Example
    -------
    >>> transpose_index(np.array([1, 1, -1, 0]), 3)
    (array([3, 0, -1]), array([-1, 1, -1]))
    """
    order = np.argsort(index, kind="stable")
    src = index[order]
    keep = src >= 0
    order, src = order[keep], src[keep]
    first = np.searchsorted(src, src)              # where each source's run of targets starts
    rank = np.arange(src.size) - first
    back = np.full((int(rank.max()) + 1 if rank.size else 0, size), -1, dtype=np.intp)
    back[rank, src] = order
    return tuple(back)


def read_network(p: Program) -> Network:
    """Read ``p`` as a :class:`Network`.

    Raises
    ------
    TrainingError : an instruction training does not support (given scalars, SELECTs that
        mix inputs, generated matrices, given initial vectors, input layers sharing a weight
        but not its variance or learning rate, a readout with slots), naming the instruction
        and why.
    ProgramError : a program without an output.
    """
    out = p.require_output()
    if out.slots is not None:
        raise _unsupported(out.headline(), _SLOTS)
    r = _Reading(p, [], {}, [], [], {})
    for node in p.nodes():
        READ(node, r)
    steps, tensors, biases, matrices = r.steps, r.tensors, r.biases, r.matrices
    rpar = out.parametrization
    rbpar = out.bias_parametrization
    tensors["v"] = Tensor("v", "output", out.var, 1.0, par_lr(rpar), out.trainable, rpar)
    tensors["v_b"] = Tensor("v_b", "output_bias", out.bias_var, 1.0, par_lr(rbpar),
                            out.trainable, rbpar)
    families = {name: fam.owner for name, fam in p.families.items()
                if name not in (INPUTS, SHARED)}
    return Network(p.name, p.num_inputs, steps, tensors, biases, matrices, out.node, families)


def par_lr(par: Parametrization) -> float:
    """The learning-rate multiplier λ a parametrization record carries (1 by default)."""
    return float(getattr(par, "lr", 1.0))


def derivative(expr: sp.Expr, arg: str) -> sp.Expr:
    """``∂ψ/∂arg`` of a NONLIN's ψ (the derivative the backward pass and the linearised
    forward pass use)."""
    return sp.diff(expr, symbol(arg))
