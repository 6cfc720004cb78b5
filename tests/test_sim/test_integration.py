"""Real Kafka broker + real registry: everything sent decodes with confluent-kafka's own Avro
deserializer, and the readings are exactly those the labels file's run totals name."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from edgestream.core.broker import consumer_config
from edgestream.core.stack import StackStatus
from edgestream.sim import SimProgress, SimResult, read_labels, simulate

pytestmark = pytest.mark.integration


def _ms(value: object) -> int:
    return round(value.timestamp() * 1000) if isinstance(value, datetime) else int(value)


def _consume(bootstrap: str, registry: str, topics: list[str], readings: int) -> list[dict]:
    """Read every partition of ``topics`` from the start until ``readings`` readings arrived."""
    decode = AvroDeserializer(SchemaRegistryClient({"url": registry}))
    consumer = Consumer(consumer_config(bootstrap, f"sim-it-{time.time_ns()}"))
    try:
        metadata = consumer.list_topics(timeout=10)
        consumer.assign(
            [
                TopicPartition(t, p, 0)  # explicit offsets: no group join needed
                for t in topics
                for p in metadata.topics[t].partitions
            ]
        )
        values: list[dict] = []
        got = 0
        deadline = time.monotonic() + 60
        while got < readings and time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=1.0):
                assert msg.error() is None, msg.error()
                ctx = SerializationContext(msg.topic(), MessageField.VALUE)
                value = decode(msg.value(), ctx)
                assert msg.key() == value["device_id"].encode()
                values.append(value)
                got += len(value["ts"]) if "first_seq" in value else 1
        time.sleep(0.5)  # anything beyond the expected readings would be a duplicate
        for msg in consumer.consume(1000, timeout=1.0):
            values.append(
                decode(msg.value(), SerializationContext(msg.topic(), MessageField.VALUE))
            )
        return values
    finally:
        consumer.close()


@pytest.mark.parametrize("frames", [1, 25])
def test_simulated_records_decode_and_match_the_labels(
    stack: StackStatus, tmp_path: Path, frames: int
) -> None:
    endpoints = stack.endpoints()
    bootstrap = endpoints["edge"]["gw-1"]  # type: ignore[index]
    registry = str(endpoints["registry"])
    labels_path = tmp_path / "labels.jsonl"
    result = simulate(
        bootstrap=bootstrap,
        registry=registry,
        devices=8,
        rate=5.0,
        duration=75.0,
        seed=42,
        start_time=1_718_000_000_000,
        anomaly_rate=0.02,
        late_fraction=0.05,
        drift_at=30.0,
        frames=frames,
        topic=f"it.frames{frames}.{{device_type}}",
        partitions=2,
        labels=labels_path,
        fast=True,
    )
    labels = read_labels(labels_path)
    assert labels.run is not None
    assert result.readings == labels.run.readings == 8 * 375
    assert result.messages == labels.run.messages and result.topics == labels.run.topics
    values = _consume(bootstrap, registry, sorted(result.topics), result.readings)
    assert len(values) == result.messages
    ids: list[tuple[str, int]] = []
    for value in values:
        if frames > 1:
            assert set(value) >= {"first_seq", "ts", "channels"}
            ids += [(value["device_id"], value["first_seq"] + i) for i in range(len(value["ts"]))]
            assert all(len(col) == len(value["ts"]) for col in value["channels"].values())
        else:
            ids.append((value["device_id"], value["seq"]))
            assert _ms(value["ts"]) > 1_718_000_000_000
    assert len(ids) == len(set(ids))
    assert set(ids) == labels.reading_ids()
    assert labels.anomalies and labels.late and labels.drifts


def test_real_time_pacing_in_a_thread_stops_cleanly(stack: StackStatus, tmp_path: Path) -> None:
    endpoints = stack.endpoints()
    bootstrap = endpoints["edge"]["gw-1"]  # type: ignore[index]
    stop = threading.Event()
    results: list[SimResult] = []
    progress: list[SimProgress] = []
    thread = threading.Thread(
        target=lambda: results.append(
            simulate(
                bootstrap=bootstrap,
                registry=str(endpoints["registry"]),
                devices=4,
                rate=10.0,
                duration=600.0,
                late_fraction=0.2,
                topic="it.paced.{device_type}",
                labels=tmp_path / "paced.jsonl",
                stop=stop,
                on_progress=progress.append,
            )
        )
    )
    started = time.monotonic()
    thread.start()
    deadline = started + 60  # stop once it is under way (a positive sign, not a fixed sleep)
    while not (progress and progress[-1].readings >= 40) and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    thread.join(timeout=30)
    elapsed = time.monotonic() - started
    assert not thread.is_alive()
    (result,) = results
    labels = read_labels(tmp_path / "paced.jsonl")
    assert result.stopped and labels.run is not None and labels.run.stopped
    # paced: never ahead of 4 devices x 10 Hz over the measured run (one batch of slack)
    assert 40 <= result.readings <= 40 * elapsed + 40, (result.readings, elapsed)
    assert result.readings == labels.run.readings
    assert len(labels.late) == result.late_readings > 0  # pending late readings were flushed
    assert progress and progress[-1].readings == result.readings
