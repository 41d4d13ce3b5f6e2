"""Elementwise functions of NONLIN⁺ instructions, as sympy functions with numeric twins.

Every nonlinearity a program uses is a sympy expression built from the functions below (and
sympy's own ``exp``, ``sin``, ``cos``, ``tanh``, ``erf``, polynomials).  The symbolic form is
what the Master-Theorem evaluator differentiates (ZDOT, TP IIb Def. B.3) and what the exact
expectation tier pattern-matches; :func:`numeric_namespace` gives the array implementations
that ``sympy.lambdify`` uses for NumPy or CuPy.

Derivative conventions: ``relu' = step`` and ``step' = DiracDelta``; a derivative that
contains ``DiracDelta`` marks a function as non-differentiable, and ZDOT then uses the Stein
form of TP IIb Remark B.6.  ``step(0) = 0`` (the indicator of ``x > 0``).
"""
from __future__ import annotations

import math

import sympy as sp


class relu(sp.Function):
    """ReLU, ``max(x, 0)``."""

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return sp.Max(x, 0)
        if x.is_nonnegative:
            return x
        if x.is_nonpositive:
            return sp.S.Zero
        return None

    def fdiff(self, argindex=1):
        return step(self.args[0])

    def _eval_is_real(self):
        return True


class step(sp.Function):
    """Heaviside step ``1{x > 0}`` (value 0 at 0)."""

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return sp.S.One if x > 0 else sp.S.Zero
        if x.is_positive:
            return sp.S.One
        if x.is_nonpositive:
            return sp.S.Zero
        return None

    def fdiff(self, argindex=1):
        return sp.DiracDelta(self.args[0])

    def _eval_is_real(self):
        return True


class sigmoid(sp.Function):
    """Logistic sigmoid ``1 / (1 + exp(-x))``."""

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return 1 / (1 + sp.exp(-x))
        return None

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0]) * (1 - sigmoid(self.args[0]))

    def _eval_is_real(self):
        return True


class gelu(sp.Function):
    """Exact GELU, ``x Φ(x) = x (1 + erf(x/√2)) / 2``."""

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return x * (1 + sp.erf(x / sp.sqrt(2))) / 2
        return None

    def fdiff(self, argindex=1):
        x = self.args[0]
        return (1 + sp.erf(x / sp.sqrt(2))) / 2 + x * sp.exp(-x**2 / 2) / sp.sqrt(2 * sp.pi)

    def _eval_is_real(self):
        return True


def leaky_relu(x, slope=0.01):
    """Leaky ReLU ``max(x, 0) + slope·min(x, 0) = slope·x + (1 − slope)·relu(x)``."""
    from .ir.expression import as_expression  # the grammar's functions include this one

    slope = as_expression(slope, {}, what="the slope")
    return slope * x + (1 - slope) * relu(x)


def absolute(x):
    """``|x| = 2 relu(x) − x`` (written through relu so the exact tier knows it)."""
    return 2 * relu(x) - x


#: Functions of this module known to the parser and the printer, by name.
SYMPY_FUNCTIONS = {
    "relu": relu,
    "step": step,
    "sigmoid": sigmoid,
    "gelu": gelu,
    "erf": sp.erf,
    "tanh": sp.tanh,
    "exp": sp.exp,
    "sin": sp.sin,
    "cos": sp.cos,
    "sqrt": sp.sqrt,
    "Abs": sp.Abs,
    "DiracDelta": sp.DiracDelta,
    "Heaviside": sp.Heaviside,
}

#: Functions whose growth is not polynomial: the Master Theorem needs pseudo-Lipschitz ψ
#: (TP IIb Def. B.7), so programs using these get a warning.
NOT_PSEUDO_LIPSCHITZ = (sp.exp,)


def numeric_namespace(xp):
    """Array implementations of the functions above for the array module ``xp``.

    ``xp`` is ``numpy`` or ``cupy``; the result is a ``lambdify`` module dictionary.
    """
    if xp.__name__ == "numpy":
        from scipy.special import erf as _erf
    else:  # cupy
        from cupyx.scipy.special import erf as _erf

    def _relu(x):
        return xp.maximum(x, 0.0)

    def _step(x):
        return (x > 0) * 1.0

    def _sigmoid(x):
        return 0.5 * (1.0 + xp.tanh(0.5 * x))

    def _gelu(x):
        return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))

    def _dirac(x, *args):
        # Only reached by a derivative of a step: a measure-zero event at finite width.
        return x * 0.0

    def _max(*args):
        out = args[0]
        for a in args[1:]:
            out = xp.maximum(out, a)
        return out

    def _min(*args):
        out = args[0]
        for a in args[1:]:
            out = xp.minimum(out, a)
        return out

    return {
        "relu": _relu,
        "step": _step,
        "sigmoid": _sigmoid,
        "gelu": _gelu,
        "erf": _erf,
        "DiracDelta": _dirac,
        "Max": _max,
        "Min": _min,
        "exp": xp.exp,
        "tanh": xp.tanh,
        "sin": xp.sin,
        "cos": xp.cos,
        "sqrt": xp.sqrt,
        "Abs": xp.abs,
        "sign": xp.sign,
        "pi": math.pi,
        "E": math.e,
    }


def lambdify(args, expr, xp=None, cse: bool = False):
    """``sympy.lambdify`` with this module's numeric implementations for array module ``xp``
    (``cse=True``: common subexpressions computed once, for large expressions)."""
    import numpy

    xp = numpy if xp is None else xp
    return sp.lambdify(args, expr, modules=[numeric_namespace(xp), xp.__name__], cse=cse)
