"""Synthetic alerts and window summaries (summaries computed with numpy from raw values)."""

from __future__ import annotations

from typing import Any

import numpy as np

CHANNELS = ("bearing_temp", "pressure")


def channel_stats(values: np.ndarray, last: float) -> dict[str, Any]:
    """ChannelStats of ``values`` the way the edge computes them (numpy reference)."""
    n = len(values)
    mean = float(np.mean(values))
    m2 = float(np.sum((values - mean) ** 2))
    return {
        "count": n,
        "sum": float(np.sum(values)),
        "min": float(np.min(values)),
        "max": float(np.max(values)),
        "mean": mean,
        "m2": m2,
        "std": float(np.sqrt(m2 / n)),
        "last": float(last),
        "p50": float(np.percentile(values, 50)),
        "p95": float(np.percentile(values, 95)),
    }


def summary(
    key: str,
    start: int,
    values: dict[str, np.ndarray],
    size: int = 10_000,
    gateway: str = "gw",
    scope: str = "device",
    anomalies: int = 0,
) -> dict[str, Any]:
    """A WindowSummary of one window; readings at evenly spaced times inside it."""
    n = max(len(v) for v in values.values())
    ts = start + np.arange(n) * (size // max(n, 1))
    return {
        "summary_id": f"{gateway}|{scope}|{key}|{start}|{start + size}",
        "gateway_id": gateway,
        "scope": scope,
        "scope_key": key,
        "site": "site-1",
        "device_type": "pump",
        "window_start": start,
        "window_end": start + size,
        "count": n,
        "anomaly_count": anomalies,
        "max_score": 0.1 + anomalies,
        "first_ts": int(ts[0]),
        "last_ts": int(ts[-1]),
        "channels": {c: channel_stats(v, v[-1]) for c, v in values.items()},
        "model_version": "v1",
        "late_count": 0,
        "rollup_level": 0,
        "gateway_seq": None,
    }


def alert(device: str, ts: int, gateway: str = "gw", number: int = 0) -> dict[str, Any]:
    """An AnomalyAlert with the gateway's ids (incident ``gateway|device|rule|first_ts``)."""
    return {
        "alert_id": f"{gateway}|{device}|threshold|{ts}|{number}",
        "incident_id": f"{gateway}|{device}|threshold|{ts}",
        "status": "open" if number == 0 else "update",
        "gateway_id": gateway,
        "site": "site-1",
        "device_id": device,
        "device_type": "pump",
        "severity": "warning",
        "ts": ts,
        "first_ts": ts,
        "last_ts": ts,
        "score": 0.9,
        "threshold": 0.5,
        "rule": "threshold",
        "model_version": "v1",
        "channels": {"pressure": 3.0},
        "readings": [{"seq": 1, "ts": ts, "score": 0.9}],
        "reading_count": 1,
        "gateway_seq": None,
        "emitted_at": ts,
    }


def random_windows(
    rng: np.random.Generator, devices: int, windows: int, size: int = 10_000, start: int = 0
) -> tuple[list[dict[str, Any]], dict[str, dict[str, list[np.ndarray]]]]:
    """Summaries of ``windows`` consecutive windows per device (window order, devices
    interleaved like the edge emits them) and the raw values behind them."""
    out, raw = [], {}
    for w in range(windows):
        for d in range(devices):
            key = f"pump-{d}"
            values = {
                c: rng.normal(50 + 10 * d, 5 + w % 3, size=int(rng.integers(5, 40)))
                for c in CHANNELS
            }
            out.append(summary(key, start + w * size, values, size, anomalies=int(w % 4 == 0)))
            for c, v in values.items():
                raw.setdefault(key, {}).setdefault(c, []).append(v)
    return out, raw
