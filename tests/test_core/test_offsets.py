"""Exact end offsets from fetches, checked against the broker's ListOffsets(latest), and the
one topic-to-end reader checked record by record against what was produced."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from edgestream.core.broker import ensure_topics
from edgestream.core.offsets import exact_end_offsets, read_to_end
from edgestream.core.stack import StackStatus

pytestmark = pytest.mark.integration


def test_end_offsets_count_every_record(stack: StackStatus) -> None:
    bootstrap = str(stack.endpoints()["cloud"])
    ensure_topics(bootstrap, {"offsets.test": 2})
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    sent = {0: 0, 1: 0}
    for size in (1, 1, 10, 5, 100):  # one batch each
        for i in range(size):
            producer.produce("offsets.test", b"x", partition=i % 2)
            sent[i % 2] += 1
        assert producer.flush(10) == 0
    assert exact_end_offsets(bootstrap, "offsets.test") == sent
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "offsets-test"})
    try:
        listed = {p: consumer.get_watermark_offsets(TopicPartition("offsets.test", p), 10)[1]
                  for p in sent}  # fmt: skip
    finally:
        consumer.close()
    # Apache Kafka's ListOffsets(latest) is the log end: the fetch-based end agrees with it
    assert listed == sent
    assert exact_end_offsets(bootstrap, "no.such.topic") == {}


def test_read_to_end_returns_every_record_once_in_partition_then_offset_order(
    stack: StackStatus,
) -> None:
    bootstrap = str(stack.endpoints()["cloud"])
    ensure_topics(bootstrap, {"read.test": 3, "read.empty": 1})
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    sent: dict[int, list[bytes]] = {0: [], 1: [], 2: []}
    for i in range(250):  # partition 2 gets nothing after i = 9: an early end
        p = i % 3 if i < 10 else i % 2
        value = f"r{i}".encode()
        producer.produce("read.test", value, partition=p)
        sent[p].append(value)
        if i % 40 == 0:
            assert producer.flush(10) == 0  # several batches
    assert producer.flush(10) == 0
    got = read_to_end(bootstrap, "read.test")
    assert [(m.partition(), m.value()) for m in got] == [
        (p, v) for p in sorted(sent) for v in sent[p]
    ]
    assert [m.offset() for m in got if m.partition() == 0] == list(range(len(sent[0])))
    assert read_to_end(bootstrap, "read.empty") == []
    assert read_to_end(bootstrap, "no.such.topic") == []
