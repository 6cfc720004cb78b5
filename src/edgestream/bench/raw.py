"""Raw consumer baselines: how fast plain Kafka clients read a topic and decode every record
with our :meth:`AvroDeserializer.decode_many` - the ceiling a gateway is compared against.

Both read partition 0 (and the others) from offset 0 by assignment (no group join) until
they hold the number of messages the caller knows was written (fetch-based: never from
ListOffsets end offsets, short on some brokers).

>>> baseline(messages=2000, readings=100_000, seconds=0.5)["readings_per_s"]
200000
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import astuple, dataclass
from typing import Any

from edgestream.bench.common import BenchError, TopicReader, rate
from edgestream.core.offsets import aio_partitions
from edgestream.core.serde import AvroDeserializer

Progress = Callable[[int], None]


def baseline(messages: int, readings: int, seconds: float) -> dict[str, Any]:
    """The result of one baseline: counts, seconds, messages/s and readings/s."""
    return {
        "messages": messages,
        "readings": readings,
        "seconds": round(seconds, 3),
        "messages_per_s": round(rate(messages, seconds)),
        "readings_per_s": round(rate(readings, seconds)),
    }


def _readings(records: list[Any], frames: bool) -> int:
    if not frames:
        return len(records)
    return sum(len(r["ts"]) if isinstance(r, dict) else 0 for r in records)


@dataclass(frozen=True)
class RawTopic:
    """The topic a baseline reads: its broker, the registry to decode with, the number of
    messages it holds, and whether they are SensorFrames (readings: their timestamps)."""

    bootstrap: str
    registry: str
    topic: str
    messages: int
    frames: bool = False


def confluent_baseline(
    src: RawTopic, on_progress: Progress | None = None, timeout: float = 120.0
) -> tuple[dict[str, Any], list[bytes]]:
    """confluent-kafka ``consume`` + ``decode_many``; also returns the values it read (in
    offset order for a 1-partition topic) for the in-process reference."""
    bootstrap, registry, topic, messages, frames = astuple(src)
    decode = AvroDeserializer(registry)
    values: list[bytes] = []
    readings = 0
    deadline = time.monotonic() + timeout
    with closing(TopicReader(bootstrap, topic)) as reader:
        start = time.perf_counter()
        while len(values) < messages:
            batch = [m.value() for m in reader.poll(0.2)]
            readings += _readings(decode.decode_many(batch), frames)
            values += batch
            if on_progress is not None:
                on_progress(len(values))
            if time.monotonic() > deadline:
                raise BenchError(f"{topic}: fetched {len(values)} of {messages} in {timeout} s")
        seconds = time.perf_counter() - start
    return baseline(len(values), readings, seconds), values


async def aiokafka_baseline(
    src: RawTopic, on_progress: Progress | None = None, timeout: float = 120.0
) -> dict[str, Any]:
    """aiokafka ``getmany`` (Faust's client) + ``decode_many``."""
    bootstrap, registry, topic, messages, frames = astuple(src)
    from aiokafka import AIOKafkaConsumer, TopicPartition

    decode = AvroDeserializer(registry)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = await aio_partitions(consumer, topic) or [0]
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        got = readings = 0
        deadline = time.monotonic() + timeout
        start = time.perf_counter()
        while got < messages:
            for batch in (await consumer.getmany(timeout_ms=200, max_records=10_000)).values():
                records = decode.decode_many([m.value for m in batch])  # type: ignore[misc]
                readings += _readings(records, frames)
                got += len(batch)
            if on_progress is not None:
                on_progress(got)
            if time.monotonic() > deadline:
                raise BenchError(f"{topic}: aiokafka got {got} of {messages} in {timeout} s")
        seconds = time.perf_counter() - start
    finally:
        await consumer.stop()
    return baseline(got, readings, seconds)
