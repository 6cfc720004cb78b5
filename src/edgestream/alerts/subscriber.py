"""Subscribe to the fleet's alerts: ``fleet.alerts`` decoded, deduplicated, filtered.

A subscription reads every partition of the alert topic from the consumer group's committed
offsets (the beginning when there are none) and commits, before it fetches more, the
position after the last alert it handed out (plus the filtered-out records before it). So a
restarted subscriber of the same group resumes where the previous one left off: an alert is
printed again only if the process died between handing it out and the next fetch
(at-least-once, like any Kafka consumer; never lost).

Replays of the forwarder (at-least-once delivery to the cloud) are dropped with the same
:class:`~edgestream.wire.dedup.Deduplicator` the cloud jobs use; a resumed subscriber first
re-reads up to ``prime`` records per partition before its committed offset, without handing
them out, so a late replay of an alert it already printed is still recognised.

``follow=False`` stops at the end of the topic as it was when the subscription reached it;
the end comes from fetch responses (exact on any broker, see :mod:`edgestream.core.offsets`).

**Order.** The backlog, every alert in the topic up to the end each partition had when the
subscription first reached it, is handed out by event time (``ts``, the time of the reading
that raised the alert; ties in arrival order), once all of it is read. Arrival order is not
event time: a partition holds several devices, a gateway back from an outage sends old
alerts late, and partitions are read interleaved. Alerts arriving after that (``follow``)
are handed out as they arrive: a live stream cannot know that no earlier alert is still on
its way, so one with an earlier ``ts`` than an alert already handed out is possible there.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from edgestream.alerts.exceptions import AlertsError
from edgestream.alerts.filters import AlertFilter
from edgestream.core.endpoints import CloudEndpoints
from edgestream.core.exceptions import SerdeError
from edgestream.core.offsets import committed_offsets, partitions_of
from edgestream.wire.dedup import Deduplicator
from edgestream.wire.forms import complete_record
from edgestream.wire.topics import FLEET

__all__ = ["DEFAULT_GROUP", "Alert", "Subscription"]

DEFAULT_GROUP = "edgestream-alerts"
_END = object()  # the end of the topic, when not following


@dataclass(frozen=True)
class Alert:
    """One alert as handed to a subscriber: the decoded AnomalyAlert ``record`` (timestamps
    as epoch ms) and where it was read from."""

    record: dict[str, Any] = field(repr=False)
    topic: str
    partition: int
    offset: int

    def __getitem__(self, name: str) -> Any:
        return self.record[name]

    @property
    def alert_id(self) -> str:
        return str(self.record["alert_id"])

    @property
    def severity(self) -> str:
        return str(self.record.get("severity"))

    def to_dict(self) -> dict[str, Any]:
        """The record, JSON-ready."""
        return dict(self.record)


class Subscription:
    """An iterator (and async iterator) of :class:`Alert` s; see the module doc.

    Use it as a context manager, or call :meth:`close` (which commits the position).
    """

    def __init__(
        self,
        endpoints: CloudEndpoints,
        topic: str = FLEET["alerts"],
        alert_filter: AlertFilter | None = None,
        group: str | None = DEFAULT_GROUP,
        follow: bool = True,
        from_start: bool = False,
        prime: int = 5000,
        poll_timeout: float = 0.5,
    ) -> None:
        from confluent_kafka import Consumer, KafkaException

        from edgestream.core.broker import consumer_config, wait_broker
        from edgestream.core.serde import AvroDeserializer

        wait_broker(endpoints.bootstrap.split(",")[0], timeout=10.0)
        self.topic, self.follow, self.group = topic, follow, group
        self.filter = alert_filter or AlertFilter()
        self.prime = prime
        self.poll_timeout = poll_timeout
        self.dedup = Deduplicator()
        self.decode = AvroDeserializer(endpoints.registry)
        self.stats = {"read": 0, "duplicates": 0, "filtered": 0, "delivered": 0, "undecodable": 0}
        conf = consumer_config(
            endpoints.bootstrap,
            group or f"edgestream-alerts-{time.time_ns()}",
            **{"enable.auto.commit": False, "enable.partition.eof": True, "log_level": 2},
        )
        conf.update(endpoints.client_settings)
        try:
            self.consumer = Consumer(conf)
        except KafkaException as error:
            raise AlertsError(f"cannot create a Kafka consumer: {error}") from None
        self.from_start = from_start
        # (partition, position after it) or None, and the alert (None: position only)
        self._buffer: deque[tuple[tuple[int, int] | None, Alert | None]] = deque()
        self._backlog = True  # reading the backlog: handed out sorted once read to its end
        self._reached: set[int] = set()  # partitions whose end was reached at least once
        self._positions: dict[int, int] = {}  # partition -> next offset to read (delivered)
        self._committed: dict[int, int] = {}
        self._prime_until: dict[int, int] = {}
        self._eof: set[int] = set()
        self._partitions: list[int] | None = None
        self._closed = False
        self._assign()

    # --- partitions and positions ---------------------------------------------------------

    def _assign(self) -> None:
        """Assign every partition of the topic at the committed offsets (if it exists yet)."""
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        parts = partitions_of(self.consumer, self.topic)
        if parts is None:
            return
        tps = [TopicPartition(self.topic, p) for p in parts]
        committed: dict[int, int] = {}
        if self.group is not None and not self.from_start:
            for tp in committed_offsets(self.consumer, tps):
                if tp.offset >= 0:
                    committed[tp.partition] = tp.offset
        starts = []
        for p in parts:
            start = committed.get(p)
            if start is None:
                starts.append(TopicPartition(self.topic, p, OFFSET_BEGINNING))
                continue
            self._positions[p] = self._committed[p] = start
            if self.prime > 0 and start > 0:
                self._prime_until[p] = start
                start = max(0, start - self.prime)
            starts.append(TopicPartition(self.topic, p, start))
        self.consumer.assign(starts)
        self._partitions = parts

    def commit(self) -> None:
        """Commit the position after the alerts handed out so far (no-op without a group)."""
        from confluent_kafka import TopicPartition

        if self.group is None:
            return
        changed = [
            TopicPartition(self.topic, p, off)
            for p, off in self._positions.items()
            if self._committed.get(p) != off
        ]
        if changed:
            self.consumer.commit(offsets=changed, asynchronous=False)
            self._committed.update({tp.partition: tp.offset for tp in changed})

    @property
    def at_end(self) -> bool:
        """Every partition reached its end (and nothing is left to hand out)."""
        parts = self._partitions
        return parts is not None and self._eof >= set(parts) and not self._buffer

    # --- reading ------------------------------------------------------------------------------

    def _fetch(self, timeout: float) -> None:
        """Read what is there into the buffer (decoded, deduplicated, filtered)."""
        from confluent_kafka import KafkaError

        if self._partitions is None:
            self._assign()
            if self._partitions is None:
                if not self.follow:
                    self._partitions = []  # no topic yet: nothing to read
                else:
                    time.sleep(timeout)
                return
        first = self.consumer.poll(timeout)
        if first is None:
            return
        for msg in [first, *self.consumer.consume(999, timeout=0)]:
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    if msg.offset() >= self._prime_until.get(msg.partition(), 0):
                        self._eof.add(msg.partition())
                        self._reached.add(msg.partition())
                    continue
                raise AlertsError(f"reading {self.topic}: {error.str()}")
            self._take(msg)

    def _take(self, msg: Any) -> None:
        partition, offset = msg.partition(), msg.offset()
        primed = offset < self._prime_until.get(partition, 0)
        try:  # the cloud wire form (AnomalyAlert v2) leaves derivable values out
            record = complete_record(self.decode(msg.value()))
        except (SerdeError, ValueError):  # not an alert (garbage, wrong schema): skip, count
            if not primed:
                self.stats["undecodable"] += 1
                self._buffer.append(((partition, offset + 1), None))
            return
        fresh = self.dedup.accept_record(record)
        if primed:
            return  # re-read to remember what was handed out before the restart
        self._eof.discard(partition)
        self.stats["read"] += 1
        position = (partition, offset + 1)
        if not fresh:
            self.stats["duplicates"] += 1
            self._buffer.append((position, None))
        elif not self.filter.matches(record):
            self.stats["filtered"] += 1
            self._buffer.append((position, None))
        else:
            alert = Alert(record, msg.topic(), partition, offset)
            self._buffer.append((position, alert))

    def next_alert(self, timeout: float | None = None) -> Alert | None:
        """The next alert; None when ``timeout`` seconds pass without one (``timeout`` None:
        wait as long as it takes). Raises StopIteration at the end when not following."""
        alert = self._step(timeout)
        if alert is _END:
            raise StopIteration
        return alert  # type: ignore[return-value]

    def _sort_backlog(self) -> None:
        """Once every partition's end was reached: the backlog's alerts by event time (a
        stable sort: ties keep arrival order), then the positions after all of them (so a
        commit in between never passes an alert not yet handed out)."""
        parts = self._partitions
        if not self._backlog or parts is None or not self._reached >= set(parts):
            return
        self._backlog = False
        alerts = sorted((a for _, a in self._buffer if a is not None), key=lambda a: a["ts"])
        ends: dict[int, int] = {}
        for where, _ in self._buffer:
            if where is not None:
                ends[where[0]] = max(ends.get(where[0], 0), where[1])
        self._buffer = deque([(None, a) for a in alerts])
        self._buffer.extend(((p, end), None) for p, end in ends.items())

    def _step(self, timeout: float | None) -> Alert | object | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._sort_backlog()
            while self._buffer and not self._backlog:
                where, alert = self._buffer.popleft()
                if where is not None:
                    self._positions[where[0]] = where[1]
                if alert is not None:
                    self.stats["delivered"] += 1
                    return alert
            self.commit()  # everything handed out so far is done with
            if not self.follow and self.at_end:
                return _END
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            self._fetch(self.poll_timeout if left is None else min(self.poll_timeout, left))

    def poll(self, timeout: float = 1.0) -> list[Alert]:
        """The alerts that arrive within ``timeout`` seconds (maybe none), all handed out."""
        out: list[Alert] = []
        deadline = time.monotonic() + timeout
        try:
            while (alert := self.next_alert(max(0.0, deadline - time.monotonic()))) is not None:
                out.append(alert)
        except StopIteration:
            pass
        return out

    # --- protocols ------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Alert]:
        return self

    def __next__(self) -> Alert:
        alert = self.next_alert()
        assert alert is not None  # no timeout: next_alert returns an alert or raises
        return alert

    def __aiter__(self) -> AsyncIterator[Alert]:
        return self

    async def __anext__(self) -> Alert:
        while True:
            alert = await asyncio.to_thread(self._step, self.poll_timeout)
            if alert is _END:
                raise StopAsyncIteration
            if alert is not None:
                return alert  # type: ignore[return-value]

    def close(self) -> None:
        """Commit the position and leave (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.commit()
        finally:
            self.consumer.close()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
