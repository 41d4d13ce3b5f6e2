"""A stand-in for CuPy in tests: NumPy arrays behind a wall.

Its arrays compute with NumPy, reached through the array-function and array-ufunc protocols as
CuPy's arrays reach CuPy, and like CuPy's they refuse to become NumPy arrays implicitly
(``np.asarray``) and to be combined with NumPy arrays; ``.get()`` moves one to the host.  Code
that runs on this module keeps its arrays on the "device" and moves data only where it says so;
:data:`moves` counts the moves each way.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

#: Host-to-device (``asarray`` of NumPy data) and device-to-host (``get``) moves.
moves = {"to_device": 0, "to_host": 0}


class ndarray(NDArrayOperatorsMixin):
    """A device array (wraps a NumPy array)."""

    __slots__ = ("_a",)

    def __init__(self, a):
        self._a = a

    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed; use .get()")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if "out" in kwargs:
            kwargs["out"] = tuple(_unwrap(o) for o in kwargs["out"])
        return _wrap(getattr(ufunc, method)(*(_unwrap(x) for x in inputs), **kwargs))

    def __array_function__(self, func, types, args, kwargs):
        return _wrap(func(*_unwrap(args), **_unwrap(kwargs)))

    def __getattr__(self, name):
        if name.startswith("__"):        # no __array_interface__ & co: no silent conversion
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if callable(attr):
            return lambda *a, **k: _wrap(attr(*_unwrap(a), **_unwrap(k)))
        return _wrap(attr)

    def __getitem__(self, key):
        return _wrap(self._a[_index(key)])

    def __setitem__(self, key, value):
        self._a[_index(key)] = _unwrap(value)

    def __len__(self):
        return len(self._a)

    def __bool__(self):
        return bool(self._a)

    def __float__(self):
        return float(self._a)

    def __repr__(self):
        return f"device({self._a!r})"

    def get(self) -> np.ndarray:
        """The array on the host."""
        moves["to_host"] += 1
        return self._a.copy()


def _unwrap(x):
    """NumPy arrays of device arrays; a NumPy array among the operands is an error, as in
    CuPy."""
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, np.ndarray):
        raise TypeError(f"a NumPy array of shape {x.shape} met a device array: move it "
                        "with asarray first")
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v) for v in x)
    if isinstance(x, dict):
        return {k: _unwrap(v) for k, v in x.items()}
    return x


def _index(key):
    """Indices may be NumPy integer arrays (CuPy takes them too)."""
    if isinstance(key, tuple):
        return tuple(_index(k) for k in key)
    return key._a if isinstance(key, ndarray) else key


def _wrap(x):
    if isinstance(x, (np.ndarray, np.generic)) and not isinstance(x, np.dtype):
        return ndarray(np.asarray(x))
    if isinstance(x, tuple):
        return tuple(_wrap(v) for v in x)
    if isinstance(x, list):
        return [_wrap(v) for v in x]
    return x


def asarray(a, dtype=None) -> ndarray:
    """``a`` on the device (a move when it is host data)."""
    if isinstance(a, ndarray):
        return a if dtype is None or a.dtype == dtype else ndarray(a._a.astype(dtype))
    moves["to_device"] += 1
    return ndarray(np.array(a, dtype=dtype))


def empty(shape, dtype=float) -> ndarray:
    return ndarray(np.empty(shape, dtype=dtype))


def broadcast_to(a, shape) -> ndarray:
    return ndarray(np.broadcast_to(_unwrap(a), shape))


def asnumpy(a) -> np.ndarray:
    return a.get() if isinstance(a, ndarray) else np.asarray(a)
