"""Record ids: the one format of each forwarded record's id, and how to derive it when the
wire form leaves it out.

Every record the forwarder sends carries the id its gateway assigned (``alert_id``,
``incident_id``, ``summary_id``, ``report_id``, ``event_id``); a sampled reading's id is
``device_id|seq``. The functions here write those ids (the gateway's incident tracker) and
derive them again from a record's other fields (records an earlier forwarder sent without
them), so every stage agrees on one id per record: the outbox keys on it, the consumers'
:class:`~edgestream.wire.dedup.Deduplicator` drops replays by it.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "ID_FIELD",
    "alert_id",
    "alert_key",
    "incident_id",
    "incident_key",
    "is_alert",
    "is_summary",
    "record_id",
    "sample_id",
    "summary_id",
]

#: (samples, sampled readings: last, first dropped when over budget)
ID_FIELD = {
    "alert": "alert_id",
    "summary": "summary_id",
    "report": "report_id",
    "rollout": "event_id",
}


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


def is_alert(record: dict[str, Any]) -> bool:
    """True for a decoded AnomalyAlert (it has an incident, a rule and a status)."""
    return "incident_id" in record and "rule" in record and "status" in record


def is_summary(record: dict[str, Any]) -> bool:
    """True for a decoded WindowSummary (it has a window, a scope and channel statistics)."""
    return "window_start" in record and "scope_key" in record and "channels" in record


_ID_FIELDS = tuple(ID_FIELD.values())


def record_id(record: dict[str, Any]) -> str | None:
    """The deterministic id of a forwarded record (alert_id, summary_id, report_id, ...; an
    alert or a summary without one: derived; a sampled reading: ``device_id|seq``).

    >>> record_id({"summary_id": "gw|device|p1|0|10000"})
    'gw|device|p1|0|10000'
    >>> record_id({"alert_id": None, "incident_id": None, "status": "open", "gateway_id": "gw",
    ...            "device_id": "p1", "rule": "r", "ts": 5, "first_ts": None})
    'gw|p1|r|5|0'
    >>> record_id({"device_id": "p1", "seq": 500, "channels": {}})
    'p1|500'
    """
    for name in _ID_FIELDS:
        value = record.get(name)
        if value is not None:
            return str(value)
    if is_summary(record):
        return summary_id(record)
    if is_alert(record):
        try:
            return alert_id(record)
        except (KeyError, ValueError):  # not derivable: the gateway_seq alone decides
            return None
    if record.get("device_id") is not None and record.get("seq") is not None:
        return sample_id(record)
    return None
