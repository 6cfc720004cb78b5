"""Run Flink SQL over the fleet's aggregated streams.

``run_query`` is a snapshot: every referenced topic is read up to its exact end offsets (in
Flink's batch mode: final rows, no changelog) and the rows are returned. ``stream_query``
follows the topics (streaming mode) and yields changelog rows as they come (``+I``, ``-U``,
``+U``, ``-D``). A local MiniCluster runs the query unless the topology's
``cloud.jobmanager`` (or ``jobmanager=``) names a cluster.

Bad SQL raises :class:`~edgestream.query.exceptions.QueryError` with Flink's message, the
first lines of the root cause, without the Java stack trace.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from edgestream.core.endpoints import CloudEndpoints
from edgestream.core.topology import Topology
from edgestream.query.catalog import Catalog, referenced_tables
from edgestream.query.exceptions import QueryError

__all__ = ["QueryResult", "flink_message", "run_query", "stream_query"]


@dataclass
class QueryResult:
    """Columns and rows of a finished query."""

    columns: list[str]
    rows: list[tuple[Any, ...]] = field(default_factory=list)

    def records(self) -> list[dict[str, Any]]:
        """The rows as dicts (column -> value)."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]

    def to_pandas(self) -> Any:
        """The rows as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame.from_records(self.rows, columns=self.columns)


_JAVA_FRAME = re.compile(r"^\s*(at |\.\.\. \d+ more|Caused by: |Suppressed: )")
_EXCEPTION_PREFIX = re.compile(r"^(?:[a-z][\w$]*\.)+[A-Z][\w$]*(?:Exception|Error): ?")


def flink_message(error: BaseException, max_lines: int = 6) -> str:
    """The readable part of a Flink/Py4J error: the deepest ``Caused by`` message (Flink's
    root cause), its first lines, without class names and stack frames.

    >>> text = ('org.apache.flink.table.api.ValidationException: SQL validation failed. x\\n'
    ...         '\\tat org.apache.flink.A.b(A.java:1)\\n'
    ...         'Caused by: org.apache.calcite.runtime.CalciteContextException: From line 1, '
    ...         'column 8 to line 1, column 10: Column \\'nope\\' not found in any table\\n'
    ...         '\\tat org.apache.calcite.B.c(B.java:2)\\n')
    >>> flink_message(Exception(text))
    "From line 1, column 8 to line 1, column 10: Column 'nope' not found in any table"
    """
    text = str(error)
    java = getattr(error, "java_exception", None)
    if java is not None:
        try:
            text = java.toString() + "\n" + "\n".join("Caused by: " + str(c) for c in _causes(java))
        except Exception:  # a dead gateway: keep str(error)
            text = str(error)
    blocks: list[list[str]] = [[]]
    for line in text.splitlines():
        if line.startswith("Caused by: "):
            blocks.append([line[len("Caused by: ") :]])
        elif not _JAVA_FRAME.match(line) and line.strip():
            blocks[-1].append(line)
    useful = [b for b in blocks if b and _EXCEPTION_PREFIX.sub("", b[0]).strip()]
    block = useful[-1] if useful else [text.strip().splitlines()[0] if text.strip() else "?"]
    block = [_EXCEPTION_PREFIX.sub("", block[0]), *block[1:]]
    return "\n".join(line.rstrip() for line in block[:max_lines]).strip()


def _causes(java: Any) -> list[Any]:
    found, cause = [], java.getCause()
    while cause is not None and len(found) < 20:
        found.append(cause)
        cause = cause.getCause()
    return found


def _environment(topology: Topology | None, jobmanager: str | None, bounded: bool) -> Any:
    from edgestream.cloud.flink import flink_env

    jm = jobmanager or (topology.cloud.jobmanager if topology is not None else None)
    settings = {"execution.runtime-mode": "BATCH" if bounded else "STREAMING"}
    _env, tenv = flink_env(jm, parallelism=1, settings=settings)
    return tenv


def _prepare(
    sql: str,
    topology: Topology | None,
    endpoints: CloudEndpoints,
    jobmanager: str | None,
    bounded: bool,
) -> Any:
    tenv = _environment(topology, jobmanager, bounded)
    catalog = Catalog(topology, endpoints, bounded)
    try:
        missing = catalog.register(tenv, referenced_tables(sql))
    except Exception as error:
        raise QueryError(f"cannot register the fleet tables: {flink_message(error)}") from None
    try:
        return tenv.execute_sql(sql), missing
    except Exception as error:
        message = flink_message(error)
        for table, topic in missing.items():
            if re.search(rf"\b{table}\b", message):
                message += (
                    f"\n(table {table} reads topic {topic}, which does not exist on "
                    f"{endpoints.bootstrap} yet: nothing has been written to it)"
                )
        raise QueryError(message) from None


_CHANGES = {"INSERT": "+I", "UPDATE_BEFORE": "-U", "UPDATE_AFTER": "+U", "DELETE": "-D"}


def _columns(result: Any) -> list[str]:
    return list(result.get_table_schema().get_field_names())


def _value(value: Any) -> Any:
    """Java-side values PyFlink hands back, as plain Python (Rows as tuples)."""
    from pyflink.common import Row

    if isinstance(value, Row):
        return tuple(_value(v) for v in value)
    if isinstance(value, list):
        return [_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _value(v) for k, v in value.items()}
    return value


def run_query(
    sql: str, topology: Topology | None, endpoints: CloudEndpoints, jobmanager: str | None = None
) -> QueryResult:
    """Run ``sql`` as a bounded snapshot of the topics; every row of the result."""
    result, _missing = _prepare(sql, topology, endpoints, jobmanager, bounded=True)
    columns = _columns(result)
    rows = []
    try:
        with result.collect() as results:
            for row in results:
                rows.append(tuple(_value(v) for v in row))
    except Exception as error:
        raise QueryError(flink_message(error)) from None
    return QueryResult(columns, rows)


def stream_query(
    sql: str, topology: Topology | None, endpoints: CloudEndpoints, jobmanager: str | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Follow ``sql`` over the live topics: ``(change, row)`` pairs, ``change`` one of
    ``+I``, ``-U``, ``+U``, ``-D``. Closing the generator cancels the job."""
    result, _missing = _prepare(sql, topology, endpoints, jobmanager, bounded=False)
    columns = _columns(result)
    try:
        with result.collect() as results:
            for row in results:
                kind = _CHANGES.get(row.get_row_kind().name, "+I")
                yield kind, dict(zip(columns, (_value(v) for v in row), strict=True))
    except GeneratorExit:
        raise
    except Exception as error:
        raise QueryError(flink_message(error)) from None
