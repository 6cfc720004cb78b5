"""Keeping the outbox inside its bounds, and reporting what that cost.

:func:`enforce_budget` runs after records arrive:

1. Records older than ``max_age`` are dropped (reason ``age``).
2. Past ``max_bytes``, sampled readings go first: the oldest are dropped (reason ``budget``)
   until under 90 % of the budget or none is left.
3. Still over, summaries are rolled up (:mod:`edgestream.forward.rollup`), finest
   windows and oldest first, until the outbox is back under 90 % of the budget. Only records
   never handed to the producer are merged (an attempted one may already be in the cloud).
4. Still over: the oldest summaries are dropped (reason ``budget``); then, last, the oldest
   alerts. Reports are never dropped. Records in flight are left alone.

A roll-up carries the wire form of a summary (:func:`edgestream.wire.forms.wire_summary`:
``mean``/``std`` null; ``p50``/``p95``/``last`` only if the parts had them). Dropped samples
count one reading each in the report's ``dropped_readings``.

Every drop is a row of the ``drops`` table; :func:`write_report` turns the unreported ones
(and the roll-ups since the last report) into one ForwarderReport record, queued with alert
priority in the same transaction that marks them reported, so each drop is reported once.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from edgestream.forward.outbox import Outbox, now_ms
from edgestream.forward.records import Entry
from edgestream.forward.rollup import merge_summaries, next_size
from edgestream.wire.forms import complete_summary, wire_summary

__all__ = ["LOW_WATER", "BudgetResult", "enforce_budget", "write_report"]

#: After a roll-up/drop pass the outbox holds at most this fraction of ``max_bytes``.
LOW_WATER = 0.9
_GROUPS_PER_PASS = 256
_CANDIDATE = "kind = 'summary' AND tumbling = 1 AND attempts = 0 AND sent_epoch != ?"


@dataclass
class BudgetResult:
    """What one pass did."""

    rollups: int = 0
    rolled_up: int = 0
    dropped: Counter[tuple[str, str]] = field(default_factory=Counter)

    def __bool__(self) -> bool:
        return bool(self.rollups or self.dropped)


def enforce_budget(outbox: Outbox, now: int | None = None) -> BudgetResult:
    """Drop expired records, then roll up and drop until under budget (see module doc).

    An alert older than ``max_age`` is dropped and counted with its reason:

    >>> import tempfile
    >>> from pathlib import Path
    >>> from edgestream.forward.outbox_config import OutboxConfig
    >>> box = Outbox(OutboxConfig(Path(tempfile.mkdtemp()) / "o.sqlite", max_age_ms=60_000),
    ...              "gw")
    >>> alert = {"alert_id": "gw|p1|5|0", "incident_id": "gw|p1|5", "gateway_id": "gw",
    ...          "site": "s", "device_id": "p1", "device_type": "pump", "ts": 5, "first_ts": 5,
    ...          "last_ts": 5, "score": 0.9, "threshold": 0.5}
    >>> box.put([Entry.alert(alert)], now=1_000)
    [1]
    >>> result = enforce_budget(box, now=1_000 + 61_000)
    >>> dict(result.dropped), box.stats().depth
    ({('alert', 'age'): 1}, 0)
    >>> box.close()
    """
    now = now_ms() if now is None else now
    result = BudgetResult()
    for kind in ("sample", "summary", "alert"):
        _drop(outbox, kind, "age", now, result, older_than=now - outbox.config.max_age_ms)
    if outbox.bytes <= outbox.config.max_bytes:
        return result
    target = int(outbox.config.max_bytes * LOW_WATER)
    _drop(outbox, "sample", "budget", now, result, target=target)
    _roll_up(outbox, target, now, result)
    for kind in ("summary", "alert"):
        if outbox.bytes > target:
            _drop(outbox, kind, "budget", now, result, target=target)
    return result


def _stages(outbox: Outbox) -> list[tuple[int, int, int]]:
    """(window size, base size, target size) of every roll-up possible now, finest first."""
    rows = outbox.db.execute(
        f"SELECT DISTINCT win_end - win_start, base_size FROM records WHERE {_CANDIDATE}",
        (outbox.epoch,),
    ).fetchall()
    stages = []
    for size, base in rows:
        target = next_size(int(size), outbox.config.rollup)
        if target is not None:
            stages.append((int(size), int(base), target))
    return sorted(stages)


def _roll_up(outbox: Outbox, target_bytes: int, now: int, result: BudgetResult) -> None:
    """Merge groups of the finest stage that has any, oldest first, until under target;
    stages are looked up again after each pass (a roll-up feeds the next stage)."""
    db = outbox.db
    while outbox.bytes > target_bytes:
        groups: list[tuple] = []
        for size, base, target in _stages(outbox):
            groups = db.execute(
                f"SELECT scope, scope_key, win_start - win_start % ?, COUNT(*), MIN(ord) "
                f"FROM records WHERE {_CANDIDATE} AND win_end - win_start = ? AND base_size = ? "
                "GROUP BY 1, 2, 3 HAVING COUNT(*) >= 2 ORDER BY 5 LIMIT ?",
                (target, outbox.epoch, size, base, _GROUPS_PER_PASS),
            ).fetchall()
            if groups:
                break
        if not groups:
            return
        with outbox.transaction():
            for scope, key, start, _count, _ord in groups:
                _merge_group(outbox, scope, key, start, size, base, target, now, result)
                if outbox.bytes <= target_bytes:
                    break


def _merge_group(
    outbox: Outbox,
    scope: str,
    key: str,
    start: int,
    size: int,
    base: int,
    target: int,
    now: int,
    result: BudgetResult,
) -> None:
    rows = outbox.db.execute(
        f"SELECT seq, ord, body, created_ms, writer FROM records WHERE {_CANDIDATE} "
        "AND win_end - win_start = ? AND base_size = ? AND scope = ? AND scope_key = ? "
        "AND win_start >= ? AND win_start < ? ORDER BY ord",
        (outbox.epoch, size, base, scope, key, start, start + target),
    ).fetchall()
    decode = outbox.codec.decode
    parts = [complete_summary(decode("summary", r[2], r[4])) for r in rows]
    merged = merge_summaries(parts, target, base, min(r[0] for r in rows))
    merged = wire_summary(merged, quantiles=True, last=True)  # mean/std: derived, not stored
    outbox.forget([r[0] for r in rows])
    entry = Entry("summary", merged, str(merged["gateway_id"]).encode(), base_size=base)
    outbox.insert(entry, now, ord_=min(r[1] for r in rows), created=min(r[3] for r in rows))
    result.rollups += 1
    result.rolled_up += len(rows)
    outbox.bump("rollups", 1)
    outbox.bump("rolled_up", len(rows))
    outbox.bump("rollups_unreported", 1)
    outbox.bump("rolled_up_unreported", len(rows))


def _drop(
    outbox: Outbox,
    kind: str,
    reason: str,
    now: int,
    result: BudgetResult,
    target: int | None = None,
    older_than: int | None = None,
) -> None:
    """Drop the oldest records of ``kind`` (not in flight): those created before
    ``older_than``, or as many as it takes to get under ``target`` bytes."""
    db = outbox.db
    while target is None or outbox.bytes > target:
        age = "" if older_than is None else f"AND created_ms < {int(older_than)}"
        rows = db.execute(
            "SELECT seq, bytes, event_ms, COALESCE(win_end, event_ms), COALESCE(readings, 0) "
            f"FROM records WHERE kind = ? AND sent_epoch != ? {age} ORDER BY ord LIMIT 1000",
            (kind, outbox.epoch),
        ).fetchall()
        if target is not None:
            excess, keep = outbox.bytes - target, []
            for row in rows:
                keep.append(row)
                excess -= row[1]
                if excess <= 0:
                    break
            rows = keep
        if not rows:
            return
        with outbox.transaction():
            outbox.forget([r[0] for r in rows])
            db.execute(
                "INSERT INTO drops (at_ms, kind, reason, records, readings, first_ts, last_ts) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (now, kind, reason, len(rows), sum(r[4] for r in rows),
                 min(r[2] for r in rows), max(r[3] for r in rows)),
            )  # fmt: skip
        result.dropped[(kind, reason)] += len(rows)
        if target is None and len(rows) < 1000:
            return


def write_report(outbox: Outbox, now: int | None = None, force: bool = False) -> int | None:
    """Queue a ForwarderReport of the unreported drops and roll-ups (and the byte counters);
    only when there are drops to report unless ``force``. Returns its gateway_seq."""
    now = now_ms() if now is None else now
    db = outbox.db
    rows = db.execute(
        "SELECT kind, reason, SUM(records), SUM(readings), MIN(first_ts), MAX(last_ts) "
        "FROM drops WHERE reported = 0 GROUP BY kind, reason"
    ).fetchall()
    if not rows and not force:
        return None
    by_kind: Counter[str] = Counter()
    by_reason: Counter[str] = Counter()
    for kind, reason, count, _readings, _first, _last in rows:
        by_kind[kind] += int(count)
        by_reason[reason] += int(count)
    firsts = [r[4] for r in rows if r[4] is not None]
    lasts = [r[5] for r in rows if r[5] is not None]
    stats = outbox.stats(now)
    with outbox.transaction():
        number = outbox.meta("reports") + 1
        record = {
            "report_id": f"{outbox.gateway_id}|report|{number}",
            "gateway_id": outbox.gateway_id,
            "created_at": now,
            "dropped_alerts": by_kind["alert"],
            "dropped_summaries": by_kind["summary"],
            "dropped_readings": sum(int(r[3]) for r in rows if r[0] in ("summary", "sample")),
            "dropped_by_reason": dict(by_reason),
            "first_dropped_ts": min(firsts) if firsts else None,
            "last_dropped_ts": max(lasts) if lasts else None,
            "rollups": outbox.meta("rollups_unreported"),
            "rolled_up": outbox.meta("rolled_up_unreported"),
            "outbox_depth": stats.depth,
            "outbox_bytes": stats.bytes,
            "oldest_age_ms": stats.oldest_age_ms,
            "sensor_bytes_total": stats.sensor_bytes,
            "cloud_bytes_total": stats.cloud_bytes,
        }
        seq = outbox.insert(Entry.report(record), now)
        db.execute("UPDATE drops SET reported = 1 WHERE reported = 0")
        outbox.bump("reports", 1)
        outbox.bump("rollups_unreported", -outbox.meta("rollups_unreported"))
        outbox.bump("rolled_up_unreported", -outbox.meta("rolled_up_unreported"))
    return seq
