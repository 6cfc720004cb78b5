"""Raw sensor bytes in: what the gateway's sensors put on its edge broker.

Definition (the denominator of the bandwidth ratio): the sum of key + value + header bytes
of every record on the gateway's sensor topics, read by fetching each partition from where
the meter stopped. These are the serialized records as the sensors produced them, before any
Kafka batch compression; broker framing is not counted. Its offsets and its byte count are
stored in the outbox in one transaction, so a restart neither loses nor double-counts.

It reads values only to measure them (one extra fetch of a low-rate stream on the local
broker); the gateway's own consumer group is not involved.
"""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from edgestream.core.broker import consumer_config

__all__ = ["SensorMeter", "record_bytes"]


def record_bytes(msg: Any) -> int:
    """Key + value + header bytes of a consumed message."""
    size = len(msg.value() or b"") + len(msg.key() or b"")
    for name, value in msg.headers() or ():
        size += len(name) + len(value or b"")
    return size


class SensorMeter:
    """Counts sensor bytes from stored offsets; :meth:`take` hands over what was counted."""

    def __init__(
        self, bootstrap: str, topics: list[str], start: dict[tuple[str, int], int], group: str
    ) -> None:
        conf = consumer_config(
            bootstrap,
            group,
            **{"enable.auto.commit": False, "fetch.wait.max.ms": 100, "log_level": 2},
        )
        self.consumer = Consumer(conf)
        self.topics = list(topics)
        self.start = dict(start)
        self.offsets: dict[tuple[str, int], int] = {}
        self.bytes = 0
        self._assigned: set[str] = set()
        self._next_refresh = 0.0

    def _refresh(self) -> None:
        now = time.monotonic()
        if now < self._next_refresh or len(self._assigned) == len(self.topics):
            return
        self._next_refresh = now + 5.0
        meta = self.consumer.list_topics(timeout=5)
        parts = []
        for topic in self.topics:
            if topic in self._assigned or topic not in meta.topics:
                continue
            for p in meta.topics[topic].partitions:
                parts.append(TopicPartition(topic, p, self.start.get((topic, p), OFFSET_BEGINNING)))
            self._assigned.add(topic)
        if parts:
            self.consumer.incremental_assign(parts)

    def poll(self, max_messages: int = 10_000) -> int:
        """Count what is there now (no waiting); returns the records counted."""
        self._refresh()
        if not self._assigned:
            return 0
        messages = self.consumer.consume(max_messages, timeout=0)
        for msg in messages:
            if msg.error() is None:
                self.bytes += record_bytes(msg)
                self.offsets[(msg.topic(), msg.partition())] = msg.offset() + 1
        return len(messages)

    def take(self) -> tuple[dict[tuple[str, int], int], int]:
        """(offsets reached, bytes counted) since the last take."""
        offsets, counted = self.offsets, self.bytes
        self.offsets, self.bytes = {}, 0
        return offsets, counted

    def close(self) -> None:
        self.consumer.close()
