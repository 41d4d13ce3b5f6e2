"""The walker every program rewrite shares: copy, reduce, lift, backward pass.

A rewrite reads a *source* program record by record and appends records to a *target*
program; what it does with each record is its rule table (:class:`~tensorprog.ir.rules.RuleTable`
keyed by record class).  :class:`Rewrite` holds the two programs and the rewrite's own state;
:meth:`Rewrite.run` walks the source (forwards, or backwards for the backward pass) and returns
the target.

Example
-------
>>> copy = Rewrite(p, p.empty_like(counters=True), COPY).run()   # doctest: +SKIP
"""
from __future__ import annotations

from ..resources import Progress
from .instructions import INSTRUCTIONS
from .rules import RuleTable


class Rewrite:
    """A rewrite of ``source`` into ``target`` by the rules of ``table``.

    Parameters
    ----------
    source, target : Program
        The program read and the program written (usually ``source.empty_like()``).
    table : RuleTable
        ``table(record, rewrite)`` handles one record of the source.
    reverse : bool
        Walk the source from its last record to its first.
    """

    def __init__(self, source, target, table: RuleTable, reverse: bool = False):
        self.source, self.target, self.table, self.reverse = source, target, table, reverse
        #: The progress line's label.
        self.label = f"{table.name} of {source.name!r}"

    def run(self):
        """Apply the table to every record of the source (a progress line on stderr when that
        takes more than a few seconds); returns the target program."""
        nodes = self.source.nodes()
        progress = Progress(self.label, len(nodes))
        for k, node in enumerate(reversed(nodes) if self.reverse else nodes):
            self.table(node, self)
            progress(k + 1)
        progress.close()
        return self.target


def keep(node, rewrite: Rewrite) -> None:
    """The rule that appends ``node`` unchanged (its operands are the same in the target)."""
    rewrite.target.append(node, checked=False)


#: The identity rewrite (:meth:`Program.copy`): every record kept as it is.
COPY = RuleTable("copy")
COPY.rule(*INSTRUCTIONS)(keep)


def copy_program(p):
    """A copy of ``p`` sharing its (immutable) records."""
    q = Rewrite(p, p.empty_like(counters=True), COPY).run()
    q.readout = p.readout
    return q
