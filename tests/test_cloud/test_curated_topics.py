"""The curated cloud topics (``fleet.alerts``, ``fleet.summaries``) carry complete ids for any
Kafka client: read here with a plain confluent-kafka Consumer and fastavro (writer schema by
id from the registry), not with edgestream's readers, which would derive missing ids."""

from __future__ import annotations

import json
import time
from datetime import datetime
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from fastavro import parse_schema, schemaless_reader

from edgestream.forward.outbox import Outbox
from edgestream.forward.outbox_config import OutboxConfig
from edgestream.forward.records import Entry
from edgestream.wire.codec import BodyCodec, schema_fingerprint
from edgestream.wire.forms import wire_alert
from tests.support.pipeline import Pipeline
from tests.support.records import alert, random_windows

TUMBLING = frozenset({10_000})


def plain_read(bootstrap: str, registry: str, topic: str) -> list[dict[str, Any]]:
    """Every record of ``topic`` from offset 0 to the end each partition reports by fetch
    (partition EOF), decoded from the Confluent wire format by hand."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"plain-{time.time_ns()}",
                         "enable.auto.commit": False, "enable.partition.eof": True})  # fmt: skip
    client = SchemaRegistryClient({"url": registry})
    schemas: dict[int, Any] = {}
    out: list[dict[str, Any]] = []
    try:
        parts = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        at_end: set[int] = set()
        deadline = time.monotonic() + 60
        while at_end != set(parts) and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error() is not None:
                assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                at_end.add(msg.partition())
                continue
            value = msg.value()
            assert value[0] == 0, "Confluent wire format: magic byte 0"
            schema_id = int.from_bytes(value[1:5], "big")
            if schema_id not in schemas:
                text = client.get_schema(schema_id).schema_str
                schemas[schema_id] = parse_schema(json.loads(text))
            out.append(schemaless_reader(BytesIO(value[5:]), schemas[schema_id], None))
        assert at_end == set(parts), f"{topic}: no end reached in 60 s"
    finally:
        consumer.close()
    return out


def _ms(t: int | datetime) -> int:
    """Epoch ms (plain fastavro gives timestamp-millis as an aware datetime)."""
    return round(t.timestamp() * 1000) if isinstance(t, datetime) else int(t)


def _alert_key(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r["device_id"], r["rule"], r["status"], _ms(r["ts"]))


def _summary_key(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r["scope"], r["scope_key"], _ms(r["window_start"]), _ms(r["window_end"]))


@pytest.mark.integration
def test_curated_topics_carry_the_edge_ids_for_a_plain_client(tmp_path: Path) -> None:
    anomaly = {"rules": [{"name": "pump", "consecutive": 2}],  # open, update and resolved
               "suppression": {"cooldown": "3s", "update_interval": "500ms"}}  # fmt: skip
    p = Pipeline(tmp_path, anomaly=anomaly)
    try:
        p.worker.start()
        p.forwarder.start()
        p.collector.start()
        start = int(time.time() * 1000) - 90_000  # 60 s of history, sent at once
        p.simulate(seconds=60, paced=False, anomaly_rate=0.03, start_time=start)
        assert p.sim is not None
        p.sim.join(120)
        assert not p.sim_error, p.sim_error
        seen = p.wait_cloud_has_edge(timeout=150)  # the positive sign: the cloud has these
        alerts = plain_read(p.cloud, p.registry, "fleet.alerts")
        summaries = plain_read(p.cloud, p.registry, "fleet.summaries")
        edge = p.edge_records()  # read after the cloud: it holds all the cloud has (and more)
    finally:
        p.close()
    edge_alerts = {_alert_key(r): r for r, _ in edge["alert"]}
    edge_sums = {_summary_key(r): r for r, _ in edge["summary"]}
    assert len(edge_alerts) == len(edge["alert"]) and len(edge_sums) == len(edge["summary"])
    assert {r["status"] for r in edge_alerts.values()} == {"open", "update", "resolved"}
    assert {r["scope"] for r in edge_sums.values()} == {"device", "site"}
    cloud_alerts, cloud_sums = {_alert_key(r) for r in alerts}, {_summary_key(r) for r in summaries}
    assert {_alert_key(r) for r, _ in seen["alert"]} <= cloud_alerts <= set(edge_alerts)
    assert {_summary_key(r) for r, _ in seen["summary"]} <= cloud_sums <= set(edge_sums)
    for r in alerts:  # record by record (replays included): the ids the edge assigned
        mine = edge_alerts[_alert_key(r)]
        assert r["alert_id"] is not None and r["incident_id"] is not None, r
        assert (r["alert_id"], r["incident_id"]) == (mine["alert_id"], mine["incident_id"])
    for r in summaries:
        assert r["summary_id"] is not None, r
        assert r["summary_id"] == edge_sums[_summary_key(r)]["summary_id"]


def test_a_backlog_without_ids_gets_them_when_it_drains(tmp_path: Path) -> None:
    """An outbox filled by a forwarder that left derivable ids out (same schemas, earlier
    wire form) drains with every id filled in."""
    earlier = BodyCodec()
    earlier.writers = {k: schema_fingerprint(t) for k, t in earlier.texts.items()}
    sums, _ = random_windows(np.random.default_rng(8), devices=2, windows=2)
    alerts = [alert("pump-0", 5), alert("pump-1", 7, number=2)]
    old = Outbox(OutboxConfig(tmp_path / "o.sqlite", tumbling_sizes=TUMBLING), "gw",
                 codec=earlier)  # fmt: skip
    old.put([Entry.alert({**wire_alert(a), "alert_id": None, "incident_id": None})
             for a in alerts])  # fmt: skip
    old.put([Entry.summary({**s, "summary_id": None}, None, TUMBLING) for s in sums])
    old.close()
    box = Outbox(OutboxConfig(tmp_path / "o.sqlite", tumbling_sizes=TUMBLING), "gw")
    drained = []
    while batch := box.take(100):
        box.mark_sent(batch)
        drained += [box.codec.decode(b.kind, b.body) for b in batch]
        box.ack(batch)
    box.close()
    got = [(r["alert_id"], r["incident_id"]) for r in drained if "alert_id" in r]
    assert got == [(a["alert_id"], a["incident_id"]) for a in alerts]
    assert [r["summary_id"] for r in drained if "summary_id" in r] == [
        s["summary_id"] for s in sums
    ]
