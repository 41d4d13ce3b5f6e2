"""muP learns features: the limit trajectory of a 2-hidden-layer tanh MLP leaves the kernel
prediction, and finite widths converge to the limit (seed mean within 4 standard errors,
per-draw error slope ≈ −1/2)."""
import numpy as np
import pytest

import tensorprog as tp
from tensorprog.errors import TrainingError

from ..conftest import build_mlp
from .test_parametrization import snippet

TRAIN, Y = [0, 1, 2], np.array([1.0, -1.0, 0.5])


def mlp():
    X = np.random.default_rng(1).standard_normal((4, 3))
    return build_mlp(X, depth=2, wvar=1.5, bvar=0.1, phi=tp.tanh, bias=False)


def test_mup_limit_leaves_the_kernel_prediction_and_finite_width_follows():
    p = mlp()
    run = tp.train(p, Y, train=TRAIN, steps=2, lr=2.0, parametrization=tp.mup(),
                   tier="montecarlo")
    kernel = tp.train(p, Y, train=TRAIN, steps=2, lr=2.0, parametrization=tp.yaida(0.5))
    rel = [np.linalg.norm(run.mean[t] - kernel.mean[t]) / np.linalg.norm(kernel.mean[t])
           for t in (1, 2)]
    # the features move by Θ(1): f_1 = f(θ_1) is not the linearised (kernel) step
    assert max(rel) > 0.05
    assert np.all(run.cov == 0)
    sim = run.simulate(1024, seeds=48)
    z = np.abs(sim.mean - run.mean) / np.sqrt(sim.stderr ** 2 + run.limit_error ** 2)
    assert z.max() < 4


def test_snippet_validates():
    run = tp.train(snippet(), [1.0], train=[0], steps=2, lr=1.0, loss="mse",
                   parametrization=tp.yaida(s=1.0))
    assert run.mean.shape == (3, 2) and run.cov.shape == (3, 2, 2)
    assert "MOMENT: f_2 := avg(v_2*x1_2)" in str(run.program)
    report = run.validate(widths=[256, 512, 1024, 2048], seeds=64)
    assert report.passed
    assert abs(report.slope.slope + 0.5) < 0.15
    assert "per-draw error slope" in report.to_markdown()


def test_cross_entropy_loss_trains_in_mup():
    run = tp.train(snippet(), [1.0], train=[0], steps=2, lr=1.0, loss="bce",
                   parametrization=tp.mup())
    assert run.mean[2, 0] > run.mean[1, 0] > run.mean[0, 0]
    sim = run.simulate(2048, seeds=64)
    assert np.max(np.abs(sim.mean - run.mean) / sim.stderr) < 4


def test_feature_change_is_order_one_in_mup_and_vanishes_in_the_kernel_regime():
    run = tp.train(snippet(), [1.0], train=[0], steps=2, lr=1.0, parametrization=tp.mup())
    lim = run.feature_change("x1")
    assert lim.shape == (3, 2) and np.all(lim[0] == 0) and lim[1:].min() > 0.01
    fin = run.feature_change("x1", width=2048, seeds=64)
    assert np.max(np.abs(fin.mean - lim)[1:] / fin.stderr[1:]) < 4
    half = tp.train(snippet(), [1.0], train=[0], steps=1, lr=1.0, parametrization=tp.yaida(0.5))
    assert np.all(half.feature_change("x1") == 0)
    small, large = (half.feature_change("x1", width=n, seeds=32).mean[1, 0] for n in (256, 4096))
    slope = np.log(large / small) / np.log(16)       # ‖Δx‖²/n ~ n^{-(1−s)}
    assert abs(slope + 0.5) < 0.1
    with pytest.raises(TrainingError, match="not a vector"):
        run.feature_change("nope")
