"""tp.simulate: shapes, reproducibility, chunking, memory planning, errors, scalars."""
import importlib

import numpy as np
import pytest
import sympy as sp

import tensorprog as tp
from tensorprog.backends import arrays

from ..conftest import build_mlp, layernorm_program


def unit_inputs(N=3, d=5, seed=0):
    X = np.random.default_rng(seed).standard_normal((N, d))
    return X / np.linalg.norm(X, axis=1, keepdims=True)


@pytest.fixture
def mlp():
    return build_mlp(unit_inputs(), depth=2, wvar=2.0, bvar=0.1)


def test_shapes_and_types(mlp):
    sim = tp.simulate(mlp, width=32, seeds=5, backend="numpy")
    assert isinstance(sim, tp.Simulation)
    assert sim.nngp_samples.shape == sim.ntk_samples.shape == (5, 3, 3)
    assert sim.outputs.shape == (5, 3)
    assert sim.nngp.shape == sim.ntk.shape == sim.nngp_stderr.shape == (3, 3)
    assert set(sim.ntk_contributions) == {"W1", "W2", "U_h1", "b1", "b2", "readout"}
    for v in sim.ntk_contributions.values():
        assert isinstance(v, np.ndarray) and v.shape == (5, 3, 3)
    np.testing.assert_allclose(sim.ntk_samples, sum(sim.ntk_contributions.values()))
    np.testing.assert_allclose(sim.nngp_samples, np.swapaxes(sim.nngp_samples, 1, 2))
    np.testing.assert_allclose(sim.ntk_samples, np.swapaxes(sim.ntk_samples, 1, 2), atol=1e-12)
    assert np.all(np.linalg.eigvalsh(sim.ntk_samples) > 0)
    np.testing.assert_allclose(sim.ntk_stderr,
                               sim.ntk_samples.std(axis=0, ddof=1) / np.sqrt(5))
    assert sim.output_cov.shape == (3, 3)
    assert sim.backend == "numpy" and sim.width == 32 and sim.seeds == 5
    assert "width 32" in repr(sim)


def test_readout_contribution_is_the_nngp_sample(mlp):
    sim = tp.simulate(mlp, width=16, seeds=3, backend="numpy")
    np.testing.assert_array_equal(sim.ntk_contributions["readout"], sim.nngp_samples)


def test_reproducible_and_independent_of_chunking(mlp):
    a = tp.simulate(mlp, width=24, seeds=7, backend="numpy", seed=11)
    b = tp.simulate(mlp, width=24, seeds=7, backend="numpy", seed=11, chunk=3)
    c = tp.simulate(mlp, width=24, seeds=7, backend="numpy", seed=12)
    assert b.chunk == 3
    np.testing.assert_array_equal(a.ntk_samples, b.ntk_samples)
    np.testing.assert_array_equal(a.outputs, b.outputs)
    assert not np.allclose(a.ntk_samples, c.ntk_samples)
    # seed s of a larger run is seed s of a smaller one
    d = tp.simulate(mlp, width=24, seeds=2, backend="numpy", seed=11)
    np.testing.assert_array_equal(d.nngp_samples, a.nngp_samples[:2])


def test_float32_close_to_float64(mlp):
    a = tp.simulate(mlp, width=64, seeds=3, backend="numpy", dtype=np.float32)
    b = tp.simulate(mlp, width=64, seeds=3, backend="numpy", dtype=np.float64)
    assert a.ntk_samples.dtype == np.float32
    # float32 normals differ from float64 ones, so only the order of magnitude agrees
    assert np.all(np.abs(np.log(np.diagonal(a.ntk, axis1=0, axis2=1) /
                                np.diagonal(b.ntk, axis1=0, axis2=1))) < 1.0)


def test_scalars_and_extra_moments():
    X = unit_inputs()
    p = layernorm_program(X)
    sim = tp.simulate(p, width=64, seeds=4, backend="numpy", keep_parameters=True,
                      moments={"q_h": "h1*h1", "q_y": sp.Symbol("x1", real=True) ** 2})
    assert sim.scalars["theta"].shape == (4, 3)
    x = sim.parameters["W1"] @ np.maximum(
        sim.parameters["U_h1"] @ X.T + sim.parameters["U_h1.bias"][..., None], 0)
    np.testing.assert_allclose(sim.scalars["theta"], (x * x).mean(axis=1), rtol=1e-12)
    h = sim.parameters["U_h1"] @ X.T + sim.parameters["U_h1.bias"][..., None]
    np.testing.assert_allclose(sim.scalars["q_h"], (h * h).mean(axis=1), rtol=1e-12)
    assert sim.scalar_mean("theta").shape == (3,)
    assert sim.scalar_stderr("theta").shape == (3,)
    with pytest.raises(tp.ProgramError, match="no scalar"):
        sim.scalar_mean("nope")


def test_initial_scalars_and_shared_moments():
    X = unit_inputs()
    p = tp.Program("shared")
    h = p.embed(X, var=1.0)
    b = p.bias("b", var=2.0)
    c = p.scalar("c", 0.5)
    m = (b * b).mean(name="bb")           # a shared moment: one number per seed
    p.output(tp.nonlin(lambda x, bb, cc: cc * x * bb, h, scalars=[m, c]), var=1.0)
    sim = tp.simulate(p, width=4000, seeds=3, backend="numpy")
    assert sim.scalars["bb"].shape == (3, 1)
    np.testing.assert_array_equal(sim.scalars["c"], np.full((3, 1), 0.5))
    assert np.all(np.abs(sim.scalars["bb"] - 2.0) < 0.3)


def test_program_without_output_gives_scalars_only():
    C = np.array([[1.0, 0.3], [0.3, 2.0]])
    p = tp.Program("zdot")
    x = p.vector("x", C)
    W = p.matrix("W", var=1.5)
    z = W.T @ tp.tanh(W @ x)
    (z * x).mean(name="theta")
    sim = tp.simulate(p, width=128, seeds=2, backend="numpy")
    assert sim.scalars["theta"].shape == (2, 2)
    assert sim.nngp_samples is None and sim.outputs is None
    with pytest.raises(tp.ProgramError, match="no output"):
        sim.nngp
    with pytest.raises(tp.ProgramError, match="no output"):
        sim.ntk_samples


def test_initial_vectors_have_their_covariance():
    """Given families, their cross-covariance with an input layer, and shared vectors."""
    X = unit_inputs(N=2, d=3)
    p = tp.Program("init")
    h = p.embed(X, var=1.0, bias_var=0.5)
    K0 = 1.0 * X @ X.T / 3 + 0.5
    C = np.array([[1.0, 0.2], [0.2, 0.7]])
    cross = 0.3 * K0                      # Cov(u, h) = 0.3·K⁰ (PSD jointly)
    u = p.vector("u", C, cross={"h1": cross})
    s = p.bias("s", var=3.0, trainable=False)
    n = 200000
    sim = tp.simulate(p, width=n, seeds=1, backend="numpy", keep_parameters=True)
    P = sim.parameters
    hv = P["U_h1"][0] @ X.T + P["U_h1.bias"][0][:, None]
    uv, sv = P["u"][0], P["s"][0]
    tol = 5 / np.sqrt(n)
    np.testing.assert_allclose(hv.T @ hv / n, K0, atol=tol * 3)
    np.testing.assert_allclose(uv.T @ uv / n, C, atol=tol * 3)
    np.testing.assert_allclose(uv.T @ hv / n, cross, atol=tol * 3)
    assert abs(sv @ sv / n - 3.0) < tol * 6
    assert abs(sv @ uv[:, 0] / n) < tol * 3


def test_bad_arguments(mlp):
    for kw, match in [(dict(width=0), "width"), (dict(width=-3), "width"),
                      (dict(width=2.5), "width"), (dict(seeds=0), "seeds"),
                      (dict(backend="torch"), "unknown backend"),
                      (dict(dtype=np.int32), "dtype"), (dict(chunk=0), "chunk"),
                      (dict(seed=-1), "seed"), (dict(rng="mt"), "rng")]:
        args = dict(width=8, seeds=2, backend="numpy") | kw
        with pytest.raises(tp.ProgramError, match=match):
            tp.simulate(mlp, **args)
    with pytest.raises(tp.ProgramError, match="Program"):
        tp.simulate("mlp", width=8)
    with pytest.raises(tp.ProgramError, match="already a variable"):
        tp.simulate(mlp, width=8, backend="numpy", moments={"W1": "h1"})
    with pytest.raises(tp.ParseError, match="'zz' at column 1 of `zz\\*h1`: unknown name"):
        tp.simulate(mlp, width=8, backend="numpy", moments={"m": "zz*h1"})


def test_cupy_requested_without_cupy(mlp, monkeypatch):
    monkeypatch.setattr(arrays, "_import_cupy", lambda: (None, 0))
    with pytest.raises(tp.ResourceError, match="CuPy is not installed"):
        tp.simulate(mlp, width=8, backend="cupy")
    assert tp.simulate(mlp, width=8, seeds=1, backend="auto").backend == "numpy"


def test_memory_planning_chunks_and_refuses(mlp, monkeypatch):
    sim_module = importlib.import_module("tensorprog.backends.simulate")
    per_seed = sim_module.bytes_per_seed(tp.backward_program(mlp).program, 64, np.float64)
    assert per_seed >= 2 * 64 * 64 * 8  # two matrices
    budget = 3.5 * per_seed / arrays.MEMORY_FRACTION
    monkeypatch.setattr(sim_module, "available_bytes", lambda xp: budget)
    sim = tp.simulate(mlp, width=64, seeds=10, backend="numpy")
    assert sim.chunk == 3
    with pytest.raises(tp.ResourceError, match="chunk=10"):
        tp.simulate(mlp, width=64, seeds=10, backend="numpy", chunk=10)
    with pytest.raises(tp.ResourceError, match=r"width n=100000.*smaller width"):
        tp.simulate(mlp, width=100000, seeds=1, backend="numpy")


def test_huge_width_is_a_resource_error_not_a_crash(mlp):
    with pytest.raises(tp.ResourceError, match="n=1000000"):
        tp.simulate(mlp, width=1_000_000, seeds=1, backend="numpy")


def test_chunk_bounds():
    assert arrays.chunk_bounds(7, 3) == [(0, 3), (3, 6), (6, 7)]
    assert arrays.chunk_bounds(2, 5) == [(0, 2)]


def test_nngp_samples_average_to_output_covariance(mlp):
    """E[f fᵀ] = E[nngp sample] at any width: compare the two estimates within their noise."""
    sim = tp.simulate(mlp, width=16, seeds=4000, backend="numpy", seed=2)
    f = sim.outputs
    prod = f[:, :, None] * f[:, None, :]
    se = np.sqrt(prod.var(axis=0, ddof=1) / sim.seeds + sim.nngp_stderr**2)
    z = np.abs(sim.output_cov - sim.nngp) / se
    assert z.max() < 4, z


def test_shared_and_interleaved_input_layers():
    """Embeddings sharing a weight share (U, b); a vector correlated with one of several
    interleaved input layers gets exactly that cross-covariance."""
    rng = np.random.default_rng(3)
    X1, X2 = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    p = tp.Program("embeds")
    p.embed(X1, var=1.0, bias_var=0.2, weight="U", name="ha")
    p.embed(X2, var=2.0, bias_var=0.0, weight="V", name="hb")
    p.embed(X2, var=1.0, bias_var=0.2, weight="U", name="hc")
    Kb = 2.0 * X2 @ X2.T / 3
    cross = 0.25 * Kb                     # jointly PSD: I − 0.0625·Kb ⪰ 0
    p.vector("u", np.eye(2), cross={"hb": cross})
    n = 200000
    sim = tp.simulate(p, width=n, seeds=1, backend="numpy", keep_parameters=True)
    P = {k: v[0] for k, v in sim.parameters.items()}
    ha = P["U"] @ X1.T + P["U.bias"][:, None]
    hb = P["V"] @ X2.T + P["V.bias"][:, None]
    hc = P["U"] @ X2.T + P["U.bias"][:, None]
    u = P["u"]
    tol = 6 / np.sqrt(n)
    np.testing.assert_allclose(ha.T @ hc / n, X1 @ X2.T / 3 + 0.2, atol=tol * 3)
    np.testing.assert_allclose(u.T @ hb / n, cross, atol=tol * 3)
    np.testing.assert_allclose(u.T @ ha / n, 0, atol=tol * 3)
    np.testing.assert_allclose(u.T @ u / n, np.eye(2), atol=tol * 3)
