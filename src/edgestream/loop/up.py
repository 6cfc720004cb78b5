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
import importlib.util
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from edgestream.core.broker import consumer_config, ensure_topics
from edgestream.core.commands import cloud_run, edge_run, forward_run, retrain_serve
from edgestream.core.exceptions import EdgestreamError
from edgestream.core.paths import home_dir, topologies_dir
from edgestream.core.serde import AvroDeserializer
from edgestream.core.stack import Stack
from edgestream.core.topology import Topology, load_topology
from edgestream.edge.config import edge_topics, sensor_topic_configs
from edgestream.loop.procs import Managed
from edgestream.loop.watch import CloudWatch, gateway_figures, scrape
from edgestream.sim import SimConfig, SimProgress, SimResult, simulate
from edgestream.wire.topics import ALERTS_TOPIC, FLEET, SUMMARIES_TOPIC


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
    worker: Managed | None = None
    forwarder: Managed | None = None
    figures: dict[str, Any] = field(default_factory=dict)  # from the metrics pages
    rate: float = 0.0  # readings/s processed by the worker, last few seconds


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
    services: dict[str, Managed] = field(default_factory=dict)  # cloud job, retrainer
    missing: list[str] = field(default_factory=list)  # parts not installed yet
    cloud: CloudWatch | None = None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started_at

    def summary(self) -> dict[str, Any]:
        gws = list(self.gateways.values())
        cloud = self.cloud.figures if self.cloud is not None else None
        raw = sum(g.figures.get("sensor_bytes", 0) for g in gws)
        out = sum(g.figures.get("cloud_bytes", 0) for g in gws)
        updates = cloud.model_updates if cloud else {}
        rollout = cloud.rollout if cloud else {}
        errors = [f"{g.name}: {g.error}" for g in gws if g.error]
        if self.cloud is not None and self.cloud.error:
            errors.append(self.cloud.error)
        errors += [note for m in self.processes() if (note := m.restart_note)]
        return {
            "seconds": round(self.elapsed, 1),
            "gateways": len(gws),
            "readings_in": sum(g.readings for g in gws),
            "readings_processed": sum(g.figures.get("processed", 0) for g in gws),
            "sensor_bytes": sum(g.bytes for g in gws),
            "alerts_edge": sum(g.alerts for g in gws),
            "alerts_cloud": cloud.alerts if cloud else 0,
            "summaries_edge": sum(g.summaries for g in gws),
            "summaries_cloud": cloud.summaries if cloud else 0,
            "dlq_records": sum(g.figures.get("dlq", 0) for g in gws),
            "dlq_by_reason": dict(
                sum((Counter(g.figures.get("dlq_reasons", {})) for g in gws), Counter())
            ),
            "late_readings": sum(g.figures.get("late", 0) for g in gws),
            "raw_sensor_bytes": raw,
            "cloud_bytes": out,
            "bytes_saved": round(1 - out / raw, 4) if raw else None,
            "fleet_stats_windows": cloud.stats_windows if cloud else 0,
            "retrain_requests": cloud.retrain_requests if cloud else 0,
            "retrains": updates.get("candidate", 0),
            "model_promotions": updates.get("promote", 0),
            "gateway_promotions": rollout.get("promoted", 0),
            "rollbacks": updates.get("rollback", 0) + rollout.get("rolled_back", 0),
            "anomalous_readings_injected": sum(
                g.result.anomalous_readings for g in gws if g.result
            ),
            "late_readings_injected": sum(g.result.late_readings for g in gws if g.result),
            "worker_restarts": sum(g.restarts for g in gws),
            "forwarder_restarts": sum(g.forwarder.restarts for g in gws if g.forwarder),
            "service_restarts": sum(m.restarts for m in self.services.values()),
            "not_started": list(self.missing),
            "run_dir": str(self.run_dir),
            "errors": errors,
        }

    def processes(self) -> list[Managed]:
        """Every supervised process."""
        out = [m for g in self.gateways.values() for m in (g.worker, g.forwarder) if m]
        return out + list(self.services.values())


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
    registry = str(state.endpoints["registry"])
    cloud = str(state.endpoints["cloud"])
    threads: list[threading.Thread] = []
    sims: list[threading.Thread] = []
    observe = threading.Event()  # set after the drain: the counting threads stop then
    try:
        keys = _signing_env(run_dir)
        for gateway in topology.gateways:
            bootstrap = state.endpoints["edge"][gateway.id]
            gw = state.gateways[gateway.id] = GatewayState(gateway.id, bootstrap)
            ensure_topics(
                bootstrap,
                edge_topics(topology, gateway.id),
                topic_configs=sensor_topic_configs(topology, gateway.id),
            )
            gw.worker = _worker(config.topology, gw, registry, run_dir, keys).start()
            gw.worker_pid = gw.worker.pid
            if config.forwarders:
                gw.forwarder = _forwarder(config.topology, gw, cloud, registry, run_dir).start()
        if config.cloud:
            for name, managed in _services(config.topology, cloud, registry, run_dir, keys, state):
                state.services[name] = managed.start()
        for index, gateway in enumerate(topology.gateways):
            gw = state.gateways[gateway.id]
            sim = _fleet(config, topology, gateway.id, index, run_dir)
            sims.append(_thread(_run_fleet, f"sim-{gw.name}", gw, sim, registry, stop))
            threads.append(_thread(_monitor, f"mon-{gw.name}", gw, state, registry, observe))
        threads.append(_thread(_poll_metrics, "metrics", state, observe))
        if config.forwarders:
            state.cloud = CloudWatch(cloud, registry, _cloud_topics(topology))
            threads.append(_thread(state.cloud.run, "cloud-watch", observe))
        state.phase = "running"
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
                    gw.error = (
                        f"worker exited with {gw.worker.last_exit}, restarted (see {run_dir})"
                    )
                if gw.forwarder is not None and not gw.forwarder.check():
                    gw.error = (
                        f"forwarder exited with {gw.forwarder.last_exit}, restarted "
                        f"(see {gw.forwarder.log})"
                    )
            for service in state.services.values():
                service.check()
            stop.wait(0.25)
    finally:
        state.phase = "stopping"
        stop.set()
        for thread in sims:
            thread.join(timeout=30)
        if config.forwarders:
            state.phase = "draining"
            drain(state, DRAIN_TIMEOUT_S)
        observe.set()
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
        if not (was_running or config.keep_stack):
            stack.stop(purge=True)  # a stack this run started leaves no topics behind
        state.phase = "stopped"
    return state


#: at most this long, after the simulators stop, for the gateways and forwarders to catch up
DRAIN_TIMEOUT_S = 30.0


def drained(state: LoopState) -> bool:
    """Whether every reading produced was processed (valid or to the DLQ), every forwarder's
    outbox is empty and the cloud holds as many alerts as the gateways emitted: the summary's
    edge and cloud figures are then one cut of the run."""
    for gw in state.gateways.values():
        f = gw.figures
        if f.get("processed", 0) + f.get("dlq", 0) < gw.readings or f.get("outbox_depth", 1):
            return False
    edge = sum(gw.alerts for gw in state.gateways.values())
    return state.cloud is not None and state.cloud.figures.alerts >= edge


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


def loop_closed(state: LoopState) -> bool:
    """Whether the whole loop has run once, as the cloud broker shows it: a retrain was
    requested and published, the cloud promoted it, and every gateway announced it live."""
    if state.cloud is None:
        return False
    f = state.cloud.figures
    return (
        f.retrain_requests >= 1
        and f.model_updates["candidate"] >= 1
        and f.model_updates["promote"] >= 1
        and f.rollout["promoted"] >= len(state.gateways) > 0
    )


def scaled_topology(path: Path, gateways: int, run_dir: Path) -> Path:
    """A copy of the topology at ``path`` with ``gateways`` gateways (the first N; past its
    own, copies of its last gateway named ``gw-<n>``), written into ``run_dir``."""
    import yaml

    if gateways < 1:
        raise EdgestreamError(f"--gateways must be >= 1 (got {gateways})")
    raw = yaml.safe_load(path.read_text())
    listed = list(raw.get("gateways") or [])
    if not listed:
        raise EdgestreamError(f"{path}: no gateways to scale: add one under `gateways:`")
    out = listed[:gateways]
    while len(out) < gateways:
        extra = {**listed[-1], "id": f"gw-{len(out) + 1}", "canary": False}
        extra.pop("bootstrap", None)
        out.append(extra)
    raw["gateways"] = out
    for model in (raw.get("models") or {}).values():  # paths are relative to the topology
        if isinstance(model, dict) and model.get("path"):
            model["path"] = str((path.parent / model["path"]).resolve())
    scaled = run_dir / f"topology-{gateways}gw.yaml"
    scaled.write_text(yaml.safe_dump(raw, sort_keys=False))
    return scaled


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


def _worker(
    topology: Path, gw: GatewayState, registry: str, run_dir: Path, env: dict[str, str]
) -> Managed:
    args = edge_run(topology, gw.name, bootstrap=gw.bootstrap, registry=registry,
                    data_dir=run_dir / gw.name)  # fmt: skip
    public = {k: v for k, v in env.items() if k == PUBLIC_KEY_ENV}
    return Managed(
        f"{gw.name} worker", args, run_dir / f"{gw.name}-worker.log", run_dir / gw.name, "edge",
        env=public,
    )  # fmt: skip


def _forwarder(
    topology: Path, gw: GatewayState, cloud: str, registry: str, run_dir: Path
) -> Managed:
    args = forward_run(topology, gw.name, edge_bootstrap=gw.bootstrap, cloud_bootstrap=cloud,
                       registry=registry, data_dir=run_dir / gw.name,
                       loglevel="warning")  # fmt: skip
    log = run_dir / f"{gw.name}-forwarder.log"
    return Managed(f"{gw.name} forwarder", args, log, run_dir / gw.name, "forward")


PRIVATE_KEY_ENV, PUBLIC_KEY_ENV = "EDGESTREAM_SIGNING_KEY", "EDGESTREAM_SIGNING_PUBLIC_KEY"


def _signing_env(run_dir: Path) -> dict[str, str]:
    """An ephemeral Ed25519 key pair in the run dir, as the PEM environment variables the
    default topology's ``retraining.signing`` names (empty when signing is not installed)."""
    if importlib.util.find_spec("edgestream.ml.signing") is None:
        return {}
    from edgestream.ml.signing import PRIVATE_KEY_FILE, PUBLIC_KEY_FILE, generate_key_pair

    keys = run_dir / "keys"  # a re-used run dir keeps its pair (gateways verify with it)
    private, public = keys / PRIVATE_KEY_FILE, keys / PUBLIC_KEY_FILE
    if not (private.exists() and public.exists()):
        private, public = generate_key_pair(keys)
    return {PRIVATE_KEY_ENV: private.read_text(), PUBLIC_KEY_ENV: public.read_text()}


def _services(
    topology: Path,
    cloud: str,
    registry: str,
    run_dir: Path,
    keys: dict[str, str],
    state: LoopState,
) -> list[tuple[str, Managed]]:
    """The cloud side: Flink jobs (``edgestream cloud run``) and the retrainer (``edgestream
    retrain serve``), each only when its module is installed (else noted in ``missing``)."""
    out = []
    if importlib.util.find_spec("edgestream.cli.cloud") is not None:
        args = cloud_run(topology, cloud_bootstrap=cloud, registry=registry)
        data = run_dir / "cloud"
        out.append(
            ("cloud jobs", Managed("cloud jobs", args, run_dir / "cloud.log", data, "cloud"))
        )
    else:
        state.missing.append("cloud jobs (edgestream cloud run: not installed)")
    if importlib.util.find_spec("edgestream.cli.retrain") is not None and keys:
        args = retrain_serve(topology, cloud_bootstrap=cloud, registry=registry)
        env = {PRIVATE_KEY_ENV: keys[PRIVATE_KEY_ENV]}
        log, data = run_dir / "retrainer.log", run_dir / "retrainer"
        out.append(("retrainer", Managed("retrainer", args, log, data, "retrain", env=env)))
    else:
        state.missing.append("retrainer (edgestream retrain serve: not installed)")
    return out


def _cloud_topics(topology: Topology) -> dict[str, str]:
    fwd, cloud = topology.forwarding.topics, topology.cloud
    return {
        "alerts": fwd.alerts,
        "summaries": fwd.summaries,
        "rollout": str(getattr(fwd, "rollout", FLEET["rollout"])),
        "retrain": cloud.retrain_topic,
        "models": cloud.models_topic,
        "stats": cloud.stats_topic,
    }


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
