"""``edgestream bench edge``: the gateway's throughput against raw consumers, in one run.

On a fresh embedded stack (one gateway broker, the registry) the simulator writes the same
pump readings twice: as ``SensorReading`` messages to ``sensors.pump`` and as ``SensorFrame``
messages of K readings to ``sensors.pump.frames``. Each topic starts with one *primer*
reading an hour earlier than the rest, so the first batch already closes windows: the first
summary marks the end of the worker's first batch. Then, one after the other:

1. raw baselines: a confluent-kafka consumer (and an aiokafka ``getmany`` consumer) reading
   the topic and decoding every record with :meth:`AvroDeserializer.decode_many`;
2. the same :class:`TopicPipeline` in process (:mod:`edgestream.bench.stages`): the exact
   number of summaries the input closes, and seconds per stage;
3. model stats: features and ONNX scoring rows/s, latency per call at batch 1024;
4. the real gateway worker (``edgestream edge run`` as a subprocess, fresh state) per
   topic, until ``edge.summaries`` holds every expected summary (read by fetching, never
   from ListOffsets end offsets); throughput over the span first to last output and over
   the wall time from the worker's start; its CPU seconds (main thread = Faust's event loop,
   other threads = the pipeline executor) and peak RSS; the broker's RSS apart.

Everything it starts (stack, workers) is stopped on return, error or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from edgestream.bench.common import (
    BenchError,
    Phases,
    ProcMonitor,
    TopicReader,
    cpu_seconds,
    machine_info,
    rate,
    ratio,
    thread_cpu_seconds,
)
from edgestream.bench.stages import model_stats, run_pipeline
from edgestream.core.broker import ensure_topics, producer_config
from edgestream.core.serde import AvroDeserializer, AvroSerializer, subject_for
from edgestream.core.stack import Stack
from edgestream.core.topology import Topology, load_topology
from edgestream.edge.worker import SUMMARIES_TOPIC, edge_topics
from edgestream.ml.artifact import shipped_model_path
from edgestream.sim import simulate

READINGS_TOPIC = "sensors.pump"
FRAMES_TOPIC = "sensors.pump.frames"
PRIMER_DEVICE = "bench-primer"
PRIMER_VALUES = {"vibration_rms": 3.0, "bearing_temp": 50.0, "pressure": 5.0, "motor_current": 30.0}
CHANNELS = {
    "vibration_rms": {"unit": "mm/s", "min": 0, "max": 50},
    "bearing_temp": {"unit": "degC", "min": -30, "max": 150},
    "pressure": {"unit": "bar", "min": 0, "max": 16},
    "motor_current": {"unit": "A", "min": 0, "max": 100},
}
SITES = 3


@dataclass(frozen=True)
class EdgeBenchParams:
    """Sizes and switches of one ``bench edge`` run (defaults: the documented run).

    >>> EdgeBenchParams(readings=1000, devices=10, rate=10.0).duration_s
    10.0
    >>> EdgeBenchParams(frames=0)
    Traceback (most recent call last):
    ...
    edgestream.bench.common.BenchError: --frames must be >= 2 (readings per SensorFrame)
    """

    readings: int = 100_000  # per input: single readings, and the same again in frames
    frames: int = 50  # readings per SensorFrame
    devices: int = 50
    rate: float = 10.0  # Hz per device: event time spans readings / (devices * rate) s
    batch: int = 256  # the model's micro-batch: the agent's take size (default topology)
    sync: bool = True  # fsync every state commit, as the worker does by default
    aiokafka: bool = True
    seed: int = 7
    timeout: float = 300.0  # per gateway run
    profile_dir: Path | None = None  # run the workers under cProfile (all threads)
    workdir: Path | None = None  # kept when given; a temp dir removed afterwards otherwise

    def __post_init__(self) -> None:
        checks = [
            (self.readings >= self.devices, "--readings must be >= --devices"),
            (self.frames >= 2, "--frames must be >= 2 (readings per SensorFrame)"),
            (self.devices >= 1, "--devices must be >= 1"),
            (0 < self.rate <= 1000, "--rate must be in (0, 1000] Hz"),
            (self.batch >= 1, "--batch must be >= 1"),
            (self.timeout > 0, "--timeout must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise BenchError(message)

    @property
    def duration_s(self) -> float:
        return self.readings / (self.devices * self.rate)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("profile_dir", "workdir"):
            out[key] = None if out[key] is None else str(out[key])
        return {**out, "duration_s": round(self.duration_s, 3)}


def bench_topology(gateway_id: str, topic: str, schema: str, batch: int) -> dict[str, Any]:
    """One gateway, one 1-partition pump topic; model, windows and rules of the default
    topology (``topologies/default.yaml``)."""
    return {
        "name": f"bench-{gateway_id}",
        "version": "1",
        "gateways": [
            {
                "id": gateway_id,
                "sites": [f"site-{i}" for i in range(1, SITES + 1)],
                "device_types": ["pump"],
            }
        ],
        "sensors": {
            "validation": {"max_clock_skew": "5m", "max_payload_bytes": "64KB"},
            "topics": [
                {
                    "name": topic,
                    "device_type": "pump",
                    "schema": schema,
                    "partitions": 1,
                    "channels": CHANNELS,
                }
            ],
        },
        "features": {"pump": list(CHANNELS)},
        "models": {
            "pump": {
                "name": "pump-ae",
                "path": str(shipped_model_path("pump")),
                "version": "v1",
                "batch": {"size": batch, "max_wait": "20ms"},
            }
        },
        "windows": [
            {"size": "10s", "allowed_lateness": "5s", "max_out_of_orderness": "2s"},
            {"size": "1m", "allowed_lateness": "10s", "max_out_of_orderness": "2s"},
        ],
        "anomaly": {"rules": [{"name": "pump-anomaly", "device_types": ["pump"]}]},
    }


@dataclass
class _Input:
    name: str  # "readings" | "frames"
    gateway: str
    topic: str
    schema: str
    topology_path: Path
    topology: Topology | None = None
    messages: int = 0
    readings: int = 0


def run_edge_bench(params: EdgeBenchParams, phases: Phases | None = None) -> dict[str, Any]:
    """Run the benchmark; returns the result (the ``--json`` object). See the module doc."""
    phases = phases or Phases(quiet=True)
    work = params.workdir or Path(tempfile.mkdtemp(prefix="edgestream-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    if params.profile_dir:
        params.profile_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "bench": "edge",
        "params": params.as_dict(),
        "machine": machine_info(),
    }
    inputs = [
        _Input("readings", "bench-readings", READINGS_TOPIC, "SensorReading", work / "r.yaml"),
        _Input("frames", "bench-frames", FRAMES_TOPIC, "SensorFrame", work / "f.yaml"),
    ]
    stack = Stack(work / "stack")
    started = time.monotonic()
    try:
        with ProcMonitor() as monitor:
            phases.start("starting the embedded stack (1 gateway broker, registry)")
            status = stack.start(gateways=1)
            bootstrap = str(status.endpoints()["edge"]["gw-1"])  # type: ignore[index]
            registry = str(status.endpoints()["registry"])
            broker_pid = status.components["gw-1"].pid
            if broker_pid:
                monitor.watch("broker", broker_pid)
            phases.done(bootstrap)
            for inp in inputs:
                topo = bench_topology(inp.gateway, inp.topic, inp.schema, params.batch)
                inp.topology_path.write_text(yaml.safe_dump(topo, sort_keys=False))
                inp.topology = load_topology(inp.topology_path)
                ensure_topics(bootstrap, edge_topics(inp.topology, inp.gateway))
            result["input"] = _produce(params, inputs, bootstrap, registry, phases)
            result["raw"], values = _raw_baselines(params, inputs, bootstrap, registry, phases)
            result["pipeline"], features_input = _reference(params, inputs, values, registry, work)
            del values
            phases.start("model: features and ONNX scoring at batch 1024")
            result["model"] = model_stats(*features_input)
            phases.done(f"{result['model']['score_rows_per_s']:,} rows/s")
            gateway: dict[str, Any] = {}
            start_offset = 0
            for inp in inputs:
                run = _gateway_run(
                    params, inp, result["pipeline"][inp.name], bootstrap, registry, work,
                    start_offset, monitor, phases,
                )  # fmt: skip
                gateway[inp.name] = run
                start_offset = run.pop("next_offset")
            result["gateway"] = gateway
            monitor.unwatch("broker")
            result["resources"] = {
                "worker_peak_rss_mb": max(g["peak_rss_mb"] or 0 for g in gateway.values()),
                "worker_cpu_s": round(sum(g["cpu_s"] for g in gateway.values()), 2),
                "broker_rss_mb": monitor.last_mb("broker"),
                "broker_peak_rss_mb": monitor.peak_mb("broker"),
            }
    finally:
        phases.start("stopping the embedded stack")
        stack.stop()
        phases.done()
        if params.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    result["ratios"] = _ratios(result)
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def _produce(
    params: EdgeBenchParams, inputs: list[_Input], bootstrap: str, registry: str, phases: Phases
) -> dict[str, Any]:
    """Primer + simulator run per input topic (same seed, same readings)."""
    start = (int(time.time() - params.duration_s) - 120) * 1000  # all in the past
    out: dict[str, Any] = {"start_time": start}
    for inp in inputs:
        frames = params.frames if inp.name == "frames" else 1
        _produce_primer(bootstrap, registry, inp.topic, inp.schema, start - 3_600_000)
        phases.start(f"simulator -> {inp.topic}", total=params.readings)
        sim = simulate(
            bootstrap=bootstrap,
            registry=registry,
            devices=params.devices,
            rate=params.rate,
            duration=params.duration_s,
            seed=params.seed,
            sites=SITES,
            device_types=("pump",),
            start_time=start,
            frames=frames,
            topic=inp.topic,
            labels=None,
            fast=True,
            on_progress=lambda p: phases.update(p.readings, f"{p.readings:,} readings"),
        )
        inp.messages, inp.readings = sim.messages + 1, sim.readings + 1
        phases.done(f"{sim.readings:,} readings in {sim.messages:,} messages")
        out[inp.name] = {
            "topic": inp.topic,
            "messages": inp.messages,
            "readings": inp.readings,
            "bytes": sim.bytes,
            "produce_s": round(sim.seconds, 3),
            "anomalous_readings": sim.anomalous_readings,
        }
    return out


def _produce_primer(bootstrap: str, registry: str, topic: str, schema: str, ts: int) -> None:
    from confluent_kafka import Producer

    head = {"device_id": PRIMER_DEVICE, "site": "site-1", "device_type": "pump", "tags": {}}
    if schema == "SensorFrame":
        channels: dict[str, Any] = {k: [v] for k, v in PRIMER_VALUES.items()}
        record = {**head, "first_seq": 0, "ts": [ts], "channels": channels}
    else:
        record = {**head, "ts": ts, "seq": 0, "channels": dict(PRIMER_VALUES)}
    ser = AvroSerializer(registry, schema, subject_for(topic))
    producer = Producer(producer_config(bootstrap))
    producer.produce(topic, ser(record), PRIMER_DEVICE.encode())
    if producer.flush(15):
        raise BenchError(f"the broker at {bootstrap} did not take the primer record")


def _raw_baselines(
    params: EdgeBenchParams, inputs: list[_Input], bootstrap: str, registry: str, phases: Phases
) -> tuple[dict[str, Any], dict[str, list[bytes]]]:
    out: dict[str, Any] = {}
    values: dict[str, list[bytes]] = {}
    for inp in inputs:
        phases.start(f"raw confluent-kafka consumer + decode_many: {inp.topic}", inp.messages)
        out[f"confluent_{inp.name}"], values[inp.name] = _confluent(bootstrap, registry, inp, phases)
        phases.done(f"{out[f'confluent_{inp.name}']['readings_per_s']:,} readings/s")
        if params.aiokafka and inp.name == "readings":
            phases.start(f"raw aiokafka getmany + decode_many: {inp.topic}", inp.messages)
            out["aiokafka_readings"] = asyncio.run(_aiokafka(bootstrap, registry, inp, phases))
            phases.done(f"{out['aiokafka_readings']['readings_per_s']:,} readings/s")
    return out, values


def _baseline(messages: int, readings: int, seconds: float) -> dict[str, Any]:
    return {
        "messages": messages,
        "readings": readings,
        "seconds": round(seconds, 3),
        "messages_per_s": round(rate(messages, seconds)),
        "readings_per_s": round(rate(readings, seconds)),
    }


def _count(records: list[Any], frames: bool) -> int:
    if not frames:
        return len(records)
    return sum(len(r["ts"]) if isinstance(r, dict) else 0 for r in records)


def _confluent(
    bootstrap: str, registry: str, inp: _Input, phases: Phases
) -> tuple[dict[str, Any], list[bytes]]:
    decode = AvroDeserializer(registry)
    frames = inp.schema == "SensorFrame"
    values: list[bytes] = []
    readings = 0
    deadline = time.monotonic() + 120
    with TopicReader(bootstrap, inp.topic) as reader:
        start = time.perf_counter()
        while len(values) < inp.messages:
            batch = [m.value() for m in reader.poll(0.2)]
            readings += _count(decode.decode_many(batch), frames)
            values += batch
            phases.update(len(values), f"{len(values):,} messages")
            if time.monotonic() > deadline:
                raise BenchError(f"{inp.topic}: fetched {len(values)} of {inp.messages} in 120 s")
        seconds = time.perf_counter() - start
    return _baseline(len(values), readings, seconds), values


async def _aiokafka(bootstrap: str, registry: str, inp: _Input, phases: Phases) -> dict[str, Any]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    decode = AvroDeserializer(registry)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(inp.topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, 0)
        got = 0
        deadline = time.monotonic() + 120
        start = time.perf_counter()
        while got < inp.messages:
            for messages in (await consumer.getmany(timeout_ms=200, max_records=10_000)).values():
                decode.decode_many([m.value for m in messages])  # type: ignore[misc]
                got += len(messages)
            phases.update(got, f"{got:,} messages")
            if time.monotonic() > deadline:
                raise BenchError(f"{inp.topic}: aiokafka got {got} of {inp.messages} in 120 s")
        seconds = time.perf_counter() - start
    finally:
        await consumer.stop()
    return _baseline(got, got, seconds)


def _reference(
    params: EdgeBenchParams,
    inputs: list[_Input],
    values: dict[str, list[bytes]],
    registry: str,
    work: Path,
) -> tuple[dict[str, Any], tuple[Any, Any, Any]]:
    out: dict[str, Any] = {}
    features_input: tuple[Any, Any, Any] = ([], None, None)
    for inp in inputs:
        assert inp.topology is not None
        topic = inp.topology.sensors.topics[0]
        run = run_pipeline(
            inp.topology, inp.gateway, topic, registry, values[inp.name], params.batch,
            work / f"reference-{inp.name}", sync=params.sync,
        )  # fmt: skip
        out[inp.name] = {**run.as_dict(), "first_output_readings": run.first_output_readings}
        if inp.name == "readings":
            features_input = run.features_input
    return out, features_input


def _worker_argv(inp: _Input, bootstrap: str, registry: str, data: Path, prof: Path | None) -> list:
    head = [sys.executable, "-m"]
    head += ["edgestream.bench.profiling", str(prof)] if prof else ["edgestream.cli.main"]
    return [
        *head,
        *("edge", "run", str(inp.topology_path), "--gateway", inp.gateway),
        *("--bootstrap", bootstrap, "--registry", registry, "--data-dir", str(data)),
    ]


def _gateway_run(
    params: EdgeBenchParams,
    inp: _Input,
    reference: dict[str, Any],
    bootstrap: str,
    registry: str,
    work: Path,
    start_offset: int,
    monitor: ProcMonitor,
    phases: Phases,
) -> dict[str, Any]:
    """Start a fresh worker on ``inp``; wait for every expected summary; stop it."""
    expected = reference["summaries"]
    prof = params.profile_dir / f"worker-{inp.name}.prof" if params.profile_dir else None
    argv = _worker_argv(inp, bootstrap, registry, work / f"gw-{inp.name}", prof)
    if not params.sync:
        argv.append("--no-sync")
    log_path = work / f"worker-{inp.name}.log"
    phases.start(f"gateway worker on {inp.topic} ({inp.name})", total=expected)
    name = f"worker-{inp.name}"
    got = extra = 0
    first_ts = last_ts = None
    next_offset = start_offset
    cpu_first: dict[str, float] | None = None
    with TopicReader(bootstrap, SUMMARIES_TOPIC, {0: start_offset}) as reader:
        t_start = time.time()
        with log_path.open("ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            monitor.watch(name, proc.pid)
            deadline = time.monotonic() + params.timeout
            settle_until = None
            while settle_until is None or time.monotonic() < settle_until:
                for msg in reader.poll(0.25):
                    if got >= expected:
                        extra += 1
                    got += 1
                    ts = msg.timestamp()[1]
                    first_ts = ts if first_ts is None else min(first_ts, ts)
                    last_ts = ts if last_ts is None else max(last_ts, ts)
                    next_offset = max(next_offset, msg.offset() + 1)
                if got and cpu_first is None:
                    cpu_first = thread_cpu_seconds(proc.pid)
                phases.update(got, f"{got:,}/{expected:,} summaries")
                if settle_until is None and got >= expected:
                    cpu_end = thread_cpu_seconds(proc.pid)
                    cpu_total = cpu_seconds(proc.pid) or 0.0
                    settle_until = time.monotonic() + 1.0  # anything beyond is a duplicate
                if proc.poll() is not None:
                    raise BenchError(
                        f"the gateway worker exited with {proc.returncode} after {got} of "
                        f"{expected} summaries: {_tail(log_path)} (log: {log_path})"
                    )
                if settle_until is None and time.monotonic() > deadline:
                    raise BenchError(
                        f"the gateway worker gave {got} of {expected} summaries in "
                        f"{params.timeout:.0f} s (log: {log_path}); raise --timeout"
                    )
            monitor.unwatch(name)
        finally:
            exit_code = _stop(proc)
    assert first_ts is not None and last_ts is not None and cpu_first is not None
    span_s = (last_ts - first_ts) / 1000
    wall_s = last_ts / 1000 - t_start
    span_readings = reference["readings"] - reference["first_output_readings"]
    rps = rate(span_readings, span_s)
    first_s = first_ts / 1000 - t_start
    cpu_span = (cpu_end["main"] + cpu_end["other"]) - (cpu_first["main"] + cpu_first["other"])
    out = {
        "expected_summaries": expected,
        "summaries": got - extra,
        "extra_summaries": extra,
        "readings": reference["readings"],
        "span_readings": span_readings,
        "span_s": round(span_s, 3),
        "readings_per_s": round(rps),
        "wall_s": round(wall_s, 3),
        "wall_readings_per_s": round(rate(reference["readings"], wall_s)),
        "first_output_s": round(first_s, 3),
        "startup_s_est": round(first_s - rate(reference["first_output_readings"], rps), 3),
        "cpu_s": round(cpu_total, 2),
        "cpu_main_s": round(cpu_end["main"], 2),
        "cpu_other_s": round(cpu_end["other"], 2),
        "cpu_span_s": round(cpu_span, 2),
        "cpu_span_main_s": round(cpu_end["main"] - cpu_first["main"], 2),
        "cpu_us_per_reading": round(cpu_span / span_readings * 1e6, 2) if span_readings else None,
        "peak_rss_mb": monitor.peak_mb(name),
        "exit_code": exit_code,
        "next_offset": next_offset,
    }
    if prof is not None:
        out["profile"] = _profile_summary(prof)
    phases.done(f"{out['readings_per_s']:,} readings/s over the span, {got:,} summaries")
    return out


def _stop(proc: subprocess.Popen) -> int:
    """SIGTERM (Faust's graceful stop), then SIGKILL; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait(10)


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return " | ".join(text[-lines:])[-600:] or "no output"


def _profile_summary(prof: Path) -> dict[str, Any]:
    from edgestream.bench.profiling import top_functions, total_seconds

    out: dict[str, Any] = {"file": str(prof)}
    for key, path in (("main", prof), ("threads", Path(f"{prof}.threads"))):
        if path.exists():
            out[f"{key}_total_own_s"] = round(total_seconds(path), 2)
            out[f"{key}_top"] = top_functions(path, 12)
    return out


def _ratios(result: dict[str, Any]) -> dict[str, Any]:
    """Every ratio from numbers of this one run."""
    gw, raw, pipe = result.get("gateway"), result.get("raw"), result.get("pipeline")
    if not gw or not raw or not pipe:
        return {}
    r, f = gw["readings"], gw["frames"]
    aio = raw.get("aiokafka_readings", {}).get("readings_per_s", 0)
    return {
        "gateway_vs_confluent": ratio(
            r["readings_per_s"], raw["confluent_readings"]["readings_per_s"]
        ),
        "gateway_vs_aiokafka": ratio(r["readings_per_s"], aio),
        "gateway_vs_pipeline": ratio(r["readings_per_s"], pipe["readings"]["readings_per_s"]),
        "frames_gateway_vs_confluent": ratio(
            f["readings_per_s"], raw["confluent_frames"]["readings_per_s"]
        ),
        "frames_gateway_vs_pipeline": ratio(f["readings_per_s"], pipe["frames"]["readings_per_s"]),
        "frames_speedup": ratio(f["readings_per_s"], r["readings_per_s"]),
        "frames_wall_speedup": ratio(f["wall_readings_per_s"], r["wall_readings_per_s"]),
        "frames_cpu_per_reading_gain": ratio(
            r["cpu_us_per_reading"] or 0, f["cpu_us_per_reading"] or 0
        ),
    }


def _n(x: Any, unit: str = "") -> str:
    return "-" if x is None else f"{x:,}{unit}"


def edge_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Rows of the human table (see :func:`edgestream.bench.common.result_table`)."""
    raw, pipe, gw, model = result["raw"], result["pipeline"], result["gateway"], result["model"]
    res, k = result["resources"], result["params"]["frames"]
    rows = [("raw consumers (decode every record)", "", "")]
    rows.append(("confluent-kafka, readings", _n(raw["confluent_readings"]["readings_per_s"]), ""))
    if "aiokafka_readings" in raw:
        rows.append(("aiokafka getmany, readings", _n(raw["aiokafka_readings"]["readings_per_s"]), ""))
    rows.append(("confluent-kafka, frames", _n(raw["confluent_frames"]["readings_per_s"]), f"K={k}"))
    rows.append(("pipeline in process (no Faust/Kafka)", "", ""))
    for name in ("readings", "frames"):
        shares = sorted(pipe[name]["stage_share"].items(), key=lambda kv: -kv[1])[:3]
        note = ", ".join(f"{stage} {share:.0%}" for stage, share in shares)
        rows.append((name, _n(pipe[name]["readings_per_s"]), note))
    rows.append(("gateway worker (Faust subprocess)", "", ""))
    for name in ("readings", "frames"):
        g = gw[name]
        done = f"{g['summaries']:,}/{g['expected_summaries']:,} summaries"
        rows.append((f"{name}: first->last output", _n(g["readings_per_s"]), f"{g['span_s']} s, {done}"))
        start = f"{g['wall_s']} s, start-up ~{g['startup_s_est']} s"
        rows.append((f"{name}: wall incl. start-up", _n(g["wall_readings_per_s"]), start))
        cpu = f"us/reading; main thread {g['cpu_span_main_s']} of {g['cpu_span_s']} CPU s"
        rows.append((f"{name}: worker CPU", _n(g["cpu_us_per_reading"]), cpu))
    rows.append(("ratios (same run)", "", ""))
    rows += [(key, _n(value, "x"), "") for key, value in result["ratios"].items()]
    rows.append(("model (shipped pump AE)", "", ""))
    lat = f"rows/s; p50 {model.get('score_p50_ms')} ms, p99 {model.get('score_p99_ms')} ms/call"
    rows.append(("ONNX scoring, batch 1024", _n(model.get("score_rows_per_s")), lat))
    rows.append(("features", _n(model.get("features_rows_per_s")), "rows/s"))
    rows.append(("resources", "", ""))
    cpu = f"CPU {res['worker_cpu_s']} s (both runs)"
    rows.append(("worker peak RSS", _n(res["worker_peak_rss_mb"], " MB"), cpu))
    peak = f"peak {res['broker_peak_rss_mb']} MB"
    rows.append(("broker RSS (Tansu, apart)", _n(res["broker_rss_mb"], " MB"), peak))
    return rows


__all__ = ["EdgeBenchParams", "bench_topology", "edge_rows", "run_edge_bench"]
