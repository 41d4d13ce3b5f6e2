"""The NETSOR⊤+ intermediate representation: instruction records, program graph, builder,
textual form, rule tables and rewrites."""
from .builder import BuilderProgram, Matrix, Var, moment, nonlin
from .instructions import (INSTRUCTIONS, Embedding, InitialMatrix, InitialScalar, InitialVector,
                           Instruction, MatMul, Moment, Nonlin, Select)
from .parametrization import Parametrization
from .program import INPUTS, SHARED, Node, Program, Readout, symbol

__all__ = ["BuilderProgram", "Matrix", "Var", "moment", "nonlin", "Parametrization", "INPUTS",
           "SHARED", "Node", "Program", "Readout", "symbol", "INSTRUCTIONS", "Instruction",
           "InitialMatrix", "Embedding", "InitialVector", "InitialScalar", "MatMul", "Nonlin",
           "Moment", "Select"]
