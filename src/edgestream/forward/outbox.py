"""The durable outbox between a gateway's edge broker and the cloud: SQLite in WAL mode.

Every alert, window summary and forwarder report waits here until the cloud broker confirmed
it. A record is accepted once per record id (``INSERT OR IGNORE`` into a table of seen ids
kept for ``seen_retention_ms``), so a gateway replaying after a crash adds nothing; on accept
it gets the gateway's next ``gateway_seq`` (stored, never reused), written into the record.
Records drain by priority (alerts and reports before summaries), then in arrival order
(``ord``; a roll-up takes the place of the oldest window it merged). The edge offsets of what
was accepted are stored in the same transaction, so an accepted record and its offset are
never out of step.

Bodies are Avro without a header. Each row names the schema that wrote it (a fingerprint;
the schema texts are kept in the file), so an outbox filled by an earlier release drains
after an upgrade: :meth:`Outbox.take` hands out every body in the current schemas.

Fsync policy (``forwarding.outbox.fsync`` of the topology):

* ``always``: ``PRAGMA synchronous=FULL`` and one transaction per record: each record and its
  edge offset are on disk before the next record is accepted (survives power loss).
* ``batch`` (default): ``synchronous=FULL``, one transaction (one WAL fsync) per batch read
  from the edge: a batch is on disk with its offsets or not at all, then it is read again
  from the edge broker (survives power loss).
* ``never``: ``synchronous=OFF``: the OS writes when it likes; survives a crash of the
  forwarder (the page cache does), may lose the last seconds on power loss.

Budget: see :mod:`edgestream.forward.budget` (roll-ups before drops, alerts dropped last).

>>> import tempfile
>>> from edgestream.forward.outbox_config import OutboxConfig
>>> cfg = OutboxConfig(Path(tempfile.mkdtemp()) / "o.sqlite", max_bytes=1_000_000)
>>> box = Outbox(cfg, "gw")
>>> alert = {"alert_id": "gw|p1|5|0", "incident_id": "gw|p1|5", "gateway_id": "gw",
...          "site": "s", "device_id": "p1", "device_type": "pump", "ts": 5, "first_ts": 5,
...          "last_ts": 5, "score": 0.9, "threshold": 0.5}
>>> box.put([Entry.alert(alert), Entry.alert(alert)])  # the replay is ignored
[1, None]
>>> [(p.seq, p.kind) for p in box.take(10)]
[(1, 'alert')]
>>> box.ack(box.take(10)); box.stats().depth
0
>>> box.close()
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from edgestream.forward.exceptions import OutboxError
from edgestream.forward.outbox_config import OutboxConfig
from edgestream.forward.outbox_stats import OutboxStats, read_stats
from edgestream.forward.records import Entry, Pending
from edgestream.wire.codec import BodyCodec

log = logging.getLogger("edgestream.forward")

__all__ = ["Outbox"]

HEADER_BYTES = 5  # the Confluent header added when a record is sent
_SYNC = {"always": "FULL", "batch": "FULL", "never": "OFF"}
_DDL = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY, ord INTEGER NOT NULL, record_id TEXT NOT NULL, kind TEXT NOT NULL,
    priority INTEGER NOT NULL, key BLOB NOT NULL, body BLOB NOT NULL, bytes INTEGER NOT NULL,
    created_ms INTEGER NOT NULL, event_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, sent_epoch INTEGER NOT NULL DEFAULT 0,
    scope TEXT, scope_key TEXT, win_start INTEGER, win_end INTEGER, base_size INTEGER,
    level INTEGER, tumbling INTEGER, readings INTEGER, writer TEXT);
CREATE INDEX IF NOT EXISTS records_drain ON records (priority, ord);
CREATE INDEX IF NOT EXISTS records_created ON records (created_ms);
CREATE TABLE IF NOT EXISTS seen (
    record_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, at_ms INTEGER NOT NULL, digest BLOB)
    WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_age ON seen (at_ms);
CREATE TABLE IF NOT EXISTS schemas (
    fingerprint TEXT PRIMARY KEY, kind TEXT NOT NULL, schema TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS offsets (
    source TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL, PRIMARY KEY (source, topic, partition));
CREATE TABLE IF NOT EXISTS topic_ids (
    source TEXT NOT NULL, topic TEXT NOT NULL, topic_id TEXT NOT NULL,
    PRIMARY KEY (source, topic)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS drops (
    id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, kind TEXT NOT NULL, reason TEXT NOT NULL,
    records INTEGER NOT NULL, readings INTEGER NOT NULL, first_ts INTEGER, last_ts INTEGER,
    reported INTEGER NOT NULL DEFAULT 0);
"""
_INSERT = (
    "INSERT INTO records (seq, ord, record_id, kind, priority, key, body, bytes, created_ms, "
    "event_ms, scope, scope_key, win_start, win_end, base_size, level, tumbling, readings, "
    "writer) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def now_ms() -> int:
    return int(time.time() * 1000)


class Outbox:
    """One gateway's outbox file. Not thread-safe: use it from one thread at a time (it may
    be created in another); readers may be other processes (``edgestream forward status``)."""

    def __init__(
        self,
        config: OutboxConfig,
        gateway_id: str,
        readonly: bool = False,
        codec: BodyCodec | None = None,
    ) -> None:
        self.config = config
        self.gateway_id = gateway_id
        self.codec = codec or BodyCodec()
        path = Path(config.path)
        if readonly and not path.exists():
            raise OutboxError(f"no outbox at {path}: check --data-dir and --gateway")
        path.parent.mkdir(parents=True, exist_ok=True)
        uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
        try:
            self.db = sqlite3.connect(
                uri, uri=True, isolation_level=None, timeout=10.0, check_same_thread=False
            )
            self.db.execute("PRAGMA busy_timeout = 10000")
            if not readonly:
                self.db.execute("PRAGMA journal_mode = WAL")
                self.db.execute(f"PRAGMA synchronous = {_SYNC[config.fsync]}")
                self.db.executescript(_DDL)
                self._keep_schemas()
        except sqlite3.DatabaseError as error:
            raise OutboxError(f"{path} is not a usable outbox ({error}): move it away") from None
        self.readonly = readonly
        try:
            self._meta = dict(self.db.execute("SELECT name, value FROM meta"))
        except sqlite3.OperationalError:  # read-only, while its forwarder creates it
            self.db.close()
            raise OutboxError(
                f"{path} is not initialised yet (its forwarder is starting)"
            ) from None
        with contextlib.suppress(sqlite3.OperationalError):  # read-only, made by a release
            for fingerprint, text in self.db.execute("SELECT fingerprint, schema FROM schemas"):
                self.codec.learn(fingerprint, text)  # before bodies were tagged
        row = self.db.execute("SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM records").fetchone()
        self.depth, self.bytes = int(row[0]), int(row[1])
        (top,) = self.db.execute("SELECT COALESCE(MAX(sent_epoch), 0) FROM records").fetchone()
        self.epoch = int(top) + 1  # rows marked by an earlier process are due again

    # -- plumbing --------------------------------------------------------------------------
    def _keep_schemas(self) -> None:
        """Store the schemas this release writes bodies with (and add the ``writer`` column to
        an outbox made before bodies were tagged: its rows count as written with the current
        schemas)."""
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(records)")}
        if "writer" not in columns:
            self.db.execute("ALTER TABLE records ADD COLUMN writer TEXT")
        if "digest" not in {row[1] for row in self.db.execute("PRAGMA table_info(seen)")}:
            self.db.execute("ALTER TABLE seen ADD COLUMN digest BLOB")  # ids seen before: NULL
        self.db.executemany(
            "INSERT OR IGNORE INTO schemas (fingerprint, kind, schema) VALUES (?, ?, ?)",
            [(self.codec.writers[k], k, text) for k, text in self.codec.texts.items()],
        )

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on error)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            self._meta = dict(self.db.execute("SELECT name, value FROM meta"))
            raise
        self.db.execute("COMMIT")

    def meta(self, name: str) -> int:
        return int(self._meta.get(name, 0))

    def set_meta(self, name: str, value: int) -> None:
        """Set a counter (call inside :meth:`transaction`)."""
        self.db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, value))
        self._meta[name] = value

    def bump(self, name: str, delta: int) -> None:
        """Add ``delta`` to a counter (call inside :meth:`transaction`)."""
        if delta:
            self.set_meta(name, self.meta(name) + delta)

    def insert(
        self, entry: Entry, now: int, ord_: int | None = None, created: int | None = None
    ) -> int | None:
        """Accept one record (call inside :meth:`transaction`); None when its id was seen."""
        seq = self.meta("next_seq") or 1
        digest = entry.digest
        cur = self.db.execute(
            "INSERT OR IGNORE INTO seen (record_id, seq, at_ms, digest) VALUES (?, ?, ?, ?)",
            (entry.record_id, seq, now, digest),
        )
        if cur.rowcount == 0:
            (known,) = self.db.execute(
                "SELECT digest FROM seen WHERE record_id = ?", (entry.record_id,)
            ).fetchone()
            if known is not None and bytes(known) != digest:
                # never a replay: two different records share an id, and the second is lost
                self.bump("id_conflicts", 1)
                log.error(
                    "outbox refused a %s whose id %s is taken by a different record: ids "
                    "must tell records apart (counted in id_conflicts)",
                    entry.kind,
                    entry.record_id,
                )
            return None
        body = self.codec.encode(entry.kind, {**entry.record, "gateway_seq": seq})
        size = len(body) + len(entry.key) + HEADER_BYTES
        self.db.execute(
            _INSERT,
            (seq, seq if ord_ is None else ord_, entry.record_id, entry.kind, entry.priority,
             entry.key, body, size, now if created is None else created, entry.event_ms,
             *entry.summary_columns(), self.codec.writers[entry.kind]),
        )  # fmt: skip
        self.set_meta("next_seq", seq + 1)
        self.depth += 1
        self.bytes += size
        return seq

    def forget(self, seqs: Sequence[int]) -> int:
        """Delete rows (call inside :meth:`transaction`); returns the bytes freed."""
        freed = 0
        for chunk in _chunks(list(seqs)):
            marks = ",".join("?" * len(chunk))
            (count, size) = self.db.execute(
                f"SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM records WHERE seq IN ({marks})",
                chunk,
            ).fetchone()
            self.db.execute(f"DELETE FROM records WHERE seq IN ({marks})", chunk)
            self.depth -= int(count)
            self.bytes -= int(size)
            freed += int(size)
        return freed

    # -- intake ----------------------------------------------------------------------------
    def put(
        self,
        entries: Sequence[Entry],
        now: int | None = None,
        skipped: dict[tuple[str, int], int] | None = None,
    ) -> list[int | None]:
        """Accept records from the edge with their offsets; returns each one's gateway_seq
        (None for a replay). ``skipped``: next offsets past records that were not accepted
        (undecodable). Transactions follow the fsync policy (see the module doc)."""
        now = now_ms() if now is None else now
        per_record = self.config.fsync == "always"
        groups = [[e] for e in entries] if per_record else [list(entries)]
        seqs: list[int | None] = []
        for group in groups:
            with self.transaction():
                seqs.extend(self.insert(e, now) for e in group)
                self._save_offsets("edge", _next_offsets(group))
        if skipped:
            with self.transaction():
                self._save_offsets("edge", skipped)
        return seqs

    def _save_offsets(self, source: str, offsets: dict[tuple[str, int], int]) -> None:
        self.db.executemany(
            "INSERT INTO offsets (source, topic, partition, next_offset) VALUES (?, ?, ?, ?) "
            "ON CONFLICT DO UPDATE SET next_offset = MAX(next_offset, excluded.next_offset)",
            [(source, t, p, o) for (t, p), o in offsets.items()],
        )

    def offsets(self, source: str) -> dict[tuple[str, int], int]:
        """Next offsets to read per (topic, partition) for ``source`` ("edge" or "meter")."""
        rows = self.db.execute(
            "SELECT topic, partition, next_offset FROM offsets WHERE source = ?", (source,)
        )
        return {(t, int(p)): int(o) for t, p, o in rows}

    def topic_ids(self, source: str) -> dict[str, str]:
        """The Kafka topic id the stored offsets of each topic belong to, for ``source``."""
        rows = self.db.execute("SELECT topic, topic_id FROM topic_ids WHERE source = ?", (source,))
        return dict(rows)

    def reset_offsets(
        self, source: str, offsets: dict[tuple[str, int], int], topic_ids: dict[str, str]
    ) -> None:
        """Set next offsets as given, also lower than stored (a read position reset to the log
        start, see :mod:`edgestream.core.offsets`), with the ids of the topics they belong to,
        in one transaction."""
        with self.transaction():
            self.db.executemany(
                "INSERT OR REPLACE INTO offsets (source, topic, partition, next_offset) "
                "VALUES (?, ?, ?, ?)",
                [(source, t, p, o) for (t, p), o in offsets.items()],
            )
            self.db.executemany(
                "INSERT OR REPLACE INTO topic_ids (source, topic, topic_id) VALUES (?, ?, ?)",
                [(source, t, i) for t, i in topic_ids.items()],
            )

    def save_progress(
        self,
        meter: dict[tuple[str, int], int],
        sensor_bytes: int,
        cloud_bytes: int,
        cloud_by_kind: dict[str, int] | None = None,
    ) -> None:
        """Store the sensor meter's offsets with the byte counts they add, atomically
        (``cloud_by_kind``: the cloud bytes split by record kind, ``other`` for the rest)."""
        if not (meter or sensor_bytes or cloud_bytes):
            return
        with self.transaction():
            self._save_offsets("meter", meter)
            self.bump("sensor_bytes", sensor_bytes)
            self.bump("cloud_bytes", cloud_bytes)
            for kind, size in (cloud_by_kind or {}).items():
                self.bump(f"cloud_bytes.{kind}", size)

    # -- drain -----------------------------------------------------------------------------
    def take(
        self, limit: int, max_bytes: int | None = None, min_priority: int = 0
    ) -> list[Pending]:
        """The next records to send: not in flight (see :meth:`mark_sent`), only the most
        urgent priority present (at least ``min_priority``), in drain order; at most
        ``limit`` / ``max_bytes``."""
        rows = self.db.execute(
            "SELECT seq, kind, key, body, priority, bytes, created_ms, writer FROM records "
            "WHERE sent_epoch != ? AND priority >= ? ORDER BY priority, ord LIMIT ?",
            (self.epoch, min_priority, limit),
        ).fetchall()
        out: list[Pending] = []
        size = 0
        for seq, kind, key, body, priority, nbytes, created, writer in rows:
            if out and (priority != out[0].priority or (max_bytes and size + nbytes > max_bytes)):
                break
            body = self.codec.current(kind, bytes(body), writer)
            out.append(Pending(seq, kind, bytes(key), body, priority, nbytes, created))
            size += nbytes
        return out

    def mark_sent(self, pending: Sequence[Pending]) -> None:
        """Record that these are about to be produced (attempted rows are never rolled up:
        the cloud may already hold them) and in flight for this epoch."""
        with self.transaction():
            self.db.executemany(
                "UPDATE records SET attempts = attempts + 1, sent_epoch = ? WHERE seq = ?",
                [(self.epoch, p.seq) for p in pending],
            )

    def retry(self) -> None:
        """Make every in-flight record due again (the link failed: they are re-sent with the
        same gateway_seq, so consumers drop any copy that did arrive)."""
        self.epoch += 1

    def ack(self, pending: Sequence[Pending]) -> None:
        """The cloud confirmed these: delete them."""
        if pending:
            with self.transaction():
                self.forget([p.seq for p in pending])
                self.bump("delivered", len(pending))

    def prune_seen(self, now: int | None = None) -> int:
        """Forget record ids older than ``seen_retention_ms`` (bounds the replay memory)."""
        cutoff = (now_ms() if now is None else now) - self.config.seen_retention_ms
        with self.transaction():
            return self.db.execute("DELETE FROM seen WHERE at_ms < ?", (cutoff,)).rowcount

    # -- metrics ---------------------------------------------------------------------------
    def stats(self, now: int | None = None) -> OutboxStats:
        """Current figures, read from the file (also works read-only, from another process)."""
        return read_stats(self.db, self.config.max_bytes, now_ms() if now is None else now)

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            if not self.readonly:
                self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self.db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _next_offsets(entries: Sequence[Entry]) -> dict[tuple[str, int], int]:
    out: dict[tuple[str, int], int] = {}
    for e in entries:
        if e.source is not None:
            topic, partition, offset = e.source
            out[(topic, partition)] = max(out.get((topic, partition), 0), offset + 1)
    return out


def _chunks(items: list[Any], size: int = 900) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
