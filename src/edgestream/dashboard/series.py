"""Time series the analytics and models pages plot: fleet.stats rows and model events.

``fleet.stats`` rows are keyed ``window_start|scope|scope_key`` and the last row of a key is
current (a window fires again when late data changes it), so :class:`StatsSeries` keeps the
latest row per key.

>>> s = StatsSeries()
>>> for start, rate in ((0, 0.01), (60_000, 0.02), (60_000, 0.05)):
...     s.add({"window_start": start, "window_end": start + 60_000, "scope": "site",
...            "scope_key": "s1", "anomaly_rate": rate, "worst_devices": []})
>>> s.rates("site")
{'ts': [60.0, 120.0], 'series': {'s1': [0.01, 0.05]}}
>>> t = ModelTimeline()
>>> t.model({"model_name": "pump-ae", "version": "v2", "action": "promote",
...          "device_type": "pump", "created_at": 5_000})
>>> [(e["lane"], e["kind"], e["label"]) for e in t.events()]
[('models pump', 'promote', 'pump-ae v2')]

A model's version reaches the dashboard in two spellings: a gateway names the topology's
own model by its sidecar (``pump-ae-v1``) and a version from ``fleet.models`` by the update's
label (``v2``). The pages show one: :func:`version_label`.

>>> version_label("pump-ae-v1"), version_label("v2"), version_label("2026-a"), version_label(None)
('v1', 'v2', '2026-a', None)
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from edgestream.rollout.history import version_number

__all__ = ["ModelTimeline", "StatsSeries", "version_label"]

_STATS_FIELDS = (
    "window_start", "window_end", "scope", "scope_key", "device_count", "reading_count",
    "anomaly_count", "alert_count", "anomaly_rate", "worst_devices", "model_versions",
)  # fmt: skip


def version_label(version: Any) -> str | None:
    """``vN`` for a ``vN`` or ``<model>-vN`` version; any other label as it is."""
    if version is None:
        return None
    number = version_number(str(version))
    return f"v{number}" if number else str(version)


class StatsSeries:
    """The latest fleet.stats row per window and scope key (at most ``max_windows``)."""

    def __init__(self, max_windows: int = 1440) -> None:
        self.max_windows = max_windows
        self._rows: dict[tuple[int, str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def add(self, row: dict[str, Any]) -> None:
        key = (int(row.get("window_start") or 0), str(row.get("scope")), str(row.get("scope_key")))
        with self._lock:
            self._rows[key] = {k: row.get(k) for k in _STATS_FIELDS}
            starts = sorted({k[0] for k in self._rows})
            if len(starts) > self.max_windows:
                oldest = set(starts[: len(starts) - self.max_windows])
                self._rows = {k: v for k, v in self._rows.items() if k[0] not in oldest}

    def _of(self, scope: str) -> list[dict[str, Any]]:
        with self._lock:
            return [row for key, row in sorted(self._rows.items()) if key[1] == scope]

    def rates(self, scope: str) -> dict[str, Any]:
        """Anomaly rate per ``scope`` key over time: x = window ends (epoch s), one column
        of rates per key (None where a key has no row), as uPlot takes them."""
        rows = self._of(scope)
        ends = sorted({int(r["window_end"] or 0) for r in rows})
        index = {end: i for i, end in enumerate(ends)}
        series: dict[str, list[float | None]] = {}
        for row in rows:
            column = series.setdefault(str(row["scope_key"]), [None] * len(ends))
            column[index[int(row["window_end"] or 0)]] = float(row.get("anomaly_rate") or 0)
        return {"ts": [end / 1000 for end in ends], "series": dict(sorted(series.items()))}

    def worst(self, windows: int = 10, n: int = 10) -> list[dict[str, Any]]:
        """The devices with the most anomalous readings over the last ``windows`` windows
        (from the fleet scope's ``worst_devices``)."""
        rows = self._of("fleet")[-windows:]
        totals: dict[str, dict[str, Any]] = {}
        for row in rows:
            for rank in row.get("worst_devices") or []:
                entry = totals.setdefault(
                    rank["device_id"],
                    {"device_id": rank["device_id"], "anomaly_count": 0, "max_score": None},
                )
                entry["anomaly_count"] += int(rank.get("anomaly_count") or 0)
                score = rank.get("max_score")
                if score is not None:
                    entry["max_score"] = max(score, entry["max_score"] or score)
        ranked = sorted(totals.values(), key=lambda e: (-e["anomaly_count"], e["device_id"]))
        return ranked[:n]

    def latest(self, scope: str) -> list[dict[str, Any]]:
        """The rows of the newest window of ``scope``."""
        rows = self._of(scope)
        if not rows:
            return []
        newest = max(int(r["window_start"] or 0) for r in rows)
        return [r for r in rows if int(r["window_start"] or 0) == newest]


class ModelTimeline:
    """Model versions, retrain requests, promotions and rollbacks, as timeline events:
    ``{"at": epoch ms, "lane": ..., "kind": ..., "label": ..., "detail": ...}``."""

    def __init__(self, max_events: int = 2000) -> None:
        self._events: deque[dict[str, Any]] = deque(maxlen=max_events)
        self._lock = threading.Lock()

    def _add(self, at: Any, lane: str, kind: str, label: str, detail: str = "") -> None:
        event = {"at": int(at or 0), "lane": lane, "kind": kind, "label": label}
        event["detail"] = detail
        with self._lock:
            self._events.append(event)

    def model(self, record: dict[str, Any]) -> None:
        """A ModelUpdate (candidate, promote, rollback, ...) on fleet.models."""
        kind = str(record.get("action") or "update")
        label = f"{record.get('model_name')} {version_label(record.get('version'))}"
        parent = version_label(record.get("parent_version"))
        detail = f"from {parent}" if parent else ""
        lane = f"models {record.get('device_type') or record.get('model_name')}"
        self._add(record.get("created_at"), lane, kind, label, detail)

    def retrain(self, record: dict[str, Any]) -> None:
        """A RetrainRequest (CloudEvent) on fleet.retrain."""
        data = record.get("data") or {}
        version = version_label(data.get("model_version")) or ""
        label = f"retrain {data.get('model_name', '')} {version}".strip()
        detail = f"{data.get('reason', '')} ({data.get('scope')} {data.get('scope_key')})"
        self._add(record.get("time"), "retrain requests", "retrain", label, detail)

    def rollout(self, record: dict[str, Any]) -> None:
        """A gateway's RolloutEvent (progress reports are left out: they are many)."""
        event = str(record.get("event") or "?")
        if event.endswith("progress"):
            return
        lane = f"{record.get('gateway_id')} {record.get('device_type')}"
        label = f"{event} {version_label(record.get('version'))}"
        self._add(record.get("created_at"), lane, event, label, str(record.get("reason") or ""))

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return sorted(self._events, key=lambda e: e["at"])
