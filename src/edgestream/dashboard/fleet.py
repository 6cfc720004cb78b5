"""What the dashboard knows about the fleet: built from the records the cloud broker holds.

:class:`FleetView` takes each first copy read from a cloud topic (:meth:`FleetView.add`, with
its record kind) and answers the pages' questions as JSON-ready dicts. Pure logic: no broker,
no clock of its own (``now_ms`` is passed in), safe to call from several threads.

>>> view = FleetView(stale_after_s=60)
>>> view.add("summary", {"gateway_id": "gw-1", "scope": "device", "scope_key": "p-1",
...     "site": "s1", "device_type": "pump", "window_start": 0, "window_end": 10_000,
...     "last_ts": 9_900, "count": 100, "anomaly_count": 2, "max_score": 0.9,
...     "model_version": "v1"}, now_ms=12_000)
'summary'
>>> row = view.gateways(now_ms=20_000)[0]
>>> row["gateway"], row["status"], row["lag_s"], row["models"]
('gw-1', 'up', 10.1, {'pump': 'v1'})
>>> view.gateways(now_ms=100_000)[0]["status"]
'down'
>>> view.device("p-1")["scores"]
[[10000, 0.9]]
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from edgestream.alerts.filters import AlertFilter
from edgestream.dashboard.series import ModelTimeline, StatsSeries, version_label

__all__ = ["ALERT_FIELDS", "FleetView"]

#: the fields of an alert the pages show (``readings`` and ``channels`` stay on the broker)
ALERT_FIELDS = (
    "alert_id", "incident_id", "status", "severity", "gateway_id", "site", "device_id",
    "device_type", "ts", "score", "rule", "model_version", "emitted_at",
)  # fmt: skip


_DROPS = ("alerts", "summaries", "readings")


@dataclass
class _Gateway:
    """What the cloud heard from one gateway."""

    name: str
    heard_ms: int = 0  # when the dashboard last read a record of it
    event_ms: int = 0  # newest event time in its summaries and alerts
    report: dict[str, Any] = field(default_factory=dict)  # latest ForwarderReport
    models: dict[str, str] = field(default_factory=dict)  # device type -> model version
    rollout: dict[str, dict[str, Any]] = field(default_factory=dict)  # device type -> latest
    sites: set[str] = field(default_factory=set)
    alerts: int = 0


@dataclass
class _Device:
    """Recent sampled readings, window scores and alerts of one device."""

    site: str = ""
    device_type: str = ""
    gateway: str = ""
    samples: deque[tuple[int, dict[str, float]]] = field(default_factory=lambda: deque(maxlen=2000))
    scores: deque[tuple[int, float]] = field(default_factory=lambda: deque(maxlen=720))
    alerts: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=200))


class FleetView:
    """The fleet as the cloud topics show it (see the module doc)."""

    def __init__(self, stale_after_s: float = 120.0, max_alerts: int = 5000) -> None:
        self.stale_after_ms = int(stale_after_s * 1000)
        self._lock = threading.Lock()
        self._gateways: dict[str, _Gateway] = {}
        self._devices: dict[str, _Device] = {}
        self._alerts: deque[dict[str, Any]] = deque(maxlen=max_alerts)
        self.stats = StatsSeries()
        self.timeline = ModelTimeline()
        self.counts: dict[str, int] = {}
        self.error: str | None = None  # the cloud reader stopped (why)

    # -- intake ----------------------------------------------------------------------------
    def add(self, kind: str, record: dict[str, Any], now_ms: int) -> str:
        """Take one record of ``kind`` (alert, summary, sample, report, rollout, model,
        retrain, stats); returns the kind (what changed, for the pages' push updates)."""
        with self._lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            handler = getattr(self, f"_on_{kind}", None)
            if handler is not None:
                handler(record, now_ms)
        return kind

    def _gateway(self, name: str | None, now_ms: int) -> _Gateway | None:
        if not name:
            return None
        gw = self._gateways.get(name)
        if gw is None:
            gw = self._gateways[name] = _Gateway(name)
        gw.heard_ms = max(gw.heard_ms, now_ms)
        return gw

    def _device(self, record: dict[str, Any], device_id: str) -> _Device:
        dev = self._devices.get(device_id)
        if dev is None:
            dev = self._devices[device_id] = _Device()
        dev.site = record.get("site") or dev.site
        dev.device_type = record.get("device_type") or dev.device_type
        dev.gateway = record.get("gateway_id") or dev.gateway
        return dev

    def _on_alert(self, record: dict[str, Any], now_ms: int) -> None:
        alert = alert_row(record, now_ms)
        self._alerts.append(alert)
        gw = self._gateway(alert["gateway_id"], now_ms)
        if gw is not None:
            gw.alerts += 1
            gw.event_ms = max(gw.event_ms, int(alert.get("ts") or 0))
            gw.sites.add(str(alert.get("site")))
        if alert.get("device_id"):
            self._device(record, str(alert["device_id"])).alerts.append(alert)

    def _on_summary(self, record: dict[str, Any], now_ms: int) -> None:
        gw = self._gateway(record.get("gateway_id"), now_ms)
        if gw is not None:
            gw.event_ms = max(gw.event_ms, int(record.get("last_ts") or 0))
            if record.get("model_version") and record.get("device_type"):
                gw.models[str(record["device_type"])] = str(version_label(record["model_version"]))
            if record.get("site"):
                gw.sites.add(str(record["site"]))
        if record.get("scope") == "device" and record.get("max_score") is not None:
            dev = self._device(record, str(record.get("scope_key")))
            point = (int(record["window_end"]), float(record["max_score"]))
            if not dev.scores or dev.scores[-1] != point:
                dev.scores.append(point)

    def _on_sample(self, record: dict[str, Any], now_ms: int) -> None:
        if not record.get("device_id"):
            return
        dev = self._device(record, str(record["device_id"]))
        gw = self._gateways.get(dev.gateway)
        if gw is not None:
            gw.heard_ms = max(gw.heard_ms, now_ms)
        channels = {k: float(v) for k, v in (record.get("channels") or {}).items()}
        dev.samples.append((int(record.get("ts") or 0), channels))

    def _on_report(self, record: dict[str, Any], now_ms: int) -> None:
        gw = self._gateway(record.get("gateway_id"), now_ms)
        if gw is not None and int(record.get("created_at") or 0) >= gw.report.get("created_at", 0):
            gw.report = {k: v for k, v in record.items() if not isinstance(v, bytes)}

    def _on_rollout(self, record: dict[str, Any], now_ms: int) -> None:
        gw = self._gateway(record.get("gateway_id"), now_ms)
        if gw is not None:
            kind = str(record.get("device_type") or "?")
            gw.rollout[kind] = {
                "event": record.get("event"),
                "version": version_label(record.get("version")),
                "live_version": version_label(record.get("live_version")),
                "at": record.get("created_at"),
                "reason": record.get("reason"),
            }
            if record.get("live_version"):
                gw.models[kind] = str(version_label(record["live_version"]))
        self.timeline.rollout(record)

    def _on_model(self, record: dict[str, Any], now_ms: int) -> None:
        self.timeline.model(record)

    def _on_retrain(self, record: dict[str, Any], now_ms: int) -> None:
        self.timeline.retrain(record)

    def _on_stats(self, record: dict[str, Any], now_ms: int) -> None:
        self.stats.add(record)

    # -- answers ---------------------------------------------------------------------------
    def gateways(self, now_ms: int) -> list[dict[str, Any]]:
        """One row per gateway: up/down, lag, outbox, models, rollout state."""
        with self._lock:
            return [self._gateway_row(gw, now_ms) for _, gw in sorted(self._gateways.items())]

    def _gateway_row(self, gw: _Gateway, now_ms: int) -> dict[str, Any]:
        report = gw.report
        created = report.get("created_at")
        return {
            "gateway": gw.name,
            "status": "up" if now_ms - gw.heard_ms <= self.stale_after_ms else "down",
            "heard_s": round((now_ms - gw.heard_ms) / 1000, 1),
            "lag_s": round((now_ms - gw.event_ms) / 1000, 1) if gw.event_ms else None,
            "outbox_depth": report.get("outbox_depth"),
            "outbox_bytes": report.get("outbox_bytes"),
            "outbox_age_s": (
                round(report["oldest_age_ms"] / 1000, 1) if "oldest_age_ms" in report else None
            ),
            "report_age_s": round((now_ms - created) / 1000, 1) if created else None,
            "dropped": sum(int(report.get(f"dropped_{k}") or 0) for k in _DROPS),
            "models": dict(sorted(gw.models.items())),
            "rollout": dict(sorted(gw.rollout.items())),
            "sites": sorted(gw.sites),
            "alerts": gw.alerts,
        }

    def alerts(self, wanted: AlertFilter | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """The newest alerts first (at most ``limit``) that pass ``wanted``."""
        with self._lock:
            rows = list(self._alerts)
        out = []
        for alert in reversed(rows):
            if wanted is None or wanted.matches(alert):
                out.append(alert)
                if len(out) >= limit:
                    break
        return out

    def choices(self) -> dict[str, list[str]]:
        """Sites, devices and gateways seen (the filters' options)."""
        with self._lock:
            devices = sorted(self._devices)
            sites = sorted({d.site for d in self._devices.values() if d.site})
        return {"sites": sites, "devices": devices, "gateways": sorted(self._gateways)}

    def device(self, device_id: str) -> dict[str, Any] | None:
        """A device's recent readings (columns per channel), window scores and alerts."""
        with self._lock:
            dev = self._devices.get(device_id)
            if dev is None:
                return None
            samples = sorted(dev.samples, key=lambda s: s[0])
            scores, alerts = sorted(dev.scores), list(dev.alerts)
        channels = sorted({name for _, values in samples for name in values})
        return {
            "device": device_id,
            "site": dev.site,
            "device_type": dev.device_type,
            "gateway": dev.gateway,
            "ts": [ts for ts, _ in samples],
            "channels": {c: [v.get(c) for _, v in samples] for c in channels},
            "scores": [list(p) for p in scores],
            "alerts": alerts,
        }


def alert_row(record: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """The fields of an AnomalyAlert the pages show, plus when the dashboard read it."""
    row = {name: record.get(name) for name in ALERT_FIELDS}
    row["model_version"] = version_label(row["model_version"])
    row["received_ms"] = now_ms
    return row
