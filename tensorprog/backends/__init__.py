"""The finite-width backend: the program run at width n on NumPy or CuPy (DESIGN §5), and its
validation against the compiler's infinite-width limits.

* :func:`simulate` → :class:`Simulation` (:mod:`.simulate`; array modules and memory planning
  in :mod:`.arrays`, sampling in :mod:`.sampling`, the instructions in :mod:`.interpreter`, the
  finite-width NNGP/NTK in :mod:`.empirical`);
* :func:`validate` → :class:`ValidationReport` (:mod:`.validate`; error statistics and
  log-log fits in :mod:`.stats`).
"""
from .simulate import Simulation, simulate
from .validate import ValidationReport, validate

__all__ = ["simulate", "Simulation", "validate", "ValidationReport"]
