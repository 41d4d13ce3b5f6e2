"""tensorprog: a compiler for Tensor Programs.

Write a neural architecture as a NETSOR⊤+ program, derive its infinite-width limit with the
Master Theorem (Z of every vector, limit of every scalar, NNGP kernel and NTK), and check it
against the same program run at finite width.

    >>> import tensorprog as tp
    >>> p = tp.Program("mlp")
    >>> h = p.embed(X, var=2.0, bias_var=0.1)
    >>> W = p.matrix("W1", var=2.0)
    >>> p.output(tp.relu(W @ tp.relu(h)), var=2.0)
    >>> tp.nngp(p), tp.ntk(p), tp.limit(p)
    >>> kfn = tp.compile(p); kfn(X_test, X_train, get="ntk")

The names below are imported on first use (PEP 562), so that ``import tensorprog`` — and with
it every command-line call — does not pay for sympy, scipy, networkx or matplotlib until a
program is built or a limit derived.
"""
from __future__ import annotations

import importlib
import sys
import types

from .errors import (AccuracyWarning, ExpectationError, LearningRateWarning, LimitError,
                     ParseError, PredictionError, ProgramError, PseudoLipschitzWarning,
                     ResourceError, TensorProgError, TrainingError)

__version__ = "0.1.0"

#: Public name → module that defines it (imported on first access).
_LAZY = {
    **{name: ".ir.builder" for name in (
        "Var", "Matrix", "abs", "cos", "erf", "exp", "gelu", "identity", "leaky_relu", "moment",
        "nonlin", "polynomial", "relu", "sigmoid", "sin", "step", "tanh")},
    **{name: ".kernels" for name in ("backward_program", "nngp", "ntk", "ntk_contributions")},
    **{name: ".backends" for name in ("simulate", "validate", "Simulation",
                                      "ValidationReport")},
    **{name: ".training" for name in (
        "train", "abc_parametrization", "mean_field", "mup", "ntk_parametrization",
        "standard_parametrization", "yaida")},
    "Limit": ".limit.evaluator",
    "KernelFn": ".plan",
    "render": ".render",
    "demo_program": ".demo",
}


def __getattr__(name: str):
    if name == "Program":
        from .ir.builder import BuilderProgram

        value = BuilderProgram
    elif name in ("predict", "training"):
        value = importlib.import_module(f".{name}", __name__)
    elif name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    else:
        raise AttributeError(f"module 'tensorprog' has no attribute {name!r}")
    globals()[name] = value
    return value


def limit(program, symbolic: bool = False, tier: str = "auto"):
    """The Master-Theorem limit of ``program`` (TP IIb Def. B.3, Thm. B.4).

    The Z of every vector and the limit θ̊ of every scalar, derived in program order
    (``docs/theory.md`` §2.2): ``.Z(name)``, ``.scalar(name)``, ``.cov(a, b)``, ``.mean(name)``;
    ``print()`` it for the readable form.

    Parameters
    ----------
    program : Program
    symbolic : bool
        Closed forms in the input Gram entries ``G_i_j = ξ_iᵀξ_j`` where they exist.
    tier : str
        Expectation tier ("auto", "exact", "quadrature", "montecarlo"; ``docs/theory.md`` §4).

    Returns
    -------
    Limit

    Raises
    ------
    ResourceError
        When the derivation is estimated not to fit (:mod:`tensorprog.resources`).
    ProgramError
        When the program is not well formed (a cycle, a variable used before it is defined).

    Example
    -------
    >>> p = tp.demo_program(moment=True, output=False)
    >>> print(tp.limit(p))
    Master-Theorem limit of program 'demo' (2 inputs; Z expressions hold for every input ξ_i)
      Z^{h1} = Gaussian atom (ZINIT)
      Z^{x1} = relu(Z^{h1})
      Z^{h2} = Ẑ^{W x1}
      Z^{y} = relu(Z^{h2})
      θ̊_th = E[Z^{y}**2] = 0.55
    >>> tp.limit(p, symbolic=True).cov("h1")
    array([[1.0*G_0_0 + 0.1, 1.0*G_0_1 + 0.1],
           [1.0*G_0_1 + 0.1, 1.0*G_1_1 + 0.1]], dtype=object)
    """
    from .limit.evaluator import Limit
    from .resources import check_kernel

    check_kernel(program, "limit")
    return Limit(program, symbolic=symbolic, tier=tier)


def compile(program, tier: str = "auto", dtype="float64", device="cpu"):
    """Derive ``program``'s limit once and return its kernels as a function of the inputs.

    The derivation (the Z of every vector, the backward program, the NTK terms) does not depend
    on the data: it is done once on a template of two inputs and evaluated on any inputs of the
    same shape, N₁ × N₂ cross kernels included (``docs/performance.md``; the kernels are those
    of :func:`nngp` and :func:`ntk`, ``docs/theory.md`` §3).  ``tp.kernel_fn`` is the same
    function.

    Parameters
    ----------
    program : Program
        A network program (with an output).
    tier : str
        Expectation tier ("auto", "exact", "quadrature", "montecarlo").
    dtype : "float64" or "float32"
        Default precision of the kernel calls (each call may override it).
    device : "cpu" or "gpu"
        Default device of the kernel calls: NumPy, or CuPy on the GPU.

    Returns
    -------
    KernelFn
        ``kfn(X1, X2=None, get=("nngp", "ntk"))`` (:class:`tensorprog.plan.KernelFn`);
        ``print()`` it for the derived recursion.

    Raises
    ------
    ProgramError
        When the program has no output (``p.output(x, ...)`` adds one).

    Example
    -------
    >>> kfn = tp.compile(tp.demo_program())
    >>> X = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])     # new inputs, d = 2
    >>> kfn(X, get="nngp").round(4)
    array([[1.1   , 0.8279, 0.5745],
           [0.8279, 1.1   , 0.9468],
           [0.5745, 0.9468, 1.1   ]])
    >>> kfn(X[:1], X, get="ntk").round(4)                     # a 1 × 3 cross kernel
    array([[3.3   , 1.7839, 0.8558]])
    """
    from .plan import KernelFn

    return KernelFn(program, tier=tier, dtype=dtype, device=device)


kernel_fn = compile


class _Package(types.ModuleType):
    """The package module: ``tp.limit`` and ``tp.render`` stay the functions of those names when
    the submodules ``tensorprog.limit`` and ``tensorprog.render`` are imported (the import
    system would set them as attributes of the package; they stay in ``sys.modules``)."""

    def __setattr__(self, name, value):
        if name in ("limit", "render") and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | {"Program", "predict", "training"})


__all__ = [
    "Program", "Var", "Matrix", "Limit", "limit", "nngp", "ntk", "ntk_contributions",
    "backward_program", "nonlin", "moment", "relu", "step", "abs", "leaky_relu", "erf", "tanh",
    "sigmoid", "gelu", "sin", "cos", "exp", "identity", "polynomial", "TensorProgError",
    "ProgramError", "ParseError", "ExpectationError", "LimitError", "ResourceError",
    "PseudoLipschitzWarning", "simulate", "validate", "Simulation", "ValidationReport", "render",
    "predict", "PredictionError", "LearningRateWarning", "AccuracyWarning", "compile",
    "kernel_fn", "KernelFn", "training", "train", "abc_parametrization", "mean_field", "mup",
    "ntk_parametrization", "standard_parametrization", "yaida", "TrainingError", "demo_program",
]
