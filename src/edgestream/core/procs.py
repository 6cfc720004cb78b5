"""One subprocess handle for everything that runs a project process as a child: the loop
(``edgestream up``), the benchmarks and the integration tests. A child logs stdout and
stderr to one file, stops with SIGTERM (SIGKILL after a grace period) or is killed with
SIGKILL, and can be made to die with its parent (``PR_SET_PDEATHSIG``, Linux). A supervisor
(``edgestream up``, the local ``deploy``) restarts a child that exited after the delay of
:class:`Backoff`, and tells the restarted child its restart count (:data:`RESTARTS_ENV`).
A process known only by its pid (the stack's detached brokers) is checked with
:func:`proc_stat` (its state and start time: a reused pid is not the same process),
:func:`wait_exited` and :func:`reap`.

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
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "COMPONENT_ENV",
    "RESTARTS_ENV",
    "Backoff",
    "Child",
    "Restarts",
    "exited",
    "proc_stat",
    "reap",
    "wait_exited",
]

_PR_SET_PDEATHSIG = 1
#: Set by a supervisor in a child's environment: how often it was restarted before this start,
#: and the component name it is supervised as (``edgestream_restarts_total{component}``).
RESTARTS_ENV, COMPONENT_ENV = "EDGESTREAM_RESTARTS", "EDGESTREAM_COMPONENT"


class Backoff:
    """How long a supervisor waits before it restarts a child that exited: ``initial`` s,
    doubling after each exit up to ``cap`` s; a child that stayed up ``reset_after`` s or more
    starts the sequence again.

    >>> b = Backoff(initial=1.0, cap=30.0, reset_after=60.0)
    >>> [b.next_delay(uptime=2.0) for _ in range(7)]
    [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    >>> b.next_delay(uptime=75.0)  # it had run for a while: a fresh crash
    1.0
    """

    def __init__(self, initial: float = 1.0, cap: float = 30.0, reset_after: float = 60.0) -> None:
        if not 0 < initial <= cap:
            raise ValueError(f"backoff: need 0 < initial ({initial}) <= cap ({cap})")
        self.initial, self.cap, self.reset_after = initial, cap, reset_after
        self._exits = 0  # exits in a row, each after less than ``reset_after`` s up

    def next_delay(self, uptime: float) -> float:
        """The wait before the next start of a child that exited after ``uptime`` s."""
        if uptime >= self.reset_after:
            self._exits = 0
        delay = min(self.cap, self.initial * 2 ** min(self._exits, 32))
        self._exits += 1
        return delay


def _die_with_parent() -> None:  # runs in the child between fork and exec (Linux)
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Restarts:
    """The restart bookkeeping of one supervised child: when it exited, when it is due to start
    again (:class:`Backoff`), how often it was restarted, with which exit code it last ended.

    >>> r = Restarts()
    >>> r.exited(-9, uptime=5.0, now=100.0), r.due(100.5), r.due(101.0)
    (1.0, False, True)
    >>> r.restarted(); r.count, r.last_exit, r.env("edge-gw-1")[RESTARTS_ENV]
    (1, -9, '1')
    """

    backoff: Backoff = field(default_factory=Backoff)
    count: int = 0
    last_exit: int | None = None
    last_restart: float | None = None  # wall-clock time (time.time()) of the latest restart
    due_at: float | None = None  # monotonic time of the next start while it is down

    def exited(self, code: int | None, uptime: float, now: float) -> float:
        """Record an exit after ``uptime`` s; the delay before the restart (from ``now``)."""
        delay = self.backoff.next_delay(uptime)
        self.last_exit, self.due_at = code, now + delay
        return delay

    def due(self, now: float) -> bool:
        """True when a child that exited is due to start again."""
        return self.due_at is not None and now >= self.due_at

    def restarted(self) -> None:
        """Count a restart (just done)."""
        self.count += 1
        self.due_at, self.last_restart = None, time.time()

    def env(self, component: str) -> dict[str, str]:
        """What the child is told: its restart count and the component it runs as."""
        return {RESTARTS_ENV: str(self.count), COMPONENT_ENV: component}


class Child:
    """``argv`` as a subprocess logging to ``log`` (appended), started by :meth:`start`.

    ``env`` replaces the environment when given; ``die_with_parent`` sends the child SIGTERM
    when the process that started it dies, even by SIGKILL; ``detached`` starts it in a
    session of its own with no stdin, so it outlives the command that started it (the
    stack's brokers, a deployment's supervisors)."""

    def __init__(
        self,
        argv: list[str],
        log: Path,
        env: dict[str, str] | None = None,
        die_with_parent: bool = False,
        detached: bool = False,
    ) -> None:
        self.argv, self.log, self.env = argv, log, env
        self.die_with_parent = die_with_parent and sys.platform == "linux"
        self.detached = detached
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self):  # -> the same object (subclasses keep their type)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL if self.detached else None,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                preexec_fn=_die_with_parent if self.die_with_parent else None,
                start_new_session=self.detached,
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

    def note(self, line: str) -> None:
        """Append a supervisor's line (a restart, say) to its log."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("a") as out:
            out.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} supervisor: {line}\n")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, chars: int = 2000) -> str:
        """The end of its log (for error messages)."""
        return self.log_text()[-chars:]


# -- processes by pid (ones this process did not start, or started detached) -----------
def exited(pid: int) -> bool:
    """The process is gone, or only its zombie is left (every thread has ended: a JVM's main
    thread can be a zombie while its shutdown threads still run)."""
    stat = proc_stat(pid)
    if stat is None:
        return True
    if stat[0] != "Z":
        return False
    try:
        return len(os.listdir(f"/proc/{pid}/task")) <= 1
    except OSError:
        return True


def wait_exited(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` s for :func:`exited` (reaping it); False if it still runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reap(pid)
        if exited(pid):
            reap(pid)
            return True
        time.sleep(0.05)
    return False


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time) of a process from ``/proc/<pid>/stat``, None if it does not exist."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[19])


def reap(pid: int | None) -> None:
    """Collect a child that has exited so it does not linger as a zombie."""
    if pid:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
