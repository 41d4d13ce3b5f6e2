"""Dense layers and readouts (the ``Dense(W_std, b_std)`` layer of the usual kernel libraries)."""
from __future__ import annotations

import numpy as np

from ..errors import ProgramError
from ..ir.builder import Var
from ..ir.program import SHARED

#: How a trainable bias starts: ``"normal"`` (N(0, σ_b²), the default) or ``"zero"``.
BIAS_INITS = ("normal", "zero")


def dense(x: Var, name: str, wvar: float, bvar: float = 0.0, bias_init: str = "normal") -> Var:
    """``W x + b`` with ``W`` an n×n matrix N(0, wvar/n) and, when ``bvar > 0``, a trainable
    bias of scale ``bvar`` (``bias_init="normal"``: N(0, bvar); ``"zero"``: see
    :func:`zero_bias`).  Matrix and bias are named ``W_{name}`` and ``b_{name}``."""
    p = x.program
    h = p.matrix(f"W_{name}", wvar) @ x
    if bvar > 0:
        h = h + bias(x, f"b_{name}", bvar, bias_init)
    return h


def bias(x: Var, name: str, var: float, init: str = "normal") -> Var:
    """A trainable bias of scale ``var`` for vectors like ``x``, started as ``init`` says:
    ``"normal"`` (``p.bias``: N(0, var) coordinates) or ``"zero"`` (:func:`zero_bias`)."""
    if init not in BIAS_INITS:
        raise ProgramError(f"bias_init must be one of {BIAS_INITS}, got {init!r}")
    if init == "zero":
        return zero_bias(x, name, var)
    return x.program.bias(name, var)


def zero_bias(x: Var, name: str, var: float) -> Var:
    """A bias ``b = σ_b β`` (σ_b² = ``var``) whose parameter β is trained from β₀ = 0.

    Its value at initialisation is 0, so it adds nothing to the NNGP, while its gradient is
    that of any bias: the NTK share is ``σ_b² E[Z^{db(ξ)} Z^{db(ξ')}]`` (TP IIb eq. (29) with the
    covariance of the bias replaced by its tangent kernel σ_b² for every pair of inputs).  It
    is the initial vector family of ``x``'s family with covariance 0 and that tangent kernel
    (``tangent=`` of :meth:`~tensorprog.ir.program.Program.add_vector`), so at finite width
    the simulated bias is exactly 0 and its NTK share exactly ``σ_b²‖db‖²/n``.

    Raises
    ------
    ProgramError
        ``x`` is not a vector of a family of the inputs (a bias of shared vectors only, with no
        input yet, has no family to live in).
    """
    p = x.program
    families = {p.node(s.name).family for s in x.expr.free_symbols
                if p.node(s.name).is_vector} - {SHARED}
    if len(families) != 1:
        raise ProgramError(f"zero_bias: `{x.expr}` is not a vector of one family of the inputs; "
                           "a zero-initialised bias is added to a vector that depends on them")
    family = families.pop()
    m = p.family_size(family)
    return p.vector(name, np.zeros((m, m)), trainable=True, family=family,
                    tangent=np.full((m, m), float(var)))


def readout(x: Var, wvar: float, bvar: float = 0.0, slots=None):
    """The output layer ``f = v·x/√n + b`` (``v ~ N(0, wvar)``, ``b ~ N(0, bvar)``); with
    ``slots`` one readout vector per slot (a flatten readout)."""
    return x.program.output(x, var=wvar, bias_var=bvar, slots=slots)
