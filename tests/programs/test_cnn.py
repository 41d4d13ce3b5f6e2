"""CNNs (``programs/cnn.py``, ``tensorprog/nn/convolution.py``) against an independent CNN-kernel
recursion, and at finite width.

The reference below is written from the usual CNN-kernel convention, not from the program:
``stax.serial(Conv(C, k, padding, W_std, b_std), Relu, …, GlobalAvgPool() | Flatten(),
Dense(1, W_std, b_std))`` in NTK parametrization, on the full (input, position) × (input,
position) covariance ``K[i, p; j, q]``:

* input: ``K⁰[i,p; j,q] = ξ_i[p]·ξ_j[q] / C``;
* conv: ``K ← W_std²/k Σ_t K[p+o_t, q+o_t] + b_std²``, ``Θ ← W_std²/k Σ_t Θ[p+o_t, q+o_t] + K``
  (offsets ``o_t = t − (k−1)//2`` per axis, SAME size; ``'CIRCULAR'``: indices wrap (np.roll);
  ``'SAME'``: out-of-range terms are 0 but the normalisation stays 1/k (np.pad with zeros));
* relu: arc-cosine maps ``K ← E[φ(u)φ(v)]``, ``Θ ← Θ ⊙ E[φ'(u)φ'(v)]``;
* GlobalAvgPool: mean over all (p, q); Flatten: mean over the diagonal p = q;
* Dense: ``K ← W_std² K + b_std²``, ``Θ ← W_std² Θ + K``.
"""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

import tensorprog as tp
from tensorprog.nn import convolution as C

_spec = importlib.util.spec_from_file_location(
    "programs_cnn", Path(__file__).resolve().parents[2] / "programs" / "cnn.py")
cnn = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cnn)

WVAR, BVAR = 1.7, 0.2


# ---------------------------------------------------------------------- the reference
def _relu_maps(K):
    """E[relu(u)relu(v)] and E[1{u>0}1{v>0}] for every entry of an (N, P, N, P) covariance."""
    diag = np.einsum("ipip->ip", K)
    var = diag[:, :, None, None] * diag[None, None, :, :]
    # the angle between u and v by atan2: exactly 0 on the diagonal (arccos of a rounded
    # correlation would be ~1e-8 off there)
    theta = np.arctan2(np.sqrt(np.maximum(var - K * K, 0.0)), K)
    relu = np.sqrt(var) * (np.sin(theta) + (np.pi - theta) * np.cos(theta)) / (2 * np.pi)
    return relu, (np.pi - theta) / (2 * np.pi)


def _conv_avg(K, shape, filter_shape, padding):
    """(1/k) Σ_t K[i, p+o_t; j, q+o_t] on the (N, P, N, P) array of images of ``shape``."""
    N, nd = K.shape[0], len(shape)
    K = K.reshape((N,) + shape + (N,) + shape)
    axes = tuple(range(1, 1 + nd)) + tuple(range(2 + nd, 2 + 2 * nd))
    lo = [(k - 1) // 2 for k in filter_shape]
    if padding == "zero":
        pad = [(0, 0)] + [(k, k) for k in filter_shape]
        padded = np.pad(K, pad + pad)
    out = np.zeros_like(K)
    for t in np.ndindex(*filter_shape):
        o = [t[a] - lo[a] for a in range(nd)]
        if padding == "circular":
            out += np.roll(K, [-x for x in o] * 2, axis=axes)
        else:
            window = tuple(slice(k + x, k + x + s) for k, x, s in zip(filter_shape, o, shape))
            out += padded[(slice(None),) + window + (slice(None),) + window]
    P = int(np.prod(shape))
    return out.reshape(N, P, N, P) / int(np.prod(filter_shape))


def reference_kernels(X, depth, filter_size, padding, readout, wvar=WVAR, bvar=BVAR):
    """(NNGP, NTK) of the standard CNN kernel recursion (module docstring)."""
    N, shape, Cin = X.shape[0], X.shape[1:-1], X.shape[-1]
    fshape = (filter_size,) * len(shape) if np.ndim(filter_size) == 0 else tuple(filter_size)
    P = int(np.prod(shape))
    x = X.reshape(N, P, Cin)
    K = wvar * _conv_avg(np.einsum("ipc,jqc->ipjq", x, x) / Cin, shape, fshape, padding) + bvar
    T = K.copy()
    for layer in range(1, depth + 1):
        Kr, Kd = _relu_maps(K)
        Tr = T * Kd
        if layer < depth:
            K = wvar * _conv_avg(Kr, shape, fshape, padding) + bvar
            T = wvar * _conv_avg(Tr, shape, fshape, padding) + K
    if readout == "gap":
        Kp, Tp = Kr.mean(axis=(1, 3)), Tr.mean(axis=(1, 3))
    else:
        Kp, Tp = np.einsum("ipjp->ij", Kr) / P, np.einsum("ipjp->ij", Tr) / P
    K = wvar * Kp + bvar
    return K, wvar * Tp + K


# ---------------------------------------------------------------------- kernels vs reference
def _images(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


CASES = [(shape, k, depth, padding, readout)
         for shape, k in [((3, 6, 2), 3), ((2, 3, 4, 2), 3)]
         for depth in (1, 2) for padding in ("circular", "zero") for readout in ("gap", "flatten")]
# even filters: the SAME offsets are asymmetric (−(k−1)//2 … k//2), which zero padding exposes
CASES += [((3, 5, 2), 2, 2, "zero", "gap"), ((3, 5, 2), 4, 2, "circular", "flatten"),
          ((2, 3, 4, 1), (2, 3), 2, "zero", "flatten"),
          ((2, 3, 4, 1), (2, 3), 2, "circular", "gap")]


@pytest.mark.parametrize("shape,k,depth,padding,readout", CASES)
def test_kernels_match_standard_cnn_recursion(shape, k, depth, padding, readout):
    X = _images(shape)
    p = cnn.build(X, depth=depth, filter_size=k, padding=padding, readout=readout,
                  wvar=WVAR, bvar=BVAR)
    K_ref, T_ref = reference_kernels(X, depth, k, padding, readout)
    K, T = tp.nngp(p), tp.ntk(p)
    assert K.shape == T.shape == (shape[0], shape[0])
    np.testing.assert_allclose(K, K_ref, rtol=1e-6, atol=1e-6 * np.abs(K_ref).max())
    np.testing.assert_allclose(T, T_ref, rtol=1e-6, atol=1e-6 * np.abs(T_ref).max())
    # every expectation of a relu CNN has a closed form: agreement to rounding, not just 1e-6
    assert np.abs(K - K_ref).max() < 1e-12 * np.abs(K_ref).max()
    assert np.abs(T - T_ref).max() < 1e-12 * np.abs(T_ref).max()
    # path sums through the shift SELECTs, pooling and the per-slot flatten readout
    assert np.abs(tp.ntk(p, method="paths") - T_ref).max() < 1e-12 * np.abs(T_ref).max()


def test_ntk_contributions_by_layer():
    """Readout share = NNGP; the taps of a hidden conv are separate parameters (one matrix each)."""
    X = _images((3, 5, 2), seed=3)
    p = cnn.build(X, depth=2, filter_size=3, padding="zero", readout="gap", wvar=WVAR, bvar=BVAR)
    T, parts = tp.ntk(p, contributions=True)
    np.testing.assert_allclose(parts["readout"], tp.nngp(p), rtol=1e-13)
    taps = sorted(k for k in parts if k.startswith("W_conv2_"))
    assert taps == ["W_conv2_0", "W_conv2_1", "W_conv2_2"]
    assert all(np.linalg.eigvalsh(parts[k]).min() > -1e-12 for k in taps)
    np.testing.assert_allclose(sum(parts.values()), T, rtol=1e-13)


# ---------------------------------------------------------------------- the program itself
def test_im2col_and_shifts():
    X = _images((2, 5, 3), seed=1)
    offsets = C.filter_offsets(3, 1)
    assert offsets.ravel().tolist() == [-1, 0, 1]
    assert C.filter_offsets(4, 1).ravel().tolist() == [-1, 0, 1, 2]
    assert C.filter_offsets((2, 3), 2).tolist() == [[0, -1], [0, 0], [0, 1],
                                                     [1, -1], [1, 0], [1, 1]]
    circ = C.patches(X, 3, "circular").reshape(2, 5, 3, 3)
    zero = C.patches(X, 3, "zero").reshape(2, 5, 3, 3)
    for p in range(5):
        for t, o in enumerate((-1, 0, 1)):
            np.testing.assert_array_equal(circ[:, p, t], X[:, (p + o) % 5])
            expected = X[:, p + o] if 0 <= p + o < 5 else np.zeros((2, 3))
            np.testing.assert_array_equal(zero[:, p, t], expected)
    grid = C.Grid("pos", 2, (2, 3))
    # 2-D: member i·6 + 3h + w; shift by (0, 1)
    assert C.shift_index(grid, (0, 1), "circular").tolist() == [1, 2, 0, 4, 5, 3,
                                                               7, 8, 6, 10, 11, 9]
    assert C.shift_index(grid, (1, 0), "zero").tolist() == [3, 4, 5, -1, -1, -1,
                                                           9, 10, 11, -1, -1, -1]


def test_program_grows_with_positions_not_pairs():
    """One node per tap and layer; P pooling SELECTs; nothing per pair of positions."""
    counts = {}
    for P in (4, 8, 16):
        p = cnn.build(_images((2, P, 1)), depth=3, filter_size=3, padding="zero", readout="gap")
        counts[P] = len(p.order)
        assert len(p.nodes("matrix")) == 2 * 3
        assert p.family_size("pos") == 2 * P
    assert counts[4] - 4 == counts[8] - 8 == counts[16] - 16  # + one pooling SELECT per position
    flat = {P: cnn.build(_images((2, P, 1)), depth=3, filter_size=3, padding="zero",
                         readout="flatten") for P in (4, 16)}
    assert len(flat[4].order) == len(flat[16].order)  # the flatten readout adds no node
    assert flat[16].readout.slots == tuple(np.tile(np.arange(16), 2))


def test_text_round_trip_and_depth_counting():
    X = _images((2, 4, 2))
    p = cnn.build(X, depth=2, filter_size=3, padding="zero", readout="gap")
    assert tp.Program.from_text(p.to_text()) == p
    text = str(p)
    assert "FAMILY: pos" in text and "embed(X1" in text and text.count("MATRIX:") == 3
    q = cnn.build(X, depth=1, filter_size=3, padding="circular", readout="flatten")
    assert not q.nodes("matrix") and "slots=" in str(q)


def test_bad_arguments():
    X = _images((2, 4, 1))
    with pytest.raises(tp.ProgramError, match="padding"):
        cnn.build(X, padding="reflect")
    with pytest.raises(tp.ProgramError, match="readout"):
        cnn.build(X, readout="max")
    with pytest.raises(tp.ProgramError, match="depth"):
        cnn.build(X, depth=0)
    with pytest.raises(tp.ProgramError, match="shape"):
        cnn.build(X[..., 0])
    with pytest.raises(tp.ProgramError, match="filter_size"):
        cnn.build(X, filter_size=(3, 3))
    p = tp.Program("mismatch")
    p.embed(np.eye(3))
    with pytest.raises(tp.ProgramError, match="3 inputs"):
        C.conv_embed(p, X, 3)


# ---------------------------------------------------------------------- finite width
VALIDATIONS = {
    "1d-circular-gap": dict(shape=(2, 4, 2), k=3, padding="circular", readout="gap"),
    "1d-zero-flatten": dict(shape=(3, 5, 1), k=3, padding="zero", readout="flatten"),
    "2d-zero-gap": dict(shape=(2, 2, 3, 1), k=(2, 2), padding="zero", readout="gap"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(VALIDATIONS))
def test_finite_width_converges(name):
    """Depth-2 CNNs (a hidden conv with one matrix per tap) at widths 64…512, 100 seeds."""
    cfg = VALIDATIONS[name]
    X = _images(cfg["shape"], seed=2)
    p = cnn.build(X, depth=2, filter_size=cfg["k"], padding=cfg["padding"],
                  readout=cfg["readout"], wvar=2.0, bvar=0.1)
    rep = tp.validate(p, widths=(64, 128, 256, 512), seeds=100, backend="numpy", seed=1)
    assert rep.passed, rep.to_markdown()
    for q in ("nngp", "ntk"):
        slope, _ = rep.slopes[q]
        assert abs(slope + 0.5) < 0.1, (q, slope)
        assert rep.rows(q)[-1].stats.max_z < 4
