"""Shared pieces of the benchmarks: machine info, process RSS/CPU from ``/proc``, a
fetch-based topic reader, progress on stderr, the result table and the JSON last line.

>>> rate(1000, 0.5)
2000.0
>>> rate(10, 0.0)
0.0
>>> info = machine_info()
>>> info["cpu_count"] >= 1 and info["python"].count(".") == 2
True
>>> import os
>>> cpu = thread_cpu_seconds(os.getpid())
>>> cpu["main"] >= 0 and rss_bytes(os.getpid()) > 0 and runqueue_wait_seconds(os.getpid()) >= 0
True
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import sys
import threading
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from edgestream.core.exceptions import EdgestreamError

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MB = 1024 * 1024
_PACKAGES = ("edgestream", "faust-streaming", "aiokafka", "confluent-kafka", "onnxruntime", "numpy")


class BenchError(EdgestreamError):
    """A benchmark could not complete (a worker died, outputs did not arrive in time)."""


def rate(count: float, seconds: float) -> float:
    """``count / seconds``, 0 for an empty interval."""
    return count / seconds if seconds > 0 else 0.0


def ratio(a: float, b: float) -> float | None:
    """``a / b`` rounded to 3 places; None when ``b`` is 0."""
    return round(a / b, 3) if b else None


# -- machine -----------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    """CPU, memory, OS, Python and package versions, and the load when the run started."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 1
    model = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_total = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        first = Path("/proc/meminfo").read_text().splitlines()[0]  # MemTotal: N kB
        mem_total = round(int(first.split()[1]) * 1024 / MB)
    versions = {}
    for name in _PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return {
        "cpu_count": os.cpu_count(),
        "cpu_usable": usable,
        "cpu_model": model,
        "memory_mb": mem_total,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "versions": versions,
    }


# -- processes ---------------------------------------------------------------------------------
def _status_kb(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_bytes(pid: int) -> int | None:
    """Resident set size of ``pid`` (``VmRSS``), None when it is gone."""
    kb = _status_kb(pid, "VmRSS")
    return None if kb is None else kb * 1024


def peak_rss_bytes(pid: int) -> int | None:
    """Peak resident set size of ``pid`` over its life so far (``VmHWM``)."""
    kb = _status_kb(pid, "VmHWM")
    return None if kb is None else kb * 1024


def _cpu_of_stat(path: str) -> float | None:
    try:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` (all its threads), None when it is gone."""
    return _cpu_of_stat(f"/proc/{pid}/stat")


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds of ``pid`` split into its main thread and all other threads."""
    main = other = 0.0
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            cpu = _cpu_of_stat(f"/proc/{pid}/task/{tid}/stat") or 0.0
            if int(tid) == pid:
                main += cpu
            else:
                other += cpu
    return {"main": main, "other": other}


def runqueue_wait_seconds(pid: int) -> float:
    """Seconds the threads of ``pid`` were runnable but waiting for a CPU (``schedstat``):
    the time other processes on a shared machine took from it."""
    total = 0
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[1])
    return total / 1e9


class ProcMonitor:
    """Samples the RSS of named processes every ``interval`` s in a thread; keeps the peaks.

    >>> import os
    >>> with ProcMonitor(interval=0.01) as mon:
    ...     mon.watch("me", os.getpid())
    ...     time.sleep(0.05)
    >>> mon.peak_mb("me") > 0
    True
    """

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self._pids: dict[str, int] = {}
        self._peak: dict[str, int] = {}
        self._last: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-monitor", daemon=True)

    def watch(self, name: str, pid: int) -> None:
        with self._lock:
            self._pids[name] = pid
        self._sample(name, pid)

    def unwatch(self, name: str) -> None:
        """Take a last sample (and the kernel's own peak) while the process still runs."""
        with self._lock:
            pid = self._pids.pop(name, None)
        if pid is not None:
            self._sample(name, pid)
            hwm = peak_rss_bytes(pid)
            if hwm:
                with self._lock:
                    self._peak[name] = max(self._peak.get(name, 0), hwm)

    def _sample(self, name: str, pid: int) -> None:
        rss = rss_bytes(pid)
        if rss is not None:
            with self._lock:
                self._last[name] = rss
                self._peak[name] = max(self._peak.get(name, 0), rss)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                pids = dict(self._pids)
            for name, pid in pids.items():
                self._sample(name, pid)

    def peak_mb(self, name: str) -> float | None:
        with self._lock:
            peak = self._peak.get(name)
        return None if peak is None else round(peak / MB, 1)

    def last_mb(self, name: str) -> float | None:
        with self._lock:
            last = self._last.get(name)
        return None if last is None else round(last / MB, 1)

    def __enter__(self) -> ProcMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2.0)


# -- topics ------------------------------------------------------------------------------------
class TopicReader:
    """Reads a topic (every partition) from given offsets by fetching: never trusts end
    offsets from ListOffsets (short on some brokers); the caller knows what to expect.
    ``contextlib.closing`` closes it at the end of a block.
    """

    def __init__(self, bootstrap: str, topic: str, start: dict[int, int] | None = None) -> None:
        from confluent_kafka import Consumer, TopicPartition

        from edgestream.core.broker import consumer_config

        group = f"edgestream-bench-{os.getpid()}-{time.time_ns()}"
        self.consumer = Consumer(consumer_config(bootstrap, group, **{"enable.auto.commit": False}))
        meta = self.consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            self.consumer.close()
            raise BenchError(f"topic {topic} does not exist on {bootstrap}")
        start = start or {}
        self.partitions = sorted(meta.partitions)
        self.consumer.assign([TopicPartition(topic, p, start.get(p, 0)) for p in self.partitions])

    def poll(self, timeout: float, max_messages: int = 10_000) -> list[Any]:
        """The next messages (maybe none) within ``timeout`` seconds; errors are skipped."""
        return [
            m for m in self.consumer.consume(max_messages, timeout=timeout) if m.error() is None
        ]

    def close(self) -> None:
        self.consumer.close()


# -- output ------------------------------------------------------------------------------------
class Phases:
    """Live progress of a benchmark's phases on stderr (silent with ``quiet``).

    ``start(text, total)`` opens a phase (a bar when ``total`` is known), ``update`` moves
    it, ``done(result)`` leaves one finished line with the phase's result.
    """

    def __init__(self, quiet: bool = False, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True, highlight=False)
        self.progress: Progress | None = None
        if not quiet:
            self.progress = Progress(
                SpinnerColumn(finished_text="[green]✓[/]"),
                TextColumn("{task.description}"),
                BarColumn(bar_width=24),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                console=self.console,
            )
        self._task: Any = None
        self._text = ""

    def start(self, text: str, total: float | None = None) -> None:
        self._text = text
        if self.progress is not None:
            self._task = self.progress.add_task(text, total=total, info="")

    def update(self, completed: float, info: str = "") -> None:
        if self.progress is not None and self._task is not None:
            self.progress.update(self._task, completed=completed, info=info)

    def done(self, result: str = "") -> None:
        if self.progress is not None and self._task is not None:
            task = self.progress.tasks[self._task]
            self.progress.update(
                self._task, total=task.total or 1, completed=task.total or 1, info=result
            )
        self._task = None

    def __enter__(self) -> Phases:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()


def emit_json(result: dict[str, Any]) -> None:
    """Print ``result`` as one compact JSON line on stdout (the ``--json`` contract) and save
    it as the bench's last result (``edgestream bench report`` reads it)."""
    from edgestream.bench.results import save_result

    save_result(result)
    sys.stdout.write(json.dumps(result, separators=(",", ":"), default=str) + "\n")
    sys.stdout.flush()


@contextlib.contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt (like Ctrl-C) so ``finally`` blocks stop what the
    benchmark started; no-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
