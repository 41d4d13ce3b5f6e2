"""Every program of programs/ built with its defaults prints and parses back to itself."""
from pathlib import Path

import numpy as np
import pytest

import tensorprog as tp
from tensorprog.cli import load_program

PROGRAMS = sorted((Path(__file__).resolve().parents[2] / "programs").glob("*.py"))
#: Inputs of the programs that read sequences or images; the others get the command line's
#: default (N, d) inputs.
SHAPES = {"attention": (3, 4, 2), "cnn": (2, 4, 2)}


@pytest.mark.parametrize("path", PROGRAMS, ids=[p.stem for p in PROGRAMS])
def test_program_round_trips_through_text(path):
    shape = SHAPES.get(path.stem)
    X = None if shape is None else np.random.default_rng(0).standard_normal(shape)
    p = load_program(str(path), X)
    q = tp.Program.from_text(p.to_text())
    assert q == p
    assert q.to_text() == p.to_text()
