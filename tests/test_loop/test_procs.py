"""``edgestream up``'s supervised processes: real subprocesses that exit and come back."""

from __future__ import annotations

import time
from pathlib import Path

import edgestream.loop.procs as procs
from edgestream.core.metrics import read_port
from edgestream.loop.procs import Managed
from tests.support.doctests import run_doctests


def test_doctests() -> None:
    run_doctests(procs)


def _check_until(m: Managed, restarts: int, timeout: float) -> list[float]:
    """Call ``check`` (as the loop does, every 0.1 s) until ``restarts`` restarts; the times
    of the restarts."""
    at: list[float] = []
    deadline = time.monotonic() + timeout
    while m.restarts < restarts and time.monotonic() < deadline:
        before = m.restarts
        m.check()
        if m.restarts > before:
            at.append(time.monotonic())
        time.sleep(0.1)
    return at


def test_managed_process_restarts_and_stops(tmp_path: Path) -> None:
    m = Managed("x", [], tmp_path / "x.log", tmp_path / "d", "edge", module="platform").start()
    assert m.proc is not None and m.proc.wait(120) == 0 and "Linux" in m.log.read_text()
    assert m.restart_note is None
    assert _check_until(m, 1, 60) and m.restarts == 1 and m.last_exit == 0  # restarted
    assert m.restart_note is not None and m.restart_note.startswith("x exited 1 time(s)")
    assert m.last_words and m.last_words in m.log.read_text()  # platform's last line
    m.stop()
    assert not m.alive and read_port(tmp_path / "d", "edge") is None


def test_a_process_that_keeps_exiting_is_restarted_with_backoff(tmp_path: Path) -> None:
    """1 s, 2 s, 4 s between an exit and the restart (not a hot loop), each restart noted in
    its log with the exit code."""
    m = Managed("crashy", [], tmp_path / "c.log", tmp_path / "d", "edge", module="platform")
    m.start()
    at = _check_until(m, 3, 90)
    assert len(at) == 3, m.log.read_text()[-2000:]
    assert at[1] - at[0] >= 2.0 and at[2] - at[1] >= 4.0, at  # an exit takes < 1 s, the wait more
    notes = [line for line in m.log.read_text().splitlines() if "supervisor:" in line]
    assert [n.split("supervisor: ", 1)[1] for n in notes] == [
        "crashy exited with code 0; restart 1 in 1 s",
        "crashy exited with code 0; restart 2 in 2 s",
        "crashy exited with code 0; restart 3 in 4 s",
    ]
    m.stop()
