"""Shared fixtures: inputs and the README's MLP."""
import numpy as np
import pytest
import sympy as sp

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


def layernorm_program(X, eps=1e-3, out_bias_var=0.0):
    """A MOMENT in the middle of a network: x/√(avg(x²) + eps) between two matrices."""
    p = tp.Program("layernorm")
    h = p.embed(X, var=1.0, bias_var=0.1)
    x = p.matrix("W1", var=2.0) @ tp.relu(h)
    th = (x * x).mean(name="theta")
    y = tp.nonlin(lambda a, t: a / sp.sqrt(t + eps), x, scalars=[th])
    z = p.matrix("W2", var=1.5) @ tp.tanh(y)
    p.output(tp.tanh(z), var=1.0, bias_var=out_bias_var)
    return p
