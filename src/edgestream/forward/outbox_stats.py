"""The figures of an outbox: depth, age and bytes of what waits; drops, roll-ups and bytes
in/out so far (``edgestream forward status``, the forwarder's metrics and reports)."""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["OutboxStats", "read_stats"]


@dataclass
class OutboxStats:
    """Depth, age and bytes of what waits; drops, roll-ups and bytes in/out so far."""

    depth: int = 0
    bytes: int = 0
    max_bytes: int = 0
    oldest_age_ms: int = 0
    waiting: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    dropped_unreported: int = 0
    rollups: int = 0
    rolled_up: int = 0
    delivered: int = 0
    reports: int = 0
    next_seq: int = 1
    sensor_bytes: int = 0
    cloud_bytes: int = 0
    cloud_bytes_by_kind: dict[str, int] = field(default_factory=dict)
    id_conflicts: int = 0  # records refused: their id was taken by a different record

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["cloud_vs_sensor_bytes"] = (
            round(self.cloud_bytes / self.sensor_bytes, 6) if self.sensor_bytes else None
        )
        return out


def read_stats(db: sqlite3.Connection, max_bytes: int, now: int) -> OutboxStats:
    """The figures of the outbox open as ``db`` at ``now`` (ms)."""
    waiting = dict(db.execute("SELECT kind, COUNT(*) FROM records GROUP BY kind"))
    depth, size, oldest = db.execute(
        "SELECT COUNT(*), COALESCE(SUM(bytes), 0), MIN(created_ms) FROM records"
    ).fetchone()
    dropped = dict(db.execute("SELECT kind, SUM(records) FROM drops GROUP BY kind"))
    (unreported,) = db.execute(
        "SELECT COALESCE(SUM(records), 0) FROM drops WHERE reported = 0"
    ).fetchone()
    meta = dict(db.execute("SELECT name, value FROM meta"))
    return OutboxStats(
        depth=int(depth),
        bytes=int(size),
        max_bytes=max_bytes,
        oldest_age_ms=max(0, now - int(oldest)) if oldest is not None else 0,
        waiting={k: int(v) for k, v in waiting.items()},
        dropped={k: int(v) for k, v in dropped.items()},
        dropped_unreported=int(unreported),
        rollups=int(meta.get("rollups", 0)),
        rolled_up=int(meta.get("rolled_up", 0)),
        delivered=int(meta.get("delivered", 0)),
        reports=int(meta.get("reports", 0)),
        next_seq=int(meta.get("next_seq", 1)),
        sensor_bytes=int(meta.get("sensor_bytes", 0)),
        cloud_bytes=int(meta.get("cloud_bytes", 0)),
        id_conflicts=int(meta.get("id_conflicts", 0)),
        cloud_bytes_by_kind={
            name.split(".", 1)[1]: int(v)
            for name, v in meta.items()
            if name.startswith("cloud_bytes.")
        },
    )
