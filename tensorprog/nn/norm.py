"""Normalisation layers written with MOMENT scalars (deterministic in the limit, ZMOMENT)."""
from __future__ import annotations

import sympy as sp

from ..ir.builder import Var, moment


def layer_norm(x: Var, eps: float = 1e-5) -> Var:
    """LayerNorm over the n coordinates, without affine parameters:
    ``(x − μ)/√(σ² + eps)`` with the MOMENTs ``μ = avg(x)`` and ``m₂ = avg(x²)``,
    ``σ² = m₂ − μ²``.  In the limit ``μ̊ = E Z^x`` and ``m̊₂ = E (Z^x)²`` are per-input numbers."""
    mu = moment(x)
    m2 = moment(x * x)
    return (x - mu) / (m2 - mu * mu + sp.Float(eps)) ** sp.Rational(1, 2)
