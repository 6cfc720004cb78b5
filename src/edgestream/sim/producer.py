"""Send a simulator run to Kafka: Avro (Confluent wire format), paced or as fast as possible.

Pacing maps virtual time to the wall clock: a message is sent ``(emit_ts - start) / speed``
after the run started; ``fast`` sends the same messages without sleeping. The key is the
device id; the Kafka timestamp is the virtual send time. The labels file is written when the
run ends (also when it is stopped early or the broker fails). A broker restart or a recreated
topic does not stop a run (:mod:`edgestream.sim.sender`).

>>> result = SimResult(readings=10, messages=2, bytes=900, seconds=0.5, topics={"t": 2})
>>> result.summary()
'sent 10 readings in 2 messages (900 B) to t in 0.50 s (20 readings/s)'
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from edgestream.core import broker
from edgestream.core.exceptions import SchemaError
from edgestream.core.registry.client import registry_client
from edgestream.core.serde import AvroSerializer, subject_for
from edgestream.sim.config import SimConfig
from edgestream.sim.exceptions import ProduceError
from edgestream.sim.labels import write_labels
from edgestream.sim.sender import Sender
from edgestream.sim.simulator import Simulator

#: Producer settings on top of :func:`edgestream.core.broker.producer_config`: big batches,
#: murmur2 partitioning (same partition per key as the Java client and aiokafka/Faust).
PRODUCER_OVERRIDES: dict[str, object] = {
    "linger.ms": 50,
    "batch.size": 1024 * 1024,
    "queue.buffering.max.messages": 500_000,
    "queue.buffering.max.kbytes": 256 * 1024,
    "partitioner": "murmur2_random",
}
PROGRESS_EVERY_S = 0.25


@dataclass(frozen=True)
class SimProgress:
    """A progress report (the CLI draws it; ``up`` can show it)."""

    readings: int
    messages: int
    bytes: int
    elapsed_s: float
    late_pending: int
    expected: int | None


@dataclass(frozen=True)
class SimResult:
    """What a run sent. ``as_dict()`` is the CLI's ``--json`` line."""

    readings: int
    messages: int
    bytes: int
    seconds: float
    topics: dict[str, int] = field(default_factory=dict)
    labels: str | None = None
    anomalous_readings: int = 0
    late_readings: int = 0
    frames: int = 0
    stopped: bool = False

    @property
    def rate(self) -> float:
        return self.readings / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": round(self.seconds, 3), "rate": round(self.rate, 1)}

    def summary(self) -> str:
        topics = ", ".join(self.topics) or "no topic"
        size = _human_bytes(self.bytes)
        line = (
            f"sent {self.readings:,} readings in {self.messages:,} messages ({size}) to {topics}"
            f" in {self.seconds:.2f} s ({self.rate:,.0f} readings/s)"
        )
        if self.stopped:
            line += ", stopped early"
        if self.labels:
            line += f"; labels: {self.labels}"
        return line


def _human_bytes(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n} B"


def simulate(
    config: SimConfig | None = None,
    *,
    bootstrap: str,
    registry: Any,
    stop: threading.Event | None = None,
    on_progress: Callable[[SimProgress], None] | None = None,
    producer_overrides: dict[str, object] | None = None,
    **changes: Any,
) -> SimResult:
    """Run the simulator against a broker and a schema registry; returns the totals.

    ``registry`` is a URL or a ``SchemaRegistryClient``. ``changes`` override fields of
    ``config`` (``simulate(bootstrap=..., registry=..., devices=5, fast=True)``). Setting
    ``stop`` ends the run early (pending late readings and open frames are still sent).
    Safe to call from a thread.
    """
    config = config or SimConfig()
    if changes:
        config = config.with_(**changes)
    sim = Simulator(config)
    serializers = _serializers(sim, config, registry)
    broker.ensure_topics(bootstrap, dict.fromkeys(sim.topics, config.partitions))
    settings = {**PRODUCER_OVERRIDES, **(producer_overrides or {})}
    sender = Sender(
        broker.producer_config(bootstrap, **settings), dict.fromkeys(sim.topics, config.partitions)
    )
    errors, begin, totals = sender.errors, time.monotonic(), _Totals()
    try:
        _send_all(sim, serializers, sender, stop or threading.Event(), on_progress, begin, totals)
        remaining = sender.flush(60.0)
    finally:
        sender.close()
        labels = sim.labels()
        labels_path = None if config.labels is None else str(write_labels(config.labels, labels))
    seconds = time.monotonic() - begin
    if errors or remaining:
        detail = errors[0] if errors else f"{remaining} message(s) not acknowledged in 60 s"
        raise ProduceError(
            f"the broker at {bootstrap} did not take every record: {detail} "
            "(check the broker is running: `edgestream stack status`)"
        )
    if on_progress is not None:
        on_progress(totals.progress(seconds, 0, sim.readings_expected))
    sched = sim.scheduler
    assert labels.run is not None
    return SimResult(
        readings=totals.readings,
        messages=totals.messages,
        bytes=totals.bytes,
        seconds=seconds,
        topics=sched.topics,
        labels=labels_path,
        anomalous_readings=labels.run.anomalous_readings,
        late_readings=labels.run.late_readings,
        frames=sched.frame_messages,
        stopped=sched.stopped,
    )


def _serializers(sim: Simulator, config: SimConfig, registry: Any) -> dict[str, AvroSerializer]:
    """A value serializer per topic, its schema registered now: a registry problem fails
    before anything is produced."""
    client = registry_client(registry) if isinstance(registry, str | dict) else registry
    schema = "SensorFrame" if config.frames > 1 else "SensorReading"
    serializers = {t: AvroSerializer(client, schema, subject_for(t)) for t in sim.topics}
    for ser in serializers.values():
        try:
            _ = ser.schema_id  # registers now: a registry problem fails before producing
        except SchemaError as error:
            raise SchemaError(f"{error}; {_hint(config)}") from None
    return serializers


@dataclass
class _Totals:
    """What a run sent so far."""

    readings: int = 0
    messages: int = 0
    bytes: int = 0

    def progress(self, seconds: float, pending: int, expected: int | None) -> SimProgress:
        return SimProgress(self.readings, self.messages, self.bytes, seconds, pending, expected)


def _send_all(
    sim: Simulator,
    serializers: dict[str, AvroSerializer],
    sender: Sender,
    stop: threading.Event,
    on_progress: Callable[[SimProgress], None] | None,
    begin: float,
    totals: _Totals,
) -> None:
    """Send every message of ``sim`` (paced at its speed unless ``fast``) until it ends,
    ``stop`` is set or a delivery failed; counts into ``totals``."""
    config = sim.config
    next_report = begin
    v0 = sim.start_ms
    speed = config.speed
    for message in sim.messages(stop=stop.is_set):
        if not config.fast:
            wait = (message.emit_ts - v0) / 1000.0 / speed - (time.monotonic() - begin)
            if wait > 0.002:
                stop.wait(wait)  # an early stop wakes us; the message is still sent
        data = serializers[message.topic](message.value)
        sender.produce(message.topic, data, message.key, message.emit_ts)
        totals.messages += 1
        totals.bytes += len(data) + len(message.key)
        totals.readings += message.readings
        sent = totals.messages
        if sent & 0x3FF == 0 or not config.fast:  # paced: watch deliveries at every send
            sender.poll(0)
            if sender.errors:
                break
        if on_progress is not None and (sent & 0xFF == 0 or not config.fast):
            now = time.monotonic()
            if now >= next_report:
                next_report = now + PROGRESS_EVERY_S
                pending = sim.scheduler.pending
                on_progress(totals.progress(now - begin, pending, sim.readings_expected))


def _hint(config: SimConfig) -> str:
    kind = "SensorFrame" if config.frames > 1 else "SensorReading"
    other = "frames" if config.frames > 1 else "readings"
    return (
        f"this run sends {kind} values: if the topic already holds other records, send the "
        f"{other} to their own topic (--topic '{config.topic}.{other}')"
    )
