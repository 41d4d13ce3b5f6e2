"""Convolutions as Tensor Programs (TP IIb Fig. 5): one vector per spatial position, one n×n
matrix per filter tap.

A CNN on N images with P spatial positions each (1-D: P positions; 2-D: P = H·W positions,
flattened row-major as (h, w)) holds, for every layer, one R^n vector per (image, position)
pair.  All of them form one *family* of N·P members (:func:`image_family`), member
``a = i·P + p`` being owned by image ``i``, so that one node of the program stands for all the
(image, position) vectors at once and every covariance the compiler computes is an
(N·P, N·P) array over all pairs — nothing loops over positions in Python (only over filter
taps, each of which is an instruction).

The blocks (NTK parametrization, TP IIb Setup 5.2; stride 1, "SAME" output size, filter taps at
offsets ``t − (k−1)//2`` per axis as in ``lax.conv``'s SAME padding):

* :func:`conv_embed` — the first convolution, on the input image, is an *embedding of patches*
  (im2col, :func:`patches`): ``h_{i,p} = U ξ_i[p + offsets] + b`` with ``U`` n × (k·C),
  ``U_ab ~ N(0, wvar/(k·C))``, ``b ~ N(0, bvar)``.  Its Z is Gaussian with covariance
  ``wvar·⟨patch_{i,p}, patch_{j,q}⟩/(k·C) + bvar`` (zero padding: the patch holds zeros where
  the filter leaves the image, and the fan-in stays k·C).
* :func:`conv` — a hidden convolution ``h_p = Σ_t W_t x_{p + o_t} + b``: one n×n matrix W_t per
  tap t (fan-in k·n, so ``W_t ~ N(0, (wvar/k)/n)``) and a bias shared by the positions
  (a shared trainable vector); the shifted vectors ``x_{p+o_t}`` are SELECTs of x (:func:`shift`:
  circular padding wraps modulo the image size, zero padding reads the zero vector, index −1).
  Its limit is the standard CNN recursion ``K_{l+1}[p, q] = wvar/k Σ_t E[x_{p+o_t} x_{q+o_t}]
  + bvar`` (a term whose shifted position leaves a zero-padded image is 0).
* :func:`global_avg_pool` — ``(1/P) Σ_p x_p`` into the inputs family (a NONLIN of P SELECTs),
  to be read out by ``p.output``.
* :func:`flatten_readout` — ``f(ξ_i) = Σ_p v_p·x_{i,p}/√(nP) + b``: one readout vector per
  position (``p.output(x, ..., slots=position)``).

Both paddings, 1-D and 2-D.  The kernels agree with the usual CNN-kernel convention
(``Conv(W_std, b_std)`` in NTK parametrization, ``GlobalAvgPool``, ``Flatten``); see
``docs/architectures/cnn.md``.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np

from ..errors import ProgramError
from ..ir.builder import Var
from ..ir.program import INPUTS

PADDINGS = ("circular", "zero")

__all__ = ["Grid", "ImagePatches", "image_family", "patches", "filter_offsets", "shift_index", "shift",
           "conv_embed", "conv", "global_avg_pool", "flatten_readout",
           "PADDINGS"]


@dataclass(frozen=True)
class Grid:
    """The (image, position) family of a CNN: ``num_images`` images of spatial ``shape``
    ((P,) in 1-D, (H, W) in 2-D), member ``a = i·P + p`` (p the row-major flat position) owned
    by image i, in the program's family ``family``."""

    family: str
    num_images: int
    shape: tuple

    @property
    def positions(self) -> int:
        return int(np.prod(self.shape))

    @property
    def size(self) -> int:
        return self.num_images * self.positions

    @property
    def owner(self) -> np.ndarray:
        """Image of each member: ``repeat(arange(N), P)``."""
        return np.repeat(np.arange(self.num_images), self.positions)

    @property
    def slot(self) -> np.ndarray:
        """Flat position of each member: ``tile(arange(P), N)`` (the flatten readout's slots)."""
        return np.tile(np.arange(self.positions), self.num_images)


def _check_padding(padding: str) -> None:
    if padding not in PADDINGS:
        raise ProgramError(f"padding must be one of {PADDINGS}, got {padding!r}")


def _filter_shape(filter_size, ndim: int) -> tuple:
    shape = (filter_size,) * ndim if np.ndim(filter_size) == 0 else tuple(filter_size)
    if len(shape) != ndim or not all(isinstance(k, (int, np.integer)) and k >= 1 for k in shape):
        raise ProgramError(f"filter_size must be a positive integer or {ndim} of them, got "
                           f"{filter_size!r}")
    return tuple(int(k) for k in shape)


def filter_offsets(filter_size, ndim: int) -> np.ndarray:
    """(k, ndim) integer offsets of the taps of a stride-1 "SAME" filter: per axis
    ``t − (k_axis − 1)//2`` for ``t = 0 … k_axis − 1`` (``lax.conv`` SAME padding), taps in
    row-major order."""
    shape = _filter_shape(filter_size, ndim)
    axes = [np.arange(k) - (k - 1) // 2 for k in shape]
    return np.array(list(product(*axes)), dtype=np.intp).reshape(-1, ndim)


def _source_positions(shape: tuple, offset, padding: str) -> np.ndarray:
    """(P,) flat position read by each position ``p`` at ``p + offset`` (−1 outside the image
    with zero padding)."""
    _check_padding(padding)
    grid = np.indices(shape).reshape(len(shape), -1).T          # (P, ndim) row-major
    src = grid + np.asarray(offset, dtype=np.intp)[None, :]
    dims = np.asarray(shape)[None, :]
    if padding == "circular":
        return np.ravel_multi_index(tuple((src % dims).T), shape)
    inside = np.all((src >= 0) & (src < dims), axis=1)
    flat = np.ravel_multi_index(tuple(np.where(inside[:, None], src, 0).T), shape)
    return np.where(inside, flat, -1)


def shift_index(grid: Grid, offset, padding: str) -> np.ndarray:
    """SELECT index (one entry per member) of the view ``x'_{i,p} = x_{i, p + offset}``:
    positions wrap modulo the image (``"circular"``) or read the zero vector, index −1
    (``"zero"``)."""
    src = _source_positions(grid.shape, offset, padding)
    base = np.arange(grid.num_images)[:, None] * grid.positions
    return np.where(src[None, :] >= 0, base + src[None, :], -1).ravel()


def patches(X, filter_size, padding: str) -> np.ndarray:
    """im2col: the (N·P, k·C) array whose row ``i·P + p`` is the patch of image i under the
    filter at position p (zeros where a zero-padded filter leaves the image).

    ``X`` has shape (N, P, C) (1-D) or (N, H, W, C) (2-D)."""
    X = np.asarray(X, dtype=float)
    if X.ndim not in (3, 4):
        raise ProgramError(f"images must have shape (N, P, C) or (N, H, W, C), got {X.shape}")
    N, shape, C = X.shape[0], X.shape[1:-1], X.shape[-1]
    flat = X.reshape(N, -1, C)
    flat = np.concatenate([flat, np.zeros((N, 1, C))], axis=1)   # position −1 → zeros
    cols = [flat[:, _source_positions(shape, o, padding), :]
            for o in filter_offsets(filter_size, len(shape))]      # k × (N, P, C)
    return np.stack(cols, axis=2).reshape(N * int(np.prod(shape)), -1)


@dataclass(frozen=True)
class ImagePatches:
    """The images of a CNN as its inputs: the data array of the first convolution's patch
    embedding is :func:`patches` of images of ``shape`` per image ((P, C) in 1-D, (H, W, C) in
    2-D) under a filter ``filter_size`` (taps per axis) with ``padding``.  :func:`conv_embed`
    records it in the program (``p.input_views``), so that a compiled kernel
    (:func:`tensorprog.compile`) takes the images and builds their patches itself.

    Example
    -------
    >>> view = ImagePatches((5, 2), (3,), "circular")
    >>> view(np.ones((4, 5, 2))).shape            # 4 images → 5 patches of 3 × 2 numbers each
    (4, 30)
    """

    shape: tuple
    filter_size: tuple
    padding: str

    def __call__(self, X) -> np.ndarray:
        """The data of images ``X`` of shape (N, *shape): one row of N·(P·k·C) numbers per image.

        Raises
        ------
        ProgramError
            For an array that is not N ≥ 1 images of ``shape``, naming the shape expected.
        """
        X = np.asarray(X, dtype=float)
        if X.ndim != len(self.shape) + 1 or X.shape[1:] != tuple(self.shape) or len(X) == 0:
            raise ProgramError(f"the inputs are images: expected an array of shape "
                               f"{self.describe()}, got shape {X.shape}")
        return patches(X, self.filter_size, self.padding).reshape(len(X), -1)

    def __str__(self) -> str:
        taps = " × ".join(str(k) for k in self.filter_size)
        return (f"images {self.describe()}, read as their patches under a filter of {taps} taps "
                f"({self.padding} padding)")

    def describe(self) -> str:
        """The input shape in words, e.g. ``(N, 8, 4) (N images of 8 positions × 4 channels)``."""
        *space, channels = self.shape
        where = " × ".join(str(s) for s in space)
        return (f"(N, {', '.join(str(s) for s in self.shape)}) (N images of {where} positions × "
                f"{channels} channels)")


def image_family(p, num_images: int, shape, name: str = "pos") -> Grid:
    """Declare the (image, position) family of ``num_images`` images of spatial ``shape``
    (``owner`` = the image).  Declares the program's N inputs (the images) if no input did."""
    shape = (int(shape),) if np.ndim(shape) == 0 else tuple(int(s) for s in shape)
    if not shape or min(shape) < 1:
        raise ProgramError(f"spatial shape must hold positive sizes, got {shape}")
    if p.num_inputs is None:
        p.declare_inputs(int(num_images))  # the images are the program's inputs

    elif p.num_inputs != num_images:
        raise ProgramError(f"the program has {p.num_inputs} inputs but {num_images} images were "
                           "given", f"FAMILY: {name}")
    grid = Grid(name, int(num_images), shape)
    p.family(name, grid.owner)
    return grid


def conv_embed(p, X, filter_size, padding: str = "circular", wvar: float = 2.0,
               bvar: float = 0.0, name: str | None = None, family: str = "pos"):
    """The first convolution, on images ``X`` ((N, P, C) or (N, H, W, C)), as an embedding of
    its patches: returns ``(h, grid)`` with ``h_{i,p} = U·patch_{i,p} + b``,
    ``U ~ N(0, wvar/(k·C))``, ``b ~ N(0, bvar)``, h in the new (image, position) family.  The
    program records how its data come from the images (:class:`ImagePatches`): its compiled
    kernels take images."""
    X = np.asarray(X, dtype=float)
    if X.ndim not in (3, 4):
        raise ProgramError(f"images must have shape (N, P, C) (1-D) or (N, H, W, C) (2-D), got "
                           f"{X.shape}")
    grid = image_family(p, X.shape[0], X.shape[1:-1], family)
    h = p.embed(patches(X, filter_size, padding), var=wvar, bias_var=bvar, name=name,
                family=grid.family)
    p.input_views[p.node(h.name).data] = ImagePatches(
        X.shape[1:], _filter_shape(filter_size, len(grid.shape)), padding)
    return h, grid


def shift(x: Var, grid: Grid, offset, padding: str, name: str | None = None) -> Var:
    """The SELECT ``x'_{i,p} = x_{i,p+offset}`` (circular: modulo; zero: the zero vector
    outside).  The identity shift returns ``x`` itself."""
    index = shift_index(grid, offset, padding)
    if np.array_equal(index, np.arange(grid.size)):
        return x
    return x.program.select(x, index, grid.family, name=name)


def conv(x: Var, grid: Grid, filter_size, padding: str = "circular", wvar: float = 2.0,
         bvar: float = 0.0, name: str = "conv") -> Var:
    """Hidden convolution ``Σ_t W_t x[p + o_t] + b``: one n×n matrix ``W_{name}_{t}`` per tap,
    ``N(0, (wvar/k)/n)`` (fan-in k·n), and, when ``bvar > 0``, the bias ``b_{name}``
    ``N(0, bvar)`` shared by all positions (``p.bias``)."""
    p = x.program
    offsets = filter_offsets(filter_size, len(grid.shape))
    k = len(offsets)
    h = 0
    for t, o in enumerate(offsets):
        W = p.matrix(f"W_{name}_{t}", var=wvar / k)
        h = h + W @ shift(x, grid, o, padding, name=p.fresh_name(f"{name}_s"))
    if bvar > 0:
        h = h + p.bias(f"b_{name}", bvar)
    return h


def global_avg_pool(x: Var, grid: Grid) -> Var:
    """``(1/P) Σ_p x_{i,p}``, a vector of the inputs family: a NONLIN of the P SELECTs
    ``x_{·,p}`` (one per position, each picking that position of every image)."""
    p = x.program
    if p.node(x.name).family != grid.family:
        raise ProgramError(f"global_avg_pool: {x.name!r} is not a vector of family "
                           f"{grid.family!r}")
    first = np.arange(grid.num_images) * grid.positions
    total = 0
    for q in range(grid.positions):
        total = total + p.select(x, first + q, INPUTS, name=p.fresh_name("pool"))
    return total / grid.positions


def flatten_readout(x: Var, grid: Grid, wvar: float, bvar: float = 0.0):
    """The flatten readout ``f(ξ_i) = Σ_p v_p·x_{i,p}/√(nP) + b``, ``v_p ~ N(0, wvar)``,
    ``b ~ N(0, bvar)``: one readout vector per position (Flatten then Dense)."""
    return x.program.output(x, var=wvar, bias_var=bvar, slots=grid.slot)
