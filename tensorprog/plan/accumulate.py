"""Sums of the terms of an expectation over a batch of input pairs, shared by the pair
executor's general path (:mod:`.pairs`) and the prepared expectations (:mod:`.steps`): the
structural zero of independent atoms, sums of covariance entries, a term's coefficient of 1,
and an accumulator that adds in place once it owns an array of the batch's shape."""
from __future__ import annotations

import numpy as np

from .devices import CPU64, Device
from .fused import is_array

#: The covariance entry of two independent atoms (compared by identity: structural, not a
#: value found in an array).
ZERO = 0.0


def linear_sum(terms):
    """``Σ c·entry`` over ``(c, entry)`` terms: ``ZERO`` for none, one new array otherwise
    (the entries, cached blocks of the executor, are never written to)."""
    out, owned = ZERO, False
    if len(terms) > 1:                           # the largest first (a stable order)
        terms = sorted(terms, key=lambda t: -getattr(t[1], "size", 1))
    for c, e in terms:
        one = is_one(c)
        if out is ZERO:
            out = e if one else c * e
            owned = out is not e and is_array(out)
        elif owned and np.ndim(c) == 0 and _fits(out.shape, np.shape(e)):
            if one:
                out += e
            else:
                out += c * e
        else:
            out = out + (e if one else c * e)
            owned = is_array(out)
    return out


def _fits(shape, other) -> bool:
    """Whether an array of shape ``other`` broadcasts into one of ``shape``."""
    return other == shape or np.broadcast_shapes(shape, other) == shape


def is_one(c) -> bool:
    """Whether a coefficient is the number 1 (multiplying by it can be skipped)."""
    if type(c) is float:
        return c == 1.0
    return np.ndim(c) == 0 and not isinstance(c, complex) and c == 1


class Sum:
    """A sum of the terms of an expectation over a batch of ``shape``, accumulated in place
    in one array of that shape once a term spans it (the terms are fresh products or cached
    factors, which are never written to); an array of the device's module and precision."""

    def __init__(self, shape, device: Device = CPU64):
        self.shape = shape
        self.device = device
        self.total = ZERO
        self.owned = False

    def add(self, val):
        if self.owned and np.shape(val) != () and np.ndim(val) <= len(self.shape) and \
                not np.iscomplexobj(val):
            self.total += val
            return
        if self.total is ZERO and isinstance(val, self.device.xp.ndarray):
            self.total = val                     # not owned: a factor may be cached
            return
        total = self.total + val
        self.owned = isinstance(total, self.device.xp.ndarray) and \
            total.shape == self.shape and total.dtype == self.device.dtype and total is not val
        self.total = total

    def result(self) -> np.ndarray:
        """The sum, an array of ``shape`` (not to be written to: it may be a cached factor)."""
        xp, dt = self.device.xp, self.device.dtype
        if self.owned or (isinstance(self.total, xp.ndarray) and self.total.shape == self.shape
                          and self.total.dtype == dt):
            return self.total
        total = self.total if isinstance(self.total, xp.ndarray) else xp.asarray(self.total)
        return xp.broadcast_to(total, self.shape).astype(dt)


INFINITE_FORM = ("the expectation of a Gaussian-exponential form exp(xᵀAx + …) is infinite (an "
                  "eigenvalue of ΣA is ≥ 1/2)")
