"""Shared fixtures: inputs and the README's MLP."""
import numpy as np
import pytest

import tensorprog as tp


@pytest.fixture
def inputs():
    return np.random.default_rng(0).standard_normal((6, 5))


def build_mlp(X, depth=2, wvar=2.0, bvar=0.1, phi=tp.relu, bias=True):
    """The README's MLP: embed, ``depth`` hidden matrices, readout."""
    p = tp.Program("mlp")
    h = p.embed(X, var=wvar, bias_var=bvar if bias else 0.0)
    for l in range(1, depth + 1):
        W = p.matrix(f"W{l}", var=wvar)
        h = W @ phi(h)
        if bias:
            h = h + p.bias(f"b{l}", var=bvar)
    p.output(phi(h), var=wvar, bias_var=bvar if bias else 0.0)
    return p


@pytest.fixture
def mlp(inputs):
    return build_mlp(inputs)
