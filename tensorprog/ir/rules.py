"""Rule tables: how one interpreter treats each instruction record class.

Every interpreter of a program (the limit, the finite-width run, the backward pass, the printer,
the parser, the renderer, the rewrites) holds one :class:`RuleTable` and registers one rule per
record class of :mod:`tensorprog.ir.instructions`; walking a program is calling the table on
each record.  A table dispatches on the exact class, so the rules of one instruction kind are
found by its class name, and :func:`incomplete_tables` lists the tables that miss a class (a
test checks there are none).

Example
-------
>>> from tensorprog.ir.instructions import InitialScalar
>>> describe = RuleTable("describe", cover=(InitialScalar,))
>>> @describe.rule(InitialScalar)
... def _(node):
...     return f"{node.name} = {node.value}"
>>> describe(InitialScalar("s", 2.0))
's = 2.0'
"""
from __future__ import annotations

from .instructions import INSTRUCTIONS

_TABLES: list["RuleTable"] = []


class RuleTable:
    """A rule per instruction record class.

    Parameters
    ----------
    name : str
        What the table interprets (for messages).
    cover : tuple of classes
        The classes the table must have a rule for (every instruction by default).
    """

    def __init__(self, name: str, cover=INSTRUCTIONS):
        self.name = name
        self.cover = tuple(cover)
        self._rules: dict[type, object] = {}
        _TABLES.append(self)

    def rule(self, *classes):
        """Decorator registering a function as the rule of ``classes``."""
        def register(fn):
            for cls in classes:
                if cls in self._rules:
                    raise ValueError(f"{self.name}: a rule for {cls.__name__} exists already")
                self._rules[cls] = fn
            return fn
        return register

    def __call__(self, node, *args, **kwargs):
        """Apply the rule of ``type(node)``.

        Raises
        ------
        TypeError
            When the table has no rule for the record's class.
        """
        try:
            fn = self._rules[type(node)]
        except KeyError:
            raise TypeError(f"{self.name} has no rule for {type(node).__name__}") from None
        return fn(node, *args, **kwargs)

    def of(self, cls):
        """The rule of record class ``cls`` (for interpreters that produce records, such as
        the parser)."""
        try:
            return self._rules[cls]
        except KeyError:
            raise TypeError(f"{self.name} has no rule for {cls.__name__}") from None

    def missing(self) -> list[type]:
        """The covered classes without a rule."""
        return [cls for cls in self.cover if cls not in self._rules]


def incomplete_tables() -> dict[str, list[str]]:
    """``{table name: [record classes without a rule]}`` over every table created so far."""
    return {t.name: [c.__name__ for c in t.missing()] for t in _TABLES if t.missing()}
