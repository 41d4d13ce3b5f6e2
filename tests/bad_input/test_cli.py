"""Bad and edge inputs of the command line, validate, the resource estimates and deep programs.

Every case ends in a named tensorprog error with a message saying what is wrong (one line on
stderr and exit status 2 for the command line) or in a correct number; none may raise a raw
exception, hang or exhaust memory.
"""
import numpy as np
import pytest

import tensorprog as tp
from tensorprog import cli, resources

from ..helpers import unit_rows
from ..kernels.reference import mlp_kernels
from ..test_cli import MLP, TEXT_PROGRAM, assert_one_line_error, run

PROGRAMS = MLP.rsplit("/", 1)[0]
HYPER = f"{PROGRAMS}/hypernet.py"
CNN = f"{PROGRAMS}/cnn.py"

# Two INPUT lines (one per step) sharing the embedding, as a recurrent program is written out.
TWO_STEP = """\
PROGRAM steps inputs=2
INPUT:  u1 := embed(X1, var=1.0, bias_var=0.0, weight=U)
INPUT:  u2 := embed(X2, var=1.0, bias_var=0.0, weight=U)
NONLIN: x := relu(u1 + u2)
OUTPUT: readout(x, var=1.0, bias_var=0.0)
DATA:   X1 = [[1.0, 0.0], [0.0, 1.0]]
DATA:   X2 = [[0.5, 0.5], [1.0, 0.0]]
"""
NO_INPUT = """\
PROGRAM lonely inputs=2
VECTOR: x ~ N(0, [[1.0, 0.0], [0.0, 1.0]])
NONLIN: y := relu(x)
MOMENT: m := avg(y**2)
"""


def _files(tmp):
    """Write the catalogue's input and program files into ``tmp``."""
    rng = np.random.default_rng(0)
    np.save(tmp / "complex.npy", np.eye(3) * (1 + 1j))
    np.save(tmp / "nan.npy", np.array([[1.0, np.nan], [0.0, 1.0]]))
    np.save(tmp / "inf.npy", np.array([[1.0, np.inf], [0.0, 1.0]]))
    np.save(tmp / "object.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp / "strings.npy", np.array(["a", "b"]))
    np.save(tmp / "bools.npy", np.ones((2, 3), dtype=bool))
    np.save(tmp / "empty.npy", np.zeros((0, 3)))
    np.save(tmp / "scalar.npy", np.float64(3.0))
    np.save(tmp / "cube.npy", rng.standard_normal((3, 2, 4)))
    np.save(tmp / "flat.npy", rng.standard_normal((3, 4)))
    (tmp / "text.npy").write_text("1,2\n3,4\n")
    (tmp / "garbage.npy").write_bytes(bytes(range(256)))
    (tmp / "truncated.npy").write_bytes((tmp / "flat.npy").read_bytes()[:70])
    (tmp / "letters.csv").write_text("1,2\n3,x\n")
    (tmp / "ragged.csv").write_text("1,2\n3\n")
    (tmp / "blank.csv").write_text("")
    (tmp / "broken.npz").write_bytes(b"PK\x03\x04 not really a zip")
    np.savez(tmp / "objects.npz", X=np.array([None], dtype=object))
    np.savez(tmp / "two.npz", A=np.eye(3), B=np.eye(3))
    np.savez(tmp / "none.npz")
    np.savez(tmp / "hyper.npz", X=np.eye(3, 4), Z=np.eye(3))
    np.savez(tmp / "steps_missing.npz", X1=np.eye(2))
    np.savez(tmp / "steps_uneven.npz", X1=np.eye(2), X2=np.eye(3, 2))
    (tmp / "two_step.tp").write_text(TWO_STEP)
    (tmp / "no_input.tp").write_text(NO_INPUT)
    (tmp / "no_data.tp").write_text(TEXT_PROGRAM.rsplit("DATA", 1)[0])
    (tmp / "complex_data.tp").write_text(TEXT_PROGRAM.replace("[1.0, 0.0]", "[1j, 0.0]"))
    (tmp / "binary.tp").write_bytes(b"PROGRAM x inputs=1\n\xff\xfe\n")
    (tmp / "notes.txt").write_text("hello\n")
    (tmp / "syntax.py").write_text("def build(X:\n")
    (tmp / "raises.py").write_text("def build(X):\n    raise ValueError('no')\n")
    (tmp / "none.py").write_text("def build(X):\n    return None\n")
    (tmp / "nobuild.py").write_text("x = 1\n")
    (tmp / "recurse.py").write_text("def build(X):\n    return build(X)\n")
    (tmp / "oom.py").write_text("def build(X):\n    raise MemoryError\n")


# (argv, fragments of the one error line); "{t}" is the scratch directory
CASES = [
    # --- input files: never unpickled, never a raw numpy message
    (["kernel", MLP, "--inputs", "{t}/complex.npy"], ["complex", "real inputs"]),
    (["kernel", MLP, "--inputs", "{t}/nan.npy"], ["non-finite", "index (0, 1)"]),
    (["kernel", MLP, "--inputs", "{t}/inf.npy"], ["non-finite"]),
    (["kernel", MLP, "--inputs", "{t}/object.npy"], ["Python objects", "does not unpickle"]),
    (["kernel", MLP, "--inputs", "{t}/strings.npy"], ["must be numbers"]),
    (["kernel", MLP, "--inputs", "{t}/bools.npy"], ["must be numbers"]),
    (["kernel", MLP, "--inputs", "{t}/empty.npy"], ["non-empty", "(0, 3)"]),
    (["kernel", MLP, "--inputs", "{t}/scalar.npy"], ["non-empty"]),
    (["kernel", MLP, "--inputs", "{t}/text.npy"], ["not a .npy file", "name the file .csv"]),
    (["kernel", MLP, "--inputs", "{t}/garbage.npy"], ["not a .npy file", "no NumPy header"]),
    (["kernel", MLP, "--inputs", "{t}/truncated.npy"], ["corrupt or truncated"]),
    (["kernel", MLP, "--inputs", "{t}/letters.csv"], ["comma-separated numbers", "'x'"]),
    (["kernel", MLP, "--inputs", "{t}/ragged.csv"], ["comma-separated numbers"]),
    (["kernel", MLP, "--inputs", "{t}/blank.csv"], ["non-empty"]),
    (["kernel", MLP, "--inputs", "{t}/broken.npz"], ["corrupt or truncated .npz"]),
    (["kernel", MLP, "--inputs", "{t}/objects.npz"], ["does not unpickle"]),
    (["kernel", MLP, "--inputs", "{t}/two.npz"], ["names its inputs X", "['A', 'B']"]),
    (["kernel", MLP, "--inputs", "{t}/none.npz"], ["holds no arrays"]),
    (["kernel", HYPER, "--inputs", "{t}/hyper.npz", "--param", "Z=1"], ["Z is given both"]),
    (["kernel", MLP, "--inputs", "{t}/missing.npy"], ["no such inputs file"]),
    (["kernel", MLP, "--inputs", "{t}"], ["no such inputs file"]),
    (["kernel", CNN, "--inputs", "{t}/flat.npy"], ["X must have shape"]),
    (["kernel", HYPER, "--inputs", "{t}/cube.npy"], []),
    # --- textual programs and their per-step data
    (["kernel", "{t}/two_step.tp", "--inputs", "{t}/flat.npy"], ["2 INPUT lines", "(N, 2, d)"]),
    (["kernel", "{t}/two_step.tp", "--inputs", "{t}/steps_missing.npz"], ["lacks X2"]),
    (["kernel", "{t}/two_step.tp", "--inputs", "{t}/steps_uneven.npz"],
     ["different numbers of inputs"]),
    (["kernel", "{t}/two_step.tp", "--inputs", "{t}/two.npz"], ["lacks X1, X2", "unused A, B"]),
    (["show", "{t}/no_input.tp", "--inputs", "{t}/flat.npy"], ["no INPUT line"]),
    (["show", "{t}/no_data.tp"], ["no DATA line for its input X1", "--inputs"]),
    (["show", "{t}/two_step.tp", "--param", "depth=2"], ["Python programs only"]),
    (["show", "{t}/complex_data.tp"], ["(line 9)", "DATA must hold real numbers"]),
    (["show", "{t}/binary.tp"], ["cannot read"]),
    (["show", "{t}/notes.txt"], ["neither a Python program"]),
    # --- Python program files
    (["show", "{t}/syntax.py"], ["cannot load", "SyntaxError", "(line 1)"]),
    (["show", "{t}/raises.py"], ["build() failed", "ValueError: no", "(line 2)"]),
    (["show", "{t}/none.py"], ["returned NoneType, not a Program"]),
    (["show", "{t}/nobuild.py"], ["defines no function build"]),
    (["show", "{t}/recurse.py"], ["build() failed", "RecursionError"]),
    (["show", "{t}/oom.py"], ["build() failed", "MemoryError"]),
    (["show", "{t}/absent.py"], ["no such program file"]),
    (["show", MLP, "--param", "depth"], ["--param expects key=value"]),
    (["show", MLP, "--param", "width=3"], ["unexpected keyword argument 'width'"]),
    # --- options
    (["validate", MLP, "--widths", "1,2"], ["too few to fit a convergence rate"]),
    (["validate", MLP, "--widths", "64,128", "--seeds", "10"], ["at least 3 distinct widths"]),
    (["validate", MLP, "--widths", "64,96,128"], ["4× the smallest"]),
    (["validate", MLP, "--widths", "8,16,32", "--seeds", "1"], ["too few for a standard error"]),
    (["validate", MLP, "--seeds", "0"], ["expected a positive integer"]),
    (["validate", MLP, "--widths", "abc"], ["expected positive integers"]),
    (["validate", MLP, "--widths", "0,8,32"], ["expected positive integers"]),
    (["validate", MLP, "--seed", "-1"], ["integer ≥ 0"]),
    (["validate", MLP, "--dtype", "float16"], ["invalid choice"]),
    (["kernel", MLP, "--ntk-method", "guess"], ["invalid choice"]),
    (["kernel", MLP, "--bogus"], ["unrecognized arguments: --bogus"]),
    ([], ["required"]),
    (["render", MLP, "-o", "{t}/mlp.jpg"], ["must end in"]),
    (["kernel", MLP, "--nngp-out", "{t}/no/such/K.npy"], ["no such directory"]),
    (["kernel", MLP, "--json", "{t}/no/such/k.json"], ["no such directory"]),
    (["validate", MLP, "--plot", "{t}/no/such/p.png"], ["no such directory"]),
    # --- resources
    (["validate", MLP, "--widths", "16,32,64", "--seeds", "100000000"],
     ["simulating 'mlp' at width n=16 with 100000000 seeds", "use fewer seeds"]),
]


@pytest.mark.parametrize("argv, fragments", CASES,
                         ids=[f"{i}-{' '.join(a[:1] + [a[-1].rsplit('/', 1)[-1]] if a else [])}"
                              for i, (a, _) in enumerate(CASES)])
def test_cli_bad_input(capsys, tmp_path, monkeypatch, argv, fragments):
    _files(tmp_path)
    monkeypatch.setenv("TENSORPROG_PROGRESS", "0")
    argv = [a.replace("{t}", str(tmp_path)) for a in argv]
    try:
        status, _, err = run(capsys, *argv)
    except SystemExit as e:  # argparse: usage errors exit from the parser
        status, err = e.code, capsys.readouterr().err
    assert_one_line_error(status, err, *fragments)


# ---------------------------------------------------------------------- time and memory budgets
def test_time_budget_refuses_up_front(capsys, monkeypatch):
    monkeypatch.setenv("TENSORPROG_MAX_SECONDS", "0.001")
    assert_one_line_error(*run(capsys, "kernel", MLP)[::2], "would take about",
                          "TENSORPROG_MAX_SECONDS")


@pytest.mark.parametrize("value", ["abc", "-5", "0"])
def test_time_budget_must_be_positive(capsys, monkeypatch, value):
    monkeypatch.setenv("TENSORPROG_MAX_SECONDS", value)
    assert_one_line_error(*run(capsys, "kernel", MLP)[::2], "must be a positive number")


def test_kernel_memory_estimate_refuses_up_front(monkeypatch):
    """With 5 MiB free, the whole-batch derivation of 100 inputs (64 arrays of 100×100 float64
    ≈ 4.9 MiB > 60% of 5 MiB) is refused before it runs, naming the estimate; the compiled
    kernel plan computes the same NNGP in tiles within the budget; 10 inputs still run."""
    big = cli.load_program(MLP, unit_rows((100, 8)))
    expected = tp.nngp(big)
    monkeypatch.setattr(resources, "host_available_bytes", lambda: 5 * 2**20)
    with pytest.raises(tp.ResourceError, match=r"needs about 4\.9 MiB.*fewer inputs"):
        tp.limit(big)
    with pytest.raises(tp.ResourceError, match="ntk"):
        tp.ntk(big, method="paths")
    np.testing.assert_array_equal(tp.nngp(big), expected)
    small = cli.load_program(MLP, unit_rows((10, 8)))
    assert tp.nngp(small).shape == (10, 10)


def test_simulation_estimates():
    p = cli.load_program(MLP)
    with pytest.raises(tp.ResourceError, match="100000000 seeds"):
        tp.simulate(p, width=64, seeds=10**8)
    est = resources.simulation_estimate(tp.backward_program(p).program, 1024, 200, 4, 5)
    assert 1 < est.seconds < 60 and est.bytes < 2**20  # the default sweep's last width


def test_progress_line_after_the_delay(capsys, monkeypatch):
    monkeypatch.delenv("TENSORPROG_PROGRESS", raising=False)
    bar = resources.Progress("working", 4)
    bar(1)
    assert capsys.readouterr().err == ""  # quiet during the first seconds
    bar.start -= 10
    bar(2)
    bar(4)
    bar.close()
    err = capsys.readouterr().err
    assert "working: 2/4 (50%" in err and "working: 4/4 (100%" in err


# ---------------------------------------------------------------------- validate refuses
@pytest.mark.parametrize("kwargs, fragment", [
    (dict(widths=(8, 16), seeds=20), "at least 3 distinct widths"),
    (dict(widths=(8, 12, 16), seeds=20), "4× the smallest"),
    (dict(widths=(8, 16, 32), seeds=1), "too few for a standard error"),
    (dict(widths=(8, 16, 32), seeds=9), "at least 10 seeds"),
    (dict(widths=(8, 16, 32), seeds=20, slope_tolerance=0.5), "stopped falling"),
    (dict(widths=(8, 16, 32), seeds=20, resolution=-1), "resolution must be a positive"),
    (dict(widths=(8, 16, 32), seeds=20, z_threshold=float("inf")), "z_threshold"),
])
def test_validate_refuses_a_vacuous_sweep(kwargs, fragment):
    p = cli.load_program(MLP, unit_rows((3, 4)), {"depth": 1})
    with pytest.raises(tp.ProgramError, match=fragment):
        tp.validate(p, backend="numpy", **kwargs)


def test_validate_does_not_pass_a_wrong_limit_on_a_small_sweep():
    """An NTK 45% too small, a small sweep of few seeds: the report fails (an unresolved slope
    or a visible bias), it never reads PASSED."""
    p = cli.load_program(MLP, unit_rows((3, 4)), {"depth": 1})
    rep = tp.validate(p, widths=(16, 32, 64), seeds=10, backend="numpy", quantities=["ntk"],
                      limits={"ntk": 0.55 * tp.ntk(p)})
    assert not rep.passed and "FAILED" in rep.to_markdown()


# ---------------------------------------------------------------------- deep programs
def test_deep_mlp_kernels_are_exact():
    """No recursion limit (Python's is 1000 frames; depth 250 used to exhaust it): the NNGP and
    NTK of a 300-layer relu MLP (both derivations) equal the independent layer-by-layer
    recursion.  (Depth 1000 takes ~15 s on two cores, depth 10 000 a few minutes: the cost is
    linear in the depth.)"""
    X = unit_rows((2, 4), seed=3)
    p = cli.load_program(MLP, X, {"depth": 300, "bias": False})
    K, T = mlp_kernels(X, 300, 2.0, 0.0, "relu")
    np.testing.assert_allclose(tp.nngp(p), K, rtol=1e-9)
    np.testing.assert_allclose(tp.ntk(p), T, rtol=1e-9)
    np.testing.assert_allclose(tp.ntk(p, method="paths"), T, rtol=1e-9)
