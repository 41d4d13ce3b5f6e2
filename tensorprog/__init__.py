"""tensorprog: a compiler for Tensor Programs.

Write a neural architecture as a NETSOR⊤+ program, derive its infinite-width limit with the
Master Theorem (Z of every vector, limit of every scalar, NNGP kernel and NTK), and check it
against the same program run at finite width.

    >>> import tensorprog as tp
    >>> p = tp.Program("mlp")
    >>> h = p.embed(X, var=2.0, bias_var=0.1)
    >>> W = p.matrix("W1", var=2.0)
    >>> p.output(tp.relu(W @ tp.relu(h)), var=2.0)
    >>> tp.nngp(p), tp.ntk(p), tp.limit(p)
"""
from .errors import (ExpectationError, LimitError, ParseError, ProgramError,
                     PseudoLipschitzWarning, ResourceError, TensorProgError)
from .ir.builder import BuilderProgram as Program
from .ir.builder import (Matrix, Var, abs, cos, erf, exp, gelu, identity, leaky_relu, moment,
                         nonlin, polynomial, relu, sigmoid, sin, step, tanh)
from .kernels import backward_program, nngp, ntk, ntk_contributions
from .limit import Limit
from .render import render
from .backends import simulate, validate, Simulation, ValidationReport
from . import predict
from .errors import LearningRateWarning, PredictionError, TrainingError
from . import training
from .training import (abc_parametrization, mean_field, mup, ntk_parametrization,
                       standard_parametrization, train, yaida)


def limit(program, symbolic: bool = False, tier: str = "auto") -> Limit:
    """The Master-Theorem limit of ``program`` (TP IIb Def. B.3): ``.Z(name)``, ``.scalar(name)``,
    ``.cov(a, b)``; ``print()`` it for the readable form."""
    return Limit(program, symbolic=symbolic, tier=tier)


__version__ = "0.1.0"

__all__ = [
    "Program", "Var", "Matrix", "Limit", "limit", "nngp", "ntk", "ntk_contributions",
    "backward_program", "nonlin", "moment", "relu", "step", "abs", "leaky_relu", "erf", "tanh",
    "sigmoid", "gelu", "sin", "cos", "exp", "identity", "polynomial", "TensorProgError",
    "ProgramError", "ParseError", "ExpectationError", "LimitError", "ResourceError",
    "PseudoLipschitzWarning", "simulate", "validate", "Simulation", "ValidationReport", "render",
    "predict", "PredictionError", "LearningRateWarning", "training", "train", "TrainingError",
    "ntk_parametrization", "standard_parametrization", "mup", "mean_field", "yaida",
    "abc_parametrization",
]
