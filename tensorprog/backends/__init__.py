"""The finite-width backend: the program run at width n on NumPy or CuPy (docs/theory.md §5), and its
validation against the compiler's infinite-width limits.

* :func:`simulate` → :class:`Simulation` (:mod:`.simulate`; array modules and memory planning
  in :mod:`.arrays`, sampling in :mod:`.sampling`, the instructions in :mod:`.interpreter`, the
  finite-width NNGP/NTK in :mod:`.empirical`);
* :func:`validate` → :class:`ValidationReport` (:mod:`.validate`; error statistics and
  log-log fits in :mod:`.stats`);
* :func:`simulate_hypernet` → :class:`HypernetSimulation` (:mod:`.hypernet`): the actual
  finite-width hypernetwork, whose generated weights are outside the program model.
"""
from .hypernet import HypernetSimulation, simulate_hypernet
from .simulate import Simulation, simulate
from .validate import ValidationReport, validate

__all__ = ["simulate", "Simulation", "validate", "ValidationReport", "simulate_hypernet",
           "HypernetSimulation"]
