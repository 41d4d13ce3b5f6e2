"""NTK parametrization = kernel gradient descent (TP IIb Thm 5.3) for networks that use a
tensor more than once: the weight-tied RNN (W and the input layer (U, b) shared by every time
step, gradients summed over the uses) and the tied autoencoder (W and Wᵀ in the forward pass, so
the unrolled program's updates carry ZDOT terms, TP IIb App. D.4.2).  The unrolled limit's mean
and covariance over 3 full-batch steps on 4 training and 2 test points equal
tensorprog.predict's with the program's own NTK and NNGP; the finite network agrees within
standard errors.  In muP both learn features: their limits leave the kernel prediction and the
finite networks follow them."""
import numpy as np
import pytest

import tensorprog as tp
from programs import autoencoder, rnn

from .test_kernel_regime import LR, STEPS, TRAIN, Y, assert_kernel_descent


def sequences():
    """Six sequences of two steps in R² (the RNN reads (N, T, d))."""
    return np.random.default_rng(0).standard_normal((6, 2, 2))


def networks():
    X = np.random.default_rng(0).standard_normal((6, 3))
    return {"rnn-mean": lambda: rnn.build(sequences(), activation="erf", readout="mean"),
            "autoencoder": lambda: autoencoder.build(X, activation="erf")}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["rnn-mean", "autoencoder"])
def test_shared_tensors_train_as_kernel_gradient_descent(name):
    p = networks()[name]()
    run = tp.train(p, Y, train=TRAIN, steps=STEPS, lr=LR)
    assert_kernel_descent(run, p)


def test_shared_tensors_are_one_tensor():
    """The RNN's two input layers and its two MATMULs by W are uses of one tensor each."""
    net = tp.training.structure.read_network(rnn.build(sequences()))
    assert sorted(net.tensors) == ["U_x1_U", "U_x1_b", "W", "v", "v_b"]
    assert [st.weight for st in net.steps if st.kind == "embed"] == ["U_x1_U", "U_x1_U"]
    p = tp.Program("mismatch")
    p.embed(sequences()[:, 0], var=1.0, bias_var=0.1, weight="U", name="a")
    p.embed(sequences()[:, 1], var=1.0, bias_var=0.1, weight="U", name="b", lr=2.0)
    p.output(tp.erf(p.var("a") + p.var("b")))
    with pytest.raises(tp.TrainingError,
                       match="cannot unroll `INPUT: b.*sharing the weight 'U' differ"):
        tp.train(p, Y, train=TRAIN, steps=1)


def finite_width_agrees(run, width, seeds):
    """Seed mean within 4 standard errors of the limit's mean, and the seed covariance within
    5 standard errors (``√((C_ii C_jj + C_ij²)/S)`` of a Gaussian sample covariance) of the
    limit's covariance, at every step and pair of inputs."""
    sim = run.simulate(width, seeds=seeds)
    z_mean = np.abs(sim.mean - run.mean) / sim.stderr
    C = run.cov
    d = np.diagonal(C, axis1=1, axis2=2)
    se = np.sqrt((d[:, :, None] * d[:, None, :] + C ** 2) / seeds)
    z_cov = np.abs(sim.cov - C) / se
    return z_mean.max(), z_cov.max()


def per_draw_error(run, p, width, seeds=32):
    """RMS over draws, steps ≥ 1 and inputs of ``f_t − (kernel descent from the draw's own
    f_0)``, the kernel prediction tensorprog.predict makes with the program's NTK: it vanishes
    like n^{-1/2}."""
    tr = run.train_idx
    te = np.setdiff1d(np.arange(run.net.num_inputs), tr)
    fs = run.simulate(width, seeds=seeds).samples
    f0 = fs[:, 0]
    Th = tp.ntk(p)
    y = np.repeat(np.array([run.y[j] for j in tr])[:, None], seeds, axis=1)
    pred_tr, pred_te = tp.predict.gradient_descent_mse(
        Th[np.ix_(tr, tr)], y, steps=np.arange(run.steps + 1), lr=run.lr,
        fx_train_0=f0[:, tr].T, fx_test_0=f0[:, te].T, ntk_test_train=Th[np.ix_(te, tr)])
    pred = np.zeros_like(fs)
    pred[:, :, tr], pred[:, :, te] = pred_tr.transpose(2, 0, 1), pred_te.transpose(2, 0, 1)
    rms = lambda a: np.sqrt((a[:, 1:] ** 2).mean())  # noqa: E731
    return rms(fs - pred), rms(fs - f0[:, None])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["rnn-mean", "autoencoder"])
def test_shared_tensors_finite_width(name):
    """Shared gradients at finite width: the explicit-weight trainer sums a shared tensor's
    gradient over its uses and follows the limit — mean and covariance over 200 draws within
    standard errors at width 512; each draw within O(n^{-1/2}) of kernel descent from its own
    f_0 (with half of W's and U's gradient, as if one of their two uses were dropped, the
    per-draw error stalls at ≈ 0.02 and 0.07 instead)."""
    p = networks()[name]()
    run = tp.train(p, Y[:2], train=[0, 1], steps=2, lr=LR)
    z_mean, z_cov = finite_width_agrees(run, 512, 200)
    assert z_mean < 4 and z_cov < 5
    (small, move), (large, _) = (per_draw_error(run, p, n) for n in (256, 1024))
    assert large < 0.1 * move
    assert 0.35 < large / small < 0.7        # 4× the width: n^{-1/2} halves it


@pytest.mark.parametrize("name", ["rnn-mean", "autoencoder"])
def test_shared_tensors_learn_features_in_mup(name):
    """muP (particle tier): the limit of 2 steps leaves the kernel prediction (the same program
    at s = 1/2) by more than 5 % (RNN 7–8 %, autoencoder 38–58 %), and width-1024 networks (48
    draws) follow it within 4 combined standard errors."""
    p = networks()[name]()
    y, train = np.array([1.0, -1.0, 0.5]), [0, 1, 2]
    run = tp.train(p, y, train=train, steps=2, lr=2.0, parametrization=tp.mup())
    kernel = tp.train(p, y, train=train, steps=2, lr=2.0, parametrization=tp.yaida(0.5))
    rel = [np.linalg.norm(run.mean[t] - kernel.mean[t]) / np.linalg.norm(kernel.mean[t])
           for t in (1, 2)]
    assert max(rel) > 0.05
    sim = run.simulate(1024, seeds=48)
    z = np.abs(sim.mean - run.mean) / np.sqrt(sim.stderr ** 2 + run.mean_error ** 2)
    assert z.max() < 4
