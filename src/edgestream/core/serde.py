"""The one Avro serde path of edgestream: Confluent wire format over fastavro.

A value on the wire is ``0x00`` + the 4-byte big-endian schema id + the Avro binary body.
Timestamps stay plain epoch-millisecond ``int`` s in Python: schemas are parsed for fastavro
with their ``logicalType`` annotations stripped (the wire encoding is the same), so decoding
never builds ``datetime`` objects. The registered schema text keeps its annotations, so other
clients (e.g. confluent-kafka's own ``AvroDeserializer``) still see ``timestamp-millis``.

Every failure to decode bytes is a :class:`SerdeError` with a machine-readable ``reason``
(see :data:`DECODE_REASONS`); the edge dead-letter path relies on that.
"""

from __future__ import annotations

import json
import threading
import time
from io import BytesIO
from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaRegistryError
from fastavro import schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from fastavro.validation import validate

from edgestream.core.avro_schema import fastavro_schema, full_name, resolve_schema
from edgestream.core.compat import check_compatibility
from edgestream.core.exceptions import SchemaError, SerdeError
from edgestream.core.registry.client import (
    RegistryLike,
    as_registry_client,
    registry_call,
    registry_client,
    registry_url,
)

__all__ = [
    "DECODE_REASONS",
    "AvroDeserializer",
    "AvroSerializer",
    "registry_client",
    "subject_for",
]

#: The ``reason`` values a decoding :class:`SerdeError` carries.
DECODE_REASONS = (
    "empty",
    "bad_magic",
    "truncated_header",
    "unknown_schema_id",
    "schema_mismatch",
    "decode",
)

_MAGIC = 0
_HEADER_SIZE = 5
_UNKNOWN_ID_TTL_S = 30.0  # how long "no such schema id" is remembered (protects the registry)
_FOREVER = float("inf")  # a schema id never changes: a mismatch stays a mismatch


# --- subjects ------------------------------------------------------------------------------


def subject_for(topic: str) -> str:
    """Subject of a topic's values (Confluent TopicNameStrategy).

    >>> subject_for("fleet.alerts")
    'fleet.alerts-value'
    """
    return f"{topic}-value"


# --- serializer ----------------------------------------------------------------------------


class AvroSerializer:
    """Encode dicts to Confluent-framed Avro; a confluent-kafka ``(obj, ctx)`` serializer.

    The schema is registered lazily under ``subject`` on first use (or looked up when
    ``auto_register`` is false) and its id is cached.

    >>> ser = AvroSerializer("mock://doc-ser", "SensorReading", subject_for("sensors.pump"))
    >>> reading = {"device_id": "p-1", "site": "plant-a", "device_type": "pump",
    ...            "ts": 1718000000000, "channels": {"temp": 71.5}}
    >>> data = ser(reading)
    >>> data[:5] == b"\\x00" + ser.schema_id.to_bytes(4, "big")
    True
    >>> AvroDeserializer("mock://doc-ser")(data)["ts"]
    1718000000000

    Note: like fastavro, encoding does not type-check every value (a float written to a
    ``long`` field is truncated); a missing field or an unencodable value is a
    :class:`SerdeError` with ``reason="encode"``.
    """

    def __init__(
        self,
        registry: RegistryLike,
        schema: str | dict[str, Any],
        subject: str,
        auto_register: bool = True,
    ) -> None:
        self.registry = as_registry_client(registry)
        self.schema = resolve_schema(schema)
        self.subject = subject
        self.auto_register = auto_register
        self.name = full_name(self.schema)
        self._parsed = fastavro_schema(self.schema)
        self._text = json.dumps(self.schema, separators=(",", ":"))
        self._header: bytes | None = None
        self._lock = threading.Lock()

    @property
    def schema_id(self) -> int:
        """The registry id of the schema (registers or looks it up on first use)."""
        header = self._header or self._register()
        return int.from_bytes(header[1:], "big")

    def _register(self) -> bytes:
        with self._lock:
            if self._header is None:
                schema = Schema(self._text, "AVRO")
                try:
                    with registry_call(self.registry):
                        if self.auto_register:
                            schema_id = self.registry.register_schema(self.subject, schema)
                        else:
                            schema_id = self.registry.lookup_schema(self.subject, schema).schema_id
                except SchemaRegistryError as error:
                    action = "register" if self.auto_register else "find"
                    raise SchemaError(
                        f"could not {action} {self.name} under subject {self.subject} at "
                        f"{registry_url(self.registry)}: {error.error_message} (run "
                        "`edgestream schemas check --registry URL` to see why)"
                    ) from None
                self._header = bytes([_MAGIC]) + int(schema_id).to_bytes(4, "big")
            return self._header

    def __call__(self, record: dict[str, Any], ctx: Any = None) -> bytes:
        header = self._header or self._register()
        out = BytesIO()
        out.write(header)
        try:
            schemaless_writer(out, self._parsed, record)
        except Exception as error:
            raise SerdeError("encode", self._explain(record, error)) from None
        return out.getvalue()

    def _explain(self, record: Any, error: Exception) -> str:
        prefix = f"cannot encode {self.name} for subject {self.subject}"
        if not isinstance(record, dict):
            return f"{prefix}: expected a dict, got {type(record).__name__}"
        try:
            validate(record, self._parsed, raise_errors=True)
        except Exception as invalid:
            details = [str(d)[:200] for d in getattr(invalid, "errors", [invalid])]
            return f"{prefix}: {'; '.join(details)}"
        return f"{prefix}: {error}"


# --- deserializer --------------------------------------------------------------------------

_Plan = tuple[dict[str, Any], dict[str, Any] | None]  # (writer, reader or None)


class AvroDeserializer:
    """Decode Confluent-framed Avro to dicts; a confluent-kafka ``(data, ctx)`` deserializer.

    Writer schemas are fetched from the registry once per id. With ``reader_schema`` the
    writer's data is resolved to the reader (schema evolution: new defaulted fields appear,
    removed ones are dropped). Bad bytes always raise :class:`SerdeError` with ``reason`` in
    :data:`DECODE_REASONS`; an unreachable registry raises :class:`ServiceUnavailable`.

    >>> de = AvroDeserializer("mock://doc-de")
    >>> try:
    ...     de(b"\\x01garbage")
    ... except SerdeError as error:
    ...     print(error.reason)
    bad_magic
    """

    def __init__(self, registry: RegistryLike, reader_schema: str | dict[str, Any] | None = None):
        self.registry = as_registry_client(registry)
        self.reader_schema = None if reader_schema is None else resolve_schema(reader_schema)
        self._reader = None if self.reader_schema is None else fastavro_schema(self.reader_schema)
        self._plans: dict[bytes, _Plan] = {}  # keyed by the 5 header bytes
        self._failed: dict[bytes, tuple[str, str, float]] = {}  # header -> reason, msg, until
        self._lock = threading.Lock()

    def __call__(self, data: bytes, ctx: Any = None) -> dict[str, Any]:
        try:
            writer, reader = self._plans[data[:_HEADER_SIZE]]
        except (KeyError, TypeError, ValueError):  # ValueError: writable memoryview
            writer, reader = self._plan(data)
        body = BytesIO(data)
        body.seek(_HEADER_SIZE)
        try:
            record = schemaless_reader(body, writer, reader)
        except SchemaResolutionError as error:
            raise SerdeError(
                "schema_mismatch", f"cannot resolve writer to reader: {error}"
            ) from None
        except Exception as error:
            detail = str(error) or "the body ends early"
            raise SerdeError(
                "decode", f"corrupt Avro body ({type(error).__name__}: {detail})"
            ) from None
        if body.tell() != len(data):
            extra = len(data) - body.tell()
            raise SerdeError("decode", f"{extra} trailing byte(s) after the Avro record")
        return record

    def decode_many(self, values: list[bytes]) -> list[dict[str, Any] | SerdeError]:
        """Decode a batch; a value that fails becomes its :class:`SerdeError`, in place.

        >>> AvroDeserializer("mock://doc-de").decode_many([b"", b"\\x00\\x00"])[1].reason
        'truncated_header'
        """
        plans = self._plans
        plan = self._plan
        read = schemaless_reader
        out: list[dict[str, Any] | SerdeError] = []
        append = out.append
        for data in values:
            try:
                writer, reader = plans[data[:_HEADER_SIZE]]
            except (KeyError, TypeError, ValueError):  # ValueError: writable memoryview
                try:
                    writer, reader = plan(data)
                except SerdeError as error:
                    append(error)
                    continue
            body = BytesIO(data)
            body.seek(_HEADER_SIZE)
            try:
                record = read(body, writer, reader)
            except Exception:  # rare: let the single-value path build the precise error
                try:
                    self(data)
                except SerdeError as error:
                    append(error)
                continue
            if body.tell() != len(data):
                append(SerdeError("decode", "trailing byte(s) after the Avro record"))
            else:
                append(record)
        return out

    def _plan(self, data: Any) -> _Plan:
        """Check the header and build (and cache) the writer/reader pair for its schema id."""
        if data is None or (isinstance(data, bytes | bytearray | memoryview) and len(data) == 0):
            raise SerdeError("empty", "empty message value (no Confluent header)")
        if not isinstance(data, bytes | bytearray | memoryview):
            raise SerdeError("decode", f"expected bytes, got {type(data).__name__}")
        header = bytes(data[:_HEADER_SIZE])
        if header[0] != _MAGIC:
            raise SerdeError(
                "bad_magic", f"first byte is 0x{header[0]:02x}, not the Confluent magic byte 0x00"
            )
        if len(header) < _HEADER_SIZE:
            raise SerdeError("truncated_header", f"{len(data)} byte(s): the header needs 5")
        with self._lock:
            cached = self._plans.get(header)
            if cached is not None:
                return cached
            failed = self._failed.get(header)
            if failed is not None and time.monotonic() < failed[2]:
                raise SerdeError(failed[0], failed[1])
            try:
                cached = self._plans[header] = self._build_plan(int.from_bytes(header[1:], "big"))
            except SerdeError as error:
                ttl = _UNKNOWN_ID_TTL_S if error.reason == "unknown_schema_id" else _FOREVER
                self._failed[header] = (error.reason, str(error), time.monotonic() + ttl)
                raise
            return cached

    def _build_plan(self, schema_id: int) -> _Plan:
        try:
            with registry_call(self.registry):
                registered = self.registry.get_schema(schema_id)
        except SchemaRegistryError as error:
            raise SerdeError(
                "unknown_schema_id",
                f"schema id {schema_id} not in registry at {registry_url(self.registry)}: "
                f"{error.error_message} (is this the topic's registry? pass --registry)",
            ) from None
        if (registered.schema_type or "AVRO") != "AVRO":
            raise SerdeError(
                "schema_mismatch", f"schema id {schema_id} is {registered.schema_type}, not Avro"
            )
        try:
            writer_raw = json.loads(registered.schema_str or "")
            writer = fastavro_schema(writer_raw)
        except (ValueError, SchemaError) as error:
            raise SerdeError("schema_mismatch", f"schema id {schema_id}: {error}") from None
        if self._reader is None or writer == self._reader:
            return writer, None  # no resolution needed: fastavro's fast path
        self._check_resolvable(schema_id, registered.schema_str or "", writer_raw)
        return writer, self._reader

    def _check_resolvable(self, schema_id: int, writer_text: str, writer_raw: Any) -> None:
        assert self.reader_schema is not None
        reader_name = full_name(self.reader_schema)
        writer_name = full_name(writer_raw) if isinstance(writer_raw, dict) else str(writer_raw)
        aliases = self.reader_schema.get("aliases") or []
        namespace = self.reader_schema.get("namespace")
        aliases = {a if "." in a or not namespace else f"{namespace}.{a}" for a in aliases}
        if writer_name != reader_name and writer_name not in aliases:
            raise SerdeError(
                "schema_mismatch",
                f"schema id {schema_id} writes {writer_name}, this reader expects {reader_name}",
            )
        try:
            problems = check_compatibility(
                json.dumps(self.reader_schema), [writer_text], "BACKWARD", labels=["the writer"]
            )
        except SchemaError as error:
            problems = [str(error)]
        if problems:
            raise SerdeError(
                "schema_mismatch",
                f"schema id {schema_id} ({writer_name}) cannot be read as {reader_name}: "
                + "; ".join(problems),
            )
