"""``edgestream bench e2e``: sensors -> gateway -> forwarder -> cloud, with a cloud outage.

On a fresh embedded stack (one gateway broker, the cloud broker, the registry) it runs the
real ``edgestream edge run`` worker and ``edgestream forward run`` forwarder, and sends
simulated pumps (10 Hz, 1 % anomalies) at wall-clock pace: a warm-up until the first summary
reaches the cloud, a live phase, a cloud outage (the cloud broker is killed; it comes back
empty), the drain, then a flush of the last windows. It reports:

* ``cloud_to_raw_ratio`` = ``cloud_bytes / raw_sensor_bytes`` over the whole run. Raw sensor
  bytes: key + value + headers of every record on the gateway's sensor topics (the
  forwarder's meter; the sender's own count is reported too). Cloud bytes: bytes the
  forwarder's producers put on the wire to the cloud broker (librdkafka ``txbytes``:
  compressed batches plus protocol overhead), alerts, summaries, sampled readings and
  forwarder reports. ``bandwidth.cloud_bytes_by_kind`` splits them: each producer's wire
  bytes in proportion to its topics' record bytes (``other``: requests of a producer that
  sent no record in that second, e.g. metadata).
  ``bandwidth.curated_topics``: what ``fleet.alerts`` and ``fleet.summaries`` hold at the
  end (every copy, read back from offset 0): records, key + value bytes, and the bytes of
  the ids in them (``alert_id`` + ``incident_id``, ``summary_id``). The forwarder writes
  those topics itself, so their records are what crossed the link.
* ``drain_rate_vs_live``: records the gateway produced during the outage (edge timestamps),
  divided by the seconds from the first of them produced to the cloud (its record timestamp)
  until the outbox was empty (every record confirmed; polled every 20 ms), over the live
  rate (alerts + summaries per second in the live phase). Sampled readings (lowest
  priority, sent after the backlog with a 5 s producer linger) are not part of this measure;
  their count is reported. ``catch_up_s`` counts from the
  cloud broker's restart to the last backlog record read back (reconnect backoff included).
* ``p99_reading_to_cloud_alert_ms``: for every alert (open or update) raised by a reading
  sent in the live phase, from the wall-clock time the sender produced that reading (device +
  event time identify it) to the time a consumer of the cloud topic received the alert
  (first copy; the consumer polls every 10 ms). Split into gateway (to the alert's timestamp
  on the edge broker; itself split at the alert's ``emitted_at``, when the worker handed it to
  its producer, into ``gateway_detect`` and ``gateway_produce``), forwarder (to its timestamp
  on the cloud topic) and cloud read. The
  live phase ends when the outage begins, so a reading sent in its last moments may have its
  alert caught by the outage: that measures the outage, not the path. Readings sent in the
  last ``LATENCY_GUARD_S`` seconds of the live phase (a guard band far above any healthy
  latency) are left out, selected by *send* time (selecting by receive time would drop
  exactly the slow ones); ``latency_ms.guard_s`` and ``latency_ms.excluded_in_guard`` report
  the band and how many alerts it left out. ``latency_ms.live_first_half`` /
  ``live_second_half`` split the alerts by when their reading was sent, and
  ``latency_ms.edge_broker_tail_fetch_ms`` is the gateway broker's time to serve a fetch of
  the sensor topic's newest records, probed before and after the live phase: it must not
  grow with the data the broker holds (the memory-only broker used before Apache Kafka
  slowed down as a partition accumulated record batches). ``processes.peak_rss_mb`` has
  each broker's peak RSS beside the gateway's and the forwarder's.

Everything runs on one machine: brokers, gateway, forwarder, registry and the bench's own
sensors and reader share its cores, and latency tails show it (``machine.load_avg_1m``).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edgestream.bench.common import BenchError, Phases, ProcMonitor, cpu_seconds
from edgestream.bench.e2e_parts import (
    CloudWatcher,
    SensorSender,
    forwarder_argv,
    tail_fetch_ms,
)
from edgestream.bench.e2e_result import CLOUD_TOPICS, curated_bytes, e2e_result
from edgestream.bench.edge_input import CHANNELS
from edgestream.bench.worker import edge_worker_argv
from edgestream.core.broker import ensure_topics
from edgestream.core.offsets import read_to_end
from edgestream.core.paths import topologies_dir
from edgestream.core.procs import Child
from edgestream.core.stack import Stack
from edgestream.core.topology import load_topology
from edgestream.edge.config import edge_topics
from edgestream.forward.outbox import Outbox
from edgestream.forward.outbox_config import OutboxConfig, outbox_path
from edgestream.ml.artifact import shipped_model_path
from edgestream.sim import SimConfig
from edgestream.wire.topics import ALERTS_TOPIC, FLEET, SUMMARIES_TOPIC

GATEWAY = "gw-bench"
#: Topics third parties read: their records must be complete (ids included).
CURATED_TOPICS = (FLEET["alerts"], FLEET["summaries"])


@dataclass(frozen=True)
class E2EBenchParams:
    """Sizes of one ``bench e2e`` run (defaults: the documented run).

    >>> E2EBenchParams(devices=0)
    Traceback (most recent call last):
    ...
    edgestream.bench.common.BenchError: --devices must be >= 1
    """

    devices: int = 50
    rate: float = 10.0  # Hz per device
    anomaly_rate: float = 0.01
    live_s: float = 90.0
    outage_s: float = 45.0
    seed: int = 7
    timeout: float = 180.0  # per waiting phase
    workdir: Path | None = None

    def __post_init__(self) -> None:
        for ok, message in [
            (self.devices >= 1, "--devices must be >= 1"),
            (0 < self.rate <= 100, "--rate must be in (0, 100] Hz"),
            (0 <= self.anomaly_rate < 0.5, "--anomaly-rate must be in [0, 0.5)"),
            (self.live_s >= 10 and self.outage_s >= 5, "--live >= 10 s and --outage >= 5 s"),
        ]:
            if not ok:
                raise BenchError(message)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "workdir": None if self.workdir is None else str(self.workdir)}


def default_anomaly() -> dict[str, Any]:
    """The ``anomaly`` section of ``topologies/default.yaml`` (rules that apply to pumps).

    >>> [r["name"] for r in default_anomaly()["rules"]]
    ['pump-anomaly']
    """
    raw = yaml.safe_load((topologies_dir() / "default.yaml").read_text())
    anomaly = dict(raw.get("anomaly") or {})
    rules = [r for r in anomaly.get("rules", []) if "pump" in r.get("device_types", ["pump"])]
    return {**anomaly, "rules": rules or [{"name": "pump-anomaly"}]}


def e2e_topology() -> dict[str, Any]:
    """One gateway of pumps: 10 s tumbling device windows, the shipped model, the default
    topology's rule and suppression, default forwarding (zstd, 50 ms linger for summaries,
    alerts at most 5 ms, 64 MB outbox). A 1 s linger measured 1.77 % instead of 1.92 % cloud
    bytes, with a slower drain (19x instead of 44x live)."""
    return {
        "name": "bench-e2e",
        "version": "1",
        "gateways": [{"id": GATEWAY, "sites": ["site-1", "site-2", "site-3"],
                      "device_types": ["pump"]}],
        "sensors": {
            "validation": {"max_clock_skew": "5m", "max_payload_bytes": "64KB"},
            "topics": [{"name": "sensors.pump", "device_type": "pump",
                        "schema": "SensorReading", "partitions": 2, "channels": CHANNELS}],
        },
        "features": {"pump": list(CHANNELS)},
        "models": {"pump": {"name": "pump-ae", "path": str(shipped_model_path("pump")),
                            "version": "v1", "batch": {"size": 256, "max_wait": "20ms"}}},
        "windows": [{"size": "10s", "allowed_lateness": "2s", "max_out_of_orderness": "1s",
                     "idle_timeout": "5s", "scopes": ["device"]}],
        "anomaly": default_anomaly(),
        "forwarding": {"outbox": {"max_bytes": "64MB", "max_age": "1d", "fsync": "batch"}},
    }  # fmt: skip


def _wait(
    condition: Any, timeout: float, what: str, procs: list[Child], every: float = 0.1
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        for proc in procs:
            if not proc.alive():
                raise BenchError(f"a process died while waiting for {what}:\n{proc.tail()}")
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def run_e2e_bench(params: E2EBenchParams, phases: Phases | None = None) -> dict[str, Any]:
    """Run the benchmark; returns the result (the ``--json`` object). See the module doc."""
    phases = phases or Phases(quiet=True)
    work = params.workdir or Path(tempfile.mkdtemp(prefix="edgestream-bench-e2e-"))
    work.mkdir(parents=True, exist_ok=True)
    run = _Run(params, phases, work, Stack(work / "stack"))
    try:
        with ProcMonitor() as monitor:
            run.start(monitor)
            run.warm_up_and_live()
            backlog = run.outage(monitor)
            run.drain()
            stats, edge_out, curated, cpu = run.flush(monitor)
            names = ("gateway", "forwarder", "edge_broker", "cloud_broker")
            rss = {n: monitor.peak_mb(n) for n in names}
        assert run.sender is not None and run.watcher is not None
        result = e2e_result(
            params.as_dict(), run.t, run.sender, run.watcher, stats, backlog, edge_out,
            run.registry, cpu, rss,
        )  # fmt: skip
        result["definitions"] = __doc__.split("It reports:")[1].strip() if __doc__ else ""
        result["bandwidth"]["curated_topics"] = curated_bytes(curated, run.registry)
        result["latency_ms"]["edge_broker_tail_fetch_ms"] = run.probes
        return result
    finally:
        run.stop()
        if params.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


@dataclass
class _Run:
    """One run's processes and phase times (``t``, wall-clock ms), phase by phase."""

    params: E2EBenchParams
    phases: Phases
    work: Path
    stack: Stack
    edge: str = ""
    cloud: str = ""
    registry: str = ""
    procs: list[Child] = field(default_factory=list)
    sender: SensorSender | None = None
    watcher: CloudWatcher | None = None
    t: dict[str, float] = field(default_factory=dict)
    probes: dict[str, float | None] = field(default_factory=dict)

    @property
    def data(self) -> Path:
        return self.work / GATEWAY

    def start(self, monitor: ProcMonitor) -> None:
        """The stack, the gateway worker and its forwarder, the cloud watcher, the sensors."""
        params, phases, work = self.params, self.phases, self.work
        phases.start("starting the embedded stack (gateway broker, cloud broker, registry)")
        status = self.stack.start(gateways=1)
        ends = status.endpoints()
        edge, cloud = str(ends["edge"]["gw-1"]), str(ends["cloud"])  # type: ignore[index]
        registry = str(ends["registry"])
        self.edge, self.cloud, self.registry = edge, cloud, registry
        phases.done(f"edge {edge}, cloud {cloud}")
        topo_path = work / "topology.yaml"
        topo_path.write_text(yaml.safe_dump(e2e_topology(), sort_keys=False))
        ensure_topics(edge, edge_topics(load_topology(topo_path), GATEWAY))
        worker = Child(edge_worker_argv(topo_path, GATEWAY, edge, registry, self.data),
                       work / "worker.log").start()  # fmt: skip
        fwd = Child(forwarder_argv(topo_path, GATEWAY, edge, cloud, registry, self.data),
                    work / "forwarder.log").start()  # fmt: skip
        self.procs += [worker, fwd]
        monitor.watch("gateway", worker.pid)
        monitor.watch("forwarder", fwd.pid)
        monitor.watch("edge_broker", status.components["gw-1"].pid)
        monitor.watch("cloud_broker", status.components["cloud"].pid)
        self.watcher = CloudWatcher(cloud, CLOUD_TOPICS, registry).start()
        sim = SimConfig(
            devices=params.devices, rate=params.rate, duration=None, seed=params.seed,
            start_time=int(time.time() * 1000), device_types=("pump",), sites=3,
            anomaly_rate=params.anomaly_rate, topic="sensors.pump", labels=None,
        )  # fmt: skip
        self.sender = SensorSender(edge, registry, sim).start()

    def warm_up_and_live(self) -> None:
        """Until the first summary reaches the cloud, then the live phase."""
        params, phases, watcher, t = self.params, self.phases, self.watcher, self.t
        assert watcher is not None
        phases.start("warm-up: until the first summary reaches the cloud")
        _wait(lambda: watcher.count(FLEET["summaries"]) > 0, params.timeout, "warm-up", self.procs)
        phases.done(f"{watcher.count('fleet.summaries')} summaries")

        self.probes = {"live_start": tail_fetch_ms(self.edge, "sensors.pump")}
        t["live0"] = time.time() * 1000
        phases.start(f"live: {params.live_s:.0f} s", total=params.live_s)
        _sleep(params.live_s, phases)
        t["live1"] = time.time() * 1000
        self.probes["live_end"] = tail_fetch_ms(self.edge, "sensors.pump")
        phases.done(f"{len(watcher.delivered)} records in the cloud")

    def outage(self, monitor: ProcMonitor) -> Any:
        """The cloud broker killed, back empty after the outage; the backlog it left."""
        params, phases, watcher, t, stack = (
            self.params,
            self.phases,
            self.watcher,
            self.t,
            self.stack,
        )
        assert watcher is not None
        phases.start(f"cloud outage: {params.outage_s:.0f} s", total=params.outage_s)
        t["down"] = time.time() * 1000
        pid = stack.status().components["cloud"].pid
        monitor.unwatch("cloud_broker")
        _kill_group(pid)
        watcher.pause()
        stack.stop(only=["cloud"])
        _sleep(params.outage_s, phases)
        backlog = _stats(self.data)
        monitor.watch("cloud_broker", stack.start().components["cloud"].pid)
        t["up"] = time.time() * 1000
        watcher.start()
        phases.done(f"backlog {backlog.depth} records ({backlog.bytes:,} B)")
        return backlog

    def drain(self) -> None:
        """Until the outbox is empty, a little live traffic after, then the sensors stop."""
        assert self.sender is not None
        self.phases.start("drain: until the outbox is empty")
        data = self.data
        _wait(lambda: _backlog(data) == 0, self.params.timeout, "the drain", self.procs, 0.02)
        self.t["drained"] = time.time() * 1000
        time.sleep(5)  # a little live traffic after the drain
        self.sender.finish()
        self.t["sent"] = time.time() * 1000
        self.phases.done()

    def flush(
        self, monitor: ProcMonitor
    ) -> tuple[Any, dict[str, list[Any]], dict[str, list[Any]], dict[str, float | None]]:
        """The last windows out and forwarded; outbox stats, the gateway's outputs, the
        curated cloud topics and the processes' CPU seconds."""
        assert self.watcher is not None
        worker, fwd = self.procs
        self.phases.start("flush: the last windows close (idle timeout), the forwarder drains")
        _wait_quiet(self.data, self.params.timeout, self.procs)
        monitor.unwatch("gateway")
        monitor.unwatch("forwarder")
        cpu = {"gateway": cpu_seconds(worker.pid), "forwarder": cpu_seconds(fwd.pid)}
        fwd.stop()  # stores its last byte counts
        stats = _stats(self.data)
        self.watcher.pause()
        self.phases.done(f"{stats.delivered} records delivered")
        edge_out = {k: read_to_end(self.edge, k) for k in (ALERTS_TOPIC, SUMMARIES_TOPIC)}
        curated = {k: read_to_end(self.cloud, k) for k in CURATED_TOPICS}
        return stats, edge_out, curated, cpu

    def stop(self) -> None:
        """Everything the run started, stopped."""
        if self.sender is not None:
            self.sender.finish()
        if self.watcher is not None:
            self.watcher.pause()
        for proc in self.procs:
            proc.stop()
        self.stack.stop()


def _sleep(seconds: float, phases: Phases) -> None:
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        phases.update(seconds - left)
        time.sleep(min(left, 0.5))


def _kill_group(pid: int | None) -> None:
    import os
    import signal

    if pid:
        os.killpg(pid, signal.SIGKILL)


def _stats(data: Path) -> Any:
    path = outbox_path(None, GATEWAY, data)
    if not path.exists():
        from edgestream.forward.outbox_stats import OutboxStats

        return OutboxStats()
    box = Outbox(OutboxConfig(path), GATEWAY, readonly=True)
    try:
        return box.stats()
    finally:
        box.close()


def _backlog(data: Path) -> int:
    """Alerts, summaries and reports waiting in the outbox (samples left out: see doc)."""
    stats = _stats(data)
    return int(stats.depth) - int(stats.waiting.get("sample", 0))


def _wait_quiet(data: Path, timeout: float, procs: list[Child]) -> None:
    """Until the outbox is empty and nothing new was delivered for idle timeout + 3 s."""
    last, since = -1, time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = _stats(data)
        if stats.delivered != last or stats.depth:
            last, since = stats.delivered, time.monotonic()
        elif time.monotonic() - since > 8.0:
            return
        time.sleep(0.5)
    raise BenchError("the forwarder did not go quiet after the sensors stopped")
