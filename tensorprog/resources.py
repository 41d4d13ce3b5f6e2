"""Cost and memory of a computation, estimated before it runs, and a progress line.

Every kernel entry point (``tp.nngp``, ``tp.ntk``, ``tp.ntk_contributions``, ``tp.limit``)
calls :func:`check_kernel` and ``tp.simulate`` calls :func:`check_simulation` first: each
estimates the peak memory and the running time of what was asked and raises
:class:`~tensorprog.errors.ResourceError` — naming the estimate and what to change — when the
memory is not there or the time exceeds the budget, instead of running out of memory or for
hours.  The models are deliberately simple and calibrated on the MLP of ``programs/mlp.py``
(NumPy, one CPU core):

* a kernel on a program whose largest family has M members holds about
  :data:`KERNEL_ARRAYS` arrays of M × M float64 at its peak (the (M, M, k, k) covariances of the
  Gaussian expectations and the quadrature's temporaries), and costs about
  :data:`SECONDS_PER_INSTRUCTION` per instruction (of the program extended by its backward pass
  for the NTK) and per 10⁴ member pairs;
* a simulation costs, per seed, :data:`SECONDS_PER_RANDOM` per sampled matrix entry and
  :data:`SECONDS_PER_FLOP` per multiply-add of its MATMULs, and keeps its per-seed results
  (kernels, outputs, scalars) on the host.

The time budget is :func:`max_seconds`: ``TENSORPROG_MAX_SECONDS`` from the environment, one
hour by default.  :class:`Progress` prints a progress line on stderr for anything running longer
than :data:`Progress.delay` seconds.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

from .errors import ResourceError

#: Peak number of (M × M) float64 arrays held by a kernel computation (measured: 58 for the
#: NNGP, 100 for the NTK of the MLP on N = 400 and 800 inputs; rounded up).
KERNEL_ARRAYS = {"nngp": 64, "ntk": 112, "limit": 64}
#: Seconds per instruction and per 10⁴ member pairs of a kernel computation.
SECONDS_PER_INSTRUCTION = 4e-3
#: Seconds per sampled random number and per multiply-add of a simulation (NumPy, one core).
SECONDS_PER_RANDOM = 1.5e-8
SECONDS_PER_FLOP = 5e-10
#: Fraction of the available memory a computation may plan to use.
MEMORY_FRACTION = 0.6
DEFAULT_MAX_SECONDS = 3600.0


@dataclass(frozen=True)
class Estimate:
    """Estimated peak memory (bytes) and running time (seconds) of a computation."""

    bytes: float
    seconds: float


def max_seconds() -> float:
    """The time budget of one computation: ``TENSORPROG_MAX_SECONDS`` (seconds) from the
    environment, :data:`DEFAULT_MAX_SECONDS` when unset.

    Raises
    ------
    ResourceError
        When the variable is not a positive number.
    """
    raw = os.environ.get("TENSORPROG_MAX_SECONDS")
    if raw is None or not raw.strip():
        return DEFAULT_MAX_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ResourceError(f"TENSORPROG_MAX_SECONDS must be a positive number of seconds, "
                            f"got {raw!r}")
    return value


def format_seconds(seconds: float) -> str:
    """``"0.05 s"``, ``"42 s"``, ``"17 min"``, ``"3.2 h"`` or ``"4.1 days"``."""
    if seconds < 10:
        return f"{seconds:.2g} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def format_bytes(b: float) -> str:
    """``"512 B"``, ``"3.5 MiB"``, ``"12.0 GiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if b < 1024 or unit == "TiB":
            return f"{b:.1f} {unit}" if unit != "B" else f"{int(b)} B"
        b /= 1024
    return f"{b:.1f} PiB"  # pragma: no cover


def host_available_bytes() -> int:
    """``MemAvailable`` from ``/proc/meminfo`` (falls back to free physical pages)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - exotic platforms
        return 4 * 2**30


def kernel_estimate(program, what: str = "ntk") -> Estimate:
    """:class:`Estimate` of ``tp.nngp`` (``what="nngp"``), ``tp.ntk`` (``"ntk"``) or
    ``tp.limit`` (``"limit"``) on ``program``.

    Parameters
    ----------
    program : Program
    what : "nngp" | "ntk" | "limit"

    Returns
    -------
    Estimate
        ``bytes = 8 · KERNEL_ARRAYS[what] · M²`` with M the largest family of the program;
        ``seconds`` grows with the instructions (doubled for the backward pass of the NTK) and
        with M².
    """
    M = _members(program)
    instructions = len(program.order) * (2 if what == "ntk" else 1)
    seconds = SECONDS_PER_INSTRUCTION * instructions * max(1.0, M * M / 1e4)
    return Estimate(8.0 * KERNEL_ARRAYS[what] * M * M, seconds)


def _members(program) -> int:
    """The size of the program's largest family (1 for a program without inputs)."""
    return max([program.family_size(n.family) for n in program.nodes()
                if n.family is not None] + [1])


def check_kernel(program, what: str = "ntk", tiled: bool = False) -> Estimate:
    """Refuse ``what`` on ``program`` up front when it will not fit (see the module docstring).

    Parameters
    ----------
    program, what
        As for :func:`kernel_estimate`.
    tiled : bool
        The kernel is computed in tiles within the memory budget (the compiled kernel plan,
        :mod:`tensorprog.plan`): only the time is checked.

    Returns
    -------
    Estimate
        :func:`kernel_estimate`'s, when it fits.

    Raises
    ------
    ResourceError
        When the estimated memory exceeds :data:`MEMORY_FRACTION` of the available memory or
        the estimated time exceeds :func:`max_seconds`.

    Example
    -------
    >>> check_kernel(p, "nngp").bytes        # doctest: +SKIP
    """
    est = kernel_estimate(program, what)
    M = _members(program)
    if not tiled:
        _check_memory(est.bytes, f"{what} of program {program.name!r} on {M} members "
                                 f"({KERNEL_ARRAYS[what]} arrays of {M}×{M} float64)",
                      "use fewer inputs (compute the kernel on blocks of inputs and assemble it)")
    _check_time(est.seconds, f"{what} of program {program.name!r} ({len(program.order)} "
                             f"instructions, {M} members)",
                "use a shallower program or fewer inputs")
    return est


def simulation_estimate(program, width: int, seeds: int, inputs: int, results: int,
                        itemsize: int = 8) -> Estimate:
    """:class:`Estimate` of ``tp.simulate``: ``program`` is the program actually run (for a
    network, extended by its backward pass), ``results`` the number of (inputs × inputs) arrays
    kept per seed (NNGP and one NTK share per trained parameter).

    Parameters
    ----------
    program : Program
    width, seeds, inputs, results : int
    itemsize : int
        Bytes per number of the simulation's dtype.

    Returns
    -------
    Estimate
        ``bytes``: the per-seed results kept on the host (the chunk in flight is planned
        separately, :func:`tensorprog.backends.arrays.plan_chunks`); ``seconds``: sampling and
        MATMULs over all seeds.
    """
    n = float(width)
    entries = sum(n * n * (inputs if program.is_generated(m.name) else 1)
                  for m in program.nodes("matrix"))
    flops = sum(n * n * program.family_size(g.family) for g in program.nodes("matmul"))
    per_seed = SECONDS_PER_RANDOM * entries + SECONDS_PER_FLOP * flops
    kept = (results * inputs * inputs + inputs + len(program.order) * inputs) * itemsize
    return Estimate(float(seeds) * kept, float(seeds) * per_seed)


def check_simulation(program, width: int, seeds: int, inputs: int, results: int,
                     itemsize: int = 8) -> Estimate:
    """Refuse a simulation up front when its results will not fit in host memory or it would
    run longer than :func:`max_seconds` (arguments as :func:`simulation_estimate`).

    Raises
    ------
    ResourceError
        Naming the estimate and what to change.
    """
    est = simulation_estimate(program, width, seeds, inputs, results, itemsize)
    what = f"simulating {program.name!r} at width n={width} with {seeds} seeds"
    _check_memory(est.bytes, what + " (the per-seed results)", "use fewer seeds")
    _check_time(est.seconds, what, "use fewer seeds or a smaller width")
    return est


def _check_memory(need: float, what: str, advice: str) -> None:
    available = host_available_bytes()
    if need > MEMORY_FRACTION * available:
        raise ResourceError(
            f"{what} needs about {format_bytes(need)} of memory, but only "
            f"{format_bytes(MEMORY_FRACTION * available)} is usable "
            f"({format_bytes(available)} available); {advice}")


def _check_time(seconds: float, what: str, advice: str) -> None:
    budget = max_seconds()
    if seconds > budget:
        raise ResourceError(
            f"{what} would take about {format_seconds(seconds)}, more than the budget of "
            f"{format_seconds(budget)}; {advice}, or raise the budget with the environment "
            f"variable TENSORPROG_MAX_SECONDS (now {budget:g})")


class Progress:
    """A progress line on stderr for a loop of ``total`` steps: silent for the first
    :attr:`delay` seconds, then ``label: done/total (elapsed s)`` at most once per
    :attr:`interval` seconds (redrawn in place on a terminal); with ``total=None`` (a count not
    known in advance) ``label: done unit (elapsed s)``.  ``TENSORPROG_PROGRESS=0`` in the
    environment silences it.

    Parameters
    ----------
    label : str
    total : int or None
    unit : str
        What is counted, printed after ``done`` when there is no total.
    stream : file, optional
        Default ``sys.stderr``.

    Example
    -------
    >>> bar = Progress("simulating", 10)
    >>> for k in range(10):
    ...     bar(k + 1)
    >>> bar.close()
    """

    delay = 3.0
    interval = 1.0

    def __init__(self, label: str, total: int | None, stream=None, unit: str = "steps"):
        self.label = label
        self.total = None if total is None else max(int(total), 1)
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.start = time.monotonic()
        self._last = None
        self._shown = False
        self.enabled = os.environ.get("TENSORPROG_PROGRESS", "1") != "0"
        isatty = getattr(self.stream, "isatty", None)
        self._tty = bool(isatty and isatty())

    def __call__(self, done: int) -> None:
        """Report ``done`` steps of :attr:`total`."""
        now = time.monotonic()
        if not self.enabled or now - self.start < self.delay:
            return
        finished = self.total is not None and done >= self.total
        if self._last is not None and now - self._last < self.interval and not finished:
            return
        self._last = now
        if self.total is None:
            line = f"{self.label}: {done} {self.unit} ({now - self.start:.0f} s)"
        else:
            line = (f"{self.label}: {done}/{self.total} ({100 * done / self.total:.0f}%, "
                    f"{now - self.start:.0f} s)")
        try:
            if self._tty:
                self.stream.write("\r" + line)
                self._shown = True
            else:
                self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stderr: progress is optional
            self.enabled = False

    def close(self) -> None:
        """End the line on a terminal."""
        if self._shown:
            try:
                self.stream.write("\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass
            self._shown = False
