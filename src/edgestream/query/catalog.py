"""The tables a query sees, registered from the topology: database ``fleet`` with

* ``stats``: the fleet analytics of the cloud job (``cloud.stats_topic``, JSON), the latest
  row of each ``(window_start, scope, scope_key)`` (the topic is an upsert stream);
  ``stats_log`` every row as written;
* ``summaries``: the forwarded window summaries (``forwarding.topics.summaries``, Avro);
* ``alerts``: the forwarded alerts (``forwarding.topics.alerts``, Avro).

Avro values are decoded in Python (:mod:`edgestream.query.decode`) between a raw-bytes Kafka
table and a view; forwarder replays are dropped there. Times are ``TIMESTAMP(3)`` columns
(``window_start``, ``ts``, ... as ``TIMESTAMP(3)`` in UTC) next to their epoch-ms ``*_ms`` form.

``scope`` is a reserved word in Flink SQL: write it quoted, ``WHERE `scope` = 'site'``.

Bounded queries read each topic up to its exact end offsets (fetch-based,
:func:`edgestream.core.offsets.exact_end_offsets`), so a snapshot is complete on any broker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from edgestream.core.endpoints import CloudEndpoints
from edgestream.core.topology import Topology
from edgestream.query.decode import ALERT_COLUMNS, SUMMARY_COLUMNS, AvroRows
from edgestream.wire.topics import FLEET

__all__ = ["DATABASE", "TABLES", "Catalog", "referenced_tables"]

DATABASE = "fleet"
TABLES = ("stats", "stats_log", "summaries", "alerts")

#: fleet.stats as JSON (schemas/fleet_stats.avsc); times are epoch ms.
STATS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("window_start_ms", "BIGINT"),
    ("window_end_ms", "BIGINT"),
    ("scope", "STRING"),
    ("scope_key", "STRING"),
    ("device_count", "BIGINT"),
    ("reading_count", "BIGINT"),
    ("anomaly_count", "BIGINT"),
    ("alert_count", "BIGINT"),
    ("anomaly_rate", "DOUBLE"),
    ("channels", "MAP<STRING, ROW<`count` BIGINT, `mean` DOUBLE, `std` DOUBLE>>"),
    ("worst_devices", "ARRAY<ROW<device_id STRING, anomaly_count BIGINT, max_score DOUBLE>>"),
    ("model_versions", "MAP<STRING, BIGINT>"),
    ("late_count", "BIGINT"),
    ("computed_at_ms", "BIGINT"),
)
_TIME_COLUMNS = {
    "window_start_ms",
    "window_end_ms",
    "first_ts_ms",
    "last_ts_ms",
    "ts_ms",
    "computed_at_ms",
}


def referenced_tables(sql: str) -> set[str]:
    """The catalog tables a statement names (a word match; a superset is harmless).

    >>> sorted(referenced_tables("SELECT site FROM fleet.summaries s JOIN alerts a ON true"))
    ['alerts', 'summaries']
    >>> sorted(referenced_tables("SELECT * FROM fleet.stats_log"))
    ['stats', 'stats_log']
    """
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", sql.lower()))
    found = words & set(TABLES)
    if found & {"stats", "stats_log"}:
        found |= {"stats", "stats_log"}  # both views come from one source
    return found


def _view_select(source: str, columns: tuple[tuple[str, str], ...]) -> str:
    """Every column of ``source`` plus a TIMESTAMP(3) (UTC) for each epoch-ms column."""
    cols = [f"`{name}`" for name, _ in columns]
    for name, _ in columns:
        if name in _TIME_COLUMNS:
            # TIMESTAMP(3) in UTC (the session zone): PyFlink cannot hand back TIMESTAMP_LTZ
            cols.append(f"CAST(TO_TIMESTAMP_LTZ(`{name}`, 3) AS TIMESTAMP(3)) AS `{name[:-3]}`")
    return f"SELECT {', '.join(cols)} FROM {source}"


#: column type of the decoded rows -> its name in PyFlink's (TypeInformation, DataType)
_PYFLINK_TYPES = {
    "STRING": ("STRING", "STRING"),
    "BIGINT": ("LONG", "BIGINT"),
    "INT": ("INT", "INT"),
    "DOUBLE": ("DOUBLE", "DOUBLE"),
}
_MAP = "MAP<STRING, DOUBLE>"


def _flink_type(sql_type: str) -> Any:
    """The PyFlink TypeInformation of the column types used by the decoded rows."""
    from pyflink.common import Types

    if sql_type == _MAP:
        return Types.MAP(Types.STRING(), Types.DOUBLE())
    return getattr(Types, _simple_type(sql_type)[0])()


def _data_type(sql_type: str) -> Any:
    """The PyFlink DataType of the column types used by the decoded rows."""
    from pyflink.table import DataTypes

    if sql_type == _MAP:  # Arrow needs non-null map keys
        return DataTypes.MAP(DataTypes.STRING(False), DataTypes.DOUBLE())
    return getattr(DataTypes, _simple_type(sql_type)[1])()


def _simple_type(sql_type: str) -> tuple[str, str]:
    if sql_type not in _PYFLINK_TYPES:
        raise ValueError(sql_type)
    return _PYFLINK_TYPES[sql_type]


@dataclass
class Catalog:
    """Registers the tables of one query on a table environment."""

    topology: Topology | None
    endpoints: CloudEndpoints
    bounded: bool = True

    def topics(self) -> dict[str, str]:
        """Table kind -> topic."""
        if self.topology is None:
            return {
                "stats": FLEET["stats"],
                "summaries": FLEET["summaries"],
                "alerts": FLEET["alerts"],
            }
        fwd = self.topology.forwarding.topics
        return {
            "stats": self.topology.cloud.stats_topic,
            "summaries": fwd.summaries,
            "alerts": fwd.alerts,
        }

    def register(self, tenv: Any, wanted: set[str]) -> dict[str, str]:
        """Create database ``fleet`` and the ``wanted`` tables; returns table -> why it is
        missing (its topic does not exist yet)."""
        from edgestream.core.offsets import exact_end_offsets

        tenv.get_config().set_local_timezone("UTC")
        tenv.execute_sql(f"CREATE DATABASE IF NOT EXISTS `{DATABASE}`")
        tenv.use_database(DATABASE)
        missing: dict[str, str] = {}
        for kind, topic in self.topics().items():
            if kind not in wanted:
                continue
            ends = None
            if self.bounded:
                ends = exact_end_offsets(
                    self.endpoints.bootstrap, topic, self.endpoints.client_settings
                )
                if not ends:
                    missing[kind] = topic
                    continue
            if kind == "stats":
                self._stats(tenv, topic, ends)
            else:
                self._avro(tenv, kind, topic, ends)
        return missing

    def _source(
        self,
        name: str,
        topic: str,
        ends: dict[int, int] | None,
        columns=None,
        value_format: str = "raw",
    ) -> str:
        from edgestream.cloud.flink import kafka_table_ddl

        extra = {f"properties.{k}": str(v) for k, v in self.endpoints.client_settings.items()}
        return kafka_table_ddl(
            name,
            topic,
            self.endpoints.bootstrap,
            columns=columns,
            value_format=value_format,
            ends=ends,
            group="edgestream-query",
            extra=extra,
        )

    def _stats(self, tenv: Any, topic: str, ends: dict[int, int] | None) -> None:
        columns = [
            (name.removesuffix("_ms") if name in _TIME_COLUMNS else name, t)
            for name, t in STATS_COLUMNS
        ]
        tenv.execute_sql(self._source("_stats_json", topic, ends, columns, "json"))
        renamed = ", ".join(
            f"`{raw}` AS `{name}`"
            for (name, _), (raw, _) in zip(STATS_COLUMNS, columns, strict=True)
        )
        tenv.execute_sql(
            f"CREATE TEMPORARY VIEW `_stats_raw` AS SELECT {renamed}, `partition`, `offset` "
            "FROM `_stats_json`"
        )
        tenv.execute_sql(
            "CREATE TEMPORARY VIEW `stats_log` AS " + _view_select("`_stats_raw`", STATS_COLUMNS)
        )
        names = ", ".join(f"`{n}`" for n, _ in STATS_COLUMNS)
        latest = (
            f"SELECT {names} FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start_ms, "
            "`scope`, scope_key ORDER BY `partition` DESC, `offset` DESC) AS rn FROM `_stats_raw`) "
            "WHERE rn = 1"
        )
        tenv.execute_sql(
            "CREATE TEMPORARY VIEW `stats` AS " + _view_select(f"({latest})", STATS_COLUMNS)
        )

    def _avro(self, tenv: Any, kind: str, topic: str, ends: dict[int, int] | None) -> None:
        columns = SUMMARY_COLUMNS if kind == "summaries" else ALERT_COLUMNS
        if ends is not None:
            self._avro_snapshot(tenv, kind, topic, columns)
        else:
            self._avro_stream(tenv, kind, topic, columns)
        tenv.execute_sql(
            f"CREATE TEMPORARY VIEW `{kind}` AS " + _view_select(f"`_{kind}_rows`", columns)
        )

    def _avro_snapshot(self, tenv: Any, kind: str, topic: str, columns: Any) -> None:
        """Decoded here, handed to Flink as a table (see :mod:`edgestream.query.snapshot`)."""
        import pandas as pd
        from pyflink.table import DataTypes

        from edgestream.query.decode import ROWS
        from edgestream.query.snapshot import read_records

        to_row = ROWS[kind]
        rows = [to_row(r) for r in read_records(self.endpoints, topic)]
        names = [n for n, _ in columns]
        schema = DataTypes.ROW([DataTypes.FIELD(n, _data_type(t)) for n, t in columns])
        frame = pd.DataFrame.from_records(rows, columns=names)
        tenv.create_temporary_view(f"_{kind}_rows", tenv.from_pandas(frame, schema))

    def _avro_stream(self, tenv: Any, kind: str, topic: str, columns: Any) -> None:
        """Kafka source of raw bytes, decoded by a Python flat-map inside Flink."""
        from pyflink.common import Types

        tenv.execute_sql(self._source(f"_{kind}_bytes", topic, None))
        raw = tenv.to_data_stream(tenv.sql_query(f"SELECT v FROM `_{kind}_bytes`"))
        row_type = Types.ROW_NAMED([n for n, _ in columns], [_flink_type(t) for _, t in columns])
        decoded = raw.flat_map(AvroRows(kind, self.endpoints.registry), output_type=row_type)
        tenv.create_temporary_view(f"_{kind}_rows", tenv.from_data_stream(decoded))
