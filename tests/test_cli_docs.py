"""Every command of README.md and docs/cli.md runs as documented.

The console blocks of docs/cli.md are replayed in a scratch directory (with ``programs/`` and
the files the text defines: ``relu2.tp``, ``broken.py``, ``typo.tp``): each ``$ tensorprog …``
line is run through :func:`tensorprog.cli.main` and its printed output compared with the lines
that follow it in the block (all of them, or the last ones shown); an error line must match
exactly unless it quotes the machine (free memory) or the parser's wording.  The README's
Python blocks run in order in one namespace, and its ``tensorprog`` lines as commands.
"""
import re
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tensorprog import cli
from tensorprog.backends.arrays import cupy_available

ROOT = Path(__file__).resolve().parents[1]
CLI_DOC = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")

BROKEN_PY = """\
import tensorprog as tp
def build(X):
    p = tp.Program("broken")
    h = p.embed(X, var=1.0)
    x = tp.relu(h)
    return x @ x
"""
#: Error lines that depend on the machine or on wording owned elsewhere: fragments to find.
LOOSE = {
    "typo.tp": ["(line 7)", "h9"],
    "--seeds 100000000": ["simulating 'mlp' at width n=64 with 100000000 seeds"],
}


def blocks(markdown: str, kinds=("console",)) -> list[list[str]]:
    """The lines of every fenced block whose language is in ``kinds``."""
    out = []
    for kind, body in re.findall(r"```(\w*)\n(.*?)```", markdown, flags=re.S):
        if kind in kinds:
            out.append(body.rstrip("\n").splitlines())
    return out


def console_commands(markdown: str) -> list[tuple[str, list[str]]]:
    """``[(command, expected output lines)]`` of the ``$ `` lines of the console blocks."""
    out = []
    for lines in blocks(markdown):
        for line in lines:
            if line.startswith("$ "):
                out.append((line[2:], []))
            elif out:
                out[-1][1].append(line)
    return out


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    (tmp_path / "programs").symlink_to(ROOT / "programs")
    relu2 = next(b for b in blocks(CLI_DOC, kinds=("",)) if b[1:2] == ["PROGRAM relu2 inputs=3"])
    (tmp_path / "relu2.tp").write_text("\n".join(relu2) + "\n")
    lines = (tmp_path / "relu2.tp").read_text().splitlines()
    assert lines[6] == "NONLIN: x2 := relu(h2)"
    lines[6] = "NONLIN: x2 := relu(h9)"
    (tmp_path / "typo.tp").write_text("\n".join(lines) + "\n")
    (tmp_path / "broken.py").write_text(BROKEN_PY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TENSORPROG_PROGRESS", "0")
    return tmp_path


def run_command(capsys, command: str):
    """``(status, stdout lines, stderr lines)`` of a documented command."""
    tail = None
    m = re.search(r"\|\s*tail -(\d+)\s*$", command)
    if m:
        tail, command = int(m.group(1)), command[:m.start()]
    if not command.startswith("tensorprog "):
        done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=120)
        return done.returncode, done.stdout.splitlines(), done.stderr.splitlines()
    status = cli.main(shlex.split(command)[1:])
    out, err = capsys.readouterr()
    out = out.rstrip("\n").splitlines()
    return status, out[-tail:] if tail else out, err.strip().splitlines()


def check(command, expected, status, out, err):
    if expected and expected[0].startswith("tensorprog: error: "):
        assert status == 2 and len(err) == 1, (command, err)
        loose = [v for k, v in LOOSE.items() if k in command]
        if loose:
            assert all(f in err[0] for f in loose[0]), (command, err)
        else:
            assert err[0] == expected[0], command
        return
    assert status == 0, (command, err)
    if command.startswith("tensorprog validate"):
        assert "**Overall: PASSED**" in out, command
    elif expected and not command.startswith(("python", "printf")):
        assert [l.rstrip() for l in out[-len(expected):]] == [l.rstrip() for l in expected], \
            command


FAST = [(c, e) for c, e in console_commands(CLI_DOC)
        if not re.match(r"tensorprog validate programs/mlp\.py( --markdown report\.md)?$", c)]
SLOW = [(c, e) for c, e in console_commands(CLI_DOC) if (c, e) not in FAST]


def test_cli_doc_examples(capsys, workspace):
    assert len(FAST) >= 15
    for command, expected in FAST:
        if "--backend cupy" in command and cupy_available():
            continue
        check(command, expected, *run_command(capsys, command))


@pytest.mark.slow
def test_cli_doc_default_validation(capsys, workspace):
    """`tensorprog validate programs/mlp.py` with its default sweep passes (≈ 20 s)."""
    for command, expected in SLOW:
        check(command, expected, *run_command(capsys, command))
    assert (workspace / "report.md").read_text().startswith("## Finite-width validation")


@pytest.mark.slow
def test_readme_python_blocks(workspace):
    namespace: dict = {}
    for lines in blocks(README, kinds=("python",)):
        code = "\n".join(lines)
        exec(compile(code, "README.md", "exec"), namespace)
        if "tp.simulate(" in code:   # the finite-width section
            assert namespace["report"].passed
            assert (workspace / "mlp.png").stat().st_size > 0
            assert np.all(namespace["sim"].ntk.shape == (6, 6))
        if "tp.train(" in code:      # the training section
            assert namespace["run"].mean.shape == (3, 2)
            assert namespace["report"].passed


@pytest.mark.slow
def test_readme_commands(capsys, workspace):
    np.save(workspace / "X.npy", np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]))
    commands = [line.split("#", 1)[0].strip() for lines in blocks(README, kinds=("bash",))
                for line in lines if line.startswith("tensorprog ")]
    assert len(commands) == 4
    for command in commands:
        status, out, err = run_command(capsys, command)
        assert status == 0, (command, err)
    assert (workspace / "K.npy").exists() and (workspace / "mlp.png").exists()
