"""Kernel predictions for a program's inputs, split into training and test points by index."""
from __future__ import annotations

import numpy as np

from ..errors import PredictionError
from ..ir.program import Program
from ..kernels import nngp, ntk
from .checks import diag_reg_value, learning_rate, targets
from .dynamics import Ensemble, gradient_descent_mse, gradient_descent_mse_ensemble
from .inference import Posterior, gp_inference, log_marginal_likelihood
from .rates import max_learning_rate


def indices(idx, n: int, name: str) -> np.ndarray:
    """Indices of ``n`` inputs: a non-empty 1-D list of whole numbers in ``0..n−1``."""
    arr = np.asarray(idx)
    whole = np.issubdtype(arr.dtype, np.integer) or (
        arr.dtype == float and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)))
    if arr.ndim != 1 or arr.size == 0 or not whole:
        raise PredictionError(f"from_program: {name} must be a non-empty list of input indices "
                              f"(whole numbers), got {idx!r}")
    arr = arr.astype(int)
    bad = arr[(arr < 0) | (arr >= n)]
    if bad.size:
        raise PredictionError(f"from_program: {name} index {int(bad[0])} is out of range: the "
                              f"program has {n} inputs, indexed 0..{n - 1}")
    return arr


class ProgramPredictor:
    """Kernel predictions for a program's inputs split into training and test points by index;
    built by :func:`from_program`.  The kernels are the program's infinite-width NNGP and NTK
    (:func:`tensorprog.nngp`, :func:`tensorprog.ntk`), derived on first use; the methods are
    those of :mod:`tensorprog.predict` with the blocks sliced out."""

    def __init__(self, program, y_train, train, test, lr, diag_reg, strict, tier):
        if not isinstance(program, Program):
            raise PredictionError(f"from_program: expected a tensorprog Program, got "
                                  f"{type(program).__name__}")
        program.require_output()
        n = program.num_inputs or 0
        self.program, self.tier = program, tier
        self.train = indices(train, n, "train")
        self.test = np.arange(n) if test is None else indices(test, n, "test")
        self.y_train = targets(y_train, len(self.train), "from_program")
        self.lr = learning_rate(lr, "from_program")
        self.diag_reg = diag_reg_value(diag_reg, "from_program")
        self.strict = strict
        self._kernels: dict[str, np.ndarray] = {}

    def kernel(self, which: str) -> np.ndarray:
        """The program's ``"nngp"`` or ``"ntk"`` on all its inputs, ``(N, N)``."""
        if which not in self._kernels:
            self._kernels[which] = (nngp if which == "nngp" else ntk)(self.program, tier=self.tier)
        return self._kernels[which]

    def _block(self, which: str, rows, cols) -> np.ndarray:
        return self.kernel(which)[np.ix_(rows, cols)]

    def max_learning_rate(self) -> float:
        """:func:`max_learning_rate` of the NTK on the training points."""
        return max_learning_rate(self._block("ntk", self.train, self.train), self.diag_reg)

    def gp_inference(self) -> Posterior:
        """:func:`gp_inference` at the test points, with the full test covariance."""
        return gp_inference(self._block("nngp", self.train, self.train), self.y_train,
                            self._block("nngp", self.test, self.train),
                            self._block("nngp", self.test, self.test), self.diag_reg)

    def log_marginal_likelihood(self) -> float:
        """:func:`log_marginal_likelihood` of the training targets."""
        return log_marginal_likelihood(self._block("nngp", self.train, self.train),
                                       self.y_train, self.diag_reg)

    def gradient_descent(self, t=None, *, steps=None, fx_train_0=0.0, fx_test_0=0.0):
        """:func:`gradient_descent_mse` from the given initial outputs: ``(train, test)``."""
        return gradient_descent_mse(
            self._block("ntk", self.train, self.train), self.y_train, t, steps=steps, lr=self.lr,
            fx_train_0=fx_train_0, fx_test_0=fx_test_0,
            ntk_test_train=self._block("ntk", self.test, self.train), diag_reg=self.diag_reg,
            strict=self.strict)

    def ensemble(self, t=None, *, steps=None, get: str = "ntk") -> Ensemble:
        """:func:`gradient_descent_mse_ensemble` with the full test covariance."""
        ntk_blocks = (None, None) if get == "nngp" else (
            self._block("ntk", self.train, self.train), self._block("ntk", self.test, self.train))
        return gradient_descent_mse_ensemble(
            ntk_blocks[0], self._block("nngp", self.train, self.train), self.y_train, t,
            steps=steps, lr=self.lr, ntk_test_train=ntk_blocks[1],
            nngp_test_train=self._block("nngp", self.test, self.train),
            nngp_test_test=self._block("nngp", self.test, self.test), get=get,
            diag_reg=self.diag_reg, strict=self.strict)


def from_program(program, y_train, train, test=None, *, lr: float = 1.0, diag_reg: float = 0.0,
                 strict: bool = False, tier: str = "auto") -> ProgramPredictor:
    """Kernel predictions for a program, its inputs split into training and test points.

    Parameters
    ----------
    program : a :class:`tensorprog.Program` with an output.
    y_train : (len(train),) or (len(train), c) targets.
    train : indices (0-based) of the training inputs.
    test : indices of the inputs to predict at; default every input of the program, the
        training ones included (in program order), so the results cover all inputs.
    lr : learning rate η of the gradient-descent predictions.
    diag_reg : float ≥ 0 added to the training kernels' diagonals (noise variance in
        :meth:`ProgramPredictor.gp_inference`).
    strict : raise instead of warning when ``lr > 4m/λ_max``.
    tier : expectation tier of :func:`tensorprog.nngp` / :func:`tensorprog.ntk`.

    Returns
    -------
    ProgramPredictor

    Raises
    ------
    PredictionError : indices out of range or not whole numbers, targets of the wrong length,
        a bad learning rate or regulariser, not a program.
    ProgramError : the program has no output.

    Example
    -------
    >>> pred = tp.predict.from_program(p, y, train=[0, 1, 2, 3], lr=1.0)
    >>> ens = pred.ensemble(steps=np.arange(4))     # mean (4, N), cov (4, N, N) on every input
    """
    return ProgramPredictor(program, y_train, train, test, lr, diag_reg, strict, tier)
