"""The NETSOR⊤+ intermediate representation: a typed program held in a ``networkx`` graph.

A :class:`Program` is a sequence of nodes (TP IIb Def. 4.1 and B.1):

===========  =========================================================================
kind         meaning
===========  =========================================================================
``matrix``   initial matrix ``W`` (n×n, entries N(0, σ²/n) in NTK parametrization)
``vector``   initial vector (a family over the inputs or one shared vector); Gaussian
``scalar``   initial scalar (a deterministic number)
``matmul``   MATMUL ``h := W x`` or ``h := Wᵀ x``
``nonlin``   NONLIN⁺ ``x := ψ(x¹,…,xᵏ; θ₁,…,θ_l)`` coordinatewise
``moment``   MOMENT ``θ := (1/n) Σ_α ψ(x¹_α,…; θ…)``
``select``   a view ``x' := x[index]`` of members of a family (no arithmetic)
===========  =========================================================================

**Families.**  A vector node stands for the whole family ``{x(ξ_i)}_i`` over the program's N
inputs (family ``"inputs"``) or for one input-independent vector such as a bias (family
``"shared"``), DESIGN §3.  Scalars produced by MOMENT over an input family are likewise one
number per input.  An instruction whose arguments mix the two families broadcasts the shared
ones.

The graph has an edge from every argument to the instruction that uses it, with attributes
``role`` (``"matrix"``, ``"arg"``, ``"scalar"``) and ``position``.  ψ is stored as a sympy
expression in symbols named after its arguments (see :mod:`tensorprog.functions`).
"""
from __future__ import annotations

import keyword
import re
import warnings
from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import sympy as sp

from ..errors import ProgramError, PseudoLipschitzWarning
from ..functions import NOT_PSEUDO_LIPSCHITZ
from .parametrization import NTK_FIXED, NTK_HIDDEN, Parametrization

INPUTS = "inputs"
SHARED = "shared"
KINDS = ("matrix", "vector", "scalar", "matmul", "nonlin", "moment", "select")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def symbol(name: str) -> sp.Symbol:
    """The sympy symbol that stands for the node ``name`` inside ψ expressions."""
    return sp.Symbol(name, real=True)


@dataclass
class Node:
    """One node of a program.  ``attrs`` holds the kind-specific data (see :class:`Program`)."""

    name: str
    kind: str
    family: str | None
    attrs: dict = field(default_factory=dict)

    @property
    def is_vector(self) -> bool:
        return self.kind in ("vector", "matmul", "nonlin", "select")

    @property
    def is_scalar(self) -> bool:
        return self.kind in ("scalar", "moment")

    @property
    def is_gvar(self) -> bool:
        """G-vars are initial vectors and MATMUL results (TP IIb Def. 5.4)."""
        return self.kind in ("vector", "matmul")

    @property
    def is_xvar(self) -> bool:
        """X-vars are NONLIN results."""
        return self.kind == "nonlin"


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


@dataclass
class Readout:
    """The output layer ``f(ξ) = v·x(ξ)/√n + b``, ``v_α ~ N(0, var)``, ``b ~ N(0, bias_var)``.

    With ``slots`` the readout reads a vector of another family (e.g. every position of a CNN,
    the "flatten" readout): ``f(ξ_i) = Σ_{a owned by i} v_{slots[a]}·x_a/√(nP) + b`` with P
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


class Program:
    """A NETSOR⊤+ program on N inputs, stored as a ``networkx.DiGraph``.

    Build one with the operator-overloading builder (``p.embed``, ``p.matrix``, ``W @ x``,
    ``tp.relu(h)``; see :mod:`tensorprog.ir.builder`) or parse its textual form with
    :meth:`from_text`.  Every ``add_*`` method validates its instruction and raises
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

    # ------------------------------------------------------------------ access
    def __contains__(self, name: str) -> bool:
        return name in self.graph

    def node(self, name: str) -> Node:
        try:
            return self.graph.nodes[name]["node"]
        except KeyError:
            raise ProgramError(f"no variable named {name!r} in program {self.name!r}") from None

    def nodes(self, kind: str | None = None) -> list[Node]:
        """Nodes in program order (optionally only those of one kind)."""
        out = [self.graph.nodes[n]["node"] for n in self.order]
        return out if kind is None else [n for n in out if n.kind == kind]

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
        return list(self.node(name).attrs.get("args", ()))

    def scalars(self, name: str) -> list[str]:
        return list(self.node(name).attrs.get("scalars", ()))

    def users(self, name: str) -> list[str]:
        """Instructions that use ``name``, in program order."""
        succ = set(self.graph.successors(name))
        return [n for n in self.order if n in succ]

    def matmuls_of(self, matrix: str) -> list[Node]:
        """Every MATMUL by ``matrix`` (either orientation), in program order."""
        return [n for n in self.nodes("matmul") if n.attrs["matrix"] == matrix]

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

    def _check_new_name(self, name: str, instruction: str) -> None:
        if not isinstance(name, str) or not _NAME.match(name) or keyword.iskeyword(name):
            raise ProgramError(
                f"{name!r} is not a valid variable name: use letters, digits and '_'",
                instruction,
            )
        if name in self.graph:
            raise ProgramError(
                f"variable {name!r} is already defined (line {self.line_of(name)}); "
                "every variable is assigned once",
                instruction,
            )

    def _add(self, node: Node, instruction: str, edges=()) -> Node:
        self._check_new_name(node.name, instruction)
        self.graph.add_node(node.name, node=node)
        for src, role, pos in edges:
            self.graph.add_edge(src, node.name, role=role, position=pos)
        self.order.append(node.name)
        return node

    def _require(self, name: str, what: str, instruction: str) -> Node:
        if name not in self.graph:
            raise ProgramError(
                f"{name!r} is not defined before this instruction; define it earlier",
                instruction,
            )
        node = self.node(name)
        ok = {
            "matrix": node.kind == "matrix",
            "vector": node.is_vector,
            "scalar": node.is_scalar,
        }[what]
        if not ok:
            raise ProgramError(
                f"{name!r} is a {node.kind}, but a {what} is needed here"
                + (" (MATMUL multiplies a matrix by a vector)" if what != "scalar" else ""),
                instruction,
            )
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
                   tangent=None) -> Node:
        """Initial n×n matrix with entries N(0, var/n) (NTK parametrization: N(0,1)·σ/√n).

        A *generated* matrix (the weights a hypernetwork outputs) has an (N, N) covariance
        ``var`` over the inputs instead of a number: its entries are iid over (a, b) and
        ``Cov(W_ab(ξ_i), W_ab(ξ_j)) = var[i, j]/n``; ``tangent`` (N, N) is the tangent kernel of
        the entries with respect to the generator's parameters, which weights the matrix's NTK
        contribution in place of σ².  Generated matrices act on vectors of the inputs family.
        """
        instruction = f"MATRIX: {name} ~ N(0, ...)"
        if shape is not None and (len(shape) != 2 or shape[0] != shape[1]):
            raise ProgramError(
                f"matrix shape {tuple(shape)} is not square: a program has one width n and every "
                "matrix is n×n (TP IIb Setup B.2); express other widths as separate programs",
                instruction,
            )
        attrs = dict(trainable=bool(trainable), parametrization=parametrization)
        if np.ndim(var) == 0:
            _check_variance(var, instruction)
            attrs["var"] = float(var)
            if tangent is not None:
                raise ProgramError("tangent= is only for generated matrices (var an (N, N) "
                                   "covariance)", instruction)
        else:
            for key, arr in (("var", var), ("tangent", tangent)):
                if arr is None:
                    raise ProgramError("a generated matrix needs tangent=, the (N, N) tangent "
                                       "kernel of its entries", instruction)
                arr = np.asarray(arr, dtype=float)
                self._set_inputs(arr.shape[0], instruction)
                if arr.shape != (self.num_inputs, self.num_inputs):
                    raise ProgramError(f"{key} must be an (N, N) array over the inputs",
                                       instruction)
                _check_psd(arr, instruction)
                attrs[key] = arr
        return self._add(Node(name, "matrix", None, attrs), instruction)

    def is_generated(self, matrix: str) -> bool:
        """Whether ``matrix`` has input-dependent entries (see :meth:`add_matrix`)."""
        return isinstance(self.node(matrix).attrs["var"], np.ndarray)

    def add_embedding(self, name: str, X, var: float, bias_var: float = 0.0,
                      weight: str | None = None, trainable: bool = True,
                      data_name: str | None = None, family: str = INPUTS) -> Node:
        """Input layer ``h(ξ) = Uξ + b``, ``U_ij ~ N(0, var/d)``, ``b ~ N(0, bias_var)``.

        Its Z is Gaussian with covariance ``var·ξ_iᵀξ_j/d + bias_var`` (DESIGN §3).  Embeddings
        naming the same ``weight`` share (U, b) and are correlated; others are independent.
        With ``family`` other than the inputs, row a of ``X`` feeds member a of that family
        (e.g. the image patch under a convolution's first filter at one position).
        """
        instruction = f"INPUT: {name} := embed(...)"
        X = np.asarray(X, dtype=float)
        if X.ndim == 1:
            X = X[:, None]
        if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
            raise ProgramError(
                f"inputs must be a non-empty (N, d) array, got shape {X.shape}", instruction)
        if not np.all(np.isfinite(X)):
            raise ProgramError("inputs contain NaN or infinity", instruction)
        _check_variance(var, instruction)
        _check_variance(bias_var, instruction)
        if family == INPUTS:
            self._set_inputs(X.shape[0], instruction)
        elif self.family_size(family) != X.shape[0]:
            raise ProgramError(f"family {family!r} has {self.family_size(family)} members but "
                               f"the data has {X.shape[0]} rows", instruction)
        if data_name is None:
            data_name = self.fresh_name("X")
        if data_name in self.data and not np.array_equal(self.data[data_name], X):
            raise ProgramError(f"data {data_name!r} already holds other inputs", instruction)
        self.data[data_name] = X
        weight = weight or f"U_{name}"
        node = self._add(Node(name, "vector", family, dict(
            source="embed", data=data_name, var=float(var), bias_var=float(bias_var),
            weight=weight, trainable=bool(trainable), parametrization=NTK_FIXED)), instruction)
        for other in self.nodes("vector"):
            if other.attrs.get("source") == "embed" and other.attrs["weight"] == weight:
                if (other.attrs["var"], other.attrs["bias_var"]) != (float(var), float(bias_var)):
                    raise ProgramError(
                        f"embeddings sharing weight {weight!r} must have the same var and bias_var",
                        instruction)
                Xo = self.data[other.attrs["data"]]
                if Xo.shape[1] != X.shape[1]:
                    raise ProgramError(
                        f"embeddings sharing weight {weight!r} need inputs of the same dimension",
                        instruction)
                cov = var * X @ Xo.T / X.shape[1] + bias_var
                self.init_cov[(name, other.name)] = cov
                self.init_cov[(other.name, name)] = cov.T
        return node

    def add_vector(self, name: str, cov, cross: dict | None = None, trainable: bool = False,
                   source: str = "given", family: str | None = None, tangent=None) -> Node:
        """Initial vector: shared (``cov`` a number, the coordinates' variance) or a family over
        the inputs (``cov`` an (N, N) positive semidefinite array).  ``cross`` maps earlier
        initial vectors to cross-covariance arrays.  Biases are shared trainable vectors.

        A trainable family's NTK share is ``K ∘ E[Z^{dv} Z^{dv}]`` with ``K`` its covariance
        (exact when the vector is a linear layer of its own parameters); ``tangent`` gives
        another K, the tangent kernel of a vector produced by a network that is trained (a
        hypernetwork's output, for instance)."""
        instruction = f"VECTOR: {name} ~ N(0, ...)"
        cov = np.asarray(cov, dtype=float)
        if tangent is not None:
            tangent = np.asarray(tangent, dtype=float)
            if not trainable or cov.ndim != 2 or tangent.shape != cov.shape:
                raise ProgramError("tangent= is the (m, m) tangent kernel of a trainable vector "
                                   "family, of the shape of its covariance", instruction)
            _check_psd(tangent, instruction)
        if cov.ndim == 0:
            _check_variance(float(cov), instruction)
            family, cov = SHARED, cov.reshape(1, 1)
        elif cov.ndim == 2 and cov.shape[0] == cov.shape[1]:
            family = family or INPUTS
            if family == INPUTS:
                self._set_inputs(cov.shape[0], instruction)
            elif self.family_size(family) != cov.shape[0]:
                raise ProgramError(f"family {family!r} has {self.family_size(family)} members "
                                   f"but the covariance is {cov.shape}", instruction)
            _check_psd(cov, instruction)
        else:
            raise ProgramError(
                f"covariance must be a number or a square (N, N) array, got shape {cov.shape}",
                instruction)
        node = Node(name, "vector", family, dict(
            source=source, trainable=bool(trainable),
            parametrization=NTK_FIXED))
        if family == SHARED:
            node.attrs["var"] = float(cov[0, 0])
        if tangent is not None:
            node.attrs["tangent"] = tangent
        self._check_new_name(name, instruction)
        pending = {}
        for other, c in (cross or {}).items():
            o = self._require(other, "vector", instruction)
            if o.kind != "vector":
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
            _check_psd(np.block(blocks), instruction)
        self._add(node, instruction)
        self.init_cov[(name, name)] = cov
        for other, c in pending.items():
            self.init_cov[(name, other)] = c
            self.init_cov[(other, name)] = c.T
        return node

    def add_scalar(self, name: str, value: float) -> Node:
        """Initial scalar (a deterministic number)."""
        instruction = f"SCALAR: {name} := {value}"
        value = float(value)
        if not np.isfinite(value):
            raise ProgramError("an initial scalar must be a finite number", instruction)
        return self._add(Node(name, "scalar", SHARED, dict(value=value)), instruction)

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
        tangent = self.node(a).attrs.get("tangent")
        if tangent is not None:
            return tangent if a == b else np.zeros((len(tangent), len(tangent)))
        return self.init_cov_of(a, b)

    def init_cov_of(self, a: str, b: str) -> np.ndarray:
        """Covariance of the Gaussian coordinates of initial vectors ``a`` and ``b``."""
        if (a, b) in self.init_cov:
            return self.init_cov[(a, b)]
        na, nb = self.node(a), self.node(b)
        if a == b and na.attrs.get("source") == "embed":
            X = self.data[na.attrs["data"]]
            cov = na.attrs["var"] * X @ X.T / X.shape[1] + na.attrs["bias_var"]
            self.init_cov[(a, a)] = cov
            return cov
        return np.zeros((self.family_size(na.family), self.family_size(nb.family)))

    # ------------------------------------------------------------------ instructions
    def add_matmul(self, name: str, matrix: str, arg: str, transpose: bool = False) -> Node:
        """MATMUL ``name := W arg`` (or ``Wᵀ arg``)."""
        t = "^T" if transpose else ""
        instruction = f"MATMUL: {name} := {matrix}{t} {arg}"
        self._require(matrix, "matrix", instruction)
        a = self._require(arg, "vector", instruction)
        if self.is_generated(matrix) and a.family != INPUTS:
            raise ProgramError(
                f"{matrix!r} is generated per input, so it multiplies vectors of the inputs "
                f"family, not of {a.family!r}", instruction)
        return self._add(Node(name, "matmul", a.family, dict(
            matrix=matrix, transpose=bool(transpose), args=(arg,))), instruction,
            [(matrix, "matrix", 0), (arg, "arg", 0)])

    def add_select(self, name: str, arg: str, index, family: str) -> Node:
        """SELECT ``name := arg[index]``: member j of the new vector (in ``family``) is member
        ``index[j]`` of ``arg`` (``-1``: the zero vector)."""
        instruction = f"SELECT: {name} := {arg}[...] in {family}"
        a = self._require(arg, "vector", instruction)
        size = self.family_size(family)
        index = np.asarray(index)
        src = self.family_size(a.family)
        if index.shape != (size,) or not np.issubdtype(index.dtype, np.integer) or \
                (size and (index.min() < -1 or index.max() >= src)):
            raise ProgramError(
                f"index must hold {size} integers in [-1, {src}) (one per member of {family!r})",
                instruction)
        return self._add(Node(name, "select", family, dict(
            args=(arg,), index=index.astype(np.intp))), instruction, [(arg, "arg", 0)])

    def add_nonlin(self, name: str, expr, args, scalars=()) -> Node:
        """NONLIN⁺ ``name := ψ(args; scalars)`` with ψ the sympy expression ``expr`` in the
        symbols of its arguments."""
        return self._add_coordinatewise("nonlin", name, expr, args, scalars)

    def add_moment(self, name: str, expr, args, scalars=()) -> Node:
        """MOMENT ``name := avg ψ(args; scalars)``, the scalar ``(1/n) Σ_α ψ(...)``."""
        return self._add_coordinatewise("moment", name, expr, args, scalars)

    def add_inferred(self, kind: str, name: str, expr) -> Node:
        """Add a NONLIN (``kind="nonlin"``) or MOMENT whose arguments are the variables that
        ``expr`` mentions, in program order."""
        expr = sp.sympify(expr)
        names = {s.name for s in expr.free_symbols}
        order = [n for n in self.order if n in names]
        vectors = [n for n in order if self.node(n).is_vector]
        scalars = [n for n in order if self.node(n).is_scalar]
        return self._add_coordinatewise(kind, name, expr, vectors, scalars)

    def _add_coordinatewise(self, kind, name, expr, args, scalars) -> Node:
        expr = sp.sympify(expr)
        head = "NONLIN" if kind == "nonlin" else "MOMENT"
        body = f"avg({expr})" if kind == "moment" else f"{expr}"
        instruction = f"{head}: {name} := {body}"
        args, scalars = tuple(args), tuple(scalars)
        nodes = [self._require(a, "vector", instruction) for a in args]
        for s in scalars:
            self._require(s, "scalar", instruction)
        if kind == "nonlin" and not args:
            raise ProgramError("a NONLIN needs at least one vector argument "
                               "(a function of scalars only is a scalar, not a vector)",
                               instruction)
        allowed = {symbol(a) for a in args + scalars}
        extra = expr.free_symbols - allowed
        if extra:
            raise ProgramError(
                f"ψ uses {sorted(map(str, extra))} which are not among its arguments "
                f"{list(args + scalars)}", instruction)
        for f in expr.atoms(sp.Function):
            if f.func in NOT_PSEUDO_LIPSCHITZ and not f.args[0].is_nonpositive and \
                    any(self.node(s.name).is_vector for s in f.args[0].free_symbols):
                warnings.warn(
                    f"{instruction}: {f.func.__name__} is not pseudo-Lipschitz (TP IIb Def. B.7); "
                    "the Master Theorem is not guaranteed for it", PseudoLipschitzWarning,
                    stacklevel=4)
        families = ({n.family for n in nodes} | {self.node(s).family for s in scalars}) - {SHARED}
        if len(families) > 1:
            raise ProgramError(
                f"arguments come from different families {sorted(families)}; bring them into "
                "one family with a SELECT first", instruction)
        family = families.pop() if families else SHARED
        edges = [(a, "arg", i) for i, a in enumerate(args)]
        edges += [(s, "scalar", i) for i, s in enumerate(scalars)]
        return self._add(Node(name, kind, family, dict(expr=expr, args=args, scalars=scalars)),
                         instruction, edges)

    def set_readout(self, node: str, var: float, bias_var: float = 0.0,
                    trainable: bool = True, slots=None) -> Readout:
        """The output layer ``f(ξ) = v·x(ξ)/√n + b`` (DESIGN §3); see :class:`Readout` for
        ``slots`` (one readout vector per slot, for vectors of a family other than the inputs)."""
        instruction = f"OUTPUT: readout({node}, var={var}, bias_var={bias_var})"
        n = self._require(node, "vector", instruction)
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
        _check_variance(var, instruction)
        _check_variance(bias_var, instruction)
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

    def trained_matrices(self) -> list[Node]:
        return [n for n in self.nodes("matrix") if n.attrs["trainable"]]

    def copy(self) -> "Program":
        q = type(self)(self.name)
        q.graph = self.graph.copy()
        for n in q.graph.nodes:
            old = q.graph.nodes[n]["node"]
            q.graph.nodes[n]["node"] = Node(old.name, old.kind, old.family, dict(old.attrs))
        q.order = list(self.order)
        q.num_inputs = self.num_inputs
        q.data = dict(self.data)
        q.init_cov = dict(self.init_cov)
        q.readout = self.readout
        q.families = dict(self.families)
        q._counters = dict(self._counters)
        return q

    def reduced(self) -> "Program":
        """The reduced form of TP IIb Definition 5.4: NONLIN arguments are G-vars only and
        MATMUL arguments X-vars only.  Chains of NONLINs are composed into one ψ and an
        identity NONLIN is inserted before a MATMUL (or readout) of a G-var."""
        from .reduce import reduce_program

        return reduce_program(self)

    # ------------------------------------------------------------------ text
    def to_text(self) -> str:
        """The textual form (TP IIb Algorithm 1 style); :meth:`from_text` parses it back."""
        from .text import program_to_text

        return program_to_text(self)

    @classmethod
    def from_text(cls, text: str, data: dict | None = None) -> "Program":
        """Parse the textual form; ``data`` supplies input arrays printed without values."""
        from .text import program_from_text

        return program_from_text(text, cls=cls, data=data)

    def __str__(self) -> str:
        from .text import program_to_text

        return program_to_text(self, data=False)

    def __repr__(self) -> str:
        return f"<Program {self.name!r}: {len(self.order)} nodes, {self.num_inputs} inputs>"

    def __eq__(self, other) -> bool:
        if not isinstance(other, Program):
            return NotImplemented
        if (self.name, self.order, self.num_inputs, self.readout, self.families) != (
                other.name, other.order, other.num_inputs, other.readout, other.families):
            return False
        for n in self.order:
            a, b = self.node(n), other.node(n)
            if (a.kind, a.family) != (b.kind, b.family) or set(a.attrs) != set(b.attrs):
                return False
            for k, v in a.attrs.items():
                w = b.attrs[k]
                if isinstance(v, np.ndarray) or isinstance(w, np.ndarray):
                    if not np.array_equal(v, w):
                        return False
                elif v != w:
                    return False
        if set(self.data) != set(other.data):
            return False
        if any(not np.array_equal(self.data[k], other.data[k]) for k in self.data):
            return False
        keys = set(self.init_cov) | set(other.init_cov)
        return all(np.array_equal(self.init_cov_of(*k), other.init_cov_of(*k)) for k in keys)

    __hash__ = None


def _check_variance(var, instruction: str) -> None:
    try:
        ok = float(var) >= 0 and np.isfinite(float(var))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ProgramError(f"variance {var!r} must be a finite number ≥ 0", instruction)


def _check_psd(cov: np.ndarray, instruction: str) -> None:
    if not np.all(np.isfinite(cov)):
        raise ProgramError("covariance contains NaN or infinity", instruction)
    if not np.allclose(cov, cov.T, rtol=1e-10, atol=1e-12):
        raise ProgramError("covariance is not symmetric", instruction)
    eig = np.linalg.eigvalsh((cov + cov.T) / 2)
    if eig.min() < -1e-9 * max(1.0, abs(eig).max()):
        raise ProgramError(
            f"covariance is not positive semidefinite (smallest eigenvalue {eig.min():.3g}); "
            "pass a valid covariance, e.g. A @ A.T", instruction)
