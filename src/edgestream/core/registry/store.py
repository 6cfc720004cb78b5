"""Durable registry state in SQLite: schemas (global ids), subject versions, compatibility.

One connection guarded by a lock serves every HTTP thread; each write is one
``BEGIN IMMEDIATE`` transaction, so ids and versions stay unique even if a second
process opens the same file. WAL with ``synchronous=FULL``: an answered write is on disk.
Methods return JSON-ready values shaped like Confluent's REST answers and raise
:class:`~edgestream.core.registry.errors.ApiError` for the error answers.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edgestream.core import compat
from edgestream.core.exceptions import SchemaError
from edgestream.core.registry import errors

DEFAULT_LEVEL = "BACKWARD"
_GLOBAL = ""  # config row of the global compatibility level
_MAX_VERSION = 2**31 - 1

_DDL = """
CREATE TABLE IF NOT EXISTS schemas (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    guid        TEXT NOT NULL UNIQUE,
    schema_type TEXT NOT NULL,
    schema      TEXT NOT NULL,
    fingerprint TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS versions (
    subject   TEXT NOT NULL,
    version   INTEGER NOT NULL,
    schema_id INTEGER NOT NULL REFERENCES schemas(id),
    deleted   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (subject, version)
);
CREATE INDEX IF NOT EXISTS versions_by_schema ON versions(schema_id);
CREATE TABLE IF NOT EXISTS config (
    subject       TEXT PRIMARY KEY,
    compatibility TEXT NOT NULL
);
PRAGMA user_version = 1;
"""


def parse_version(text: str) -> int | None:
    """A path's version: a number in [1, 2^31-1], or ``None`` for "latest" / -1.

    >>> parse_version("3"), parse_version("latest"), parse_version("-1")
    (3, None, None)
    """
    if text in ("latest", "-1"):
        return None
    if text.isdigit() and 1 <= int(text) <= _MAX_VERSION:
        return int(text)
    raise errors.invalid_version(text)


def parse_level(level: object) -> str:
    """A valid compatibility level (case-insensitive), else a 42203 error."""
    if isinstance(level, str) and level.strip().upper() in compat.LEVELS:
        return level.strip().upper()
    raise errors.invalid_level(level)


def _parsed(schema: object, schema_type: object, references: object) -> tuple[str, str]:
    """(schema text, fingerprint) of a request's schema, or a 42201 error."""
    if schema_type not in (None, "AVRO"):
        raise errors.invalid_schema(
            f"schema type {schema_type} is not supported by the embedded registry: only AVRO"
        )
    if references:
        raise errors.invalid_schema("schema references are not supported by the embedded registry")
    if not isinstance(schema, str):
        raise errors.invalid_schema('the request body needs "schema": "<Avro schema JSON text>"')
    try:
        canonical = compat.canonical_form(schema)
    except SchemaError as error:
        raise errors.invalid_schema(str(error)) from None
    return schema, hashlib.sha256(f"AVRO:{canonical}".encode()).hexdigest()


class RegistryStore:
    """The registry's tables in one SQLite file (created if missing)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=30.0
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        with self._lock:
            self._db.executescript(_DDL)

    def close(self) -> None:
        """Close the database (checkpointing the WAL)."""
        with self._lock:
            self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _rows(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # -- schemas and subject versions ---------------------------------------------------

    def register(self, subject: str, body: dict[str, Any]) -> dict[str, Any]:
        """Register ``body["schema"]`` under ``subject``; idempotent, checks compatibility."""
        text, fingerprint = _parsed(
            body.get("schema"), body.get("schemaType"), body.get("references")
        )
        with self._write() as db:
            live = self._versions(subject, deleted=False)
            for row in live:
                if row["fingerprint"] == fingerprint:
                    return _registered(row)
            if live:
                level = self._level(subject)
                labels = [f"version {row['version']}" for row in live]
                olds = [row["schema"] for row in live]
                problems = compat.check_compatibility(text, olds, level, labels=labels)
                if problems:
                    raise errors.incompatible(subject, problems)
            found = db.execute("SELECT id FROM schemas WHERE fingerprint = ?", (fingerprint,))
            existing = found.fetchone()
            if existing is not None:
                schema_id = existing["id"]
            else:
                cursor = db.execute(
                    "INSERT INTO schemas (guid, schema_type, schema, fingerprint) VALUES (?,?,?,?)",
                    (str(uuid.uuid4()), "AVRO", text, fingerprint),
                )
                schema_id = cursor.lastrowid
            (last,) = db.execute(
                "SELECT COALESCE(MAX(version), 0) FROM versions WHERE subject = ?", (subject,)
            ).fetchone()
            db.execute(
                "INSERT INTO versions (subject, version, schema_id) VALUES (?,?,?)",
                (subject, last + 1, schema_id),
            )
            return _registered(self._version_row(subject, last + 1))

    def lookup(self, subject: str, body: dict[str, Any], deleted: bool) -> dict[str, Any]:
        """The version of ``subject`` holding this schema (40401 / 40403 if none)."""
        _, fingerprint = _parsed(body.get("schema"), body.get("schemaType"), body.get("references"))
        rows = self._versions(subject, deleted=deleted)
        if not rows:
            raise errors.subject_not_found(subject)
        matches = [row for row in rows if row["fingerprint"] == fingerprint]
        if not matches:
            raise errors.schema_not_found()
        live = [row for row in matches if not row["deleted"]]
        return _registered((live or matches)[-1])

    def schema_by_id(self, schema_id: int) -> dict[str, Any]:
        rows = self._rows("SELECT * FROM schemas WHERE id = ?", schema_id)
        if not rows:
            raise errors.schema_not_found(schema_id)
        return {"schema": rows[0]["schema"], "id": schema_id, "guid": rows[0]["guid"]}

    def schema_by_guid(self, guid: str) -> dict[str, Any]:
        rows = self._rows("SELECT * FROM schemas WHERE guid = ?", guid)
        if not rows:
            raise errors.schema_not_found(guid)
        return {"schema": rows[0]["schema"], "id": rows[0]["id"], "guid": guid}

    def versions_of_schema(self, schema_id: int, deleted: bool) -> list[dict[str, Any]]:
        """``[{"subject", "version"}]`` pairs holding the schema (40403 if the id is unknown)."""
        self.schema_by_id(schema_id)
        rows = self._rows(
            "SELECT subject, version FROM versions WHERE schema_id = ? AND (deleted = 0 OR ?)"
            " ORDER BY subject, version",
            schema_id,
            deleted,
        )
        return [{"subject": row["subject"], "version": row["version"]} for row in rows]

    def subjects(self, prefix: str, deleted: bool, deleted_only: bool) -> list[str]:
        """Subject names; soft-deleted ones only with ``deleted`` / ``deleted_only``."""
        rows = self._rows(
            "SELECT subject, MIN(deleted) AS all_deleted FROM versions"
            " WHERE substr(subject, 1, ?) = ? GROUP BY subject ORDER BY subject",
            len(prefix),
            prefix,
        )
        if deleted_only:
            return [row["subject"] for row in rows if row["all_deleted"]]
        return [row["subject"] for row in rows if deleted or not row["all_deleted"]]

    def versions(self, subject: str, deleted: bool, deleted_only: bool) -> list[int]:
        rows = self._versions(subject, deleted=deleted or deleted_only)
        if deleted_only:
            rows = [row for row in rows if row["deleted"]]
        if not rows and (not deleted_only or not self._versions(subject, deleted=True)):
            raise errors.subject_not_found(subject)
        return [row["version"] for row in rows]

    def version(self, subject: str, version: int | None, deleted: bool) -> dict[str, Any]:
        """One version (``None``: the latest); soft-deleted ones only with ``deleted``."""
        return _registered(self._pick(subject, version, deleted))

    def delete_subject(self, subject: str, permanent: bool) -> list[int]:
        """Soft-delete every live version, or (``permanent``) drop soft-deleted ones."""
        with self._write() as db:
            rows = self._versions(subject, deleted=True)
            if not rows:
                raise errors.subject_not_found(subject)
            live = [row["version"] for row in rows if not row["deleted"]]
            if permanent:
                if live:
                    raise errors.subject_not_soft_deleted(subject)
                db.execute("DELETE FROM versions WHERE subject = ?", (subject,))
                return [row["version"] for row in rows]
            if not live:
                raise errors.subject_soft_deleted(subject)
            db.execute("UPDATE versions SET deleted = 1 WHERE subject = ?", (subject,))
            db.execute("DELETE FROM config WHERE subject = ?", (subject,))
            return live

    def delete_version(self, subject: str, version: int | None, permanent: bool) -> int:
        """Soft-delete one version, or (``permanent``) drop a soft-deleted one."""
        with self._write() as db:
            row = self._pick(subject, version, deleted=permanent or version is not None)
            number = row["version"]
            if not permanent and row["deleted"]:
                raise errors.version_soft_deleted(subject, number)
            if permanent:
                if not row["deleted"]:
                    raise errors.version_not_soft_deleted(subject, number)
                db.execute(
                    "DELETE FROM versions WHERE subject = ? AND version = ?", (subject, number)
                )
            else:
                db.execute(
                    "UPDATE versions SET deleted = 1 WHERE subject = ? AND version = ?",
                    (subject, number),
                )
            return number

    def check(
        self, subject: str, body: dict[str, Any], version: int | None, every: bool
    ) -> list[str]:
        """Problems registering ``body`` would meet: against one version, or all (``every``)."""
        text, _ = _parsed(body.get("schema"), body.get("schemaType"), body.get("references"))
        level = self.level(subject, default_to_global=True)
        if every:
            rows = self._versions(subject, deleted=False)
        elif version is None:
            rows = self._versions(subject, deleted=False)[-1:]
        else:
            rows = [self._pick(subject, version, deleted=False)]
        labels = [f"version {row['version']}" for row in rows]
        return compat.check_compatibility(
            text, [row["schema"] for row in rows], level, labels=labels
        )

    # -- compatibility configuration ------------------------------------------------------

    def level(self, subject: str | None, default_to_global: bool) -> str:
        """The compatibility level of ``subject`` (``None``: global)."""
        if subject is None or default_to_global:
            return self._level(subject)
        rows = self._rows("SELECT compatibility FROM config WHERE subject = ?", subject)
        if not rows:
            raise errors.subject_config_not_found(subject)
        return rows[0]["compatibility"]

    def set_level(self, subject: str | None, level: object) -> str:
        valid = parse_level(level)
        with self._write() as db:
            db.execute(
                "INSERT INTO config (subject, compatibility) VALUES (?, ?) "
                "ON CONFLICT(subject) DO UPDATE SET compatibility = excluded.compatibility",
                (_GLOBAL if subject is None else subject, valid),
            )
        return valid

    def delete_level(self, subject: str | None) -> str:
        """Remove a configured level; returns the level in force before."""
        with self._write() as db:
            before = self._level(subject)
            key = _GLOBAL if subject is None else subject
            gone = db.execute("DELETE FROM config WHERE subject = ?", (key,)).rowcount
            if subject is not None and not gone and not self._versions(subject, deleted=True):
                raise errors.subject_not_found(subject)
            return before

    # -- helpers --------------------------------------------------------------------------

    def _level(self, subject: str | None) -> str:
        keys = (_GLOBAL,) if subject is None else (subject, _GLOBAL)
        for key in keys:
            rows = self._rows("SELECT compatibility FROM config WHERE subject = ?", key)
            if rows:
                return rows[0]["compatibility"]
        return DEFAULT_LEVEL

    def _versions(self, subject: str, deleted: bool) -> list[sqlite3.Row]:
        """Versions of ``subject`` oldest first, joined with their schema."""
        return self._rows(
            "SELECT v.subject, v.version, v.schema_id, v.deleted, s.schema, s.guid, s.fingerprint"
            " FROM versions v JOIN schemas s ON s.id = v.schema_id"
            " WHERE v.subject = ? AND (v.deleted = 0 OR ?) ORDER BY v.version",
            subject,
            deleted,
        )

    def _version_row(self, subject: str, version: int) -> sqlite3.Row:
        return next(row for row in self._versions(subject, True) if row["version"] == version)

    def _pick(self, subject: str, version: int | None, deleted: bool) -> sqlite3.Row:
        rows = self._versions(subject, deleted=True)
        if not rows:
            raise errors.subject_not_found(subject)
        visible = [row for row in rows if deleted or not row["deleted"]]
        if version is None:
            if not visible:
                raise errors.subject_not_found(subject)
            return visible[-1]
        for row in visible:
            if row["version"] == version:
                return row
        raise errors.version_not_found(subject, version)


def _registered(row: sqlite3.Row) -> dict[str, Any]:
    """A subject version as Confluent answers it (``schemaType`` omitted for AVRO)."""
    return {
        "subject": row["subject"],
        "version": row["version"],
        "id": row["schema_id"],
        "guid": row["guid"],
        "schema": row["schema"],
    }
