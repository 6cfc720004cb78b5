"""The cloud Flink job: fleet analytics, drift detection and retraining triggers.

Graph (Kafka sources at the topology's parallelism, the functions at 1)::

    Kafka fleet.summaries ┐ raw bytes,           ┌───────────────────────── stats ─► fleet.stats
    Kafka fleet.alerts    ┴ partition, offset ─► fleet_stats (Java) ─┬──── dlq ──► fleet.dlq
                                                                     │ rate rows, end
    Kafka fleet.samples   ┐                                          ▼
    Kafka fleet.models    ┴──────────────── UNION ALL ─────► FleetFunction (Python) ─► retrain,
                                                                              dlq, meta

The fleet statistics run in the JVM: ``fleet_stats`` (``io.edgestream.flink.FleetFunction``,
compiled on first use, :mod:`edgestream.cloud.jvm`) decodes the Avro summaries and alerts
itself, drops replays, keeps per-partition watermarks and the windows, and writes the rows as
JSON (``fleet.stats``, key ``window_start|scope|scope_key``: the last row of a key is
current). Measured reason: any per-record crossing into Python caps the job below 35k
records/s on 2 cores (docs/benchmarks.md). Drift needs numpy and the models: the sampled
readings, model updates and the ``rate`` rows (of each ``device_type`` row's first firing:
what the anomaly-rate trigger reads) go
to one vectorized (pandas) Python function in Arrow batches, which decodes them
(:mod:`edgestream.core.serde`) and feeds :class:`edgestream.cloud.engine.FleetEngine`;
RetrainRequests go out as Confluent-framed Avro (``fleet.retrain``, key = dedup key). Both
functions hold their whole state in one instance (no ``key_by``). Processing time moves idle
watermarks once a second (on records, and on a 1/s heartbeat row of an unbounded run); a
bounded run ends when every input partition delivered its record at ``end - 1`` (the Python
function also waits for the end of the statistics, whose counts it adds to the run's ``meta``).

A record the job cannot use (garbage bytes, wrong magic byte, unknown schema id, a record of
another schema) does not fail the job (a restart would meet it again): it is counted
(``dlq_<reason>``) and its original bytes go to the topology's ``cloud.dlq_topic``
(``fleet.dlq``, key ``topic|partition|offset``) with the headers the gateways' dead letters
carry: ``x-edgestream-reason`` / ``-detail`` / ``-source-topic`` / ``-source-partition`` /
``-source-offset``. An unreachable registry still fails the job (a missing service, not a bad
record).

:func:`run_jobs` is the Python entry point (``edgestream cloud run``, ``edgestream up``).
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from edgestream.cloud.function import (
    OWN,
    STATS_END,
    STATS_ROW,
    TICK_MS,
    TICK_SRC,
    fleet_function,
)
from edgestream.core.topology import Topology
from edgestream.wire.topics import FLEET

__all__ = ["CloudJobConfig", "run_jobs", "start_job"]

log = logging.getLogger("edgestream.cloud")

#: headers of a dead-lettered record (as the gateways' ``<topic>.dlq`` records carry them)
DLQ_HEADERS = "MAP[" + ", ".join(
    f"'x-edgestream-{name}', CAST(JSON_VALUE(h, '$.{field}') AS BYTES)"
    for name, field in (("reason", "reason"), ("detail", "detail"), ("source-topic", "topic"),
                        ("source-partition", "partition"), ("source-offset", "offset"))
) + "]"  # fmt: skip
NO_POSITION = "0 AS `partition`, CAST(0 AS BIGINT) AS `offset`"  # of a row not from Kafka
#: the Python function runs in process mode (vectorized functions need it) on Arrow batches
#: of up to 10,000 rows, sent when full or after 500 ms (the added lag)
PYTHON_SETTINGS = {
    "python.execution-mode": "process",
    "python.fn-execution.arrow.batch.size": "10000",
    "python.fn-execution.bundle.size": "10000",
    "python.fn-execution.bundle.time": "500",
}
#: flattens the function's per-row arrays into one row per output (kind, key, value, headers)
OUT_SQL = (
    "SELECT t.r.kinds[i] AS kind, t.r.ks[i] AS k, t.r.vs[i] AS v, t.r.hs[i] AS h "
    "FROM (SELECT fleet(src, `partition`, `offset`, v) AS r FROM job_in) AS t "
    "CROSS JOIN UNNEST(t.r.idx) AS x(i)"
)
#: the fleet statistics (Java) over the summaries and alerts; ``{config}``: a SQL literal
STATS_SQL = (
    "SELECT t.kind, t.k, t.v, t.h, t.`scope` FROM stats_in AS i, "
    "LATERAL TABLE(fleet_stats(i.src, i.`partition`, i.`offset`, i.v, {config})) "
    "AS t(kind, k, v, h, `scope`)"
)


@dataclass
class CloudJobConfig:
    """Where the job reads and writes, and whether it stops at given end offsets."""

    topology: Topology
    bootstrap: str
    registry: str
    jobmanager: str | None = None
    ends: dict[str, dict[int, int]] | None = None  # topic -> partition -> end: bounded run
    starts: dict[str, dict[int, int]] = field(default_factory=dict)
    name: str = "edgestream-fleet"


def _topics(topology: Topology) -> list[str]:
    t = topology.forwarding.topics
    samples = getattr(t, "samples", FLEET["samples"])
    return [t.summaries, t.alerts, samples, topology.cloud.models_topic]


def ensure_cloud_topics(topology: Topology, bootstrap: str, name: str = "edgestream-fleet") -> None:
    """Create the job's input and output topics that do not exist yet (one partition),
    ``{name}.meta`` included (brokers do not auto-create topics)."""
    from edgestream.core.broker import ensure_topics

    c = topology.cloud
    names = [*_topics(topology), c.stats_topic, c.retrain_topic, c.dlq_topic, f"{name}.meta"]
    ensure_topics(bootstrap, {n: 1 for n in names})


def _partitions(bootstrap: str, topics: list[str]) -> dict[str, list[int]]:
    """Partition ids of each input topic (from metadata: ids, never end offsets)."""
    from confluent_kafka import Consumer

    from edgestream.core.offsets import partitions_of

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "edgestream-meta",
                         "log_level": 2})  # fmt: skip
    try:
        return {t: partitions_of(consumer, t) or [] for t in topics}
    finally:
        consumer.close()


def _stats_config(
    config: CloudJobConfig, topics: list[str], partitions: dict[str, list[int]]
) -> str:
    """The configuration of ``fleet_stats`` (``io.edgestream.flink.FleetAnalytics``): JSON."""
    from edgestream.cloud.engine import source_window_ms

    fs = config.topology.cloud.jobs.fleet_stats
    inputs = topics[:2]  # summaries, alerts
    ends = None
    if config.ends is not None:
        ends = [{str(p): e for p, e in (config.ends.get(t) or {}).items()} for t in inputs]
    return json.dumps({
        "registry": config.registry, "topics": inputs, "window_ms": fs.window,
        "allowed_lateness_ms": fs.allowed_lateness, "worst_n": fs.worst_n,
        "source_window_ms": source_window_ms(config.topology),
        "max_out_of_orderness_ms": fs.max_out_of_orderness, "idle_timeout_ms": fs.idle_timeout,
        "tick_ms": TICK_MS, "partitions": [partitions.get(t, []) for t in inputs],
        "ends": ends,
    })  # fmt: skip


def _union(tenv: Any, name: str, selects: list[str]) -> None:
    """``name``: the UNION ALL of ``selects``, through a DataStream and back: else the planner
    pushes the function call on it into each branch (one function instance per input topic)
    and folds ``src`` to a constant.

    The Python function stays chained to the fleet statistics (one task): their thread waits
    for the Python worker at each bundle (50-90 ms a second, seen in a profile), but a task of
    its own (a rebalanced union) measured slower on 2 cores: 33-46k summaries/s instead of
    51-67k (420k records, ``bench cloud``), its start-up then competing with the statistics."""
    union = tenv.sql_query(" UNION ALL ".join(selects))
    tenv.create_temporary_view(name, tenv.from_data_stream(tenv.to_data_stream(union)))


def build_job(config: CloudJobConfig) -> tuple[Any, Any]:
    """Declare the job on a fresh environment: ``(environment, statement set to execute)``."""
    from edgestream.cloud.flink import flink_env, kafka_sink_ddl
    from edgestream.cloud.jvm import register_functions

    topology = config.topology
    # the job runs at 1 (each function must: one instance sees the whole fleet); the Kafka
    # sources read with the topology's parallelism
    env, tenv = flink_env(config.jobmanager, 1, PYTHON_SETTINGS)
    register_functions(tenv)
    topics = _topics(topology)
    selects = _sources(tenv, config, topics)
    ticks = []
    if config.ends is None:  # unbounded: a heartbeat row a second moves processing time
        tenv.execute_sql("CREATE TABLE tick (x INT) WITH ('connector' = 'datagen', "
                         "'rows-per-second' = '1')")  # fmt: skip
        ticks.append(f"SELECT {TICK_SRC} AS src, {NO_POSITION}, CAST(NULL AS BYTES) AS v FROM tick")
    partitions = _partitions(config.bootstrap, topics)
    stats_inputs = [selects[i] for i in (0, 1) if i in selects]
    python_inputs = [selects[i] for i in OWN if i in selects] + ticks
    statements = tenv.create_statement_set()
    tenv.execute_sql(kafka_sink_ddl("dlq_sink", topology.cloud.dlq_topic, config.bootstrap,
                                    headers=True))  # fmt: skip
    if stats_inputs:
        python_inputs.append(
            _fleet_stats(tenv, statements, config, stats_inputs + ticks, topics, partitions)
        )
    _union(tenv, "job_in", python_inputs)
    _fleet(tenv, statements, config, topics, partitions, stats_end=bool(stats_inputs))
    return env, statements


def _sources(tenv: Any, config: CloudJobConfig, topics: list[str]) -> dict[int, str]:
    """A Kafka table ``src<i>`` per input topic with data; its SELECT by ``i``."""
    from edgestream.cloud.flink import kafka_table_ddl

    parallelism = config.topology.cloud.parallelism
    scan = {"scan.parallelism": str(parallelism)} if parallelism > 1 else None
    selects: dict[int, str] = {}
    for i, topic in enumerate(topics):
        ends = None if config.ends is None else config.ends.get(topic, {})
        if ends is not None and not ends:
            continue  # a bounded run over an empty topic reads nothing from it
        tenv.execute_sql(
            kafka_table_ddl(f"src{i}", topic, config.bootstrap, ends=ends,
                            starts=config.starts.get(topic), group=config.name, extra=scan)
        )  # fmt: skip
        selects[i] = f"SELECT {i} AS src, `partition`, `offset`, v FROM src{i}"
    if not selects:
        raise ValueError("nothing to read: every input topic is empty")
    return selects


def _fleet_stats(
    tenv: Any,
    statements: Any,
    config: CloudJobConfig,
    inputs: list[str],
    topics: list[str],
    partitions: dict[str, list[int]],
) -> str:
    """The fleet statistics over ``inputs`` with their sinks; the SELECT of what the Python
    function reads of them (their rates and the end marker)."""
    from edgestream.cloud.flink import kafka_sink_ddl
    from edgestream.cloud.jvm import sql_string

    # a table function stays above the union (one Correlate, one instance, ``src`` kept:
    # checked with explain()), so its input needs no DataStream round trip. Its output
    # does: ``_union`` (in build_job) turns the Python function's input into a DataStream, which
    # plans that query on its own; a view read there and by the inserts would be planned
    # twice (two Kafka sources, two ``fleet_stats``: each record read and aggregated
    # twice, found in a profile). As a DataStream, every reader shares the one
    # Correlate (``job_plan``; its rows are few: one per window and scope key).
    tenv.create_temporary_view("stats_in", tenv.sql_query(" UNION ALL ".join(inputs)))
    literal = sql_string(_stats_config(config, topics, partitions))
    stats = tenv.sql_query(STATS_SQL.format(config=literal))
    tenv.create_temporary_view("stats_out", tenv.from_data_stream(tenv.to_data_stream(stats)))
    tenv.execute_sql(kafka_sink_ddl("stats_sink", config.topology.cloud.stats_topic,
                                    config.bootstrap))  # fmt: skip
    statements.add_insert_sql(
        "INSERT INTO stats_sink SELECT k, v FROM stats_out WHERE kind = 'stats'"
    )
    statements.add_insert_sql(f"INSERT INTO dlq_sink SELECT k, v, {DLQ_HEADERS} FROM "
                              "stats_out WHERE kind = 'dlq'")  # fmt: skip
    return (
        f"SELECT CASE WHEN kind = 'meta' THEN {STATS_END} ELSE {STATS_ROW} END AS src, "
        f"{NO_POSITION}, v FROM stats_out "
        "WHERE kind = 'meta' OR kind = 'rate'"
    )


def _fleet(
    tenv: Any,
    statements: Any,
    config: CloudJobConfig,
    topics: list[str],
    partitions: dict[str, list[int]],
    stats_end: bool,
) -> None:
    """The Python function on ``job_in`` (drift, retrain trigger) and its sinks."""
    from pyflink.table import DataTypes
    from pyflink.table.udf import udf

    from edgestream.cloud.flink import kafka_sink_ddl
    from edgestream.core.serde import AvroSerializer, subject_for

    topology = config.topology
    # the Avro header of RetrainRequest (registers the schema once, here, not in the job)
    serializer = AvroSerializer(
        config.registry, "RetrainRequest", subject_for(topology.cloud.retrain_topic)
    )
    header = b"\x00" + serializer.schema_id.to_bytes(4, "big")
    source = str(topology.source) if topology.source else None
    function = fleet_function(topology.to_dict(), source, config.registry, topics, partitions,
                              header, config.ends, stats_end=stats_end)  # fmt: skip
    arrays = [("kinds", DataTypes.STRING()), ("ks", DataTypes.BYTES()), ("vs", DataTypes.BYTES()),
              ("hs", DataTypes.STRING()), ("idx", DataTypes.INT())]  # fmt: skip
    out_type = DataTypes.ROW([DataTypes.FIELD(n, DataTypes.ARRAY(t)) for n, t in arrays])
    # one instance sees every record (the engine's state is the whole fleet)
    tenv.create_temporary_function("fleet", udf(function, result_type=out_type, func_type="pandas"))
    tenv.create_temporary_view("job_out", tenv.sql_query(OUT_SQL))
    tenv.execute_sql(kafka_sink_ddl("retrain_sink", topology.cloud.retrain_topic, config.bootstrap))
    tenv.execute_sql(kafka_sink_ddl("meta_sink", f"{config.name}.meta", config.bootstrap))
    statements.add_insert_sql(
        "INSERT INTO retrain_sink SELECT k, v FROM job_out WHERE kind = 'retrain'"
    )
    statements.add_insert_sql("INSERT INTO meta_sink SELECT k, v FROM job_out WHERE kind = 'meta'")
    statements.add_insert_sql(f"INSERT INTO dlq_sink SELECT k, v, {DLQ_HEADERS} FROM job_out "
                              "WHERE kind = 'dlq'")  # fmt: skip


def job_plan(config: CloudJobConfig) -> dict[str, Any]:
    """The job's stream graph as Flink would run it (its execution plan, JSON: ``nodes``
    with ``contents`` such as ``Source: src0[6]``); nothing is submitted."""
    env, statements = build_job(config)
    statements.attach_as_datastream()
    return json.loads(env.get_execution_plan())


#: a planner call on a py4j thread where Calcite's metadata provider was never set (a
#: ThreadLocal set when SQL is converted): seen once in ~15 job builds, in ``to_data_stream``
PLANNER_THREAD_ERROR = "metadataHandlerProvider"


def start_job(config: CloudJobConfig, attempts: int = 3) -> Any:
    """Create missing topics, submit the job; its ``TableResult`` (``get_job_client()``).

    Py4J serves a Python thread's calls from a pool of Java threads; another Python thread's
    call (py4j's finalizers run in whichever thread the garbage collector runs) can swap the
    pool's order, and a planner call then lands on a Java thread without Calcite's metadata
    provider and fails with ``NullPointerException: metadataHandlerProvider``. Nothing was
    submitted then: the job is declared again on a fresh environment (up to ``attempts``
    times), with the cyclic garbage collector paused while it is declared.
    """
    import gc

    ensure_cloud_topics(config.topology, config.bootstrap, config.name)
    for attempt in range(1, attempts + 1):
        collecting = gc.isenabled()
        gc.disable()
        try:
            return build_job(config)[1].execute()
        except Exception as error:
            if PLANNER_THREAD_ERROR not in str(error) or attempt == attempts:
                raise
            log.warning(
                "planning met a py4j thread without Calcite's metadata provider "
                "(attempt %d of %d): declaring the job again", attempt, attempts,
            )  # fmt: skip
        finally:
            if collecting:
                gc.enable()
    raise AssertionError("unreachable")


def run_jobs(
    topology: Topology,
    bootstrap: str,
    registry: str,
    stop_event: threading.Event | None = None,
    jobmanager: str | None = None,
    ends: dict[str, dict[int, int]] | None = None,
    name: str = "edgestream-fleet",
) -> None:
    """Run the fleet job until ``stop_event`` is set (or, with ``ends``, to those offsets).

    Local MiniCluster unless ``jobmanager`` (``HOST:PORT``) is given. Blocks; the job is
    cancelled when ``stop_event`` is set. Creates missing topics first.

    Usage (``edgestream up`` runs it in a thread)::

        stop = threading.Event()
        threading.Thread(target=run_jobs, args=(topology, cloud, registry, stop)).start()
    """
    result = start_job(CloudJobConfig(topology, bootstrap, registry, jobmanager, ends, name=name))
    if ends is not None:
        result.wait()
        return
    client = result.get_job_client()
    while not (stop_event is not None and stop_event.wait(1.0)):
        try:
            state = client.get_job_status().result().name
        except Exception:
            # a local MiniCluster shuts down with its job: the job's own failure says why
            result.wait()
            raise
        if state in ("FAILED", "FINISHED", "CANCELED"):
            result.wait()  # raises the job's failure
            raise RuntimeError(f"the fleet job ended on its own ({state})")
    try:
        client.cancel().result()
    except Exception as error:  # already finished / cluster gone
        log.info("cancel: %s", error)
