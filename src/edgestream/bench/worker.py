"""Run a worker as a subprocess until an output topic holds what its input must produce.

Completion is counted by fetching the output topic from the offsets it had before the run
(never from ListOffsets end offsets, short on some brokers); output times are the records' own
timestamps (set by the worker's producer), so the reader's polling does not blur them.
CPU is read from ``/proc`` while the worker still runs: main thread (Faust's event loop)
and other threads (the pipeline executor) apart, plus the time it waited for a CPU.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgestream.bench.common import (
    BenchError,
    ProcMonitor,
    TopicReader,
    cpu_seconds,
    runqueue_wait_seconds,
    thread_cpu_seconds,
)
from edgestream.core.commands import edge_run, python_argv
from edgestream.core.procs import Child


def edge_worker_argv(
    topology: Path,
    gateway: str,
    bootstrap: str,
    registry: str,
    data_dir: Path,
    sync: bool = True,
    profile: Path | None = None,
) -> list[str]:
    """``edgestream edge run ...`` for a subprocess; under cProfile (all threads) with
    ``profile`` (see :mod:`edgestream.cli.profiled`).

    >>> edge_worker_argv(Path("t.yaml"), "gw", "h:1", "http://r", Path("d"), sync=False)[2:6]
    ['edgestream.cli.main', 'edge', 'run', 't.yaml']
    """
    args = edge_run(topology, gateway, bootstrap=bootstrap, registry=registry,
                    data_dir=data_dir, sync=sync)  # fmt: skip
    if profile:
        return python_argv([str(profile), *args], "edgestream.cli.profiled")
    return python_argv(args)


@dataclass
class WorkerRun:
    """What one worker run produced and cost. Times are epoch seconds."""

    started: float
    outputs: int = 0  # outputs up to the expected count
    extra: int = 0  # outputs beyond it (duplicates) seen within the settle time
    first_output: float | None = None
    last_output: float | None = None
    next_offset: dict[int, int] = field(default_factory=dict)
    cpu_at_first: dict[str, float] = field(default_factory=dict)
    cpu_at_last: dict[str, float] = field(default_factory=dict)
    cpu_total: float = 0.0
    runqueue_wait_s: float = 0.0
    peak_rss_mb: float | None = None
    exit_code: int | None = None

    def count(self, messages: list[Any], expected: int, next_offset: dict[int, int]) -> None:
        """Count output ``messages`` (beyond ``expected``: extra), their times and offsets."""
        for msg in messages:
            if self.outputs >= expected:
                self.extra += 1
            else:
                self.outputs += 1
            ts = msg.timestamp()[1] / 1000
            self.first_output = min(self.first_output or ts, ts)
            self.last_output = max(self.last_output or ts, ts)
            next_offset[msg.partition()] = msg.offset() + 1


def run_until_outputs(
    argv: list[str],
    log_path: Path,
    bootstrap: str,
    topic: str,
    expected: int,
    start_offsets: dict[int, int],
    monitor: ProcMonitor,
    timeout: float,
    on_progress: Callable[[int], None] | None = None,
    settle: float = 1.0,
    cpu: int | None = None,
) -> WorkerRun:
    """Start ``argv`` (pinned to ``cpu`` if given); read ``topic`` until ``expected`` outputs
    (+ ``settle`` s to catch duplicates); stop the worker (SIGTERM, then SIGKILL) whatever
    happens."""
    name = f"worker-{log_path.stem}"
    next_offset = dict(start_offsets)
    with closing(TopicReader(bootstrap, topic, start_offsets)) as reader:
        run = WorkerRun(started=time.time())
        child = Child(argv, log_path).start()
        proc = child.proc
        assert proc is not None
        try:
            watch_worker(monitor, name, proc.pid, cpu)
            deadline = time.monotonic() + timeout
            settle_until: float | None = None
            while settle_until is None or time.monotonic() < settle_until:
                run.count(reader.poll(0.25), expected, next_offset)
                if run.outputs and not run.cpu_at_first:
                    run.cpu_at_first = thread_cpu_seconds(proc.pid)
                if on_progress is not None:
                    on_progress(run.outputs)
                if settle_until is None and run.outputs >= expected:
                    run.cpu_at_last = thread_cpu_seconds(proc.pid)
                    run.cpu_total = cpu_seconds(proc.pid) or 0.0
                    run.runqueue_wait_s = runqueue_wait_seconds(proc.pid)
                    settle_until = time.monotonic() + settle
                if proc.poll() is not None:
                    raise BenchError(
                        f"the worker exited with {proc.returncode} after {run.outputs} of "
                        f"{expected} outputs on {topic}: {_tail(log_path)} (log: {log_path})"
                    )
                if settle_until is None and time.monotonic() > deadline:
                    raise BenchError(
                        f"the worker gave {run.outputs} of {expected} outputs on {topic} in "
                        f"{timeout:.0f} s (log: {log_path}); raise --timeout"
                    )
            monitor.unwatch(name)
            run.peak_rss_mb = monitor.peak_mb(name)
        finally:
            # SIGTERM (Faust's graceful stop; a profiled worker then writes its stats), then
            # SIGKILL after a minute
            run.exit_code = child.stop(grace=60.0) or 0
    run.next_offset = next_offset
    return run


def watch_worker(monitor: ProcMonitor, name: str, pid: int, cpu: int | None) -> None:
    """Watch a just started worker's RSS; pin it to ``cpu`` first (if given): it is a fresh
    interpreter with one thread, and the threads it starts later inherit the affinity."""
    if cpu is not None:
        os.sched_setaffinity(pid, {cpu})
    monitor.watch(name, pid)


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return " | ".join(text[-lines:])[-600:] or "no output"
