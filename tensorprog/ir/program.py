"""The NETSOR⊤+ program: its graph of instruction records, textual form and rewrites.

:class:`Program` is the :class:`~tensorprog.ir.graph.ProgramGraph` of typed instruction records
(:mod:`tensorprog.ir.instructions`, one class per kind: ``InitialMatrix``, ``Embedding``,
``InitialVector``, ``InitialScalar``, ``MatMul``, ``Nonlin``, ``Moment``, ``Select``) with its
textual form (:mod:`.text`) and rewrites (:mod:`.rewrite`, :mod:`.reduce`) attached.  Build one
with the operator-overloading builder (``p.embed``, ``p.matrix``, ``W @ x``, ``tp.relu(h)``; see
:mod:`tensorprog.ir.builder`) or parse its textual form with :meth:`Program.from_text`.
"""
from __future__ import annotations

from .graph import Family, ProgramGraph
from .instructions import INPUTS, KINDS, SHARED, Instruction, Readout, symbol
from .reduce import reduce_program
from .rewrite import copy_program
from .text import program_from_text, program_to_text

#: Any instruction record (the base class of :mod:`tensorprog.ir.instructions`).
Node = Instruction

__all__ = ["INPUTS", "KINDS", "SHARED", "Family", "Node", "Program", "Readout", "symbol"]


class Program(ProgramGraph):
    """A NETSOR⊤+ program on N inputs, stored as a ``networkx.DiGraph`` of instruction records.

    Build one with the operator-overloading builder (``p.embed``, ``p.matrix``, ``W @ x``,
    ``tp.relu(h)``; see :mod:`tensorprog.ir.builder`) or parse its textual form with
    :meth:`from_text`.  Every ``add_*`` method validates its instruction and raises
    :class:`~tensorprog.errors.ProgramError` naming it.
    """

    def copy(self) -> "Program":
        """A copy of the program (the records are immutable and shared).

        Returns
        -------
        Program
            An equal program that can be extended without changing this one.

        Example
        -------
        >>> p = tp.demo_program(activation="tanh")
        >>> q = p.copy()
        >>> q == p, q is p
        (True, False)
        """
        return copy_program(self)

    def reduced(self) -> "Program":
        """The reduced form of the program (TP IIb Definition 5.4).

        NONLIN arguments are G-vars only and MATMUL arguments X-vars only (``docs/theory.md`` §2.1):
        chains of NONLINs are composed into one ψ and an identity NONLIN is inserted before a MATMUL
        (or the readout) of a G-var.

        Returns
        -------
        Program
            A new program; this one is unchanged.

        Example
        -------
        >>> p = tp.demo_program()
        >>> g = p.matrix("V", var=1.0) @ p.var("h1")     # a MATMUL of the G-var h1
        >>> print(p.reduced())
        PROGRAM demo inputs=2
        INPUT:  h1 := embed(X1, var=2.0, bias_var=0.1)   # X1: 2×2
        MATRIX: W ~ N(0, 2.0/n)
        NONLIN: x1 := relu(h1)
        MATMUL: h2 := W x1
        MATRIX: V ~ N(0, 1.0/n)
        NONLIN: h1_x1 := h1
        MATMUL: h3 := V h1_x1
        NONLIN: y := relu(h2)
        OUTPUT: readout(y, var=2.0, bias_var=0.0)
        """
        return reduce_program(self)

    def to_text(self) -> str:
        """The textual form of the program (TP IIb Algorithm 1 style), with its data.

        One line per instruction, then ``DATA:`` lines holding the arrays; :meth:`from_text` parses
        it back to an equal program.  The grammar is in ``docs/compiler.md``; ``str(p)`` is the same
        form without the data lines.

        Returns
        -------
        str

        Example
        -------
        >>> p = tp.Program("tiny")
        >>> h = p.embed(np.array([[1.0], [2.0]]))         # two inputs in R¹
        >>> print(p.to_text())
        PROGRAM tiny inputs=2
        INPUT:  h1 := embed(X1, var=1.0, bias_var=0.0)
        DATA:   X1 = [[1.0], [2.0]]
        <BLANKLINE>
        """
        return program_to_text(self)

    @classmethod
    def from_text(cls, text: str, data: dict | None = None) -> "Program":
        """Parse the textual form of a program (:meth:`to_text`).

        The text is data: ψ is read by the project's grammar (``docs/expressions.md``), never
        evaluated as code.

        Parameters
        ----------
        text : str
            The textual form.
        data : dict, optional
            Arrays ``{name: array}`` for data printed without values (``str(p)`` prints none).

        Returns
        -------
        Program

        Raises
        ------
        ParseError
            Naming the line at fault and what is wrong with it.

        Example
        -------
        >>> p = tp.demo_program(activation="tanh")
        >>> tp.Program.from_text(p.to_text()) == p
        True
        >>> tp.Program.from_text(str(p), data={"X1": np.eye(2)}) == p
        True
        """
        return program_from_text(text, cls=cls, data=data)

    def __str__(self) -> str:
        return program_to_text(self, data=False)
