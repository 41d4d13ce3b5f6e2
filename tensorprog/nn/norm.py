"""Normalisation layers: LayerNorm with MOMENT scalars (deterministic in the limit, ZMOMENT),
BatchNorm with a NONLIN across the vectors of a batch."""
from __future__ import annotations

import numpy as np
import sympy as sp

from ..errors import ProgramError
from ..ir.builder import Var, moment


def layer_norm(x: Var, eps: float = 1e-5) -> Var:
    """LayerNorm over the n coordinates, without affine parameters:
    ``(x − μ)/√(σ² + eps)`` with the MOMENTs ``μ = avg(x)`` and ``m₂ = avg(x²)``,
    ``σ² = m₂ − μ²``.  In the limit ``μ̊ = E Z^x`` and ``m̊₂ = E (Z^x)²`` are per-input numbers."""
    mu = moment(x)
    m2 = moment(x * x)
    return (x - mu) / (m2 - mu * mu + sp.Float(eps)) ** sp.Rational(1, 2)


def batch_norm(x: Var, batch_size: int, eps: float = 1e-5) -> Var:
    """BatchNorm over batches of ``batch_size`` consecutive inputs, without affine parameters:
    coordinatewise ``(x_i − μ_β)/√(σ²_β + eps)`` with ``μ_β``, ``σ²_β`` the mean and variance over
    the inputs of i's batch β.  One NONLIN whose arguments are the batch's B vectors, brought
    into input i's place by SELECTs across inputs (so every output reads its whole batch; the
    NTK's backward pass then runs on dependency pairs, :mod:`tensorprog.kernels.lift`).
    ``eps = 0`` is allowed for ``batch_size ≥ 2``."""
    p = x.program
    N = p.num_inputs
    if batch_size < 1 or N % batch_size:
        raise ProgramError(f"batch_norm: {N} inputs do not split into batches of {batch_size}")
    if not np.isfinite(eps) or eps < 0 or (eps == 0 and batch_size < 2):
        raise ProgramError(f"batch_norm: eps must be a finite number ≥ 0 (> 0 for batches of one "
                           f"input, whose variance is 0), got eps={eps!r} with batch_size="
                           f"{batch_size}")
    base = (np.arange(N) // batch_size) * batch_size
    members = [p.select(x, base + k, "inputs") for k in range(batch_size)]
    mu = sum(members[1:], members[0]) / batch_size
    var = sum(((m - mu) * (m - mu) for m in members[1:]), (members[0] - mu) * (members[0] - mu))
    var = var / batch_size + sp.Float(eps) if eps else var / batch_size
    return (x - mu) / var ** sp.Rational(1, 2)
