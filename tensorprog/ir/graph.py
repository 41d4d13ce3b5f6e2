"""The program graph: instruction records (:mod:`.instructions`) held in a ``networkx`` graph.

A :class:`ProgramGraph` is a sequence of records (TP IIb Def. 4.1 and B.1) stored as the nodes
of a ``networkx.DiGraph`` (attribute ``"node"``), with an edge from every operand to the
instruction that reads it (attribute ``role``: ``"matrix"``, ``"arg"`` or ``"scalar"``).

**Families.**  A vector record stands for the whole family ``{x(ξ_i)}_i`` over the program's N
inputs (family ``"inputs"``) or for one input-independent vector such as a bias (family
``"shared"``), see ``docs/compiler.md``.  Scalars produced by MOMENT over an input family are
likewise one number per input.  An instruction whose arguments mix the two families broadcasts
the shared ones.

The ``add_*`` builders normalise their arguments into a record and :meth:`append` it; appending
runs the check pass (:mod:`.check`).  :class:`~tensorprog.ir.program.Program` adds the textual
form and the rewrites on top.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import networkx as nx
import numpy as np
import sympy as sp

from ..errors import ProgramError
from .check import check, check_new_name, check_psd, check_variance, family_of, require
from .expression import as_expression
from .instructions import (INPUTS, KINDS, SHARED, Embedding, InitialMatrix, InitialScalar,
                           InitialVector, Instruction, MatMul, Moment, Nonlin, Readout, Select,
                           same, symbol)
from .parametrization import NTK_HIDDEN, Parametrization

_COORDINATEWISE = {"nonlin": Nonlin, "moment": Moment}


@dataclass
class Family:
    """An index set of vectors: ``size`` members, member ``a`` owned by input ``owner[a]``
    (``owner`` is None for the shared family of input-independent vectors)."""

    name: str
    size: int
    owner: np.ndarray | None

    def __eq__(self, other):
        return (isinstance(other, Family) and (self.name, self.size) == (other.name, other.size)
                and ((self.owner is None and other.owner is None)
                     or (self.owner is not None and other.owner is not None
                         and np.array_equal(self.owner, other.owner))))


class ProgramGraph:
    """A NETSOR⊤+ program on N inputs, stored as a ``networkx.DiGraph`` of instruction records.

    Every ``add_*`` method validates its instruction and raises
    :class:`~tensorprog.errors.ProgramError` naming it.
    """

    def __init__(self, name: str = "program"):
        self.name = name
        self.graph = nx.DiGraph()
        self.order: list[str] = []
        self.num_inputs: int | None = None
        self.data: dict[str, np.ndarray] = {}
        self.init_cov: dict[tuple[str, str], np.ndarray] = {}
        self.readout: Readout | None = None
        self.families: dict[str, Family] = {SHARED: Family(SHARED, 1, None)}
        self._counters: dict[str, int] = {}

    def empty_like(self, families: dict | None = None, counters: bool = False):
        """A program of the same class, name, inputs, data and initial covariances, with no
        instructions yet (``families`` replaces the families; ``counters`` keeps the fresh-name
        counters) — the start of a rewrite."""
        q = type(self)(self.name)
        q.num_inputs, q.data, q.init_cov = self.num_inputs, dict(self.data), dict(self.init_cov)
        q.families = dict(self.families if families is None else families)
        if counters:
            q._counters = dict(self._counters)
        return q

    # ------------------------------------------------------------------ access
    def __contains__(self, name: str) -> bool:
        return name in self.graph

    def node(self, name: str) -> Instruction:
        """The record defining ``name``."""
        try:
            return self.graph.nodes[name]["node"]
        except KeyError:
            raise ProgramError(f"no variable named {name!r} in program {self.name!r}") from None

    def nodes(self, kind: str | None = None) -> list[Instruction]:
        """Records in program order (optionally only those of one kind, e.g. ``"matmul"``)."""
        out = [self.graph.nodes[n]["node"] for n in self.order]
        if kind is None:
            return out
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        return [n for n in out if n.kind == kind]

    def family_size(self, family: str) -> int:
        return self.get_family(family).size

    def get_family(self, family: str) -> Family:
        if family not in self.families:
            if family == INPUTS:
                raise ProgramError(
                    f"program {self.name!r} has no inputs yet: add an input with p.embed(X, ...) "
                    "or an initial vector family with p.vector(name, cov) first")
            raise ProgramError(f"no family {family!r}: declare it with p.family(name, owner)")
        return self.families[family]

    def owner_matrix(self, family: str) -> np.ndarray:
        """The (size, N) 0/1 matrix of which input owns each member (all ones for
        input-independent families)."""
        fam = self.get_family(family)
        if fam.owner is None:
            return np.ones((fam.size, self.num_inputs))
        out = np.zeros((fam.size, self.num_inputs))
        out[np.arange(fam.size), fam.owner] = 1.0
        return out

    def args(self, name: str) -> list[str]:
        """Vector arguments of an instruction, in position order."""
        return list(self.node(name).args)

    def matmuls_of(self, matrix: str) -> list[MatMul]:
        """Every MATMUL by ``matrix`` (either orientation), in program order."""
        return [n for n in self.nodes("matmul") if n.matrix == matrix]

    def line_of(self, name: str) -> int:
        """Line of ``name`` in the textual form (1-based: the header, then one FAMILY line per
        declared family, then one line per variable)."""
        declared = sum(1 for f in self.families if f not in (SHARED, INPUTS))
        return self.order.index(name) + 2 + declared

    # ------------------------------------------------------------------ naming
    def fresh_name(self, prefix: str) -> str:
        k = self._counters.get(prefix, 0)
        while True:
            k += 1
            name = f"{prefix}{k}"
            if name not in self.graph:
                self._counters[prefix] = k
                return name

    # ------------------------------------------------------------------ appending records
    def append(self, node: Instruction, checked: bool = True) -> Instruction:
        """Append record ``node`` (after the check pass of :mod:`.check` unless ``checked`` is
        False: a record copied unchanged from a program with the same earlier variables)."""
        if checked:
            check(self, node)
        self.graph.add_node(node.name, node=node)
        if isinstance(node, MatMul):
            self.graph.add_edge(node.matrix, node.name, role="matrix")
        for a in node.args:
            self.graph.add_edge(a, node.name, role="arg")
        for s in node.scalars:
            self.graph.add_edge(s, node.name, role="scalar")
        self.order.append(node.name)
        return node

    def replace(self, name: str, **changes) -> Instruction:
        """Replace fields of the (immutable) record of ``name``, e.g. its parametrization."""
        node = dataclasses.replace(self.node(name), **changes)
        self.graph.nodes[name]["node"] = node
        return node

    def declare_inputs(self, n: int) -> None:
        """Declare the N inputs (the ``"inputs"`` family) before any vector of it exists, e.g.
        when the first layer acts on another family (the pixels of a CNN)."""
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise ProgramError(f"the number of inputs must be a positive integer, got {n!r}")
        self._set_inputs(int(n), f"PROGRAM {self.name} inputs={n}")

    def _set_inputs(self, n: int, instruction: str) -> None:
        if self.num_inputs is None:
            self.num_inputs = int(n)
            self.families[INPUTS] = Family(INPUTS, int(n), np.arange(int(n)))
        elif self.num_inputs != n:
            raise ProgramError(
                f"this program has {self.num_inputs} inputs, but this instruction brings {n}; "
                "every input family must cover the same inputs",
                instruction,
            )
    # ------------------------------------------------------------------ initial objects
    def add_matrix(self, name: str, var, trainable: bool = True,
                   parametrization: Parametrization = NTK_HIDDEN, shape=None,
                   tangent=None) -> InitialMatrix:
        """Initial n×n matrix with entries N(0, var/n) (NTK parametrization: N(0,1)·σ/√n).

        A *generated* matrix (the weights a hypernetwork outputs) has an (N, N) covariance
        ``var`` over the inputs instead of a number: its entries are iid over (a, b) and
        ``Cov(W_ab(ξ_i), W_ab(ξ_j)) = var[i, j]/n``; ``tangent`` (N, N) is the tangent kernel of
        the entries with respect to the generator's parameters, which weights the matrix's NTK
        contribution in place of σ².  Generated matrices act on vectors of the inputs family.
        """
        instruction = InitialMatrix(name).headline()
        if shape is not None and (len(shape) != 2 or shape[0] != shape[1]):
            raise ProgramError(
                f"matrix shape {tuple(shape)} is not square: a program has one width n and every "
                "matrix is n×n (TP IIb Setup B.2); express other widths as separate programs",
                instruction,
            )
        if np.ndim(var) == 0:
            check_variance(var, instruction)
            var = float(var)
        else:
            arrays = []
            for arr in (var, tangent):
                if arr is None:
                    raise ProgramError("a generated matrix needs tangent=, the (N, N) tangent "
                                       "kernel of its entries", instruction)
                arr = np.asarray(arr, dtype=float)
                self._set_inputs(arr.shape[0], instruction)
                arrays.append(arr)
            var, tangent = arrays
        return self.append(InitialMatrix(name, var, bool(trainable), parametrization, tangent))

    def is_generated(self, matrix: str) -> bool:
        """Whether ``matrix`` has input-dependent entries (see :meth:`add_matrix`)."""
        return self.node(matrix).generated

    def add_embedding(self, name: str, X, var: float, bias_var: float = 0.0,
                      weight: str | None = None, trainable: bool = True,
                      data_name: str | None = None, family: str = INPUTS) -> Embedding:
        """Input layer ``h(ξ) = Uξ + b``, ``U_ij ~ N(0, var/d)``, ``b ~ N(0, bias_var)``.

        Its Z is Gaussian with covariance ``var·ξ_iᵀξ_j/d + bias_var``.  Embeddings
        naming the same ``weight`` share (U, b) and are correlated; others are independent.
        With ``family`` other than the inputs, row a of ``X`` feeds member a of that family
        (e.g. the image patch under a convolution's first filter at one position).
        """
        instruction = Embedding(name).headline()
        X = np.asarray(X, dtype=float)
        if X.ndim == 1:
            X = X[:, None]
        if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
            raise ProgramError(
                f"inputs must be a non-empty (N, d) array, got shape {X.shape}", instruction)
        if not np.all(np.isfinite(X)):
            raise ProgramError("inputs contain NaN or infinity", instruction)
        check_variance(var, instruction)
        check_variance(bias_var, instruction)
        if family == INPUTS:
            self._set_inputs(X.shape[0], instruction)
        elif self.family_size(family) != X.shape[0]:
            raise ProgramError(f"family {family!r} has {self.family_size(family)} members but "
                               f"the data has {X.shape[0]} rows", instruction)
        if data_name is None:
            data_name = self.fresh_name("X")
        if data_name in self.data and not np.array_equal(self.data[data_name], X):
            raise ProgramError(f"data {data_name!r} already holds other inputs", instruction)
        node = Embedding(name, family, data_name, float(var), float(bias_var),
                         weight or f"U_{name}", bool(trainable))
        known = data_name in self.data
        self.data[data_name] = X
        try:
            self.append(node)
        except ProgramError:
            if not known:
                del self.data[data_name]
            raise
        for other in self.nodes("vector"):
            if isinstance(other, Embedding) and other.weight == node.weight and other is not node:
                Xo = self.data[other.data]
                cov = var * X @ Xo.T / X.shape[1] + bias_var
                self.init_cov[(name, other.name)] = cov
                self.init_cov[(other.name, name)] = cov.T
        return node

    def add_vector(self, name: str, cov, cross: dict | None = None, trainable: bool = False,
                   source: str = "given", family: str | None = None,
                   tangent=None) -> InitialVector:
        """Initial vector: shared (``cov`` a number, the coordinates' variance) or a family over
        the inputs (``cov`` an (N, N) positive semidefinite array).  ``cross`` maps earlier
        initial vectors to cross-covariance arrays.  Biases are shared trainable vectors.

        A trainable family's NTK share is ``K ∘ E[Z^{dv} Z^{dv}]`` with ``K`` its covariance
        (exact when the vector is a linear layer of its own parameters); ``tangent`` gives
        another K, the tangent kernel of a vector produced by a network that is trained (a
        hypernetwork's output, for instance)."""
        instruction = InitialVector(name).headline()
        cov = np.asarray(cov, dtype=float)
        if tangent is not None:
            tangent = np.asarray(tangent, dtype=float)
            if not trainable or cov.ndim != 2 or tangent.shape != cov.shape:
                raise ProgramError("tangent= is the (m, m) tangent kernel of a trainable vector "
                                   "family, of the shape of its covariance", instruction)
        if cov.ndim == 0:
            check_variance(float(cov), instruction)
            family, cov = SHARED, cov.reshape(1, 1)
        elif cov.ndim == 2 and cov.shape[0] == cov.shape[1]:
            family = family or INPUTS
            if family == INPUTS:
                self._set_inputs(cov.shape[0], instruction)
            elif self.family_size(family) != cov.shape[0]:
                raise ProgramError(f"family {family!r} has {self.family_size(family)} members "
                                   f"but the covariance is {cov.shape}", instruction)
            check_psd(cov, instruction)
        else:
            raise ProgramError(
                f"covariance must be a number or a square (N, N) array, got shape {cov.shape}",
                instruction)
        node = InitialVector(name, family, source, bool(trainable),
                             float(cov[0, 0]) if family == SHARED else None, tangent)
        check_new_name(self, name, instruction)
        pending = {}
        for other, c in (cross or {}).items():
            o = require(self, other, "vector", instruction)
            if not isinstance(o, (InitialVector, Embedding)):
                raise ProgramError(f"cross-covariance with {other!r}: only initial vectors are "
                                   "jointly Gaussian with a new initial vector", instruction)
            c = np.asarray(c, dtype=float).reshape(
                self.family_size(family), self.family_size(o.family))
            pending[other] = c
        if pending:
            names = [name] + list(pending)
            blocks = [[None] * len(names) for _ in names]
            for a_i, a in enumerate(names):
                for b_i, b in enumerate(names):
                    if a == name and b == name:
                        blocks[a_i][b_i] = cov
                    elif a == name:
                        blocks[a_i][b_i] = pending[b]
                    elif b == name:
                        blocks[a_i][b_i] = pending[a].T
                    else:
                        blocks[a_i][b_i] = self.init_cov_of(a, b)
            check_psd(np.block(blocks), instruction)
        self.append(node)
        self.init_cov[(name, name)] = cov
        for other, c in pending.items():
            self.init_cov[(name, other)] = c
            self.init_cov[(other, name)] = c.T
        return node

    def add_scalar(self, name: str, value: float) -> InitialScalar:
        """Initial scalar (a deterministic number)."""
        return self.append(InitialScalar(name, float(value)))

    def add_family(self, name: str, owner) -> Family:
        """Declare a family whose member ``a`` belongs to input ``owner[a]`` (e.g. the pixels
        of every image: ``owner = np.repeat(np.arange(N), P)``)."""
        instruction = f"FAMILY: {name}"
        if name in self.families:
            raise ProgramError(f"family {name!r} already exists", instruction)
        if self.num_inputs is None:
            raise ProgramError("declare the inputs (p.embed) before other families", instruction)
        owner = np.asarray(owner)
        if owner.ndim != 1 or owner.size == 0 or not np.issubdtype(owner.dtype, np.integer) \
                or owner.min() < 0 or owner.max() >= self.num_inputs:
            raise ProgramError(f"owner must be a non-empty integer array of input indices in "
                               f"[0, {self.num_inputs})", instruction)
        fam = Family(name, int(owner.size), owner.astype(np.intp))
        self.families[name] = fam
        return fam

    def tangent_of(self, a: str, b: str) -> np.ndarray:
        """Weight of the NTK share ``K ∘ E[Z^{da} Z^{db}]`` of trainable initial vectors a, b:
        their covariance, or the ``tangent`` kernel given for the vector."""
        tangent = getattr(self.node(a), "tangent", None)
        if tangent is not None:
            return tangent if a == b else np.zeros((len(tangent), len(tangent)))
        return self.init_cov_of(a, b)

    def init_cov_of(self, a: str, b: str) -> np.ndarray:
        """Covariance of the Gaussian coordinates of initial vectors ``a`` and ``b``."""
        if (a, b) in self.init_cov:
            return self.init_cov[(a, b)]
        na, nb = self.node(a), self.node(b)
        if a == b and isinstance(na, Embedding):
            X = self.data[na.data]
            cov = na.var * X @ X.T / X.shape[1] + na.bias_var
            self.init_cov[(a, a)] = cov
            return cov
        return np.zeros((self.family_size(na.family), self.family_size(nb.family)))

    # ------------------------------------------------------------------ instructions
    def add_matmul(self, name: str, matrix: str, arg: str, transpose: bool = False) -> MatMul:
        """MATMUL ``name := W arg`` (or ``Wᵀ arg``)."""
        family = self.node(arg).family if arg in self else INPUTS
        return self.append(MatMul(name, family, matrix, arg, bool(transpose)))

    def add_select(self, name: str, arg: str, index, family: str) -> Select:
        """SELECT ``name := arg[index]``: member j of the new vector (in ``family``) is member
        ``index[j]`` of ``arg`` (``-1``: the zero vector)."""
        index = np.asarray(index)
        if np.issubdtype(index.dtype, np.integer):
            index = index.astype(np.intp)
        return self.append(Select(name, family, arg, index))

    def add_nonlin(self, name: str, expr, args, scalars=()) -> Nonlin:
        """NONLIN⁺ ``name := ψ(args; scalars)`` with ψ the sympy expression ``expr`` in the
        symbols of its arguments."""
        return self._add_coordinatewise("nonlin", name, expr, args, scalars)

    def expression(self, expr, instruction: str | None = None) -> sp.Basic:
        """``expr`` as a sympy expression: a string is read by the ψ grammar
        (:func:`tensorprog.ir.expression.parse_expression`) over this program's vectors and
        scalars, never evaluated as code; a sympy object or a number is taken as it is."""
        if not isinstance(expr, str):
            return as_expression(expr, {}, instruction=instruction)
        names = {n: symbol(n) for n in self.order if self.node(n).output != "matrix"}
        return as_expression(expr, names, instruction=instruction)

    def add_inferred(self, kind: str, name: str, expr) -> Nonlin | Moment:
        """Add a NONLIN (``kind="nonlin"``) or MOMENT whose arguments are the variables that
        ``expr`` mentions, in program order."""
        expr = self.expression(expr)
        names = {s.name for s in expr.free_symbols}
        order = sorted((n for n in names if n in self.graph), key=self.order.index)
        vectors = [n for n in order if self.node(n).is_vector]
        scalars = [n for n in order if self.node(n).is_scalar]
        return self._add_coordinatewise(kind, name, expr, vectors, scalars)

    def _add_coordinatewise(self, kind, name, expr, args, scalars):
        args, scalars = tuple(args), tuple(scalars)
        family = family_of(self, args + scalars)
        return self.append(_COORDINATEWISE[kind](name, family, self.expression(expr), args,
                                                 scalars))

    def set_readout(self, node: str, var: float, bias_var: float = 0.0,
                    trainable: bool = True, slots=None) -> Readout:
        """The output layer ``f(ξ) = v·x(ξ)/√n + b``; see :class:`Readout` for ``slots`` (one
        readout vector per slot, for vectors of a family other than the inputs)."""
        instruction = Readout(node, var, bias_var).headline()
        n = require(self, node, "vector", instruction)
        if slots is None and n.family != INPUTS:
            raise ProgramError(
                f"the readout must read a vector of the inputs family (one per input), not of "
                f"{n.family!r}; pool or select it into the inputs family first, or give "
                "slots=... for one readout vector per slot (a flatten readout)", instruction)
        if slots is not None:
            slots = np.asarray(slots)
            if n.family == SHARED or slots.shape != (self.family_size(n.family),) or \
                    not np.issubdtype(slots.dtype, np.integer) or slots.min() < 0:
                raise ProgramError(
                    f"slots must hold one integer ≥ 0 per member of {n.family!r}", instruction)
            slots = tuple(int(v) for v in slots)
        if self.readout is not None:
            raise ProgramError("the program already has an output", instruction)
        check_variance(var, instruction)
        check_variance(bias_var, instruction)
        self.readout = Readout(node, float(var), float(bias_var), bool(trainable), slots=slots)
        return self.readout

    # ------------------------------------------------------------------ whole-program
    def validate(self) -> None:
        """Check the whole program: acyclic, arguments defined before use."""
        if not nx.is_directed_acyclic_graph(self.graph):
            cycle = nx.find_cycle(self.graph)
            name = cycle[0][1]
            raise ProgramError(
                f"the program has a cycle {' -> '.join(e[0] for e in cycle)} -> {cycle[0][0]}; "
                "a variable cannot depend on itself (unroll recurrences over time steps)",
                name, self.line_of(name))
        position = {n: i for i, n in enumerate(self.order)}
        for u, v in self.graph.edges:
            if position[u] > position[v]:
                raise ProgramError(f"{u!r} is used before it is defined", v, self.line_of(v))

    def require_output(self) -> Readout:
        if self.readout is None:
            raise ProgramError(
                f"program {self.name!r} has no output: add one with p.output(x, var=..., "
                "bias_var=...)")
        return self.readout

    def trained_matrices(self) -> list[InitialMatrix]:
        return [n for n in self.nodes("matrix") if n.trainable]

    def __repr__(self) -> str:
        return f"<Program {self.name!r}: {len(self.order)} nodes, {self.num_inputs} inputs>"

    def __eq__(self, other) -> bool:
        if not isinstance(other, ProgramGraph):
            return NotImplemented
        if (self.name, self.order, self.num_inputs, self.readout, self.families) != (
                other.name, other.order, other.num_inputs, other.readout, other.families):
            return False
        if not all(same(self.node(n), other.node(n)) for n in self.order):
            return False
        if set(self.data) != set(other.data):
            return False
        if any(not np.array_equal(self.data[k], other.data[k]) for k in self.data):
            return False
        keys = set(self.init_cov) | set(other.init_cov)
        return all(np.array_equal(self.init_cov_of(*k), other.init_cov_of(*k)) for k in keys)

    __hash__ = None
