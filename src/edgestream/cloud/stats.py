"""Fleet analytics over forwarded window summaries and alerts: pure logic, no Flink, no Kafka.

One :class:`FleetStats` instance keeps the open event-time windows of the fleet job. A device
summary (``scope == "device"``, of the job's source window size, see :func:`summary_lineage`)
counts in the cloud window ``[s, s + W)`` that contains its ``window_start``, for three
scopes: the fleet (``"*"``), its site and its device type. An alert with status ``open``
counts (``alert_count``) in the window of its ``ts``.

Per window and scope: distinct devices, readings, anomalous readings, per-channel pooled mean
and population std (count/mean/m2 merged with Chan et al.'s formula from each summary's
count/sum/m2), the worst ``worst_n`` devices (anomaly count, then max score, then id), the
model-version mix (readings per version) and ``late_count``.

Event time (Flink's semantics, driven by the caller's watermark):

* :meth:`FleetStats.advance` with watermark ``wm`` *fires* every window with ``end - 1 <= wm``
  once (its rows are returned), and re-fires, with the updated rows, a fired window that
  received more data since.
* A window is *purged* once ``end - 1 + allowed_lateness <= wm`` (the outage budget): its
  accumulators are dropped, its last rows kept (``retention``) so later data still shows.
* A summary or alert that arrives after its window fired is *late*: counted in that row's
  ``late_count``; within the allowed lateness it also counts in the statistics (the row is
  re-emitted), after it only in ``late_count`` (the row is re-emitted with the new count).
  Nothing is dropped silently: past ``retention`` it is counted in ``stats["expired"]``.

Rows are keyed by ``(window_start, scope, scope_key)``: the last row of a key is the current
one (an upsert stream; Flink SQL reads it with the ``upsert-kafka`` connector or ``json``).

>>> fs = FleetStats(window_ms=60_000, allowed_lateness_ms=0, worst_n=2)
>>> s = {"scope": "device", "scope_key": "p1", "site": "s1", "device_type": "pump",
...      "window_start": 0, "window_end": 10_000, "count": 4, "anomaly_count": 1,
...      "max_score": 0.7, "model_version": "v1", "rollup_level": 0,
...      "channels": {"t": {"count": 4, "sum": 10.0, "m2": 5.0}}}
>>> fs.add_summary(s)
'counted'
>>> rows = fs.advance(59_999, now_ms=1)
>>> [(r["scope"], r["scope_key"], r["reading_count"], r["channels"]["t"]["mean"]) for r in rows]
[('fleet', '*', 4, 2.5), ('site', 's1', 4, 2.5), ('device_type', 'pump', 4, 2.5)]
>>> fs.add_summary(s), fs.advance(60_000, now_ms=2)[0]["late_count"]
('late', 1)
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from edgestream.forward.records import expand_double

__all__ = ["Cell", "FleetStats", "ScopeWindow", "channel_parts", "summary_lineage"]

FLEET = ("fleet", "*")
DAY_MS = 86_400_000


def summary_lineage(summary: dict[str, Any]) -> int:
    """The window size (ms) of the original edge windows a summary aggregates.

    An original window (``rollup_level`` 0) is its own size; a forwarder roll-up names its
    base size in its id (``...|r<level>.<base size>.<seq>``, :mod:`edgestream.forward.rollup`).

    >>> summary_lineage({"window_start": 0, "window_end": 10_000, "rollup_level": 0})
    10000
    >>> summary_lineage({"window_start": 0, "window_end": 60_000, "rollup_level": 1,
    ...                  "summary_id": "gw|device|p1|0|60000|r1.10000.7"})
    10000
    """
    if not summary.get("rollup_level"):
        return int(summary["window_end"]) - int(summary["window_start"])
    sid = str(summary.get("summary_id") or "")
    tail = sid.rsplit("|", 1)[-1]
    if tail.startswith("r") and tail.count(".") >= 1:
        try:
            return int(tail.split(".")[1])
        except ValueError:
            pass
    return int(summary["window_end"]) - int(summary["window_start"])


@dataclass
class Cell:
    """Summary data of one window for one ``(site, device type)``: its three scopes (fleet,
    site, device type) share it, so a summary is folded in once, not three times; a scope's
    row merges its cells (:meth:`ScopeWindow.row`)."""

    devices: dict[str, list[Any]] = field(default_factory=dict)  # id -> [anomalies, max score]
    reading_count: int = 0
    anomaly_count: int = 0
    channels: dict[str, list[float]] = field(default_factory=dict)  # name -> [n, mean, m2]
    model_versions: dict[str, int] = field(default_factory=dict)

    def add_summary(self, s: dict[str, Any], parts: list[tuple[str, int, float, float]]) -> None:
        """Fold one device summary in: ``parts`` are its channels' ``(name, n, mean, m2)``
        (:func:`channel_parts`), merged with Chan et al.'s formula."""
        count = s["count"]
        anomalies = s.get("anomaly_count") or 0
        score = s.get("max_score")
        self.reading_count += count
        self.anomaly_count += anomalies
        _add_device(self.devices, s["scope_key"], anomalies, score)
        version = s.get("model_version") or "unknown"
        versions = self.model_versions
        versions[version] = versions.get(version, 0) + count
        channels = self.channels
        for name, n_b, mean_b, m2_b in parts:
            _fold(channels, name, n_b, mean_b, m2_b)

    def merge(self, other: Cell) -> None:
        """Fold another cell in (the same as folding in its summaries)."""
        self.reading_count += other.reading_count
        self.anomaly_count += other.anomaly_count
        for device, (anomalies, score) in other.devices.items():
            _add_device(self.devices, device, anomalies, score)
        versions = self.model_versions
        for version, count in other.model_versions.items():
            versions[version] = versions.get(version, 0) + count
        for name, (n, mean, m2) in other.channels.items():
            _fold(self.channels, name, n, mean, m2)


def _add_device(devices: dict[str, list[Any]], device: str, anomalies: int, score: Any) -> None:
    dev = devices.get(device)
    if dev is None:
        devices[device] = [anomalies, score]
        return
    dev[0] += anomalies
    if score is not None and (dev[1] is None or score > dev[1]):
        dev[1] = score


def _fold(channels: dict[str, list[float]], name: str, n: float, mean: float, m2: float) -> None:
    acc = channels.get(name)
    if acc is None:
        channels[name] = [n, mean, m2]
    else:
        _merge(acc, n, mean, m2)


def _merge(acc: list[float], n_b: float, mean_b: float, m2_b: float) -> None:
    """Chan et al.: ``acc = [n, mean, m2]`` absorbs another part's moments."""
    n_a, mean_a, m2_a = acc
    n = n_a + n_b
    delta = mean_b - mean_a
    acc[0] = n
    acc[1] = mean_a + delta * n_b / n
    acc[2] = m2_a + m2_b + delta * delta * n_a * n_b / n


@dataclass
class ScopeWindow:
    """The accumulator of one window and one scope (fleet, a site or a device type): its own
    alert and late counts, and the :class:`Cell` s of the summaries in it."""

    alert_count: int = 0
    late_count: int = 0
    cells: list[Cell] = field(default_factory=list)

    def _merged(self) -> Cell:
        if len(self.cells) == 1:
            return self.cells[0]
        out = Cell()
        for cell in self.cells:
            out.merge(cell)
        return out

    def row(self, start: int, end: int, scope: tuple[str, str], worst_n: int, now_ms: int):
        """The FleetStats record (schemas/fleet_stats.avsc) of this accumulator."""
        data = self._merged()
        ranked = sorted(
            data.devices.items(),
            key=lambda kv: (-kv[1][0], -(kv[1][1] if kv[1][1] is not None else -math.inf), kv[0]),
        )
        readings = data.reading_count
        return {
            "window_start": start,
            "window_end": end,
            "scope": scope[0],
            "scope_key": scope[1],
            "device_count": len(data.devices),
            "reading_count": readings,
            "anomaly_count": data.anomaly_count,
            "alert_count": self.alert_count,
            "anomaly_rate": data.anomaly_count / readings if readings else 0.0,
            "channels": {
                name: {"count": int(n), "mean": mean, "std": math.sqrt(max(m2, 0.0) / n)}
                for name, (n, mean, m2) in sorted(data.channels.items())
            },
            "worst_devices": [
                {"device_id": d, "anomaly_count": a, "max_score": m}
                for d, (a, m) in ranked[:worst_n]
            ],
            "model_versions": dict(sorted(data.model_versions.items())),
            "late_count": self.late_count,
            "computed_at": now_ms,
        }


def channel_parts(summary: dict[str, Any]) -> list[tuple[str, int, float, float]]:
    """``(name, count, mean, m2)`` of each non-empty channel of a summary (mean = sum / count;
    a sum sent as an exact Decimal, :func:`edgestream.forward.records.compact_double`, is
    expanded to its double first).

    >>> channel_parts({"channels": {"t": {"count": 4, "sum": 10.0, "m2": 5.0},
    ...                             "u": {"count": 2, "sum": {"unscaled": 25, "scale": 1},
    ...                                   "m2": 0.5}, "v": {"count": 0, "sum": 0.0, "m2": 0.0}}})
    [('t', 4, 2.5, 5.0), ('u', 2, 1.25, 0.5)]
    """
    out = []
    for name, c in summary["channels"].items():
        n = c["count"]
        if n > 0:
            total = c["sum"]
            if total.__class__ is dict:
                total = expand_double(total)
            out.append((name, n, total / n, float(c["m2"])))
    return out


def _scopes(record: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return (FLEET, ("site", str(record["site"])), ("device_type", str(record["device_type"])))


class FleetStats:
    """Open windows of the fleet analytics job (see the module doc)."""

    def __init__(
        self,
        window_ms: int,
        allowed_lateness_ms: int,
        worst_n: int = 5,
        source_window_ms: int | None = None,
        retention_ms: int = DAY_MS,
    ) -> None:
        self.window_ms = window_ms
        self.allowed_lateness_ms = allowed_lateness_ms
        self.worst_n = worst_n
        self.source_window_ms = source_window_ms
        self.retention_ms = retention_ms
        self.open: dict[int, dict[tuple[str, str], ScopeWindow]] = {}
        self.cells: dict[int, dict[tuple[str, str], Cell]] = {}  # open window -> (site, type)
        self.fired: set[int] = set()  # open windows that fired at least once
        self.dirty: set[tuple[int, tuple[str, str]]] = set()  # changed since they fired
        self.closed: dict[int, dict[tuple[str, str], dict[str, Any]]] = {}  # purged: last rows
        self.watermark = -(2**62)
        self.stats: Counter[str] = Counter()

    def window_of(self, ts: int) -> int:
        return ts - ts % self.window_ms

    def _counts(self, summary: dict[str, Any]) -> bool:
        if summary.get("scope") != "device":
            return False
        return self.source_window_ms is None or summary_lineage(summary) == self.source_window_ms

    def add_summary(self, summary: dict[str, Any]) -> str:
        """Count one (deduplicated) summary; returns ``counted``, ``late``, ``expired`` or
        ``skipped`` (site summaries and other window lineages repeat device data)."""
        if not self._counts(summary):
            self.stats["skipped"] += 1
            return "skipped"
        return self._add(int(summary["window_start"]), summary, is_alert=False)

    def add_alert(self, alert: dict[str, Any]) -> str:
        """Count one (deduplicated) alert: ``open`` ones raise ``alert_count``."""
        if alert.get("status", "open") != "open":
            self.stats["skipped"] += 1
            return "skipped"
        return self._add(int(alert["ts"]), alert, is_alert=True)

    def _add(self, ts: int, record: dict[str, Any], is_alert: bool) -> str:
        start = self.window_of(ts)
        late = start in self.fired or start in self.closed or self._purged(start)
        if start in self.closed or self._purged(start):
            rows = self.closed.get(start)
            if rows is None:
                horizon = self.watermark - self.allowed_lateness_ms - self.retention_ms
                if start + self.window_ms <= horizon:
                    self.stats["expired"] += 1
                    return "expired"
                rows = self.closed[start] = {}
            for scope in _scopes(record):
                row = rows.get(scope)
                if row is None:
                    row = rows[scope] = ScopeWindow().row(
                        start, start + self.window_ms, scope, self.worst_n, 0
                    )
                row["late_count"] += 1
                self.dirty.add((start, scope))
            self.stats["late_after_lateness"] += 1
            return "late"
        scopes = self.open.get(start)
        if scopes is None:
            scopes = self.open[start] = {}
            self.cells[start] = {}
        if not is_alert:  # the summary's cell (new cells join their three scopes)
            key = (str(record["site"]), str(record["device_type"]))
            cell = self.cells[start].get(key)
            if cell is None:
                cell = self.cells[start][key] = Cell()
                for scope in _scopes(record):
                    acc = scopes.get(scope)
                    if acc is None:
                        acc = scopes[scope] = ScopeWindow()
                    acc.cells.append(cell)
            cell.add_summary(record, channel_parts(record))
        if is_alert or late:
            for scope in _scopes(record):
                acc = scopes.get(scope)
                if acc is None:
                    acc = scopes[scope] = ScopeWindow()
                if is_alert:
                    acc.alert_count += 1
                if late:
                    acc.late_count += 1
                    self.dirty.add((start, scope))
        self.stats["late" if late else "counted"] += 1
        return "late" if late else "counted"

    def _purged(self, start: int) -> bool:
        return start + self.window_ms - 1 + self.allowed_lateness_ms <= self.watermark

    def advance(self, watermark: int, now_ms: int) -> list[dict[str, Any]]:
        """Move event time to ``watermark``; the rows to emit (first firings and updates)."""
        self.watermark = max(self.watermark, watermark)
        out: list[dict[str, Any]] = []
        for start in sorted(self.open):
            end = start + self.window_ms
            scopes = self.open[start]
            if start not in self.fired and end - 1 <= self.watermark:
                self.fired.add(start)
                out += [sw.row(start, end, sc, self.worst_n, now_ms) for sc, sw in scopes.items()]
                self.dirty -= {(start, sc) for sc in scopes}
        for start, scope in sorted(self.dirty):
            if start in self.open:
                acc = self.open[start][scope]
                out.append(acc.row(start, start + self.window_ms, scope, self.worst_n, now_ms))
            elif start in self.closed:
                row = dict(self.closed[start][scope], computed_at=now_ms)
                self.closed[start][scope] = row
                out.append(row)
        self.dirty.clear()
        for start in [s for s in self.open if s in self.fired and self._purged(s)]:
            end = start + self.window_ms
            self.closed[start] = {
                sc: sw.row(start, end, sc, self.worst_n, now_ms)
                for sc, sw in self.open.pop(start).items()
            }
            del self.cells[start]
            self.fired.discard(start)
        horizon = self.watermark - self.allowed_lateness_ms - self.retention_ms
        for start in [s for s in self.closed if s + self.window_ms <= horizon]:
            del self.closed[start]
        return out

    def flush(self, now_ms: int) -> list[dict[str, Any]]:
        """End of a bounded input: fire everything (the watermark goes to +infinity)."""
        return self.advance(2**62, now_ms)
