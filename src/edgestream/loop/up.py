"""Run the embedded loop: stack, per gateway a worker, a forwarder and a simulated fleet, the
cloud services (Flink jobs, retrainer) when installed, monitors of what the gateways emit and
what reaches the cloud; stop everything cleanly at the end.

Every process is an ``edgestream`` subprocess supervised by :class:`~edgestream.loop.procs.
Managed` (restarted when it exits; all state is crash-safe) serving Prometheus metrics on a
free port; the loop reads those pages for the console (:mod:`edgestream.loop.watch`). Model
signing uses an ephemeral Ed25519 key pair made in the run dir (private key to the
retrainer, public key to the gateways, both by environment variable).

The console lives in :mod:`edgestream.cli.up`; this module runs things and keeps a
:class:`LoopState` the console (or a script) reads.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from edgestream.core.broker import consumer_config, ensure_topics
from edgestream.core.exceptions import EdgestreamError
from edgestream.core.paths import home_dir, topologies_dir
from edgestream.core.serde import AvroDeserializer
from edgestream.core.stack import Stack
from edgestream.core.topology import Topology, load_topology
from edgestream.edge.config import edge_topics, sensor_topic_configs
from edgestream.loop.launch import (
    cloud_topics,
    forwarder,
    scaled_topology,
    services,
    signing_env,
    worker,
)
from edgestream.loop.state import GatewayState, LoopState, drained, loop_closed
from edgestream.loop.watch import CloudWatch, gateway_figures, scrape
from edgestream.sim import SimConfig, SimProgress, simulate
from edgestream.wire.topics import ALERTS_TOPIC, SUMMARIES_TOPIC


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
    # default drift: pump sensors drift from 40 s on (ramp 10 s: after the first full 20 s
    # drift window, the reference), so the cloud's drift job, a retrain, the canary's shadow
    # test and the fleet promotion fit in `up --duration 180`
    drift_at: float | None = 40.0
    drift_ramp: float = 10.0
    drift_types: tuple[str, ...] = ("pump",)
    late_fraction: float = 0.01
    seed: int = 1
    run_dir: Path | None = None
    keep_stack: bool = False  # leave the stack running at the end
    forwarders: bool = True
    gateways: int | None = None  # run this many gateways (first N; more: copies of the last)
    cloud: bool = True  # Flink jobs and the retrainer, when installed
    until_loop_closed: bool = False  # stop once a retrained model is live on every gateway


def run_loop(
    config: LoopConfig,
    stop: threading.Event | None = None,
    state: LoopState | None = None,
    stack: Stack | None = None,
) -> LoopState:
    """Run the loop until ``config.duration`` passes or ``stop`` is set; returns the final state.

    Starts the embedded stack if it is not running (and stops it at the end, deleting its
    brokers' data, unless it was already running or ``keep_stack`` is set).
    """
    stop = stop or threading.Event()
    state = state or LoopState()
    stack = stack or Stack()
    run_dir = config.run_dir or home_dir() / "runs" / time.strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    state.run_dir = run_dir
    if config.gateways is not None:
        config = replace(
            config, topology=scaled_topology(config.topology, config.gateways, run_dir)
        )
    topology = load_topology(config.topology)
    was_running = stack.status().running
    status = stack.start(gateways=[g.id for g in topology.gateways])
    state.endpoints = status.endpoints()
    threads: list[threading.Thread] = []
    sims: list[threading.Thread] = []
    observe = threading.Event()  # set after the drain: the counting threads stop then
    try:
        _start_processes(config, topology, state, run_dir)
        sims, threads = _start_observers(config, topology, state, run_dir, stop, observe)
        state.phase = "running"
        _supervise(config, state, stop, run_dir)
    finally:
        state.phase = "stopping"
        stop.set()
        for thread in sims:
            thread.join(timeout=30)
        if config.forwarders:
            state.phase = "draining"
            drain(state, DRAIN_TIMEOUT_S)
        observe.set()
        _stop_processes(state, threads)
        if not (was_running or config.keep_stack):
            stack.stop(purge=True)  # a stack this run started leaves no topics behind
        state.phase = "stopped"
    return state


def _start_processes(
    config: LoopConfig, topology: Topology, state: LoopState, run_dir: Path
) -> None:
    """Per gateway its topics, worker and forwarder; the cloud services."""
    registry, cloud = str(state.endpoints["registry"]), str(state.endpoints["cloud"])
    keys = signing_env(run_dir)
    for gateway in topology.gateways:
        bootstrap = state.endpoints["edge"][gateway.id]
        gw = state.gateways[gateway.id] = GatewayState(gateway.id, bootstrap)
        ensure_topics(
            bootstrap,
            edge_topics(topology, gateway.id),
            topic_configs=sensor_topic_configs(topology, gateway.id),
        )
        gw.worker = worker(config.topology, gw, registry, run_dir, keys).start()
        gw.worker_pid = gw.worker.pid
        if config.forwarders:
            gw.forwarder = forwarder(config.topology, gw, cloud, registry, run_dir).start()
    if config.cloud:
        for name, managed in services(config.topology, cloud, registry, run_dir, keys, state):
            state.services[name] = managed.start()


def _start_observers(
    config: LoopConfig,
    topology: Topology,
    state: LoopState,
    run_dir: Path,
    stop: threading.Event,
    observe: threading.Event,
) -> tuple[list[threading.Thread], list[threading.Thread]]:
    """The simulated fleets (until ``stop``) and the threads that count what the gateways
    and the cloud hold (until ``observe``): (fleets, counters)."""
    registry, cloud = str(state.endpoints["registry"]), str(state.endpoints["cloud"])
    threads: list[threading.Thread] = []
    sims: list[threading.Thread] = []
    for index, gateway in enumerate(topology.gateways):
        gw = state.gateways[gateway.id]
        sim = _fleet(config, topology, gateway.id, index, run_dir)
        sims.append(_thread(_run_fleet, f"sim-{gw.name}", gw, sim, registry, stop))
        threads.append(_thread(_monitor, f"mon-{gw.name}", gw, state, registry, observe))
    threads.append(_thread(_poll_metrics, "metrics", state, observe))
    if config.forwarders:
        state.cloud = CloudWatch(cloud, registry, cloud_topics(topology))
        threads.append(_thread(state.cloud.run, "cloud-watch", observe))
    return sims, threads


def _supervise(config: LoopConfig, state: LoopState, stop: threading.Event, run_dir: Path) -> None:
    """Until the duration passes, ``stop`` is set or (if asked) the loop closed: restart
    what exits and note it."""
    deadline = None if config.duration is None else time.monotonic() + config.duration
    while not stop.is_set():
        if deadline is not None and time.monotonic() >= deadline:
            break
        if config.until_loop_closed and loop_closed(state):
            break  # a retrained model is live on every gateway
        for gw in state.gateways.values():
            assert gw.worker is not None
            gw.worker_alive = gw.worker.check()
            if not gw.worker_alive:  # its state is crash-safe: restarted (supervisor)
                gw.restarts = gw.worker.restarts
                gw.worker_pid = gw.worker.pid
                gw.error = f"worker exited with {gw.worker.last_exit}, restarted (see {run_dir})"
            if gw.forwarder is not None and not gw.forwarder.check():
                gw.error = (
                    f"forwarder exited with {gw.forwarder.last_exit}, restarted "
                    f"(see {gw.forwarder.log})"
                )
        for service in state.services.values():
            service.check()
        stop.wait(0.25)


def _stop_processes(state: LoopState, threads: list[threading.Thread]) -> None:
    """The last figures, then every process terminated at once and waited for."""
    with contextlib.suppress(Exception):  # the last figures, before the processes go
        scrape_figures(state)
    processes = state.processes()
    for managed in processes:  # all at once, then wait for each
        managed.terminate()
    for thread in threads:
        thread.join(timeout=30)
    for managed in processes:
        managed.stop()
    for gw in state.gateways.values():
        gw.worker_alive = False


#: at most this long, after the simulators stop, for the gateways and forwarders to catch up
DRAIN_TIMEOUT_S = 30.0


def drain(state: LoopState, timeout: float) -> bool:
    """Wait (at most ``timeout`` s) until :func:`drained`; the counting threads keep going."""
    deadline = time.monotonic() + timeout
    while not drained(state):
        if time.monotonic() >= deadline:
            return False
        with contextlib.suppress(Exception):
            scrape_figures(state)
        time.sleep(0.5)
    return True


def _thread(target: Any, name: str, *args: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    thread.start()
    return thread


def _fleet(
    config: LoopConfig, topology: Topology, gateway_id: str, index: int, run_dir: Path
) -> SimConfig:
    gateway = topology.gateway(gateway_id)
    drifting = tuple(t for t in config.drift_types if t in gateway.device_types)
    return SimConfig(
        devices=config.devices_per_gateway,
        rate=config.rate,
        duration=None,
        seed=config.seed + index,
        device_types=tuple(gateway.device_types),
        site_names=tuple(gateway.sites),
        prefix=f"{gateway_id}-",
        anomaly_rate=config.anomaly_rate,
        drift_at=config.drift_at if drifting else None,
        drift_ramp=config.drift_ramp,
        drift_types=drifting or None,
        late_fraction=config.late_fraction,
        topic="sensors.{device_type}",
        labels=run_dir / f"labels-{gateway_id}.jsonl",
    )


def _poll_metrics(state: LoopState, stop: threading.Event) -> None:
    """Every 2 s: each gateway's worker and forwarder metrics pages -> its figures."""
    last: dict[str, tuple[float, int]] = {}
    while not stop.wait(2.0):
        scrape_figures(state, last)


def scrape_figures(state: LoopState, last: dict[str, tuple[float, int]] | None = None) -> None:
    """Read each gateway's worker and forwarder metrics pages into its figures (and its
    readings/s since the ``last`` call)."""
    for gw in state.gateways.values():
        pages = []
        for managed in (gw.worker, gw.forwarder):
            url = managed.metrics_url if managed is not None else None
            pages.append(scrape(url) if url else None)
        figures = gateway_figures(*pages)
        if not figures:
            continue
        gw.figures.update(figures)
        if last is None:
            continue
        now, processed = time.monotonic(), int(gw.figures.get("processed", 0))
        before = last.get(gw.name)
        if before is not None and now > before[0] and processed >= before[1]:
            gw.rate = (processed - before[1]) / (now - before[0])
        last[gw.name] = (now, processed)


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
