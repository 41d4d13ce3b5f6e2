"""Masks as program scalars: which token a query may attend to, which steps of a sequence are
real (sequences of different lengths), with no new instruction.

A mask differs from member to member of a family, while a NONLIN applies one ψ to every member.
The per-member information therefore enters ψ as scalars (MOMENTs are one number per member):
with ``u`` a shared *untrained* initial vector (coordinates N(0, 1); one per family, so that
backprop keeps each family's gradients apart) and ``u⁽ᵗ⁾`` its SELECT
into the family with index 0 where entry t is allowed and −1 (the zero vector) elsewhere,

    c_t = avg(u⁽ᵗ⁾ ⊙ u⁽ᵗ⁾) = ‖u‖²/n  or exactly 0,        mask_t = H(c_t) ∈ {0, 1}

(H the Heaviside step with H(0) = 0, ``Heaviside(c, 0)``) is exactly 1 or 0 at every width
(``‖u‖² > 0`` almost surely) and in the limit
(``c̊_t = E[(Z^u)²] = 1`` or 0, ZMOMENT of TP IIb Def. B.3 / Thm. B.4).  ``u`` is not a
parameter, so masks add nothing to the NTK, and the finite-width network computes exactly the
masked architecture.
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from ..errors import ProgramError
from ..ir.builder import Var, moment

#: Name of the shared untrained vector the masks of family F select from: ``mask_F``.
MASK_VECTOR = "mask_{family}"


def masks(p, family: str, allowed, name: str) -> list[Var]:
    """The masks ``H(c_t)`` (scalar expressions, one per column of ``allowed``) of a family.

    Parameters
    ----------
    p : BuilderProgram
        The program.
    family : str
        The family whose members the masks are for (e.g. ``"tokens"`` or ``"inputs"``).
    allowed : array of bool, shape (m, T)
        ``allowed[a, t]``: entry t is on for member a (m the family's size).
    name : str
        Prefix of the new SELECTs ``{name}_u{t}`` and MOMENTs ``{name}_c{t}``.

    Returns
    -------
    list of Var
        ``[H(c_0), …, H(c_{T−1})]``.

    Raises
    ------
    ProgramError
        ``allowed`` has the wrong shape or a member has no entry on.
    """
    allowed = np.asarray(allowed, dtype=bool)
    m = p.family_size(family)
    if allowed.ndim != 2 or allowed.shape[0] != m:
        raise ProgramError(f"a mask over family {family!r} needs {m} rows, got shape "
                           f"{allowed.shape}")
    if not allowed.any(axis=1).all():
        raise ProgramError(f"mask {name!r}: every member of {family!r} needs at least one entry "
                           "on (a softmax or mean over nothing is undefined)")
    vector = MASK_VECTOR.format(family=family)
    if vector not in p:
        p.vector(vector, 1.0)
    u = p.var(vector)
    out = []
    for t in range(allowed.shape[1]):
        sel = p.select(u, np.where(allowed[:, t], 0, -1), family, name=f"{name}_u{t}")
        c = moment(sel * sel, name=f"{name}_c{t}")
        out.append(Var(p, sp.Heaviside(c.expr, 0)))
    return out


def sequence_lengths(lengths, N: int, T: int) -> np.ndarray:
    """``lengths`` as N integers in 1 … T (None: all T)."""
    if lengths is None:
        return np.full(N, T)
    lengths = np.asarray(lengths)
    if lengths.shape != (N,) or not np.issubdtype(lengths.dtype, np.integer) \
            or lengths.min() < 1 or lengths.max() > T:
        raise ProgramError(f"lengths must be {N} integers in 1 … {T} (one per sequence), got "
                           f"{lengths.tolist() if lengths.size < 20 else lengths.shape}")
    return lengths.astype(int)
