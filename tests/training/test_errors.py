"""Bad input to tp.train gets a named TrainingError (or ProgramError for an unsupported
instruction)."""
import warnings

import numpy as np
import pytest
import sympy as sp

import tensorprog as tp
from tensorprog.errors import ProgramError, TrainingError

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
    p = tp.Program("moment")
    h = p.embed(np.eye(2))
    th = tp.moment(tp.tanh(h))
    p.output(tp.nonlin(lambda a, t: a * t, h, scalars=[th]))
    with pytest.raises(ProgramError, match="a moment is not supported"):
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
