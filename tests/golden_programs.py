"""The programs whose printed forms are kept as golden strings (tests/ir/test_text_golden.py,
tests/limit/test_printing.py): the README's MLP and ZDOT programs, an RNN and a CNN from
programs/, on small fixed inputs."""
import numpy as np

import tensorprog as tp
from programs.cnn import build as build_cnn
from programs.rnn import build as build_rnn


def readme_mlp():
    """The README's first program, as written there."""
    X = np.random.default_rng(0).standard_normal((6, 5))
    p = tp.Program("mlp")
    h = p.embed(X, var=2.0, bias_var=0.1)
    for l in range(1, 3):
        W = p.matrix(f"W{l}", var=2.0)
        b = p.bias(f"b{l}", var=0.1)
        h = W @ tp.relu(h) + b
    p.output(tp.relu(h), var=2.0, bias_var=0.1)
    return p


def readme_zdot():
    """The README's ZDOT program: θ = (1/n) zᵀx with z = Wᵀ tanh(W x)."""
    p = tp.Program("zdot")
    x = p.vector("x", 1.0)
    W = p.matrix("W", 2.0)
    z = W.T @ tp.tanh(W @ x)
    (z * x).mean()
    return p


def rnn():
    """programs/rnn.py, relu, two sequences of three steps in R²."""
    return build_rnn(np.arange(12.0).reshape(2, 3, 2) / 10, activation="relu")


def cnn():
    """programs/cnn.py, 1-D, two images of 4 positions × 2 channels, one conv layer, GAP."""
    return build_cnn(np.arange(16.0).reshape(2, 4, 2) / 10, depth=2, filter_size=3)


PROGRAMS = {"mlp": readme_mlp, "zdot": readme_zdot, "rnn": rnn, "cnn": cnn}
