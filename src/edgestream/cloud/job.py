"""The cloud Flink job: fleet analytics, drift detection and retraining triggers.

Graph (parallelism from the topology, 1 by default)::

    Kafka fleet.summaries ┐  raw bytes + partition/offset     ┌─ stats   ─► Kafka fleet.stats
    Kafka fleet.alerts    ├─ UNION ALL (Flink SQL) ─► keyBy ─► FleetFunction
    Kafka fleet.samples   │                          (Python, ├─ retrain ─► Kafka fleet.retrain
    Kafka fleet.models    ┘                           thread)

Avro is decoded in Python (no ``flink-avro`` jar exists for this Flink): the bytes reach one
``KeyedProcessFunction`` that decodes them (:mod:`edgestream.core.serde`) and feeds
:class:`edgestream.cloud.engine.FleetEngine`; a processing-time timer every second moves idle
watermarks; the end of a bounded input (``Long.MAX`` watermark) flushes every window. Rows go
out as JSON (``fleet.stats``, key ``window_start|scope|scope_key``: the last row of a key is
current) and RetrainRequests as Confluent-framed Avro (``fleet.retrain``, key = dedup key).

:func:`run_jobs` is the Python entry point (``edgestream cloud run``, ``edgestream up``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from edgestream.core.topology import Topology

__all__ = ["CloudJobConfig", "run_jobs", "start_job"]

log = logging.getLogger("edgestream.cloud")

TICK_MS = 1000
END_OF_INPUT = 2**63 - 2  # an event-time timer here fires only at the final watermark


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

    names = [*_topics(topology), topology.cloud.stats_topic, topology.cloud.retrain_topic]
    ensure_topics(bootstrap, {n: 1 for n in names})


def _function(
    topology_dict: dict[str, Any],
    source: str | None,
    registry: str,
    topics: list[str],
    partitions: dict[str, list[int]],
    retrain_header: bytes,
) -> Any:
    """The KeyedProcessFunction (built lazily: pyflink imports only inside the job)."""
    from pyflink.common import Row
    from pyflink.datastream import KeyedProcessFunction

    class FleetFunction(KeyedProcessFunction):
        def open(self, runtime_context: Any) -> None:
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
            self.timer = False
            self.first_ms = self.last_ms = 0
            self.records = 0

        def _emit(self, outputs: list[Any]):
            import io

            for kind, key, value in outputs:
                if kind == "stats":
                    yield Row(kind, key.encode(), json.dumps(value, separators=(",", ":")).encode())
                else:
                    buf = io.BytesIO()
                    buf.write(retrain_header)
                    self.writer(buf, self.retrain_schema, value)
                    yield Row(kind, key.encode(), buf.getvalue())

        def process_element(self, value: Any, ctx: Any):
            now = int(time.time() * 1000)
            if not self.timer:
                self.timer = True
                ctx.timer_service().register_processing_time_timer(now + TICK_MS)
                ctx.timer_service().register_event_time_timer(END_OF_INPUT)
                self.first_ms = now
            self.records += 1
            self.last_ms = now
            src, partition, offset, data = value[0], value[1], value[2], value[3]
            record = self.decode(bytes(data))
            yield from self._emit(
                self.engine.process(self.topics[src], partition, offset, record, now)
            )

        def on_timer(self, timestamp: int, ctx: Any):
            now = int(time.time() * 1000)
            if timestamp >= END_OF_INPUT:
                log.info("end of input after %d records", self.records)
                yield from self._emit(self.engine.flush(now))
                span = max(self.last_ms - self.first_ms, 1)
                stats = {"records": self.records, "span_ms": span, **self.engine.counts}
                yield Row("meta", b"meta", json.dumps(stats).encode())
                return
            ctx.timer_service().register_processing_time_timer(now + TICK_MS)
            yield from self._emit(self.engine.tick(now))

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
    from pyflink.common import Types

    from edgestream.cloud.flink import flink_env, kafka_sink_ddl, kafka_table_ddl
    from edgestream.core.serde import AvroSerializer, subject_for

    topology = config.topology
    _env, tenv = flink_env(config.jobmanager, topology.cloud.parallelism)
    topics = _topics(topology)
    selects = []
    for i, topic in enumerate(topics):
        ends = None if config.ends is None else config.ends.get(topic, {})
        if ends is not None and not ends:
            continue  # a bounded run over an empty topic reads nothing from it
        tenv.execute_sql(
            kafka_table_ddl(f"src{i}", topic, config.bootstrap, ends=ends,
                            starts=config.starts.get(topic), group=config.name)
        )  # fmt: skip
        selects.append(f"SELECT {i} AS src, `partition`, `offset`, v FROM src{i}")
    if not selects:
        raise ValueError("nothing to read: every input topic is empty")
    union = tenv.sql_query(" UNION ALL ".join(selects))
    stream = tenv.to_data_stream(union)
    # the Avro header of RetrainRequest (registers the schema once, here, not in the job)
    serializer = AvroSerializer(
        config.registry, "RetrainRequest", subject_for(topology.cloud.retrain_topic)
    )
    header = b"\x00" + serializer.schema_id.to_bytes(4, "big")
    out_type = Types.ROW([Types.STRING(), Types.PRIMITIVE_ARRAY(Types.BYTE()),
                          Types.PRIMITIVE_ARRAY(Types.BYTE())])  # fmt: skip
    source = str(topology.source) if topology.source else None
    partitions = _partitions(config.bootstrap, topics)
    function = _function(topology.to_dict(), source, config.registry, topics, partitions, header)
    outputs = stream.key_by(lambda r: 0, key_type=Types.INT()).process(function, out_type)
    tenv.create_temporary_view("job_out", tenv.from_data_stream(outputs).alias("kind", "k", "v"))
    tenv.execute_sql(kafka_sink_ddl("stats_sink", topology.cloud.stats_topic, config.bootstrap))
    tenv.execute_sql(kafka_sink_ddl("retrain_sink", topology.cloud.retrain_topic, config.bootstrap))
    tenv.execute_sql(kafka_sink_ddl("meta_sink", f"{config.name}.meta", config.bootstrap))
    statements = tenv.create_statement_set()
    statements.add_insert_sql(
        "INSERT INTO stats_sink SELECT k, v FROM job_out WHERE kind = 'stats'"
    )
    statements.add_insert_sql(
        "INSERT INTO retrain_sink SELECT k, v FROM job_out WHERE kind = 'retrain'"
    )
    statements.add_insert_sql("INSERT INTO meta_sink SELECT k, v FROM job_out WHERE kind = 'meta'")
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
