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
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from edgestream.bench.common import BenchError, Phases, ProcMonitor, cpu_seconds, machine_info
from edgestream.bench.e2e_parts import (
    CloudWatcher,
    SensorSender,
    forwarder_argv,
    percentiles,
    tail_fetch_ms,
)
from edgestream.bench.edge_input import CHANNELS
from edgestream.bench.worker import edge_worker_argv
from edgestream.core.broker import ensure_topics
from edgestream.core.offsets import read_to_end
from edgestream.core.paths import topologies_dir
from edgestream.core.procs import Child
from edgestream.core.serde import AvroDeserializer
from edgestream.core.stack import Stack
from edgestream.core.topology import load_topology
from edgestream.edge.worker import edge_topics
from edgestream.forward.outbox import Outbox, OutboxConfig, outbox_path
from edgestream.ml.artifact import shipped_model_path
from edgestream.sim import SimConfig
from edgestream.wire.ids import record_id
from edgestream.wire.topics import ALERTS_TOPIC, FLEET, SUMMARIES_TOPIC

GATEWAY = "gw-bench"
KIND_OF_TOPIC = {FLEET[kind]: kind for kind in ("alerts", "summaries", "reports", "samples")}
CLOUD_TOPICS = list(KIND_OF_TOPIC)
#: Topics third parties read: their records must be complete (ids included).
CURATED_TOPICS = (FLEET["alerts"], FLEET["summaries"])
ID_FIELDS = ("alert_id", "incident_id", "summary_id")
GOALS = {"cloud_to_raw_ratio": 0.01, "drain_rate_vs_live": 10.0, "p99_alert_ms": 300.0}
#: Alerts of readings sent in the live phase's last seconds are left out of the latency
#: measure (the outage that follows may catch them; see the module doc).
LATENCY_GUARD_S = 5.0


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
    stack = Stack(work / "stack")
    procs: list[Child] = []
    sender: SensorSender | None = None
    watcher: CloudWatcher | None = None
    t: dict[str, float] = {}
    try:
        with ProcMonitor() as monitor:
            phases.start("starting the embedded stack (gateway broker, cloud broker, registry)")
            status = stack.start(gateways=1)
            ends = status.endpoints()
            edge, cloud = str(ends["edge"]["gw-1"]), str(ends["cloud"])  # type: ignore[index]
            registry = str(ends["registry"])
            phases.done(f"edge {edge}, cloud {cloud}")
            topo_path = work / "topology.yaml"
            topo_path.write_text(yaml.safe_dump(e2e_topology(), sort_keys=False))
            ensure_topics(edge, edge_topics(load_topology(topo_path), GATEWAY))
            data = work / GATEWAY
            worker = Child(edge_worker_argv(topo_path, GATEWAY, edge, registry, data),
                           work / "worker.log").start()  # fmt: skip
            fwd = Child(forwarder_argv(topo_path, GATEWAY, edge, cloud, registry, data),
                        work / "forwarder.log").start()  # fmt: skip
            procs += [worker, fwd]
            monitor.watch("gateway", worker.pid)
            monitor.watch("forwarder", fwd.pid)
            monitor.watch("edge_broker", status.components["gw-1"].pid)
            monitor.watch("cloud_broker", status.components["cloud"].pid)
            watcher = CloudWatcher(cloud, CLOUD_TOPICS, registry).start()
            sim = SimConfig(
                devices=params.devices, rate=params.rate, duration=None, seed=params.seed,
                start_time=int(time.time() * 1000), device_types=("pump",), sites=3,
                anomaly_rate=params.anomaly_rate, topic="sensors.pump", labels=None,
            )  # fmt: skip
            sender = SensorSender(edge, registry, sim).start()

            phases.start("warm-up: until the first summary reaches the cloud")
            _wait(lambda: watcher.count(FLEET["summaries"]) > 0, params.timeout, "warm-up", procs)
            phases.done(f"{watcher.count('fleet.summaries')} summaries")

            probes = {"live_start": tail_fetch_ms(edge, "sensors.pump")}
            t["live0"] = time.time() * 1000
            phases.start(f"live: {params.live_s:.0f} s", total=params.live_s)
            _sleep(params.live_s, phases)
            t["live1"] = time.time() * 1000
            probes["live_end"] = tail_fetch_ms(edge, "sensors.pump")
            phases.done(f"{len(watcher.delivered)} records in the cloud")

            phases.start(f"cloud outage: {params.outage_s:.0f} s", total=params.outage_s)
            t["down"] = time.time() * 1000
            pid = stack.status().components["cloud"].pid
            monitor.unwatch("cloud_broker")
            _kill_group(pid)
            watcher.pause()
            stack.stop(only=["cloud"])
            _sleep(params.outage_s, phases)
            backlog = _stats(data)
            monitor.watch("cloud_broker", stack.start().components["cloud"].pid)
            t["up"] = time.time() * 1000
            watcher.start()
            phases.done(f"backlog {backlog.depth} records ({backlog.bytes:,} B)")

            phases.start("drain: until the outbox is empty")
            _wait(lambda: _backlog(data) == 0, params.timeout, "the drain", procs, 0.02)
            t["drained"] = time.time() * 1000
            time.sleep(5)  # a little live traffic after the drain
            sender.finish()
            t["sent"] = time.time() * 1000
            phases.done()

            phases.start("flush: the last windows close (idle timeout), the forwarder drains")
            _wait_quiet(data, params.timeout, procs)
            monitor.unwatch("gateway")
            monitor.unwatch("forwarder")
            cpu = {"gateway": cpu_seconds(worker.pid), "forwarder": cpu_seconds(fwd.pid)}
            fwd.stop()  # stores its last byte counts
            stats = _stats(data)
            watcher.pause()
            phases.done(f"{stats.delivered} records delivered")
            edge_out = {k: read_to_end(edge, k) for k in (ALERTS_TOPIC, SUMMARIES_TOPIC)}
            curated = {k: read_to_end(cloud, k) for k in CURATED_TOPICS}
            names = ("gateway", "forwarder", "edge_broker", "cloud_broker")
            rss = {n: monitor.peak_mb(n) for n in names}
        result = _result(params, t, sender, watcher, stats, backlog, edge_out, registry, cpu, rss)
        result["bandwidth"]["curated_topics"] = curated_bytes(curated, registry)
        result["latency_ms"]["edge_broker_tail_fetch_ms"] = probes
        return result
    finally:
        if sender is not None:
            sender.finish()
        if watcher is not None:
            watcher.pause()
        for proc in procs:
            proc.stop()
        stack.stop()
        if params.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


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
        from edgestream.forward.outbox import OutboxStats

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


def _result(
    params: E2EBenchParams,
    t: dict[str, float],
    sender: SensorSender,
    watcher: CloudWatcher,
    stats: Any,
    backlog: Any,
    edge_out: dict[str, list[Any]],
    registry: str,
    cpu: dict[str, float | None],
    rss: dict[str, float | None],
) -> dict[str, Any]:
    decode = AvroDeserializer(registry)
    edge_records = [(decode(m.value()), m.timestamp()[1]) for ms in edge_out.values() for m in ms]
    edge_bytes = sum(len(m.value()) + len(m.key() or b"") for ms in edge_out.values() for m in ms)
    first = {record_id(d.record): d for d in watcher.delivered}
    live_s = (t["live1"] - t["live0"]) / 1000
    live = [r for r, ts in edge_records if t["live0"] <= ts < t["live1"]]
    outage = [record_id(r) for r, ts in edge_records if t["down"] <= ts <= t["up"]]
    arrived = [first[i] for i in outage if i in first]
    live_rate = len(live) / live_s
    drain: dict[str, Any] = {"backlog_records": len(outage), "arrived": len(arrived)}
    if arrived:
        drain_s = max((t["drained"] - min(d.timestamp_ms for d in arrived)) / 1000, 0.001)
        catch_up_s = (max(d.received_ms for d in arrived) - t["up"]) / 1000
        drain.update(
            drain_s=round(drain_s, 3), catch_up_s=round(catch_up_s, 3),
            drain_rate=round(len(arrived) / drain_s, 1),
            catch_up_rate_vs_live=round(len(arrived) / catch_up_s / live_rate, 1)
            if live_rate and catch_up_s > 0 else None,
        )  # fmt: skip
    drain["live_rate"] = round(live_rate, 2)
    drain_vs_live = round(drain["drain_rate"] / live_rate, 1) if arrived and live_rate else None

    edge_ts = {record_id(r): ts for r, ts in edge_records}
    latency: list[float] = []
    parts: dict[str, list[float]] = {
        "gateway": [], "gateway_detect": [], "gateway_produce": [], "forwarder": [],
        "cloud_read": [],
    }  # fmt: skip
    halves: dict[bool, list[float]] = {False: [], True: []}  # sent in the live phase's 2nd half
    guarded = 0
    for d in watcher.delivered:
        rec = d.record
        if d.topic != FLEET["alerts"] or rec.get("status") not in ("open", "update"):
            continue
        phase = latency_phase(sender.sent_at.get((rec["device_id"], int(rec["ts"]))), t)
        guarded += phase == "guard"
        if phase != "measured":
            continue
        sent = sender.sent_at[(rec["device_id"], int(rec["ts"]))]
        latency.append(d.received_ms - sent)
        halves[sent >= (t["live0"] + t["live1"]) / 2].append(d.received_ms - sent)
        on_edge = edge_ts.get(rec["alert_id"])
        if on_edge is not None:
            parts["gateway"].append(on_edge - sent)
            emitted = rec.get("emitted_at")  # the worker's clock when it handed the alert over
            if emitted is not None:
                parts["gateway_detect"].append(emitted - sent)
                parts["gateway_produce"].append(on_edge - emitted)
            parts["forwarder"].append(d.timestamp_ms - on_edge)
            parts["cloud_read"].append(d.received_ms - d.timestamp_ms)
    lat = {**percentiles(latency), "guard_s": LATENCY_GUARD_S, "excluded_in_guard": guarded,
           "live_first_half": percentiles(halves[False]),
           "live_second_half": percentiles(halves[True])}  # fmt: skip
    ratio = stats.cloud_bytes / stats.sensor_bytes if stats.sensor_bytes else None
    p99 = lat.get("p99")
    return {
        "bench": "e2e",
        "params": params.as_dict(),
        "machine": machine_info(),
        "cloud_bytes": stats.cloud_bytes,
        "raw_sensor_bytes": stats.sensor_bytes,
        "cloud_to_raw_ratio": None if ratio is None else round(ratio, 5),
        "drain_rate_vs_live": drain_vs_live,
        "p99_reading_to_cloud_alert_ms": p99,
        "goals": {
            "cloud_to_raw_ratio<=0.01": ratio is not None and ratio <= GOALS["cloud_to_raw_ratio"],
            "drain_rate_vs_live>=10": bool(drain_vs_live and drain_vs_live >= 10),
            "p99_alert_ms<=300": p99 is not None and p99 <= GOALS["p99_alert_ms"],
        },
        "bandwidth": {
            "raw_sensor_bytes_sent": sender.bytes,
            "readings": sender.readings,
            "edge_output_record_bytes": edge_bytes,
            "edge_output_records": len(edge_records),
            "cloud_wire_bytes": stats.cloud_bytes,
            "cloud_bytes_per_record": round(stats.cloud_bytes / max(stats.delivered, 1), 1),
            "delivered": stats.delivered,
            "cloud_bytes_by_kind": _by_kind(stats),
            "cloud_to_raw_by_kind": {
                kind: round(size / stats.sensor_bytes, 6) if stats.sensor_bytes else None
                for kind, size in _by_kind(stats).items()
            },
            "delivered_by_kind": {
                KIND_OF_TOPIC[t]: watcher.count(t) for t in CLOUD_TOPICS
            },
            "alerts_by_status": dict(Counter(
                d.record.get("status") for d in watcher.delivered if d.topic == FLEET["alerts"]
            )),
        },
        "drain": {**drain, "outbox_at_restart": backlog.as_dict()},
        "latency_ms": {**lat, "parts_p50": {k: percentiles(v).get("p50") for k, v in parts.items()},
                       "parts_p99": {k: percentiles(v).get("p99") for k, v in parts.items()}},
        "dedup": dict(watcher.dedup.stats),
        "processes": {"cpu_s": cpu, "peak_rss_mb": rss},
        "definitions": __doc__.split("It reports:")[1].strip() if __doc__ else "",
    }  # fmt: skip


def curated_bytes(topics: dict[str, list[Any]], registry: str) -> dict[str, dict[str, int]]:
    """Per curated topic: records, key + value bytes, and the bytes of their ids (UTF-8)."""
    decode = AvroDeserializer(registry)
    out = {}
    for topic, messages in topics.items():
        ids = 0
        for m in messages:
            record = decode(m.value())
            ids += sum(len(str(record[f]).encode()) for f in ID_FIELDS if record.get(f))
        size = sum(len(m.value()) + len(m.key() or b"") for m in messages)
        out[topic] = {"records": len(messages), "record_bytes": size, "id_bytes": ids}
    return out


def latency_phase(sent_ms: float | None, t: dict[str, float]) -> str | None:
    """Whether the alert of a reading sent at ``sent_ms`` (wall clock, ms) counts in the
    latency measure: ``"measured"`` in the live phase up to ``LATENCY_GUARD_S`` before its
    end, ``"guard"`` in that last band (the outage may catch it), else None. By send time.

    >>> t = {"live0": 0.0, "live1": 90_000.0}
    >>> [latency_phase(s, t) for s in (None, -1, 0, 84_999, 85_000, 89_999, 90_000)]
    [None, None, 'measured', 'measured', 'guard', 'guard', None]
    """
    if sent_ms is None or not (t["live0"] <= sent_ms < t["live1"]):
        return None
    return "guard" if sent_ms >= t["live1"] - LATENCY_GUARD_S * 1000 else "measured"


def _by_kind(stats: Any) -> dict[str, int]:
    names = {"alert": "alerts", "summary": "summaries", "report": "reports", "sample": "samples"}
    return {names.get(k, k): int(v) for k, v in sorted(stats.cloud_bytes_by_kind.items())}


def e2e_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Rows of the result table (measure, value, note)."""
    goals = result["goals"]
    lat, drain, bw = result["latency_ms"], result["drain"], result["bandwidth"]

    def ok(key: str) -> str:
        return "goal met" if goals[key] else "goal NOT met"

    return [
        ("bandwidth", "", ""),
        ("raw sensor bytes", f"{result['raw_sensor_bytes']:,}", f"{bw['readings']:,} readings"),
        ("cloud bytes (wire)", f"{result['cloud_bytes']:,}", f"{bw['delivered']:,} records"),
        ("cloud / raw", f"{(result['cloud_to_raw_ratio'] or 0):.3%}",
         ok("cloud_to_raw_ratio<=0.01")),
        *[(f"  {kind}", f"{size:,}", f"{(bw['cloud_to_raw_by_kind'][kind] or 0):.3%} of raw; "
           f"{bw['delivered_by_kind'].get(kind, '-')} records")
          for kind, size in bw.get("cloud_bytes_by_kind", {}).items()],
        *[(f"  {topic} holds", f"{c['record_bytes']:,}", f"{c['records']:,} records, "
           f"{c['id_bytes']:,} B of ids") for topic, c in bw.get("curated_topics", {}).items()],
        ("outage", "", ""),
        ("backlog records", f"{drain['backlog_records']:,}", f"live {drain['live_rate']}/s"),
        ("drain s / catch-up s", f"{drain.get('drain_s')} / {drain.get('catch_up_s')}", ""),
        ("drain rate vs live", f"{result['drain_rate_vs_live']}x", ok("drain_rate_vs_live>=10")),
        ("latency (reading -> cloud alert)", "", ""),
        ("p50 / p95 ms", f"{lat.get('p50')} / {lat.get('p95')}",
         f"{lat.get('samples', 0)} alerts; {lat.get('excluded_in_guard', 0)} sent in the "
         f"last {lat.get('guard_s', 0):g} s before the outage left out"),
        ("p99 ms", f"{lat.get('p99')}", ok("p99_alert_ms<=300")),
        ("p99 gateway / forwarder / read",
         " / ".join(str(lat["parts_p99"][k]) for k in ("gateway", "forwarder", "cloud_read")),
         "ms"),
        ("p99 gateway: detect / produce",
         " / ".join(str(lat["parts_p99"][k]) for k in ("gateway_detect", "gateway_produce")),
         "ms"),
        *_halves_rows(lat),
    ]  # fmt: skip


def _halves_rows(lat: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Latency by half of the live phase, beside the edge broker's tail fetch (runs saved
    before these were measured have neither)."""
    first, second = lat.get("live_first_half"), lat.get("live_second_half")
    probe = lat.get("edge_broker_tail_fetch_ms")
    if not (first and second and probe):
        return []
    return [
        ("p50 / p99 ms, live 1st half", f"{first.get('p50')} / {first.get('p99')}",
         f"{first.get('samples', 0)} alerts"),
        ("p50 / p99 ms, live 2nd half", f"{second.get('p50')} / {second.get('p99')}",
         f"{second.get('samples', 0)} alerts"),
        ("edge broker fetch at the tail", f"{probe.get('live_start')} -> {probe.get('live_end')}",
         "ms, live start -> end (must not grow with the data the broker holds)"),
    ]  # fmt: skip
