"""Exact roll-up of WindowSummary records into coarser windows (10 s -> 1 min -> 10 min).

When the outbox passes its byte budget, tumbling window summaries of one key (scope +
scope_key) are merged into the coarser window of the roll-up chain that contains them:

* ``count``, ``anomaly_count``, ``late_count`` and each channel's ``count``/``sum`` add up;
  ``min``/``max``/``first_ts``/``last_ts``/``max_score`` take the extreme; each channel's
  ``m2`` merges with Chan et al.'s parallel formula
  ``m2 = m2_a + m2_b + (mean_b - mean_a)**2 * n_a * n_b / (n_a + n_b)``, and ``mean`` /
  ``std`` (population, ``sqrt(m2 / count)``) are derived from the merged moments. These are
  exact up to floating-point rounding: equal to numpy over the original readings.
* ``last`` is the channel's ``last`` of the part with the latest ``last_ts`` (ties: the later
  part; null when that part did not carry it); ``model_version`` is the one version,
  ``"mixed"`` when the parts differ.
* ``p50`` / ``p95`` cannot be merged exactly from summaries. They become the count-weighted
  median of the parts' values: the true quantile of the union always lies between the
  smallest and the largest of the parts' quantiles (fewer than a fraction q of every part lies
  below the smallest, so fewer than q of the union does; likewise above the largest), and the
  weighted median is inside that interval and follows the bulk of the data. The schema says
  these fields are approximate after roll-up.
* ``rollup_level`` is the largest part level + 1. ``summary_id`` is the coarse window's id plus
  ``|r<level>.<base size ms>.<smallest gateway_seq merged>``: deterministic from what was
  merged, unique, and never equal to the id of a window the edge computed at that size.

Only tumbling windows are merged (hopping windows overlap: merging them would count a reading
twice) and only within one lineage (``base_size``: the window size of the original summaries),
so a 1 min roll-up of 10 s windows is never merged with the edge's own 1 min windows.

>>> parts = [
...     {"summary_id": "gw|device|p1|0|10000", "gateway_id": "gw", "scope": "device",
...      "scope_key": "p1", "site": "s", "device_type": "pump", "window_start": 0,
...      "window_end": 10000, "count": 2, "anomaly_count": 1, "max_score": 0.9, "first_ts": 0,
...      "last_ts": 9000, "model_version": "v1", "late_count": 0, "rollup_level": 0,
...      "channels": {"t": {"count": 2, "sum": 3.0, "min": 1.0, "max": 2.0, "mean": 1.5,
...                         "m2": 0.5, "std": 0.5, "last": 2.0, "p50": 1.5, "p95": 1.95}}},
...     {"summary_id": "gw|device|p1|10000|20000", "gateway_id": "gw", "scope": "device",
...      "scope_key": "p1", "site": "s", "device_type": "pump", "window_start": 10000,
...      "window_end": 20000, "count": 1, "anomaly_count": 0, "max_score": 0.1,
...      "first_ts": 12000, "last_ts": 12000, "model_version": "v1", "late_count": 0,
...      "rollup_level": 0, "channels": {"t": {"count": 1, "sum": 6.0, "min": 6.0, "max": 6.0,
...      "mean": 6.0, "m2": 0.0, "std": 0.0, "last": 6.0, "p50": 6.0, "p95": 6.0}}},
... ]
>>> merged = merge_summaries(parts, size=60000, base_size=10000, first_seq=7)
>>> merged["summary_id"], merged["count"], merged["rollup_level"]
('gw|device|p1|0|60000|r1.10000.7', 3, 1)
>>> t = merged["channels"]["t"]
>>> t["sum"], t["mean"], t["m2"], t["last"]  # values 1, 2, 6: mean 3, m2 = 4 + 1 + 9
(9.0, 3.0, 14.0, 6.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["coarse_start", "merge_channels", "merge_summaries", "next_size", "weighted_median"]

MIXED = "mixed"


def coarse_start(window_start: int, size: int) -> int:
    """Start of the epoch-aligned window of ``size`` ms that contains ``window_start``.

    >>> coarse_start(70_000, 60_000)
    60000
    """
    return window_start - window_start % size


def next_size(size: int, chain: Sequence[int]) -> int | None:
    """The roll-up target of windows of ``size`` ms: the smallest size of ``chain`` above it
    that it divides; None when there is none (the coarsest level).

    >>> next_size(10_000, (10_000, 60_000, 600_000)), next_size(600_000, (10_000, 60_000))
    (60000, None)
    >>> next_size(30_000, (10_000, 60_000))
    60000
    """
    for target in sorted(chain):
        if target > size and target % size == 0:
            return target
    return None


def weighted_median(values: Sequence[float], weights: Sequence[float]) -> float:
    """The value at which the cumulative weight (values sorted) first reaches half the total.

    >>> weighted_median([5.0, 1.0, 3.0], [1, 1, 10])
    3.0
    """
    pairs = sorted(zip(values, weights, strict=True))
    half = sum(w for _, w in pairs) / 2.0
    acc = 0.0
    for value, weight in pairs:
        acc += weight
        if acc >= half:
            return value
    return pairs[-1][0]


def _quantile(stats: list[dict[str, Any]], name: str) -> float | None:
    known = [(s[name], s["count"]) for s in stats if s.get(name) is not None]
    if not known:
        return None
    return weighted_median([v for v, _ in known], [w for _, w in known])


def merge_channels(parts: Sequence[tuple[dict[str, Any], int]]) -> dict[str, Any]:
    """Merge one channel's ChannelStats of several windows; ``parts`` are (stats, last_ts)
    in window order. Exact for count/sum/min/max/m2 (Chan), derived mean/std."""
    stats = [s for s, _ in parts if s["count"] > 0]
    n = 0
    mean = 0.0
    m2 = 0.0
    for s in stats:
        nb = int(s["count"])
        mb = float(s["sum"]) / nb
        total = n + nb
        delta = mb - mean
        m2 = m2 + float(s["m2"]) + delta * delta * n * nb / total
        mean = mean + delta * nb / total
        n = total
    total_sum = math.fsum(float(s["sum"]) for s in stats)
    last_stats = max(enumerate(parts), key=lambda ip: (ip[1][1], ip[0]))[1][0]
    return {
        "count": n,
        "sum": total_sum,
        "min": min(float(s["min"]) for s in stats),
        "max": max(float(s["max"]) for s in stats),
        "mean": total_sum / n if n else 0.0,
        "m2": max(m2, 0.0),
        "std": math.sqrt(max(m2, 0.0) / n) if n else 0.0,
        "last": None if last_stats.get("last") is None else float(last_stats["last"]),
        "p50": _quantile(stats, "p50"),
        "p95": _quantile(stats, "p95"),
    }


def _one_or_mixed(values: Sequence[str | None]) -> str | None:
    present = {v for v in values if v is not None}
    if not present:
        return None
    return present.pop() if len(present) == 1 else MIXED


def merge_summaries(
    parts: Sequence[dict[str, Any]], size: int, base_size: int, first_seq: int
) -> dict[str, Any]:
    """The WindowSummary of the ``size`` ms window holding ``parts`` (same scope and key, in
    window order); ``first_seq`` is the smallest gateway_seq among them (for the id)."""
    if not parts:
        raise ValueError("nothing to merge")
    head = parts[0]
    start = coarse_start(int(head["window_start"]), size)
    if any(coarse_start(int(p["window_start"]), size) != start for p in parts) or any(
        int(p["window_end"]) > start + size for p in parts
    ):
        raise ValueError(f"the parts do not all fall in the window [{start}, {start + size})")
    level = max(int(p.get("rollup_level") or 0) for p in parts) + 1
    names = sorted({c for p in parts for c in p["channels"]})
    channels = {
        name: merge_channels(
            [(p["channels"][name], p["last_ts"]) for p in parts if name in p["channels"]]
        )
        for name in names
    }
    scores = [p["max_score"] for p in parts if p.get("max_score") is not None]
    gateway, scope, key = head["gateway_id"], head["scope"], head["scope_key"]
    return {
        "summary_id": f"{gateway}|{scope}|{key}|{start}|{start + size}|r{level}.{base_size}"
        f".{first_seq}",
        "gateway_id": gateway,
        "scope": scope,
        "scope_key": key,
        "site": _one_or_mixed([p["site"] for p in parts]) or head["site"],
        "device_type": _one_or_mixed([p["device_type"] for p in parts]) or head["device_type"],
        "window_start": start,
        "window_end": start + size,
        "count": sum(int(p["count"]) for p in parts),
        "anomaly_count": sum(int(p.get("anomaly_count") or 0) for p in parts),
        "max_score": max(scores) if scores else None,
        "first_ts": min(int(p["first_ts"]) for p in parts),
        "last_ts": max(int(p["last_ts"]) for p in parts),
        "channels": channels,
        "model_version": _one_or_mixed([p.get("model_version") for p in parts]),
        "late_count": sum(int(p.get("late_count") or 0) for p in parts),
        "rollup_level": level,
        "gateway_seq": None,
    }
