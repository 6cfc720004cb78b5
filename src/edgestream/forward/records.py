"""What travels through the outbox: alerts, window summaries and forwarder reports.

An :class:`Entry` is one record on its way in (decoded, with its record id, cloud key and
drain priority). The outbox stores the record as an Avro body (no Confluent header) encoded
with the schema shipped with edgestream, its ``gateway_seq`` already set, so it needs no
schema registry while the link is down; :class:`CloudFraming` adds the 5-byte header of the
cloud subject when the record is sent.

>>> codec = BodyCodec()
>>> entry = Entry.report({"report_id": "gw|report|1", "gateway_id": "gw", "created_at": 5})
>>> entry.kind, entry.priority, entry.key
('report', 0, b'gw')
>>> body = codec.encode("report", {**entry.record, "gateway_seq": 3})
>>> codec.decode("report", body)["gateway_seq"]
3
"""

from __future__ import annotations

from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

from fastavro import schemaless_reader, schemaless_writer

from edgestream.core.registry.client import RegistryLike
from edgestream.core.serde import (
    AvroDeserializer,
    AvroSerializer,
    fastavro_schema,
    load_schema,
    subject_for,
)

__all__ = ["EDGE_TOPICS", "KINDS", "PRIORITY", "BodyCodec", "CloudFraming", "EdgeDecoder", "Entry"]

#: The gateway's output topics on its edge broker, by record kind (the names
#: :mod:`edgestream.edge.worker` produces to, kept here so the forwarder does not import the
#: gateway's Faust/pandas stack; a test keeps them equal).
EDGE_TOPICS = {"alert": "edge.alerts", "summary": "edge.summaries"}
#: Record kind -> Avro record name.
KINDS = {"alert": "AnomalyAlert", "summary": "WindowSummary", "report": "ForwarderReport"}
#: Drain priority (lower drains first): alerts and reports before summaries.
PRIORITY = {"alert": 0, "report": 0, "summary": 1}
ID_FIELD = {"alert": "alert_id", "summary": "summary_id", "report": "report_id"}


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
        return str(self.record[ID_FIELD[self.kind]])

    @property
    def priority(self) -> int:
        return PRIORITY[self.kind]

    @property
    def event_ms(self) -> int:
        """Alert: event time of the triggering reading; summary: window start; report: its
        creation time."""
        rec = self.record
        if self.kind == "alert":
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
        """A WindowSummary, keyed by its scope key (device id or site)."""
        return cls("summary", record, str(record["scope_key"]).encode(), source, tumbling_sizes)

    @classmethod
    def report(cls, record: dict[str, Any]) -> Entry:
        """A ForwarderReport, keyed by its gateway."""
        return cls("report", record, str(record["gateway_id"]).encode())

    def summary_columns(self) -> tuple[Any, ...]:
        """(scope, scope_key, window_start, window_end, base_size, level, tumbling, readings)
        for summaries; Nones for other kinds."""
        if self.kind != "summary":
            return (None,) * 8
        rec = self.record
        start, end = int(rec["window_start"]), int(rec["window_end"])
        size = end - start
        level = int(rec.get("rollup_level") or 0)
        tumbling = 1 if (level > 0 or size in self.tumbling_sizes) else 0
        base = self.base_size or size
        return (rec["scope"], rec["scope_key"], start, end, base, level, tumbling, rec["count"])


class BodyCodec:
    """Avro bodies (no header) of the three kinds, with the schemas shipped with edgestream."""

    def __init__(self) -> None:
        self._schemas = {kind: fastavro_schema(load_schema(name)) for kind, name in KINDS.items()}

    def encode(self, kind: str, record: dict[str, Any]) -> bytes:
        out = BytesIO()
        schemaless_writer(out, self._schemas[kind], record)
        return out.getvalue()

    def decode(self, kind: str, body: bytes) -> dict[str, Any]:
        return schemaless_reader(BytesIO(body), self._schemas[kind], None)  # type: ignore[return-value]


class EdgeDecoder:
    """Decode the gateway's Confluent-framed alerts and summaries into the shipped schemas
    (a newer writer schema on the edge resolves to ours)."""

    def __init__(self, registry: RegistryLike) -> None:
        self._de = {
            kind: AvroDeserializer(registry, reader_schema=load_schema(name))
            for kind, name in KINDS.items()
            if kind != "report"
        }

    def __call__(self, kind: str, value: bytes) -> dict[str, Any]:
        return self._de[kind](value)


class CloudFraming:
    """The Confluent header (magic byte + schema id) of each kind's cloud subject.

    The schemas are registered (or found) on first use, i.e. when the link is up.
    """

    def __init__(self, registry: RegistryLike, topics: dict[str, str]) -> None:
        self.topics = dict(topics)
        self._ser = {
            kind: AvroSerializer(registry, KINDS[kind], subject_for(topic))
            for kind, topic in self.topics.items()
        }
        self._headers: dict[str, bytes] = {}

    def header(self, kind: str) -> bytes:
        header = self._headers.get(kind)
        if header is None:
            schema_id = self._ser[kind].schema_id
            header = self._headers[kind] = b"\x00" + schema_id.to_bytes(4, "big")
        return header

    def frame(self, kind: str, body: bytes) -> bytes:
        """The value to produce: header + body."""
        return self.header(kind) + body
