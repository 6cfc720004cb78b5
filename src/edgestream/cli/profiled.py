"""Run an ``edgestream`` command under cProfile in every thread (the edge bench's
``--profile``; see :mod:`edgestream.bench.profiling`)::

    python -m edgestream.cli.profiled OUT.prof edge run TOPOLOGY --gateway ID ...
"""

from __future__ import annotations

import sys
from pathlib import Path

from edgestream.bench.profiling import run_profiled
from edgestream.cli.main import main as cli

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    """``OUT.prof`` then the command's arguments."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        sys.exit("usage: python -m edgestream.cli.profiled OUT.prof EDGESTREAM-ARGS...")
    run_profiled(Path(args[0]), lambda: cli(args[1:]))


if __name__ == "__main__":
    main()
