"""``python -m tensorprog``: the command line of :mod:`tensorprog.cli`."""
from .cli import main

raise SystemExit(main())
