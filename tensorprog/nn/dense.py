"""Dense layers and readouts (the ``Dense(W_std, b_std)`` layer of the usual kernel libraries)."""
from __future__ import annotations

from ..ir.builder import Var


def dense(x: Var, name: str, wvar: float, bvar: float = 0.0) -> Var:
    """``W x + b`` with ``W`` an n×n matrix N(0, wvar/n) and, when ``bvar > 0``, a trainable
    bias N(0, bvar).  Matrix and bias are named ``W_{name}`` and ``b_{name}``."""
    p = x.program
    h = p.matrix(f"W_{name}", wvar) @ x
    if bvar > 0:
        h = h + p.bias(f"b_{name}", bvar)
    return h


def readout(x: Var, wvar: float, bvar: float = 0.0, slots=None):
    """The output layer ``f = v·x/√n + b`` (``v ~ N(0, wvar)``, ``b ~ N(0, bvar)``); with
    ``slots`` one readout vector per slot (a flatten readout)."""
    return x.program.output(x, var=wvar, bias_var=bvar, slots=slots)
