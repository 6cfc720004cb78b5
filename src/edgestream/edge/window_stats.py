"""Vectorised window statistics: from the accepted readings to WindowSummary records.

Called by :class:`~edgestream.edge.windows.WindowEngine` when the watermark closes windows.
Every statistic is computed from the exact values of the window in one pass over numpy arrays
(group by ``argsort`` + ``ufunc.reduceat``; no Python loop over readings):

* readings of a window are put in a canonical order, (ts, seq, partition, offset, index in
  frame), so sums are bit-identical however the input was batched or replayed, and ``last`` is
  the value of the latest reading (ties: highest seq, then latest Kafka position);
* ``m2`` is the two-pass sum of squared deviations from the window mean, which is at least as
  accurate as Welford/Chan merging (roll-ups that merge summaries use Chan's formula on it);
* ``p50``/``p95`` reproduce ``numpy.percentile(values, q, method="linear")`` bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgestream.edge.state import ReadingColumns, Segment, StringTable

MIXED = "mixed"
_BIG = np.iinfo(np.int32).max


class Rows(ReadingColumns):
    """Readings gathered from segments, in canonical order; ``values`` uses global channels."""


def gather(segments: Sequence[Segment], n_channels: int, after: int, through: int) -> Rows:
    """Readings that belong to at least one window with start in ``(after, through]``."""
    picked: list[tuple[Segment, np.ndarray]] = []
    for seg in segments:
        if seg.min_first_open > through or seg.max_last_start <= after:
            continue
        picked.append((seg, (seg.first_open <= through) & (seg.last_start > after)))

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(s, name)[m] for s, m in picked])

    if not picked:
        empty = np.zeros(0, np.int64)
        return Rows(*([empty] * 8), np.zeros(0), np.zeros(0, bool), np.zeros((0, n_channels)))
    ts, seq, offset, rank = cat("ts"), cat("seq"), cat("offset"), cat("rank")
    partition = np.concatenate([np.full(int(m.sum()), s.partition, np.int64) for s, m in picked])
    values = np.full((ts.shape[0], n_channels), np.nan)
    row = 0
    for seg, m in picked:
        chunk = seg.values[m]
        values[row : row + chunk.shape[0], seg.channel_ids] = chunk
        row += chunk.shape[0]
    order = np.lexsort((rank, offset, partition, seq, ts))
    return Rows(
        ts=ts[order],
        seq=seq[order],
        first_open=cat("first_open")[order],
        last_start=cat("last_start")[order],
        device=cat("device")[order],
        site=cat("site")[order],
        device_type=cat("device_type")[order],
        model_version=cat("model_version")[order],
        score=cat("score")[order],
        anomaly=cat("anomaly")[order],
        values=values[order],
    )


def _expand(
    first_open: np.ndarray, last_start: np.ndarray, after: int, through: int, step: int
) -> tuple[np.ndarray, np.ndarray]:
    """(row index, window start) of every window in ``(after, through]`` a row was accepted into."""
    lo = np.maximum(first_open, after + step)
    hi = np.minimum(last_start, through)
    per_row = (hi - lo) // step + 1
    rep = np.repeat(np.arange(per_row.shape[0]), per_row)
    within = np.arange(rep.shape[0]) - np.repeat(np.cumsum(per_row) - per_row, per_row)
    return rep, lo[rep] + within * step


def count_windows(rows: Rows, scopes: Sequence[str], after: int, step: int) -> int:
    """Distinct (scope, key, window) of ``rows`` with window start > ``after``."""
    if not len(rows):
        return 0
    rep, starts = _expand(rows.first_open, rows.last_start, after, int(rows.last_start.max()), step)
    total = 0
    for scope in scopes:
        keys = (rows.device if scope == "device" else rows.site)[rep].astype(np.int64)
        total += np.unique((starts - starts.min()) // step * (int(keys.max()) + 1) + keys).size
    return total


def _lerp_percentile(
    sorted_vals: np.ndarray, offs: np.ndarray, n: np.ndarray, q: float
) -> np.ndarray:
    """numpy.percentile(method="linear") of each group of ``sorted_vals`` (all n > 0)."""
    virt = (n - 1) * q
    lo = np.floor(virt)
    above = virt >= n - 1
    lo_i = np.where(above, n - 1, lo).astype(np.int64)
    hi_i = np.where(above, n - 1, lo + 1).astype(np.int64)
    gamma = virt - np.where(above, -1.0, lo)  # numpy's quirk; harmless since a == b there
    a, b = sorted_vals[offs + lo_i], sorted_vals[offs + hi_i]
    diff = b - a
    return np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)


def _channel_stats(v: np.ndarray, gstart: np.ndarray, gid: np.ndarray) -> dict[str, list]:
    """Per-group statistics of one channel column (NaN = missing)."""
    n_rows = v.shape[0]
    valid = ~np.isnan(v)
    cnt = np.add.reduceat(valid.astype(np.int64), gstart)
    total = np.add.reduceat(np.where(valid, v, 0.0), gstart)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / cnt
        dev = np.where(valid, v - mean[gid], 0.0)
        m2 = np.add.reduceat(dev * dev, gstart)
        std = np.sqrt(m2 / cnt)
    last_pos = np.maximum.reduceat(np.where(valid, np.arange(n_rows), -1), gstart)
    vi = np.flatnonzero(valid)
    order = np.lexsort((v[vi], gid[vi]))
    sorted_vals = v[vi][order]
    has = cnt > 0
    offs = (np.cumsum(cnt) - cnt)[has]
    p50, p95 = np.full(cnt.shape, np.nan), np.full(cnt.shape, np.nan)
    if has.any():
        p50[has] = _lerp_percentile(sorted_vals, offs, cnt[has], 0.5)
        p95[has] = _lerp_percentile(sorted_vals, offs, cnt[has], 0.95)
    return {
        "count": cnt.tolist(),
        "sum": total.tolist(),
        "min": np.fmin.reduceat(v, gstart).tolist(),
        "max": np.fmax.reduceat(v, gstart).tolist(),
        "mean": mean.tolist(),
        "m2": m2.tolist(),
        "std": std.tolist(),
        "last": v[np.maximum(last_pos, 0)].tolist(),
        "p50": p50.tolist(),
        "p95": p95.tolist(),
    }


def site_key(site: str, source: str) -> str:
    """The ``scope_key`` of a site summary computed from the readings of sensor topic
    ``source`` ("/" is in neither a Kafka topic name nor a topology name).

    >>> site_key("site-3", "sensors.pump")
    'site-3/sensors.pump'
    """
    return f"{site}/{source}"


def _single_or_mixed(ids: np.ndarray, gstart: np.ndarray, names: StringTable) -> list:
    """Per group: the one name, ``"mixed"``, or None when every id is -1 (absent)."""
    hi = np.maximum.reduceat(ids, gstart).tolist()
    lo = np.minimum.reduceat(np.where(ids < 0, _BIG, ids), gstart).tolist()
    pairs = zip(lo, hi, strict=True)
    return [None if h < 0 else names[h] if lo_ == h else MIXED for lo_, h in pairs]


# long: one vectorised group-by per scope, then one record per group from its columns; split,
# the steps would pass a dozen parallel arrays between them
def summarise(
    rows: Rows,
    *,
    after: int,
    through: int,
    step: int,
    size: int,
    scopes: Sequence[str],
    gateway_id: str,
    strings: StringTable,
    channels: Sequence[str],
    source: str | None = None,
) -> list[dict[str, Any]]:
    """WindowSummary dicts of the windows with start in ``(after, through]``.

    Sorted by (window_end, scope, scope_key); only channels with at least one value appear.
    ``source`` (the sensor topic the readings came from) makes a *site* summary's key
    ``<site>/<source>``: each sensor topic has its own engines, so a site served by several
    topics (device types) gets one site summary per topic, each with an id of its own.
    """
    if not len(rows):
        return []
    rep, starts = _expand(rows.first_open, rows.last_start, after, through, step)
    channel_order = sorted(range(len(channels)), key=lambda c: channels[c])
    out: list[dict[str, Any]] = []
    for scope in scopes:
        keys = (rows.device if scope == "device" else rows.site)[rep].astype(np.int64)
        code = (starts - starts.min()) // step * len(strings) + keys
        order = np.argsort(code, kind="stable")
        code = code[order]
        idx = rep[order]
        gstart = np.flatnonzero(np.r_[True, code[1:] != code[:-1]])
        gid = np.cumsum(np.r_[False, code[1:] != code[:-1]])
        n_groups = gstart.shape[0]
        wstart = starts[order][gstart].tolist()
        key_names = [strings[k] for k in keys[order][gstart].tolist()]
        site_names = key_names if scope == "site" else None
        if scope == "site" and source is not None:
            key_names = [site_key(site, source) for site in key_names]
        ts = rows.ts[idx]
        count = np.diff(np.r_[gstart, idx.shape[0]]).tolist()
        anomalies = np.add.reduceat(rows.anomaly[idx].astype(np.int64), gstart).tolist()
        max_score = np.fmax.reduceat(rows.score[idx], gstart).tolist()
        first_ts = np.minimum.reduceat(ts, gstart).tolist()
        last_ts = np.maximum.reduceat(ts, gstart).tolist()
        site_ids = rows.site[idx]
        sites = (
            site_names if site_names is not None else _single_or_mixed(site_ids, gstart, strings)
        )
        dtypes = _single_or_mixed(rows.device_type[idx], gstart, strings)
        versions = _single_or_mixed(rows.model_version[idx], gstart, strings)
        per_channel = [
            (channels[c], _channel_stats(rows.values[idx, c], gstart, gid)) for c in channel_order
        ]
        for g in range(n_groups):
            start, key = wstart[g], key_names[g]
            chans: dict[str, dict[str, Any]] = {}
            for name, st in per_channel:
                if st["count"][g]:
                    chans[name] = {k: col[g] for k, col in st.items()}
            out.append(
                {
                    "summary_id": f"{gateway_id}|{scope}|{key}|{start}|{start + size}",
                    "gateway_id": gateway_id,
                    "scope": scope,
                    "scope_key": key,
                    "site": sites[g],
                    "device_type": dtypes[g],
                    "window_start": start,
                    "window_end": start + size,
                    "count": count[g],
                    "anomaly_count": anomalies[g],
                    "max_score": None if max_score[g] != max_score[g] else max_score[g],
                    "first_ts": first_ts[g],
                    "last_ts": last_ts[g],
                    "channels": chans,
                    "model_version": versions[g],
                    "late_count": 0,
                    "rollup_level": 0,
                    "gateway_seq": None,
                }
            )
    out.sort(key=lambda s: (s["window_end"], s["scope"], s["scope_key"]))
    return out
