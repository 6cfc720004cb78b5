"""The wire forms of alerts and summaries: what travels to the cloud, and how a consumer
gets the full record back.

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
:func:`complete_summary` (the :class:`~edgestream.wire.dedup.DedupReader` does) to get the
derived values back; it leaves a v1 record (everything present) as it is.

Alerts travel in their wire form too (AnomalyAlert v2, :func:`wire_alert`): ids as the
gateway assigned them, ``first_ts``/``last_ts`` null when they equal ``ts``, ``update_number``
set, ``threshold`` and the channel values as exact Decimals when that is the same double;
:func:`complete_alert` restores the rest (:func:`complete_record`: any forwarded kind; it also
derives the ids of records an earlier forwarder sent without them).
"""

from __future__ import annotations

import math
import struct
from typing import Any

from edgestream.wire.ids import alert_id, incident_id, is_alert, is_summary, summary_id

__all__ = [
    "compact_double",
    "complete_alert",
    "complete_record",
    "complete_summary",
    "expand_double",
    "ids_of_alert",
    "wire_alert",
    "wire_summary",
]


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
    out.update(ids_of_alert(out))
    out["threshold"] = compact_double(record.get("threshold"))
    out["channels"] = {k: compact_double(v) for k, v in (record.get("channels") or {}).items()}
    return out


def ids_of_alert(alert: dict[str, Any]) -> dict[str, str | None]:
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


def complete_record(record: dict[str, Any]) -> dict[str, Any]:
    """A decoded forwarded record with its derived values filled in (:func:`complete_alert`,
    :func:`complete_summary`); other kinds as they are."""
    if is_summary(record):
        return complete_summary(record)
    if is_alert(record):
        return complete_alert(record)
    return record
