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
    builds larger coordinatewise expressions, kept pending until a MATMUL, a MOMENT, the readout
    or :meth:`named` needs a variable; it then becomes one NONLIN⁺ instruction (TP IIb Eq. 60).
    ``x.mean()`` is the MOMENT ``avg(x)`` (Eq. 61).  Handles are made by the builder methods of
    :class:`~tensorprog.Program`, not constructed directly.

    Parameters
    ----------
    program : Program
        The program the expression belongs to.
    expr : sympy.Expr or str
        An expression over the program's variables (a string is read by the ψ grammar, see
        ``docs/expressions.md``).

    Raises
    ------
    ProgramError
        When combined with a variable of another program or with something that is not a number.

    Example
    -------
    >>> h = tp.demo_program().var("h1")
    >>> 2 * tp.relu(h) + 1
    <vector 2*relu(h1) + 1 of 'demo'>
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
        """Whether the expression mentions a vector (else it is a scalar of the program)."""
        return any(self.program.node(s.name).is_vector for s in self.expr.free_symbols)

    @property
    def name(self) -> str:
        """The program variable this handle denotes (materialising it if needed)."""
        return self.materialize()

    def named(self, name: str) -> "Var":
        """Materialise this expression as a program variable called ``name``.

        Parameters
        ----------
        name : str
            The variable's name (a new name of the program).

        Returns
        -------
        Var
            A handle on the variable ``name`` (``self`` when it already is that variable).

        Raises
        ------
        ProgramError
            When the expression is a scalar (only vectors are named this way), or ``name`` is taken.

        Example
        -------
        >>> p = tp.demo_program(output=False)
        >>> z = tp.tanh(p.var("y")).named("z")
        >>> z, p.node("z").kind
        (<vector z of 'demo'>, 'nonlin')
        """
        if self._node is not None:
            if self._node == name:
                return self
            expr = symbol(self._node)
        else:
            expr = self.expr
        return Var(self.program, symbol(self._materialize(expr, name)))

    def materialize(self) -> str:
        """The name of the variable this handle denotes, adding a NONLIN for a pending expression.

        Returns
        -------
        str
            The variable's name (a fresh ``x<k>`` when the expression had none).

        Raises
        ------
        ProgramError
            When the expression is a scalar.

        Example
        -------
        >>> (tp.demo_program().var("y") + 1).materialize()      # a fresh name
        'x2'
        """
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
        """MOMENT ``avg(x)``: the scalar ``(1/n) Σ_α x_α`` (TP IIb Eq. 61).

        Parameters
        ----------
        name : str, optional
            Name of the scalar (default: a fresh ``th<k>``).

        Returns
        -------
        Var
            The scalar; its limit is ``E Z^x`` (ZMOMENT, Eq. 63).

        Raises
        ------
        ProgramError
            When the expression is not a vector.

        Example
        -------
        >>> p = tp.demo_program(bias_var=0.0)
        >>> th = (p.var("h1") ** 2).mean(name="th")
        >>> tp.limit(p).scalar("th")
        array([1., 1.])
        """
        return moment(self, name=name)

    def __repr__(self) -> str:
        kind = "vector" if self.is_vector else "scalar"
        return f"<{kind} {self.expr} of {self.program.name!r}>"

    __hash__ = object.__hash__


class Matrix:
    """Handle on an initial matrix: ``W @ x`` and ``W.T @ x`` are MATMUL instructions.

    MATMUL ``h := W x`` or ``h := Wᵀ x`` (TP IIb Def. 4.1); its limit is ``Ẑ + Ż`` (ZMATMUL,
    Def. B.3, see ``docs/theory.md`` §2.2).  Made by :meth:`Program.matrix`.

    Parameters
    ----------
    program : Program
        The program holding the matrix.
    name : str
        The matrix's name.
    transpose : bool
        Whether the handle multiplies by ``Wᵀ``.

    Raises
    ------
    ProgramError
        When the right-hand side of ``@`` is not a vector of the program.

    Example
    -------
    >>> p = tp.demo_program()
    >>> W = p.matrix("V", var=2.0)
    >>> W @ p.var("y"), W.T @ p.var("h1")
    (<vector h3 of 'demo'>, <vector h4 of 'demo'>)
    """

    def __init__(self, program: Program, name: str, transpose: bool = False):
        self.program = program
        self.name = name
        self.transpose = transpose

    @property
    def T(self) -> "Matrix":
        """The transposed handle: ``W.T @ x`` is the MATMUL ``Wᵀ x``."""
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
    """NONLIN⁺ ``ψ(x¹,…,xᵏ; θ₁,…)``, applied coordinatewise (TP IIb Eq. 60).

    Its limit is ``ψ(Z^{x¹},…; θ̊₁,…)`` (ZNONLIN⁺, Eq. 62).

    Parameters
    ----------
    fn : callable, sympy.Lambda or sympy.Expr
        ψ.  A Python function is called with sympy expressions (the vectors, then the scalars)
        and must build its result from sympy / tensorprog functions; a sympy expression is
        evaluated with ``variables`` bound to the arguments.
    *vectors : Var
        The vector arguments ``x¹,…,xᵏ``.
    scalars : sequence of Var, optional
        The scalar parameters ``θ₁,…`` (MOMENTs or initial scalars of the program).
    variables : sequence of sympy.Symbol, optional
        The symbols of ``fn`` bound to ``vectors`` then ``scalars`` (default: its free symbols
        sorted by name).

    Returns
    -------
    Var
        The pending expression ψ(…).

    Raises
    ------
    ProgramError
        When no argument is a program variable, ψ has the wrong number of variables, or calling
        ``fn`` on sympy symbols fails.

    Example
    -------
    >>> h = tp.demo_program().var("h1")
    >>> th = (h * h).mean(name="th")
    >>> tp.nonlin(lambda x, t: x / (1 + t), h, scalars=[th])
    <vector h1/(th + 1) of 'demo'>
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
    """MOMENT ``θ := (1/n) Σ_α ψ(x¹_α,…; θ₁,…)`` (TP IIb Eq. 61).

    Its limit is ``θ̊ = E ψ(Z^{x¹},…; θ̊₁,…)`` (ZMOMENT, Eq. 63).  ``moment(x)`` alone is
    ``avg(x)``.

    Parameters
    ----------
    fn : Var, callable, sympy.Lambda or sympy.Expr
        ψ as for :func:`nonlin`, or a vector expression to average.
    *vectors : Var
        The vector arguments of ψ.
    scalars : sequence of Var, optional
        The scalar parameters of ψ.
    name : str, optional
        Name of the scalar (default: a fresh ``th<k>``).
    variables : sequence of sympy.Symbol, optional
        As for :func:`nonlin`.

    Returns
    -------
    Var
        The new scalar of the program (one value per input for an input family).

    Raises
    ------
    ProgramError
        When ψ is not a vector expression, or as :func:`nonlin`.

    Example
    -------
    >>> p = tp.demo_program(bias_var=0.0)
    >>> q = tp.moment(lambda x: x**2, p.var("h1"), name="q")
    >>> q, tp.limit(p).scalar("q")
    (<scalar q of 'demo'>, array([1., 1.]))
    """
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


_COORDINATEWISE_DOC = """{summary}

    Applied to every coordinate (a NONLIN⁺ instruction, TP IIb Eq. 60, once the expression is
    materialised); the Z of ``{name}(h)`` is ``{z}`` (ZNONLIN⁺, Eq. 62).

    Parameters
    ----------
    x : Var
        A vector (or a pending expression) of a program.

    Returns
    -------
    Var
        The pending expression ``{result}``; it becomes one NONLIN when a MATMUL, a MOMENT, the
        readout or :meth:`Var.named` uses it.

    Raises
    ------
    ProgramError
        When ``x`` holds no program variable.

    Example
    -------
    >>> h = tp.demo_program().var("h1")
    >>> tp.{name}(h)
    {shown}
    """


def coordinatewise(name: str, fn, summary: str, z: str | None = None,
                   result: str | None = None, shown: str | None = None):
    """The builder function ``name(x)``: the NONLIN applying ``fn`` (a sympy function of one
    expression) to every coordinate of ``x``.

    Parameters
    ----------
    name : str
        The function's name (``tp.<name>``).
    fn : callable
        ``fn(e)``, the sympy expression of the function at the expression ``e``.
    summary : str
        The first paragraph of the function's docstring.
    z, result, shown : str or None
        The Z of ``name(h)`` (default ``name(Z^h)``), the pending expression it returns (default
        ``name(x)``) and its printed form in the docstring's example (default
        ``<vector name(h1) of 'demo'>``).

    Returns
    -------
    callable
        ``name(x) -> Var``, documented with Parameters, Returns, Raises and an Example.

    Example
    -------
    >>> from tensorprog.ir.builder import coordinatewise
    >>> square = coordinatewise("square", lambda e: e**2, "The square ``x²``.")
    >>> square(tp.demo_program().var("h1"))
    <vector h1**2 of 'demo'>
    """
    def apply(x):
        return _apply(fn, x)
    apply.__name__ = apply.__qualname__ = name
    apply.__doc__ = _COORDINATEWISE_DOC.format(
        summary=summary, name=name, z=z or f"{name}(Z^h)", result=result or f"{name}(x)",
        shown=shown or f"<vector {name}(h1) of 'demo'>")
    return apply


relu = coordinatewise("relu", F.relu, "ReLU ``max(x, 0)``.")
step = coordinatewise("step", F.step, "Heaviside step ``1[x > 0]`` (the derivative of relu; "
                     "Stein's lemma handles it\n    in ZDOT, TP IIb Remark B.6).")
abs = coordinatewise(  # noqa: A001 - the name users expect
    "abs", F.absolute, "Absolute value ``|x|``, written ``2 relu(x) − x``.", z="|Z^h|",
    result="|x|", shown="<vector -h1 + 2*relu(h1) of 'demo'>")


def leaky_relu(x, slope=0.01):
    """Leaky ReLU ``max(x, 0) + slope·min(x, 0)``, written ``slope·x + (1 − slope) relu(x)``.

    Applied to every coordinate (a NONLIN⁺ instruction, TP IIb Eq. 60, once the expression is
    materialised); the Z of ``leaky_relu(h, 0.1)`` is ``leaky_relu(Z^h, 0.1)`` (ZNONLIN⁺, Eq. 62).

    Parameters
    ----------
    x : Var
        A vector (or a pending expression) of a program.
    slope : float
        Slope for negative ``x`` (default 0.01).

    Returns
    -------
    Var
        The pending expression ``slope·x + (1 − slope)·relu(x)`` (materialised as for
        :func:`relu`).

    Raises
    ------
    ProgramError
        When ``x`` holds no program variable.
    ParseError
        When ``slope`` is a string outside the expression grammar.

    Example
    -------
    >>> tp.leaky_relu(tp.demo_program().var("h1"), 0.1)
    <vector 0.1*h1 + 0.9*relu(h1) of 'demo'>
    """
    return _apply(lambda e: F.leaky_relu(e, slope), x)


erf = coordinatewise("erf", sp.erf, "The error function ``erf(x)``.")
tanh = coordinatewise("tanh", sp.tanh, "Hyperbolic tangent ``tanh(x)``.")
sigmoid = coordinatewise("sigmoid", F.sigmoid, "Logistic sigmoid ``1/(1 + e^{−x})``.")
gelu = coordinatewise("gelu", F.gelu,
                      "GELU ``x Φ(x)`` with Φ the standard normal distribution function.")
sin = coordinatewise("sin", sp.sin, "Sine ``sin(x)``.")
cos = coordinatewise("cos", sp.cos, "Cosine ``cos(x)``.")
exp = coordinatewise("exp", sp.exp, "Exponential ``e^x`` (not pseudo-Lipschitz: adding it to a "
                    "program warns with\n    :class:`~tensorprog.PseudoLipschitzWarning`, "
                    "``docs/theory.md`` §7).")
identity = coordinatewise(
    "identity", lambda e: e,
    "The identity ``x`` (a NONLIN that copies: a G-var made an X-var, TP IIb Def. 5.4).",
    z="Z^h", result="x", shown="<vector h1 of 'demo'>")


def polynomial(x, coefficients):
    """The polynomial ``Σ_k c_k x^k``.

    Applied to every coordinate (a NONLIN⁺ instruction, TP IIb Eq. 60, once the expression is
    materialised); the Z of ``polynomial(h, [1, 0, 2])`` is ``Σ_k c_k (Z^h)^k`` (ZNONLIN⁺, Eq. 62).

    Parameters
    ----------
    x : Var
        A vector (or a pending expression) of a program.
    coefficients : sequence of numbers or str
        ``[c_0, c_1, ...]``.

    Returns
    -------
    Var
        The pending expression ``Σ_k c_k x^k``, one NONLIN once used.

    Raises
    ------
    ProgramError
        When ``x`` holds no program variable, or a coefficient is neither a number, a string
        nor a sympy expression.
    ParseError
        When a coefficient is a string outside the expression grammar.

    Example
    -------
    >>> tp.polynomial(tp.demo_program().var("h1"), [1, 0, 2])
    <vector 2*h1**2 + 1 of 'demo'>
    """
    coefficients = [as_expression(c, {}, what="a coefficient") for c in coefficients]
    return _apply(lambda e: sum(c * e**k for k, c in enumerate(coefficients)), x)


class BuilderProgram(Program):
    """A NETSOR⊤+ program with the Python builder methods (this is ``tp.Program``).

    The program is a sequence of instructions (TP IIb Def. B.1; ``docs/theory.md`` §2.1) on N
    inputs, stored as a ``networkx`` graph of typed records; every vector stands for its whole
    family over the inputs (§3.2).  The builder methods here return handles (:class:`Var`,
    :class:`Matrix`) that write MATMUL (``W @ x``), NONLIN⁺ (``tp.relu(h) + b``) and MOMENT
    (``x.mean()``) instructions; the ``add_*`` methods of the IR take names instead.

    Parameters
    ----------
    name : str
        The program's name (printed in its header line ``PROGRAM name inputs=N``).

    Example
    -------
    >>> p = tp.Program("demo")
    >>> h = p.embed(np.eye(2), var=2.0, bias_var=0.1)
    >>> W = p.matrix("W1", var=2.0)
    >>> f = p.output(tp.relu(W @ tp.relu(h)), var=2.0)
    >>> p
    <Program 'demo': 5 nodes, 2 inputs>
    """

    def embed(self, X, var: float = 1.0, bias_var: float = 0.0, name: str | None = None,
              weight: str | None = None, trainable: bool = True, family: str = "inputs",
              lr: float = 1.0, bias_lr: float = 1.0) -> Var:
        """Input layer ``h(ξ) = Uξ + b`` on the inputs ``X`` (an initial vector family).

        ``U_ij ~ N(0, var/d)``, ``b_i ~ N(0, bias_var)`` (NTK parametrization, ``docs/theory.md``
        §3.3), so ``Z^h`` is Gaussian with covariance ``var·ξ_iᵀξ_j/d + bias_var`` (§3.1; TP IIb
        Def. 4.2).  Calls naming the same ``weight`` share (U, b) and are correlated.

        Parameters
        ----------
        X : array_like, shape (N, d)
            The inputs, one per row (a 1-d array is N inputs of dimension 1).
        var, bias_var : float
            Variances σ_U² and σ_b².
        name : str, optional
            Name of the vector (default: a fresh ``h<k>``).
        weight : str, optional
            Name of the weight (U, b); embeddings naming the same weight share it.
        trainable : bool
            Whether (U, b) contribute to the NTK.
        family : str
            ``"inputs"``, or a declared family (see :meth:`family`) whose member a reads row a of
            ``X``.
        lr, bias_lr : float
            Learning-rate multipliers λ of U and b in training (:mod:`tensorprog.ir.parametrization`,
            :func:`tensorprog.train`).

        Returns
        -------
        Var
            The input layer's output.

        Raises
        ------
        ProgramError
            On an empty or non-finite ``X``, a negative variance or learning-rate multiplier, or a row count that does not match
            the program's inputs or the family.

        Example
        -------
        >>> p = tp.Program("demo")
        >>> h = p.embed(np.eye(2), var=2.0, bias_var=0.1)
        >>> tp.limit(p).cov(h.name)
        array([[1.1, 0.1],
               [0.1, 1.1]])
        """
        name = name or self.fresh_name("h")
        where = f"INPUT: {name}"
        lr, bias_lr = _lr(lr, "lr", where), _lr(bias_lr, "bias_lr", where)
        self.add_embedding(name, X, var, bias_var, weight=weight, trainable=trainable,
                           family=family)
        self.replace(name, parametrization=NTK_FIXED.with_lr(lr),
                     bias_parametrization=NTK_FIXED.with_lr(bias_lr))
        return Var(self, symbol(name))

    def family(self, name: str, owner) -> str:
        """Declare a family of vectors whose member a belongs to input ``owner[a]``.

        See ``docs/theory.md`` §3.2 and :meth:`add_family`.

        Parameters
        ----------
        name, owner
            As for :meth:`add_family`: the new family's name and, for every member, the index
            of the input that owns it.

        Returns
        -------
        str
            ``name``, to pass as ``family=`` to :meth:`embed`, :meth:`vector` or :meth:`select`.

        Raises
        ------
        ProgramError
            When the family exists, the inputs are not declared yet, or ``owner`` is not a non-empty
            array of input indices.

        Example
        -------
        >>> p = tp.demo_program()
        >>> p.family("pixels", np.repeat(np.arange(2), 3))
        'pixels'
        >>> p.family_size("pixels")
        6
        """
        self.add_family(name, owner)
        return name

    def select(self, x: Var, index, family: str = "inputs", name: str | None = None) -> Var:
        """SELECT ``x' := x[index]``: member j of ``x'`` (in ``family``) is member ``index[j]`` of x.

        A view with no arithmetic: ``Z^{x'}_j = Z^x_{index[j]}``, 0 where the index is ``-1``
        (``docs/theory.md`` §2.1).  Shifts, pooling windows and padding are selects.

        Parameters
        ----------
        x : Var
            A vector of the program.
        index : array_like of int
            One member of ``x``'s family (or ``-1``, the zero vector) per member of ``family``.
        family : str
            The family of the new vector.
        name : str, optional
            Its name (default: a fresh ``s<k>``).

        Returns
        -------
        Var
            The selected vector.

        Raises
        ------
        ProgramError
            When ``x`` is not a vector or ``index`` does not fit the families.

        Example
        -------
        >>> p = tp.demo_program()
        >>> s = p.select(p.var("h1"), [1, 0])
        >>> tp.limit(p).cov("h1", s.name)
        array([[0.1, 1.1],
               [1.1, 0.1]])
        """
        if not isinstance(x, Var) or not x.is_vector:
            raise ProgramError("SELECT takes a vector of the program")
        name = name or self.fresh_name("s")
        self.add_select(name, x.materialize(), index, family)
        return Var(self, symbol(name))

    def matrix(self, name: str, var=1.0, trainable: bool = True, shape=None,
               tangent=None, lr: float = 1.0) -> Matrix:
        """Initial n×n matrix with entries ``N(0, var/n)`` (TP IIb Setup B.2 (1)).

        With ``var`` an (N, N) covariance over the inputs and ``tangent`` the entries' tangent
        kernel, a generated matrix (the output of a hypernetwork; see :meth:`add_matrix`).

        Parameters
        ----------
        name : str
            The matrix's name.
        var : float or array_like, shape (N, N)
            σ_W², or the input covariance of a generated matrix's entries.
        trainable : bool
            Whether the matrix contributes to the NTK.
        shape : tuple, optional
            Checked to be square (every matrix of a program is n×n).
        tangent : array_like, shape (N, N), optional
            Tangent kernel of a generated matrix's entries.
        lr : float
            Its learning-rate multiplier λ in training.

        Returns
        -------
        Matrix
            The handle: ``W @ x`` and ``W.T @ x`` are MATMULs.

        Raises
        ------
        ProgramError
            On a negative variance, a non-square shape, or a generated matrix without ``tangent``.

        Example
        -------
        >>> p = tp.demo_program()
        >>> V = p.matrix("V", var=1.0)
        >>> V @ p.var("y")
        <vector h3 of 'demo'>
        """
        par = NTK_HIDDEN.with_lr(_lr(lr, "lr", f"MATRIX: {name}"))
        self.add_matrix(name, var, trainable=trainable, shape=shape, tangent=tangent,
                        parametrization=par)
        return Matrix(self, name)

    def bias(self, name: str, var: float = 1.0, trainable: bool = True,
             lr: float = 1.0) -> Var:
        """Input-independent trainable initial vector with ``N(0, var)`` coordinates (a bias).

        It lives in the shared family and broadcasts against input families (``docs/theory.md``
        §3.2).

        Parameters
        ----------
        name : str
            The vector's name.
        var : float
            Its coordinates' variance σ_b².
        trainable : bool
            Whether it contributes to the NTK.
        lr : float
            Its learning-rate multiplier λ in training.

        Returns
        -------
        Var
            The bias.

        Raises
        ------
        ProgramError
            On a negative variance or a name already taken.

        Example
        -------
        >>> p = tp.demo_program()
        >>> b = p.bias("b", var=0.5)
        >>> tp.limit(p).cov(b.name)
        array([[0.5]])
        """
        lr = _lr(lr, "lr", f"VECTOR: {name}")
        self.add_vector(name, var, trainable=trainable, source="bias")
        self.replace(name, parametrization=NTK_FIXED.with_lr(lr))
        return Var(self, symbol(name))

    def vector(self, name: str, cov=1.0, cross: dict | None = None,
               trainable: bool = False, family: str | None = None, tangent=None) -> Var:
        """Initial vector: one shared vector or a Gaussian family (TP IIb Setup B.2 (2)).

        Parameters
        ----------
        name : str
            The vector's name.
        cov : float or array_like, shape (m, m)
            A number (one shared vector with that coordinate variance) or the covariance over a
            family (default: the N inputs).
        cross : dict, optional
            Covariances with earlier initial vectors, ``{handle_or_name: array}``.
        trainable : bool
            Whether it contributes to the NTK.
        family : str, optional
            The family of a covariance array (default ``"inputs"``).
        tangent : array_like, optional
            The NTK weight of a trainable family (see :meth:`add_vector`).

        Returns
        -------
        Var
            The vector.

        Raises
        ------
        ProgramError
            When a covariance (or the joint covariance with ``cross``) is not positive semidefinite,
            or shapes do not match the family.

        Example
        -------
        >>> p = tp.Program("demo")
        >>> v = p.vector("v", np.array([[1.0, 0.5], [0.5, 1.0]]))
        >>> u = p.vector("u", np.eye(2), cross={v: 0.5 * np.eye(2)})
        >>> tp.limit(p).cov("u", "v")
        array([[0.5, 0. ],
               [0. , 0.5]])
        """
        cross = {(k.name if isinstance(k, Var) else k): v for k, v in (cross or {}).items()}
        self.add_vector(name, cov, cross=cross, trainable=trainable, family=family,
                        tangent=tangent)
        return Var(self, symbol(name))

    def scalar(self, name: str, value: float) -> Var:
        """Initial scalar: a deterministic number (TP IIb Setup B.2 (3)), usable in ψ.

        Parameters
        ----------
        name : str
            A new name (``p.scalar("c", 0.5)`` writes ``SCALAR: c = 0.5``).
        value : float
            Its value, which is also its limit θ̊.

        Returns
        -------
        Var
            The scalar.

        Raises
        ------
        ProgramError
            When ``name`` is taken or ``value`` is not a finite number.

        Example
        -------
        >>> p = tp.demo_program()
        >>> c = p.scalar("c", 0.5)
        >>> z = tp.nonlin(lambda x, t: t * x, p.var("y"), scalars=[c])
        >>> tp.limit(p).scalar("c")
        array([0.5])
        """
        self.add_scalar(name, value)
        return Var(self, symbol(name))

    def output(self, x: Var, var: float = 1.0, bias_var: float = 0.0,
               trainable: bool = True, slots=None, lr: float = 1.0, bias_lr: float = 1.0):
        """Readout ``f(ξ) = v·x(ξ)/√n + b_out`` with ``v_i ~ N(0, var)``, ``b_out ~ N(0, bias_var)``.

        The network's output (``docs/theory.md`` §3.1); its NNGP kernel is
        ``var·E[Z^x Z^x] + bias_var``.

        Parameters
        ----------
        x : Var
            The vector read, of the inputs family (or of another family with ``slots``).
        var, bias_var : float
            Variances σ_v² and σ_b² of the readout.
        trainable : bool
            Whether (v, b_out) contribute to the NTK.
        slots : array_like of int, optional
            One integer per member of x's family: one independent readout vector per slot, ``f(ξ_i)
            = Σ_{a owned by i} v_{slots[a]}·x_a/√(nP)`` (a CNN's flatten readout: the slot is the
            position).
        lr, bias_lr : float
            Learning-rate multipliers λ of v and b_out in training.

        Returns
        -------
        Readout
            The readout record (also ``p.readout``).

        Raises
        ------
        ProgramError
            When ``x`` is not a vector, the program already has an output, or the family needs
            ``slots``.

        Example
        -------
        >>> p = tp.demo_program(output=False)
        >>> r = p.output(p.var("y"), var=2.0)
        >>> r.node, r.var
        ('y', 2.0)
        """
        if not isinstance(x, Var) or not x.is_vector:
            raise ProgramError("OUTPUT: the readout reads a vector of the program")
        lr, bias_lr = _lr(lr, "lr", "OUTPUT"), _lr(bias_lr, "bias_lr", "OUTPUT")
        readout = self.set_readout(x.materialize(), var, bias_var, trainable, slots=slots)
        self.readout = replace(readout, parametrization=readout.parametrization.with_lr(lr),
                               bias_parametrization=readout.bias_parametrization.with_lr(bias_lr))
        return self.readout

    def var(self, name: str) -> Var:
        """Handle on the existing variable ``name``.

        Parameters
        ----------
        name : str
            The name of a vector, scalar or matrix the program defines.

        Returns
        -------
        Var or Matrix
            A :class:`Matrix` handle for a matrix, else a :class:`Var`.

        Raises
        ------
        ProgramError
            When the program defines nothing of that name.

        Example
        -------
        >>> tp.demo_program().var("h2")
        <vector h2 of 'demo'>
        """
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
