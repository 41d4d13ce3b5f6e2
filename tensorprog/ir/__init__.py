"""The NETSOR⊤+ intermediate representation: program graph, builder, textual form."""
from .builder import BuilderProgram, Matrix, Var, moment, nonlin
from .parametrization import Parametrization
from .program import INPUTS, SHARED, Node, Program, Readout, symbol

__all__ = ["BuilderProgram", "Matrix", "Var", "moment", "nonlin", "Parametrization", "INPUTS",
           "SHARED", "Node", "Program", "Readout", "symbol"]
