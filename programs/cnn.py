"""Convolutional network (1-D or 2-D), as in TP IIb Fig. 5: one vector per (image, position),
one n×n matrix per filter tap.

Images ξ_i, i = 1…N, of shape (P, C) (1-D) or (H, W, C) (2-D, positions p = (h, w) flattened
row-major, P = H·W); filter of k taps (k = k_h·k_w in 2-D) at offsets o_t (stride 1, "SAME"
size, offsets ``t − (k−1)//2`` per axis); ``ξ[p + o]`` wraps modulo the image ("circular") or
is 0 outside it ("zero" padding, the fan-in staying k·C).  With φ = relu:

    h¹_p(ξ) = U·patch_p(ξ) + b¹,        U ~ N(0, wvar/(k·C)),  b¹ ~ N(0, bvar)       (conv 1)
    h^{l+1}_p = Σ_t W^l_t φ(h^l)_{p+o_t} + b^{l+1},   W^l_t ~ N(0, (wvar/k)/n),
                                                      b^{l+1} ~ N(0, bvar)    (l = 1 … depth−1)
    readout "gap":      f(ξ) = v·(1/P) Σ_p φ(h^{depth}_p)/√n + b_out,  v ~ N(0, wvar)
    readout "flatten":  f(ξ) = Σ_p v_p·φ(h^{depth}_p)/√(nP) + b_out,   v_p ~ N(0, wvar)
    b_out ~ N(0, bvar)

**How depth counts layers**: ``depth`` is the number of convolution + relu layers.  The first
of them is the convolution of the input image (the patch embedding ``U``), the other
``depth − 1`` are hidden convolutions with k matrices each; the readout (global average pool
then the dense output layer, or the flatten dense output layer) comes on top and is not
counted.  ``depth = 1`` is conv → relu → readout; ``depth = 2`` is conv → relu → conv → relu →
readout (the ``stax.serial(Conv, Relu, Conv, Relu, GlobalAvgPool/Flatten, Dense(1))`` of the
usual kernel libraries).

NTK parametrization (every parameter N(0,1) times σ/√fan_in), all parameters trained; biases
are omitted (not parameters) when ``bvar = 0``.  Its NNGP kernel and NTK are the standard CNN
recursion with ``Conv(W_std, b_std)`` (``W_std² = wvar``, ``b_std² = bvar``),
``padding='CIRCULAR'`` or ``'SAME'``, ``GlobalAvgPool()`` or ``Flatten()``, ``Dense(1, W_std,
b_std)``; see ``docs/architectures/cnn.md``.
"""
from __future__ import annotations

import numpy as np

import tensorprog as tp
from tensorprog.nn.sizes import count
from tensorprog.nn.convolution import PADDINGS, conv, conv_embed, flatten_readout, global_avg_pool

READOUTS = ("gap", "flatten")
#: The command line's default inputs: 4 one-dimensional images of 6 positions with 3 channels.
DEFAULT_INPUT_SHAPE = (4, 6, 3)


def build(X, depth: int = 2, filter_size=3, padding: str = "circular", readout: str = "gap",
          wvar: float = 2.0, bvar: float = 0.1) -> tp.Program:
    """CNN with ``depth`` conv+relu layers on images ``X`` of shape (N, P, C) (1-D) or
    (N, H, W, C) (2-D); ``filter_size`` an int (k per axis) or a tuple per axis."""
    X = np.asarray(X, dtype=float)
    if X.ndim not in (3, 4):
        raise tp.ProgramError(f"X must have shape (inputs, positions, channels) or (inputs, "
                              f"height, width, channels), got {X.shape}")
    if padding not in PADDINGS:
        raise tp.ProgramError(f"padding must be one of {PADDINGS}, got {padding!r}")
    if readout not in READOUTS:
        raise tp.ProgramError(f"readout must be one of {READOUTS}, got {readout!r}")
    depth = count(depth, "depth (conv+relu layers)", 1)
    dims = "1d" if X.ndim == 3 else "2d"
    p = tp.Program(f"cnn{dims}")
    h, grid = conv_embed(p, X, filter_size, padding, wvar=wvar, bvar=bvar, name="h1")
    for l in range(2, int(depth) + 1):
        h = conv(tp.relu(h), grid, filter_size, padding, wvar=wvar, bvar=bvar, name=f"conv{l}")
    x = tp.relu(h)
    if readout == "gap":
        p.output(global_avg_pool(x, grid), var=wvar, bias_var=bvar)
    else:
        flatten_readout(x, grid, wvar=wvar, bvar=bvar)
    return p
