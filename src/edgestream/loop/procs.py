"""The processes ``edgestream up`` supervises: each an ``edgestream ...`` subprocess with its
own log and metrics port file, restarted with backoff when it exits (1 s doubling to 30 s;
each restart noted in its log and counted in its ``edgestream_restarts_total``), stopped with
SIGTERM (SIGKILL after a grace period). Children die with the loop even when it is killed
(``PR_SET_PDEATHSIG``).

>>> p = Managed("gw-1 worker", ["edge", "run", "t.yaml"], Path("/tmp/x.log"), Path("/tmp/gw-1"),
...             "edge")
>>> p.argv[1:4], p.alive, p.metrics_url is None
(['-m', 'edgestream.cli.main', 'edge'], False, True)
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgestream.core.commands import python_argv
from edgestream.core.metrics import METRICS_DIR_ENV, METRICS_PORT_ENV, read_port
from edgestream.core.procs import Child, Restarts

__all__ = ["Managed"]


@dataclass
class Managed:
    """One supervised ``edgestream`` subprocess (``args`` after ``edgestream``)."""

    name: str
    args: list[str]
    log: Path
    data_dir: Path  # where it writes ``<process>.metrics-port``
    process: str  # its metrics process name (``edge``, ``forward``, ``cloud``, ``retrain``)
    env: dict[str, str] = field(default_factory=dict)
    module: str | None = None  # what ``python -m`` runs (None: as core.commands.python_argv)
    last_words: str = ""  # the last log line before its latest exit
    child: Child | None = None
    started_at: float = 0.0
    restart: Restarts = field(default_factory=Restarts)

    @property
    def restarts(self) -> int:
        return self.restart.count

    @property
    def last_exit(self) -> int | None:
        return self.restart.last_exit

    @property
    def argv(self) -> list[str]:
        return python_argv(self.args, self.module)

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return None if self.child is None else self.child.proc

    @property
    def alive(self) -> bool:
        return self.child is not None and self.child.alive()

    @property
    def pid(self) -> int | None:
        return None if self.child is None else self.child.pid

    @property
    def metrics_port(self) -> int | None:
        return read_port(self.data_dir, self.process) if self.proc is not None else None

    @property
    def metrics_url(self) -> str | None:
        port = self.metrics_port
        return None if port is None else f"http://127.0.0.1:{port}/metrics"

    def start(self) -> Managed:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):  # a stale port of an earlier run
            (self.data_dir / f"{self.process}.metrics-port").unlink()
        env = {**os.environ, **self.env, METRICS_PORT_ENV: "0", METRICS_DIR_ENV: str(self.data_dir)}
        env.update(self.restart.env(self.name))
        self.child = Child(self.argv, self.log, env, die_with_parent=True).start()
        self.started_at = time.monotonic()
        return self

    def check(self) -> bool:
        """True while it runs; an exited process is restarted once its backoff delay has
        passed (its state is crash-safe)."""
        if self.child is None or self.proc is None or self.alive:
            return self.proc is not None
        now = time.monotonic()
        if self.restart.due_at is None:  # it has just exited
            self.last_words = _last_line(self.child.tail(4000))
            delay = self.restart.exited(self.proc.returncode, now - self.started_at, now)
            self.child.note(
                f"{self.name} exited with code {self.last_exit}; restart "
                f"{self.restarts + 1} in {delay:g} s"
            )
        if self.restart.due(now):
            self.restart.restarted()
            self.start()
        return False

    @property
    def restart_note(self) -> str | None:
        """``None``, or why it was restarted (for the run summary)."""
        if not self.restarts:
            return None
        note = f"{self.name} exited {self.restarts} time(s), last with code {self.last_exit}"
        return f"{note}: {self.last_words}" if self.last_words else note

    def terminate(self) -> None:
        """Ask it to stop (SIGTERM); :meth:`stop` waits."""
        if self.child is not None:
            self.child.terminate()

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL."""
        if self.child is not None:
            self.child.stop(grace)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""
