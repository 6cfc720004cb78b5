"""Consumer-side dedup of forwarded records, for our own consumers (Flink jobs, alert
subscribers): the forwarder delivers at least once, this drops the replays.

Every forwarded record carries ``gateway_id`` and a ``gateway_seq`` unique per gateway (the
outbox assigns it once, a re-send carries the same one). :class:`Deduplicator` keeps, per
gateway, a bitmap of the seqs seen within ``window`` of the highest seq seen (``window``
bits: 4M seqs = 512 KB per gateway), plus the hashes of the last ``id_memory`` record ids
(alert_id / summary_id / report_id; 8 bytes each): a record without a seq, or one whose id
was seen under another seq (an edge replay the outbox accepted again after forgetting it), is
judged by its id. Sampled readings (``fleet.samples``, SensorReading) carry no seq: their id
``device_id|seq`` decides.

The window, documented: a copy is recognised when it arrives within ``window`` seqs of the
newest record seen from its gateway. The forwarder only re-sends what is still in its outbox,
which its byte budget bounds far below that (256 MB of ~500 B records is ~0.5M seqs). A record
older than the window whose id is not remembered is delivered (at least once beats losing it)
and counted in ``stats["unverified"]``.

>>> d = Deduplicator(window=8)
>>> [d.accept("gw", s, f"id{s}") for s in (1, 2, 2, 5, 1, 3)]
[True, True, False, True, False, True]
>>> d.accept(None, None, "x"), d.accept(None, None, "x")
(True, False)
>>> d.stats["duplicates"]
3
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from edgestream.core.exceptions import SerdeError
from edgestream.core.offsets import committed_offsets
from edgestream.wire.forms import complete_record
from edgestream.wire.ids import record_id

__all__ = ["DedupReader", "Deduplicator", "Delivered"]

log = logging.getLogger("edgestream.dedup")

DEFAULT_WINDOW = 1 << 22
DEFAULT_ID_MEMORY = 100_000


class _SeqWindow:
    """Seen seqs in ``(high - size, high]`` as a ring of bits."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.high = 0
        self.bits = bytearray((size + 7) // 8)

    def _flip(self, seq: int, on: bool) -> bool:
        i = seq % self.size
        byte, mask = i >> 3, 1 << (i & 7)
        was = bool(self.bits[byte] & mask)
        self.bits[byte] = self.bits[byte] | mask if on else self.bits[byte] & ~mask
        return was

    def add(self, seq: int) -> bool | None:
        """True: new; False: seen; None: older than the window (cannot tell)."""
        if seq > self.high:
            if seq - self.high >= self.size:
                self.bits = bytearray(len(self.bits))
            else:
                for s in range(self.high + 1, seq):
                    self._flip(s, False)
            self.high = seq
            self._flip(seq, True)
            return True
        if seq <= self.high - self.size:
            return None
        return not self._flip(seq, True)


class Deduplicator:
    """Drop replays by (gateway_id, gateway_seq), else by record id (see module doc)."""

    def __init__(self, window: int = DEFAULT_WINDOW, id_memory: int = DEFAULT_ID_MEMORY) -> None:
        self.window = window
        self.id_memory = id_memory
        self._seqs: dict[str, _SeqWindow] = {}
        self._ids: dict[int, None] = {}
        self.stats: Counter[str] = Counter()

    def _remember(self, rid: str | None) -> bool:
        """True when ``rid`` was not remembered (and remembers it)."""
        if rid is None or self.id_memory <= 0:
            return True
        digest = int.from_bytes(hashlib.blake2b(rid.encode(), digest_size=8).digest(), "big")
        if digest in self._ids:
            return False
        self._ids[digest] = None
        if len(self._ids) > self.id_memory:
            del self._ids[next(iter(self._ids))]
        return True

    def accept(self, gateway_id: str | None, gateway_seq: int | None, rid: str | None) -> bool:
        """True the first time a record is seen, False for a replay."""
        verdict: bool | None = None
        if gateway_id is not None and gateway_seq is not None:
            window = self._seqs.get(gateway_id)
            if window is None:
                window = self._seqs[gateway_id] = _SeqWindow(self.window)
            verdict = window.add(int(gateway_seq))
        fresh_id = self._remember(rid)
        if verdict is None:  # no seq, or older than the window: the id decides
            if gateway_seq is not None and fresh_id:
                self.stats["unverified"] += 1
            verdict = fresh_id
        elif verdict and not fresh_id:  # a new seq for a known id: re-accepted after a long gap
            verdict = False
        self.stats["accepted" if verdict else "duplicates"] += 1
        return verdict

    def accept_record(self, record: dict[str, Any]) -> bool:
        """:meth:`accept` for a decoded forwarded record."""
        return self.accept(record.get("gateway_id"), record.get("gateway_seq"), record_id(record))


@dataclass(frozen=True)
class Delivered:
    """A record read from a cloud topic (first copy only)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    timestamp_ms: int
    received_ms: int
    record: dict[str, Any]


class DedupReader:
    """Read cloud topics (every partition), decode, drop replays.

    ``group`` None reads from the start of each partition without committing; with a group,
    committed offsets are used (the dedup state itself is in memory: a restarted reader
    relies on the window covering the re-read part).
    """

    def __init__(
        self,
        bootstrap: str,
        topics: list[str],
        registry: Any,
        group: str | None = None,
        client_settings: dict[str, object] | None = None,
        dedup: Deduplicator | None = None,
    ) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        from edgestream.core.broker import consumer_config
        from edgestream.core.serde import AvroDeserializer

        self.dedup = dedup or Deduplicator()
        self.decode = AvroDeserializer(registry)
        self.skipped: list[tuple[str, int, int, str]] = []  # undecodable: topic, part, off, why
        self._retried: set[tuple[str, int, int]] = set()
        self.topics = list(topics)
        name = group or f"edgestream-dedup-{time.time_ns()}"
        conf = consumer_config(
            bootstrap,
            name,
            **{"enable.auto.commit": group is not None, "fetch.wait.max.ms": 20, "log_level": 2},
        )
        conf.update(client_settings or {})
        self.consumer = Consumer(conf)
        self._assigned: set[str] = set()
        self._tp, self._begin = TopicPartition, OFFSET_BEGINNING
        self._group = group
        self.refresh()

    def refresh(self) -> None:
        """Assign partitions of topics that exist now (they may appear later)."""
        meta = self.consumer.list_topics(timeout=5)
        new = [t for t in self.topics if t not in self._assigned and t in meta.topics]
        if not new:
            return
        parts = [self._tp(t, p, self._begin) for t in new for p in meta.topics[t].partitions]
        if self._group is not None:
            committed = committed_offsets(self.consumer, parts)
            parts = [self._tp(c.topic, c.partition, c.offset if c.offset >= 0 else self._begin)
                     for c in committed]  # fmt: skip
        self.consumer.incremental_assign(parts)
        self._assigned.update(new)

    def poll(self, timeout: float = 0.5, max_messages: int = 5000) -> list[Delivered]:
        """The next first-seen records (maybe none) within ``timeout`` seconds."""
        if len(self._assigned) < len(self.topics):
            self.refresh()
        out = []
        first = self.consumer.poll(timeout)  # returns on the first record, unlike consume()
        if first is None:
            return out
        again: set[tuple[str, int]] = set()  # partitions sent back to a record to read again
        for msg in [first, *self.consumer.consume(max_messages - 1, timeout=0)]:
            part = (msg.topic(), msg.partition())
            if msg.error() is not None or part in again:
                continue
            try:
                record = self.decode(msg.value())
            except SerdeError as error:  # one bad record must not stop the reader
                if self._read_again(msg):
                    again.add(part)
                else:
                    self._undecodable(msg, error)
                continue
            record = complete_record(record)  # v2 wire forms: fill the derived values
            if self.dedup.accept_record(record):
                out.append(
                    Delivered(msg.topic(), msg.partition(), msg.offset(), msg.key(),
                              msg.timestamp()[1], int(time.time() * 1000), record)
                )  # fmt: skip
        return out

    def _read_again(self, msg: Any) -> bool:
        """Seek back to a record that did not decode, once: a torn read decodes the second
        time; a bad record does not (then it is skipped)."""
        where = (msg.topic(), msg.partition(), msg.offset())
        if where in self._retried:
            return False
        self._retried.add(where)
        self.consumer.seek(self._tp(*where))
        return True

    def _undecodable(self, msg: Any, error: SerdeError) -> None:
        """Skip a record that does not decode: counted, kept (``skipped``), logged."""
        value = msg.value() or b""
        where = (msg.topic(), msg.partition(), msg.offset())
        self.skipped.append((*where, error.reason))
        log.warning(
            "%s[%d]@%d skipped, it does not decode (%s): %d bytes, first %s",
            *where, error, len(value), value[:48].hex(),
        )  # fmt: skip

    def __iter__(self) -> Iterator[Delivered]:
        while True:
            yield from self.poll()

    def close(self) -> None:
        self.consumer.close()

    def __enter__(self) -> DedupReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
