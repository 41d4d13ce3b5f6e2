"""Exceptions of tensorprog.  Every error says which instruction failed and what to do."""
from __future__ import annotations


class TensorProgError(Exception):
    """Base class of every error tensorprog raises on purpose.

    Catch it to handle any of them; the message says which instruction failed and what to do
    (``docs/theory.md`` §7).

    Example
    -------
    >>> p = tp.Program("demo")
    >>> try:
    ...     p.matrix("W", var=-1.0)
    ... except tp.TensorProgError as e:
    ...     print(type(e).__name__, e)
    ProgramError in `MATRIX: W ~ N(0, ...)`: variance -1.0 must be a finite number ≥ 0
    """


class ProgramError(TensorProgError):
    """A program is malformed: wrong types, unknown names, cycles, bad covariances.

    Parameters
    ----------
    message : str
        What is wrong and what to do (also the attribute ``reason``).
    instruction : str, optional
        The printed instruction at fault.
    line : int, optional
        Its line in the textual form (1-based).

    Example
    -------
    >>> p = tp.Program("demo")
    >>> try:
    ...     p.embed(np.eye(2), var=-1.0)
    ... except tp.ProgramError as e:
    ...     print(e.instruction, "|", e.reason)
    INPUT: h1 := embed(...) | variance -1.0 must be a finite number ≥ 0
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
    """The textual form of a program could not be parsed (a :class:`ProgramError`).

    Parameters
    ----------
    message, instruction, line
        As for :class:`ProgramError`: ``instruction`` is the line's text, ``line`` its number.

    Example
    -------
    >>> tp.Program.from_text('''PROGRAM demo inputs=2
    ... FOO: x''')
    Traceback (most recent call last):
    ...
    tensorprog.errors.ParseError: in `FOO: x` (line 2): unknown instruction: lines start with ...
    """


class ExpectationError(TensorProgError):
    """A Gaussian expectation could not be evaluated as asked (e.g. no closed form).

    See ``docs/theory.md`` §4 for the tiers of expectations.

    Example
    -------
    >>> p = tp.Program("demo")
    >>> z = (tp.sin(p.embed(np.eye(2))) * tp.tanh(p.var("h1"))).named("z")
    >>> tp.limit(p, tier="exact").cov("z")
    Traceback (most recent call last):
    ...
    tensorprog.errors.ExpectationError: no closed form for E[...]: the exact tier knows ...
    """


class NotPositiveSemidefinite(ExpectationError):
    """A covariance handed to an expectation is not positive semidefinite."""


class LimitError(TensorProgError):
    """The Master-Theorem limit of a program could not be derived, or was asked for a name it lacks.

    Example
    -------
    >>> p = tp.Program("demo")
    >>> h = p.embed(np.eye(2))
    >>> tp.limit(p).scalar("h1")
    Traceback (most recent call last):
    ...
    tensorprog.errors.LimitError: 'h1' is a vector; use Z('h1') or cov('h1', ...)
    """


class ResourceError(TensorProgError):
    """A computation would not fit in memory even when chunked.

    The message gives the estimate and what to change (:mod:`tensorprog.resources`).

    Example
    -------
    >>> p = tp.Program("demo")
    >>> h = p.matrix("W") @ p.embed(np.eye(2))
    >>> tp.simulate(p, width=10**6)
    Traceback (most recent call last):
    ...
    tensorprog.errors.ResourceError: one seed at width n=1000000 needs about 7.3 TiB but ...
    """


class AccuracyWarning(UserWarning):
    """A limit could not be computed to the target accuracy; its error estimate says by how
    much (``with_error=True`` returns it with the kernel; ``docs/accuracy.md``).

    Example
    -------
    Monte-Carlo expectations are accurate to their standard error, far short of the target
    (the lines marked SKIP take seconds):

    >>> import warnings
    >>> issubclass(tp.AccuracyWarning, UserWarning)      # filtered like any warning
    True
    >>> with warnings.catch_warnings(record=True) as caught:              # doctest: +SKIP
    ...     warnings.simplefilter("always")
    ...     K = tp.nngp(tp.demo_program(activation="tanh"), tier="montecarlo")
    >>> print(caught[0].message)                                         # doctest: +SKIP
    the NNGP kernel is accurate to about ... absolute (...), short of the target 1e-08; ...
    """


class PseudoLipschitzWarning(UserWarning):
    """A nonlinearity grows faster than polynomially: the Master Theorem may not apply.

    The theorem assumes pseudo-Lipschitz ψ (TP IIb Assumption B.8, Def. B.7;
    ``docs/theory.md`` §2.1).

    Example
    -------
    >>> import warnings
    >>> p = tp.Program("demo")
    >>> h = p.embed(np.eye(2))
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     y = tp.exp(h).named("y")
    >>> print(caught[0].message)
    NONLIN: y := exp(h1): exp is not pseudo-Lipschitz (TP IIb Def. B.7); the Master Theorem ...
    """


class PredictionError(TensorProgError):
    """A kernel prediction (:mod:`tensorprog.predict`) was asked with inputs it cannot use.

    Mismatched shapes, a kernel that is not symmetric positive semidefinite, a bad index, time or
    learning rate.

    Example
    -------
    >>> tp.predict.gp_inference(np.eye(2), np.ones(3), np.ones((1, 2)))
    Traceback (most recent call last):
    ...
    tensorprog.errors.PredictionError: gp_inference: y_train has shape (3,) for 2 training ...
    """


class LearningRateWarning(UserWarning):
    """A learning rate above ``2m/λ_max`` of the NTK: gradient descent leaves the kernel regime.

    Example
    -------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     lr = tp.predict.check_learning_rate(10.0, np.eye(2))
    >>> caught[0].category.__name__
    'LearningRateWarning'
    """


class TrainingError(TensorProgError):
    """A training run (:func:`tensorprog.train`) was asked with inputs it cannot use: targets of
    the wrong length, an index out of range, a loss without a derivative, a bad batch schedule
    or learning rate, or a parametrization whose limit blows up.

    Example
    -------
    >>> tp.train(tp.demo_program(), y=[1.0, 2.0, 3.0], steps=1)
    Traceback (most recent call last):
    ...
    tensorprog.errors.TrainingError: train: targets y have shape (3,) but 2 training inputs ...
    """
