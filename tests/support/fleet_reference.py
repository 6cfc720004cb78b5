"""Offline reference of the fleet stats, written from the spec without the job's code path.

Pooled moments in one pass over all parts (``var = (sum m2 + sum n (mean_i - mean)^2) / N``,
not the job's sequential Chan merge); replays dropped by ``(gateway_id, gateway_seq)``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any


def reference_stats(
    summaries: list[dict[str, Any]],
    alerts: list[dict[str, Any]],
    window_ms: int,
    worst_n: int,
    source_ms: int = 10_000,
) -> dict[tuple[int, str, str], dict[str, Any]]:
    seen = set()
    parts: dict[tuple[int, str, str], list[dict[str, Any]]] = defaultdict(list)
    for s in summaries:
        ident = (s["gateway_id"], s["gateway_seq"])
        if ident in seen:
            continue
        seen.add(ident)
        if s["scope"] != "device" or s["window_end"] - s["window_start"] != source_ms:
            continue
        w = (s["window_start"] // window_ms) * window_ms
        for scope in (("fleet", "*"), ("site", s["site"]), ("device_type", s["device_type"])):
            parts[(w, *scope)].append(s)
    alert_counts: dict[tuple[int, str, str], int] = defaultdict(int)
    seen_alerts = set()
    for a in alerts:
        if a["alert_id"] in seen_alerts or a["status"] != "open":
            continue
        seen_alerts.add(a["alert_id"])
        w = (a["ts"] // window_ms) * window_ms
        for scope in (("fleet", "*"), ("site", a["site"]), ("device_type", a["device_type"])):
            alert_counts[(w, *scope)] += 1
    out = {}
    for key, group in parts.items():
        readings = sum(s["count"] for s in group)
        anomalies = sum(s["anomaly_count"] for s in group)
        channels = {}
        for name in sorted({c for s in group for c in s["channels"]}):
            cs = [s["channels"][name] for s in group if name in s["channels"]]
            n = sum(c["count"] for c in cs)
            mean = math.fsum(c["sum"] for c in cs) / n
            m2 = math.fsum(c["m2"] for c in cs) + math.fsum(
                c["count"] * (c["sum"] / c["count"] - mean) ** 2 for c in cs
            )
            channels[name] = {"count": n, "mean": mean, "std": math.sqrt(m2 / n)}
        per_device: dict[str, list[Any]] = {}
        for s in group:
            d = per_device.setdefault(s["scope_key"], [0, None])
            d[0] += s["anomaly_count"]
            if s["max_score"] is not None:
                d[1] = s["max_score"] if d[1] is None else max(d[1], s["max_score"])
        worst = sorted(per_device.items(), key=lambda kv: (-kv[1][0], -(kv[1][1] or 0), kv[0]))
        versions: dict[str, int] = defaultdict(int)
        for s in group:
            versions[s["model_version"]] += s["count"]
        out[key] = {
            "device_count": len(per_device),
            "reading_count": readings,
            "anomaly_count": anomalies,
            "alert_count": alert_counts.get(key, 0),
            "anomaly_rate": anomalies / readings,
            "channels": channels,
            "worst_devices": [
                {"device_id": d, "anomaly_count": a, "max_score": m}
                for d, (a, m) in worst[:worst_n]
            ],
            "model_versions": dict(versions),
        }
    return out


def assert_rows_match(rows: dict[tuple[int, str, str], dict[str, Any]], ref: dict) -> None:
    """Exact counts (also each worst device's anomaly count), floats to 1e-9 (relative; a
    worst device's max score, a copied value, to 1e-12), same keys."""
    assert set(rows) == set(ref), set(rows) ^ set(ref)
    for key, want in ref.items():
        got = rows[key]
        for name in ("device_count", "reading_count", "anomaly_count", "alert_count"):
            assert got[name] == want[name], (key, name, got[name], want[name])
        assert math.isclose(got["anomaly_rate"], want["anomaly_rate"], rel_tol=1e-9, abs_tol=1e-12)
        assert got["model_versions"] == want["model_versions"], key
        assert [w["device_id"] for w in got["worst_devices"]] == [
            w["device_id"] for w in want["worst_devices"]
        ], key
        for g, w in zip(got["worst_devices"], want["worst_devices"], strict=True):
            assert g["anomaly_count"] == w["anomaly_count"], (key, w["device_id"])
            if w["max_score"] is None:
                assert g["max_score"] is None, (key, w["device_id"])
            else:
                assert math.isclose(g["max_score"], w["max_score"], rel_tol=1e-12), (key, w)
        assert set(got["channels"]) == set(want["channels"]), key
        for name, c in want["channels"].items():
            g = got["channels"][name]
            assert g["count"] == c["count"]
            assert math.isclose(g["mean"], c["mean"], rel_tol=1e-9, abs_tol=1e-9), (key, name)
            assert math.isclose(g["std"], c["std"], rel_tol=1e-9, abs_tol=1e-9), (key, name)
