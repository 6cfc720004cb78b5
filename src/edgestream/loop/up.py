"""Run the embedded loop: stack, one simulated fleet per gateway, (later) gateways, forwarders,
Flink jobs and the retrainer; stop everything cleanly at the end.

The console lives in :mod:`edgestream.cli.up`; this module only runs things and keeps a
:class:`LoopState` the console (or a script) reads.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgestream.core.exceptions import EdgestreamError
from edgestream.core.paths import home_dir
from edgestream.core.stack import Stack
from edgestream.sim import SimConfig, SimProgress, SimResult, simulate


@dataclass(frozen=True)
class LoopConfig:
    """What ``edgestream up`` runs."""

    gateways: int = 2
    duration: float | None = None  # seconds; None = until stopped
    devices_per_gateway: int = 6
    rate: float = 10.0  # readings/s per device
    anomaly_rate: float = 0.01
    drift_at: float | None = 90.0
    late_fraction: float = 0.01
    seed: int = 1
    run_dir: Path | None = None
    keep_stack: bool = False  # leave the stack running at the end


@dataclass
class GatewayState:
    """Live figures of one gateway's part of the loop."""

    name: str
    bootstrap: str
    readings: int = 0
    messages: int = 0
    bytes: int = 0
    late_pending: int = 0
    result: SimResult | None = None
    error: str | None = None


@dataclass
class LoopState:
    """What the loop is doing now; read by the live console."""

    started_at: float = field(default_factory=time.monotonic)
    endpoints: dict[str, object] = field(default_factory=dict)
    gateways: dict[str, GatewayState] = field(default_factory=dict)
    phase: str = "starting"
    error: BaseException | None = None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started_at

    def summary(self) -> dict[str, object]:
        gws = self.gateways.values()
        return {
            "seconds": round(self.elapsed, 1),
            "gateways": len(self.gateways),
            "readings_in": sum(g.readings for g in gws),
            "sensor_bytes": sum(g.bytes for g in gws),
            "anomalous_readings_injected": sum(
                g.result.anomalous_readings for g in gws if g.result
            ),
            "late_readings_injected": sum(g.result.late_readings for g in gws if g.result),
            "errors": [f"{g.name}: {g.error}" for g in gws if g.error],
        }


def run_loop(
    config: LoopConfig,
    stop: threading.Event | None = None,
    state: LoopState | None = None,
    stack: Stack | None = None,
) -> LoopState:
    """Run the loop until ``config.duration`` passes or ``stop`` is set; returns the final state.

    Starts the embedded stack if it is not running (and stops it at the end unless it was
    already running or ``keep_stack`` is set).
    """
    stop = stop or threading.Event()
    state = state or LoopState()
    stack = stack or Stack()
    run_dir = config.run_dir or home_dir() / "runs" / time.strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    was_running = stack.status().running
    status = stack.start(gateways=None if was_running else config.gateways)
    state.endpoints = status.endpoints()
    edge: dict[str, str] = state.endpoints["edge"]  # type: ignore[assignment]
    registry = str(state.endpoints["registry"])
    threads = []
    try:
        for index, (name, bootstrap) in enumerate(edge.items()):
            gw = state.gateways[name] = GatewayState(name, bootstrap)
            sim = SimConfig(
                devices=config.devices_per_gateway,
                rate=config.rate,
                duration=None,
                seed=config.seed + index,
                sites=1,
                prefix=f"{name}-",
                anomaly_rate=config.anomaly_rate,
                drift_at=config.drift_at,
                late_fraction=config.late_fraction,
                labels=run_dir / f"labels-{name}.jsonl",
            )
            thread = threading.Thread(
                target=_run_fleet, args=(gw, sim, registry, stop), name=f"sim-{name}", daemon=True
            )
            thread.start()
            threads.append(thread)
        state.phase = "running"
        deadline = None if config.duration is None else time.monotonic() + config.duration
        while not stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            if all(not t.is_alive() for t in threads):
                break
            stop.wait(0.25)
    finally:
        state.phase = "stopping"
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        if not (was_running or config.keep_stack):
            stack.stop()
        state.phase = "stopped"
    return state


def _run_fleet(gw: GatewayState, sim: SimConfig, registry: str, stop: threading.Event) -> None:
    def progress(p: SimProgress) -> None:
        gw.readings, gw.messages, gw.bytes, gw.late_pending = (
            p.readings,
            p.messages,
            p.bytes,
            p.late_pending,
        )

    try:
        gw.result = simulate(
            sim, bootstrap=gw.bootstrap, registry=registry, stop=stop, on_progress=progress
        )
        gw.readings, gw.messages, gw.bytes = (
            gw.result.readings,
            gw.result.messages,
            gw.result.bytes,
        )
    except EdgestreamError as error:
        gw.error = str(error)
