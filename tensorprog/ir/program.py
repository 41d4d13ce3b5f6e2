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
        """A copy (records are immutable and shared)."""
        return copy_program(self)

    def reduced(self) -> "Program":
        """The reduced form of TP IIb Definition 5.4: NONLIN arguments are G-vars only and
        MATMUL arguments X-vars only.  Chains of NONLINs are composed into one ψ and an
        identity NONLIN is inserted before a MATMUL (or readout) of a G-var."""
        return reduce_program(self)

    def to_text(self) -> str:
        """The textual form (TP IIb Algorithm 1 style); :meth:`from_text` parses it back."""
        return program_to_text(self)

    @classmethod
    def from_text(cls, text: str, data: dict | None = None) -> "Program":
        """Parse the textual form; ``data`` supplies input arrays printed without values."""
        return program_from_text(text, cls=cls, data=data)

    def __str__(self) -> str:
        return program_to_text(self, data=False)
