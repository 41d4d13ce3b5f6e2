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


class RealFunction(sp.Function):
    """A real function of one real argument: ``at_number(x)`` its value at a number,
    ``at_sign(x)`` its value where the sign of x alone decides it (else None)."""

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return cls.at_number(x)
        return None if _takes_every_sign(x) else cls.at_sign(x)

    @classmethod
    def at_sign(cls, x):
        return None

    def _eval_is_real(self):
        return True


#: Assumptions that leave a symbol free to take any real value.
_UNSIGNED = {"real", "commutative", "complex", "extended_real", "finite", "hermitian"}


def _takes_every_sign(x: sp.Expr) -> bool:
    """Whether ``x`` is a linear form ``c₀ + Σ cᵢ sᵢ`` (numbers c) in real symbols without a sign
    assumption, with some cᵢ ≠ 0: it takes every real value, so no sign rule applies.  Decided
    without sympy's assumption system, which costs milliseconds per query (a deep program
    builds a ``relu(h + b)`` per layer and rebuilds it at every substitution)."""
    free = False
    for term in sp.Add.make_args(x):
        if term.is_Number:
            continue
        c, s = term.as_coeff_Mul()
        if not (s.is_Symbol and c != 0 and s._assumptions_orig.get("real") and
                all(v is True for v in s._assumptions_orig.values()) and
                set(s._assumptions_orig) <= _UNSIGNED):
            return False
        free = True
    return free


class relu(RealFunction):
    """ReLU, ``max(x, 0)``."""

    @classmethod
    def at_number(cls, x):
        return sp.Max(x, 0)

    @classmethod
    def at_sign(cls, x):
        if x.is_nonnegative:
            return x
        return sp.S.Zero if x.is_nonpositive else None

    def fdiff(self, argindex=1):
        return step(self.args[0])


class step(RealFunction):
    """Heaviside step ``1{x > 0}`` (value 0 at 0)."""

    @classmethod
    def at_number(cls, x):
        return sp.S.One if x > 0 else sp.S.Zero

    @classmethod
    def at_sign(cls, x):
        if x.is_positive:
            return sp.S.One
        return sp.S.Zero if x.is_nonpositive else None

    def fdiff(self, argindex=1):
        return sp.DiracDelta(self.args[0])


class sigmoid(RealFunction):
    """Logistic sigmoid ``1 / (1 + exp(-x))``."""

    @classmethod
    def at_number(cls, x):
        return 1 / (1 + sp.exp(-x))

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0]) * (1 - sigmoid(self.args[0]))


class gelu(RealFunction):
    """Exact GELU, ``x Φ(x) = x (1 + erf(x/√2)) / 2``."""

    @classmethod
    def at_number(cls, x):
        return x * (1 + sp.erf(x / sp.sqrt(2))) / 2

    def fdiff(self, argindex=1):
        x = self.args[0]
        return (1 + sp.erf(x / sp.sqrt(2))) / 2 + x * sp.exp(-x**2 / 2) / sp.sqrt(2 * sp.pi)


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
