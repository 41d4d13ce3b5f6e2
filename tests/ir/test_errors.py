"""Bad programs raise clear tensorprog errors that name the instruction (docs/theory.md §7)."""
import warnings

import numpy as np
import pytest

import tensorprog as tp


def test_matmul_on_scalar():
    p = tp.Program("bad")
    x = p.vector("x", 1.0)
    W = p.matrix("W", 1.0)
    with pytest.raises(tp.ProgramError, match="matrix multiplies a vector, not a scalar"):
        W @ x.mean()
    with pytest.raises(tp.ProgramError, match="MATMUL"):
        W @ 3.0


def test_matmul_on_scalar_in_text():
    text = "PROGRAM bad inputs=0\nVECTOR: x ~ N(0, 1.0)\nMATRIX: W ~ N(0, 1.0/n)\n" \
           "MOMENT: t := avg(x)\nMATMUL: h := W t\n"
    with pytest.raises(tp.ParseError, match=r"line 5.*'t' is a moment, but a vector is needed"):
        tp.Program.from_text(text)


def test_unknown_nonlinearity_in_text():
    text = "PROGRAM bad inputs=0\nVECTOR: x ~ N(0, 1.0)\nNONLIN: y := swish(x)\n"
    with pytest.raises(tp.ParseError, match=r"line 3.*unknown name"):
        tp.Program.from_text(text)


def test_unknown_variable_in_text():
    text = "PROGRAM bad inputs=0\nVECTOR: x ~ N(0, 1.0)\nNONLIN: y := relu(x + z)\n"
    with pytest.raises(tp.ParseError, match=r"line 3"):
        tp.Program.from_text(text)


def test_cycle_is_rejected():
    # a variable used before its definition (the only way to write a cycle in text)
    text = "PROGRAM bad inputs=0\nVECTOR: x ~ N(0, 1.0)\nMATRIX: W ~ N(0, 1.0/n)\n" \
           "NONLIN: y := relu(z)\nMATMUL: z := W y\n"
    with pytest.raises(tp.ParseError, match=r"line 4.*not defined before"):
        tp.Program.from_text(text)
    # a cycle forced into the graph is caught by validate()
    p = tp.Program("cyc")
    x = p.vector("x", 1.0)
    W = p.matrix("W", 1.0)
    h = W @ x
    p.graph.add_edge(h.name, "x", role="arg", position=0)
    with pytest.raises(tp.ProgramError, match="cycle"):
        p.validate()


def test_non_square_matrix():
    p = tp.Program("bad")
    with pytest.raises(tp.ProgramError, match="not square"):
        p.matrix("W", 1.0, shape=("n", "2n"))
    text = "PROGRAM bad inputs=0\nMATRIX: W ~ N(0, 1.0/m)\n"
    with pytest.raises(tp.ParseError, match=r"line 2.*n×n"):
        tp.Program.from_text(text)


def test_not_pseudo_lipschitz_warns():
    p = tp.Program("warn")
    x = p.vector("x", 1.0)
    with pytest.warns(tp.PseudoLipschitzWarning, match="exp"):
        tp.exp(x).named("y")


def test_covariance_not_psd():
    p = tp.Program("bad")
    with pytest.raises(tp.ProgramError, match="not positive semidefinite"):
        p.vector("u", np.array([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(tp.ProgramError, match="variance"):
        p.vector("v", -1.0)
    p.vector("a", np.eye(2))
    with pytest.raises(tp.ProgramError, match="not positive semidefinite"):
        p.vector("b", np.eye(2), cross={"a": 5 * np.eye(2)})


def test_bad_inputs_and_names(inputs):
    p = tp.Program("bad")
    with pytest.raises(tp.ProgramError, match="NaN"):
        p.embed(np.full((2, 2), np.nan))
    h = p.embed(inputs)
    with pytest.raises(tp.ProgramError, match="already defined"):
        p.matrix(h.name)
    with pytest.raises(tp.ProgramError, match="not a valid variable name"):
        p.matrix("2W")


def test_output_required(inputs):
    p = tp.Program("noout")
    p.embed(inputs)
    with pytest.raises(tp.ProgramError, match="no output"):
        tp.nngp(p)


def test_errors_are_not_raw_numpy_tracebacks():
    p = tp.Program("bad")
    x = p.vector("x", 1.0)
    with pytest.raises(tp.ProgramError, match="cannot combine"):
        x + "a"
    q = tp.Program("other")
    y = q.vector("y", 1.0)
    with pytest.raises(tp.ProgramError, match="two different programs"):
        x + y
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(tp.ProgramError, match="non-finite"):
            x * float("nan")
