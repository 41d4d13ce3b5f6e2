"""Array modules (NumPy or CuPy) and memory planning for the finite-width backend (docs/theory.md §5).

The simulation is written once against an array module ``xp`` (``numpy`` or ``cupy``); this
module chooses it (:func:`array_module`), moves results back to the host (:func:`to_numpy`) and
plans memory: :func:`available_bytes` reads what the device can still give (host:
``MemAvailable`` of ``/proc/meminfo``; GPU: CuPy's free device memory plus its pool's cached
blocks) and :func:`plan_chunks` splits the seeds into chunks that fit, raising
:class:`~tensorprog.errors.ResourceError` when even one seed does not fit, so a too-large width
is a clear error rather than an out-of-memory crash.
"""
from __future__ import annotations

from types import ModuleType

import numpy as np

from ..chunking import chunk_bounds, chunk_size
from ..errors import ProgramError, ResourceError
from ..resources import MEMORY_FRACTION, format_bytes, host_available_bytes

BACKENDS = ("auto", "numpy", "cupy")
DTYPES = (np.float32, np.float64)
#: Largest chunk planned automatically.  Bigger chunks buy no speed (the work per seed is
#: O(n²) either way) and would take memory from everything else on the machine.
MAX_CHUNK_BYTES = 2 * 2**30


def _import_cupy():
    """CuPy and the number of visible GPUs, or ``(None, 0)`` when either is missing."""
    try:
        import cupy
    except Exception:  # ImportError, or a CUDA library that fails to load
        return None, 0
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception:
        count = 0
    return cupy, count


def cupy_available() -> bool:
    """True when CuPy imports and at least one GPU is visible."""
    cupy, count = _import_cupy()
    return cupy is not None and count > 0


def array_module(backend: str = "auto") -> ModuleType:
    """The array module for ``backend``: ``"numpy"``, ``"cupy"`` or ``"auto"`` (CuPy when it
    imports and a GPU is present, NumPy otherwise)."""
    if backend not in BACKENDS:
        raise ProgramError(f"unknown backend {backend!r}; choose one of {list(BACKENDS)}")
    if backend == "numpy":
        return np
    cupy, count = _import_cupy()
    if cupy is not None and count > 0:
        return cupy
    if backend == "auto":
        return np
    if cupy is None:
        raise ResourceError(
            "backend='cupy' was requested but CuPy is not installed; install it "
            "(pip install 'tensorprog[gpu]') or use backend='numpy' / 'auto'")
    raise ResourceError(
        "backend='cupy' was requested but no GPU is visible to CuPy; use backend='numpy' "
        "or 'auto'")


def is_cupy(xp: ModuleType) -> bool:
    return xp.__name__ == "cupy"


def check_dtype(dtype) -> np.dtype:
    """``float32`` or ``float64``, else a ProgramError."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.type not in DTYPES:
        raise ProgramError(f"dtype must be numpy.float32 or numpy.float64, got {dtype!r}")
    return dt


def positive_int(value, what: str) -> int:
    """``value`` as an int when it is a positive integer, else a ProgramError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ProgramError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def to_numpy(a) -> np.ndarray:
    """A NumPy array from a NumPy or CuPy array (or a number)."""
    if hasattr(a, "get") and not isinstance(a, np.ndarray):
        return a.get()
    return np.asarray(a)


def available_bytes(xp: ModuleType) -> int:
    """Memory the simulation may still allocate on the device of ``xp``."""
    if is_cupy(xp):
        free, _total = xp.cuda.runtime.memGetInfo()
        pool = xp.get_default_memory_pool()
        return int(free + pool.free_bytes())
    return host_available_bytes()


def plan_chunks(seeds: int, bytes_per_seed: int, available: int, width: int,
                chunk: int | None = None, device: str = "host") -> int:
    """Number of seeds simulated at once.

    At most ``MEMORY_FRACTION · available / bytes_per_seed`` and ``MAX_CHUNK_BYTES /
    bytes_per_seed`` (all of ``seeds`` when they fit).  A user-given ``chunk`` is used as is when
    it fits.  Raises ResourceError when a single seed
    (or the requested chunk) does not fit.
    """
    budget = MEMORY_FRACTION * available
    if bytes_per_seed > budget:
        raise ResourceError(
            f"one seed at width n={width} needs about {format_bytes(bytes_per_seed)} but only "
            f"{format_bytes(budget)} of {device} memory is usable "
            f"({format_bytes(available)} available); use a smaller width (memory grows like n² "
            "per matrix), float32 (dtype=numpy.float32), or a machine with more memory")
    fits = int(budget // bytes_per_seed)
    if chunk is not None:
        if chunk * bytes_per_seed > budget:
            raise ResourceError(
                f"chunk={chunk} seeds at width n={width} need about "
                f"{format_bytes(chunk * bytes_per_seed)} but only {format_bytes(budget)} of "
                f"{device} memory is usable; use chunk≤{fits} or chunk=None (automatic)")
        return min(chunk, seeds)
    return chunk_size(seeds, bytes_per_seed, min(budget, MAX_CHUNK_BYTES))
