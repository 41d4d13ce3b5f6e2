"""Checked sizes of architectures: depths, block counts and head counts."""
from __future__ import annotations

import numbers

from ..errors import ProgramError


def count(value, name: str, minimum: int = 0) -> int:
    """``value`` as a whole number of at least ``minimum`` (a depth, a number of blocks).

    Parameters
    ----------
    value : int
        The size given to an architecture builder.
    name : str
        Its argument name, for the message.
    minimum : int
        The smallest size the architecture has.

    Returns
    -------
    int
        ``value``.

    Raises
    ------
    ProgramError
        When ``value`` is not an integer ≥ ``minimum`` (a negative depth would otherwise
        build a shallower network without a word).

    Example
    -------
    >>> count(3, "depth")
    3
    """
    whole = isinstance(value, numbers.Real) and not isinstance(value, bool) and value == int(value)
    if not whole or value < minimum:
        raise ProgramError(f"{name} must be an integer ≥ {minimum}, got {value!r}")
    return int(value)
