"""Writing programs in Python by operator overloading.

``Var`` is a handle on a vector or scalar of a program, possibly not yet materialised: ``relu(h)
+ b`` is kept as one pending sympy expression and becomes a single NONLIN instruction when it is
needed (a MATMUL, a MOMENT, the readout, or :meth:`Var.named`).  ``Matrix`` handles implement
``W @ x`` and ``W.T @ x`` (MATMUL).  The builder methods on :class:`BuilderProgram` create the
initial objects.  Nothing here loops over inputs: a vector stands for its whole family.
"""
from __future__ import annotations

import numbers
from dataclasses import replace

import numpy as np
import sympy as sp

from .. import functions as F
from ..errors import ProgramError
from .expression import as_expression
from .instructions import InitialMatrix, symbol
from .parametrization import NTK_FIXED, NTK_HIDDEN
from .program import Program


class Var:
    """A vector or scalar of a program: a sympy expression over the program's variables.

    Arithmetic (``+ - * / **``, unary ``-``) with numbers and other ``Var`` of the same program
    builds larger coordinatewise expressions.  ``x.mean()`` is the MOMENT ``avg(x)``.
    """

    __array_priority__ = 1000  # numpy scalars defer to our operators

    def __init__(self, program: Program, expr: sp.Expr):
        self.program = program
        self.expr = program.expression(expr)
        self._node: str | None = None
        if isinstance(self.expr, sp.Symbol):
            self._node = self.expr.name

    # -------------------------------------------------------------- classification
    @property
    def is_vector(self) -> bool:
        return any(self.program.node(s.name).is_vector for s in self.expr.free_symbols)

    @property
    def name(self) -> str:
        """The program variable this handle denotes (materialising it if needed)."""
        return self.materialize()

    def named(self, name: str) -> "Var":
        """Materialise this expression as a variable called ``name``."""
        if self._node is not None:
            if self._node == name:
                return self
            expr = symbol(self._node)
        else:
            expr = self.expr
        return Var(self.program, symbol(self._materialize(expr, name)))

    def materialize(self) -> str:
        if self._node is None:
            self._node = self._materialize(self.expr, None)
        return self._node

    def _materialize(self, expr, name):
        p = self.program
        if not any(p.node(s.name).is_vector for s in expr.free_symbols):
            raise ProgramError(
                f"`{expr}` is a scalar expression; only vectors can be named or multiplied by a "
                "matrix (use it inside a NONLIN or MOMENT instead)")
        name = name or p.fresh_name("x")
        p.add_inferred("nonlin", name, expr)
        return name

    # -------------------------------------------------------------- arithmetic
    def _coerce(self, other) -> sp.Expr:
        if isinstance(other, Var):
            if other.program is not self.program:
                raise ProgramError("cannot combine variables of two different programs")
            return other.expr
        if isinstance(other, numbers.Number) or (isinstance(other, np.ndarray) and other.ndim == 0):
            value = other.item() if isinstance(other, np.ndarray) else other
            if isinstance(value, numbers.Integral):
                return sp.Integer(int(value))
            if not np.isfinite(float(value)):
                raise ProgramError(f"cannot use the non-finite number {value} in a program")
            return sp.Float(float(value))
        if isinstance(other, sp.Basic) and not other.free_symbols:
            return other
        raise ProgramError(
            f"cannot combine a program variable with {type(other).__name__}; use numbers or "
            "variables of the same program")

    def _new(self, expr) -> "Var":
        return Var(self.program, expr)

    def __add__(self, o):
        return self._new(self.expr + self._coerce(o))

    def __radd__(self, o):
        return self._new(self._coerce(o) + self.expr)

    def __sub__(self, o):
        return self._new(self.expr - self._coerce(o))

    def __rsub__(self, o):
        return self._new(self._coerce(o) - self.expr)

    def __mul__(self, o):
        return self._new(self.expr * self._coerce(o))

    def __rmul__(self, o):
        return self._new(self._coerce(o) * self.expr)

    def __truediv__(self, o):
        return self._new(self.expr / self._coerce(o))

    def __rtruediv__(self, o):
        return self._new(self._coerce(o) / self.expr)

    def __pow__(self, o):
        return self._new(self.expr ** self._coerce(o))

    def __neg__(self):
        return self._new(-self.expr)

    def __pos__(self):
        return self

    def mean(self, name: str | None = None) -> "Var":
        """MOMENT ``avg(x)``: the scalar ``(1/n) Σ_α x_α``."""
        return moment(self, name=name)

    def __repr__(self) -> str:
        kind = "vector" if self.is_vector else "scalar"
        return f"<{kind} {self.expr} of {self.program.name!r}>"

    __hash__ = object.__hash__


class Matrix:
    """Handle on an initial matrix: ``W @ x`` and ``W.T @ x`` are MATMUL instructions."""

    def __init__(self, program: Program, name: str, transpose: bool = False):
        self.program = program
        self.name = name
        self.transpose = transpose

    @property
    def T(self) -> "Matrix":
        return Matrix(self.program, self.name, not self.transpose)

    def __matmul__(self, x) -> Var:
        if not isinstance(x, Var):
            raise ProgramError(
                f"MATMUL {self.name} @ ...: the right-hand side must be a vector of the program, "
                f"got {type(x).__name__}")
        if not x.is_vector:
            raise ProgramError(
                f"MATMUL: {self.name} @ `{x.expr}`: a matrix multiplies a vector, not a scalar")
        arg = x.materialize()
        name = self.program.fresh_name("h")
        self.program.add_matmul(name, self.name, arg, self.transpose)
        return Var(self.program, symbol(name))

    def __repr__(self) -> str:
        return f"<matrix {self.name}{'ᵀ' if self.transpose else ''}>"


def _program_of(args) -> Program:
    for a in args:
        if isinstance(a, Var):
            return a.program
    raise ProgramError("a nonlinearity needs at least one program variable as argument")


def _apply(fn, *args) -> Var:
    p = _program_of(args)
    first = next(a for a in args if isinstance(a, Var))
    exprs = [first._coerce(a) for a in args]
    return Var(p, fn(*exprs))


def nonlin(fn, *vectors, scalars=(), variables=None) -> Var:
    """NONLIN⁺ ``ψ(x¹,…,xᵏ; θ…)``.

    ``fn`` is a Python function of sympy expressions (called with the vectors, then the scalars)
    or a sympy expression / ``Lambda`` in ``variables`` (default: its free symbols sorted by
    name), which are bound to ``vectors`` then ``scalars`` in order.
    """
    args = list(vectors) + list(scalars)
    p = _program_of(args)
    exprs = [a.expr if isinstance(a, Var) else p.expression(a) for a in args]
    if isinstance(fn, sp.Lambda):
        out = fn(*exprs)
    elif isinstance(fn, sp.Basic):
        vs = list(variables) if variables is not None else sorted(fn.free_symbols, key=str)
        if len(vs) != len(exprs):
            raise ProgramError(
                f"nonlin: ψ = {fn} has variables {vs} but {len(exprs)} arguments were given")
        out = fn.xreplace(dict(zip(vs, exprs)))
    elif callable(fn):
        try:
            out = fn(*exprs)
        except Exception as e:  # a user function that does not accept sympy input
            raise ProgramError(
                f"nonlin: calling {getattr(fn, '__name__', fn)} on sympy symbols failed ({e}); "
                "write ψ with sympy / tensorprog functions (tp.relu, sympy.tanh, ...)") from e
    else:
        raise ProgramError(f"nonlin: ψ must be a sympy expression or a function, got {fn!r}")
    if isinstance(out, Var):
        return out
    out = p.expression(out)
    if not isinstance(out, sp.Expr):
        raise ProgramError(f"nonlin: ψ must return a scalar sympy expression, got {out!r}")
    return Var(p, out)


def moment(fn, *vectors, scalars=(), name: str | None = None, variables=None) -> Var:
    """MOMENT ``θ := (1/n) Σ_α ψ(x¹_α,…; θ…)``.  ``moment(x)`` alone is ``avg(x)``."""
    if isinstance(fn, Var) and not vectors and not scalars:
        body = fn
    else:
        body = nonlin(fn, *vectors, scalars=scalars, variables=variables)
    if not body.is_vector:
        raise ProgramError(f"MOMENT avg(`{body.expr}`): the average needs a vector expression")
    p = body.program
    name = name or p.fresh_name("th")
    p.add_inferred("moment", name, body.expr)
    return Var(p, symbol(name))


def coordinatewise(name: str, fn):
    """The builder function ``name(x)``: the NONLIN applying ``fn`` (a sympy function of one
    expression) to every coordinate of ``x``."""
    def apply(x):
        return _apply(fn, x)
    apply.__name__ = apply.__qualname__ = name
    apply.__doc__ = f"``{name}(x)``: the NONLIN applying {name} to every coordinate of ``x``."
    return apply


relu = coordinatewise("relu", F.relu)
step = coordinatewise("step", F.step)
abs = coordinatewise("abs", F.absolute)  # noqa: A001 - the name users expect


def leaky_relu(x, slope=0.01):
    return _apply(lambda e: F.leaky_relu(e, slope), x)


erf = coordinatewise("erf", sp.erf)
tanh = coordinatewise("tanh", sp.tanh)
sigmoid = coordinatewise("sigmoid", F.sigmoid)
gelu = coordinatewise("gelu", F.gelu)
sin = coordinatewise("sin", sp.sin)
cos = coordinatewise("cos", sp.cos)
exp = coordinatewise("exp", sp.exp)
identity = coordinatewise("identity", lambda e: e)


def polynomial(x, coefficients):
    """``Σ_k c_k x^k`` for ``coefficients = [c_0, c_1, ...]``."""
    coefficients = [as_expression(c, {}, what="a coefficient") for c in coefficients]
    return _apply(lambda e: sum(c * e**k for k, c in enumerate(coefficients)), x)


class BuilderProgram(Program):
    """A :class:`Program` with the Python builder methods (this is ``tp.Program``)."""

    def embed(self, X, var: float = 1.0, bias_var: float = 0.0, name: str | None = None,
              weight: str | None = None, trainable: bool = True, family: str = "inputs",
              lr: float = 1.0, bias_lr: float = 1.0) -> Var:
        """Input layer ``h(ξ) = Uξ + b`` on inputs ``X`` of shape (N, d): ``U_ij ~ N(0, var/d)``,
        ``b_i ~ N(0, bias_var)`` (NTK parametrization).  Its Z is the Gaussian family with
        covariance ``var·XXᵀ/d + bias_var``.  Calls naming the same ``weight`` share (U, b).
        With ``family``, row a of X feeds member a of that family (see :meth:`family`).
        ``lr`` and ``bias_lr`` are the learning-rate multipliers λ of U and b in training
        (:mod:`tensorprog.ir.parametrization`)."""
        name = name or self.fresh_name("h")
        where = f"INPUT: {name}"
        lr, bias_lr = _lr(lr, "lr", where), _lr(bias_lr, "bias_lr", where)
        self.add_embedding(name, X, var, bias_var, weight=weight, trainable=trainable,
                           family=family)
        self.replace(name, parametrization=NTK_FIXED.with_lr(lr),
                     bias_parametrization=NTK_FIXED.with_lr(bias_lr))
        return Var(self, symbol(name))

    def family(self, name: str, owner) -> str:
        """Declare a family of vectors whose member a belongs to input ``owner[a]``."""
        self.add_family(name, owner)
        return name

    def select(self, x: Var, index, family: str = "inputs", name: str | None = None) -> Var:
        """SELECT: the vector whose member j (in ``family``) is member ``index[j]`` of ``x``
        (``-1``: the zero vector).  Shifts, pooling windows and padding are selects."""
        if not isinstance(x, Var) or not x.is_vector:
            raise ProgramError("SELECT takes a vector of the program")
        name = name or self.fresh_name("s")
        self.add_select(name, x.materialize(), index, family)
        return Var(self, symbol(name))

    def matrix(self, name: str, var=1.0, trainable: bool = True, shape=None,
               tangent=None, lr: float = 1.0) -> Matrix:
        """Initial n×n matrix, entries N(0, var/n).  With ``var`` an (N, N) covariance over the
        inputs and ``tangent`` the entries' tangent kernel, a generated matrix (the output of a
        hypernetwork; see :meth:`Program.add_matrix`).  ``lr`` is its learning-rate
        multiplier λ in training."""
        par = NTK_HIDDEN.with_lr(_lr(lr, "lr", f"MATRIX: {name}"))
        self.add_matrix(name, var, trainable=trainable, shape=shape, tangent=tangent,
                        parametrization=par)
        return Matrix(self, name)

    def bias(self, name: str, var: float = 1.0, trainable: bool = True,
             lr: float = 1.0) -> Var:
        """Input-independent initial vector with N(0, var) coordinates (a trainable bias);
        ``lr`` is its learning-rate multiplier λ in training."""
        lr = _lr(lr, "lr", f"VECTOR: {name}")
        self.add_vector(name, var, trainable=trainable, source="bias")
        self.replace(name, parametrization=NTK_FIXED.with_lr(lr))
        return Var(self, symbol(name))

    def vector(self, name: str, cov=1.0, cross: dict | None = None,
               trainable: bool = False, family: str | None = None, tangent=None) -> Var:
        """Initial vector: ``cov`` a number (one shared vector with that coordinate variance)
        or an (m, m) covariance over a family (default: the N inputs); ``cross`` gives
        covariances with earlier initial vectors (``{handle_or_name: array}``); ``tangent`` the
        NTK weight of a trainable family (see :meth:`Program.add_vector`)."""
        cross = {(k.name if isinstance(k, Var) else k): v for k, v in (cross or {}).items()}
        self.add_vector(name, cov, cross=cross, trainable=trainable, family=family,
                        tangent=tangent)
        return Var(self, symbol(name))

    def scalar(self, name: str, value: float) -> Var:
        """Initial scalar (deterministic)."""
        self.add_scalar(name, value)
        return Var(self, symbol(name))

    def output(self, x: Var, var: float = 1.0, bias_var: float = 0.0,
               trainable: bool = True, slots=None, lr: float = 1.0, bias_lr: float = 1.0):
        """Readout ``f(ξ) = v·x(ξ)/√n + b_out`` with ``v_i ~ N(0, var)``, ``b_out ~ N(0, bias_var)``.

        ``slots`` (one integer per member of x's family) reads a vector of another family with
        one independent readout vector per slot: ``f(ξ_i) = Σ_{a owned by i} v_{slots[a]}·x_a/√(nP)``
        (a CNN's flatten readout: the slot is the position).  ``lr`` and ``bias_lr`` are the
        learning-rate multipliers λ of v and b_out in training."""
        if not isinstance(x, Var) or not x.is_vector:
            raise ProgramError("OUTPUT: the readout reads a vector of the program")
        lr, bias_lr = _lr(lr, "lr", "OUTPUT"), _lr(bias_lr, "bias_lr", "OUTPUT")
        readout = self.set_readout(x.materialize(), var, bias_var, trainable, slots=slots)
        self.readout = replace(readout, parametrization=readout.parametrization.with_lr(lr),
                               bias_parametrization=readout.bias_parametrization.with_lr(bias_lr))
        return self.readout

    def var(self, name: str) -> Var:
        """Handle on the existing variable ``name``."""
        node = self.node(name)
        if isinstance(node, InitialMatrix):
            return Matrix(self, name)
        return Var(self, symbol(name))


def _lr(value, what: str, instruction: str) -> float:
    """A learning-rate multiplier: a finite number ≥ 0."""
    try:
        ok = float(value) >= 0 and np.isfinite(float(value))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ProgramError(f"{what}={value!r}: a learning-rate multiplier must be a finite "
                           "number ≥ 0", instruction)
    return float(value)
