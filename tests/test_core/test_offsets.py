"""Exact end offsets from fetches, checked against the broker's ListOffsets(latest)."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from edgestream.core.broker import ensure_topics
from edgestream.core.offsets import exact_end_offsets
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
