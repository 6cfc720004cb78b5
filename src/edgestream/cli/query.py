"""``edgestream query "SQL"``: Flink SQL over fleet.stats, fleet.summaries and fleet.alerts.

edgestream query "SELECT site, SUM(anomalies) FROM fleet.summaries WHERE scope = 'site'
                  GROUP BY site"
edgestream query "SELECT * FROM fleet.alerts WHERE severity = 'critical'" --format csv
edgestream query "SELECT scope_key, anomaly_rate FROM fleet.stats" --follow
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from edgestream.cli.app import command_hook
from edgestream.cli.options import CloudBroker, JobManager, Registry

if TYPE_CHECKING:
    from edgestream.query import QueryResult

FORMATS = ("table", "csv", "json")


def cell(value: Any) -> str:
    """A value as text: times in ISO form, maps and lists as JSON.

    >>> cell(dt.datetime(2026, 1, 2, 3, 4, 5, 6000)), cell({"a": 1.5}), cell(None)
    ('2026-01-02 03:04:05.006', '{"a": 1.5}', '')
    """
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ", timespec="milliseconds")
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, default=str, separators=(", ", ": "))
    return str(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="milliseconds")
    if isinstance(value, tuple):
        return list(value)
    return value


def query_command(
    sql: str = typer.Argument(..., help="Flink SQL (tables fleet.stats, fleet.summaries, ...)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Stream changes as they come."),
    output: str = typer.Option("table", "--format", help="table, csv or json (JSON lines)."),
    topology: Path = typer.Option(
        None, "--topology", "-t", help="Topology YAML (topics, brokers)."
    ),
    bootstrap: CloudBroker = None,
    registry: Registry = None,
    jobmanager: JobManager = None,
) -> None:
    """Run SQL over a snapshot of the fleet's streams (exact to the current end of each
    topic), or follow it with --follow. Bad SQL prints Flink's message."""
    from edgestream.query import QueryError, query
    from edgestream.query import follow as follow_query

    if output not in FORMATS:
        raise QueryError(f"--format {output!r}: expected one of {', '.join(FORMATS)}")
    where = {
        "topology": topology,
        "bootstrap": bootstrap,
        "registry": registry,
        "jobmanager": jobmanager,
    }
    if not follow:
        _print_result(query(sql, **where), output)
        return
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends --follow
        _print_changes(follow_query(sql, **where), output)


register = command_hook("query", query_command)


def _print_result(result: QueryResult, output: str) -> None:
    """A snapshot's rows as a table (with the row count), CSV or JSON lines."""
    from edgestream.core.tables import table

    out = sys.stdout
    if output == "table":
        out.write(table(None, result.columns, [[cell(v) for v in r] for r in result.rows]))
        out.write(f"\n({len(result.rows)} row{'s' if len(result.rows) != 1 else ''})\n")
    elif output == "csv":
        writer = csv.writer(out)
        writer.writerow(result.columns)
        writer.writerows([cell(v) for v in r] for r in result.rows)
    else:
        for record in result.records():
            out.write(json.dumps({k: _json_value(v) for k, v in record.items()}, default=str))
            out.write("\n")


def _print_changes(changes: Iterable[tuple[str, dict[str, Any]]], output: str) -> None:
    """Each change as it comes (``op`` first), as a table line, CSV or a JSON line."""
    out = sys.stdout
    writer = csv.writer(out)
    header_done = False
    for change, row in changes:
        if output == "json":
            line = json.dumps(
                {"op": change, **{k: _json_value(v) for k, v in row.items()}}, default=str
            )
            out.write(line + "\n")
        elif output == "csv":
            if not header_done:
                writer.writerow(["op", *row])
            writer.writerow([change, *(cell(v) for v in row.values())])
        else:
            if not header_done:
                out.write("  ".join(["op", *row]) + "\n")
            out.write("  ".join([change, *(cell(v) for v in row.values())]) + "\n")
        header_done = True
        out.flush()
