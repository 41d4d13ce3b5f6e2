"""The MLP agrees with the standard NTK-parametrization recursion (docs/theory.md §3); the path-sum
NTK agrees with backprop-in-the-program (TP IIb Prop. D.3)."""
import numpy as np
import pytest

import tensorprog as tp
from tensorprog.kernels import by_parameter

from ..conftest import build_mlp
from ..helpers import rel
from .reference import mlp_kernels

ACT = {"relu": tp.relu, "erf": tp.erf, "gelu": tp.gelu}
TOL = {"relu": 1e-6, "erf": 1e-6, "gelu": 1e-5}


@pytest.mark.parametrize("activation", ["relu", "erf", "gelu"])
@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("bias", [True, False])
def test_mlp_matches_recursion(inputs, activation, depth, bias):
    X = inputs[:4]
    p = build_mlp(X, depth=depth, wvar=1.7, bvar=0.2, phi=ACT[activation], bias=bias)
    K_ref, T_ref = mlp_kernels(X, depth, 1.7, 0.2 if bias else 0.0, activation)
    K, T = tp.nngp(p), tp.ntk(p)
    assert K.shape == T.shape == (4, 4)
    assert rel(K, K_ref) < TOL[activation]
    assert rel(T, T_ref) < TOL[activation]
    np.testing.assert_allclose(K, K.T, rtol=1e-12)


@pytest.mark.parametrize("activation", ["relu", "erf", "gelu"])
@pytest.mark.parametrize("bias", [True, False])
def test_paths_agree_with_backprop(inputs, activation, bias):
    p = build_mlp(inputs[:4], depth=3, wvar=1.3, bvar=0.3, phi=ACT[activation], bias=bias)
    T_bp, parts_bp = tp.ntk(p, contributions=True)
    T_path, parts_path = tp.ntk(p, method="paths", contributions=True)
    assert rel(T_path, T_bp) < 1e-10
    # per-parameter shares agree too (path classes summed by parameter)
    by_param = by_parameter(parts_path)
    for param, value in parts_bp.items():
        key = param if param in by_param else next(k for k in by_param if k.startswith("U_"))
        np.testing.assert_allclose(by_param[key], value, rtol=1e-10, atol=1e-12)


def test_readme_example_shapes_and_contributions(mlp):
    K, T = tp.nngp(mlp), tp.ntk(mlp)
    assert K.shape == T.shape == (6, 6)
    T2, parts = tp.ntk(mlp, contributions=True)
    np.testing.assert_allclose(sum(parts.values()), T2, rtol=1e-13)
    assert set(parts) == {"W1", "W2", "b1", "b2", "U_h1", "readout"}
    # each share is a PSD kernel
    for value in parts.values():
        assert np.linalg.eigvalsh(value).min() > -1e-10


def test_path_classes_are_reported(mlp):
    _, parts = tp.ntk(mlp, method="paths", contributions=True)
    assert ("W1", ("W1", "W2")) in parts
    assert ("W2", ("W2",)) in parts
    assert ("readout", ()) in parts


def test_untrained_parameters_are_left_out(inputs):
    p = tp.Program("frozen")
    h = p.embed(inputs, var=2.0, trainable=False)
    W = p.matrix("W", 2.0, trainable=False)
    p.output(tp.relu(W @ tp.relu(h)), var=2.0, trainable=False)
    assert np.all(tp.ntk(p) == 0)
