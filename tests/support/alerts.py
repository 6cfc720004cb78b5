"""AnomalyAlerts produced to a cloud topic the way the forwarder produces them."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Producer

from edgestream.core.broker import ensure_topics
from edgestream.core.serde import AvroSerializer, subject_for
from edgestream.core.stack import StackStatus
from tests.support.records import alert

SITES = ("plant-a", "plant-b")
SEVERITIES = ("info", "warning", "critical")


class Cloud:
    """Produces AnomalyAlerts to one topic the way the forwarder does (Confluent Avro, key =
    device id, ``gateway_seq`` per gateway), replays included."""

    def __init__(self, status: StackStatus, topic: str) -> None:
        ends = status.endpoints()
        self.bootstrap, self.registry = str(ends["cloud"]), str(ends["registry"])
        self.topic = topic
        ensure_topics(self.bootstrap, {topic: 3})
        self.serialize = AvroSerializer(self.registry, "AnomalyAlert", subject_for(topic))
        self.producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5})
        self.seq = 0
        self.sent: list[dict[str, Any]] = []

    def incident(self, n: int, start_ts: int, gateway: str = "gw-1") -> list[dict[str, Any]]:
        """``n`` alerts of varied site/device/severity, each its own record."""
        records = []
        for i in range(n):
            self.seq += 1
            device = f"dev-{i % 4}"
            record = {
                **alert(device, start_ts + i * 1000, gateway, number=i),
                "site": SITES[i % 2],
                "severity": SEVERITIES[i % 3],
                "gateway_seq": self.seq,
            }
            records.append(record)
        self.send(records)
        self.sent += records
        return records

    def send(self, records: list[dict[str, Any]], batch: int = 1000) -> None:
        for i, record in enumerate(records):
            key = record["device_id"].encode()
            self.producer.produce(self.topic, self.serialize(record), key)
            if (i + 1) % batch == 0:
                self.producer.flush(10)
        assert self.producer.flush(10) == 0
