"""Partitions and exact end offsets of a topic, read from the broker's own answers.

The end of a partition is read from a fetch: start at the ListOffsets answer, read up to the
first end-of-partition event (librdkafka's ``enable.partition.eof``), whose offset is the high
watermark of that fetch. On a correct broker nothing is read again; a broker whose ListOffsets
answer is short (some Kafka-protocol brokers return the last batch's base offset + 1) costs at
most its last batch, and the result is still exact.

A stored read position can stop being valid: the topic was deleted and created again (a new
topic id, offsets from 0), or the broker lost or purged its log. :func:`reset_reason` names
why; every reader of ours then follows one policy: **reset to the log start of the topic as
it is now and read everything again** (nothing new is skipped; records read twice are
dropped downstream by their deterministic ids), logged as a warning, counted in
``edgestream_offset_resets_total{gateway,topic,partition,reason}`` and put on ``edge.status``
as an ``offset_reset`` event (:func:`report_reset`; the gateway worker for its sensor topics,
the forwarder for the edge topics it reads).

>>> reset_reason(position=500, start=0, end=120)
'beyond_log_end'
>>> reset_reason(position=3, start=10, end=50), reset_reason(position=20, start=10, end=50)
('before_log_start', None)
>>> reset_reason(position=20, start=0, end=50, recreated=True)
'topic_recreated'
>>> event = reset_event("forward", "gw-1", "edge.alerts", 0, 520, 0, "beyond_log_end")
>>> event["event"], event["component"], event["from"], event["to"]
('offset_reset', 'forward', 520, 0)
"""

from __future__ import annotations

import logging
import time
from typing import Any

from edgestream.core.exceptions import ServiceUnavailable
from edgestream.core.metrics import count_offset_reset

__all__ = [
    "aio_partitions",
    "committed_offsets",
    "exact_end_offsets",
    "partitions_of",
    "read_to_end",
    "report_reset",
    "reset_event",
    "reset_reason",
    "topic_id",
]


def reset_reason(position: int, start: int, end: int, recreated: bool = False) -> str | None:
    """Why a stored ``position`` cannot be read on a partition whose log spans
    ``[start, end)``: ``topic_recreated`` (its topic id changed), ``beyond_log_end`` (the log
    is shorter than what was read: recreated or purged), ``before_log_start`` (retention
    deleted records not read yet); None when it can be read."""
    if recreated:
        return "topic_recreated"
    if position > end:
        return "beyond_log_end"
    if position < start:
        return "before_log_start"
    return None


def reset_event(
    component: str,
    gateway: str,
    topic: str,
    partition: int,
    position: int,
    start: int,
    reason: str,
) -> dict[str, Any]:
    """The ``edge.status`` record of one position reset (operators follow that topic);
    ``component``: the process that reset its position (``edge``: the gateway worker,
    ``forward``: the forwarder)."""
    return {
        "event": "offset_reset",
        "component": component,
        "gateway": gateway,
        "topic": topic,
        "partition": partition,
        "from": position,
        "to": start,
        "reason": reason,
        "ts": int(time.time() * 1000),
    }


def report_reset(
    component: str,
    gateway: str,
    topic: str,
    partition: int,
    position: int,
    start: int,
    reason: str,
) -> dict[str, Any]:
    """Log (a warning on ``edgestream.<component>``) and count one reset to the log start;
    returns its ``edge.status`` event (:func:`reset_event`)."""
    logging.getLogger(f"edgestream.{component}").warning(
        "%s[%d]: read position %d is not valid (%s): reading again from the log start %d",
        topic,
        partition,
        position,
        reason,
        start,
    )
    count_offset_reset(gateway, topic, partition, reason)
    return reset_event(component, gateway, topic, partition, position, start, reason)


def topic_id(admin: object, topic: str, timeout: float = 10.0) -> str | None:
    """The topic id (a UUID string) of ``topic`` from a confluent-kafka ``AdminClient``;
    None when the topic does not exist. A deleted and recreated topic has a new id."""
    from confluent_kafka import KafkaError, KafkaException, TopicCollection

    found = admin.describe_topics(  # type: ignore[attr-defined]
        TopicCollection([topic]), request_timeout=timeout
    )
    try:
        return str(found[topic].result(timeout).topic_id)
    except KafkaException as error:
        if error.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            return None
        raise


def committed_offsets(consumer: object, parts: list, timeout: float = 30.0) -> list:
    """``consumer.committed(parts)``, retried while the group coordinator is not ready yet.

    A broker that has just started (or a group used for the first time, which creates the
    offsets topic) answers ``NOT_COORDINATOR`` / ``COORDINATOR_LOAD_IN_PROGRESS`` /
    ``COORDINATOR_NOT_AVAILABLE`` for a moment; librdkafka does not retry those here.
    """
    from confluent_kafka import KafkaError, KafkaException

    retriable = {KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                 KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError._TIMED_OUT}  # fmt: skip
    deadline = time.monotonic() + timeout
    while True:
        try:
            return consumer.committed(parts, timeout=10)  # type: ignore[attr-defined]
        except KafkaException as error:
            if error.args[0].code() not in retriable or time.monotonic() > deadline:
                raise
            time.sleep(0.25)


async def aio_partitions(consumer: object, topic: str) -> list[int] | None:
    """The partition ids of ``topic`` (sorted) for an aiokafka consumer, None when missing.

    aiokafka's ``partitions_for_topic`` answers only for topics its client already tracks
    (subscribed or assigned), and ``topics()`` does not add any: a reader that assigns
    partitions itself asks the cluster's metadata directly.
    """
    cluster = await consumer._client.fetch_all_metadata()  # type: ignore[attr-defined]
    parts = cluster.partitions_for_topic(topic)
    return sorted(parts) if parts else None


def partitions_of(consumer: object, topic: str, timeout: float = 10.0) -> list[int] | None:
    """The partition ids of ``topic`` (sorted), None when the topic does not exist."""
    meta = consumer.list_topics(topic, timeout=timeout)  # type: ignore[attr-defined]
    found = meta.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        return None
    return sorted(found.partitions)


def _reader_config(bootstrap: str, client_settings: dict[str, object] | None) -> dict[str, object]:
    """A group-less reader: no commits, end-of-partition events, short fetch waits."""
    return {
        "bootstrap.servers": bootstrap,
        "group.id": "edgestream-offsets",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "fetch.wait.max.ms": 10,
        "log_level": 2,
        **(client_settings or {}),
    }


def exact_end_offsets(
    bootstrap: str,
    topic: str,
    client_settings: dict[str, object] | None = None,
    timeout: float = 30.0,
) -> dict[int, int]:
    """Partition -> end offset (the offset the next record will get); {} for a missing topic."""
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    consumer = Consumer(_reader_config(bootstrap, client_settings))
    try:
        try:
            parts = partitions_of(consumer, topic, timeout)
        except KafkaException as error:
            raise ServiceUnavailable(
                f"no Kafka broker answers at {bootstrap} ({error.args[0].str()}): start it "
                "(`edgestream stack start`) or pass --bootstrap HOST:PORT"
            ) from None
        if parts is None:
            return {}
        starts = []
        for p in parts:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            starts.append(TopicPartition(topic, p, max(high, 0)))
        consumer.assign(starts)
        ends: dict[int, int] = {}
        deadline = time.monotonic() + timeout
        while len(ends) < len(parts):
            if time.monotonic() > deadline:
                missing = sorted(set(parts) - set(ends))
                raise ServiceUnavailable(
                    f"{topic}: no end of partition(s) {missing} within {timeout:g} s from "
                    f"{bootstrap}: is the broker overloaded?"
                )
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            error = msg.error()
            if error is not None and error.code() == KafkaError._PARTITION_EOF:
                ends.setdefault(msg.partition(), msg.offset())
        return ends
    finally:
        consumer.close()


def read_to_end(
    bootstrap: str,
    topic: str,
    client_settings: dict[str, object] | None = None,
    timeout: float = 30.0,
) -> list[Any]:
    """Every record of ``topic`` from its log start up to its end as it is now (confluent
    ``Message``s in partition then offset order); [] for a missing or empty topic.

    The one "read a topic to its end" of the project: the ends come from
    :func:`exact_end_offsets`, so records produced while it reads are not waited for."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    left = {p: end for p, end in exact_end_offsets(bootstrap, topic, client_settings,
                                                   timeout).items() if end > 0}  # fmt: skip
    if not left:
        return []
    consumer = Consumer(_reader_config(bootstrap, client_settings))
    out: list[Any] = []
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in left])
        deadline = time.monotonic() + timeout
        while left:
            if time.monotonic() > deadline:
                raise ServiceUnavailable(
                    f"{topic}: partition(s) {sorted(left)} not read to their end within "
                    f"{timeout:g} s from {bootstrap}: is the broker overloaded?"
                )
            for msg in consumer.consume(1000, timeout=0.5):
                p, offset, error = msg.partition(), msg.offset(), msg.error()
                if p not in left:
                    continue
                if error is None and offset < left[p]:
                    out.append(msg)
                last = error is None and offset >= left[p] - 1
                eof = error is not None and error.code() == KafkaError._PARTITION_EOF
                if last or (eof and offset >= left[p]):
                    del left[p]
    finally:
        consumer.close()
    return sorted(out, key=lambda m: (m.partition(), m.offset()))
