"""Avro bodies of forwarded records, and the Confluent framing of the cloud topics.

The outbox stores a record as an Avro body (no Confluent header) encoded with the schema
shipped with edgestream, so it needs no schema registry while the link is down;
:class:`CloudFraming` adds the 5-byte header of the cloud subject when the record is sent.
Bodies outlive an upgrade: :class:`BodyCodec` reads an earlier release's body through that
release's schema and re-writes it in today's wire form.
"""

from __future__ import annotations

import hashlib
import json
from io import BytesIO
from typing import Any

from fastavro import schemaless_reader, schemaless_writer

from edgestream.core.avro_schema import fastavro_schema, load_schema
from edgestream.core.exceptions import SchemaError
from edgestream.core.registry.client import RegistryLike
from edgestream.core.serde import AvroDeserializer, AvroSerializer, subject_for
from edgestream.wire.forms import ids_of_alert
from edgestream.wire.ids import summary_id

__all__ = [
    "KINDS",
    "WIRE_FORMS",
    "BodyCodec",
    "CloudFraming",
    "EdgeDecoder",
    "schema_fingerprint",
    "schema_text",
]

#: Record kind -> Avro record name.
KINDS = {
    "alert": "AnomalyAlert",
    "summary": "WindowSummary",
    "report": "ForwarderReport",
    "rollout": "RolloutEvent",
    "sample": "SensorReading",
}

#: The wire form of a kind beside its schema, part of its writer fingerprint: a body written
#: in an earlier form (same schema, e.g. alert and summary ids left out) is re-written in this
#: one when it drains (:meth:`BodyCodec.current`).
WIRE_FORMS = {"alert": "ids", "summary": "ids"}


class BodyCodec:
    """Avro bodies (no header) of the three kinds, written with the schemas shipped with
    edgestream; bodies written by an earlier release are read through that release's schema.

    Each schema (with the kind's :data:`WIRE_FORMS`) is known by a fingerprint
    (:attr:`writers`), stored with every body it wrote (the outbox keeps the schema texts
    too, :meth:`learn`), so bodies outlive an upgrade: :meth:`current` re-writes them in
    today's form (ids filled in).

    >>> codec = BodyCodec()
    >>> report = {"report_id": "r1", "gateway_id": "gw", "created_at": 5}
    >>> body = codec.encode("report", report)
    >>> codec.decode("report", body, codec.writers["report"])["report_id"]
    'r1'
    """

    def __init__(self, schemas: dict[str, dict[str, Any]] | None = None) -> None:
        """``schemas``: kind -> the schema to write that kind with, instead of the shipped one
        (an earlier release's, say)."""
        mine = {kind: load_schema(name) for kind, name in KINDS.items()} | (schemas or {})
        self.texts = {kind: schema_text(schema) for kind, schema in mine.items()}
        self.writers = {
            kind: schema_fingerprint(text, WIRE_FORMS.get(kind, ""))
            for kind, text in self.texts.items()
        }
        self._schemas = {kind: fastavro_schema(text) for kind, text in self.texts.items()}
        self._older: dict[str, dict[str, Any]] = {}  # fingerprint -> parsed earlier schema

    def learn(self, fingerprint: str, text: str) -> None:
        """Make an earlier writer schema known (by its fingerprint)."""
        if fingerprint not in self.writers.values():
            self._older[fingerprint] = fastavro_schema(text)

    def encode(self, kind: str, record: dict[str, Any]) -> bytes:
        out = BytesIO()
        schemaless_writer(out, self._schemas[kind], record)
        return out.getvalue()

    def decode(self, kind: str, body: bytes, writer: str | None = None) -> dict[str, Any]:
        """The record in the current schema; ``writer``: the fingerprint of the schema that
        wrote ``body`` (``None``: the current one)."""
        reader = self._schemas[kind]
        if writer is None or writer == self.writers[kind]:
            return schemaless_reader(BytesIO(body), reader, None)  # type: ignore[return-value]
        written = self._older.get(writer)
        if written is None:
            raise SchemaError(f"{kind} body written with schema {writer}, which is not known")
        return schemaless_reader(BytesIO(body), written, reader)  # type: ignore[return-value]

    def current(self, kind: str, body: bytes, writer: str | None) -> bytes:
        """``body`` re-written with the current schema and wire form (as it is when already
        so): alert and summary ids an earlier release left out are filled in."""
        if writer is None or writer == self.writers[kind]:
            return body
        record = self.decode(kind, body, writer)
        if kind == "alert":
            record.update(ids_of_alert(record))
        elif kind == "summary":
            record["summary_id"] = summary_id(record)
        return self.encode(kind, record)


def schema_text(schema: dict[str, Any]) -> str:
    """One text per schema: sorted keys, no spaces."""
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


def schema_fingerprint(text: str, form: str = "") -> str:
    """A short content hash of a schema text (:func:`schema_text`) and a wire ``form``."""
    return hashlib.sha256((text + (f"\n{form}" if form else "")).encode()).hexdigest()[:16]


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
