"""Architecture builders refuse sizes that would silently build another network."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

import tensorprog as tp

PROGRAMS = Path(__file__).resolve().parents[2] / "programs"


def build(name, **kw):
    spec = importlib.util.spec_from_file_location(name, PROGRAMS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    X = {"cnn": np.ones((2, 4, 1)), "attention": np.ones((2, 3, 2))}.get(name, np.eye(3))
    return module.build(X, **kw)


@pytest.mark.parametrize("name, size, value", [
    ("mlp", "depth", -1), ("mlp", "depth", 2.5), ("mlp", "depth", True),
    ("layernorm", "depth", -1), ("batchnorm", "depth", -2), ("resnet", "blocks", -1),
    ("cnn", "depth", 0), ("attention", "blocks", -1),
])
def test_bad_sizes_are_refused(name, size, value):
    with pytest.raises(tp.ProgramError, match=f"{size}.* must be an integer"):
        build(name, **{size: value})


def test_zero_depth_is_a_network_without_hidden_matrices():
    p = build("mlp", depth=0)
    assert not p.nodes("matrix")


@pytest.mark.parametrize("coefficient", [np.nan, float("inf"), -np.inf, np.float64("nan")])
def test_non_finite_coefficients_are_refused(coefficient):
    h = tp.demo_program().var("h1")
    with pytest.raises(tp.ProgramError, match="a coefficient must be finite"):
        tp.polynomial(h, [1.0, coefficient])
