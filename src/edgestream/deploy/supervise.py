"""The supervisor of one process of a local deployment: ``deploy`` starts it detached (its own
session), it runs the process as its child and restarts it with backoff when it exits
(:class:`~edgestream.core.procs.Backoff`: 1 s doubling to 30 s, reset after 60 s up), so a
crashed gateway worker comes back although the CLI that deployed it is gone.

Each restart is noted in the process's log, counted in its ``edgestream_restarts_total
{component}`` (the restarted process is told its count) and written, with the child's pid, its
last exit code and the time of the last restart, to a status file that ``deploy --status``
reads. SIGTERM (or SIGINT) passes SIGTERM on to the process group (once: the child and what it
started, a Flink MiniCluster's JVM, say), waits for the child (SIGKILL after a grace period)
and exits 0.

    python -m edgestream.deploy.supervise --name edge-gw-1 --log L --status S -- ARGV...

>>> state = read_status(Path("/nonexistent/edge-gw-1.json"))
>>> state.state, state.restarts, state.pid is None
('unknown', 0, True)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from edgestream.core.procs import Backoff, Child, Restarts

__all__ = ["SupervisorStatus", "read_status", "supervise"]

GRACE = 20.0  # seconds a child has to stop after SIGTERM


@dataclass(frozen=True)
class SupervisorStatus:
    """What a supervisor last wrote about its process."""

    name: str
    state: str  # running | backoff | stopped | unknown (no status written yet)
    pid: int | None  # the supervised process (None while it is down)
    restarts: int = 0
    last_exit: int | None = None
    last_restart: float | None = None  # wall-clock time
    started: float | None = None  # wall-clock time of the current (or last) start


def read_status(path: Path) -> SupervisorStatus:
    """The status a supervisor wrote at ``path`` (state ``unknown`` when there is none)."""
    try:
        return SupervisorStatus(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return SupervisorStatus(path.stem, "unknown", None)


def _write(path: Path, status: SupervisorStatus) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(status)))
    os.replace(tmp, path)


def supervise(
    name: str,
    argv: list[str],
    log: Path,
    status: Path,
    stop: threading.Event,
    backoff: Backoff | None = None,
) -> None:
    """Run ``argv`` (logging to ``log``) until ``stop`` is set, restarting it with
    ``backoff`` whenever it exits; keep ``status`` current."""
    restart = Restarts(backoff or Backoff())
    child: Child | None = None
    started = time.monotonic()

    def report(state: str) -> None:
        pid = child.pid if child is not None and state == "running" else None
        begun = time.time() - (time.monotonic() - started)
        _write(
            status,
            SupervisorStatus(name, state, pid, restart.count, restart.last_exit,
                             restart.last_restart, begun),
        )  # fmt: skip

    while not stop.is_set():
        now = time.monotonic()
        if child is None or restart.due(now):
            if child is not None:
                restart.restarted()
            env = {**os.environ, **restart.env(name)}
            child = Child(argv, log, env, die_with_parent=True).start()
            started = now
            report("running")
        elif not child.alive() and restart.due_at is None:
            delay = restart.exited(child.returncode, now - started, now)
            child.note(f"{name} exited with code {restart.last_exit}; restart "
                       f"{restart.count + 1} in {delay:g} s")  # fmt: skip
            report("backoff")
        stop.wait(0.2)
    if child is not None and child.alive():
        if os.getpgrp() == os.getpid():  # deploy's detached session: the child's helpers too
            os.killpg(os.getpgrp(), signal.SIGTERM)  # (this process only sets ``stop`` again)
        else:
            child.terminate()
        with contextlib.suppress(Exception):
            child.wait(GRACE)
        if child.alive():
            child.kill()
    report("stopped")


def main(args: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgestream.deploy.supervise")
    parser.add_argument("--name", required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--status", type=Path, required=True)
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    opts = parser.parse_args(args)
    argv = opts.argv[1:] if opts.argv[:1] == ["--"] else opts.argv
    if not argv:
        parser.error("give the command to supervise after --")
    stop = threading.Event()

    def on_signal(*_: object) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    supervise(opts.name, argv, opts.log, opts.status, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
