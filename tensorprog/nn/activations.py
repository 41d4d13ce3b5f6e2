"""Elementwise activations by name, for architectures that take ``activation="relu"``."""
from __future__ import annotations

from ..errors import ProgramError
from ..ir import builder as B

ACTIVATIONS = {"relu": B.relu, "erf": B.erf, "tanh": B.tanh, "gelu": B.gelu,
               "sigmoid": B.sigmoid, "step": B.step, "identity": B.identity,
               "sin": B.sin, "cos": B.cos}


def activation(name: str):
    """The builder function of the activation ``name`` (e.g. ``tp.relu`` for ``"relu"``)."""
    if name not in ACTIVATIONS:
        raise ProgramError(f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]
