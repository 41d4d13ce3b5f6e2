"""abc-parametrizations of trainable tensors (Tensor Programs IV, TP IIb Setup 5.2).

A trainable tensor ``W`` is written ``W = n^{-a} w`` with ``w`` initialised ``N(0, σ² n^{-2b})``
and trained with learning rate ``η λ n^{-c}``: ``η`` the global learning rate, ``λ`` the tensor's
own multiplier (``lr=`` / ``bias_lr=`` of the builder).  The NTK parametrization (TP IIb Setup 5.2, the
default everywhere) has ``a = 1/2`` for tensors whose fan-in is the width ``n`` (hidden
matrices, the readout) and ``a = 0`` for tensors whose fan-in is fixed (the input layer, biases),
with ``b = c = 0``: every parameter ``w`` is ``N(0, σ²)`` times the multiplier ``1/√fan_in``.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..errors import ProgramError


@dataclass(frozen=True)
class Parametrization:
    """Exponents ``(a, b, c)`` and learning-rate multiplier ``lr`` (λ) of one trainable tensor;
    see the module docstring."""

    a: Fraction = Fraction(1, 2)
    b: Fraction = Fraction(0)
    c: Fraction = Fraction(0)
    lr: float = 1.0

    @property
    def init_exponent(self) -> Fraction:
        """Exponent ``e`` with ``Var(W_ij) = σ² n^{-e}``: ``2(a + b)``."""
        return 2 * (self.a + self.b)

    def with_lr(self, lr) -> "Parametrization":
        """The same exponents with learning-rate multiplier ``lr`` (a finite number ≥ 0)."""
        return Parametrization(self.a, self.b, self.c, float(lr))

    def __str__(self) -> str:
        tail = "" if self.lr == 1.0 else f", lr={self.lr:g}"
        return f"abc({self.a}, {self.b}, {self.c}{tail})"


#: NTK parametrization of a tensor with fan-in ``n`` (hidden matrices, readout).
NTK_HIDDEN = Parametrization(Fraction(1, 2), Fraction(0), Fraction(0))
#: NTK parametrization of a tensor with fixed fan-in (input layer, biases).
NTK_FIXED = Parametrization(Fraction(0), Fraction(0), Fraction(0))


def check_lr(value, what: str, instruction: str) -> float:
    """A learning-rate multiplier λ as a float.

    Parameters
    ----------
    value : the multiplier given (``lr=`` or ``bias_lr=`` of the builder or the textual form).
    what : its keyword, for the message.
    instruction : the instruction it belongs to, for the message.

    Returns
    -------
    float

    Raises
    ------
    ProgramError : ``value`` is not a finite number ≥ 0.

    Example
    -------
    >>> check_lr(0.5, "lr", "MATRIX: W")
    0.5
    """
    try:
        ok = float(value) >= 0 and np.isfinite(float(value))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ProgramError(f"{what}={value!r}: a learning-rate multiplier must be a finite "
                           "number ≥ 0", instruction)
    return float(value)
