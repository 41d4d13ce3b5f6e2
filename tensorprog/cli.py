"""The ``tensorprog`` command line.

    tensorprog show     PROGRAM [--inputs X] [--param k=v ...] [--data] [--symbolic] [--latex]
    tensorprog kernel   PROGRAM [--inputs X] [--ntk-method backprop|paths] [--shares]
                                [--nngp-out K.npy] [--ntk-out T.npy] [--json out.json|-]
    tensorprog validate PROGRAM [--inputs X] [--widths 64,128,...] [--seeds S] [--seed K]
                                [--dtype float64|float32] [--backend auto|numpy|cupy]
                                [--plot out.png] [--markdown out.md] [--json out.json|-]
    tensorprog render   PROGRAM [-o out.png|out.svg]

PROGRAM is either a Python file exposing ``build(X, **hyperparameters) -> Program`` (like
``programs/mlp.py``; hyperparameters with ``--param key=value``) or a file holding a program in
the textual form (its first line reads ``PROGRAM <name> inputs=<N>``).  Inputs ``X`` come from a
``.npy`` (any shape), ``.npz`` (named arrays) or ``.csv`` (2-D) file (:func:`load_inputs`); a
Python program run without ``--inputs`` gets :func:`default_inputs` of the shape its module
names in ``DEFAULT_INPUT_SHAPE`` (4 unit-norm inputs in R^8 otherwise).

Exit status: 0 on success, 1 when ``validate``'s checks fail, 2 on any error (a tensorprog
error, a bad program or inputs file, a bad option, and any other exception: out of memory, a
closed output pipe, ...), reported as one line on stderr.  ``--traceback`` shows the full
traceback instead.
"""
from __future__ import annotations

import argparse
import ast
import importlib.util
import inspect
import json
import os
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
DEFAULT_INPUT_SHAPE = (4, 8)


def default_inputs(shape=DEFAULT_INPUT_SHAPE) -> np.ndarray:
    """The inputs used when a Python program is given no ``--inputs``:
    ``np.random.default_rng(0).standard_normal(shape)`` with every feature vector (last axis)
    scaled to unit norm — by default 4 inputs in R^8.

    Parameters
    ----------
    shape : tuple of ints
        A program module may name its own in ``DEFAULT_INPUT_SHAPE`` (e.g. (N, T, d) token
        sequences for ``programs/attention.py``).

    Returns
    -------
    numpy.ndarray
    """
    X = np.random.default_rng(0).standard_normal(tuple(shape))
    return X / np.linalg.norm(X, axis=-1, keepdims=True)


_NPY_MAGIC = b"\x93NUMPY"


def load_inputs(path: str):
    """The inputs in ``path``: an array from a ``.npy`` file (any shape) or a ``.csv`` file
    (comma-separated numbers, one input per row), or ``{name: array}`` from a ``.npz`` file.

    Parameters
    ----------
    path : str

    Returns
    -------
    numpy.ndarray or dict of numpy.ndarray
        Real, finite float64 arrays.

    Raises
    ------
    UsageError
        A missing, unreadable, corrupt or pickled file, or data that are empty, complex,
        non-numeric or not finite.  A file is read as data only (never unpickled).
    """
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"no such inputs file: {path}")
    suffix = file.suffix.lower()
    if suffix == ".csv":
        return _check_data(_load_csv(file), path)
    try:
        with open(file, "rb") as fh:
            head = fh.read(6)
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from None
    if suffix == ".npz" or head.startswith(b"PK"):
        return _load_npz(file)
    if head != _NPY_MAGIC:
        kind = "text (comma-separated values? name the file .csv)" if _is_text(file) else \
            "no NumPy header"
        raise UsageError(f"{path} is not a .npy file ({kind}); inputs are .npy arrays "
                         "(numpy.save), .npz archives (numpy.savez) or .csv files")
    return _check_data(_read_numpy(file, ".npy"), path)


def _is_text(file: Path) -> bool:
    """Whether ``file`` starts with printable UTF-8 text."""
    try:
        head = file.read_bytes()[:4096]
        head.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return bool(head) and all(b >= 32 or b in (9, 10, 13) for b in head)


def _read_numpy(file: Path, kind: str):
    """The array of a ``.npy`` file or the ``{name: array}`` of a ``.npz`` archive (``kind``),
    never unpickled."""
    try:
        if kind == ".npz":
            with np.load(file, allow_pickle=False) as archive:
                return {name: archive[name] for name in archive.files}
        return np.load(file, allow_pickle=False)
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise UsageError(f"{file} holds Python objects, not numbers; tensorprog does not "
                             "unpickle files (that could run code): save numeric arrays with "
                             "numpy.save or numpy.savez") from None
        raise UsageError(f"{file} is a corrupt or truncated {kind} file ({e})") from None
    except Exception as e:  # OSError, EOFError, zipfile.BadZipFile
        raise UsageError(f"{file} is a corrupt or truncated {kind} file "
                         f"({type(e).__name__}: {e})") from None


def _load_npz(file: Path) -> dict:
    arrays = _read_numpy(file, ".npz")
    if not arrays:
        raise UsageError(f"{file} holds no arrays")
    return {name: _check_data(X, f"{file}[{name}]") for name, X in arrays.items()}


def _load_csv(file: Path) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an empty file: refused below as empty
            X = np.loadtxt(file, delimiter=",", ndmin=2, dtype=float, comments="#")
    except (ValueError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {file} as comma-separated numbers, one input per row: "
                         f"{e}") from None
    except OSError as e:
        raise UsageError(f"cannot read {file}: {e.strerror or e}") from None
    return X


def _check_data(X: np.ndarray, where: str) -> np.ndarray:
    """``X`` as float64 when it is a non-empty, real, finite numeric array."""
    X = np.asarray(X)
    if np.iscomplexobj(X):
        raise UsageError(f"inputs in {where} are complex ({X.dtype}); tensorprog takes real "
                         "inputs (split real and imaginary parts into features)")
    if X.dtype == bool or not np.issubdtype(X.dtype, np.number):
        raise UsageError(f"inputs in {where} must be numbers, got dtype {X.dtype}")
    if X.ndim == 0 or X.size == 0:
        raise UsageError(f"inputs in {where} must be a non-empty array, got shape {X.shape}")
    X = X.astype(float)
    bad = ~np.isfinite(X)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise UsageError(f"inputs in {where} hold {int(bad.sum())} non-finite value(s) "
                         f"(NaN or inf), the first at index {first}")
    return X


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


def load_program(path: str, inputs=None, params: dict | None = None):
    """The program in ``path``: a Python file's ``build(X, **params)`` or the textual form.

    Parameters
    ----------
    path : str
    inputs : numpy.ndarray, dict of arrays, or None
        For a Python file: ``X`` (default :func:`default_inputs` of the module's
        ``DEFAULT_INPUT_SHAPE``), or ``{"X": X, other: array}`` whose other arrays are passed
        to ``build`` as keyword arguments.  For the textual form: the data of its INPUT lines
        (see :func:`_parse_text`), default its DATA lines.
    params : dict
        Hyperparameters of ``build``.

    Returns
    -------
    Program

    Raises
    ------
    UsageError, ProgramError
    """
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"no such program file: {path}")
    if file.suffix == ".py":
        return _build_python(file, inputs, dict(params or {}))
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


def _step_data(names: list[str], inputs, path) -> dict:
    """``{INPUT data name: (N, d) array}`` from ``--inputs``: an .npz with one array per name, a
    2-D array for a program with one INPUT, or an (N, K, d) array for K INPUTs (one per step,
    in the program's order)."""
    listed = ", ".join(names)
    if isinstance(inputs, dict):
        missing = [n for n in names if n not in inputs]
        extra = sorted(set(inputs) - set(names))
        if len(inputs) == 1 and len(names) == 1:
            data = {names[0]: next(iter(inputs.values()))}
        elif missing or extra:
            raise UsageError(f"{path} reads the inputs {listed}; the .npz archive "
                             f"{'lacks ' + ', '.join(missing) if missing else ''}"
                             f"{' and ' if missing and extra else ''}"
                             f"{'has unused ' + ', '.join(extra) if extra else ''}")
        else:
            data = {n: inputs[n] for n in names}
    elif len(names) == 1:
        data = {names[0]: inputs}
    elif inputs.ndim == 3 and inputs.shape[1] == len(names):
        data = {n: inputs[:, t, :] for t, n in enumerate(names)}
    else:
        raise UsageError(f"{path} has {len(names)} INPUT lines ({listed}, e.g. one per time "
                         f"step) but --inputs holds one array of shape {inputs.shape}: give an "
                         f"(N, {len(names)}, d) array (step t → the t-th INPUT) or an .npz "
                         f"with the arrays {listed}")
    for n, X in data.items():
        if X.ndim != 2:
            raise UsageError(f"the INPUT data {n} of a textual program is an (N, d) array, got "
                             f"shape {X.shape}")
    counts = {X.shape[0] for X in data.values()}
    if len(counts) > 1:
        raise UsageError(f"the arrays for {listed} hold different numbers of inputs "
                         f"({sorted(counts)}); every INPUT sees the same N inputs")
    return data


def _parse_text(text: str, inputs, path):
    """Parse the textual form, ``inputs`` replacing the data of its INPUT lines."""
    names = list(dict.fromkeys(_INPUT_DATA.findall(text)))
    if inputs is None:
        missing = sorted(set(names) - set(_DATA_LINE.findall(text)))
        if missing:
            raise UsageError(f"{path} has no DATA line for its input {missing[0]}: "
                             "pass the inputs with --inputs X.npy")
        return _from_text(text, None, path)
    if not names:
        raise UsageError(f"{path} has no INPUT line, so --inputs does not apply")
    data = _step_data(names, inputs, path)
    # Comment out the file's own DATA for those inputs (so line numbers in error messages
    # stay right) and update the header's input count.
    N = next(iter(data.values())).shape[0]
    text = _HEADER_INPUTS.sub(rf"\g<1>{N}", text, count=1)
    lines = []
    for line in text.splitlines():
        m = _DATA_LINE.match(line)
        lines.append(f"# DATA {m.group(1)} replaced by --inputs"
                     if m and m.group(1) in names else line)
    return _from_text("\n".join(lines), data, path)


def _from_text(text: str, data, path):
    """``Program.from_text``, its non-tensorprog exceptions (e.g. complex DATA) as a
    UsageError naming the file."""
    from .ir.builder import BuilderProgram

    try:
        return BuilderProgram.from_text(text, data=data)
    except TensorProgError:
        raise
    except (TypeError, ValueError, ArithmeticError, SyntaxError) as e:
        raise UsageError(f"cannot read the program in {path} ({type(e).__name__}: {e}); DATA "
                         "lines hold lists of real numbers and instructions the documented "
                         "forms (docs/compiler.md)") from None


def _load_module(file: Path):
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
    return module


def _build_python(file: Path, inputs, params: dict):
    from .ir.program import Program

    module = _load_module(file)
    build = getattr(module, "build", None)
    if not callable(build):
        raise UsageError(f"{file} defines no function build(X, **hyperparameters)")
    if inputs is None:
        X = default_inputs(getattr(module, "DEFAULT_INPUT_SHAPE", DEFAULT_INPUT_SHAPE))
    elif isinstance(inputs, dict):
        arrays = dict(inputs)
        if "X" in arrays:
            X = arrays.pop("X")
        elif len(arrays) == 1:
            X = arrays.popitem()[1]
        else:
            raise UsageError(f"an .npz for {file} names its inputs X (the other arrays go to "
                             f"build as keyword arguments); it holds {sorted(arrays)}")
        clash = sorted(set(arrays) & set(params))
        if clash:
            raise UsageError(f"{clash[0]} is given both in the .npz and by --param")
        params = {**params, **arrays}
    else:
        X = inputs
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
    from .limit.printing import limit_to_latex

    p = _program(args)
    lim = tp.limit(p, symbolic=args.symbolic)
    limit_text = limit_to_latex(lim) if args.latex else str(lim)
    if args.data:
        # the whole output parses back: the limit follows as comment lines
        print(p.to_text())
        print("\n".join("# " + line for line in limit_text.splitlines()))
    else:
        print(p)
        print(limit_text)
    return 0


def _check_output(*paths) -> None:
    """Fail before any long computation when an output file cannot be created."""
    for path in paths:
        if path and path != "-" and not Path(path).resolve().parent.is_dir():
            raise UsageError(f"cannot write {path}: no such directory "
                             f"{str(Path(path).parent)!r}")


def _require_matplotlib(what: str) -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError(f"{what} needs matplotlib: pip install matplotlib") from None


def _save(path: str, array: np.ndarray) -> None:
    """``numpy.save`` to exactly ``path`` (``numpy.save`` given a name would add ``.npy``)."""
    try:
        with open(path, "wb") as fh:
            np.save(fh, array)
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror or e}") from None


def _write_text(path: str, text: str) -> None:
    """``text`` to the file ``path``, or to stdout when ``path`` is ``-``."""
    if path == "-":
        sys.stdout.write(text)
        return
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror or e}") from None


def _json(obj) -> str:
    return json.dumps(obj, indent=1, allow_nan=False) + "\n"


def cmd_kernel(args) -> int:
    """Compute the NNGP kernel and the NTK on the inputs; print them, save them as .npy."""
    import tensorprog as tp
    from .kernels.paths import by_parameter

    _check_output(args.nngp_out, args.ntk_out, args.json)
    p = _program(args)
    K = tp.nngp(p)
    T = tp.ntk(p, method=args.ntk_method)
    shares = {}
    if args.json or args.shares:
        _, parts = tp.ntk(p, method=args.ntk_method, contributions=True)
        shares = by_parameter(parts) if args.ntk_method == "paths" else parts
    if args.json:
        _write_text(args.json, _json({
            "program": p.name, "inputs": int(K.shape[0]), "ntk_method": args.ntk_method,
            "nngp": K.tolist(), "ntk": T.tolist(),
            "ntk_shares": {str(k): np.asarray(v, dtype=float).tolist()
                           for k, v in shares.items()}}))
    if args.json != "-":
        with np.printoptions(precision=6, suppress=True, linewidth=100):
            print(f"NNGP kernel K ({K.shape[0]}×{K.shape[1]}):")
            print(K)
            print(f"NTK Θ ({args.ntk_method}):")
            print(T)
            if args.shares:
                for param, share in shares.items():
                    print(f"NTK share of {param}:")
                    print(np.asarray(share, dtype=float))
    for path, array in ((args.nngp_out, K), (args.ntk_out, T)):
        if path:
            _save(path, array)
            print(f"wrote {path}", file=sys.stderr if args.json == "-" else sys.stdout)
    if args.json and args.json != "-":
        print(f"wrote {args.json}")
    return 0


def cmd_validate(args) -> int:
    """Run the program at finite widths and compare with its limit (exit 1 when it fails)."""
    import tensorprog as tp

    _check_output(args.plot, args.markdown, args.json)
    if args.plot:
        _require_matplotlib("--plot")
    p = _program(args)
    widths = list(args.widths)
    options = {}
    if args.dtype is not None:
        options["dtype"] = np.dtype(args.dtype).type
    if args.seed is not None:
        options["seed"] = args.seed
    bar = ProgressBar(label=f"validating ({args.seeds} seeds per width)")
    try:
        report = tp.validate(p, widths=widths, seeds=args.seeds, backend=args.backend,
                             progress=bar, **options)
    finally:
        bar.close()
    markdown = report.to_markdown()
    if args.json:
        _write_text(args.json, _json(report.to_dict()))
    if args.json != "-":
        print(markdown)
    if args.markdown:
        _write_text(args.markdown, markdown + "\n")
    if args.plot:
        try:
            report.plot(args.plot)
        except OSError as e:
            raise UsageError(f"cannot write {args.plot}: {e.strerror or e}") from None
        print(f"wrote {args.plot}", file=sys.stderr if args.json == "-" else sys.stdout)
    return 0 if report.passed else 1


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


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer ≥ 0, got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors as one line on stderr (exit status 2)."""

    def error(self, message):
        self.exit(2, f"tensorprog: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(
        prog="tensorprog",
        description="Infinite-width limits (Z variables, NNGP, NTK) of Tensor Programs, "
                    "checked at finite width.")
    parser.add_argument("--version", action="version", version=f"tensorprog {__version__}")
    parser.add_argument("--traceback", action="store_true",
                        help="on an error, show the full traceback instead of one line")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)

    program = argparse.ArgumentParser(add_help=False)
    program.add_argument("program", metavar="PROGRAM",
                         help="a Python file with build(X, **hyperparameters) (e.g. "
                              "programs/mlp.py) or a program in the textual form (.tp/.txt)")
    program.add_argument("--param", action="append", metavar="KEY=VALUE", default=[],
                         help="hyperparameter for build(), a Python literal (repeatable): "
                              "--param depth=3 --param activation=erf")
    program.add_argument("--inputs", metavar="X.npy",
                         help="inputs: a .npy array of any shape (N, d), (N, T, d), ...; a "
                              ".npz archive of named arrays (X for a Python program, the others "
                              "passed to build; for a textual program one per INPUT line, e.g. "
                              "X1, X2, ... per time step); or a .csv file, one input per row. "
                              "Default for a Python program: 4 unit-norm inputs in R^8 "
                              "(standard normal, seed 0) or the module's DEFAULT_INPUT_SHAPE; "
                              "for a textual program, its DATA lines")

    def command(name, func, help):
        p = sub.add_parser(name, parents=[program], help=help, description=func.__doc__)
        p.set_defaults(run=func)
        return p

    show = command("show", cmd_show, "print the program and its Z-limits")
    show.add_argument("--data", action="store_true",
                      help="print the full textual form with its DATA lines, the limit as "
                           "comments (the output parses back)")
    show.add_argument("--symbolic", action="store_true",
                      help="limits as closed forms in the input Gram entries where they exist")
    show.add_argument("--latex", action="store_true",
                      help="print the limit as a LaTeX align* environment")

    kernel = command("kernel", cmd_kernel, "compute the NNGP kernel and the NTK on inputs")
    kernel.add_argument("--ntk-method", choices=("backprop", "paths"), default="backprop",
                        help="derive the NTK by backprop in the program or by path sums "
                             "(default: backprop)")
    kernel.add_argument("--shares", action="store_true",
                        help="also print each trained parameter's share of the NTK")
    kernel.add_argument("--nngp-out", metavar="K.npy", help="save the NNGP kernel here (.npy)")
    kernel.add_argument("--ntk-out", metavar="T.npy", help="save the NTK here (.npy)")
    kernel.add_argument("--json", metavar="out.json",
                        help="write the kernels and the NTK shares as JSON ('-': to stdout, "
                             "instead of the text)")

    val = command("validate", cmd_validate,
                  "run the program at finite widths and check convergence to the limit")
    val.add_argument("--widths", type=_widths, default=list(DEFAULT_WIDTHS), metavar="N1,N2,...",
                     help=f"widths to sweep, at least 3 spanning a factor ≥ 4 (default: "
                          f"{','.join(map(str, DEFAULT_WIDTHS))})")
    val.add_argument("--seeds", type=_positive, default=DEFAULT_SEEDS, metavar="S",
                     help=f"random initialisations per width, at least 10 (default: "
                          f"{DEFAULT_SEEDS})")
    val.add_argument("--seed", type=_seed, default=None, metavar="K",
                     help="base random seed of the sweep (default: 0)")
    val.add_argument("--dtype", choices=("float64", "float32"), default=None,
                     help="floating-point type of the simulation (default: float64)")
    val.add_argument("--backend", choices=("auto", "numpy", "cupy"), default="auto",
                     help="array backend (default: auto, CuPy when a GPU is present)")
    val.add_argument("--plot", metavar="out.png", help="save the convergence plot here")
    val.add_argument("--markdown", metavar="out.md", help="save the markdown report here")
    val.add_argument("--json", metavar="out.json",
                     help="write the report as JSON ('-': to stdout, instead of the markdown)")

    ren = command("render", cmd_render, "draw the program in the TP IIb graphical notation")
    ren.add_argument("-o", "--output", metavar="out.png|out.svg",
                     help="output file (.png, .svg or .pdf; default: PROGRAM's name + .png)")
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    text = " ".join(str(message).splitlines())
    print(f"tensorprog: warning: {text}", file=sys.stderr)


def error_message(error: BaseException) -> str:
    """The one line the command line prints for ``error``: a tensorprog error as it is, other
    exceptions (out of memory, recursion, a bug) with what to do."""
    if isinstance(error, TensorProgError):
        text = str(error)
    elif isinstance(error, MemoryError):
        text = ("out of memory (MemoryError): use fewer inputs, a smaller width or fewer seeds, "
                "or a machine with more memory")
    elif isinstance(error, RecursionError):
        text = ("the program is nested too deeply for Python's recursion limit "
                f"(RecursionError: {error}); please report it with the program")
    elif isinstance(error, BrokenPipeError):
        text = "the output was closed before everything was written (broken pipe)"
    else:
        text = (f"unexpected {type(error).__name__}: {error} (a bug in tensorprog: please "
                "report it; --traceback shows where it happened)")
    return " ".join(text.split())


def main(argv=None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning
            status = args.run(args)
            sys.stdout.flush()  # a closed pipe shows here, inside the handler
            return status
    except KeyboardInterrupt:
        print("tensorprog: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # every error: one line, exit status 2
        if isinstance(e, BrokenPipeError):
            _detach_stdout()
        if args.traceback:
            raise
        print(f"tensorprog: error: {error_message(e)}", file=sys.stderr)
        return 2


def _detach_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush of a closed pipe does not
    print a second error."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout without a file descriptor
        pass


if __name__ == "__main__":
    raise SystemExit(main())
