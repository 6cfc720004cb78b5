"""Python decoding of the Avro cloud topics for Flink SQL (no ``flink-avro`` jar exists for
this Flink): the raw value bytes of ``fleet.alerts`` / ``fleet.summaries`` become flat rows
(epoch-ms ``BIGINT`` times, channel statistics as ``MAP<STRING, DOUBLE>`` columns), forwarder
replays dropped (:class:`~edgestream.wire.dedup.Deduplicator`), in Flink's ``thread``
Python mode.

>>> decoded = summary_row({"summary_id": "s", "gateway_id": "g", "scope": "device",
...     "scope_key": "p-1", "site": "a", "device_type": "pump", "window_start": 0,
...     "window_end": 10, "count": 2, "anomaly_count": 1, "max_score": None, "first_ts": 1,
...     "last_ts": 9, "model_version": "v1", "late_count": 0, "rollup_level": 0,
...     "gateway_seq": 7, "channels": {"t": {"count": 2, "sum": {"unscaled": 15, "scale": 1},
...     "min": 0.5, "max": 1.0, "m2": 0.125}}})
>>> decoded[9], decoded[10]
(2, 1)
>>> decoded[-4:]
({'t': 0.75}, {'t': 0.25}, {'t': 0.5}, {'t': 1.0})
"""

from __future__ import annotations

from typing import Any

__all__ = ["ALERT_COLUMNS", "SUMMARY_COLUMNS", "AvroRows", "alert_row", "summary_row"]

#: (column, Flink SQL type) of the decoded rows; ``*_ms`` are epoch milliseconds.
SUMMARY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("summary_id", "STRING"),
    ("gateway_id", "STRING"),
    ("scope", "STRING"),
    ("scope_key", "STRING"),
    ("site", "STRING"),
    ("device_type", "STRING"),
    ("window_start_ms", "BIGINT"),
    ("window_end_ms", "BIGINT"),
    ("model_version", "STRING"),
    ("readings", "BIGINT"),
    ("anomalies", "BIGINT"),
    ("max_score", "DOUBLE"),
    ("first_ts_ms", "BIGINT"),
    ("last_ts_ms", "BIGINT"),
    ("late_count", "BIGINT"),
    ("rollup_level", "INT"),
    ("gateway_seq", "BIGINT"),
    ("channel_mean", "MAP<STRING, DOUBLE>"),
    ("channel_std", "MAP<STRING, DOUBLE>"),
    ("channel_min", "MAP<STRING, DOUBLE>"),
    ("channel_max", "MAP<STRING, DOUBLE>"),
)
ALERT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("alert_id", "STRING"),
    ("incident_id", "STRING"),
    ("status", "STRING"),
    ("gateway_id", "STRING"),
    ("site", "STRING"),
    ("device_id", "STRING"),
    ("device_type", "STRING"),
    ("severity", "STRING"),
    ("ts_ms", "BIGINT"),
    ("first_ts_ms", "BIGINT"),
    ("last_ts_ms", "BIGINT"),
    ("score", "DOUBLE"),
    ("threshold", "DOUBLE"),
    ("rule", "STRING"),
    ("model_version", "STRING"),
    ("reading_count", "BIGINT"),
    ("gateway_seq", "BIGINT"),
    ("channels", "MAP<STRING, DOUBLE>"),
)


def summary_row(s: dict[str, Any]) -> tuple[Any, ...]:
    """A decoded WindowSummary as a row of :data:`SUMMARY_COLUMNS` (the cloud wire form is
    completed first: derived mean/std/summary_id, exact decimals as doubles)."""
    from edgestream.wire.forms import complete_summary

    s = complete_summary(s)
    channels = s["channels"].items()
    means = {name: c["mean"] for name, c in channels}
    stds = {name: c["std"] for name, c in channels}
    mins = {name: c["min"] for name, c in channels}
    maxs = {name: c["max"] for name, c in channels}
    return (
        s["summary_id"],
        s["gateway_id"],
        s["scope"],
        s["scope_key"],
        s["site"],
        s["device_type"],
        s["window_start"],
        s["window_end"],
        s.get("model_version"),
        s["count"],
        s["anomaly_count"],
        s.get("max_score"),
        s["first_ts"],
        s["last_ts"],
        s.get("late_count", 0),
        s.get("rollup_level", 0),
        s.get("gateway_seq"),
        means,
        stds,
        mins,
        maxs,
    )


def alert_row(a: dict[str, Any]) -> tuple[Any, ...]:
    """A decoded AnomalyAlert as a row of :data:`ALERT_COLUMNS` (the cloud wire form is
    completed first: derived ids and timestamps, exact decimals as doubles)."""
    from edgestream.wire.forms import complete_alert

    a = complete_alert(a)
    return (
        a["alert_id"],
        a["incident_id"],
        a.get("status"),
        a["gateway_id"],
        a["site"],
        a["device_id"],
        a["device_type"],
        a.get("severity"),
        a["ts"],
        a["first_ts"],
        a["last_ts"],
        a["score"],
        a["threshold"],
        a.get("rule"),
        a.get("model_version"),
        a.get("reading_count", 0),
        a.get("gateway_seq"),
        dict(a.get("channels") or {}),
    )


#: Table kind -> row builder.
ROWS = {"summaries": summary_row, "alerts": alert_row}


class AvroRows:
    """A PyFlink flat-map callable: a row of Confluent Avro bytes -> deduplicated flat rows.

    Built lazily on the worker (the registry client and dedup state are not pickled).
    """

    def __init__(self, kind: str, registry: str) -> None:
        self.kind, self.registry = kind, registry
        self._decode: Any = None
        self._dedup: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"kind": self.kind, "registry": self.registry, "_decode": None, "_dedup": None}

    def _open(self) -> None:
        from edgestream.core.serde import AvroDeserializer
        from edgestream.wire.dedup import Deduplicator

        self._decode = AvroDeserializer(self.registry)
        self._dedup = Deduplicator()

    def __call__(self, value: Any) -> Any:
        from pyflink.common import Row

        if self._decode is None:
            self._open()
        record = self._decode(bytes(value[0]))
        if self._dedup.accept_record(record):
            yield Row(*ROWS[self.kind](record))
