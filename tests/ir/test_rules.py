"""Instruction records and the rule tables of the interpreters."""
import dataclasses

import pytest

import tensorprog  # noqa: F401  (imports every interpreter and so every rule table)
from tensorprog.ir.instructions import INSTRUCTIONS, InitialScalar, MatMul
from tensorprog.ir.rules import RuleTable, incomplete_tables
from tensorprog.render import DRAW  # noqa: F401  (the renderer's table)


def test_every_table_has_a_rule_for_every_instruction():
    assert incomplete_tables() == {}


def test_records_are_frozen_and_slotted():
    node = MatMul("h", "inputs", "W", "x", True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        node.arg = "y"
    assert not hasattr(node, "__dict__")
    assert node.operands == ("W", "x") and node.args == ("x",) and node.label == "Wᵀ"
    assert all(cls.__slots__ is not None for cls in INSTRUCTIONS)


def test_table_without_a_rule_says_which():
    table = RuleTable("example", cover=())
    with pytest.raises(TypeError, match="example has no rule for InitialScalar"):
        table(InitialScalar("s", 1.0))
