"""NTK parametrization = kernel gradient descent (TP IIb Thm 5.3) for the residual network and
the GRU of programs/: the unrolled limit's mean and covariance over 3 full-batch steps equal
tensorprog.predict's with the program's own NTK and NNGP."""
import numpy as np
import pytest

import tensorprog as tp
from programs import gru, resnet

from .test_kernel_regime import LR, STEPS, TRAIN, Y, assert_kernel_descent


@pytest.mark.slow
def test_resnet_trains_as_kernel_gradient_descent():
    """One residual block h + α(W relu(h) + b) on the input layer (the identity path and the
    branch both carry the gradient); 2 training and 4 test points."""
    p = resnet.build(np.random.default_rng(0).standard_normal((6, 3)), blocks=1, wvar=1.5,
                     bvar=0.1, alpha=0.5)
    run = tp.train(p, Y[:2], train=[0, 1], steps=STEPS, lr=LR)
    assert_kernel_descent(run, p, train=[0, 1], test=[2, 3, 4, 5], y=Y[:2])


def test_gru_trains_as_kernel_gradient_descent():
    """A GRU step h₁ = σ(U_z ξ + b_z) ⊙ tanh(U_h ξ + b_h) (two input layers read by a
    two-argument NONLIN, every expectation by quadrature): 4 training and 2 test points."""
    p = gru.build(np.random.default_rng(0).standard_normal((6, 1, 2)), steps=1)
    run = tp.train(p, Y, train=TRAIN, steps=STEPS, lr=LR)
    assert_kernel_descent(run, p)
