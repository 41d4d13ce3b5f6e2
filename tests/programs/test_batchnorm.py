"""BatchNorm across a batch of inputs: kernels inside and across batches, validated at finite
width (the exactness of its finite-width NTK through the cross-input dependence is checked
against brute-force gradients in tests/backends/test_simulate_bruteforce.py)."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

import tensorprog as tp

PROGRAM = Path(__file__).resolve().parents[2] / "programs" / "batchnorm.py"


def load():
    spec = importlib.util.spec_from_file_location("batchnorm", PROGRAM)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def program():
    X = np.random.default_rng(0).standard_normal((4, 3))
    return load().build(X, batch_size=2, depth=1, activation="erf", eps=0.5)


def test_batch_statistics_couple_inputs(program):
    K = tp.nngp(program)
    # B = 2: the two normalised vectors of a batch are exact negatives, so inside a batch the
    # kernel is −K(i, i) + 2σ_b² (erf is odd), across batches it is an ordinary kernel
    for i, j in ((0, 1), (2, 3)):
        assert K[i, j] == pytest.approx(-K[i, i] + 2 * 0.1, abs=5e-3)
    assert abs(K[0, 2]) > 0.05
    T = tp.ntk(program)
    np.testing.assert_allclose(T, T.T, atol=1e-12)
    # PSD up to the Monte-Carlo tier's error (2B = 4 atoms per pair of inputs, sampled jointly;
    # standard errors ≲ 2e-5, and one eigenvalue is ~0 because a batch's outputs are opposite)
    eig = np.linalg.eigvalsh(T)
    assert eig.min() > -1e-3 * eig.max()


def test_batchnorm_validates_at_finite_width(program):
    report = tp.validate(program, widths=[64, 128, 256, 512], seeds=200, seed=1)
    assert report.passed, report.to_markdown()


def test_batch_size_must_divide_inputs():
    with pytest.raises(tp.ProgramError, match="batches of 3"):
        load().build(np.eye(4), batch_size=3)


def test_paths_agree_with_backprop_through_the_batch(program, monkeypatch):
    """Path sums through the cross-input SELECTs (run, like backprop, on the program lifted to
    dependency pairs) against backprop.  Both sample the Monte-Carlo tier with their own draws,
    so they differ by its noise: 2.0e-3, 5.1e-4 and 2.6e-5 (relative) at 1×, 4× and 16× the
    default points.  At 16× a wrong formula would still leave its gap; the noise is below 1e-4."""
    from tensorprog.limit import sampling

    monkeypatch.setattr(sampling, "POINTS", 16 * sampling.POINTS)
    T_bp, parts_bp = tp.ntk(program, contributions=True)
    T_path, parts = tp.ntk(program, method="paths", contributions=True)
    assert np.linalg.norm(T_path - T_bp) < 1e-4 * np.linalg.norm(T_bp)
    assert set(tp.kernels.by_parameter(parts)) == set(parts_bp)
