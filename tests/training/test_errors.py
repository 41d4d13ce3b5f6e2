"""Bad input to tp.train gets a named TrainingError, an instruction it cannot unroll too."""
import warnings

import numpy as np
import pytest
import sympy as sp

import tensorprog as tp
from tensorprog.errors import TrainingError

from .test_parametrization import snippet


@pytest.mark.parametrize("kwargs, match", [
    (dict(y=[1.0, 2.0], train=[0]), "targets y have shape"),
    (dict(y=[1.0], train=[5]), r"index 5 outside \[0, 2\)"),
    (dict(y=[1.0], train=[0], loss=sp.Abs(sp.Symbol("f") - sp.Symbol("y"))),
     "no usable derivative"),
    (dict(y=[1.0], train=[0], loss="hinge"), "use 'mse', 'bce'"),
    (dict(y=[1.0], train=[0], steps=3, batches=[[0], [0]]), "one batch per step"),
    (dict(y=[1.0], train=[0], batches=[[0], [1]]), "not training inputs"),
    (dict(y=[1.0], train=[0], lr=float("inf")), "learning rate lr=inf"),
    (dict(y=[1.0], train=[0], lr=-1.0), "must be a finite number > 0"),
    (dict(y=[np.nan], train=[0]), "NaN"),
    (dict(y=[1.0], train=[0], steps=-1), "steps=-1"),
    (dict(y=[1.0], train=[0], parametrization="muP"), "parametrization must be"),
])
def test_bad_input(kwargs, match):
    kwargs.setdefault("steps", 1 if "batches" not in kwargs else None)
    with pytest.raises(TrainingError, match=match):
        tp.train(snippet(), **kwargs)


def test_unsupported_instruction():
    p = tp.Program("scalar")
    h = p.embed(np.eye(2))
    c = p.scalar("c", 0.5)
    p.output(tp.nonlin(lambda a, t: a * t, h, scalars=[c]))
    with pytest.raises(TrainingError, match=r"cannot unroll `SCALAR: c.*a given initial scalar "
                       r"\(p.scalar\) is not a statistic of the forward pass"):
        tp.train(p, [1.0], train=[0], steps=1)


def test_finite_width_arguments():
    run = tp.train(snippet(), [1.0], train=[0], steps=1, parametrization=tp.mup())
    with pytest.raises(TrainingError, match="width"):
        run.simulate(0)
    with pytest.raises(TrainingError, match="seeds"):
        run.simulate(64, seeds=1)


def test_learning_rate_thresholds_in_the_ntk_limit():
    """Full-batch MSE in the NTK limit: a warning naming 2m/λ_max, an error above 4m/λ_max
    when strict (λ_max of the NTK on the training points, read off the first step)."""
    X = np.array([[0.7, -1.1, 0.4], [0.2, 0.9, -0.5], [1.0, 0.3, 0.2]])
    p = tp.Program("one-layer")
    p.output(tp.erf(p.embed(X, var=1.5, bias_var=0.1)), var=1.0, bias_var=0.1)
    Th = tp.ntk(p)[:2, :2]
    top = 2 * 2 / np.linalg.eigvalsh(Th).max()          # 2m/λ_max
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tp.train(p, [1.0, -1.0], train=[0, 1], steps=1, lr=0.9 * top).cov
    with pytest.warns(tp.LearningRateWarning, match="2m/λ_max"):
        tp.train(p, [1.0, -1.0], train=[0, 1], steps=1, lr=1.5 * top).cov
    with pytest.raises(TrainingError, match="4m/λ_max"):
        tp.train(p, [1.0, -1.0], train=[0, 1], steps=1, lr=2.5 * top, strict=True).cov


def test_learning_rate_thresholds_of_minibatches():
    """SGD in the NTK limit: a step on batch B is stable iff η < 2|B|/λ_max(Θ_BB), so every
    batch of the schedule is checked with its own block of the NTK (read off the unrolled
    program: its first step, or a one-step full-batch run when a later batch leaves the first)."""
    X = np.array([[0.7, -1.1, 0.4], [0.2, 0.9, -0.5], [1.0, 0.3, 0.2]])
    p = tp.Program("one-layer")
    p.output(tp.erf(p.embed(X, var=1.5, bias_var=0.1)), var=1.0, bias_var=0.1)
    Th = tp.ntk(p)
    pair = 2 * 2 / np.linalg.eigvalsh(Th[:2, :2]).max()     # batch [0, 1]: 2.90
    single = [2 / Th[j, j] for j in range(3)]              # batches [0], [2]: 1.74, 2.15
    full = 2 * 3 / np.linalg.eigvalsh(Th).max()             # all three: 4.08
    y3 = [1.0, -1.0, 0.5]
    sgd = [[0, 1], [2], [0, 1]]                              # [2] is not in the first batch
    lr = 2.5
    assert single[2] < lr < min(pair, full, 2 * single[2])  # only batch [2] is in its band
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tp.train(p, y3, train=[0, 1, 2], batches=sgd, lr=0.9 * single[2]).cov
        tp.train(p, y3, train=[0, 1, 2], steps=2, lr=lr).cov         # full batch: fine
    with pytest.warns(tp.LearningRateWarning,
                      match=rf"batch 1 \(inputs \[2\]\).*2m/λ_max = {single[2]:.4f}"):
        tp.train(p, y3, train=[0, 1, 2], batches=sgd, lr=lr).cov
    with warnings.catch_warnings(), \
            pytest.raises(TrainingError, match=r"batch 1 \(inputs \[2\]\).*4m/λ_max"):
        warnings.simplefilter("ignore")
        tp.train(p, y3, train=[0, 1, 2], batches=sgd, lr=1.05 * 2 * single[2],
                 strict=True).cov
    # batches inside the first one: Θ is read off the first step, no extra evaluation
    with pytest.warns(tp.LearningRateWarning, match=r"batch 1 \(inputs \[0\]\)"):
        tp.train(p, [1.0, -1.0], train=[0, 1], batches=[[0, 1], [0], [1]], lr=2.0).cov


@pytest.mark.parametrize("lr", [float("nan"), float("-inf"), "fast", None])
def test_learning_rate_must_be_a_finite_number(lr):
    with pytest.raises(TrainingError, match="must be a finite number > 0"):
        tp.train(snippet(), [1.0], train=[0], steps=1, lr=lr)


#: The programs of programs/ tp.train unrolls; the others are in NOT_UNROLLED.
UNROLLED = ["attention", "autoencoder", "cnn", "gru", "layernorm", "mlp", "resnet", "rnn"]
NOT_UNROLLED = [
    ("batchnorm", "SELECT: s1", "mixes the vectors of different inputs"),
    ("hypernet", "VECTOR: g1", "has no parameters to train"),
]


def program_of(name):
    from tensorprog.cli import load_program

    from ..ir.test_round_trip_programs import PROGRAMS, SHAPES

    assert sorted(UNROLLED + [n for n, _, _ in NOT_UNROLLED]) == sorted(p.stem for p in PROGRAMS)
    shape = SHAPES.get(name)
    X = None if shape is None else np.random.default_rng(0).standard_normal(shape)
    return load_program(str(next(p for p in PROGRAMS if p.stem == name)), X)


@pytest.mark.parametrize("name", UNROLLED)
def test_programs_training_unrolls(name):
    run = tp.train(program_of(name), [1.0], train=[0], steps=1)
    assert "MOMENT: f_1 := avg(" in str(run.program)


@pytest.mark.parametrize("name, instruction, why", NOT_UNROLLED)
def test_programs_training_cannot_unroll_are_named(name, instruction, why):
    """Every program of programs/ either trains or gets a TrainingError naming the first
    instruction tp.train cannot unroll and why."""
    p = program_of(name)
    with pytest.raises(TrainingError, match=rf"cannot unroll `{instruction}.*{why}"):
        tp.train(p, [1.0], train=[0], steps=1)
