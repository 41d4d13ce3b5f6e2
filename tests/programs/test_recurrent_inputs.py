"""Inputs of the recurrent programs (RNN, GRU): (N, T, d) sequences, or (N, D) split into steps
(``tensorprog.nn.recurrent.as_sequences``), with clear errors for other shapes."""
import numpy as np
import pytest

import tensorprog as tp
from programs.gru import build as build_gru
from programs.rnn import build as build_rnn

BUILDS = pytest.mark.parametrize("build", [build_rnn, build_gru], ids=["rnn", "gru"])


@BUILDS
def test_bad_shapes(build):
    with pytest.raises(tp.ProgramError, match="N, T, d"):
        build(np.zeros((3, 4, 5, 2)))
    with pytest.raises(tp.ProgramError, match="steps"):
        build(np.zeros((3, 5)), steps=2)


@BUILDS
def test_flat_inputs_are_split_into_steps(build):
    X = np.random.default_rng(1).standard_normal((3, 6))
    p, q = build(X, steps=3), build(X.reshape(3, 3, 2))
    np.testing.assert_allclose(tp.nngp(p), tp.nngp(q), rtol=1e-12)
