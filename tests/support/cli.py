"""Running the ``edgestream`` command line in the test's own process."""

from __future__ import annotations

import pytest

from edgestream.cli.main import main


def run_cli(*argv: str) -> None:
    """``edgestream ARGV`` in this process (typer ends with SystemExit(0) on success)."""
    try:
        main(list(argv))
    except SystemExit as stop:
        assert not stop.code, f"exit code {stop.code}"


def cli_output(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    """Run ``edgestream ARGV`` in this process: (exit code, stdout lines, stderr)."""
    capsys.readouterr()
    try:
        main(list(argv))
        code = 0
    except SystemExit as stop:
        code = int(stop.code or 0)
    out, err = capsys.readouterr()
    return code, out.splitlines(), err
