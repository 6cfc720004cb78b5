"""SQL over the fleet's aggregated streams (Flink SQL; tables ``fleet.stats``,
``fleet.summaries``, ``fleet.alerts``, see :mod:`edgestream.query.catalog`).

>>> from edgestream.query import query
>>> # rows = query("SELECT site, SUM(anomalies) FROM fleet.summaries GROUP BY site")
>>> # frame = query("SELECT * FROM fleet.alerts", as_pandas=True)

The CLI ``edgestream query "SQL"`` calls the same functions.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgestream.core.topology import Topology
from edgestream.query.engine import QueryResult, flink_message
from edgestream.query.exceptions import QueryError

__all__ = ["QueryError", "QueryResult", "flink_message", "follow", "query"]


def _where(topology: Topology | str | Path | None, bootstrap: str | None, registry: str | None):
    from edgestream.core.endpoints import cloud_endpoints
    from edgestream.core.topology import load_topology

    loaded = load_topology(topology) if isinstance(topology, str | Path) else topology
    return loaded, cloud_endpoints(bootstrap, registry, loaded)


def query(
    sql: str,
    *,
    topology: Topology | str | Path | None = None,
    bootstrap: str | None = None,
    registry: str | None = None,
    jobmanager: str | None = None,
    as_pandas: bool = False,
) -> Any:
    """Run ``sql`` over a snapshot of the streams: a :class:`QueryResult` (or a pandas
    DataFrame with ``as_pandas``). Endpoints: the arguments, else the topology's, else the
    running embedded stack."""
    from edgestream.query.engine import run_query

    loaded, endpoints = _where(topology, bootstrap, registry)
    result = run_query(sql, loaded, endpoints, jobmanager)
    return result.to_pandas() if as_pandas else result


def follow(
    sql: str,
    *,
    topology: Topology | str | Path | None = None,
    bootstrap: str | None = None,
    registry: str | None = None,
    jobmanager: str | None = None,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Follow ``sql`` over the live streams: ``(change, row)`` pairs as results change."""
    from edgestream.query.engine import stream_query

    loaded, endpoints = _where(topology, bootstrap, registry)
    return stream_query(sql, loaded, endpoints, jobmanager)
