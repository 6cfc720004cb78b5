"""``edgestream bench cloud``: the fleet Flink job at parallelism 1 on a local MiniCluster.

Three phases on a fresh embedded stack (cloud broker + registry):

1. **Throughput** - ``summaries`` forwarded device summaries (plus the site summaries and
   replays a fleet sends) are produced first, then the job reads them to their exact end
   offsets (bounded). Summaries/s = records the job's fleet statistics (the Java table
   function ``fleet_stats``) processed / the span between its first and its last record
   (measured inside the job, so MiniCluster start-up is not in it); the wall time of the
   whole run is reported too. ``us_per_record`` splits a record's time: Avro decoding, the
   statistics, the rest (Flink: reading, the union, the sinks). The job runs twice in the
   same JVM: the first run on a fresh JVM (its code still being compiled by the JIT, which
   takes most of a core for the whole run on 2 cores, measured), then the same job again
   (``summaries_per_s``: a job that has been running). Each run also reports its second
   half alone (``second_half_per_s``) and the rate in each tenth of it (``tenths_per_s``).
2. **JVM only** - on the same topic, in the same run: records/s of a Flink SQL query that
   only reads the raw values, and of one that also decodes them with the Java decoder
   (``decode_summary``, :mod:`edgestream.cloud.jvm`: Apache Avro's Java library; twice: the
   first pass is mostly the JIT). The ratios say how close the job comes to reading alone.
3. **End-to-end lag** - the job runs unbounded; every ``window`` seconds of wall time the
   fleet's summaries of the window just ended are produced (event time = wall time). A fleet
   row can be computed once the first summary of the next window arrives; lag = broker time
   of the row in ``fleet.stats`` - produce time of that summary (p50 / p95 / max).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgestream.bench.common import BenchError, Phases, machine_info, rate
from edgestream.wire.topics import FLEET

__all__ = ["CloudBenchParams", "run_cloud_bench"]

_TOPOLOGY = Path(__file__).parents[3] / "topologies" / "default.yaml"


@dataclass(frozen=True)
class CloudBenchParams:
    summaries: int = 400_000
    devices: int = 100
    lag_windows: int = 8
    lag_window_s: float = 2.0
    seed: int = 7
    timeout: float = 600.0
    workdir: Path | None = None


def _topology(window_ms: int, prefix: str = "fleet") -> Any:
    import yaml

    from edgestream.core.topology import Topology

    raw = yaml.safe_load(_TOPOLOGY.read_text())
    raw["windows"] = [{"size": window_ms, "allowed_lateness": 0, "scopes": ["device", "site"]}]
    if prefix != "fleet":  # the lag phase reads its own topics (no backlog before it)
        raw["forwarding"]["topics"] = {"summaries": f"{prefix}.summaries",
                                       "alerts": f"{prefix}.alerts"}  # fmt: skip
        raw["cloud"]["stats_topic"] = f"{prefix}.stats"
        raw["cloud"]["retrain_topic"] = f"{prefix}.retrain"
    raw.setdefault("cloud", {})["jobs"] = {
        "fleet_stats": {"window": window_ms, "allowed_lateness": "15m", "worst_n": 5,
                        "max_out_of_orderness": 0, "idle_timeout": "1h"},
    }  # fmt: skip
    return Topology.model_validate(raw).with_source(_TOPOLOGY)


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None, "n": 0}
    v = sorted(values)
    pick = lambda q: round(v[min(len(v) - 1, int(q * (len(v) - 1) + 0.5))], 1)  # noqa: E731
    return {"p50": pick(0.5), "p95": pick(0.95), "max": round(v[-1], 1), "n": len(v)}


def _split(meta: dict[str, Any]) -> dict[str, float]:
    """Where a record's time in the job went (µs): Avro decoding and the engine (measured in
    the Python function), the rest (Flink, Arrow batches, the function's own loop).

    >>> _split({"records": 1000, "span_ms": 100, "decode_ms": 40, "engine_ms": 35})
    {'total': 100.0, 'decode': 40.0, 'engine': 35.0, 'other': 25.0}
    """
    n = max(int(meta["records"]), 1)
    total, decode, engine = (meta[k] * 1000 / n for k in ("span_ms", "decode_ms", "engine_ms"))
    out = {"total": total, "decode": decode, "engine": engine, "other": total - decode - engine}
    return {k: round(v, 1) for k, v in out.items()}


def _meta(bootstrap: str, topic: str) -> dict[str, Any]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench", "log_level": 2})
    consumer.assign([TopicPartition(topic, 0, 0)])
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            msgs = consumer.consume(100, timeout=1)
            for m in msgs:
                if m.error() is None:
                    return json.loads(m.value())
    finally:
        consumer.close()
    raise BenchError(f"the job wrote no end-of-input record to {topic}")


def run_cloud_bench(params: CloudBenchParams, phases: Phases) -> dict[str, Any]:
    """Both phases; the result dict (the JSON line of ``--json``)."""
    from edgestream.cloud.job import CloudJobConfig, start_job
    from edgestream.core.stack import Stack
    from edgestream.testing.fleet_records import fleet_summaries, produce_records

    result: dict[str, Any] = {"bench": "cloud", "machine": machine_info(), "parallelism": 1}
    work = params.workdir or Path(tempfile.mkdtemp(prefix="edgestream-bench-cloud-"))
    stack = Stack(work / "stack")
    try:
        status = stack.start(gateways=1)
        cloud, registry = str(status.endpoints()["cloud"]), str(status.endpoints()["registry"])
        window_ms = 10_000
        topo = _topology(window_ms)
        windows = max(1, params.summaries // params.devices)
        phases.start(f"producing {windows * params.devices:,} device summaries")
        records = fleet_summaries(params.devices, windows, params.seed, replay_every=50)
        t0 = time.time()
        produced = produce_records(
            cloud, registry, FLEET["summaries"], "WindowSummary", records, "scope_key"
        )
        ends = {FLEET["summaries"]: produced}
        phases.done(f"{len(records):,} records in {time.time() - t0:.1f} s")
        result["throughput"] = _throughput_phase(topo, cloud, registry, ends, records, phases)
        per_s = result["throughput"]["summaries_per_s"]
        phases.start("JVM only, same topic: raw read, then Java Avro decode (twice)")
        result["jvm_only"] = _jvm_phase(cloud, registry, ends[FLEET["summaries"]], per_s)
        phases.done(
            f"read {result['jvm_only']['read_per_s']:,} /s, "
            f"decode {result['jvm_only']['decode_first_per_s']:,} /s first, "
            f"{result['jvm_only']['decode_per_s']:,} /s again"
        )
        result["lag_ms"] = _lag_phase(params, topo, cloud, registry, phases, start_job,
                                      CloudJobConfig)  # fmt: skip
    finally:
        stack.stop()
        if params.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return result


def _throughput_phase(topo, cloud, registry, ends, records, phases) -> dict[str, Any]:
    """The bounded job over the backlog, twice in the same JVM: a fresh JVM's first run, its
    code still compiled by the JIT while it runs (and the Python worker starting beside it),
    then the same job again on the warm JVM (as a job that has been running for a while)."""
    from edgestream.cloud.function import META_TIMES
    from edgestream.cloud.job import run_jobs

    runs = {}
    for name in ("first", "warm"):
        phases.start(f"fleet job, bounded, {name} run (MiniCluster start in the wall time)")
        t0 = time.time()
        run_jobs(topo, cloud, registry, ends=ends, name=f"bench-throughput-{name}")
        wall = time.time() - t0
        meta = _meta(cloud, f"bench-throughput-{name}.meta")
        fleet = meta["fleet_stats"]  # the summaries' part of the job (in the JVM)
        per_s = rate(fleet["records"], fleet["span_ms"] / 1000)
        marks = [(0, 0), *fleet["progress"]]  # [records, ms] at each tenth of the run
        tenths = [round(rate(n1 - n0, (m1 - m0) / 1000)) if m1 > m0 else None
                  for (n0, m0), (n1, m1) in itertools.pairwise(marks)]  # fmt: skip
        (n0, m0), (n1, m1) = marks[5], marks[10]
        half = rate(n1 - n0, max(m1 - m0, 1) / 1000)
        phases.done(f"{per_s:,.0f} records/s in the job ({half:,.0f}/s in its second half), "
                    f"{wall:.1f} s wall")  # fmt: skip
        runs[name] = {
            "records": fleet["records"],
            "summaries_per_s": round(per_s),
            "second_half_per_s": round(half),  # the run's own warm-up behind it
            "tenths_per_s": tenths,  # records/s in each tenth of the run
            "span_s": round(fleet["span_ms"] / 1000, 2),
            "wall_s": round(wall, 1),
            "us_per_record": _split(fleet),
            # the span's wall time vs the statistics thread's CPU time and the JVM's GC time
            "cpu_share": round(fleet.get("cpu_ms", 0) / max(fleet["span_ms"], 1), 2),
            "gc_ms": fleet.get("gc_ms"),
            "counts": {k: v for k, v in meta.items() if k not in (*META_TIMES, "fleet_stats")},
        }
    first, warm = runs["first"], runs["warm"]
    if (first["records"], first["counts"]) != (warm["records"], warm["counts"]):
        raise BenchError(f"the two runs counted differently: {first} vs {warm}")
    return {
        "records": warm["records"],
        "device_summaries": sum(1 for r in records if r["scope"] == "device"),
        "summaries_per_s": warm["summaries_per_s"],  # the job on a warm JVM
        "first_run_per_s": first["summaries_per_s"],  # a fresh JVM
        "goal_per_s": 50_000,
        "counts": warm.pop("counts"),
        "runs": {"first": {k: v for k, v in first.items() if k != "counts"}, "warm": warm},
    }


#: a bounded aggregate's intermediate rows are few (the last one is the result)
_MINI_BATCH = {"table.exec.mini-batch.enabled": "true",
               "table.exec.mini-batch.allow-latency": "2 s",
               "table.exec.mini-batch.size": "1000000"}  # fmt: skip


def _jvm_phase(cloud: str, registry: str, ends: dict[int, int], job_per_s: float) -> dict:
    """The route past Python's per-record cost, measured on the same topic: records/s of a
    JVM-only query that reads the raw values, and of one that also decodes them with the Java
    decoder (:mod:`edgestream.cloud.jvm`), run twice: the first pass is mostly the JIT
    compiling the decoder (measured outside Flink: 20 µs per record on the first 105k, 2-3
    µs after), the second is what a long-running job gets. Each span is first to last record,
    read with ``NOW()`` per record (so the MiniCluster's start is not in it), as the job's."""
    from datetime import datetime

    from edgestream.cloud.flink import flink_env, kafka_table_ddl
    from edgestream.cloud.jvm import register_functions, sql_string

    span = "CAST(MIN(t) AS STRING), CAST(MAX(t) AS STRING)"
    decode = (f"SELECT COUNT(*), COUNT(d.error), {span} FROM (SELECT "
              f"decode_summary(v, {sql_string(registry)}) AS d, NOW() AS t FROM s)")  # fmt: skip
    queries = {
        "read": f"SELECT COUNT(*), 0, {span} FROM (SELECT v, NOW() AS t FROM s)",
        "decode_first": decode,
        "decode": decode,
    }
    out: dict[str, Any] = {}
    for name, sql in queries.items():
        _env, tenv = flink_env(None, 1, _MINI_BATCH)
        register_functions(tenv)
        tenv.execute_sql(kafka_table_ddl("s", FLEET["summaries"], cloud, ends=ends,
                                         group=f"bench-jvm-{name}"))  # fmt: skip
        with tenv.execute_sql(sql).collect() as rows:
            records, errors, first, last = list(rows)[-1]
        span_s = (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds()
        out["records"] = int(records)
        out[f"{name}_per_s"] = round(rate(int(records), max(span_s, 0.001)))
        if name.startswith("decode"):
            out["decode_errors"] = max(out.get("decode_errors", 0), int(errors))
    out["decode_vs_job"] = round(out["decode_per_s"] / max(job_per_s, 1), 1)
    out["job_vs_read"] = round(job_per_s / max(out["read_per_s"], 1), 2)
    return out


def _lag_phase(params, topo, cloud, registry, phases, start_job, config_cls) -> dict[str, Any]:
    from confluent_kafka import Producer

    from edgestream.core.broker import producer_config
    from edgestream.core.serde import AvroSerializer, subject_for
    from edgestream.testing.fleet_records import fleet_summaries

    phases.start("fleet job, unbounded: waiting for it to run")
    size = int(params.lag_window_s * 1000)
    topo = _topology(size, prefix="lag")
    summaries_topic = topo.forwarding.topics.summaries
    job = start_job(config_cls(topo, cloud, registry, name="bench-lag"))
    client = job.get_job_client()
    _wait_running(client, params.timeout)
    ser = AvroSerializer(registry, "WindowSummary", subject_for(summaries_topic))
    producer = Producer(producer_config(cloud, **{"linger.ms": 0}))
    sent: dict[int, float] = {}  # window_start -> produce time of its first summary
    first_row: dict[int, float] = {}
    stop = threading.Event()
    consumer, reader = _row_reader(cloud, topo.cloud.stats_topic, first_row, stop)
    try:
        phases.start(f"fleet job, unbounded: {params.lag_windows} windows of {size} ms")
        base = (int(time.time() * 1000) // size) * size
        warm_until: float | None = None  # windows sent before the first row are warm-up
        measured: list[int] = []
        w = 0
        while len(measured) <= params.lag_windows:
            ws = base + w * size
            time.sleep(max(0.0, (ws + size) / 1000 - time.time()))
            batch = fleet_summaries(
                min(params.devices, 50), 1, params.seed + w, start_ms=ws, window_ms=size,
                seq_base=w * 100_000,
            )  # fmt: skip
            sent[ws] = time.time()
            for r in batch:
                producer.produce(summaries_topic, ser(r), r["scope_key"].encode())
            producer.flush(10)
            if warm_until is None and first_row:
                warm_until = sent[ws]
            if warm_until is not None:
                measured.append(ws)
            elif time.time() - sent[base] > params.timeout:
                raise BenchError("the unbounded fleet job wrote no row in time")
            w += 1
        until = time.time() + 60
        while time.time() < until and not all(ws in first_row for ws in measured[:-1]):
            time.sleep(0.5)
    finally:
        stop.set()
        reader.join(5)
        consumer.close()
        with contextlib.suppress(Exception):  # the job is already gone
            client.cancel().result()
    # a window's lag: its first fleet row after the first summary of the next window was sent
    lags = [(first_row[ws] - sent[ws + size]) * 1000 for ws in measured
            if ws in first_row and ws + size in sent]  # fmt: skip
    phases.done(f"{len(lags)} windows, lag p50 {_percentiles(lags)['p50']} ms")
    return _percentiles(lags)


def _wait_running(client: Any, timeout: float) -> None:
    """Until the Flink job runs (and its sources had time to be assigned)."""
    deadline = time.time() + timeout
    while client.get_job_status().result().name != "RUNNING":
        if time.time() > deadline:
            raise BenchError("the unbounded fleet job did not reach RUNNING")
        time.sleep(0.5)
    time.sleep(5.0)  # sources assigned, Python function opened


def _row_reader(
    cloud: str, topic: str, first_row: dict[int, float], stop: threading.Event
) -> tuple[Any, threading.Thread]:
    """A consumer of the job's rows and the thread that notes, per window start, when its
    first fleet row arrived (until ``stop``); the caller closes the consumer."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": cloud, "group.id": "bench-lag", "log_level": 2})
    consumer.assign([TopicPartition(topic, 0, 0)])

    def read_rows() -> None:
        while not stop.is_set():
            for m in consumer.consume(500, timeout=0.2):
                if m.error() is None:
                    row = json.loads(m.value())
                    if row["scope"] == "fleet":
                        first_row.setdefault(row["window_start"], m.timestamp()[1] / 1000)

    reader = threading.Thread(target=read_rows, daemon=True)
    reader.start()
    return consumer, reader
