"""Prepared expectations (:mod:`tensorprog.plan.steps`): recorded once per template, replayed
on every call and tile with the same array operations as the general path, so the kernels are
the same bit for bit; and the automatic tiles of balanced edges."""
import numpy as np
import pytest

import tensorprog as tp
from programs import mlp
from tensorprog.plan import fused
from tensorprog.plan.pairs import PairExecutor
from tensorprog.plan.steps import ExpectationStep
from tensorprog.plan.tiles import auto_batch_size
from tests.plan.test_compile import PAIR_LOCAL, _inputs


def _calls(kfn, X, Y):
    return kfn(X), kfn(Y, X), kfn(X, batch_size=2), kfn(X, dtype="float32")


def _case(name):
    """The compiled kernels of an architecture and two input sets in its input shape."""
    build, shape = PAIR_LOCAL[name]
    sets = [_inputs(shape, n, seed) for n, seed in ((5, 3), (3, 4))]
    return tp.compile(build(sets[0])), sets


@pytest.mark.parametrize("name", sorted(set(PAIR_LOCAL) - {"gru"}))
def test_replayed_steps_give_the_general_path_bit_for_bit(name, monkeypatch):
    kfn, (X, Y) = _case(name)
    steps = [v for k, v in kfn._template.memo.items() if k[0] == "step"]
    # expectations whose coefficients are limit scalars of the inputs (LayerNorm, ZDOT
    # coefficients) stay on the general path; every architecture but those has steps
    assert any(isinstance(s, ExpectationStep) for s in steps) == (name != "layernorm")
    replayed = _calls(kfn, X, Y)
    with monkeypatch.context() as m:
        m.setattr(PairExecutor, "steps", False)
        general = _calls(kfn, X, Y)
    for a, b in zip(replayed, general):
        for g in ("nngp", "ntk"):
            assert a[g].dtype == b[g].dtype
            np.testing.assert_array_equal(a[g], b[g])


@pytest.mark.parametrize("act", ["relu", "erf"])
def test_every_expectation_of_an_mlp_is_prepared(act):
    X = _inputs((4,), 6, 0)
    kfn = tp.compile(mlp.build(X, depth=4, activation=act))
    steps = {k: v for k, v in kfn._template.memo.items() if k[0] == "step"}
    # the template records the symmetric and the cross kernel's expectations
    assert {k[3] for k in steps} == {("l", "l"), ("l", "r"), ("r", "r")}
    assert all(isinstance(s, ExpectationStep) for s in steps.values())
    # a replayed step holds numbers and kernels, no symbolic expression
    for s in steps.values():
        assert all(isinstance(coef, float) for coef, _ in s.terms)


def test_a_step_hands_back_inputs_off_its_pattern():
    # zero inputs make every variance of the first layer 0 on every input: the recorded
    # steps (non-zero variances) do not apply and the general path takes them
    X = _inputs((3,), 4, 1)
    kfn = tp.compile(mlp.build(X, depth=2, bvar=0.0))
    Z = np.zeros((3, 3))
    out = kfn(Z)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(PairExecutor, "steps", False)
        ref = kfn(Z)
    for g in out:
        np.testing.assert_array_equal(out[g], ref[g])
        assert np.all(np.isfinite(out[g]))


def test_automatic_tiles_have_balanced_edges():
    # 500 inputs at an edge of at most 232 (31 MB for 74 numbers per pair): three tiles of
    # 167, not 232, 232 and 36
    budget = 8 * 74 * 232 ** 2
    assert auto_batch_size(74, 500, 500, budget=budget) == 167
    assert auto_batch_size(74, 464, 464, budget=budget) == 232
    assert auto_batch_size(74, 300, 2000, budget=budget) == 223     # 9 along the larger side
    assert auto_batch_size(74, 200, 200, budget=budget) == 200      # one tile


@pytest.mark.skipif(fused.numba_kernel() is None, reason="needs numba")
def test_numba_engine_keeps_float32():
    rng = np.random.default_rng(2)
    S11, S22 = rng.uniform(0.1, 3, (5, 1, 1, 1)), rng.uniform(0.1, 3, (1, 5, 1, 1))
    S12 = rng.uniform(-1, 1, (5, 5, 1, 1)) * np.sqrt(S11 * S22)
    table = np.array([[w, 1, 1, t, p, q] for w, t, p, q in fused._j_monomials(1, 1)])
    for kind, tab in ((fused.ORTHANT, table), (fused.ERF_ERF, np.zeros((0, 6)))):
        ref = fused.pair_kernel(kind, S11, S12, S22, tab, (5, 5, 1, 1))
        with pytest.MonkeyPatch.context() as m:
            m.setattr(fused, "ENGINE", "numba")
            out = fused.pair_kernel(kind, *(a.astype(np.float32) for a in (S11, S12, S22)),
                                    tab, (5, 5, 1, 1))
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, ref, rtol=2e-6, atol=1e-7)
