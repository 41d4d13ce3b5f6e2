"""Exceptions of tensorprog.  Every error says which instruction failed and what to do."""
from __future__ import annotations


class TensorProgError(Exception):
    """Base class of every error tensorprog raises on purpose."""


class ProgramError(TensorProgError):
    """A program is malformed: wrong types, unknown names, cycles, bad covariances.

    ``instruction`` is the printed instruction at fault (or None) and ``line`` its line number
    in the textual form (1-based, or None).
    """

    def __init__(self, message: str, instruction: str | None = None, line: int | None = None):
        self.instruction = instruction
        self.line = line
        self.reason = message
        where = ""
        if instruction is not None:
            where = f"in `{instruction}`" + (f" (line {line})" if line is not None else "") + ": "
        super().__init__(where + message)


class ParseError(ProgramError):
    """The textual form of a program could not be parsed."""


class ExpectationError(TensorProgError):
    """A Gaussian expectation could not be evaluated as asked (e.g. no closed form)."""


class NotPositiveSemidefinite(ExpectationError):
    """A covariance handed to an expectation is not positive semidefinite."""


class LimitError(TensorProgError):
    """The Master-Theorem limit of a program could not be derived."""


class ResourceError(TensorProgError):
    """A computation would not fit in memory even when chunked."""


class AccuracyWarning(UserWarning):
    """A limit could not be computed to the target accuracy; its error estimate says by how
    much (``with_error=True`` returns it with the kernel)."""


class PseudoLipschitzWarning(UserWarning):
    """A nonlinearity grows faster than polynomially: the Master Theorem may not apply."""


class PredictionError(TensorProgError):
    """A kernel prediction (:mod:`tensorprog.predict`) was asked with inputs it cannot use:
    mismatched shapes, a kernel that is not symmetric positive semidefinite, a bad index, time
    or learning rate."""


class LearningRateWarning(UserWarning):
    """A learning rate above ``2m/λ_max`` of the NTK: gradient descent leaves the kernel regime."""


class TrainingError(TensorProgError):
    """A training run (:func:`tensorprog.train`) was asked with inputs it cannot use: targets of
    the wrong length, an index out of range, a loss without a derivative, a bad batch schedule
    or learning rate, or a parametrization whose limit blows up."""
