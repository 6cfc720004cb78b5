"""What ``edgestream up`` watches: the processes' own Prometheus endpoints and the cloud topics.

* :func:`scrape` reads one ``/metrics`` page; :func:`gateway_figures` turns a worker's and a
  forwarder's pages into the console's figures (readings, DLQ, late, live model versions,
  outbox depth, raw sensor bytes, cloud bytes).
* :class:`CloudWatch` reads the cloud broker: alerts (deduplicated with
  :class:`~edgestream.wire.dedup.DedupReader`: the forwarder delivers at least once),
  summaries, rollout events, retrain requests, model updates and fleet stats (JSON).

>>> text = '''# TYPE edgestream_readings counter
... edgestream_readings_total{gateway="gw-1",topic="sensors.pump"} 120.0
... edgestream_readings_total{gateway="gw-1",topic="sensors.reefer"} 30.0
... '''
>>> series = parse_metrics(text)
>>> total(series, "edgestream_readings_total"), total(series, "edgestream_readings_total",
...                                                   topic="sensors.pump")
(150.0, 120.0)
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import urllib.request
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from edgestream.core.exceptions import EdgestreamError

__all__ = ["CloudWatch", "Series", "gateway_figures", "parse_metrics", "scrape", "total"]

log = logging.getLogger("edgestream.loop")

#: Called with (topic, record) for each first copy read (fleet.stats rows: the JSON object).
RecordSink = Callable[[str, dict[str, Any]], None]

Series = dict[str, list[tuple[dict[str, str], float]]]


def parse_metrics(text: str) -> Series:
    """Sample name -> [(labels, value)] of a Prometheus text page."""
    out: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return out


def scrape(url: str, timeout: float = 2.0) -> Series | None:
    """One ``/metrics`` page parsed, None when the endpoint does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return parse_metrics(resp.read().decode())
    except (OSError, ValueError):
        return None


def total(series: Series, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(
        v for lab, v in series.get(name, []) if all(lab.get(k) == x for k, x in labels.items())
    )


def gateway_figures(worker: Series | None, forwarder: Series | None) -> dict[str, Any]:
    """The console's figures of one gateway from its worker's and forwarder's pages."""
    out: dict[str, Any] = {}
    if worker is not None:
        out["processed"] = int(total(worker, "edgestream_readings_total"))
        out["dlq"] = int(total(worker, "edgestream_dlq_records_total"))
        reasons: Counter[str] = Counter()
        for lab, v in worker.get("edgestream_dlq_records_total", []):
            reasons[lab.get("reason", "?")] += int(v)
        out["dlq_reasons"] = dict(reasons)
        out["late"] = int(total(worker, "edgestream_late_readings_total"))
        out["models"] = {
            lab["topic"].split(".")[-1]: lab["version"]
            for lab, v in worker.get("edgestream_model_info", [])
            if v
        }
    if forwarder is not None:
        out["outbox_depth"] = int(total(forwarder, "edgestream_outbox_depth"))
        out["outbox_age_s"] = total(forwarder, "edgestream_outbox_oldest_age_seconds")
        out["sensor_bytes"] = int(total(forwarder, "edgestream_sensor_bytes_total"))
        out["cloud_bytes"] = int(
            total(forwarder, "edgestream_forward_bytes_total", direction="out")
        )
        out["link_up"] = bool(total(forwarder, "edgestream_forward_link_up"))
    return out


@dataclass
class CloudFigures:
    """What arrived on the cloud broker so far (first copies only)."""

    alerts: int = 0
    summaries: int = 0
    latest_alerts: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=8))
    rollout: Counter[str] = field(default_factory=Counter)  # RolloutEvent.event -> count
    retrain_requests: int = 0
    model_updates: Counter[str] = field(default_factory=Counter)  # action -> count
    latest_updates: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=6))
    fleet_stats: dict[str, dict[str, Any]] = field(default_factory=dict)  # scope|key -> latest
    stats_windows: int = 0
    live_versions: dict[str, dict[str, str]] = field(default_factory=dict)  # gw -> type -> ver


class CloudWatch:
    """Reads the cloud topics of a topology in a thread into :attr:`figures`, and hands each
    record to ``sink`` when one is given. ``topics`` names alerts, summaries, rollout,
    retrain, models and stats; ``reports`` and ``samples`` (forwarded) are read when named."""

    def __init__(
        self,
        bootstrap: str,
        registry: str,
        topics: dict[str, str],
        sink: RecordSink | None = None,
        client_settings: dict[str, object] | None = None,
    ) -> None:
        self.bootstrap, self.registry, self.topics = bootstrap, registry, topics
        self.figures = CloudFigures()
        self.error: str | None = None
        self.sink = sink
        self.client_settings = dict(client_settings or {})

    def run(self, stop: threading.Event) -> None:
        from confluent_kafka import Consumer, TopicPartition

        from edgestream.core.broker import consumer_config
        from edgestream.core.serde import AvroDeserializer
        from edgestream.wire.dedup import DedupReader

        t = self.topics
        forwarded = [t["alerts"], t["summaries"], t["rollout"]]
        forwarded += [t[k] for k in ("reports", "samples") if k in t]
        plain = [t["retrain"], t["models"], t["stats"]]
        settings = self.client_settings
        reader = DedupReader(self.bootstrap, forwarded, self.registry, client_settings=settings)
        decode = AvroDeserializer(self.registry)
        conf = consumer_config(self.bootstrap, f"edgestream-up-{time.time_ns()}", log_level=2)
        consumer = Consumer({**conf, **settings})
        assigned: set[str] = set()
        try:
            while not stop.is_set():
                for d in reader.poll(0.3):
                    self._forwarded(d.topic, d.record)
                    if self.sink is not None:
                        self.sink(d.topic, d.record)
                if len(assigned) < len(plain):
                    with contextlib.suppress(Exception):
                        meta = consumer.list_topics(timeout=2)
                        new = [x for x in plain if x not in assigned and x in meta.topics]
                        parts = [
                            TopicPartition(x, p, 0) for x in new for p in meta.topics[x].partitions
                        ]
                        if parts:
                            consumer.incremental_assign(parts)
                            assigned.update(new)
                for msg in consumer.consume(500, timeout=0.2) if assigned else []:
                    if msg.error() is None and msg.value():
                        self._plain(msg.topic(), msg.value(), decode)
        except Exception as error:  # the console shows it; the loop goes on
            self.error = f"cloud watch stopped: {error}"
            log.exception("cloud watch failed")
        finally:
            reader.close()
            consumer.close()

    def _forwarded(self, topic: str, record: dict[str, Any]) -> None:
        f, t = self.figures, self.topics
        if topic == t["alerts"]:
            f.alerts += 1
            f.latest_alerts.appendleft(record)
        elif topic == t["summaries"]:
            f.summaries += 1
        elif topic == t["rollout"]:
            f.rollout[record.get("event", "?")] += 1
            live = record.get("live_version")
            if live:
                f.live_versions.setdefault(record["gateway_id"], {})[record["device_type"]] = live

    def _plain(self, topic: str, value: bytes, decode: Any) -> None:
        f, t = self.figures, self.topics
        try:
            if topic == t["stats"]:
                record = json.loads(value)
                f.stats_windows += 1
                key = f"{record.get('scope')}|{record.get('scope_key')}"
                f.fleet_stats[key] = record
            else:
                record = decode(value)
        except (ValueError, EdgestreamError):
            return
        if self.sink is not None:
            self.sink(topic, record)
        if topic == t["retrain"]:
            f.retrain_requests += 1
        elif topic == t["models"]:
            f.model_updates[record.get("action", "?")] += 1
            f.latest_updates.appendleft(record)
