"""Hypernetworks: layers whose weights another network generates, for the limit program of
h(x, z) = g(z; f(x)) (Littwin, Galanti, Wolf, Yang, *On Infinite-Width
Hypernetworks*, Eqs. 2–3; the limit program is ``programs/hypernet.py``).

Blocks for the limit program (the weights of g are outputs of f; as f's width n → ∞ they are
Gaussian with covariance ``S`` over the inputs, tangent kernel ``T`` with respect to f's
parameters, iid over the entries):

* :func:`generated_input` — g's input layer ``V¹(x) z/√d_z`` as a trainable initial vector
  family (covariance ``S ∘ ZZᵀ/d_z``, tangent ``T ∘ ZZᵀ/d_z``);
* :func:`generated_matrix` — a hidden m×m layer, ``p.matrix(var=c·S, tangent=c·T)``;
* :func:`generated_readout` — an input-dependent readout row ``v(x)``: the core's readout has
  one fixed vector of scalar variance, so ``h = v(x)·x/√m`` is written as the NONLIN
  ``y = v ⊙ x`` (v a trainable family of covariance S, tangent T) read out by a fixed untrained
  vector of variance c; in the limit its NNGP is ``c·S ∘ E[Z^x Z^x]`` and its NTK share
  ``c·T ∘ E[Z^x Z^x]``.  (A core extension would be a ``Readout`` whose ``var`` and tangent are
  (N, N) arrays, with the finite-width backend drawing ``v`` per input.)

The actual finite-width hypernetwork is simulated by :mod:`tensorprog.backends.hypernet`.
"""
from __future__ import annotations

import numpy as np

from ..errors import ProgramError
from ..ir.builder import Var


# ---------------------------------------------------------------------- blocks for programs
def generated_input(p, name: str, Z, S, T, var: float = 1.0) -> Var:
    """g's input layer ``V(x) z/√d_z`` with V generated (entries of covariance ``var·S``, tangent
    kernel ``var·T`` over the inputs): the trainable initial vector family of covariance
    ``var·S ∘ ZZᵀ/d_z`` and tangent kernel ``var·T ∘ ZZᵀ/d_z``."""
    Z = np.asarray(Z, dtype=float)
    if Z.ndim == 1:
        Z = Z[:, None]
    G = Z @ Z.T / Z.shape[1]
    S, T = np.asarray(S, dtype=float), np.asarray(T, dtype=float)
    if S.shape != G.shape or T.shape != G.shape:
        raise ProgramError(f"{name}: S and T must be (N, N) with N = {G.shape[0]} rows of Z")
    p.vector(name, var * S * G, trainable=True, tangent=var * T * G)
    return p.var(name)


def generated_matrix(p, name: str, S, T, var: float = 1.0):
    """A hidden m×m layer whose entries are generated: ``Cov(W_ab(ξ_i), W_ab(ξ_j)) = var·S_ij/m``,
    NTK weight ``var·T`` (a ``p.matrix`` with an (N, N) ``var``)."""
    S, T = np.asarray(S, dtype=float), np.asarray(T, dtype=float)
    return p.matrix(name, var * S, tangent=var * T)


def generated_readout(x: Var, weight: str, S, T, var: float = 1.0, name: str | None = None):
    """Readout ``h = v(x)·x/√m`` by a generated row v(x) whose coordinates have covariance
    ``var·S`` and tangent kernel ``var·T`` over the inputs.  Written as ``y = w ⊙ x`` (named
    ``name``), w the trainable family ``weight`` (covariance S, tangent T), read out by a fixed
    untrained vector of variance ``var``: NNGP ``var·S ∘ E[Z^x Z^x]``, NTK share
    ``var·T ∘ E[Z^x Z^x]``."""
    p = x.program
    S, T = np.asarray(S, dtype=float), np.asarray(T, dtype=float)
    p.vector(weight, S, trainable=True, tangent=T)
    y = p.var(weight) * x
    if name is not None:
        y = y.named(name)
    return p.output(y, var=var, trainable=False)
