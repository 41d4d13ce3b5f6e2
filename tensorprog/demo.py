"""The small program the examples of the documentation run on.

Like the toy data sets of a machine-learning library, :func:`demo_program` builds one fixed,
small network in a single call, so that an example can show one method without first writing
the network it acts on.  Its limit is known in closed form (``docs/theory.md`` §3.1: the ReLU
arc-cosine recursion), which is why the examples can print exact numbers.
"""
from __future__ import annotations

import numpy as np



def demo_program(output: bool = True, moment: bool = False, bias_var: float = 0.1,
                 activation: str = "relu", inputs=None, name: str = "demo"):
    """A one-hidden-layer network on two inputs, built with the builder in one call.

    The program (NTK parametrization, ``docs/theory.md`` §3.3; TP IIb Def. 4.2)::

        INPUT:  h1 := embed(X1, var=2.0, bias_var=0.1)     # X1 = inputs, the 2×2 identity
        MATRIX: W ~ N(0, 2.0/n)
        NONLIN: x1 := relu(h1)
        MATMUL: h2 := W x1
        NONLIN: y := relu(h2)
        MOMENT: th := avg(y**2)                            # with moment=True
        OUTPUT: readout(y, var=2.0, bias_var=0.0)          # with output=True

    so that ``Z^{h1}`` has covariance ``ξ_iᵀξ_j + 0.1`` (1.1 on the diagonal), ``Z^{h2}`` the
    variance ``σ_W² E[relu(Z^{h1})²] = 2 · 1.1/2 = 1.1`` and ``θ̊_th = E[relu(Z^{h2})²] = 0.55``
    (TP IIb Thm. B.4; ``E[relu(Z)²] = Var(Z)/2`` for a centred Gaussian Z).

    Parameters
    ----------
    output : bool
        Whether the program has the readout ``f(ξ) = v·y(ξ)/√n`` (needed by the kernels, the
        finite-width run and training).
    moment : bool
        Whether the program has the MOMENT scalar ``th = (1/n) Σ_α y_α²``.
    bias_var : float
        Variance of the input layer's bias.
    activation : str
        The nonlinearity φ of ``x1 = φ(h1)`` and ``y = φ(h2)``: a name of
        :data:`tensorprog.nn.ACTIVATIONS` (``"relu"``, ``"tanh"``, ``"erf"``, …).
    inputs : array_like, shape (N, d), optional
        The inputs ξ, one per row (default: the 2×2 identity).
    name : str
        The program's name.

    Returns
    -------
    Program
        A new program; extend it with the builder (``p.var("y")`` is a handle on ``y``).

    Raises
    ------
    ProgramError
        When ``activation`` is not a known name, or on inputs the input layer refuses.

    Example
    -------
    >>> p = tp.demo_program(moment=True)
    >>> p, tp.limit(p).scalar("th")
    (<Program 'demo': 6 nodes, 2 inputs>, array([0.55, 0.55]))
    >>> tp.demo_program(activation="erf", inputs=np.ones((3, 1))).num_inputs
    3
    """
    from .ir.builder import BuilderProgram
    from .nn.activations import activation as named

    phi = named(activation)
    p = BuilderProgram(name)
    h = p.embed(np.eye(2) if inputs is None else inputs, var=2.0, bias_var=bias_var)
    y = phi(p.matrix("W", var=2.0) @ phi(h)).named("y")
    if moment:
        (y * y).mean(name="th")
    if output:
        p.output(y, var=2.0)
    return p
