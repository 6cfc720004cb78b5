"""Run the embedded loop: stack, gateway workers, one simulated fleet per gateway, a monitor of
what the gateways emit; stop everything cleanly at the end. (Forwarders, Flink jobs and the
retrainer join here as they land.)

The console lives in :mod:`edgestream.cli.up`; this module runs things and keeps a
:class:`LoopState` the console (or a script) reads.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from edgestream.core.broker import consumer_config, ensure_topics
from edgestream.core.exceptions import EdgestreamError
from edgestream.core.paths import home_dir, topologies_dir
from edgestream.core.serde import AvroDeserializer
from edgestream.core.stack import Stack
from edgestream.core.topology import Topology, load_topology
from edgestream.edge.worker import ALERTS_TOPIC, SUMMARIES_TOPIC, edge_topics
from edgestream.sim import SimConfig, SimProgress, SimResult, simulate


def default_topology() -> Path:
    """The topology ``edgestream up`` runs when none is given."""
    return topologies_dir() / "default.yaml"


@dataclass(frozen=True)
class LoopConfig:
    """What ``edgestream up`` runs."""

    topology: Path = field(default_factory=default_topology)
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
    bytes: int = 0
    late_pending: int = 0
    alerts: int = 0
    summaries: int = 0
    worker_pid: int | None = None
    worker_alive: bool = False
    restarts: int = 0
    result: SimResult | None = None
    error: str | None = None


@dataclass
class LoopState:
    """What the loop is doing now; read by the live console."""

    started_at: float = field(default_factory=time.monotonic)
    endpoints: dict[str, Any] = field(default_factory=dict)
    gateways: dict[str, GatewayState] = field(default_factory=dict)
    latest_alerts: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=8))
    phase: str = "starting"
    run_dir: Path | None = None
    error: BaseException | None = None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started_at

    def summary(self) -> dict[str, Any]:
        gws = list(self.gateways.values())
        return {
            "seconds": round(self.elapsed, 1),
            "gateways": len(gws),
            "readings_in": sum(g.readings for g in gws),
            "sensor_bytes": sum(g.bytes for g in gws),
            "alerts": sum(g.alerts for g in gws),
            "summaries": sum(g.summaries for g in gws),
            "anomalous_readings_injected": sum(
                g.result.anomalous_readings for g in gws if g.result
            ),
            "late_readings_injected": sum(g.result.late_readings for g in gws if g.result),
            "worker_restarts": sum(g.restarts for g in gws),
            "run_dir": str(self.run_dir),
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
    topology = load_topology(config.topology)
    run_dir = config.run_dir or home_dir() / "runs" / time.strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    state.run_dir = run_dir
    was_running = stack.status().running
    status = stack.start(gateways=[g.id for g in topology.gateways])
    state.endpoints = status.endpoints()
    registry = str(state.endpoints["registry"])
    workers: list[subprocess.Popen[bytes]] = []
    threads: list[threading.Thread] = []
    try:
        for gateway in topology.gateways:
            bootstrap = state.endpoints["edge"][gateway.id]
            state.gateways[gateway.id] = GatewayState(gateway.id, bootstrap)
            ensure_topics(bootstrap, edge_topics(topology, gateway.id))
            workers.append(_start_worker(config.topology, gateway.id, bootstrap, registry, run_dir))
            state.gateways[gateway.id].worker_pid = workers[-1].pid
        for index, gateway in enumerate(topology.gateways):
            gw = state.gateways[gateway.id]
            sim = _fleet(config, topology, gateway.id, index, run_dir)
            threads.append(_thread(_run_fleet, f"sim-{gw.name}", gw, sim, registry, stop))
            threads.append(_thread(_monitor, f"mon-{gw.name}", gw, state, registry, stop))
        state.phase = "running"
        deadline = None if config.duration is None else time.monotonic() + config.duration
        while not stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            for i, (gw, proc) in enumerate(zip(state.gateways.values(), workers, strict=True)):
                gw.worker_alive = proc.poll() is None
                if not gw.worker_alive:  # its state is crash-safe: restart it (supervisor)
                    gw.restarts += 1
                    gw.error = f"worker exited with {proc.returncode}, restarted (see {run_dir})"
                    workers[i] = _start_worker(
                        config.topology, gw.name, gw.bootstrap, registry, run_dir
                    )
                    gw.worker_pid = workers[i].pid
            stop.wait(0.25)
    finally:
        state.phase = "stopping"
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        for proc in workers:
            _stop_process(proc)
        if not (was_running or config.keep_stack):
            stack.stop()
        state.phase = "stopped"
    return state


def _thread(target: Any, name: str, *args: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    thread.start()
    return thread


def _fleet(
    config: LoopConfig, topology: Topology, gateway_id: str, index: int, run_dir: Path
) -> SimConfig:
    gateway = topology.gateway(gateway_id)
    return SimConfig(
        devices=config.devices_per_gateway,
        rate=config.rate,
        duration=None,
        seed=config.seed + index,
        device_types=tuple(gateway.device_types),
        site_names=tuple(gateway.sites),
        prefix=f"{gateway_id}-",
        anomaly_rate=config.anomaly_rate,
        drift_at=config.drift_at,
        late_fraction=config.late_fraction,
        topic="sensors.{device_type}",
        labels=run_dir / f"labels-{gateway_id}.jsonl",
    )


def _start_worker(
    topology: Path, gateway_id: str, bootstrap: str, registry: str, run_dir: Path
) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "edgestream.cli.main", "edge", "run", str(topology)]
    argv += ["--gateway", gateway_id, "--bootstrap", bootstrap, "--registry", registry]
    argv += ["--data-dir", str(run_dir / gateway_id)]
    with (run_dir / f"{gateway_id}-worker.log").open("ab") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)


def _stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _run_fleet(gw: GatewayState, sim: SimConfig, registry: str, stop: threading.Event) -> None:
    def progress(p: SimProgress) -> None:
        gw.readings, gw.bytes, gw.late_pending = p.readings, p.bytes, p.late_pending

    try:
        gw.result = simulate(
            sim, bootstrap=gw.bootstrap, registry=registry, stop=stop, on_progress=progress
        )
        gw.readings, gw.bytes = gw.result.readings, gw.result.bytes
    except EdgestreamError as error:
        gw.error = str(error)


def _monitor(gw: GatewayState, state: LoopState, registry: str, stop: threading.Event) -> None:
    """Count what the gateway emits; keep the latest alerts for the console."""
    decode = AvroDeserializer(registry)
    consumer = Consumer(consumer_config(gw.bootstrap, f"edgestream-up-monitor-{time.time_ns()}"))
    try:
        consumer.assign([TopicPartition(t, 0, 0) for t in (ALERTS_TOPIC, SUMMARIES_TOPIC)])
        while not stop.is_set():
            for msg in consumer.consume(500, timeout=0.5):
                if msg.error() is not None:
                    continue
                if msg.topic() == SUMMARIES_TOPIC:
                    gw.summaries += 1
                    continue
                gw.alerts += 1
                with contextlib.suppress(EdgestreamError):
                    state.latest_alerts.appendleft(decode(msg.value()))
    finally:
        consumer.close()
