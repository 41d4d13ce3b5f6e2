"""How the pair executor evaluates a CNN: terms with equal factors merged (the pooling
gradient's P² masked terms), input-dependent coefficients kept apart, and two SELECTs read in
one gather."""
import numpy as np
import sympy as sp

import tensorprog as tp
from programs import cnn
from tensorprog.expectations.decompose import Factor, Term
from tensorprog.plan import pairs
from tests.helpers import unit_rows


def test_pooling_gradient_is_one_product(monkeypatch):
    """E[Z^{d_h} Z^{d_h}] of a GAP CNN: Z^{d_h} = Σ_p 1[member p]·Z^v/P·step(h), P² terms of
    the same factors, evaluated as one product; the kernels are the limit's."""
    seen = []
    grouped = pairs._grouped

    def spy(plan, params, members, *args):
        out = list(grouped(plan, params, members, *args))
        seen.append((len(plan), len(out)))
        yield from out

    monkeypatch.setattr(pairs, "_grouped", spy)
    X = unit_rows((4, 8, 2), 0)
    kfn = tp.compile(cnn.build(X[:2], depth=2))
    seen.clear()
    K = kfn(X, get="ntk")
    assert (64, 1) in seen                      # 8 × 8 masked terms, one group
    assert all(groups <= terms for terms, groups in seen)
    np.testing.assert_allclose(K, tp.ntk(cnn.build(X, depth=2)), rtol=1e-12, atol=1e-14)


def test_grouping_sums_fixed_coefficients_only():
    x, y = sp.symbols("x y", real=True)
    m1, m2, s = sp.symbols("m1 m2 s", real=True)
    f = (Factor(x * y, (x, y), (0, 1)),)
    g = (Factor(x ** 2, (x,), (0,)),)
    plan = (Term(m1, f), Term(m2, f), Term(s, f), Term(sp.Integer(3), g), Term(sp.Integer(2), f))
    params = {m1: np.array([[1.0, 0.0]]), m2: np.array([[0.0, 1.0]]),   # per member: small
              s: np.array([[5.0], [7.0]]) * np.ones((1, 2))}            # per input: large
    sums = {}
    out = list(pairs._grouped(plan, params, 2, frozenset({m1, m2}), sums))
    assert [fs[0].expr for _, fs in out] == [x * y, x * y, x ** 2]
    np.testing.assert_array_equal(out[0][0], [[3.0, 3.0]])             # m1 + m2 + 2
    np.testing.assert_array_equal(out[1][0], params[s])                 # alone
    assert out[2][0] == 3.0
    assert list(sums.values())[0].tolist() == [[3.0, 3.0]]               # kept for next call
    params[m1] = np.array([[9.0, 9.0]])                                  # fixed: not re-read
    again = list(pairs._grouped(plan, params, 2, frozenset({m1, m2}), sums))
    np.testing.assert_array_equal(again[0][0], [[3.0, 3.0]])


def test_two_selects_gather_once_as_twice():
    rng = np.random.default_rng(1)
    block = pairs.Block(*(rng.standard_normal(s) for s in
                          ((3, 5, 5), (2, 5, 5), (3, 2, 5, 5), (3, 2, 5, 5))))
    rows, cols = np.array([1, 2, 3, 4, -1]), np.array([-1, 0, 1, 2, 3])
    once = pairs._gather2(block, rows, cols, True)
    first = pairs.Block(*pairs._gather(block, rows, 0, False))
    twice = pairs._gather(first, cols, 1, False)
    for a, b in zip(once, twice):
        np.testing.assert_array_equal(a, b)
    assert pairs._gather2(block, rows, cols, False)[3] is None
