"""What the study scripts share: the command line, the output folders and a timed log.

Every study writes into ``docs/`` (pictures into ``docs/img``, per-architecture pages into
``docs/architectures``), or into a temporary folder with ``--quick`` (a small smoke run).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the studies import tensorprog, programs and tests from here
    sys.path.insert(0, str(ROOT))


def study_arguments(doc: str, extra=None) -> argparse.Namespace:
    """``--quick`` and ``--out`` (plus ``extra(parser)``'s own), described by ``doc``."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small smoke run into a temp dir")
    ap.add_argument("--out", default=None, help="output directory (default: docs/)")
    if extra is not None:
        extra(ap)
    return ap.parse_args()


def output_dirs(args) -> tuple[Path, Path]:
    """``(out, out/img)``, created, with ``out/architectures`` too."""
    out = Path(args.out) if args.out else (
        Path(tempfile.mkdtemp()) if args.quick else ROOT / "docs")
    img = out / "img"
    img.mkdir(parents=True, exist_ok=True)
    (out / "architectures").mkdir(parents=True, exist_ok=True)
    return out, img


class Log:
    """Messages stamped with the seconds since the study started."""

    def __init__(self):
        self.start = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def __call__(self, msg: str) -> None:
        print(f"[{self.elapsed:6.1f}s] {msg}", flush=True)
