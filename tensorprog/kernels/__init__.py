"""Kernels of network programs: NNGP, NTK by backprop-in-the-program and by path sums."""
from .backprop import Backward, backward_program
from .ntk import nngp, ntk, ntk_contributions
from .paths import by_parameter, path_contributions

__all__ = ["Backward", "backward_program", "nngp", "ntk", "ntk_contributions",
           "path_contributions", "by_parameter"]
