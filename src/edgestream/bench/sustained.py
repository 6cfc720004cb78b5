"""``edgestream bench edge --rate R --duration S``: the gateway under a fixed live input rate.

A worker (``edgestream edge run``, Prometheus metrics on a free port) reads a topic of its
own while :func:`produce_live` sends the simulator's pump readings (anomalies included) at
R readings/s for S seconds, each stamped with the time it is handed to the producer (its
``ts``: produce time = event time). Meanwhile:

- a reader takes ``edge.alerts`` and ``edge.summaries``: reading -> alert latency is the
  alert record's timestamp (set by the worker's producer) minus the triggering reading's
  ``ts``; reading -> summary latency is the summary record's timestamp minus the time its
  window could close at the earliest (window end + allowed lateness + max out-of-orderness:
  the window's wait);
- a sampler reads the worker's ``edgestream_readings_total`` every :data:`SAMPLE_S` s: the
  lag is the readings handed to the producer (midway through the scrape) minus those the
  worker processed, and :func:`lag_growth` compares its mean over the last
  :data:`GROWTH_WINDOW_S` s with the first.

A step counts as sustainable (:func:`sustainable`) when the lag stays bounded and the p99
reading -> alert latency is at most :data:`MAX_P99_ALERT_MS`; :func:`step_search` finds the
highest such rate with one worker, letting the backlog of a failed step drain before the next.

>>> lag_growth([(0.0, 10), (5.0, 30), (21.0, 40), (25.0, 40)], window_s=10.0)
2.0
>>> percentiles([]), percentiles([3.0, 1.0, 2.0])
({'p50': None, 'p99': None, 'n': 0}, {'p50': 2.0, 'p99': 2.98, 'n': 3})
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgestream.bench.common import ProcMonitor
from edgestream.bench.live_load import SAMPLE_S, LoadRun, produce_live, wait_metrics

GROWTH_WINDOW_S = 10.0  # lag growth: mean over the last this many seconds / over the first
MAX_P99_ALERT_MS = 250.0  # a sustainable step's p99 reading -> alert latency
LAG_FLOOR_S = 0.25  # a lag under this many seconds of input counts as bounded
MAX_LAG_GROWTH = 2.0  # above it (and above the floor) the lag grows: not sustainable
PRODUCER_SHARE = 0.9  # a step whose input fell below this share of its rate is producer-bound
DRAIN_S = 60.0  # how long a step waits for the worker to catch up after producing


def percentiles(values: Sequence[float]) -> dict[str, Any]:
    """p50 and p99 (ms, rounded to 0.01) and the count; None for no values."""
    if not len(values):
        return {"p50": None, "p99": None, "n": 0}
    arr = np.asarray(values, dtype=float)
    p50, p99 = np.percentile(arr, [50, 99])
    return {"p50": round(float(p50), 2), "p99": round(float(p99), 2), "n": len(arr)}


def lag_growth(samples: Sequence[tuple[float, float]], window_s: float = GROWTH_WINDOW_S) -> float:
    """Mean lag over the last ``window_s`` seconds of ``samples`` ((seconds, lag) in time
    order) over the mean of the first ``window_s`` seconds. A first mean under one record
    counts as one (a lag of zero cannot be divided by), so an idle-fast worker gives ~0.

    >>> lag_growth([(0.0, 0), (30.0, 0)])
    0.0
    >>> lag_growth([(0.0, 5)])
    1.0
    """
    if not samples:
        raise ValueError("lag_growth needs at least one (seconds, lag) sample")
    t = np.array([s[0] for s in samples], dtype=float)
    lag = np.array([s[1] for s in samples], dtype=float)
    first = lag[t <= t[0] + window_s].mean()
    last = lag[t >= t[-1] - window_s].mean()
    return round(float(last / max(first, 1.0)), 3)


def sustainable(step: dict[str, Any], max_p99_alert_ms: float = MAX_P99_ALERT_MS) -> bool:
    """Lag bounded (last-window mean lag under :data:`LAG_FLOOR_S` s of input, or grown at
    most :data:`MAX_LAG_GROWTH` x) and p99 reading -> alert latency within the limit (a step
    without alerts has no latency to judge: it fails, the figure is unknown).

    >>> ok = {"rate": 1000, "lag_growth": 5.0, "lag_last_mean": 100, "p99_reading_to_alert_ms": 90}
    >>> sustainable(ok), sustainable({**ok, "lag_last_mean": 900})
    (True, False)
    >>> sustainable({**ok, "p99_reading_to_alert_ms": 300}), sustainable({**ok, "caught_up": False})
    (False, False)
    """
    p99 = step.get("p99_reading_to_alert_ms")
    small = step["lag_last_mean"] <= step["rate"] * LAG_FLOOR_S
    bounded = small or step["lag_growth"] <= MAX_LAG_GROWTH
    alert_ok = p99 is not None and p99 <= max_p99_alert_ms
    return bool(step.get("caught_up", True) and bounded and alert_ok)


def step_search(
    probe: Callable[[float], dict[str, Any]], start: float, max_steps: int, resolution: float = 0.1
) -> tuple[float | None, list[dict[str, Any]]]:
    """The highest rate ``probe`` finds :func:`sustainable`: from ``start``, double while
    steps pass (halve while they fail), then bisect between the best pass and the lowest
    fail until they are within ``resolution`` (relative) or ``max_steps`` probes ran.
    A step whose input fell short of its rate (``producer_bound``) ends the search.
    Returns (that rate or None, every step in probe order).

    >>> steps = []
    >>> def probe(rate):
    ...     steps.append(rate)
    ...     return {"rate": rate, "lag_growth": 1.0, "lag_last_mean": 0,
    ...             "p99_reading_to_alert_ms": 50 if rate <= 7000 else 900}
    >>> best, _ = step_search(probe, 2000, max_steps=8)
    >>> best, steps
    (7000.0, [2000.0, 4000.0, 8000.0, 6000.0, 7000.0, 7500.0])
    """
    results: list[dict[str, Any]] = []
    passed: float | None = None
    failed: float | None = None
    rate = float(start)
    for _ in range(max_steps):
        step = probe(rate)
        step["sustainable"] = ok = sustainable(step)
        results.append(step)
        if step.get("producer_bound"):  # the input fell short of the rate: cannot go higher
            break
        if ok:
            passed = max(passed or 0.0, rate)
        else:
            failed = rate if failed is None else min(failed, rate)
        if passed is not None and failed is not None:
            if (failed - passed) / failed <= resolution:
                break
            rate = float(round((passed + failed) / 2))
        elif passed is not None:
            rate = passed * 2
        else:
            rate = float(round(rate / 2))
            if rate < 1:
                break
    return passed, results


def pin_cpu() -> int:
    """The CPU pinned runs use: the last one this process may run on."""
    return max(os.sched_getaffinity(0))


def load_step(
    run: LoadRun,
    produce: Callable[[float, float, Callable[[int], None]], int],
    rate: float,
    duration: float,
) -> dict[str, Any]:
    """Produce at ``rate`` for ``duration`` s with the worker running; wait (up to
    :data:`DRAIN_S`) until it processed everything; the step's figures."""
    base_samples, base_out = run.snapshot()
    base_processed = base_samples[-1][2] if base_samples else 0
    run.produced = base_produced = max(base_processed, run.produced)
    t0, wall0 = time.monotonic(), time.time() * 1000

    def progress(readings: int) -> None:
        run.produced = base_produced + readings

    produced = produce(rate, duration, progress)
    produce_s = time.monotonic() - t0
    run.produced = base_produced + produced
    wall1 = time.time() * 1000
    deadline = time.monotonic() + DRAIN_S
    caught_up = False
    while time.monotonic() < deadline:
        done = run.processed()
        if done is not None and done >= run.produced:
            caught_up = True
            break
        time.sleep(SAMPLE_S)
    time.sleep(1.0)  # the last outputs' produce round trip
    samples, out = run.snapshot()
    lags = [(t - t0, p - d) for t, p, d in samples if t0 <= t <= t0 + produce_s]
    alerts = [a - ts for a, ts in out.alerts[len(base_out.alerts) :] if wall0 <= ts <= wall1]
    summaries = [s - c for s, c in out.summaries[len(base_out.summaries) :] if wall0 <= c <= wall1]
    alert_p, summary_p = percentiles(alerts), percentiles(summaries)
    lag_values = [lag for _, lag in lags]
    last = [lag for t, lag in lags if t >= produce_s - GROWTH_WINDOW_S]
    return {
        "rate": rate,
        "duration_s": duration,
        "produced": produced,
        "produced_per_s": round(produced / produce_s) if produce_s else 0,
        "produce_s": round(produce_s, 3),
        "producer_bound": produced < PRODUCER_SHARE * rate * duration,
        "caught_up": caught_up,
        "alerts": alert_p["n"],
        "p50_reading_to_alert_ms": alert_p["p50"],
        "p99_reading_to_alert_ms": alert_p["p99"],
        "summaries": summary_p["n"],
        "p50_reading_to_summary_ms": summary_p["p50"],
        "p99_reading_to_summary_ms": summary_p["p99"],
        "lag": [[round(t, 1), lag] for t, lag in lags],
        "lag_max": max(lag_values, default=0),
        "lag_last_mean": round(float(np.mean(last)), 1) if last else 0.0,
        "lag_growth": lag_growth(lags) if lags else None,
    }


@dataclass(frozen=True)
class LoadPlan:
    """A sustained-load run: the rate and duration of the main step, then the step search."""

    rate: float  # readings/s of the main step (and the search's start)
    duration: float  # seconds of the main step
    step_duration: float  # seconds of each search step (>= 2 x GROWTH_WINDOW_S to judge growth)
    max_steps: int  # search probes besides the main step (0: no search)
    devices: int  # simulated pumps at least (more when the rate needs them: <= 500 Hz each)
    seed: int
    warmup_s: float = 5.0  # produced before the main step, not measured (start-up, first windows)

    def devices_for(self, rate: float) -> int:
        return max(self.devices, math.ceil(rate / 500))


@dataclass(frozen=True)
class LoadWorker:
    """How to start the worker of a sustained run and where its live topic is."""

    argv: list[str]
    data_dir: Path
    log: Path
    topic: str
    waits_ms: dict[int, int]  # window size -> allowed lateness + max out-of-orderness
    cpu: int | None = None  # pin the worker to this CPU


def run_sustained(
    plan: LoadPlan,
    worker: LoadWorker,
    endpoints: tuple[str, str],
    monitor: ProcMonitor,
    on_phase: Callable[[str], None] = lambda _text: None,
) -> dict[str, Any]:
    """Start the worker, warm it up, run the main step and the step search; the figures
    (see the module doc). The worker is stopped whatever happens."""
    from edgestream.bench.worker import watch_worker
    from edgestream.core.metrics import port_file
    from edgestream.core.procs import Child
    from edgestream.wire.topics import ALERTS_TOPIC, SUMMARIES_TOPIC

    bootstrap, registry = endpoints

    def produce(rate: float, duration: float, progress: Callable[[int], None]) -> int:
        devices = plan.devices_for(rate)
        return produce_live(
            endpoints, worker.topic, rate, duration, devices, plan.seed, on_progress=progress
        )

    name = f"worker-{worker.log.stem}"
    child = Child(worker.argv, worker.log).start()
    proc = child.proc
    assert proc is not None
    run: LoadRun | None = None
    try:
        watch_worker(monitor, name, proc.pid, worker.cpu)
        url = wait_metrics(port_file(worker.data_dir, "edge"), lambda: proc.poll() is None, 60)
        outputs = {ALERTS_TOPIC: {}, SUMMARIES_TOPIC: {}}
        run = LoadRun(bootstrap, registry, url, worker.waits_ms, outputs)
        on_phase(f"warm-up: {plan.rate:,.0f} readings/s for {plan.warmup_s:g} s")
        load_step(run, produce, plan.rate, plan.warmup_s)
        on_phase(f"{plan.rate:,.0f} readings/s for {plan.duration:g} s")
        main = load_step(run, produce, plan.rate, plan.duration)
        main["sustainable"] = sustainable(main)

        def probe(rate: float) -> dict[str, Any]:
            on_phase(f"step search: {rate:,.0f} readings/s for {plan.step_duration:g} s")
            step = load_step(run, produce, rate, plan.step_duration)  # type: ignore[arg-type]
            return {k: v for k, v in step.items() if k != "lag"}

        max_rate, steps = (None, [])
        if plan.max_steps:
            max_rate, steps = step_search(probe, plan.rate, plan.max_steps)
        monitor.unwatch(name)
        return {
            **main,
            "devices": plan.devices_for(plan.rate),
            "cpu": worker.cpu,
            "max_rate": max_rate,
            "steps": steps,
            "peak_rss_mb": monitor.peak_mb(name),
        }
    finally:
        if run is not None:
            run.close()
        child.stop(grace=60.0)  # SIGTERM (Faust's graceful stop), SIGKILL after a minute


__all__ = [
    "LoadPlan",
    "LoadWorker",
    "lag_growth",
    "load_step",
    "percentiles",
    "run_sustained",
    "step_search",
    "sustainable",
]
