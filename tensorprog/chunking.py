"""Memory chunking: how many items (seeds, batch points) are processed at once.

Every batched computation of the project bounds its temporaries by a byte budget: the
finite-width backend splits the seeds (:func:`tensorprog.backends.arrays.plan_chunks`), the
quadrature and Monte-Carlo tiers split the batch of covariances, the hypernetwork simulator
splits its seeds.  All of them size a chunk with :func:`chunk_size` and walk it with
:func:`chunk_bounds`.
"""
from __future__ import annotations

import math

__all__ = ["chunk_size", "chunk_bounds"]


def chunk_size(total: int, bytes_per_item: float, budget: float) -> int:
    """Items per chunk: as many as fit in ``budget`` bytes, at least 1 and at most ``total``.

    Parameters
    ----------
    total : int
        Number of items (≥ 1).
    bytes_per_item : float
        Memory one item needs (a non-positive value counts as 1 byte).
    budget : float
        Bytes one chunk may use.

    Returns
    -------
    int

    Example
    -------
    >>> chunk_size(10, 300, 1000)
    3
    """
    return max(1, min(int(total), int(budget // max(bytes_per_item, 1))))


def chunk_bounds(total: int, chunk: int) -> list[tuple[int, int]]:
    """``[(start, stop), …]`` covering ``range(total)`` in pieces of at most ``chunk``.

    Example
    -------
    >>> chunk_bounds(7, 3)
    [(0, 3), (3, 6), (6, 7)]
    """
    k = math.ceil(total / chunk)
    return [(i * chunk, min(total, (i + 1) * chunk)) for i in range(k)]
