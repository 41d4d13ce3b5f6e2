"""Gaussian atoms and parameters as the leaves of Z expressions (tensorprog/limit/atoms.py):
natural leaves, broadcasting of shared bases, re-indexing (the SELECT view), and the split into
atoms and parameters."""
import numpy as np
import pytest
import sympy as sp

from tensorprog.limit.atoms import Base, LeafTable


def table():
    L = LeafTable()
    u = L.add_base(Base("init:u", "init", 3, "Z^{u}", "init", "u"))
    b = L.add_base(Base("init:b", "init", 1, "Z^{b}", "init", "b"))
    th = L.add_base(Base("param:th", "param", 3, "th", node="th", values=np.array([1., 2., 3.])))
    return L, u, b, th


def test_natural_leaves_keep_the_base_name():
    L, u, b, th = table()
    s = L.natural(u, 3)
    assert s.name == "Z^{u}"
    assert L.natural(u, 3) is s  # one symbol per (base, index)
    base, index = L.info[s]
    assert base is u and index.tolist() == [0, 1, 2]
    shared = L.natural(b, 3)  # a shared base broadcast over a family of 3
    assert L.info[shared][1].tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="cannot broadcast"):
        L.natural(u, 2)


def test_reindex_composes_indices():
    """reindex(expr, idx): member i of the result is member idx[i] of expr; twice composes."""
    L, u, b, th = table()
    expr = sp.Function("relu")(L.natural(u, 3)) * L.natural(th, 3)
    once = L.reindex(expr, np.array([2, 0, 1]))
    twice = L.reindex(once, np.array([1, 1, 0]))
    for e, want in ((once, [2, 0, 1]), (twice, [0, 0, 2])):
        atoms, params = L.split(e)
        assert L.info[atoms[0]][1].tolist() == want
        assert L.info[params[0]][1].tolist() == want
    assert L.reindex(expr, np.arange(3)) == expr  # the identity view is the natural leaf
    view = L.reindex(expr, np.array([2, 0, 1]))
    assert [s.name for s in view.free_symbols if s.name.startswith("Z^{u}")] != ["Z^{u}"]


def test_split_separates_atoms_from_parameters_in_a_fixed_order():
    L, u, b, th = table()
    expr = L.natural(th, 3) * (L.natural(u, 3) + L.natural(b, 3)) ** 2
    atoms, params = L.split(expr)
    assert [a.name for a in atoms] == sorted(a.name for a in atoms)
    assert {L.info[a][0].key for a in atoms} == {"init:u", "init:b"}
    assert [L.info[q][0].key for q in params] == ["param:th"]
    assert L.split(sp.Symbol("unrelated") * 2) == ([], [])
