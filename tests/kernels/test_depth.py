"""Deep programs: the derivation is iterative and plans each layer's expectations once
(docs/performance.md, "Deep programs"), and its kernels follow the hand recursion at any depth."""
import numpy as np
import pytest

import tensorprog as tp
from programs import mlp
from tensorprog.expectations.canonical import _derivative
from tensorprog.expectations.closed_forms import exact_plan
from tensorprog.expectations.decompose import plan_expectation

from .reference import mlp_kernels

X = np.random.default_rng(0).standard_normal((3, 4))


def test_depth_1000_relu_mlp_matches_the_recursion():
    p = mlp.build(X, depth=1000)
    K_ref, T_ref = mlp_kernels(X, 1000, 2.0, 0.1, "relu")
    np.testing.assert_allclose(tp.nngp(p), K_ref, rtol=1e-9)
    np.testing.assert_allclose(tp.ntk(p), T_ref, rtol=1e-9)


def test_depth_400_paths_and_limit_route_match_the_recursion():
    p = mlp.build(X, depth=400)
    _, T_ref = mlp_kernels(X, 400, 2.0, 0.1, "relu")
    np.testing.assert_allclose(tp.ntk(p, method="paths"), T_ref, rtol=1e-9)
    # contributions=True runs the limit of the backward program itself (not the compiled plan)
    T, parts = tp.ntk(p, contributions=True)
    np.testing.assert_allclose(T, T_ref, rtol=1e-9)
    assert {f"W{l}" for l in range(1, 401)} <= set(parts)


@pytest.mark.parametrize("method", ["backprop", "paths"])
def test_a_deeper_program_plans_nothing_new(method):
    """Every layer asks the same expectations up to the names of its atoms: once a program of
    depth 30 is derived, one of depth 60 adds no plan and no derivative."""
    caches = (exact_plan, plan_expectation, _derivative)
    tp.ntk(mlp.build(X, depth=30), method=method)
    before = [c.cache_info().misses for c in caches]
    T = tp.ntk(mlp.build(X, depth=60), method=method)
    assert [c.cache_info().misses for c in caches] == before
    np.testing.assert_allclose(T, mlp_kernels(X, 60, 2.0, 0.1, "relu")[1], rtol=1e-10)


@pytest.mark.parametrize("method, lines", [
    ("backprop", ["writing the backward pass of 'mlp'", "deriving the limit of 'mlp'",
                  "evaluating the limit of 'mlp'"]),
    ("paths", ["deriving the limit of 'mlp'", "summing the paths of 'mlp'"])])
def test_long_derivations_show_progress(method, lines, monkeypatch, capsys):
    """Every stage of a kernel that can take long reports on stderr (here from the first step:
    by default after 3 s)."""
    from tensorprog.resources import Progress
    monkeypatch.setattr(Progress, "delay", 0.0)
    monkeypatch.setattr(Progress, "interval", 0.0)
    monkeypatch.delenv("TENSORPROG_PROGRESS", raising=False)
    tp.ntk(mlp.build(X, depth=7, bvar=0.2), method=method)   # a structure not derived before
    err = capsys.readouterr().err
    for line in lines:
        assert line in err
    assert "backward covariances (" in err or method == "backprop"
