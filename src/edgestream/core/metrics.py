"""Prometheus metrics of edgestream's long-running processes (prometheus-client).

Every process (gateway worker, forwarder, cloud job, retrainer) calls :func:`serve_metrics`
once: it starts an HTTP endpoint (``/metrics``) on the port from the process's
``--metrics-port`` flag, else ``$EDGESTREAM_METRICS_PORT``, else 0; 0 lets the OS pick a free
port, and the chosen one is written to ``<data dir>/<process>.metrics-port`` (and printed) so
``edgestream up`` and scrapers find it; ``off`` (or a negative port) serves nothing. The bind
address is ``$EDGESTREAM_METRICS_ADDR`` (default ``127.0.0.1``; ``0.0.0.0`` in a pod).

All series are named ``edgestream_*`` and labelled with ``gateway`` / ``topic`` / ``model``
where they apply; the objects live here so every process and the Grafana dashboard
(``deploy/grafana/edgestream.json``) agree on one set of names.

>>> resolve_port(None, env={"EDGESTREAM_METRICS_PORT": "9310"})
9310
>>> resolve_port(9400, env={"EDGESTREAM_METRICS_PORT": "9310"}), resolve_port(None, env={})
(9400, 0)
>>> resolve_port(None, env={"EDGESTREAM_METRICS_PORT": "off"}) is None
True
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from edgestream.core.exceptions import EdgestreamError
from edgestream.core.procs import COMPONENT_ENV, RESTARTS_ENV

__all__ = [
    "METRICS_ADDR_ENV",
    "METRICS_DIR_ENV",
    "METRICS_PORT_ENV",
    "ForwarderCollector",
    "GatewayMetrics",
    "count_offset_reset",
    "port_file",
    "read_port",
    "register_forwarder",
    "resolve_port",
    "serve_metrics",
]

METRICS_PORT_ENV = "EDGESTREAM_METRICS_PORT"
METRICS_ADDR_ENV = "EDGESTREAM_METRICS_ADDR"
METRICS_DIR_ENV = "EDGESTREAM_METRICS_DIR"  # where a process without a data dir writes its port


# -- the endpoint ------------------------------------------------------------------------------
def resolve_port(flag: int | None, env: Mapping[str, str] | None = None) -> int | None:
    """The metrics port: the flag, else ``$EDGESTREAM_METRICS_PORT``, else 0 (a free one);
    None when metrics are off (``off`` / a negative number)."""
    env = os.environ if env is None else env
    if flag is not None:
        return None if flag < 0 else flag
    raw = env.get(METRICS_PORT_ENV, "").strip().lower()
    if raw in ("", "auto"):
        return 0
    if raw in ("off", "none", "no", "false"):
        return None
    try:
        port = int(raw)
    except ValueError:
        raise EdgestreamError(
            f"{METRICS_PORT_ENV}={raw!r} is not a port: use a number (0 = any free port) or off"
        ) from None
    return None if port < 0 else port


def port_file(data_dir: Path, process: str) -> Path:
    """Where a process writes the port it serves metrics on."""
    return data_dir / f"{process}.metrics-port"


def read_port(data_dir: Path, process: str) -> int | None:
    """The metrics port a process wrote (see :func:`serve_metrics`), None if not (yet)."""
    try:
        return int(port_file(data_dir, process).read_text().strip())
    except (OSError, ValueError):
        return None


def serve_metrics(
    process: str, data_dir: Path | None, port: int | None, echo: Callable[[str], Any] = print
) -> int | None:
    """Serve ``/metrics`` on ``port`` (0: a free one); write the port to
    ``<data_dir>/<process>.metrics-port`` (``data_dir`` None: ``$EDGESTREAM_METRICS_DIR``, if
    set) and echo the URL. Returns the port (None: off)."""
    if port is None:
        return None
    if data_dir is None and os.environ.get(METRICS_DIR_ENV):
        data_dir = Path(os.environ[METRICS_DIR_ENV])
    addr = os.environ.get(METRICS_ADDR_ENV, "127.0.0.1")
    try:
        server, _thread = start_http_server(port, addr=addr)
    except OSError as error:
        raise EdgestreamError(
            f"cannot serve metrics on {addr}:{port} ({error.strerror or error}): pass another "
            f"--metrics-port (0 = any free port) or set {METRICS_PORT_ENV}=off"
        ) from None
    bound = int(server.server_port)
    _count_restarts(process)
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        path = port_file(data_dir, process)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(f"{bound}\n")
        tmp.replace(path)
    echo(f"{process}: metrics on http://{addr}:{bound}/metrics")
    return bound


RESTARTS = Counter(
    "edgestream_restarts",
    "Restarts of this component by its supervisor (edgestream up, the local deploy) after it "
    "exited; the restarted process starts the counter at its restart count, so it only grows.",
    ["component"],
)


OFFSET_RESETS = Counter(
    "edgestream_offset_resets",
    "Stored read positions that were no longer valid (topic recreated, position beyond the log "
    "end or before the log start) and were reset to the log start (edgestream.core.offsets).",
    ["gateway", "topic", "partition", "reason"],
)


def count_offset_reset(gateway: str, topic: str, partition: int, reason: str) -> None:
    """One reset of a read position to the log start (worker and forwarder)."""
    OFFSET_RESETS.labels(gateway, topic, str(partition), reason).inc()


def _count_restarts(process: str) -> None:
    """Start ``edgestream_restarts_total{component}`` at the restart count a supervisor put in
    the environment (0 and the process name when not supervised)."""
    counter = RESTARTS.labels(component=os.environ.get(COMPONENT_ENV) or process)
    with contextlib.suppress(ValueError):
        counter.inc(max(0, int(os.environ.get(RESTARTS_ENV, "0"))))


# -- gateway worker ----------------------------------------------------------------------------
_GW, _TOPIC = ("gateway",), ("gateway", "topic")

CONSUMER_LAG = Gauge(
    "edgestream_consumer_lag_broker_reported_records",
    "Records between the gateway's read position and the high watermark the broker reported "
    "in its last fetch (broker-reported).",
    [*_TOPIC, "partition"],
)
READINGS = Counter(
    "edgestream_readings", "Valid readings processed by the gateway (rate = readings/s).", _TOPIC
)
REJECTED = Counter(
    "edgestream_dlq_records",
    "Records sent to the topic's DLQ, by validation reason.",
    [*_TOPIC, "reason"],
)
LATE = Counter(
    "edgestream_late_readings",
    "Readings whose windows were all closed (sent to <topic>.late; once per window spec).",
    _TOPIC,
)
WINDOW_EMISSIONS = Counter(
    "edgestream_window_emissions", "Window summaries emitted by the gateway.", _TOPIC
)
ALERTS = Counter("edgestream_alerts", "Alerts (open/update/resolved) emitted.", _TOPIC)
INFERENCE_BATCH = Histogram(
    "edgestream_inference_batch_rows",
    "Rows per ONNX inference call.",
    [*_TOPIC, "model"],
    buckets=(1, 4, 16, 32, 64, 128, 256, 512, 1024, 4096),
)
INFERENCE_LATENCY = Histogram(
    "edgestream_inference_latency_seconds",
    "Wall time of one ONNX inference call (features excluded).",
    [*_TOPIC, "model"],
    buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
BATCH_LATENCY = Histogram(
    "edgestream_batch_latency_seconds",
    "Wall time of processing one fetched batch (validate, score, windows, commit, produce).",
    _TOPIC,
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
)
MODEL_INFO = Gauge(
    "edgestream_model_info",
    "1 for the model version a gateway scores a topic with (live model).",
    [*_TOPIC, "model", "version"],
)


class GatewayMetrics:
    """The series of one gateway worker (labels bound once)."""

    def __init__(self, gateway: str) -> None:
        self.gateway = gateway
        self._model: dict[str, tuple[str, str]] = {}

    def lag(self, topic: str, partition: int, lag: int) -> None:
        CONSUMER_LAG.labels(self.gateway, topic, str(partition)).set(max(0, lag))

    def batch(
        self,
        topic: str,
        *,
        readings: int,
        rejected: Iterable[str],
        late: int,
        seconds: float,
    ) -> None:
        """Count one processed batch (``rejected``: one reason per DLQ record)."""
        READINGS.labels(self.gateway, topic).inc(readings)
        for reason in rejected:
            REJECTED.labels(self.gateway, topic, reason).inc()
        if late:
            LATE.labels(self.gateway, topic).inc(late)
        BATCH_LATENCY.labels(self.gateway, topic).observe(seconds)

    def emitted(self, topic: str, *, alerts: int = 0, summaries: int = 0) -> None:
        """Alerts and window summaries the broker confirmed."""
        if alerts:
            ALERTS.labels(self.gateway, topic).inc(alerts)
        if summaries:
            WINDOW_EMISSIONS.labels(self.gateway, topic).inc(summaries)

    def inference(self, topic: str, model: str, rows: int, seconds: float) -> None:
        if rows:
            INFERENCE_BATCH.labels(self.gateway, topic, model).observe(rows)
            INFERENCE_LATENCY.labels(self.gateway, topic, model).observe(seconds)

    def model(self, topic: str, model: str, version: str | None) -> None:
        """The live model of ``topic`` is ``model`` ``version`` (the old series goes)."""
        if version is None:
            return
        now = (model, version)
        before = self._model.get(topic)
        if before == now:
            return
        if before is not None:
            MODEL_INFO.remove(self.gateway, topic, *before)
        MODEL_INFO.labels(self.gateway, topic, *now).set(1)
        self._model[topic] = now


# -- forwarder ---------------------------------------------------------------------------------
class ForwarderCollector(Collector):
    """Outbox and byte figures of one forwarder, from the snapshot its loop last stored
    (:meth:`update`; the outbox's SQLite connection stays on the loop's thread). Totals are
    the outbox's own (kept across restarts), so they are exact counters."""

    def __init__(self, gateway: str) -> None:
        self.gateway = gateway
        self._stats: dict[str, Any] | None = None
        self._link_up = 0.0
        self._edge_bytes = 0

    def update(self, stats: Mapping[str, Any], link_up: bool, edge_bytes_in: int) -> None:
        self._stats = dict(stats)
        self._link_up = 1.0 if link_up else 0.0
        self._edge_bytes = edge_bytes_in

    def collect(self) -> Iterable[Any]:
        s = self._stats
        if s is None:
            return
        gw = [self.gateway]
        values = {
            **s,
            "oldest_age_s": s["oldest_age_ms"] / 1000,
            "link_up": self._link_up,
            "id_conflicts": s.get("id_conflicts", 0),
        }
        for family_type, name, doc, key in _FORWARDER_FIGURES:
            family = family_type(name, doc, labels=["gateway"])
            family.add_metric(gw, values[key])
            yield family
        waiting = GaugeMetricFamily(
            "edgestream_outbox_waiting", "Records waiting, by kind.", labels=["gateway", "kind"]
        )
        drops = CounterMetricFamily(
            "edgestream_outbox_drops",
            "Records dropped past the outbox budget, by kind.",
            labels=["gateway", "kind"],
        )
        for family, key in ((waiting, "waiting"), (drops, "dropped")):
            for kind, n in sorted(s[key].items()):
                family.add_metric([self.gateway, kind], n)
            yield family
        fwd = CounterMetricFamily(
            "edgestream_forward_bytes",
            "Bytes through the forwarder: in = edge alert/summary records read, "
            "out = wire bytes produced to the cloud (compressed).",
            labels=["gateway", "direction"],
        )
        fwd.add_metric([self.gateway, "in"], self._edge_bytes)
        fwd.add_metric([self.gateway, "out"], s["cloud_bytes"])
        yield fwd


#: The forwarder's one-value figures: (family, name, help, key of the snapshot).
_FORWARDER_FIGURES: tuple[tuple[type[Any], str, str, str], ...] = (
    (GaugeMetricFamily, "edgestream_outbox_depth", "Records waiting in the outbox.", "depth"),
    (GaugeMetricFamily, "edgestream_outbox_bytes", "Bytes waiting in the outbox.", "bytes"),
    (GaugeMetricFamily, "edgestream_outbox_max_bytes", "The outbox byte budget.", "max_bytes"),
    (GaugeMetricFamily, "edgestream_outbox_oldest_age_seconds",
     "Age of the oldest record waiting in the outbox.", "oldest_age_s"),
    (GaugeMetricFamily, "edgestream_forward_link_up", "1 while the cloud link is up.", "link_up"),
    (CounterMetricFamily, "edgestream_outbox_rollups", "Roll-ups made past the budget.", "rollups"),
    (CounterMetricFamily, "edgestream_outbox_id_conflicts",
     "Records refused because a different record already had their id (never a replay).",
     "id_conflicts"),
    (CounterMetricFamily, "edgestream_forward_records_delivered",
     "Records the cloud broker confirmed.", "delivered"),
    (CounterMetricFamily, "edgestream_sensor_bytes",
     "Raw sensor record bytes on the gateway's sensor topics (the meter).", "sensor_bytes"),
)  # fmt: skip


_forwarders: dict[str, ForwarderCollector] = {}


def register_forwarder(gateway: str) -> ForwarderCollector:
    """A :class:`ForwarderCollector` registered with the process's default registry (it
    replaces an earlier one of the same gateway: a forwarder restarted in-process)."""
    old = _forwarders.pop(gateway, None)
    if old is not None:
        REGISTRY.unregister(old)
    collector = _forwarders[gateway] = ForwarderCollector(gateway)
    REGISTRY.register(collector)
    return collector
