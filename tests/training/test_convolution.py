"""Training a CNN: a convolution weight is one tensor applied at every position of every image,
so its gradient sums over the positions (and the images of the batch); pooling and the
convolution's shifts are SELECTs, whose backward is the transpose of the selection.  In the NTK
parametrization the unrolled limit is kernel gradient descent with the CNN's own NTK and NNGP
(TP IIb Thm 5.3), and the finite network follows it."""
import numpy as np
import pytest

import tensorprog as tp
from programs import cnn
from tensorprog.training.structure import transpose_index

from .test_kernel_regime import LR, STEPS, TEST, TRAIN, Y, assert_kernel_descent, ensemble
from .test_weight_sharing import finite_width_agrees, per_draw_error


def images(positions, channels=2):
    """Six one-dimensional images (N, P, C)."""
    return np.random.default_rng(0).standard_normal((6, positions, channels))


def patch_cnn():
    """conv (the patch embedding, one weight at both positions) → relu → average pool."""
    return cnn.build(images(2), depth=1, filter_size=3, padding="circular", bvar=0.1)


def hidden_cnn():
    """Two convolutions: the second has two n×n taps (offsets 0 and +1, zero padding: the
    last position reads the zero vector) and a bias shared by the positions."""
    return cnn.build(images(2), depth=2, filter_size=2, padding="zero", bvar=0.1)


def test_transpose_index():
    """dx_a = Σ_{b: index[b] = a} dx'_b, as a sum of selections."""
    rng = np.random.default_rng(1)
    index = rng.integers(-1, 5, size=12)
    back = transpose_index(index, 5)
    g = rng.standard_normal(12)
    expected = np.zeros(5)
    np.add.at(expected, index[index >= 0], g[index >= 0])
    padded = np.append(g, 0.0)
    np.testing.assert_allclose(sum(padded[b] for b in back), expected, rtol=0, atol=1e-14)
    assert len(back) == max(np.bincount(index[index >= 0]))


def test_cnn_trains_as_kernel_gradient_descent():
    """The patch embedding U and its bias, shared by the positions: mean and covariance over 3
    full-batch steps on 4 training and 2 test images equal kernel gradient descent with the
    CNN's NTK and NNGP."""
    p = patch_cnn()
    assert_kernel_descent(tp.train(p, Y, train=TRAIN, steps=STEPS, lr=LR), p)


@pytest.mark.slow
def test_hidden_convolution_trains_as_kernel_descent():
    """A hidden convolution (taps and bias shared by the positions, a zero-padded shift whose
    transpose reads the zero vector): at s = 1/2 the limit is kernel gradient descent from zero
    outputs with the CNN's NTK, one evaluation of the unrolled program."""
    p = hidden_cnn()
    run = tp.train(p, Y, train=TRAIN, steps=STEPS, lr=LR, parametrization=tp.yaida(0.5))
    ens = ensemble(p)
    np.testing.assert_allclose(run.mean[:, TRAIN], ens.mean_train, rtol=0, atol=1e-8)
    np.testing.assert_allclose(run.mean[:, TEST], ens.mean_test, rtol=0, atol=1e-8)


@pytest.mark.slow
def test_cnn_finite_width():
    """The explicit-weight trainer sums a convolution's gradient over the positions: the
    patch CNN's mean and covariance over 200 draws are within standard errors of the limit at
    width 512; each draw of the hidden CNN is within O(n^{-1/2}) of kernel descent from its own
    f_0 (the error falls from width 256 to 1024), while with half of the gradient of every tensor
    shared by the positions (as if one of the two positions were dropped) it is several times
    larger."""
    p = patch_cnn()
    run = tp.train(p, Y[:2], train=[0, 1], steps=2, lr=LR)
    z_mean, z_cov = finite_width_agrees(run, 512, 200)
    assert z_mean < 4 and z_cov < 5
    p = hidden_cnn()
    run = tp.train(p, Y[:2], train=[0, 1], steps=2, lr=LR)
    (small, move), (large, _) = (per_draw_error(run, p, n) for n in (256, 1024))
    assert large < 0.1 * move
    assert 0.2 < large / small < 0.7
    gradients = tp.training.finite.FiniteTrainer._gradients

    def halved(self, *args):
        grads = gradients(self, *args)
        return {k: g if k in ("v", "v_b") else g / 2 for k, g in grads.items()}

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tp.training.finite.FiniteTrainer, "_gradients", halved)
        wrong, _ = per_draw_error(run, p, 1024)
    assert wrong > 0.1 * move and wrong > 2.5 * large


def test_flatten_readout_and_mixing_selects_are_named():
    """The flatten readout (one readout vector per position) and a SELECT that reads another
    image's position get a TrainingError naming the instruction."""
    p = cnn.build(images(2), depth=1, filter_size=1, readout="flatten")
    with pytest.raises(tp.TrainingError, match=r"cannot unroll `OUTPUT.*readout with slots"):
        tp.train(p, Y, train=TRAIN, steps=1)
    p = tp.Program("mixing")
    grid = tp.nn.convolution.image_family(p, 6, 2)
    h = p.embed(images(2).reshape(12, 2), var=1.0, family=grid.family, name="h")
    x = p.select(h, (np.arange(12) + 2) % 12, grid.family, name="next_image")
    p.output(tp.nn.convolution.global_avg_pool(tp.relu(x), grid))
    with pytest.raises(tp.TrainingError, match=r"cannot unroll `SELECT: next_image.*mixes"):
        tp.train(p, Y, train=TRAIN, steps=1)


def test_cnn_in_mup_learns_features_and_the_finite_network_follows():
    """muP (s = 1): the unrolled program is the CNN itself at the updated weights (its SELECTs
    applied to the new vectors); the width-1024 network's outputs and the Θ(1) movement of
    the convolution's output at every (image, position) member agree with the limit."""
    p = cnn.build(images(2), depth=1, filter_size=3, bvar=0.1)
    run = tp.train(p, Y[:2], train=[0, 1], steps=2, lr=LR, parametrization=tp.mup())
    move = run.feature_change("x1")
    assert move.shape == (3, 12) and move[1:].min() > 1e-4
    sim = run.simulate(1024, seeds=64, record=["x1"])
    assert (np.abs(sim.mean - run.mean) / sim.stderr).max() < 4
    finite = sim.movement("x1")
    z = np.abs(finite.mean(0) - move)[1:] / (finite.std(0, ddof=1)[1:] / np.sqrt(64))
    assert z.max() < 4
