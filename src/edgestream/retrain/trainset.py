"""Rebuild a retraining set exactly from a RetrainRequest's data pointer.

The pointer is a list of offset ranges ``[start_offset, end_offset)`` of ``fleet.samples``
partitions (SensorReading records sampled by the gateways). Records are fetched by offset:
a range is complete once the record at ``end_offset - 1`` was read, and an end-of-partition
event below that means the data is not on the broker (an error, never a silent short set).
ListOffsets is never asked (some Kafka-protocol brokers answer it short).

The set is the readings of the model's device type in those ranges, each reading once
(``device_id`` + ``seq`` is the reading id; a forwarder replay repeats it), with every feature
channel present and finite; per device in event-time order.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgestream.core.exceptions import ServiceUnavailable
from edgestream.ml.exceptions import ModelError

__all__ = ["OffsetRange", "TrainingSet", "TrainingSetError", "build_training_set", "fetch_ranges"]


class TrainingSetError(ModelError, ValueError):
    """The data pointer cannot be read back into a training set."""


@dataclass(frozen=True)
class OffsetRange:
    """Records ``[start_offset, end_offset)`` of one partition (the RetrainRequest record)."""

    topic: str
    partition: int
    start_offset: int
    end_offset: int

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> OffsetRange:
        return cls(
            str(record["topic"]),
            int(record["partition"]),
            int(record["start_offset"]),
            int(record["end_offset"]),
        )


@dataclass(frozen=True)
class TrainingSet:
    """One device type's readings from a data pointer, per device in event-time order."""

    device_type: str
    channels: tuple[str, ...]  # every channel of ``values``
    device_ids: np.ndarray  # (n,) str
    seqs: np.ndarray  # (n,) int64
    ts: np.ndarray  # (n,) int64
    values: np.ndarray  # (n, channels) float64
    fetched: int  # records in the ranges
    duplicates: int  # repeated reading ids (dropped)
    other_types: int  # readings of other device types (not this model's)
    invalid: int  # undecodable, or a feature channel missing / not finite

    def __len__(self) -> int:
        return len(self.ts)

    def reading_ids(self) -> list[str]:
        """``device_id|seq`` of every reading, in set order."""
        return [
            f"{d}|{s}" for d, s in zip(self.device_ids.tolist(), self.seqs.tolist(), strict=True)
        ]

    def columns(self, names: Sequence[str]) -> np.ndarray:
        """The value columns of ``names``, in that order."""
        return self.values[:, [self.channels.index(c) for c in names]]


def fetch_ranges(
    bootstrap: str,
    ranges: Sequence[OffsetRange],
    client_settings: dict[str, object] | None = None,
    timeout: float = 60.0,
) -> list[tuple[OffsetRange, int, bytes | None]]:
    """The raw values of every record in ``ranges`` as (range, offset, value), in range order.

    Raises :class:`TrainingSetError` when a range reaches past the data on the broker and
    :class:`ServiceUnavailable` when the broker does not answer within ``timeout`` seconds.
    """
    from confluent_kafka import Consumer, TopicPartition

    from edgestream.core.broker import consumer_config

    conf = consumer_config(
        bootstrap,
        "edgestream-retrain-fetch",
        **{"enable.auto.commit": False, "enable.partition.eof": True, "fetch.wait.max.ms": 50},
    )
    conf.update(client_settings or {})
    consumer = Consumer(conf)
    out: list[tuple[OffsetRange, int, bytes | None]] = []
    known: dict[str, list[int]] = {}
    try:
        for rng in ranges:
            if rng.start_offset < 0 or rng.end_offset < rng.start_offset:
                raise TrainingSetError(f"bad data pointer range {rng}: need 0 <= start <= end")
            if rng.end_offset == rng.start_offset:
                continue
            if rng.topic not in known:
                known[rng.topic] = _partitions(consumer, rng.topic, bootstrap)
            if rng.partition not in known[rng.topic]:
                raise TrainingSetError(
                    f"data pointer names {rng.topic}[{rng.partition}], which is not on the cloud "
                    f"broker {bootstrap} (partitions there: {known[rng.topic] or 'no such topic'})"
                )
            consumer.assign([TopicPartition(rng.topic, rng.partition, rng.start_offset)])
            out += _read_range(consumer, rng, bootstrap, timeout)
            consumer.unassign()
    finally:
        consumer.close()
    return out


def _read_range(
    consumer: Any, rng: OffsetRange, bootstrap: str, timeout: float
) -> list[tuple[OffsetRange, int, bytes | None]]:
    """The records of ``rng`` from ``consumer`` (assigned at its start offset)."""
    from confluent_kafka import KafkaError

    out: list[tuple[OffsetRange, int, bytes | None]] = []
    last = rng.end_offset - 1
    deadline = time.monotonic() + timeout
    while True:
        if time.monotonic() > deadline:
            raise ServiceUnavailable(
                f"{rng.topic}[{rng.partition}]: offsets {rng.start_offset}.."
                f"{rng.end_offset} not read within {timeout:g} s from {bootstrap}: "
                "is the cloud broker up (`edgestream stack status`)?"
            )
        for msg in consumer.consume(1000, timeout=0.5):
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF and msg.offset() <= last:
                    raise TrainingSetError(
                        f"data pointer {rng.topic}[{rng.partition}] "
                        f"{rng.start_offset}..{rng.end_offset}: the partition ends at "
                        f"offset {msg.offset()} (the samples are gone or never arrived)"
                    )
                continue
            offset = msg.offset()
            if rng.start_offset <= offset <= last:
                out.append((rng, offset, msg.value()))
            if offset >= last:
                return out


def build_training_set(
    raw: Sequence[tuple[OffsetRange, int, bytes | None]],
    decode: Any,
    device_type: str,
    channels: Sequence[str],
    required: Sequence[str],
) -> TrainingSet:
    """Decode ``raw`` records (``decode(bytes) -> dict``) into one device type's set.

    ``channels`` are kept as value columns; a reading missing any ``required`` channel (or
    with a non-finite value in one) counts as invalid. Pure: no broker.
    """
    from edgestream.core.exceptions import SerdeError

    seen: set[tuple[str, int]] = set()
    ids: list[str] = []
    seqs: list[int] = []
    ts: list[int] = []
    rows: list[list[float]] = []
    duplicates = other = invalid = 0
    for _rng, _offset, value in raw:
        try:
            record = decode(value) if value is not None else None
        except SerdeError:
            record = None
        if record is None:
            invalid += 1
            continue
        if record.get("device_type") != device_type:
            other += 1
            continue
        seq = int(record.get("seq", -1))
        key = (str(record["device_id"]), seq if seq >= 0 else -int(record["ts"]) - 2)
        if key in seen:
            duplicates += 1
            continue
        values = record.get("channels") or {}
        if not all(c in values and math.isfinite(values[c]) for c in required):
            invalid += 1
            continue
        seen.add(key)
        ids.append(key[0])
        seqs.append(seq)
        ts.append(int(record["ts"]))
        rows.append([float(values.get(c, math.nan)) for c in channels])
    device_ids = np.array(ids, dtype=str)
    t = np.array(ts, dtype=np.int64)
    order = np.lexsort((t, device_ids)) if len(t) else np.zeros(0, dtype=np.int64)
    return TrainingSet(
        device_type=device_type,
        channels=tuple(channels),
        device_ids=device_ids[order],
        seqs=np.array(seqs, dtype=np.int64)[order],
        ts=t[order],
        values=np.array(rows, dtype=np.float64).reshape(-1, len(channels))[order],
        fetched=len(raw),
        duplicates=duplicates,
        other_types=other,
        invalid=invalid,
    )


def _partitions(consumer: Any, topic: str, bootstrap: str) -> list[int]:
    from confluent_kafka import KafkaException

    from edgestream.core.offsets import partitions_of

    try:
        return partitions_of(consumer, topic) or []
    except KafkaException as error:
        raise ServiceUnavailable(
            f"no Kafka broker answers at {bootstrap} ({error.args[0].str()}): start it "
            "(`edgestream stack start`) or pass --cloud-bootstrap HOST:PORT"
        ) from None
