"""Where and in which precision a compiled kernel is computed: NumPy or CuPy, float64 or float32.

The pair executor (:mod:`.pairs`) and the fused kernels (:mod:`.fused`) are written once against
an array module: on the CPU it is NumPy, on the GPU CuPy, whose arrays take NumPy's functions
and ufuncs (``np.arccos``, ``np.where``, ``scipy.special.erf``) through the array-function and
array-ufunc protocols and refuse to be converted to NumPy implicitly.  A :class:`Device` moves
the inputs to the device once, in the requested precision (:meth:`Device.put`), and the kernels
back (:meth:`Device.get`).  Factors without a fused or entry-by-entry closed form (quadrature,
Monte Carlo, the generic arc-cosine expansion) are host NumPy code: on the GPU they read their
covariance on the host in float64 and put their value back (:meth:`Device.host_factor`).
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np

from ..backends.arrays import _import_cupy, check_dtype, to_numpy
from ..errors import ProgramError, ResourceError

#: Devices a compiled kernel runs on.
DEVICES = ("cpu", "gpu")


@dataclass(frozen=True)
class Device:
    """An array module and a precision.

    Attributes
    ----------
    xp : module
        ``numpy`` or ``cupy``.
    dtype : numpy.dtype
        ``float64`` or ``float32``: the inputs, the pair arrays and the kernels.
    """

    xp: ModuleType
    dtype: np.dtype

    @property
    def host(self) -> bool:
        """Whether the arrays are NumPy arrays."""
        return self.xp is np

    def put(self, a):
        """``a`` (NumPy, a number or a device array) as a device array of :attr:`dtype`."""
        return self.xp.asarray(a, dtype=self.dtype)

    def get(self, a) -> np.ndarray:
        """A device array as a NumPy array."""
        return a if self.host else to_numpy(a)

    def host_factor(self, evaluate, cov, params):
        """``evaluate(cov, params)`` on the host in float64, its value put back on the device:
        ``cov`` is a ``BlockCov`` whose entries (and ``params``) are device arrays."""
        if self.host:
            return evaluate(cov, params)
        back = lambda v: v if isinstance(v, (int, float, complex)) else \
            to_numpy(v).astype(np.float64)
        cov = type(cov)([[back(e) for e in row] for row in cov.entries], cov.shape[:-2])
        return self.adopt(evaluate(cov, {k: back(v) for k, v in params.items()}))

    def adopt(self, value):
        """A value computed by host code as a device array (a number stays a number)."""
        if self.host or not isinstance(value, (np.ndarray, np.generic)):
            return value
        return value.item() if value.ndim == 0 else self.xp.asarray(value)


def gpu_module() -> ModuleType:
    """CuPy, when it imports and sees a GPU.

    Raises
    ------
    ResourceError
        Naming what is missing (CuPy, or a GPU visible to it).
    """
    cupy, count = _import_cupy()
    if cupy is None:
        raise ResourceError("device='gpu' needs CuPy: install it (pip install "
                            "'tensorprog[gpu]', CUDA 12) or compute on device='cpu'")
    if count == 0:
        raise ResourceError("device='gpu' was requested but CuPy sees no GPU; compute on "
                            "device='cpu'")
    return cupy


def device(name: str = "cpu", dtype="float64") -> Device:
    """The :class:`Device` of a compiled kernel call.

    Parameters
    ----------
    name : "cpu" or "gpu"
        NumPy on the host, or CuPy on the current GPU.
    dtype : "float64" or "float32" (or the NumPy types)
        Precision of the inputs, pair arrays and kernels.

    Returns
    -------
    Device

    Raises
    ------
    ProgramError
        For an unknown device or precision.
    ResourceError
        For ``"gpu"`` without CuPy or a GPU.

    Example
    -------
    >>> device("cpu", "float32").dtype
    dtype('float32')
    """
    dt = check_dtype(dtype)
    if name not in DEVICES:
        raise ProgramError(f"device must be one of {DEVICES}, got {name!r}")
    return Device(np if name == "cpu" else gpu_module(), dt)


CPU64 = Device(np, np.dtype(np.float64))

__all__ = ["Device", "device", "gpu_module", "DEVICES", "CPU64"]
