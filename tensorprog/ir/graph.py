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
        #: data name → how that data array is computed from the program's inputs as a
        #: researcher holds them (e.g. a CNN's patches from its images:
        #: :class:`tensorprog.nn.convolution.ImagePatches`); compiled kernels take those inputs
        self.input_views: dict[str, object] = {}

    def empty_like(self, families: dict | None = None, counters: bool = False):
        """A program like this one with no instructions yet: the start of a rewrite.

        It has the same class, name, inputs, data and initial covariances.

        Parameters
        ----------
        families : dict, optional
            Families to use instead of this program's.
        counters : bool
            Keep the fresh-name counters (so that new names do not collide with this program's).

        Returns
        -------
        Program
            The empty program.

        Example
        -------
        >>> p = tp.demo_program()
        >>> q = p.empty_like()
        >>> q.num_inputs, q.order
        (2, [])
        """
        q = type(self)(self.name)
        q.num_inputs, q.data, q.init_cov = self.num_inputs, dict(self.data), dict(self.init_cov)
        q.families = dict(self.families if families is None else families)
        q.input_views = dict(self.input_views)
        if counters:
            q._counters = dict(self._counters)
        return q

    # ------------------------------------------------------------------ access
    def __contains__(self, name: str) -> bool:
        return name in self.graph

    def node(self, name: str) -> Instruction:
        """The instruction record defining ``name``.

        Parameters
        ----------
        name : str
            Any variable of the program: a vector, a scalar or a matrix.

        Returns
        -------
        Instruction
            Its record (:mod:`tensorprog.ir.instructions`).

        Raises
        ------
        ProgramError
            When the program has no such variable.

        Example
        -------
        >>> tp.demo_program().node("h2")
        MatMul(name='h2', family='inputs', matrix='W', arg='x1', transpose=False)
        """
        try:
            return self.graph.nodes[name]["node"]
        except KeyError:
            raise ProgramError(f"no variable named {name!r} in program {self.name!r}") from None

    def nodes(self, kind: str | None = None) -> list[Instruction]:
        """The instruction records in program order, optionally only those of one kind.

        Parameters
        ----------
        kind : str, optional
            One of :data:`~tensorprog.ir.instructions.KINDS` (``"matrix"``, ``"vector"``,
            ``"scalar"``, ``"matmul"``, ``"nonlin"``, ``"moment"``, ``"select"``, ...).

        Returns
        -------
        list of Instruction

        Raises
        ------
        ValueError
            On an unknown kind.

        Example
        -------
        >>> p = tp.demo_program()
        >>> [n.name for n in p.nodes()], [n.name for n in p.nodes("matmul")]
        (['h1', 'W', 'x1', 'h2', 'y'], ['h2'])
        """
        out = [self.graph.nodes[n]["node"] for n in self.order]
        if kind is None:
            return out
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        return [n for n in out if n.kind == kind]

    def family_size(self, family: str) -> int:
        """The number of members of ``family``.

        Parameters
        ----------
        family : str
            A family of the program (``"inputs"``, ``"shared"`` or a declared one).

        Returns
        -------
        int

        Raises
        ------
        ProgramError
            When the family does not exist.

        Example
        -------
        >>> tp.demo_program().family_size("inputs")
        2
        """
        return self.get_family(family).size

    def get_family(self, family: str) -> Family:
        """The :class:`Family` called ``family`` (``docs/theory.md`` §3.2).

        Parameters
        ----------
        family : str
            ``"inputs"``, ``"shared"`` or the name given to :meth:`add_family`.

        Returns
        -------
        Family
            Its name, size and owner array.

        Raises
        ------
        ProgramError
            When the family does not exist, saying how to declare it.

        Example
        -------
        >>> tp.demo_program().get_family("inputs")
        Family(name='inputs', size=2, owner=array([0, 1]))
        """
        if family not in self.families:
            if family == INPUTS:
                raise ProgramError(
                    f"program {self.name!r} has no inputs yet: add an input with p.embed(X, ...) "
                    "or an initial vector family with p.vector(name, cov) first")
            raise ProgramError(f"no family {family!r}: declare it with p.family(name, owner)")
        return self.families[family]

    def owner_matrix(self, family: str) -> np.ndarray:
        """The 0/1 matrix of which input owns each member of ``family``.

        Kernels between families sum over the members each input owns with it,
        ``Θ = O_Aᵀ Θ_AB O_B`` (``docs/theory.md`` §3.2).

        Parameters
        ----------
        family : str
            The family whose members are assigned to inputs.

        Returns
        -------
        numpy.ndarray, shape (size, N)
            All ones for an input-independent family.

        Raises
        ------
        ProgramError
            When ``family`` is not declared.

        Example
        -------
        >>> p = tp.demo_program()
        >>> p.family("pixels", [0, 0, 1])
        'pixels'
        >>> p.owner_matrix("pixels")
        array([[1., 0.],
               [1., 0.],
               [0., 1.]])
        """
        fam = self.get_family(family)
        if fam.owner is None:
            return np.ones((fam.size, self.num_inputs))
        out = np.zeros((fam.size, self.num_inputs))
        out[np.arange(fam.size), fam.owner] = 1.0
        return out

    def args(self, name: str) -> list[str]:
        """The vector arguments of the instruction defining ``name``, in position order.

        Parameters
        ----------
        name : str
            A MATMUL, NONLIN, MOMENT or SELECT of the program (initial variables have none).

        Returns
        -------
        list of str

        Raises
        ------
        ProgramError
            When ``name`` is not a variable of the program.

        Example
        -------
        >>> p = tp.demo_program()
        >>> p.args("h2"), p.args("x1")
        (['x1'], ['h1'])
        """
        return list(self.node(name).args)

    def matmuls_of(self, matrix: str) -> list[MatMul]:
        """Every MATMUL by ``matrix`` (either orientation), in program order.

        Parameters
        ----------
        matrix : str
            A matrix of the program.

        Returns
        -------
        list of MatMul

        Example
        -------
        >>> p = tp.demo_program()
        >>> [m.name for m in p.matmuls_of("W")]
        ['h2']
        """
        uses = [v for _, v, role in self.graph.out_edges(matrix, data="role") if role == "matrix"]
        return [self.node(v) for v in sorted(uses, key=self.position)]

    def position(self, name: str) -> int:
        """The index of ``name`` in program order (constant time: a deep program asks it of
        every variable).

        Parameters
        ----------
        name : str
            A variable of the program (vector, scalar or matrix).

        Returns
        -------
        int
            Its index in :attr:`order`.

        Example
        -------
        >>> p = tp.demo_program()
        >>> p.order
        ['h1', 'W', 'x1', 'h2', 'y']
        >>> p.position("h2")
        3
        """
        index = self.__dict__.get("_positions")
        if index is None or len(index) > len(self.order):
            index = self._positions = {}
        for i in range(len(index), len(self.order)):  # instructions are only ever appended
            index[self.order[i]] = i
        i = index.get(name)
        if i is None or self.order[i] != name:  # not a variable, or the order was rewritten
            self._positions = None
            return self.order.index(name)
        return i

    def covariance_partners(self, name: str) -> list[str]:
        """The variables defined before ``name`` that have a given covariance with it
        (``init_cov``: initial vectors and embeddings), in program order.

        Parameters
        ----------
        name : str
            An initial vector of the program.

        Returns
        -------
        list of str

        Example
        -------
        >>> p = tp.Program("demo")
        >>> u = p.vector("u", np.eye(2))
        >>> v = p.vector("v", np.eye(2), cross={"u": 0.5 * np.eye(2)})
        >>> p.covariance_partners("v")
        ['u']
        """
        key = (len(self.init_cov), len(self.order))
        cached = self.__dict__.get("_partners")
        if cached is None or cached[0] != key:
            partners: dict[str, list[str]] = {}
            for a, b in self.init_cov:
                if a != b and b in self.graph:
                    partners.setdefault(a, []).append(b)
            cached = self._partners = (key, partners)
        mine = self.position(name)
        return sorted((b for b in cached[1].get(name, ()) if self.position(b) < mine),
                      key=self.position)

    def line_of(self, name: str) -> int:
        """The line of ``name`` in the textual form (:meth:`to_text`).

        Lines count from 1: the header, then one FAMILY line per declared family, then one line per
        variable.  Error messages cite this line.

        Parameters
        ----------
        name : str
            A vector, scalar or matrix of the program.

        Returns
        -------
        int

        Example
        -------
        >>> tp.demo_program().line_of("h2")
        5
        """
        declared = sum(1 for f in self.families if f not in (SHARED, INPUTS))
        return self.position(name) + 2 + declared

    # ------------------------------------------------------------------ naming
    def fresh_name(self, prefix: str) -> str:
        """A new variable name ``<prefix><k>`` that the program does not use yet.

        Parameters
        ----------
        prefix : str
            The name's stem.

        Returns
        -------
        str

        Example
        -------
        >>> tp.demo_program().fresh_name("h")
        'h3'
        """
        k = self._counters.get(prefix, 0)
        while True:
            k += 1
            name = f"{prefix}{k}"
            if name not in self.graph:
                self._counters[prefix] = k
                return name

    # ------------------------------------------------------------------ appending records
    def append(self, node: Instruction, checked: bool = True) -> Instruction:
        """Append the instruction record ``node`` to the program.

        Parameters
        ----------
        node : Instruction
            A record of :mod:`tensorprog.ir.instructions`.
        checked : bool
            Run the check pass (:mod:`tensorprog.ir.check`) first; False only for a record copied
            unchanged from a program with the same earlier variables.

        Returns
        -------
        Instruction
            ``node``.

        Raises
        ------
        ProgramError
            When the check pass rejects the record, naming its instruction.

        Example
        -------
        >>> from tensorprog.ir.instructions import InitialScalar
        >>> p = tp.Program("demo")
        >>> p.append(InitialScalar("c", 0.5))
        InitialScalar(name='c', value=0.5, family='shared')
        """
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
        """Replace fields of the (immutable) record of ``name``, e.g. its parametrization.

        The record is frozen (:mod:`tensorprog.ir.instructions`), so a change is a new record
        put in the old one's place; nothing is checked again, so change only fields that do not
        alter what the instruction computes from (learning rates, parametrizations).

        Parameters
        ----------
        name : str
            The variable whose record changes.
        **changes
            New values of fields of its record class.

        Returns
        -------
        Instruction
            The new record.

        Raises
        ------
        ProgramError
            When the program has no such variable.
        TypeError
            When a field does not belong to the record's class.

        Example
        -------
        >>> p = tp.demo_program()
        >>> p.replace("W", trainable=False).trainable, p.node("W").trainable
        (False, False)
        """
        node = dataclasses.replace(self.node(name), **changes)
        self.graph.nodes[name]["node"] = node
        return node

    def declare_inputs(self, n: int) -> None:
        """Declare the N inputs (the ``"inputs"`` family) before any vector of it exists.

        Needed when the first layer acts on another family (the pixels of a CNN).

        Parameters
        ----------
        n : int
            The number of inputs N.

        Raises
        ------
        ProgramError
            When ``n`` is not a positive integer or differs from inputs already declared.

        Example
        -------
        >>> p = tp.Program("cnn")
        >>> p.declare_inputs(3)
        >>> p.num_inputs
        3
        """
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
        """Initial n×n matrix with entries ``N(0, var/n)`` (TP IIb Setup B.2 (1)).

        NTK parametrization: ``N(0, 1)·σ/√n`` (``docs/theory.md`` §3.3).  A *generated* matrix (the
        weights a hypernetwork outputs) has an (N, N) covariance ``var`` over the inputs instead of
        a number: its entries are iid over (a, b) and ``Cov(W_ab(ξ_i), W_ab(ξ_j)) = var[i, j]/n``;
        ``tangent`` (N, N) is the tangent kernel of the entries with respect to the generator's
        parameters, which weights the matrix's NTK contribution in place of σ².  Generated matrices
        act on vectors of the inputs family.

        Parameters
        ----------
        name : str
            The matrix's name.
        var : float or array_like, shape (N, N)
            σ_W², or the input covariance of a generated matrix.
        trainable : bool
            Whether the matrix contributes to the NTK.
        parametrization : Parametrization
            Its abc-parametrization (default: NTK, hidden layer).
        shape : tuple, optional
            Checked to be square.
        tangent : array_like, shape (N, N), optional
            Required for a generated matrix.

        Returns
        -------
        InitialMatrix
            The appended record.

        Raises
        ------
        ProgramError
            On a negative variance, a non-square shape, a generated matrix without ``tangent``, or a
            name already taken.

        Example
        -------
        >>> p = tp.Program("demo")
        >>> p.add_matrix("A", 1.5).var
        1.5
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
        """Whether ``matrix`` has input-dependent entries (see :meth:`add_matrix`).

        Parameters
        ----------
        matrix : str
            A matrix of the program (initial, or generated by :mod:`tensorprog.nn.hypernet`).

        Returns
        -------
        bool

        Example
        -------
        >>> tp.demo_program().is_generated("W")
        False
        """
        return self.node(matrix).generated

    def add_embedding(self, name: str, X, var: float, bias_var: float = 0.0,
                      weight: str | None = None, trainable: bool = True,
                      data_name: str | None = None, family: str = INPUTS) -> Embedding:
        """Input layer ``h(ξ) = Uξ + b``, ``U_ij ~ N(0, var/d)``, ``b ~ N(0, bias_var)``.

        Its Z is Gaussian with covariance ``var·ξ_iᵀξ_j/d + bias_var`` (``docs/theory.md`` §3.1; TP
        IIb Def. 4.2).  Embeddings naming the same ``weight`` share (U, b) and are correlated;
        others are independent.  With ``family`` other than the inputs, row a of ``X`` feeds member
        a of that family (e.g. the image patch under a convolution's first filter at one position).

        Parameters
        ----------
        name : str
            The vector's name.
        X : array_like, shape (N, d)
            The inputs (or one row per member of ``family``).
        var, bias_var : float
            σ_U² and σ_b².
        weight : str, optional
            The name of (U, b) (default ``U_<name>``).
        trainable : bool
            Whether (U, b) contribute to the NTK.
        data_name : str, optional
            Name of the data array in the textual form (default: a fresh ``X<k>``).
        family : str
            The family of the vector.

        Returns
        -------
        Embedding
            The appended record.

        Raises
        ------
        ProgramError
            On an empty or non-finite ``X``, a negative variance, a row count that does not match,
            or ``data_name`` already holding other inputs.

        Example
        -------
        >>> p = tp.Program("demo")
        >>> p.add_embedding("h", np.eye(2), var=2.0, bias_var=0.1).weight
        'U_h'
        >>> p.init_cov_of("h", "h")
        array([[1.1, 0.1],
               [0.1, 1.1]])
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
        """Initial vector: shared, or a Gaussian family over the inputs (TP IIb Setup B.2 (2)).

        A trainable family's NTK share is ``K ∘ E[Z^{dv} Z^{dv}]`` with ``K`` its covariance (exact
        when the vector is a linear layer of its own parameters); ``tangent`` gives another K, the
        tangent kernel of a vector produced by a network that is trained (a hypernetwork's output,
        for instance).  Biases are shared trainable vectors.

        Parameters
        ----------
        name : str
            The vector's name.
        cov : float or array_like, shape (m, m)
            A number (shared: the coordinates' variance) or a positive semidefinite covariance over
            the family.
        cross : dict, optional
            ``{earlier initial vector: cross-covariance array}``.
        trainable : bool
            Whether the vector contributes to the NTK.
        source : str
            What the vector is (``"given"``, ``"bias"``, ``"readout"``), shown in the textual form.
        family : str, optional
            The family of a covariance array (default ``"inputs"``).
        tangent : array_like, shape (m, m), optional
            The NTK weight of a trainable family.

        Returns
        -------
        InitialVector
            The appended record.

        Raises
        ------
        ProgramError
            When a covariance or the joint covariance with ``cross`` is not positive semidefinite,
            shapes do not match, ``cross`` names something other than an initial vector, or
            ``tangent`` is given for a vector that is not a trainable family.

        Example
        -------
        >>> p = tp.Program("demo")
        >>> p.add_vector("v", np.eye(2)).family
        'inputs'
        >>> p.add_vector("b", 0.5, trainable=True, source="bias").family
        'shared'
        """
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
        """Initial scalar: a deterministic number (TP IIb Setup B.2 (3)).

        Parameters
        ----------
        name : str
            The scalar's name.
        value : float
            Its value.

        Returns
        -------
        InitialScalar
            The appended record.

        Raises
        ------
        ProgramError
            When the name is taken or the value is not a finite number.

        Example
        -------
        >>> p = tp.Program("demo")
        >>> p.add_scalar("c", 0.5)
        InitialScalar(name='c', value=0.5, family='shared')
        """
        return self.append(InitialScalar(name, float(value)))

    def add_family(self, name: str, owner) -> Family:
        """Declare a family whose member ``a`` belongs to input ``owner[a]`` (docs/theory.md §3.2).

        For example the pixels of every image: ``owner = np.repeat(np.arange(N), P)``.

        Parameters
        ----------
        name : str
            The family's name.
        owner : array_like of int
            One input index per member.

        Returns
        -------
        Family

        Raises
        ------
        ProgramError
            When the family exists, the inputs are not declared, or ``owner`` is not a non-empty
            integer array of input indices.

        Example
        -------
        >>> p = tp.demo_program()
        >>> p.add_family("pixels", np.repeat(np.arange(2), 2))
        Family(name='pixels', size=4, owner=array([0, 0, 1, 1]))
        """
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
        """The NTK weight ``K`` of the share ``K ∘ E[Z^{da} Z^{db}]`` of trainable vectors a, b.

        Parameters
        ----------
        a, b : str
            Two trainable initial vectors (embeddings, biases, given vectors).

        Returns
        -------
        numpy.ndarray
            Their covariance, or the ``tangent`` kernel given for the vector (zero between distinct
            vectors that have one).

        Example
        -------
        >>> tp.demo_program().tangent_of("h1", "h1")
        array([[1.1, 0.1],
               [0.1, 1.1]])
        """
        tangent = getattr(self.node(a), "tangent", None)
        if tangent is not None:
            return tangent if a == b else np.zeros((len(tangent), len(tangent)))
        return self.init_cov_of(a, b)

    def init_cov_of(self, a: str, b: str) -> np.ndarray:
        """The covariance of the Gaussian coordinates of initial vectors ``a`` and ``b``.

        Parameters
        ----------
        a, b : str
            Initial vectors (or embeddings) of the program.

        Returns
        -------
        numpy.ndarray, shape (m_a, m_b)
            Zero for independent vectors.

        Example
        -------
        >>> p = tp.demo_program()
        >>> b = p.bias("b", var=0.5)
        >>> p.init_cov_of("h1", "h1")
        array([[1.1, 0.1],
               [0.1, 1.1]])
        >>> p.init_cov_of("h1", "b")
        array([[0.],
               [0.]])
        """
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
        """MATMUL ``name := W arg`` (or ``Wᵀ arg``) (TP IIb Def. 4.1).

        Parameters
        ----------
        name : str
            The new vector's name.
        matrix : str
            A matrix of the program.
        arg : str
            A vector of the program.
        transpose : bool
            Multiply by ``Wᵀ``.

        Returns
        -------
        MatMul
            The appended record.

        Raises
        ------
        ProgramError
            When ``matrix`` is not a matrix, ``arg`` not a vector, or a generated matrix acts on
            another family than the inputs.

        Example
        -------
        >>> tp.demo_program().add_matmul("g", "W", "h1", transpose=True)
        MatMul(name='g', family='inputs', matrix='W', arg='h1', transpose=True)
        """
        family = self.node(arg).family if arg in self else INPUTS
        return self.append(MatMul(name, family, matrix, arg, bool(transpose)))

    def add_select(self, name: str, arg: str, index, family: str) -> Select:
        """SELECT ``name := arg[index]``: member j of ``name`` is member ``index[j]`` of ``arg``.

        ``-1`` selects the zero vector (padding); ``docs/theory.md`` §2.1.

        Parameters
        ----------
        name : str
            The new vector's name.
        arg : str
            A vector of the program.
        index : array_like of int
            One index per member of ``family``.
        family : str
            The new vector's family.

        Returns
        -------
        Select
            The appended record.

        Raises
        ------
        ProgramError
            When the index does not fit the families.

        Example
        -------
        >>> tp.demo_program().add_select("s", "h1", [1, 0], "inputs").index
        array([1, 0])
        """
        index = np.asarray(index)
        if np.issubdtype(index.dtype, np.integer):
            index = index.astype(np.intp)
        return self.append(Select(name, family, arg, index))

    def add_nonlin(self, name: str, expr, args, scalars=()) -> Nonlin:
        """NONLIN⁺ ``name := ψ(args; scalars)`` (TP IIb Eq. 60).

        Parameters
        ----------
        name : str
            The new vector's name.
        expr : sympy.Expr or str
            ψ written in the symbols of its arguments (a string is read by the ψ grammar,
            ``docs/expressions.md``).
        args : sequence of str
            The vector arguments.
        scalars : sequence of str
            The scalar parameters.

        Returns
        -------
        Nonlin
            The appended record.

        Raises
        ------
        ProgramError
            When ψ mentions other names than its arguments, or they are of the wrong type.

        Example
        -------
        >>> tp.demo_program().add_nonlin("z", "tanh(h1)", ["h1"])
        Nonlin(name='z', family='inputs', expr=tanh(h1), vectors=('h1',), parameters=())
        """
        return self._add_coordinatewise("nonlin", name, expr, args, scalars)

    def expression(self, expr, instruction: str | None = None) -> sp.Basic:
        """``expr`` as a sympy expression over this program's variables.

        A string is read by the ψ grammar (:func:`tensorprog.ir.expression.parse_expression`,
        ``docs/expressions.md``) over this program's vectors and scalars, never evaluated as code; a
        sympy object or a number is taken as it is.

        Parameters
        ----------
        expr : str, sympy.Basic or number
            The expression.
        instruction : str, optional
            The instruction to name in an error.

        Returns
        -------
        sympy.Basic

        Raises
        ------
        ProgramError
            When the string is not in the grammar or the number is not finite.

        Example
        -------
        >>> tp.demo_program().expression("relu(h1) + 1")
        relu(h1) + 1
        """
        if not isinstance(expr, str):
            return as_expression(expr, {}, instruction=instruction)
        names = {n: symbol(n) for n in self.order if self.node(n).output != "matrix"}
        return as_expression(expr, names, instruction=instruction)

    def add_inferred(self, kind: str, name: str, expr) -> Nonlin | Moment:
        """Add a NONLIN or MOMENT whose arguments are the variables that ``expr`` mentions.

        The arguments are taken in program order, vectors then scalars.

        Parameters
        ----------
        kind : {"nonlin", "moment"}
            The instruction.
        name : str
            The new variable's name.
        expr : sympy.Expr or str
            ψ over the program's variables.

        Returns
        -------
        Nonlin or Moment
            The appended record.

        Raises
        ------
        ProgramError
            As :meth:`add_nonlin`.

        Example
        -------
        >>> tp.demo_program().add_inferred("moment", "th", "h1**2")
        Moment(name='th', family='inputs', expr=h1**2, vectors=('h1',), parameters=())
        """
        expr = self.expression(expr)
        names = {s.name for s in expr.free_symbols}
        order = sorted((n for n in names if n in self.graph), key=self.position)
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
        """The output layer ``f(ξ) = v·x(ξ)/√n + b`` (``docs/theory.md`` §3.1).

        See :class:`~tensorprog.ir.instructions.Readout` for ``slots`` (one readout vector per slot,
        for vectors of a family other than the inputs).

        Parameters
        ----------
        node : str
            The vector read.
        var, bias_var : float
            σ_v² and σ_b².
        trainable : bool
            Whether (v, b) contribute to the NTK.
        slots : array_like of int, optional
            One slot per member of the vector's family.

        Returns
        -------
        Readout
            The readout record.

        Raises
        ------
        ProgramError
            When the program already has an output, the vector is of another family without
            ``slots``, or a variance is negative.

        Example
        -------
        >>> tp.demo_program(output=False).set_readout("h1", 2.0).var
        2.0
        """
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
        """Check the whole program: acyclic, and every argument defined before it is used.

        Raises
        ------
        ProgramError
            Naming the cycle or the variable used early, with its line.

        Example
        -------
        >>> tp.demo_program().validate()
        """
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
        """The readout of a network program.

        Returns
        -------
        Readout

        Raises
        ------
        ProgramError
            When the program has no output, saying how to add one.

        Example
        -------
        >>> tp.demo_program().require_output().node
        'y'
        """
        if self.readout is None:
            raise ProgramError(
                f"program {self.name!r} has no output: add one with p.output(x, var=..., "
                "bias_var=...)")
        return self.readout

    def trained_matrices(self) -> list[InitialMatrix]:
        """The trainable initial matrices, in program order.

        Returns
        -------
        list of InitialMatrix

        Example
        -------
        >>> p = tp.demo_program()
        >>> [m.name for m in p.trained_matrices()]
        ['W']
        """
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
