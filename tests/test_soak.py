"""Soak: the whole ``edgestream up`` loop for N minutes (default 30), memory and errors.

Not part of the default run (``tests/conftest.py`` skips ``soak`` tests unless ``-m`` names
them). One command:

    bash deploy/local/dev.sh soak                      # 30 minutes
    EDGESTREAM_SOAK_MINUTES=5 bash deploy/local/dev.sh soak

Every 30 s it samples the RSS of each process (gateway workers, forwarders, cloud services,
the loop itself, and apart from ours the embedded brokers and registry). It reports, as JSON
on stdout and in ``$EDGESTREAM_SOAK_REPORT`` (default ``<tmp>/soak.json``): per process the
RSS after warm-up (from when every process serves metrics and readings flow) and at the end
and the growth (a process's children count: a PyFlink job's JVM); error counts (ERROR/CRITICAL
log lines while running, those during the stop apart, restarts, DLQ records of kinds the
simulator never injects). ``EDGESTREAM_SOAK_DIR`` keeps the run dir (logs) there.
Goals: growth <= 10 % per process of ours, 0 errors, each embedded broker
under ``BROKER_BOUND_MB``.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path

import pytest

from edgestream.bench.common import rss_bytes
from edgestream.core.stack import Stack
from edgestream.loop import LoopConfig, LoopState, run_loop

pytestmark = [pytest.mark.soak, pytest.mark.integration, pytest.mark.timeout(0)]

MINUTES = float(os.environ.get("EDGESTREAM_SOAK_MINUTES", "30"))
INTERVAL_S = 30.0
GROWTH_GOAL = 0.10
BROKER_BOUND_MB = 600.0  # per embedded broker over 30 minutes at the default rates
NEVER_INJECTED = {"decode", "bad_magic", "unknown_schema_id", "schema_mismatch", "frame_shape"}
LOOP = "loop (test process: simulators, monitors)"
ERROR_LINE = re.compile(r"\b(ERROR|CRITICAL)\b|Traceback")


def warm_up_s(total_s: float) -> float:
    """Samples before (ready + this) are start-up (model sessions, JVM, caches), not growth."""
    return min(300.0, max(60.0, 0.2 * total_s))


def children() -> dict[int, list[int]]:
    """ppid -> child pids, from /proc."""
    out: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            out.setdefault(ppid, []).append(int(entry))
    return out


def tree_rss_mb(pid: int, kids: dict[int, list[int]]) -> float:
    """RSS of ``pid`` and its descendants (a PyFlink job's JVM is a child), MB."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss_bytes(p) or 0
        todo += kids.get(p, [])
    return total / 2**20


def growth(samples: list[tuple[float, float]], warm_s: float) -> dict[str, float | None]:
    """RSS (MB) at the first sample after warm-up, at the end, and the growth between.

    >>> growth([(10, 100.0), (70, 200.0), (130, 210.0)], 60)
    {'warm_mb': 200.0, 'end_mb': 210.0, 'peak_mb': 210.0, 'growth': 0.05}
    """
    after = [mb for t, mb in samples if t >= warm_s] or [mb for _t, mb in samples[-1:]]
    if not after:
        return {"warm_mb": None, "end_mb": None, "peak_mb": None, "growth": None}
    warm, end = after[0], after[-1]
    return {
        "warm_mb": round(warm, 1),
        "end_mb": round(end, 1),
        "peak_mb": round(max(after), 1),
        "growth": round(end / warm - 1, 4) if warm else None,
    }


def error_lines(run_dir: Path, sizes: dict[str, int], running: bool) -> dict[str, int]:
    """ERROR lines per log while the loop ran (``running``) or after the stop began."""
    out = {}
    for log in sorted(run_dir.glob("*.log")):
        data = log.read_bytes()
        cut = sizes.get(log.name, len(data))
        text = (data[:cut] if running else data[cut:]).decode(errors="replace")
        out[log.name] = sum(1 for line in text.splitlines() if ERROR_LINE.search(line))
    return out


def error_samples(run_dir: Path, limit: int = 5) -> list[str]:
    out = []
    for log in sorted(run_dir.glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if ERROR_LINE.search(line) and len(out) < limit:
                out.append(f"{log.name}: {line[:300]}")
    return out


def test_soak(tmp_path: Path) -> None:
    total_s = MINUTES * 60
    run_dir = Path(os.environ.get("EDGESTREAM_SOAK_DIR", tmp_path)) / "run"
    config = LoopConfig(duration=None, run_dir=run_dir)  # the test stops it: logs split there
    stack = Stack(tmp_path / "stack")
    state, stop = LoopState(), threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            run_loop(config, stop=stop, state=state, stack=stack)
        except BaseException as error:
            failure.append(error)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    ours: dict[str, list[tuple[float, float]]] = {}
    brokers: dict[str, list[tuple[float, float]]] = {}
    started = time.monotonic()
    ready_at: float | None = None  # every process serving metrics and readings flowing
    try:
        while runner.is_alive() and time.monotonic() - started < total_s:
            time.sleep(min(INTERVAL_S, max(0.0, total_s - (time.monotonic() - started))))
            if state.phase != "running":
                continue
            t = time.monotonic() - started
            procs = state.processes()
            serving = all(m.metrics_url for m in procs if m.process in ("edge", "forward"))
            flowing = all(g.figures.get("processed") for g in state.gateways.values())
            if ready_at is None and serving and flowing:
                ready_at = t
            kids = children()
            named = {m.name: m.pid for m in procs}
            for name, pid in named.items():
                rss = tree_rss_mb(pid, kids) if pid else 0
                if rss:
                    ours.setdefault(name, []).append((t, rss))
            loop_rss = rss_bytes(os.getpid())
            if loop_rss:
                ours.setdefault(LOOP, []).append((t, loop_rss / 2**20))
            for name, comp in stack.status().components.items():
                rss = rss_bytes(comp.pid) if comp.pid else None
                if rss:
                    brokers.setdefault(name, []).append((t, rss / 2**20))
    finally:
        running_part = {log.name: log.stat().st_size for log in run_dir.glob("*.log")}
        stop.set()
        runner.join(120)
    assert not failure, failure
    assert ready_at is not None, "the loop never had every process up and readings flowing"
    warm = ready_at + warm_up_s(total_s)
    summary = state.summary()
    dlq = {r: n for r, n in summary["dlq_by_reason"].items() if r in NEVER_INJECTED}
    report = {
        "minutes": MINUTES,
        "samples_every_s": INTERVAL_S,
        "ready_after_s": round(ready_at, 1),
        "growth_from_s": round(warm, 1),
        "rss": {name: growth(s, warm) for name, s in ours.items()},
        "brokers_rss_apart": {name: growth(s, warm) for name, s in brokers.items()},
        "errors": {
            "log_lines": error_lines(run_dir, running_part, running=True),
            "log_lines_during_stop": error_lines(run_dir, running_part, running=False),
            "log_samples": error_samples(run_dir),
            "restarts": {
                "workers": summary["worker_restarts"],
                "forwarders": summary["forwarder_restarts"],
                "services": summary["service_restarts"],
            },
            "dlq_never_injected": dlq,
            "dlq_by_reason": summary["dlq_by_reason"],
            "loop_errors": summary["errors"],
        },
        "loop": {k: v for k, v in summary.items() if k not in ("errors", "run_dir")},
    }
    out = Path(os.environ.get("EDGESTREAM_SOAK_REPORT", tmp_path / "soak.json"))
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report))

    assert summary["readings_processed"] > 0.9 * summary["readings_in"] > 0
    too_much = {
        n: g["growth"]
        for n, g in report["rss"].items()
        if g["growth"] is not None and g["growth"] > GROWTH_GOAL and n != LOOP
    }
    assert not too_much, f"RSS grew more than {GROWTH_GOAL:.0%} after warm-up: {too_much}"
    errors = sum(report["errors"]["log_lines"].values()) + sum(dlq.values())
    errors += sum(report["errors"]["restarts"].values())
    assert errors == 0, report["errors"]
    assert not summary["errors"], summary["errors"]
    over = {
        n: g["peak_mb"]
        for n, g in report["brokers_rss_apart"].items()
        if g["peak_mb"] and g["peak_mb"] > BROKER_BOUND_MB
    }
    assert not over, f"broker RSS over {BROKER_BOUND_MB} MB: {over}"
