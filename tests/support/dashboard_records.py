"""Synthetic cloud records as the dashboard reads them (decoded, completed)."""

from __future__ import annotations

from typing import Any

T0 = 1_764_900_000_000  # epoch ms


def alert(device: str, ts: int, severity: str = "warning", site: str = "site-1",
          gateway: str = "gw-1") -> dict[str, Any]:  # fmt: skip
    return {
        "alert_id": f"{gateway}|{device}|rule|{ts}|0",
        "incident_id": f"{gateway}|{device}|rule|{ts}", "status": "open",
        "gateway_id": gateway, "site": site, "device_id": device,
        "device_type": "pump", "severity": severity, "ts": ts, "score": 0.93, "rule": "rule",
        "model_version": "v1", "emitted_at": ts + 20, "readings": [], "channels": {},
    }  # fmt: skip


def summary(device: str, end: int, max_score: float, gateway: str = "gw-1") -> dict[str, Any]:
    return {
        "gateway_id": gateway, "scope": "device", "scope_key": device, "site": "site-1",
        "device_type": "pump", "window_start": end - 10_000, "window_end": end,
        "last_ts": end - 100, "count": 100, "anomaly_count": 1, "max_score": max_score,
        "model_version": "v1",
    }  # fmt: skip


def sample(device: str, ts: int, value: float) -> dict[str, Any]:
    channels = {"pressure": value, "bearing_temp": 2 * value}
    return {"device_id": device, "site": "site-1", "device_type": "pump", "ts": ts,
            "seq": ts, "channels": channels, "tags": {}}  # fmt: skip


def report(gateway: str, created: int, depth: int, age_ms: int) -> dict[str, Any]:
    return {
        "report_id": f"{gateway}|{created}", "gateway_id": gateway, "created_at": created,
        "outbox_depth": depth, "outbox_bytes": depth * 400, "oldest_age_ms": age_ms,
        "dropped_alerts": 0, "dropped_summaries": 2, "dropped_readings": 1,
    }  # fmt: skip


def stats(start: int, scope: str, key: str, rate: float, worst: list[tuple[str, int]]) -> dict:
    return {
        "window_start": start, "window_end": start + 60_000, "scope": scope, "scope_key": key,
        "device_count": 3, "reading_count": 1000, "anomaly_count": int(rate * 1000),
        "alert_count": 1, "anomaly_rate": rate, "model_versions": {"v1": 1000},
        "worst_devices": [{"device_id": d, "anomaly_count": n, "max_score": 0.5 + n / 100}
                          for d, n in worst],
    }  # fmt: skip


def fleet_records() -> list[tuple[str, dict[str, Any]]]:
    """A small fleet's worth of every kind the dashboard reads, in arrival order."""
    out: list[tuple[str, dict[str, Any]]] = []
    for i in range(30):
        out.append(("sample", sample("gw-1-pump-0", T0 + i * 400, 3.0 + (i % 5) / 10)))
    for w in range(3):
        out.append(("summary", summary("gw-1-pump-0", T0 + (w + 1) * 10_000, (2 + w) / 10)))
        out.append(("summary", summary("gw-2-pump-0", T0 + (w + 1) * 10_000, 0.1, "gw-2")))
    out.append(("alert", alert("gw-1-pump-0", T0 + 5_000, "critical")))
    out.append(("alert", alert("gw-2-pump-0", T0 + 6_000, "info", "site-3", "gw-2")))
    out.append(("report", report("gw-1", T0 + 20_000, 12, 1_500)))
    for m in range(3):
        for scope, key in (("site", "site-1"), ("site", "site-3"), ("device_type", "pump")):
            out.append(("stats", stats(T0 + m * 60_000, scope, key, 0.01 * (m + 1), [])))
        out.append(("stats", stats(T0 + m * 60_000, "fleet", "*", 0.02, [("gw-1-pump-0", 5)])))
    out.append(("retrain", {"time": T0 + 30_000, "data": {"model_name": "pump-ae",
                "model_version": "v1", "reason": "drift", "scope": "device_type",
                "scope_key": "pump"}}))  # fmt: skip
    out.append(("model", {"model_name": "pump-ae", "version": "v2", "action": "candidate",
                "device_type": "pump", "created_at": T0 + 40_000, "parent_version": "v1",
                "artifact": b"onnx"}))  # fmt: skip
    out.append(("rollout", {"gateway_id": "gw-1", "event": "promoted", "device_type": "pump",
                "version": "v2", "live_version": "v2", "created_at": T0 + 50_000,
                "reason": "shadow passed"}))  # fmt: skip
    return out
