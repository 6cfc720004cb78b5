"""Errors of the SQL query layer."""

from __future__ import annotations

from edgestream.core.exceptions import EdgestreamError


class QueryError(EdgestreamError):
    """A query failed: bad SQL, an unknown table, a failed job. ``str()`` is Flink's own
    message (root cause first lines), not a Java stack trace."""
