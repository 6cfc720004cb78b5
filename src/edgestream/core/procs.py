"""One subprocess handle for everything that runs a project process as a child: the loop
(``edgestream up``), the benchmarks and the integration tests. A child logs stdout and
stderr to one file, stops with SIGTERM (SIGKILL after a grace period) or is killed with
SIGKILL, and can be made to die with its parent (``PR_SET_PDEATHSIG``, Linux).

>>> import sys, tempfile
>>> log = Path(tempfile.mkdtemp()) / "child.log"
>>> child = Child([sys.executable, "-c", "print('hello')"], log).start()
>>> child.wait(30), child.log_text().strip(), child.alive()
(0, 'hello', False)
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path

__all__ = ["Child"]

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec (Linux)
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Child:
    """``argv`` as a subprocess logging to ``log`` (appended), started by :meth:`start`.

    ``env`` replaces the environment when given; ``die_with_parent`` sends the child SIGTERM
    when the process that started it dies, even by SIGKILL."""

    def __init__(
        self,
        argv: list[str],
        log: Path,
        env: dict[str, str] | None = None,
        die_with_parent: bool = False,
    ) -> None:
        self.argv, self.log, self.env = argv, log, env
        self.die_with_parent = die_with_parent and sys.platform == "linux"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self):  # -> the same object (subclasses keep their type)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                preexec_fn=_die_with_parent if self.die_with_parent else None,
            )
        return self

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout: float | None = None) -> int:
        """Its exit code (raises ``subprocess.TimeoutExpired`` after ``timeout`` s)."""
        assert self.proc is not None, "not started"
        return self.proc.wait(timeout)

    def terminate(self) -> None:
        """Ask it to stop (SIGTERM) without waiting."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """kill -9, and wait until it is gone."""
        assert self.proc is not None, "not started"
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, grace: float = 30.0) -> int | None:
        """SIGTERM, wait up to ``grace`` s, then SIGKILL; the exit code (None: never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait(10)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, chars: int = 2000) -> str:
        """The end of its log (for error messages)."""
        return self.log_text()[-chars:]
