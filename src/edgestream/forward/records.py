"""What travels through the outbox: alerts, window summaries, sampled readings, rollout
events and forwarder reports.

An :class:`Entry` is one record on its way in (decoded, with its record id, cloud key and
drain priority). The outbox stores it as an Avro body (:class:`~edgestream.wire.codec.BodyCodec`),
its ``gateway_seq`` already set; ids and wire forms are the wire contract's
(:mod:`edgestream.wire`).

>>> from edgestream.wire.codec import BodyCodec
>>> codec = BodyCodec()
>>> entry = Entry.report({"report_id": "gw|report|1", "gateway_id": "gw", "created_at": 5})
>>> entry.kind, entry.priority, entry.key
('report', 0, b'gw')
>>> body = codec.encode("report", {**entry.record, "gateway_seq": 3})
>>> codec.decode("report", body)["gateway_seq"]
3
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from edgestream.wire.ids import ID_FIELD, alert_id, sample_id, summary_id

__all__ = ["PRIORITY", "Entry", "Pending"]

#: Drain priority (lower drains first): alerts, reports and rollout events before summaries.
PRIORITY = {"alert": 0, "report": 0, "rollout": 0, "summary": 1, "sample": 2}


@dataclass(frozen=True)
class Entry:
    """A record entering the outbox. ``source`` is (topic, partition, offset) on the edge."""

    kind: str
    record: dict[str, Any]
    key: bytes
    source: tuple[str, int, int] | None = None
    tumbling_sizes: frozenset[int] = field(default_factory=frozenset)
    base_size: int | None = None  # summaries: window size of the original windows (lineage)

    @property
    def record_id(self) -> str:
        if self.kind == "sample":
            return sample_id(self.record)
        if self.kind == "summary":
            return summary_id(self.record)
        if self.kind == "alert":
            return alert_id(self.record)
        return str(self.record[ID_FIELD[self.kind]])

    @property
    def digest(self) -> bytes:
        """16 bytes of sha256 over the record's content (its ``gateway_seq`` aside): a replay
        has the same digest; a different record with the same id does not.

        >>> a = Entry.report({"report_id": "r1", "gateway_id": "gw", "n": 1})
        >>> b = Entry.report({"report_id": "r1", "gateway_id": "gw", "n": 2})
        >>> a.digest == Entry.report(dict(a.record, gateway_seq=7)).digest, a.digest == b.digest
        (True, False)
        """
        body = {k: v for k, v in self.record.items() if k != "gateway_seq"}
        text = json.dumps(body, sort_keys=True, default=str, separators=(",", ":"))
        return hashlib.sha256(text.encode()).digest()[:16]

    @property
    def priority(self) -> int:
        return PRIORITY[self.kind]

    @property
    def event_ms(self) -> int:
        """Alert: event time of the triggering reading; summary: window start; report and
        rollout event: its creation time."""
        rec = self.record
        if self.kind in ("alert", "sample"):  # sample: event time of the reading
            return int(rec["ts"])
        if self.kind == "summary":
            return int(rec["window_start"])
        return int(rec["created_at"])

    @classmethod
    def alert(cls, record: dict[str, Any], source: tuple[str, int, int] | None = None) -> Entry:
        """An AnomalyAlert, keyed by its device (one partition per device: order holds)."""
        return cls("alert", record, str(record["device_id"]).encode(), source)

    @classmethod
    def summary(
        cls,
        record: dict[str, Any],
        source: tuple[str, int, int] | None = None,
        tumbling_sizes: frozenset[int] = frozenset(),
    ) -> Entry:
        """A WindowSummary, keyed by its gateway: one gateway's summaries share a partition, so
        the windows that close together travel as one compressed batch (per-device order
        holds: a device belongs to one gateway)."""
        return cls("summary", record, str(record["gateway_id"]).encode(), source, tumbling_sizes)

    @classmethod
    def sample(cls, record: dict[str, Any], source: tuple[str, int, int] | None = None) -> Entry:
        """A sampled SensorReading, keyed by its device; its id is (device_id, seq)."""
        return cls("sample", record, str(record["device_id"]).encode(), source)

    @classmethod
    def report(cls, record: dict[str, Any]) -> Entry:
        """A ForwarderReport, keyed by its gateway."""
        return cls("report", record, str(record["gateway_id"]).encode())

    @classmethod
    def rollout(cls, record: dict[str, Any], source: tuple[str, int, int] | None = None) -> Entry:
        """A RolloutEvent (edge.rollout -> fleet.rollout), keyed by its gateway."""
        return cls("rollout", record, str(record["gateway_id"]).encode(), source)

    def summary_columns(self) -> tuple[Any, ...]:
        """(scope, scope_key, window_start, window_end, base_size, level, tumbling, readings)
        for summaries; Nones for other kinds (samples: readings 1)."""
        if self.kind == "sample":  # one reading: counted in dropped_readings if dropped
            return (None,) * 7 + (1,)
        if self.kind != "summary":
            return (None,) * 8
        rec = self.record
        start, end = int(rec["window_start"]), int(rec["window_end"])
        size = end - start
        level = int(rec.get("rollup_level") or 0)
        tumbling = 1 if (level > 0 or size in self.tumbling_sizes) else 0
        base = self.base_size or size
        return (rec["scope"], rec["scope_key"], start, end, base, level, tumbling, rec["count"])


@dataclass(frozen=True)
class Pending:
    """A record to send: its ``gateway_seq``, kind, cloud key and Avro body."""

    seq: int
    kind: str
    key: bytes
    body: bytes
    priority: int
    bytes: int
    created_ms: int = 0
