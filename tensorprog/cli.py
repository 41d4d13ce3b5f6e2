"""The ``tensorprog`` command line.

    tensorprog show     PROGRAM [--inputs X.npy] [--param k=v ...] [--data] [--symbolic]
    tensorprog kernel   PROGRAM --inputs X.npy [--ntk-method backprop|paths]
                                [--nngp-out K.npy] [--ntk-out T.npy]
    tensorprog validate PROGRAM [--inputs X.npy] [--widths 64,128,...] [--seeds S]
                                [--backend auto|numpy|cupy] [--plot out.png] [--markdown out.md]
    tensorprog render   PROGRAM [-o out.png|out.svg]

PROGRAM is either a Python file exposing ``build(X, **hyperparameters) -> Program`` (like
``programs/mlp.py``; hyperparameters with ``--param key=value``) or a file holding a program in
the textual form (its first line reads ``PROGRAM <name> inputs=<N>``).  A Python program run
without ``--inputs`` gets :func:`default_inputs`.

Exit status: 0 on success, 1 when ``validate``'s checks fail, 2 on an error (a tensorprog error,
a bad program file, a bad option), reported as one line on stderr.  ``--traceback`` shows the
full traceback instead.
"""
from __future__ import annotations

import argparse
import ast
import importlib.util
import inspect
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from .errors import TensorProgError

#: Defaults of ``tensorprog validate``: a width sweep over 2^6 … 2^10 and enough seeds that the
#: fitted slopes are clear (±0.02), about 20 s for ``programs/mlp.py`` on two CPU cores with
#: NumPy.
DEFAULT_WIDTHS = (64, 128, 256, 512, 1024)
DEFAULT_SEEDS = 200


class UsageError(TensorProgError):
    """The command line or a file it names cannot be used (missing file, bad option value,
    a Python program file that fails to load)."""


# ---------------------------------------------------------------------- inputs and programs
def default_inputs() -> np.ndarray:
    """The input set used when a Python program is given no ``--inputs``: 4 inputs in R^8,
    ``np.random.default_rng(0).standard_normal((4, 8))`` with every row scaled to unit norm."""
    X = np.random.default_rng(0).standard_normal((4, 8))
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def load_inputs(path: str) -> np.ndarray:
    """An (N, d) (or (N,)) float array from a ``.npy`` file."""
    try:
        X = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UsageError(f"no such inputs file: {path}") from None
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read inputs from {path} (expected a .npy array): {e}") from None
    if X.ndim not in (1, 2) or not np.issubdtype(X.dtype, np.number):
        raise UsageError(f"inputs in {path} must be a numeric (N, d) array, "
                         f"got {X.dtype} of shape {X.shape}")
    return X.astype(float)


def parse_params(items) -> dict:
    """``["depth=3", "activation=erf"]`` → ``{"depth": 3, "activation": "erf"}``: values are
    Python literals where they parse as one, strings otherwise."""
    params = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise UsageError(f"--param expects key=value, got {item!r}")
        try:
            params[key] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            params[key] = value.strip()
    return params


def _is_text_program(text: str) -> bool:
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            return line.startswith("PROGRAM")
    return False


def load_program(path: str, inputs: np.ndarray | None = None, params: dict | None = None):
    """The program in ``path``: a Python file's ``build(X, **params)`` or the textual form.

    For the textual form ``inputs`` (when given) replaces the data of every ``INPUT`` line;
    for a Python file it is ``X`` (default :func:`default_inputs`).
    """
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"no such program file: {path}")
    if file.suffix == ".py":
        return _build_python(file, inputs if inputs is not None else default_inputs(),
                             params or {})
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {path}: {e}") from None
    if not _is_text_program(text):
        raise UsageError(f"{path} is neither a Python program (a .py file with build(X, ...)) "
                         "nor a program in the textual form (first line `PROGRAM <name> "
                         "inputs=<N>`)")
    if params:
        raise UsageError("--param applies to Python programs only; a textual program "
                         "holds its hyperparameters in its instructions")
    return _parse_text(text, inputs, path)


_INPUT_DATA = re.compile(r"^\s*INPUT\s*:.*?embed\(\s*(\w+)", re.M)  # INPUT: h := embed(X1, ...)
_DATA_LINE = re.compile(r"^\s*DATA\s*:\s*(\w+)\s*=", re.M)  # DATA: X1 = [...]
_HEADER_INPUTS = re.compile(r"^(\s*PROGRAM\s+\w+\s+inputs=)\d+", re.M)


def _parse_text(text: str, inputs, path):
    """Parse the textual form, ``inputs`` replacing the data of its INPUT lines."""
    from .ir.builder import BuilderProgram

    names = set(_INPUT_DATA.findall(text))
    if inputs is None:
        missing = sorted(names - set(_DATA_LINE.findall(text)))
        if missing:
            raise UsageError(f"{path} has no DATA line for its input {missing[0]}: "
                             "pass the inputs with --inputs X.npy")
        return BuilderProgram.from_text(text)
    if not names:
        raise UsageError(f"{path} has no INPUT line, so --inputs does not apply")
    # Comment out the file's own DATA for those inputs (so line numbers in error messages
    # stay right) and update the header's input count.
    text = _HEADER_INPUTS.sub(rf"\g<1>{len(inputs)}", text, count=1)
    lines = []
    for line in text.splitlines():
        m = _DATA_LINE.match(line)
        lines.append(f"# DATA {m.group(1)} replaced by --inputs"
                     if m and m.group(1) in names else line)
    return BuilderProgram.from_text("\n".join(lines), data={name: inputs for name in names})


def _build_python(file: Path, X: np.ndarray, params: dict):
    from .ir.program import Program

    name = "tensorprog_program_" + re.sub(r"\W", "_", file.stem)
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as for an import (dataclasses, pickling need it)
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(name, None)
        if isinstance(e, TensorProgError):
            raise
        raise UsageError(f"cannot load {file}: {_describe(e, file)}") from e
    build = getattr(module, "build", None)
    if not callable(build):
        raise UsageError(f"{file} defines no function build(X, **hyperparameters)")
    try:
        inspect.signature(build).bind(X, **params)
    except TypeError as e:
        raise UsageError(f"{file}: {e}; it is build{_signature(build)}") from None
    except ValueError:  # no signature (a builtin); let the call decide
        pass
    try:
        program = build(X, **params)
    except TensorProgError:
        raise
    except Exception as e:
        raise UsageError(f"{file}: build() failed: {_describe(e, file)}") from e
    if not isinstance(program, Program):
        raise UsageError(f"{file}: build() returned {type(program).__name__}, not a Program")
    return program


def _signature(fn) -> str:
    """``(X, depth=2, activation='relu')``: the signature without annotations."""
    empty = inspect.Parameter.empty
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return "(...)"
    plain = [p.replace(annotation=empty) for p in sig.parameters.values()]
    return str(sig.replace(parameters=plain, return_annotation=empty))


def _describe(error: BaseException, file: Path) -> str:
    """``"ValueError: message (line 12)"`` with the last line of ``file`` in the traceback."""
    line = getattr(error, "lineno", None) if isinstance(error, SyntaxError) else None
    if line is None:
        tb = error.__traceback__
        while tb is not None:
            if Path(tb.tb_frame.f_code.co_filename).resolve() == file.resolve():
                line = tb.tb_lineno
            tb = tb.tb_next
    message = error.msg if isinstance(error, SyntaxError) else str(error)
    return f"{type(error).__name__}: {message}" + (f" (line {line})" if line else "")


# ---------------------------------------------------------------------- progress
class ProgressBar:
    """A text progress bar on ``stream`` (stderr), used as ``tp.validate``'s ``progress``
    callback: ``bar(done, total, note)`` (or ``bar(fraction)``), further arguments being shown
    as a note (e.g. the width just run).  On a terminal it redraws one line in place."""

    def __init__(self, stream=None, width: int = 30, label: str = "validating"):
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.label = label
        self.start = time.monotonic()
        self._shown = False
        isatty = getattr(self.stream, "isatty", None)
        self._tty = bool(isatty and isatty())

    def __call__(self, *args, **kwargs):
        numbers = [a for a in args if isinstance(a, (int, float)) and not isinstance(a, bool)]
        if len(numbers) >= 2 and numbers[1] > 0:
            fraction = numbers[0] / numbers[1]
            rest = args[2:]
        elif numbers:
            fraction, rest = numbers[0], args[1:]
        else:
            fraction, rest = 0.0, args
        fraction = min(max(float(fraction), 0.0), 1.0)
        note = " ".join([str(a) for a in rest] + [f"{k}={v}" for k, v in kwargs.items()])
        filled = int(round(fraction * self.width))
        bar = "#" * filled + "-" * (self.width - filled)
        elapsed = time.monotonic() - self.start
        line = f"{self.label} [{bar}] {100 * fraction:3.0f}% {elapsed:5.1f}s {note[:40]}"
        if self._tty:  # redraw in place; elsewhere (logs, pipes) one line per update
            self.stream.write(f"\r{line:<{self.width + 70}}")
            self._shown = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line."""
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()
            self._shown = False


# ---------------------------------------------------------------------- commands
def _program(args):
    inputs = load_inputs(args.inputs) if args.inputs else None
    return load_program(args.program, inputs, parse_params(args.param))


def cmd_show(args) -> int:
    """Print the program and its Master-Theorem limit."""
    import tensorprog as tp

    p = _program(args)
    print(p.to_text() if args.data else str(p))
    print(tp.limit(p, symbolic=args.symbolic))
    return 0


def _check_output(*paths) -> None:
    """Fail before any long computation when an output file cannot be created."""
    for path in paths:
        if path and not Path(path).resolve().parent.is_dir():
            raise UsageError(f"cannot write {path}: no such directory "
                             f"{str(Path(path).parent)!r}")


def _require_matplotlib(what: str) -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError(f"{what} needs matplotlib: pip install matplotlib") from None


def _save(path: str, array: np.ndarray) -> None:
    try:
        np.save(path, array)
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror or e}") from None


def cmd_kernel(args) -> int:
    """Compute the NNGP kernel and the NTK on the inputs; print them, save them as .npy."""
    import tensorprog as tp

    _check_output(args.nngp_out, args.ntk_out)
    p = _program(args)
    K = tp.nngp(p)
    T = tp.ntk(p, method=args.ntk_method)
    with np.printoptions(precision=6, suppress=True, linewidth=100):
        print(f"NNGP kernel K ({K.shape[0]}×{K.shape[1]}):")
        print(K)
        print(f"NTK Θ ({args.ntk_method}):")
        print(T)
    for path, array in ((args.nngp_out, K), (args.ntk_out, T)):
        if path:
            _save(path, array)
            print(f"wrote {path}")
    return 0


def cmd_validate(args) -> int:
    """Run the program at finite widths and compare with its limit (exit 1 when it fails)."""
    import tensorprog as tp

    _check_output(args.plot, args.markdown)
    if args.plot:
        _require_matplotlib("--plot")
    p = _program(args)
    widths = list(args.widths)
    bar = ProgressBar()
    bar(0, len(widths), f"{args.seeds} seeds per width")
    try:
        report = tp.validate(p, widths=widths, seeds=args.seeds, backend=args.backend,
                          progress=bar)
    finally:
        bar.close()
    markdown = report.to_markdown()
    print(markdown)
    if args.markdown:
        _write_text(args.markdown, markdown + "\n")
    if args.plot:
        try:
            report.plot(args.plot)
        except OSError as e:
            raise UsageError(f"cannot write {args.plot}: {e.strerror or e}") from None
        print(f"wrote {args.plot}")
    return 0 if report.passed else 1


def _write_text(path: str, text: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror or e}") from None


def cmd_render(args) -> int:
    """Draw the program in the TP IIb graphical notation."""
    from .render import render

    out = args.output or f"{Path(args.program).stem}.png"
    _check_output(out)
    p = _program(args)
    d = render(p, out)
    kinds = [k for _, k in d.nodes(data="kind")]
    vectors = kinds.count("gvar") + kinds.count("xvar")
    gates = kinds.count("gate") + kinds.count("bargate")
    print(f"wrote {out} ({vectors} vectors, {kinds.count('scalar')} scalars, {gates} gates)")
    return 0


# ---------------------------------------------------------------------- parser
def _widths(text: str) -> list[int]:
    try:
        widths = [int(w) for w in text.split(",") if w.strip()]
    except ValueError:
        widths = []
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers like 64,128,256, "
                                         f"got {text!r}")
    return widths


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="tensorprog",
        description="Infinite-width limits (Z variables, NNGP, NTK) of Tensor Programs, "
                    "checked at finite width.")
    parser.add_argument("--version", action="version", version=f"tensorprog {__version__}")
    parser.add_argument("--traceback", action="store_true",
                        help="on an error, show the full traceback instead of one line")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    program = argparse.ArgumentParser(add_help=False)
    program.add_argument("program", metavar="PROGRAM",
                         help="a Python file with build(X, **hyperparameters) (e.g. "
                              "programs/mlp.py) or a program in the textual form (.tp/.txt)")
    program.add_argument("--param", action="append", metavar="KEY=VALUE", default=[],
                         help="hyperparameter for build(), a Python literal (repeatable): "
                              "--param depth=3 --param activation=erf")

    def command(name, func, help, inputs_required=False):
        p = sub.add_parser(name, parents=[program], help=help, description=func.__doc__)
        p.set_defaults(run=func)
        p.add_argument("--inputs", metavar="X.npy", required=inputs_required,
                       help="inputs, an (N, d) array in a .npy file" + (
                           "" if inputs_required else "; default for a Python program: 4 "
                           "unit-norm inputs in R^8 (standard normal, seed 0); for a textual "
                           "program, its DATA lines"))
        return p

    show = command("show", cmd_show, "print the program and its Z-limits")
    show.add_argument("--data", action="store_true",
                      help="print the full textual form with its DATA lines (it parses back)")
    show.add_argument("--symbolic", action="store_true",
                      help="limits as closed forms in the input Gram entries where they exist")

    kernel = command("kernel", cmd_kernel, "compute the NNGP kernel and the NTK on inputs",
                     inputs_required=True)
    kernel.add_argument("--ntk-method", choices=("backprop", "paths"), default="backprop",
                        help="derive the NTK by backprop in the program or by path sums "
                             "(default: backprop)")
    kernel.add_argument("--nngp-out", metavar="K.npy", help="save the NNGP kernel here")
    kernel.add_argument("--ntk-out", metavar="T.npy", help="save the NTK here")

    val = command("validate", cmd_validate,
                  "run the program at finite widths and check convergence to the limit")
    val.add_argument("--widths", type=_widths, default=list(DEFAULT_WIDTHS), metavar="N1,N2,...",
                     help=f"widths to sweep (default: {','.join(map(str, DEFAULT_WIDTHS))})")
    val.add_argument("--seeds", type=_positive, default=DEFAULT_SEEDS, metavar="S",
                     help=f"random initialisations per width (default: {DEFAULT_SEEDS})")
    val.add_argument("--backend", choices=("auto", "numpy", "cupy"), default="auto",
                     help="array backend (default: auto, CuPy when a GPU is present)")
    val.add_argument("--plot", metavar="out.png", help="save the convergence plot here")
    val.add_argument("--markdown", metavar="out.md", help="save the markdown report here")

    ren = command("render", cmd_render, "draw the program in the TP IIb graphical notation")
    ren.add_argument("-o", "--output", metavar="out.png|out.svg",
                     help="output file (.png, .svg or .pdf; default: PROGRAM's name + .png)")
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"tensorprog: warning: {message}", file=sys.stderr)


def main(argv=None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning
            return args.run(args)
    except TensorProgError as e:
        if args.traceback:
            raise
        message = " ".join(str(e).splitlines())
        print(f"tensorprog: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tensorprog: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
