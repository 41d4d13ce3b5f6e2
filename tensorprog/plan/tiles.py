"""Kernels in tiles: a memory budget, symmetric kernels computing each off-diagonal tile once,
a progress callback, and the same tiles on a Dask cluster.

A tile is the kernel between a block of rows of X₁ and a block of X₂; it is computed by the
same plan as a whole kernel (:meth:`.compiled._Template.evaluate`), and being pair-local the
kernel of a tile is the corresponding block of the whole kernel.  For the symmetric kernel of
one input set, tile (i, j) with i < j is a cross kernel and fills (j, i) by transposition;
diagonal tiles are symmetric kernels.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import resources
from ..backends.arrays import available_bytes
from ..errors import ResourceError

#: Fraction of the available memory a tiled kernel plans to use.
MEMORY_FRACTION = 0.25
#: Default budget of one tile: tiles of about two hundred inputs keep a tile's arrays near the
#: processor's caches and were fastest in docs/performance.md.
TILE_BUDGET = 32 << 20


def auto_batch_size(arrays_per_pair: float, n1: int, n2: int, budget: int | None = None,
                    device=None) -> int:
    """A tile edge: with b the largest edge such that ``arrays_per_pair`` numbers per input
    pair (of the device's precision, default float64) fit ``budget`` bytes for a b × b tile,
    the edge of ⌈N/b⌉ tiles of balanced sizes along the larger side N (at most b: 500 inputs
    and b = 232 give tiles of 167, not 232, 232 and 36); the whole kernel when it fits.
    Default budget: on the host :data:`TILE_BUDGET`, at most :data:`MEMORY_FRACTION` of the
    available memory; on a GPU :data:`MEMORY_FRACTION` of its free memory (a GPU is faster
    on few large tiles)."""
    if budget is None and device is not None and not device.host:
        budget = int(MEMORY_FRACTION * available_bytes(device.xp))
    elif budget is None:
        budget = min(TILE_BUDGET, int(MEMORY_FRACTION * resources.host_available_bytes()))
    itemsize = 8 if device is None else device.dtype.itemsize
    per_pair = float(itemsize) * max(arrays_per_pair, 1.0)
    if n1 * n2 * per_pair <= budget:
        return max(n1, n2)
    b = int(np.sqrt(budget / per_pair))
    if b < 1:
        raise ResourceError(f"one pair of inputs needs {per_pair:.0f} bytes, over the "
                            f"{budget} bytes budget")
    n = max(n1, n2)
    return -(-n // -(-n // b))             # as many tiles, of balanced edges (at most b)


def default_threads(tile_bytes: float, budget: int | None = None) -> int:
    """Tiles computed at once by default: one per CPU this process may use, as many as fit
    ``budget`` bytes (default :data:`MEMORY_FRACTION` of the available memory) at
    ``tile_bytes`` each, at least one.  NumPy releases the interpreter lock inside its array
    loops, so the tiles' array work runs in parallel."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cpus = os.cpu_count() or 1
    if budget is None:
        budget = MEMORY_FRACTION * resources.host_available_bytes()
    fit = int(budget // max(tile_bytes, 1.0))
    return max(1, min(cpus, fit))


def tiles(n1: int, n2: int | None, b: int) -> list:
    """``(rows, cols, symmetric)`` slices of the tiles; with ``n2`` None the upper triangle of
    the symmetric n1 × n1 kernel (``symmetric``: a diagonal tile)."""
    r = [slice(s, min(s + b, n1)) for s in range(0, n1, b)]
    if n2 is None:
        return [(r[i], r[j], i == j) for i in range(len(r)) for j in range(i, len(r))]
    c = [slice(s, min(s + b, n2)) for s in range(0, n2, b)]
    return [(ri, cj, False) for ri in r for cj in c]


def _part(data: dict, rows: slice) -> dict:
    return {k: v[rows] for k, v in data.items()}


def run_tiles(evaluate, left: dict, right: dict | None, gets, b: int, progress=None,
              client=None, threads: int = 1, xp=np, dtype=np.float64) -> dict:
    """Assemble the kernels ``gets`` from tiles of edge ``b``.

    Parameters
    ----------
    evaluate : callable
        ``evaluate(left, right_or_None, gets) -> {name: array}`` for one tile; the tiles of
        one block of inputs receive one dict object for it (so that ``evaluate`` may cache
        what depends on that block alone).
    left, right : dict
        Data arrays ``{name: (N, ·)}`` of X₁ and X₂ (``right`` None: symmetric kernel).
    progress : callable, optional
        ``progress(done, total, note)`` after every tile.
    client : dask.distributed.Client, optional
        Run the tiles as tasks of that client (results gathered in tile order).
    threads : int
        Without a client, tiles computed at once by a pool of threads (results taken in tile
        order, so the kernel does not depend on it).
    xp, dtype :
        Array module and precision of the assembled kernels (NumPy, float64 by default; the
        tiles ``evaluate`` returns are arrays of that module).

    Returns
    -------
    dict
        ``{name: kernel}`` for every name of ``gets``.
    """
    n1 = next(iter(left.values())).shape[0]
    n2 = None if right is None else next(iter(right.values())).shape[0]
    plan = tiles(n1, n2, b)
    parts: dict = {}          # one dict per block of inputs, passed to every tile it is in

    def part(data, rows):
        key = (data is left, rows.start, rows.stop)
        if key not in parts:
            parts[key] = _part(data, rows)
        return parts[key]

    args = [(part(left, ri), None if sym else part(left if right is None else right, cj))
            for ri, cj, sym in plan]
    out = {g: xp.empty((n1, n1 if n2 is None else n2), dtype=dtype) for g in gets}
    pool = None
    if client is not None:
        futures = client.map(evaluate, [a for a, _ in args], [c for _, c in args],
                             [tuple(gets)] * len(args), pure=False)
        results = iter(client.gather(futures))
    elif threads > 1 and len(args) > 1:
        pool = ThreadPoolExecutor(min(threads, len(args)), thread_name_prefix="kernel-tile")
        results = pool.map(lambda ac: evaluate(ac[0], ac[1], gets), args)
    else:
        results = (evaluate(a, c, gets) for a, c in args)
    try:
        _assemble(out, plan, results, gets, right is None, progress)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return out


def _assemble(out, plan, results, gets, symmetric, progress):
    """Write the tiles' kernels into ``out`` (and the transposed tiles of a symmetric one)."""
    for k, ((ri, cj, _), res) in enumerate(zip(plan, results)):
        for g in gets:
            out[g][ri, cj] = res[g]
            if symmetric and ri != cj:
                out[g][cj, ri] = res[g].T
        if progress is not None:
            progress(k + 1, len(plan), f"tile {k + 1}/{len(plan)}")
