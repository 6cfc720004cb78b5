"""The cloud Flink job: fleet analytics, drift detection and retraining triggers.

Graph (Kafka sources at the topology's parallelism, the rest at 1)::

    Kafka fleet.summaries ┐  raw bytes + partition/offset     ┌─ stats   ─► Kafka fleet.stats
    Kafka fleet.alerts    ├─ UNION ALL (Flink SQL) ─────────► FleetFunction  ─ UNNEST (SQL) ─┤
    Kafka fleet.samples   │                          (Python, ├─ retrain ─► Kafka fleet.retrain
    Kafka fleet.models    ┘                   Arrow batches)  └─ dlq     ─► Kafka fleet.dlq

Avro is decoded in Python (no ``flink-avro`` jar exists for this Flink): the bytes reach one
vectorized (pandas) scalar function in Arrow batches (one Python crossing per batch, not per
record) that decodes them (:mod:`edgestream.core.serde`) row by row and feeds
:class:`edgestream.cloud.engine.FleetEngine`. No ``key_by``: the engine holds the whole fleet
in one instance. Processing time moves idle watermarks once a second (on
records, and on a 1/s heartbeat row of an unbounded run); a bounded run flushes every window
when every input partition delivered its record at ``end - 1``. Rows go out as JSON
(``fleet.stats``, key ``window_start|scope|scope_key``: the last row of a key is current) and
RetrainRequests as Confluent-framed Avro (``fleet.retrain``, key = dedup key).

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
import time
from dataclasses import dataclass, field
from typing import Any

from edgestream.core.exceptions import SerdeError
from edgestream.core.topology import Topology

__all__ = ["CloudJobConfig", "run_jobs", "start_job"]

log = logging.getLogger("edgestream.cloud")

TICK_MS = 1000
#: headers of a dead-lettered record (as the gateways' ``<topic>.dlq`` records carry them)
DLQ_HEADERS = "MAP[" + ", ".join(
    f"'x-edgestream-{name}', CAST(JSON_VALUE(h, '$.{field}') AS BYTES)"
    for name, field in (("reason", "reason"), ("detail", "detail"), ("source-topic", "topic"),
                        ("source-partition", "partition"), ("source-offset", "offset"))
) + "]"  # fmt: skip
TICK_SRC = -1  # the ``src`` of the heartbeat rows of an unbounded run
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
    samples = getattr(t, "samples", "fleet.samples")
    return [t.summaries, t.alerts, samples, topology.cloud.models_topic]


def ensure_cloud_topics(topology: Topology, bootstrap: str) -> None:
    """Create the job's input and output topics that do not exist yet (one partition)."""
    from edgestream.core.broker import ensure_topics

    c = topology.cloud
    names = [*_topics(topology), c.stats_topic, c.retrain_topic, c.dlq_topic]
    ensure_topics(bootstrap, {n: 1 for n in names})


def _function(
    topology_dict: dict[str, Any],
    source: str | None,
    registry: str,
    topics: list[str],
    partitions: dict[str, list[int]],
    retrain_header: bytes,
    ends: dict[str, dict[int, int]] | None = None,
) -> Any:
    """The job's one Python function (built lazily: pyflink imports only inside the job).

    A vectorized (pandas) scalar function: Flink hands it Arrow batches of input rows
    (``src``, ``partition``, ``offset``, raw bytes), one crossing per batch instead of one per
    record (measured: a no-op went from 27k to 131k records/s). The one instance holds the
    engine across batches and runs the rows one by one in order; for each input row it
    returns the output rows produced at that row (usually none) as parallel arrays, which SQL
    flattens (:data:`OUT_SQL`). Processing time moves on each row (and on the heartbeat rows
    of an unbounded run, ``src == TICK_SRC``); a bounded run ends when every partition
    delivered its record at ``end - 1`` (exact ends: from delivery reports or fetches).
    """
    from pyflink.table.udf import ScalarFunction

    class FleetFunction(ScalarFunction):
        def open(self, function_context: Any) -> None:
            from fastavro import schemaless_writer

            from edgestream.cloud.engine import FleetEngine
            from edgestream.core.serde import AvroDeserializer, fastavro_schema, load_schema
            from edgestream.core.topology import Topology

            topology = Topology.model_validate(topology_dict).with_source(source)
            self.engine = FleetEngine(topology)
            now = int(time.time() * 1000)
            for topic, parts in partitions.items():
                self.engine.assign(topic, parts, now)
            self.decode = AvroDeserializer(registry)
            self.topics = topics
            self.writer = schemaless_writer
            self.retrain_schema = fastavro_schema(load_schema("RetrainRequest"))
            self.next_tick = now + TICK_MS
            self.first_ms = self.last_ms = 0
            self.records = 0
            self.decode_ns = self.engine_ns = 0  # time in Avro decoding and in the engine
            # a bounded run: the last offset of each (input, partition) still to come
            self.pending = None
            if ends is not None:
                self.pending = {(i, p): end - 1 for i, t in enumerate(topics)
                                for p, end in (ends.get(t) or {}).items() if end > 0}  # fmt: skip

        def is_deterministic(self) -> bool:
            return False  # state across calls: never folded, deduplicated or reordered

        def eval(self, src: Any, partition: Any, offset: Any, data: Any) -> Any:
            """One Arrow batch: per input row, the rows it produced, as parallel arrays."""
            import pandas as pd

            kinds, ks, vs, hs, idx = [], [], [], [], []
            rows = zip(
                src.tolist(), partition.tolist(), offset.tolist(), data.tolist(), strict=True
            )
            none: list[Any] = []  # the usual answer: no output at this row (never mutated)
            for row in rows:
                out = list(self._row(*row))
                if not out:
                    for column in (kinds, ks, vs, hs, idx):
                        column.append(none)
                    continue
                kinds.append([o[0] for o in out])
                ks.append([o[1] for o in out])
                vs.append([o[2] for o in out])
                hs.append([o[3] for o in out])
                idx.append(list(range(1, len(out) + 1)))
            return pd.DataFrame({"kinds": kinds, "ks": ks, "vs": vs, "hs": hs, "idx": idx})

        def _row(self, src: int, partition: int, offset: int, data: Any):
            now = int(time.time() * 1000)
            if now >= self.next_tick:
                self.next_tick = now + TICK_MS
                yield from self._emit(self.engine.tick(now))
            if src == TICK_SRC:
                return
            if not self.records:
                self.first_ms = now
            self.records += 1
            self.last_ms = now
            yield from self._one(src, partition, offset, data, now)
            pending = self.pending
            if pending and pending.get((src, partition), -1) <= offset:
                del pending[(src, partition)]
                if not pending:
                    yield from self._end(now)

        def _emit(self, outputs: list[Any]):
            import io

            for kind, key, value in outputs:
                if kind == "stats":
                    body = json.dumps(value, separators=(",", ":")).encode()
                    yield kind, key.encode(), body, None
                else:
                    buf = io.BytesIO()
                    buf.write(retrain_header)
                    self.writer(buf, self.retrain_schema, value)
                    yield kind, key.encode(), buf.getvalue(), None

        def _dead(self, src: int, partition: int, offset: int, data: Any, reason: str,
                  detail: str) -> Any:  # fmt: skip
            """A record the job cannot use: counted, and to the DLQ with its position."""
            topic = self.topics[src]
            counts = self.engine.counts
            if counts["dlq"] < 10:
                log.warning("%s[%d]@%d to the DLQ: %s", topic, partition, offset, detail)
            counts["dlq"] += 1
            counts[f"dlq_{reason}"] += 1
            headers = {"reason": reason, "detail": detail[:1000], "topic": topic,
                       "partition": str(partition), "offset": str(offset)}  # fmt: skip
            key = f"{topic}|{partition}|{offset}".encode()
            return "dlq", key, b"" if data is None else bytes(data), json.dumps(headers)

        def _one(self, src: int, partition: int, offset: int, data: Any, now: int):
            clock = time.perf_counter_ns
            t0 = clock()
            try:
                record = self.decode(b"" if data is None else bytes(data))
            except SerdeError as error:  # garbage, unknown schema id, wrong magic byte
                yield self._dead(src, partition, offset, data, error.reason, str(error))
                return
            t1 = clock()
            self.decode_ns += t1 - t0
            try:
                outputs = self.engine.process(self.topics[src], partition, offset, record, now)
                self.engine_ns += clock() - t1
            except (KeyError, TypeError, ValueError, AttributeError) as error:
                # decodable, but not a record of this topic (another schema written to it)
                detail = f"not a record of {self.topics[src]}: {type(error).__name__}: {error}"
                yield self._dead(src, partition, offset, data, "invalid_record", detail)
                return
            if outputs:
                yield from self._emit(outputs)

        def _end(self, now: int):
            """The end of a bounded input: every window closes; the run's counts."""
            log.info("end of input after %d records", self.records)
            yield from self._emit(self.engine.flush(now))
            span = max(self.last_ms - self.first_ms, 1)
            stats = {"records": self.records, "span_ms": span, **self.engine.counts,
                     "decode_ms": self.decode_ns // 1_000_000,
                     "engine_ms": self.engine_ns // 1_000_000}  # fmt: skip
            yield "meta", b"meta", json.dumps(stats).encode(), None

    return FleetFunction()


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


def build_job(config: CloudJobConfig) -> Any:
    """Declare the job on a fresh environment; returns the StatementSet to execute."""
    from pyflink.table import DataTypes
    from pyflink.table.udf import udf

    from edgestream.cloud.flink import flink_env, kafka_sink_ddl, kafka_table_ddl
    from edgestream.core.serde import AvroSerializer, subject_for

    topology = config.topology
    # the job runs at 1 (the Python function must: one engine sees the whole fleet); the
    # Kafka sources read with the topology's parallelism
    _env, tenv = flink_env(config.jobmanager, 1, PYTHON_SETTINGS)
    parallelism = topology.cloud.parallelism
    scan = {"scan.parallelism": str(parallelism)} if parallelism > 1 else None
    topics = _topics(topology)
    selects = []
    for i, topic in enumerate(topics):
        ends = None if config.ends is None else config.ends.get(topic, {})
        if ends is not None and not ends:
            continue  # a bounded run over an empty topic reads nothing from it
        tenv.execute_sql(
            kafka_table_ddl(f"src{i}", topic, config.bootstrap, ends=ends,
                            starts=config.starts.get(topic), group=config.name, extra=scan)
        )  # fmt: skip
        selects.append(f"SELECT {i} AS src, `partition`, `offset`, v FROM src{i}")
    if not selects:
        raise ValueError("nothing to read: every input topic is empty")
    if config.ends is None:  # unbounded: a heartbeat row a second moves processing time
        tenv.execute_sql("CREATE TABLE tick (x INT) WITH ('connector' = 'datagen', "
                         "'rows-per-second' = '1')")  # fmt: skip
        selects.append(f"SELECT {TICK_SRC}, 0, CAST(0 AS BIGINT), CAST(NULL AS BYTES) FROM tick")
    union = tenv.sql_query(" UNION ALL ".join(selects))
    # through a DataStream and back: else the planner pushes the function call into each
    # branch of the union (one engine per input topic) and folds ``src`` to a constant
    tenv.create_temporary_view("job_in", tenv.from_data_stream(tenv.to_data_stream(union)))
    # the Avro header of RetrainRequest (registers the schema once, here, not in the job)
    serializer = AvroSerializer(
        config.registry, "RetrainRequest", subject_for(topology.cloud.retrain_topic)
    )
    header = b"\x00" + serializer.schema_id.to_bytes(4, "big")
    source = str(topology.source) if topology.source else None
    partitions = _partitions(config.bootstrap, topics)
    function = _function(topology.to_dict(), source, config.registry, topics, partitions, header,
                         config.ends)  # fmt: skip
    arrays = [("kinds", DataTypes.STRING()), ("ks", DataTypes.BYTES()), ("vs", DataTypes.BYTES()),
              ("hs", DataTypes.STRING()), ("idx", DataTypes.INT())]  # fmt: skip
    out_type = DataTypes.ROW([DataTypes.FIELD(n, DataTypes.ARRAY(t)) for n, t in arrays])
    # one instance sees every record (the engine's state is the whole fleet)
    tenv.create_temporary_function("fleet", udf(function, result_type=out_type, func_type="pandas"))
    tenv.create_temporary_view("job_out", tenv.sql_query(OUT_SQL))
    tenv.execute_sql(kafka_sink_ddl("stats_sink", topology.cloud.stats_topic, config.bootstrap))
    tenv.execute_sql(kafka_sink_ddl("retrain_sink", topology.cloud.retrain_topic, config.bootstrap))
    tenv.execute_sql(kafka_sink_ddl("meta_sink", f"{config.name}.meta", config.bootstrap))
    tenv.execute_sql(kafka_sink_ddl("dlq_sink", topology.cloud.dlq_topic, config.bootstrap,
                                    headers=True))  # fmt: skip
    statements = tenv.create_statement_set()
    statements.add_insert_sql(
        "INSERT INTO stats_sink SELECT k, v FROM job_out WHERE kind = 'stats'"
    )
    statements.add_insert_sql(
        "INSERT INTO retrain_sink SELECT k, v FROM job_out WHERE kind = 'retrain'"
    )
    statements.add_insert_sql("INSERT INTO meta_sink SELECT k, v FROM job_out WHERE kind = 'meta'")
    statements.add_insert_sql(f"INSERT INTO dlq_sink SELECT k, v, {DLQ_HEADERS} FROM job_out "
                              "WHERE kind = 'dlq'")  # fmt: skip
    return statements


def start_job(config: CloudJobConfig) -> Any:
    """Create missing topics, submit the job; its ``TableResult`` (``get_job_client()``)."""
    ensure_cloud_topics(config.topology, config.bootstrap)
    return build_job(config).execute()


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
