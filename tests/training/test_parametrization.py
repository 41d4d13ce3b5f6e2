"""abc-parametrizations: presets, the gauge symmetry (Yaida Eq. 2.8) at finite width, Yaida's
s = 1 against muP in the limit, and the exponent conditions of a limit that blows up."""
import numpy as np
import pytest

import tensorprog as tp
from tensorprog.errors import ProgramError, TrainingError
from tensorprog.training import resolve

X = np.array([[0.7, -1.1, 0.4], [0.2, 0.9, -0.5]])


def snippet():
    p = tp.Program("two-layer")
    h = p.embed(X, var=1.0, bias_var=0.1, lr=1.0, bias_lr=0.5)
    p.output(tp.tanh(h), var=1.0, bias_var=0.2, lr=1.0, bias_lr=0.3)
    return p


def hidden_net():
    p = tp.Program("hidden")
    h = p.embed(X, var=1.2, bias_var=0.1, lr=0.7)
    W = p.matrix("W1", var=1.5, lr=1.3)
    h = W @ tp.tanh(h) + p.bias("b1", var=0.1, lr=0.4)
    p.output(tp.tanh(h), var=1.0, bias_var=0.1, bias_lr=0.5)
    return p


def test_builder_stores_learning_rates():
    p = hidden_net()
    net = tp.training.structure.read_network(p)
    assert net.tensor("W1").lr == 1.3 and net.tensor("b1").lr == 0.4
    assert net.tensor("h1_U").lr == 0.7 and net.tensor("h1_b").lr == 1.0
    assert net.tensor("v").lr == 1.0 and net.tensor("v_b").lr == 0.5
    with pytest.raises(ProgramError, match="learning-rate multiplier"):
        tp.Program("bad").matrix("W", lr=float("nan"))
    with pytest.raises(ProgramError, match="learning-rate multiplier"):
        tp.Program("bad").embed(X, lr=-1.0)


def test_presets_and_regimes():
    assert resolve(tp.ntk_parametrization()).s == 0
    assert resolve(tp.ntk_parametrization()).random_outputs
    for par in (tp.mup(), tp.mean_field(), tp.yaida(1.0)):
        r = resolve(par)
        assert r.s == 1 and r.feature_learning and all(r.active.values())
    sp = resolve(tp.standard_parametrization(c=1))
    assert sp.s == 0 and not sp.active["input"] and not sp.active["bias"]
    assert sp.active["hidden"] and sp.active["output"]
    assert resolve(tp.yaida(0.5)).s == 0.5 and not resolve(tp.yaida(0.5)).random_outputs


@pytest.mark.parametrize("par, match", [
    (tp.yaida(1.5), r"s = 2\(a\+b\) − 1 ≤ 1"),
    (tp.yaida(-0.5), r"a\+b ≥ 1/2 for the readout"),
    (tp.standard_parametrization(c=0), r"2a\+c ≥ 1"),
    (tp.abc_parametrization(hidden=(0.5, 0.25, 0)), r"2\(a\+b\) = 1"),
])
def test_blow_up_names_the_condition(par, match):
    with pytest.raises(TrainingError, match=match):
        tp.train(snippet(), [1.0], train=[0], steps=1, parametrization=par)


@pytest.mark.parametrize("net", [snippet, hidden_net])
def test_gauge_pairs_are_bit_identical_at_finite_width(net):
    """(a, b, c) → (a + θ, b − θ, c − 2θ) on every tensor: the same trajectory bit for bit
    (width 4⁴, so n^θ is a power of two for θ = 1/2)."""
    runs = [tp.train(net(), [1.0], train=[0], steps=3, lr=0.8, parametrization=par)
            for par in (tp.mup(), tp.mean_field(), tp.yaida(1.0), tp.mup().gauge(0.5))]
    outs = [r.simulate(256, seeds=3).samples for r in runs]
    for o in outs[1:]:
        assert np.array_equal(o, outs[0])
    other = tp.train(net(), [1.0], train=[0], steps=3, lr=0.8, parametrization=tp.yaida(0.5))
    assert not np.array_equal(other.simulate(256, seeds=3).samples, outs[0])


def test_yaida_one_is_mup_in_the_limit():
    a = tp.train(snippet(), [1.0], train=[0], steps=2, parametrization=tp.yaida(s=1.0))
    b = tp.train(snippet(), [1.0], train=[0], steps=2, parametrization=tp.mup())
    np.testing.assert_allclose(a.mean, b.mean, rtol=0, atol=1e-14)
    assert np.all(a.cov == 0)
