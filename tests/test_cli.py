"""The command line: tensorprog show / kernel / validate / render, and its errors."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tensorprog as tp
from tensorprog import cli

MLP = str(Path(__file__).resolve().parents[1] / "programs" / "mlp.py")

# A two-layer ReLU net at criticality on unit-norm inputs with correlations 0, 0.6 and 0.8,
# with a MOMENT; its NNGP off-diagonal for correlation 0 is the docs/theory.md §6 value 0.493731.
TEXT_PROGRAM = """\
PROGRAM relu2 inputs=3
INPUT:  h1 := embed(X1, var=2.0, bias_var=0.0)
MATRIX: W1 ~ N(0, 2.0/n)
NONLIN: x1 := relu(h1)
MATMUL: h2 := W1 x1
NONLIN: x2 := relu(h2)
MOMENT: th1 := avg(x2**2)
OUTPUT: readout(x2, var=2.0, bias_var=0.0)
DATA:   X1 = [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]
"""


@pytest.fixture
def text_program(tmp_path):
    path = tmp_path / "relu2.tp"
    path.write_text(TEXT_PROGRAM)
    return str(path)


@pytest.fixture
def inputs_file(tmp_path):
    X = np.random.default_rng(3).standard_normal((3, 5))
    path = tmp_path / "X.npy"
    np.save(path, X)
    return str(path), X


def run(capsys, *argv):
    """``(exit status, stdout, stderr)`` of ``tensorprog argv``."""
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def mlp(X=None, **kw):
    return cli.load_program(MLP, X, kw)


# ---------------------------------------------------------------------- show
def test_show_python_program(capsys):
    status, out, err = run(capsys, "show", MLP)
    assert status == 0, err
    assert out.startswith("PROGRAM mlp inputs=4")
    assert "Master-Theorem limit" in out
    assert "Z^{x1} = relu(Z^{h1})" in out
    assert "Z^{h2} = Ẑ^{W1 x1}" in out


def test_show_param_and_data(capsys):
    status, out, _ = run(capsys, "show", MLP, "--param", "depth=1", "--param", "activation=erf",
                         "--data")
    assert status == 0
    assert "W2" not in out and "erf(" in out
    assert "DATA:   X1 = " in out
    text = out[: out.index("Master-Theorem")]
    assert tp.Program.from_text(text) == mlp(depth=1, activation="erf")


def test_show_text_program(capsys, text_program):
    status, out, _ = run(capsys, "show", text_program)
    assert status == 0
    assert out.startswith("PROGRAM relu2 inputs=3")
    assert "Z^{x2} = relu(Z^{h2})" in out
    assert "θ̊_th1 = E[" in out


# ---------------------------------------------------------------------- kernel
@pytest.mark.parametrize("method", ["backprop", "paths"])
def test_kernel_python_program(capsys, tmp_path, inputs_file, method):
    path, X = inputs_file
    K, T = tmp_path / "K.npy", tmp_path / "T.npy"
    status, out, _ = run(capsys, "kernel", MLP, "--inputs", path, "--ntk-method", method,
                         "--nngp-out", K, "--ntk-out", T)
    assert status == 0
    assert "NNGP kernel K (3×3)" in out and f"wrote {T}" in out
    p = mlp(X)
    np.testing.assert_array_equal(np.load(K), tp.nngp(p))
    np.testing.assert_array_equal(np.load(T), tp.ntk(p, method=method))


def test_kernel_text_program(capsys, tmp_path, text_program):
    X = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    np.save(tmp_path / "X.npy", X)
    status, _, _ = run(capsys, "kernel", text_program, "--inputs", tmp_path / "X.npy",
                       "--nngp-out", tmp_path / "K.npy", "--ntk-out", tmp_path / "T.npy")
    assert status == 0
    p = tp.Program.from_text(TEXT_PROGRAM)
    K = np.load(tmp_path / "K.npy")
    np.testing.assert_array_equal(K, tp.nngp(p))
    np.testing.assert_array_equal(np.load(tmp_path / "T.npy"), tp.ntk(p))
    assert K[0, 1] == pytest.approx(0.493731, abs=1e-6)


def test_kernel_inputs_replace_text_data(capsys, tmp_path, text_program, inputs_file):
    path, X = inputs_file
    status, _, err = run(capsys, "kernel", text_program, "--inputs", path,
                         "--nngp-out", tmp_path / "K.npy")
    assert status == 0, err
    text = TEXT_PROGRAM.replace("inputs=3", f"inputs={len(X)}").rsplit("DATA", 1)[0]
    expected = tp.nngp(tp.Program.from_text(text, data={"X1": X}))
    np.testing.assert_array_equal(np.load(tmp_path / "K.npy"), expected)


# ---------------------------------------------------------------------- validate
class FakeReport:
    """Stands in for tp.validate's ValidationReport."""

    def __init__(self, passed):
        self.passed = passed
        self.slopes = {"nngp": -0.5}

    def to_markdown(self):
        return "| quantity | slope |\n| --- | --- |\n| nngp | -0.50 |"

    def plot(self, path):
        Path(path).write_bytes(b"plot")


@pytest.mark.parametrize("passed, status", [(True, 0), (False, 1)])
def test_validate_interface(capsys, monkeypatch, tmp_path, passed, status):
    calls = {}

    def fake_validate(program, widths, seeds, backend, progress):
        calls.update(widths=widths, seeds=seeds, backend=backend, name=program.name)
        for k in range(4):
            progress(k + 1, 4)
        return FakeReport(passed)

    monkeypatch.setattr(tp, "validate", fake_validate, raising=False)
    monkeypatch.setattr(cli, "_require_matplotlib", lambda what: None)  # the fake plots
    code, out, err = run(capsys, "validate", MLP, "--widths", "32,64", "--seeds", "7",
                         "--backend", "numpy", "--plot", tmp_path / "conv.png",
                         "--markdown", tmp_path / "report.md")
    assert code == status
    assert calls == dict(widths=[32, 64], seeds=7, backend="numpy", name="mlp")
    assert "| nngp | -0.50 |" in out
    assert "100%" in err and "#" * 30 in err  # the progress bar, on stderr
    assert (tmp_path / "conv.png").read_bytes() == b"plot"
    assert "| nngp |" in (tmp_path / "report.md").read_text()


def test_validate_defaults(capsys, monkeypatch):
    seen = {}
    monkeypatch.setattr(tp, "validate", lambda p, **kw: seen.update(kw) or FakeReport(True),
                        raising=False)
    assert run(capsys, "validate", MLP)[0] == 0
    assert seen["widths"] == list(cli.DEFAULT_WIDTHS) and seen["seeds"] == cli.DEFAULT_SEEDS
    assert seen["backend"] == "auto"


@pytest.mark.slow  # a real (tiny) width sweep: a few seconds with NumPy
@pytest.mark.skipif(not hasattr(tp, "validate"), reason="no finite-width backend")
def test_validate_tiny_sweep(capsys, tmp_path, text_program):
    status, out, err = run(capsys, "validate", text_program, "--widths", "32,64,128",
                           "--seeds", "64", "--backend", "numpy",
                           "--markdown", tmp_path / "report.md")
    assert status == 0, out + err
    assert "|" in out and "---" in out
    assert (tmp_path / "report.md").read_text().strip() == out.strip()


# ---------------------------------------------------------------------- render
def test_render_command(capsys, tmp_path, text_program):
    pytest.importorskip("matplotlib")
    out_file = tmp_path / "relu2.png"
    status, out, _ = run(capsys, "render", text_program, "-o", out_file)
    assert status == 0
    assert out_file.read_bytes().startswith(b"\x89PNG")
    # h1, h2 (G-vars), x1, x2 (X-vars), th1 (scalar); two gates and a bar-gate
    assert "(4 vectors, 1 scalars, 3 gates)" in out


def test_render_python_program_default_name(capsys, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    status, out, _ = run(capsys, "render", MLP)
    assert status == 0 and (tmp_path / "mlp.png").stat().st_size > 0
    p = mlp()
    vectors = len([n for n in p.nodes() if n.is_vector])
    assert f"({vectors} vectors, 0 scalars, {len(p.nodes('nonlin'))} gates)" in out


# ---------------------------------------------------------------------- errors
def assert_one_line_error(status, err, *fragments):
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tensorprog: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize("source, fragments", [
    ("def build(X:\n", ["cannot load", "SyntaxError", "(line 1)"]),
    ("import numpy\n", ["defines no function build"]),
    ("def build(X):\n    return 1 / 0\n", ["build() failed", "ZeroDivisionError", "(line 2)"]),
    ("def build(X):\n    return 42\n", ["returned int, not a Program"]),
    ("import tensorprog as tp\ndef build(X):\n    p = tp.Program('bad')\n"
     "    p.matrix('W', var=-1.0)\n    return p\n", ["variance -1.0"]),
])
def test_bad_python_program(capsys, tmp_path, source, fragments):
    path = tmp_path / "bad.py"
    path.write_text(source)
    assert_one_line_error(*run(capsys, "show", path)[::2], *fragments)


def test_bad_text_program(capsys, tmp_path):
    path = tmp_path / "bad.tp"
    path.write_text(TEXT_PROGRAM.replace("relu(h2)", "relu(h9)"))
    assert_one_line_error(*run(capsys, "show", path)[::2], "(line 6)", "h9")


@pytest.mark.parametrize("argv, fragment", [
    (["show", "no/such/file.py"], "no such program file"),
    (["show", MLP, "--param", "depth"], "--param expects key=value"),
    (["show", MLP, "--param", "width=3"], "unexpected keyword argument 'width'"),
    (["show", MLP, "--param", "activation=softplus"], "unknown activation"),
    (["kernel", MLP, "--inputs", "no/such/X.npy"], "no such inputs file"),
    (["render", MLP, "-o", "mlp.jpg"], "must end in"),
    (["kernel", MLP, "--inputs", "X.npy", "--ntk-out", "no/such/dir/T.npy"], "no such directory"),
    (["validate", MLP, "--markdown", "no/such/dir/r.md"], "no such directory"),
])
def test_usage_errors(capsys, argv, fragment):
    assert_one_line_error(*run(capsys, *argv)[::2], fragment)


def test_not_a_program(capsys, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello\n")
    assert_one_line_error(*run(capsys, "show", path)[::2], "neither a Python program")


def test_text_program_without_data(capsys, tmp_path):
    path = tmp_path / "nodata.tp"
    path.write_text(TEXT_PROGRAM.rsplit("DATA", 1)[0])
    assert_one_line_error(*run(capsys, "show", path)[::2], "pass the inputs with --inputs")


def test_python_m_entry_point():
    done = subprocess.run([sys.executable, "-m", "tensorprog", "--version"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("tensorprog ")


def test_default_inputs_are_unit_norm_and_fixed():
    X = cli.default_inputs()
    assert X.shape == (4, 8)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0)
    np.testing.assert_array_equal(X, cli.default_inputs())


def test_render_without_matplotlib(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib → ImportError
    assert_one_line_error(*run(capsys, "render", MLP, "-o", tmp_path / "m.png")[::2],
                          "needs matplotlib")


# ---------------------------------------------------------------------- every shipped program
PROGRAMS = sorted((Path(__file__).resolve().parents[1] / "programs").glob("*.py"))
#: A sweep that runs in about a second per program: the command as documented, small sizes.
SMALL_SWEEP = ("--widths", "16,32,64", "--seeds", "10", "--backend", "numpy")


@pytest.mark.parametrize("program", PROGRAMS, ids=[p.stem for p in PROGRAMS])
def test_every_program_runs_every_command(capsys, tmp_path, program):
    """show, kernel, validate and render on each program in programs/ with its defaults."""
    status, out, err = run(capsys, "show", program)
    assert status == 0 and "Master-Theorem limit" in out, err
    status, out, err = run(capsys, "kernel", program, "--json", tmp_path / "k.json")
    assert status == 0, err
    kernels = json.loads((tmp_path / "k.json").read_text())
    K, T = np.array(kernels["nngp"]), np.array(kernels["ntk"])
    assert K.shape == T.shape == (4, 4) and np.all(np.isfinite(T))
    np.testing.assert_allclose(sum(np.array(v) for v in kernels["ntk_shares"].values()), T,
                               rtol=1e-12, atol=1e-12)
    status, out, err = run(capsys, "validate", program, *SMALL_SWEEP)
    assert status in (0, 1) and "**Overall: " in out, err
    pytest.importorskip("matplotlib")
    status, out, err = run(capsys, "render", program, "-o", tmp_path / "p.svg")
    assert status == 0 and (tmp_path / "p.svg").stat().st_size > 0, err



@pytest.mark.parametrize("program", PROGRAMS, ids=[p.stem for p in PROGRAMS])
def test_show_data_parses_back(capsys, tmp_path, program):
    """``show --data > f.tp`` writes a file that is the same program (the limit as comments)."""
    status, out, err = run(capsys, "show", program, "--data")
    assert status == 0, err
    path = tmp_path / "f.tp"
    path.write_text(out)
    assert tp.Program.from_text(out) == cli.load_program(str(program))
    status, out2, err = run(capsys, "show", path, "--data")
    assert status == 0 and out2 == out, err


# ---------------------------------------------------------------------- inputs
def test_nd_inputs_npz_and_csv(capsys, tmp_path):
    X = np.random.default_rng(5).standard_normal((3, 4))
    np.savez(tmp_path / "X.npz", X=X)
    np.savetxt(tmp_path / "X.csv", X, delimiter=",")
    expected = tp.nngp(mlp(X))
    for name in ("X.npz", "X.csv"):
        status, _, err = run(capsys, "kernel", MLP, "--inputs", tmp_path / name,
                             "--nngp-out", tmp_path / "K.npy")
        assert status == 0, err
        np.testing.assert_allclose(np.load(tmp_path / "K.npy"), expected, rtol=1e-12)
    images = np.random.default_rng(1).standard_normal((2, 5, 3))
    np.save(tmp_path / "img.npy", images)
    cnn = str(Path(MLP).with_name("cnn.py"))
    status, _, err = run(capsys, "kernel", cnn, "--inputs", tmp_path / "img.npy",
                         "--nngp-out", tmp_path / "K.npy")
    assert status == 0, err
    np.testing.assert_allclose(np.load(tmp_path / "K.npy"),
                               tp.nngp(cli.load_program(cnn, images)), rtol=1e-12)


def test_per_step_data_of_a_textual_rnn(capsys, tmp_path):
    """A textual RNN reads one array per step: (N, T, d) or an .npz of X1, X2; the kernel equals
    the Python program's on the same sequences, and one (N, d) array for every step is refused."""
    rnn = str(Path(MLP).with_name("rnn.py"))
    seqs = np.random.default_rng(2).standard_normal((3, 2, 4))
    p = cli.load_program(rnn, seqs)
    text = p.to_text().replace(f"PROGRAM {p.name} ", "PROGRAM rnn ", 1)
    path = tmp_path / "rnn.tp"
    path.write_text(text)
    np.save(tmp_path / "seqs.npy", seqs[::-1].copy())
    np.savez(tmp_path / "steps.npz", X1=seqs[::-1, 0], X2=seqs[::-1, 1])
    expected = tp.ntk(cli.load_program(rnn, seqs[::-1].copy()))
    for name in ("seqs.npy", "steps.npz"):
        status, _, err = run(capsys, "kernel", path, "--inputs", tmp_path / name,
                             "--ntk-out", tmp_path / "T.npy")
        assert status == 0, err
        np.testing.assert_allclose(np.load(tmp_path / "T.npy"), expected, rtol=1e-10)
    np.save(tmp_path / "flat.npy", seqs[:, 0])
    assert_one_line_error(*run(capsys, "kernel", path, "--inputs", tmp_path / "flat.npy")[::2],
                          "2 INPUT lines", "(N, 2, d)")


def test_default_inputs_follow_the_module_shape():
    attention = cli.load_program(str(Path(MLP).with_name("attention.py")))
    assert attention.num_inputs == 4
    X = cli.default_inputs((4, 3, 8))
    np.testing.assert_allclose(np.linalg.norm(X, axis=-1), 1.0)


# ---------------------------------------------------------------------- outputs
def test_outputs_go_exactly_where_they_say(capsys, tmp_path, inputs_file):
    path, X = inputs_file
    status, out, _ = run(capsys, "kernel", MLP, "--inputs", path, "--nngp-out", tmp_path / "Kout")
    assert status == 0 and f"wrote {tmp_path / 'Kout'}" in out
    assert not (tmp_path / "Kout.npy").exists()
    np.testing.assert_array_equal(np.load(tmp_path / "Kout"), tp.nngp(mlp(X)))


def test_kernel_shares_and_json_on_stdout(capsys, inputs_file):
    path, X = inputs_file
    status, out, _ = run(capsys, "kernel", MLP, "--inputs", path, "--shares")
    assert status == 0 and "NTK share of W1:" in out and "NTK share of readout" in out
    for method in ("backprop", "paths"):
        status, out, _ = run(capsys, "kernel", MLP, "--inputs", path, "--json", "-",
                             "--ntk-method", method)
        data = json.loads(out)
        T = tp.ntk(mlp(X), method=method)
        np.testing.assert_allclose(data["ntk"], T, rtol=1e-12)
        assert set(data["ntk_shares"]) == set(tp.ntk_contributions(mlp(X)))


def test_validate_json_seed_dtype(capsys, tmp_path, text_program):
    status, out, err = run(capsys, "validate", text_program, "--widths", "32,64,128",
                           "--seeds", "64", "--backend", "numpy", "--seed", "3",
                           "--dtype", "float32", "--json", "-")
    report = json.loads(out)
    assert status == (0 if report["passed"] else 1), err
    assert report["widths"] == [32, 64, 128] and report["seeds"] == 64
    assert {c["name"].split(":")[0] for c in report["checks"]} == {"nngp", "ntk", "scalar"}
    assert len(report["rows"]) == 9 and report["rows"][0]["width"] == 32


def test_show_latex(capsys, text_program):
    status, out, _ = run(capsys, "show", text_program, "--latex")
    assert status == 0
    latex = out[out.index("\\begin{align*}"):]
    assert latex.rstrip().endswith("\\end{align*}")
    assert r"\mathring{\theta}_{th1} &= \mathbb{E}\left[" in latex and "= 0.5" in latex
    status, out, _ = run(capsys, "show", text_program, "--latex", "--symbolic")
    assert status == 0 and r"\hat Z^{W1 x1}" in out


# ---------------------------------------------------------------------- errors and speed
def test_broken_pipe_is_one_line(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "tensorprog", "show", MLP, "--param",
                             "depth=40"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=tmp_path)
    proc.stdout.readline()
    proc.stdout.close()  # as `tensorprog show … | head -1` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) in (0, 2)
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 1, err


@pytest.mark.parametrize("error, fragment", [
    (MemoryError(), "out of memory"),
    (RecursionError("maximum recursion depth exceeded"), "nested too deeply"),
    (KeyError("x"), "unexpected KeyError"),
])
def test_any_exception_is_one_line(capsys, monkeypatch, error, fragment):
    def boom(program, *a, **k):
        raise error
    monkeypatch.setattr(tp, "nngp", boom)
    assert_one_line_error(*run(capsys, "kernel", MLP)[::2], fragment)


def test_import_is_lazy_and_fast():
    code = ("import sys, time; t = time.perf_counter(); import tensorprog; "
            "dt = time.perf_counter() - t; "
            "heavy = [m for m in ('sympy', 'scipy', 'networkx', 'matplotlib') if m in sys.modules]; "
            "print(dt, heavy)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=Path(MLP).parents[1])
    seconds, heavy = done.stdout.split(" ", 1)
    assert heavy.strip() == "[]" and float(seconds) < 0.5, done.stdout + done.stderr
