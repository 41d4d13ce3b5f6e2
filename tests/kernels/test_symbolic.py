"""Symbolic kernels: closed forms in the Gram entries that evaluate to the numeric kernels."""
import numpy as np
import sympy as sp
import pytest

import tensorprog as tp
from tensorprog.limit.evaluator import gram_values

from ..conftest import build_mlp


@pytest.mark.parametrize("phi", [tp.relu, tp.erf])
def test_symbolic_mlp_evaluates_to_numeric(phi):
    X = np.random.default_rng(2).standard_normal((3, 4))
    p = build_mlp(X, depth=1, phi=phi)
    K, T = tp.nngp(p, symbolic=True), tp.ntk(p, symbolic=True)
    assert isinstance(K, sp.Matrix) and K.shape == (3, 3)
    assert {s.name for s in K.free_symbols} <= {f"G_{i}_{j}" for i in range(3) for j in range(3)}
    subs = gram_values(p)
    np.testing.assert_allclose(np.array(K.subs(subs), dtype=float), tp.nngp(p), rtol=1e-12)
    np.testing.assert_allclose(np.array(T.subs(subs), dtype=float), tp.ntk(p), rtol=1e-12)


def test_symbolic_paths_agree():
    X = np.random.default_rng(2).standard_normal((2, 3))
    p = build_mlp(X, depth=1)
    a = tp.ntk(p, symbolic=True)
    b = tp.ntk(p, method="paths", symbolic=True)
    subs = gram_values(p)
    np.testing.assert_allclose(np.array(a.subs(subs), dtype=float),
                               np.array(b.subs(subs), dtype=float), rtol=1e-12)


def test_symbolic_without_closed_form_is_an_error():
    X = np.eye(2)
    p = build_mlp(X, depth=1, phi=tp.tanh)
    with pytest.raises(tp.ExpectationError):
        tp.nngp(p, symbolic=True)


def test_expectation_error_names_the_instruction():
    p = tp.Program("moment")
    x = p.vector("x", 1.0)
    th = (tp.tanh(x) * x).mean()
    with pytest.raises(tp.ExpectationError, match=rf"in MOMENT '{th.name}' \(line 3\)"):
        tp.limit(p, symbolic=True)
