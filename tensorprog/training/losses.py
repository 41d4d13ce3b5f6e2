"""Losses of a training run: ``ℓ(f, y)`` per example, averaged over the batch.

``"mse"`` is ``½(f − y)²`` (the convention of :mod:`tensorprog.predict`), ``"bce"`` the binary
cross-entropy of the logit ``f`` for labels ``y ∈ {0, 1}``, ``log(1 + e^f) − y f``; any sympy
expression in the symbols ``f`` and ``y`` (or a callable building one) is accepted if sympy can
differentiate it in ``f``.  The unrolled program only needs ``ℓ'(f, y) = ∂ℓ/∂f`` (TP IIb
App. D.1.1, "Computing the loss derivatives"), which enters its NONLIN⁺ and MOMENT
instructions through the output scalars.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp

from .. import functions as fn
from ..errors import TrainingError

F, Y = sp.Symbol("f", real=True), sp.Symbol("y", real=True)


@dataclass(frozen=True)
class Loss:
    """A loss: ``expr`` = ℓ(f, y), ``grad`` = ∂ℓ/∂f (sympy, in :data:`F`, :data:`Y`), and
    ``affine`` (ℓ' affine in f: the limit is exactly Gaussian in the NTK parametrization)."""

    name: str
    expr: sp.Expr
    grad: sp.Expr
    affine: bool

    def grad_at(self, f, y) -> sp.Expr:
        """ℓ'(f, y) with ``f``, ``y`` substituted (sympy expressions or numbers)."""
        return self.grad.xreplace({F: f, Y: sp.sympify(y)})

    def numeric_grad(self):
        """ℓ'(f, y) as a NumPy function."""
        return sp.lambdify((F, Y), self.grad, "numpy")


def make_loss(loss) -> Loss:
    """The :class:`Loss` named or given by ``loss``.

    Raises
    ------
    TrainingError : an unknown name, an expression in other symbols than ``f`` and ``y``, or
        one sympy cannot differentiate in ``f`` (or whose derivative is not a function).
    """
    if isinstance(loss, str):
        key = loss.lower()
        if key == "mse":
            return Loss("mse", (F - Y) ** 2 / 2, F - Y, True)
        if key in ("bce", "cross_entropy", "binary_cross_entropy"):
            expr = sp.log(1 + sp.exp(F)) - Y * F
            # σ(f) − y, with σ(f) = (1 + tanh(f/2))/2 (no overflow for large |f|)
            return Loss("bce", expr, (1 + sp.tanh(F / 2)) / 2 - Y, False)
        raise TrainingError(f"loss={loss!r}: use 'mse', 'bce' or a sympy expression in the "
                            "symbols f and y (tp.training.F, tp.training.Y)")
    expr = loss(F, Y) if callable(loss) and not isinstance(loss, sp.Basic) else loss
    try:
        expr = sp.sympify(expr)
    except (sp.SympifyError, TypeError):
        raise TrainingError(f"loss={loss!r} is neither a known name nor a sympy expression") \
            from None
    names = {s.name for s in expr.free_symbols}
    if not names <= {"f", "y"} or "f" not in names:
        raise TrainingError(f"loss {expr}: a loss is an expression in f (the output) and y "
                            f"(the target), found symbols {sorted(names)}")
    expr = expr.xreplace({s: (F if s.name == "f" else Y) for s in expr.free_symbols})
    grad = sp.diff(expr, F)
    kinks = (sp.Derivative, sp.Subs, sp.DiracDelta, sp.Heaviside, sp.sign, sp.Piecewise,
             sp.Abs, sp.Max, sp.Min, fn.step)
    if grad.has(*kinks) or any(isinstance(a, kinks) for a in sp.preorder_traversal(grad)):
        raise TrainingError(f"loss {expr} has no usable derivative in f (got {grad}); gradient "
                            "descent needs a differentiable loss")
    try:
        sp.lambdify((F, Y), grad, "numpy")(np.array([0.3]), np.array([0.5]))
    except Exception as e:  # a derivative NumPy cannot evaluate
        raise TrainingError(f"loss {expr}: its derivative {grad} cannot be evaluated ({e})") \
            from None
    slope = sp.simplify(sp.diff(grad, F))
    return Loss(str(expr), expr, grad, bool(F not in slope.free_symbols))
