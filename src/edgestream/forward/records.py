"""What travels through the outbox: alerts, window summaries, sampled readings and forwarder
reports.

An :class:`Entry` is one record on its way in (decoded, with its record id, cloud key and
drain priority). The outbox stores the record as an Avro body (no Confluent header) encoded
with the schema shipped with edgestream, its ``gateway_seq`` already set, so it needs no
schema registry while the link is down; :class:`CloudFraming` adds the 5-byte header of the
cloud subject when the record is sent.

**Ids always travel.** ``fleet.alerts`` and ``fleet.summaries`` are curated topics that any
Kafka client reads (a plain Confluent consumer, Flink SQL, kcat), so every record there
carries the ids the gateway assigned (``alert_id``, ``incident_id``, ``summary_id``), even
where they could be derived from other fields: the forwarder writes straight to those topics,
so the edge-to-cloud link and the curated topic are one form. (Earlier forwarders left
derivable ids out and only our own readers derived them again; an outbox backlog written by
one gets its ids back when it drains, see :class:`BodyCodec`.)

Summaries travel in their **wire form** (WindowSummary v2, :func:`wire_summary`): what can be
derived from exact values is null (each channel's ``mean`` and ``std``),
``p50``/``p95``/``last`` only when the topology asks for them
(``forwarding.summaries``). Exact fleet statistics need only ``count``/``sum``/``m2``/``min``/
``max``, which always travel, bit for bit; ``sum``/``min``/``max``/``last`` as an exact
``Decimal`` (``unscaled`` / 10^``scale``) when that names the same double, ``sum`` also as a
``NearDecimal`` (a decimal's double moved by a few ``ulps``: a float sum of decimal readings)
(:func:`compact_double`: lossless, nothing is rounded; WindowSummary v3). Consumers call
:func:`complete_summary` (the :class:`~edgestream.forward.dedup.DedupReader` does) to get the
derived values back; it leaves a v1 record (everything present) as it is.

Alerts travel in their wire form too (AnomalyAlert v2, :func:`wire_alert`): ids as the
gateway assigned them, ``first_ts``/``last_ts`` null when they equal ``ts``, ``update_number``
set, ``threshold`` and the channel values as exact Decimals when that is the same double;
:func:`complete_alert` restores the rest (:func:`complete_record`: any forwarded kind; it also
derives the ids of records an earlier forwarder sent without them).

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
import math
import re
import struct
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

from fastavro import schemaless_reader, schemaless_writer

from edgestream.core.exceptions import SchemaError
from edgestream.core.registry.client import RegistryLike
from edgestream.core.serde import (
    AvroDeserializer,
    AvroSerializer,
    fastavro_schema,
    load_schema,
    subject_for,
)

__all__ = [
    "EDGE_TOPICS",
    "KINDS",
    "PRIORITY",
    "BodyCodec",
    "CloudFraming",
    "EdgeDecoder",
    "Entry",
    "alert_id",
    "compact_double",
    "complete_alert",
    "complete_record",
    "complete_summary",
    "expand_double",
    "incident_id",
    "is_alert",
    "sample_id",
    "summary_id",
    "wire_alert",
    "wire_summary",
]

#: The gateway's output topics on its edge broker, by record kind (the names
#: :mod:`edgestream.edge.worker` produces to, kept here so the forwarder does not import the
#: gateway's Faust/pandas stack; a test keeps them equal).
EDGE_TOPICS = {"alert": "edge.alerts", "summary": "edge.summaries", "rollout": "edge.rollout",
               "sample": "edge.samples"}  # fmt: skip
#: Record kind -> Avro record name.
KINDS = {
    "alert": "AnomalyAlert",
    "summary": "WindowSummary",
    "report": "ForwarderReport",
    "rollout": "RolloutEvent",
    "sample": "SensorReading",
}
#: Drain priority (lower drains first): alerts, reports and rollout events before summaries.
PRIORITY = {"alert": 0, "report": 0, "rollout": 0, "summary": 1, "sample": 2}
#: (samples, sampled readings: last, first dropped when over budget)
ID_FIELD = {
    "alert": "alert_id",
    "summary": "summary_id",
    "report": "report_id",
    "rollout": "event_id",
}


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


def summary_id(record: dict[str, Any]) -> str:
    """A summary's id: its ``summary_id``, or (null on the wire for an original window) the
    deterministic ``gateway|scope|scope_key|window_start|window_end``.

    >>> summary_id({"summary_id": None, "gateway_id": "gw", "scope": "device",
    ...             "scope_key": "p1", "window_start": 0, "window_end": 10_000})
    'gw|device|p1|0|10000'
    """
    given = record.get("summary_id")
    if given is not None:
        return str(given)
    r = record
    return f"{r['gateway_id']}|{r['scope']}|{r['scope_key']}|{r['window_start']}|{r['window_end']}"


def sample_id(record: dict[str, Any]) -> str:
    """A sampled reading's id, ``device_id|seq`` (unique: seq increases per device).

    >>> sample_id({"device_id": "p1", "seq": 500})
    'p1|500'
    """
    return f"{record['device_id']}|{record['seq']}"


def wire_summary(
    record: dict[str, Any], quantiles: bool = False, last: bool = False
) -> dict[str, Any]:
    """The form of a WindowSummary sent to the cloud: ``summary_id`` always set, each
    channel's ``mean``/``std`` null (see the module doc), ``p50``/``p95`` only with
    ``quantiles``, ``last`` only with ``last``. Exact fields are untouched;
    :func:`complete_summary` restores the derived ones.

    >>> s = {"summary_id": "gw|device|p1|0|10000", "rollup_level": 0, "channels": {"t": {
    ...      "count": 2, "sum": 3.0, "min": 1.0, "max": 2.0, "mean": 1.5, "m2": 0.5, "std": 0.5,
    ...      "last": 2.0, "p50": 1.5, "p95": 1.95}}}
    >>> w = wire_summary(s)
    >>> w["summary_id"], w["channels"]["t"]["mean"], w["channels"]["t"]["p50"]
    ('gw|device|p1|0|10000', None, None)
    >>> complete_summary(w | {"gateway_id": "gw", "scope": "device", "scope_key": "p1",
    ...     "window_start": 0, "window_end": 10_000})["channels"]["t"]["std"]
    0.5
    """
    drop: dict[str, None] = {"mean": None, "std": None}
    if not quantiles:
        drop.update(p50=None, p95=None)
    if not last:
        drop["last"] = None
    out = dict(record)
    out["channels"] = {
        name: {**c, **{k: compact_double(c.get(k), near=k == "sum") for k in _DECIMAL_FIELDS},
               **drop}
        for name, c in record["channels"].items()
    }  # fmt: skip
    out["summary_id"] = summary_id(record)  # travels: the curated topic is read by anyone
    return out


#: ChannelStats fields sent as an exact Decimal when that is the same double (``sum`` also
#: as a NearDecimal: a float sum of decimal readings is often a few ulps off its decimal).
_DECIMAL_FIELDS = ("sum", "min", "max", "last")
_MAX_SCALE = 9
_MAX_ULPS = 1 << 16


def _bits(value: float) -> int:
    return int(struct.unpack("<q", struct.pack("<d", value))[0])


def compact_double(value: Any, near: bool = False) -> Any:
    """``value`` as an exact Decimal record ``{"unscaled", "scale"}`` when ``unscaled /
    10**scale`` (correctly rounded, as Python's int division and Java's BigDecimal do) is the
    same double bit for bit, with the fewest decimals (at most 9); else unchanged. Lossless.

    With ``near``, a double that is no short decimal but a few representable steps from one
    (a float sum of decimal readings: ``1105.3780000000002``) becomes a NearDecimal
    ``{"unscaled", "scale", "ulps"}`` when that encodes shorter than the double: that
    decimal's double moved by ``ulps`` steps of its bit pattern, the same double bit for bit.

    >>> compact_double(43.992), compact_double(0.1 + 0.2), compact_double(None)
    ({'unscaled': 43992, 'scale': 3}, 0.30000000000000004, None)
    >>> compact_double(0.1 + 0.2, near=True)
    {'unscaled': 3, 'scale': 1, 'ulps': 1}
    >>> expand_double(compact_double(0.1 + 0.2, near=True)) == 0.1 + 0.2
    True
    >>> expand_double(compact_double(-1e-9)) == -1e-9
    True
    """
    if not isinstance(value, float) or not math.isfinite(value) or value == 0.0:
        return value  # 0.0 / -0.0 keep their sign as a double
    for scale in range(_MAX_SCALE + 1):
        unscaled = round(value * 10**scale)
        if abs(unscaled) >= 1 << 62:
            return value
        if unscaled / 10**scale == value:
            return {"unscaled": unscaled, "scale": scale}
    if near:
        for scale in range(_MAX_SCALE + 1):
            unscaled = round(value * 10**scale)
            decimal = unscaled / 10**scale
            if decimal == 0.0 or (decimal > 0) != (value > 0):
                continue  # same sign: the bit patterns step in the same direction
            ulps = _bits(value) - _bits(decimal)
            if abs(ulps) <= _MAX_ULPS:
                if _varint_bytes(unscaled) + 1 + _varint_bytes(ulps) < 8:
                    return {"unscaled": unscaled, "scale": scale, "ulps": ulps}
                return value  # no shorter than the double
    return value


def _varint_bytes(n: int) -> int:
    """Bytes of ``n`` as an Avro long (zig-zag varint)."""
    return max(1, ((abs(n) << 1).bit_length() + 6) // 7)


def expand_double(value: Any) -> Any:
    """The double of an exact Decimal or NearDecimal record (see :func:`compact_double`);
    others as given."""
    if isinstance(value, dict):
        decimal = int(value["unscaled"]) / 10 ** int(value["scale"])
        ulps = int(value.get("ulps") or 0)
        if ulps:
            return float(struct.unpack("<d", struct.pack("<q", _bits(decimal) + ulps))[0])
        return decimal
    return value


def complete_summary(record: dict[str, Any]) -> dict[str, Any]:
    """A WindowSummary with its derived values filled in: ``summary_id`` (see
    :func:`summary_id`), each channel's ``mean = sum / count`` and ``std = sqrt(m2 / count)``
    (0.0 for an empty channel), and exact Decimals back as doubles. Values present (v1 data,
    edge records) are kept as they are. Returns a new dict; ``last``/``p50``/``p95`` stay null
    when they were not sent.
    """
    out = dict(record)
    out["summary_id"] = summary_id(record)
    channels = {}
    for name, c in record["channels"].items():
        n = int(c["count"])
        exact = {k: expand_double(c.get(k)) for k in _DECIMAL_FIELDS}
        mean, std = c.get("mean"), c.get("std")
        if mean is None:
            mean = float(exact["sum"]) / n if n else 0.0
        if std is None:
            std = math.sqrt(max(float(c["m2"]), 0.0) / n) if n else 0.0
        channels[name] = {**c, **exact, "mean": mean, "std": std}
    out["channels"] = channels
    return out


_CONSECUTIVE = re.compile(r":consecutive\(\d+\)$")


def incident_key(gateway_id: str, device_id: str, rule_name: str, first_ts: int) -> str:
    """The one format of an incident id: written by the gateway's incident tracker, derived
    again by :func:`incident_id` when the cloud wire form leaves it out."""
    return f"{gateway_id}|{device_id}|{rule_name}|{first_ts}"


def alert_key(incident: str, n: int | str) -> str:
    """The one format of an alert id: ``incident|n`` (``0`` open, the update number,
    ``resolved``)."""
    return f"{incident}|{n}"


def incident_id(record: dict[str, Any]) -> str:
    """An alert's incident id: its ``incident_id``, or (null on the wire) the gateway's
    ``gateway|device|rule name|first_ts`` (rule name: ``rule`` without its
    ``:consecutive(n)`` suffix; ``first_ts`` null means ``ts``).

    >>> incident_id({"incident_id": None, "gateway_id": "gw", "device_id": "p1",
    ...              "rule": "spike:consecutive(3)", "first_ts": None, "ts": 500})
    'gw|p1|spike|500'
    """
    given = record.get("incident_id")
    if given is not None:
        return str(given)
    first = record.get("first_ts")
    first = record["ts"] if first is None else first
    rule = _CONSECUTIVE.sub("", str(record["rule"]))
    return incident_key(record["gateway_id"], record["device_id"], rule, first)


def alert_id(record: dict[str, Any]) -> str:
    """An alert's id: its ``alert_id``, or (null on the wire) ``incident_id|n`` with ``n``
    = ``0`` (open), the ``update_number`` (update) or ``resolved``.

    >>> alert_id({"alert_id": None, "incident_id": "gw|p1|r|5", "status": "update",
    ...           "update_number": 2})
    'gw|p1|r|5|2'
    """
    given = record.get("alert_id")
    if given is not None:
        return str(given)
    status = record.get("status", "open")
    n = {"open": "0", "resolved": "resolved"}.get(status)
    if n is None:
        number = record.get("update_number")
        if number is None:
            raise ValueError(f"an {status!r} alert without alert_id needs its update_number")
        n = str(number)
    return alert_key(incident_id(record), n)


def _update_number(record: dict[str, Any]) -> int | None:
    """The n of an ``update`` alert whose id is ``incident_id|n`` (else None)."""
    if record.get("update_number") is not None:
        return int(record["update_number"])
    aid, inc = record.get("alert_id"), record.get("incident_id")
    if record.get("status") != "update" or aid is None or inc is None:
        return None
    suffix = str(aid)[len(str(inc)) + 1 :]
    if str(aid) != f"{inc}|{suffix}" or not suffix.isdigit() or str(int(suffix)) != suffix:
        return None
    return int(suffix)


def wire_alert(record: dict[str, Any]) -> dict[str, Any]:
    """The form of an AnomalyAlert sent to the cloud (see the module doc): ``alert_id`` and
    ``incident_id`` as the gateway assigned them (derived when it left them out),
    ``first_ts``/``last_ts`` null when equal to ``ts``; ``update_number`` set; ``threshold``
    and channel values as exact Decimals where lossless.

    >>> a = {"alert_id": "gw|p1|r|100|1", "incident_id": "gw|p1|r|100", "status": "update",
    ...      "gateway_id": "gw", "device_id": "p1", "rule": "r", "ts": 300, "first_ts": 100,
    ...      "last_ts": 300, "threshold": 0.5, "channels": {"t": 43.25}}
    >>> w = wire_alert(a)
    >>> w["alert_id"], w["incident_id"], w["first_ts"], w["last_ts"], w["update_number"]
    ('gw|p1|r|100|1', 'gw|p1|r|100', 100, None, 1)
    >>> w["channels"]
    {'t': {'unscaled': 4325, 'scale': 2}}
    >>> complete_alert(w) == {**a, "update_number": 1}
    True
    """
    out = dict(record)
    out["update_number"] = _update_number(record)
    for name in ("first_ts", "last_ts"):
        if record.get(name) is not None and record[name] == record["ts"]:
            out[name] = None
    out.update(_ids(out))
    out["threshold"] = compact_double(record.get("threshold"))
    out["channels"] = {k: compact_double(v) for k, v in (record.get("channels") or {}).items()}
    return out


def _ids(alert: dict[str, Any]) -> dict[str, str | None]:
    """An alert's ``incident_id`` and ``alert_id``: as given, else derived (None when an id
    cannot be derived: an update without its number)."""
    out: dict[str, str | None] = {"incident_id": None, "alert_id": None}
    try:
        out["incident_id"] = incident_id(alert)
        out["alert_id"] = alert_id(alert)
    except (KeyError, ValueError):
        out = {k: alert.get(k) if v is None else v for k, v in out.items()}
    return out


def complete_alert(record: dict[str, Any]) -> dict[str, Any]:
    """An AnomalyAlert with its derived values filled in: ``first_ts``/``last_ts`` (null:
    ``ts``), ``incident_id`` (:func:`incident_id`), ``alert_id`` (:func:`alert_id`),
    ``update_number`` (from the ``alert_id`` of an update) and exact Decimals back as
    doubles. Values present (v1 data, edge records) are kept. Returns a new dict."""
    out = dict(record)
    for name in ("first_ts", "last_ts"):
        if out.get(name) is None:
            out[name] = out["ts"]
    out["incident_id"] = incident_id(out)
    try:
        out["alert_id"] = alert_id(out)
    except ValueError:  # an update without its number (not the forwarder's): left null
        out["alert_id"] = None
    out["update_number"] = _update_number(out)
    out["threshold"] = expand_double(out.get("threshold"))
    out["channels"] = {k: expand_double(v) for k, v in (out.get("channels") or {}).items()}
    return out


def is_alert(record: dict[str, Any]) -> bool:
    """True for a decoded AnomalyAlert (it has an incident, a rule and a status)."""
    return "incident_id" in record and "rule" in record and "status" in record


def complete_record(record: dict[str, Any]) -> dict[str, Any]:
    """A decoded forwarded record with its derived values filled in (:func:`complete_alert`,
    :func:`complete_summary`); other kinds as they are."""
    if is_summary(record):
        return complete_summary(record)
    if is_alert(record):
        return complete_alert(record)
    return record


def is_summary(record: dict[str, Any]) -> bool:
    """True for a decoded WindowSummary (it has a window, a scope and channel statistics)."""
    return "window_start" in record and "scope_key" in record and "channels" in record


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
            record.update(_ids(record))
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
