"""Learning-rate multipliers in the textual form: ``lr=``/``bias_lr=`` options are printed when
not 1 and parsed back exactly, for every program of programs/ and the builder's own calls."""
from dataclasses import replace

import numpy as np
import pytest

import tensorprog as tp
from tensorprog.cli import load_program

from .test_round_trip_programs import PROGRAMS, SHAPES
from .test_text import MLP_TEXT


def with_learning_rates(p, seed=0):
    """``p`` with a distinct learning-rate multiplier on every trainable tensor (and a 1 kept
    on one of them, so that defaults and set values are mixed)."""
    rng = np.random.default_rng(seed)
    draw = iter(np.round(rng.uniform(0.05, 3.0, size=4 * len(p.order) + 2), 3).tolist())
    for name in p.order:
        node = p.node(name)
        changes = {}
        if hasattr(node, "parametrization") and node.output != "scalar":
            changes["parametrization"] = node.parametrization.with_lr(next(draw))
        if hasattr(node, "bias_parametrization"):
            changes["bias_parametrization"] = node.bias_parametrization.with_lr(next(draw))
        if changes:
            p.replace(name, **changes)
    if p.readout is not None:
        r = p.readout
        p.readout = replace(r, parametrization=r.parametrization.with_lr(next(draw)))
    return p


@pytest.mark.parametrize("path", PROGRAMS, ids=[p.stem for p in PROGRAMS])
def test_every_program_with_learning_rates_round_trips(path):
    shape = SHAPES.get(path.stem)
    X = None if shape is None else np.random.default_rng(0).standard_normal(shape)
    p = with_learning_rates(load_program(str(path), X))
    text = p.to_text()
    assert "lr=" in text
    q = tp.Program.from_text(text)
    assert q == p
    assert q.to_text() == text


def test_builder_learning_rates_are_printed_and_parsed():
    X = np.array([[0.7, -1.1, 0.4], [0.2, 0.9, -0.5]])
    p = tp.Program("lr")
    h = p.embed(X, var=1.2, bias_var=0.1, lr=0.7)
    W = p.matrix("W1", var=1.5, lr=1.3)
    h = W @ tp.tanh(h) + p.bias("b1", var=0.1, lr=0.4)
    p.output(tp.tanh(h), var=1.0, bias_var=0.1, bias_lr=0.5)
    text = p.to_text()
    for line in ("INPUT:  h1 := embed(X1, var=1.2, bias_var=0.1); lr=0.7",
                 "MATRIX: W1 ~ N(0, 1.5/n); lr=1.3", "VECTOR: b1 ~ N(0, 0.1); bias, lr=0.4",
                 "OUTPUT: readout(x2, var=1.0, bias_var=0.1); bias_lr=0.5"):
        assert line in text
    q = tp.Program.from_text(text)
    assert q == p
    net = tp.training.structure.read_network(q)
    assert (net.tensor("W1").lr, net.tensor("b1").lr, net.tensor("h1_U").lr,
            net.tensor("h1_b").lr, net.tensor("v").lr, net.tensor("v_b").lr) == (
        1.3, 0.4, 0.7, 1.0, 1.0, 0.5)


def test_default_learning_rates_are_not_printed(mlp):
    assert "lr=" not in mlp.to_text()


@pytest.mark.parametrize("old, new, line, match", [
    ("W1 ~ N(0, 2.0/n)", "W1 ~ N(0, 2.0/n); lr=-1", 3, "lr=-1.0: a learning-rate multiplier"),
    ("W1 ~ N(0, 2.0/n)", "W1 ~ N(0, 2.0/n); lr=1e999", 3, "lr=inf: a learning-rate"),
    ("W1 ~ N(0, 2.0/n)", "W1 ~ N(0, 2.0/n); lr=fast", 3, "expected a number, got 'fast'"),
    ("W1 ~ N(0, 2.0/n)", "W1 ~ N(0, 2.0/n); bias_lr=2", 3, "unknown option 'bias_lr'"),
    ("bias_var=0.1)", "bias_var=0.1); bias_lr=nan", 2, "expected a number, got 'nan'"),
    ("bias_var=0.0)", "bias_var=0.0); lr=-0.5", 7, "lr=-0.5: a learning-rate multiplier"),
    ("NONLIN: x1 := relu(h1)", "NONLIN: x1 := relu(h1); lr=2", 4, "unknown option 'lr'"),
])
def test_bad_learning_rates_in_text_are_named(old, new, line, match):
    assert old in MLP_TEXT
    with pytest.raises(tp.ParseError, match=rf"line {line}.*{match}"):
        tp.Program.from_text(MLP_TEXT.replace(old, new, 1))


def test_unrolled_training_program_round_trips():
    X = np.array([[0.7, -1.1, 0.4], [0.2, 0.9, -0.5]])
    p = tp.Program("two-layer")
    h = p.embed(X, var=1.0, bias_var=0.1, lr=1.0, bias_lr=0.5)
    p.output(tp.tanh(h), var=1.0, bias_var=0.2, lr=1.0, bias_lr=0.3)
    q = tp.train(p, [1.0], train=[0], steps=2, parametrization=tp.mup()).program
    assert tp.Program.from_text(q.to_text()).to_text() == q.to_text()
