"""Residual connections ``h + α·branch(h)``."""
from __future__ import annotations

from typing import Callable

from ..ir.builder import Var


def residual(h: Var, branch: Callable[[Var], Var], alpha: float = 1.0) -> Var:
    """``h + α·branch(h)`` (the ``FanOut → (branch ‖ Identity) → FanInSum`` of the usual kernel
    libraries, with the branch scaled by α)."""
    return h + alpha * branch(h)
