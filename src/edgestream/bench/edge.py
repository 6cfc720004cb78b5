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
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from edgestream.bench.common import Phases, ProcMonitor, machine_info, rate, ratio
from edgestream.bench.edge_input import (
    LIVE_TOPIC,
    BenchInput,
    EdgeBenchParams,
    bench_inputs,
    produce_inputs,
    write_topology,
)
from edgestream.bench.raw import RawTopic, aiokafka_baseline, confluent_baseline
from edgestream.bench.stages import model_stats, run_pipeline
from edgestream.bench.sustained import (
    LoadPlan,
    LoadWorker,
    pin_cpu,
    run_sustained,
)
from edgestream.bench.worker import WorkerRun, edge_worker_argv, run_until_outputs
from edgestream.core.stack import Stack
from edgestream.edge.reader import MAX_BATCH_READINGS
from edgestream.wire.topics import SUMMARIES_TOPIC


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
    inputs = bench_inputs(work)
    stack = Stack(work / "stack")
    started = time.monotonic()
    try:
        with ProcMonitor() as monitor:
            endpoints = _start_stack(stack, monitor, phases)
            _in_process(params, inputs, endpoints, work, phases, result)
            rss = _gateway_runs(params, inputs, endpoints, work, monitor, phases, result)
            monitor.unwatch("broker")
            result["resources"] = {
                "worker_peak_rss_mb": max(v or 0 for v in rss.values()),
                "worker_peak_rss_mb_by_mode": rss,
                "worker_cpu_s": round(sum(g["cpu_s"] for g in result["gateway"].values()), 2),
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


def _start_stack(stack: Stack, monitor: ProcMonitor, phases: Phases) -> tuple[str, str]:
    """The embedded stack up, its broker watched; (bootstrap, registry)."""
    phases.start("starting the embedded stack (1 gateway broker, registry)")
    status = stack.start(gateways=1)
    bootstrap = str(status.endpoints()["edge"]["gw-1"])  # type: ignore[index]
    registry = str(status.endpoints()["registry"])
    broker_pid = status.components["gw-1"].pid
    if broker_pid:
        monitor.watch("broker", broker_pid)
    phases.done(bootstrap)
    return bootstrap, registry


def _in_process(
    params: EdgeBenchParams,
    inputs: list[BenchInput],
    endpoints: tuple[str, str],
    work: Path,
    phases: Phases,
    result: dict[str, Any],
) -> None:
    """Topologies and input written, then what runs without a worker: the raw baselines,
    the in-process pipeline and the model's stats (into ``result``)."""
    bootstrap, registry = endpoints
    for inp in inputs:
        inp.topology = write_topology(
            params, inp.topology_path, inp.gateway, inp.topic, inp.schema, bootstrap
        )
    result["input"] = produce_inputs(params, inputs, bootstrap, registry, phases)
    result["raw"], values = _raw_baselines(params, inputs, bootstrap, registry, phases)
    result["pipeline"], features_input = _reference(params, inputs, values, registry, work)
    del values
    phases.start("model: features and ONNX scoring at batch 1024")
    result["model"] = model_stats(*features_input)
    phases.done(f"{result['model']['score_rows_per_s']:,} rows/s")


def _gateway_runs(
    params: EdgeBenchParams,
    inputs: list[BenchInput],
    endpoints: tuple[str, str],
    work: Path,
    monitor: ProcMonitor,
    phases: Phases,
    result: dict[str, Any],
) -> dict[str, float | None]:
    """The gateway worker per input, then pinned and sustained (into ``result``); the
    worker's peak RSS per mode."""
    gateway: dict[str, Any] = {}
    offset = 0
    for inp in inputs:
        reference = result["pipeline"][inp.name]
        gateway[inp.name], offset = _gateway_run(
            params, inp, reference, endpoints, work, offset, monitor, phases
        )
    result["gateway"] = gateway
    rss = {name: g["peak_rss_mb"] for name, g in gateway.items()}
    if params.pinned:
        raw_pinned = _raw_pinned(inputs[0], endpoints, phases)
        pinned_run, offset = _gateway_run(
            params, inputs[0], result["pipeline"]["readings"], endpoints, work, offset,
            monitor, phases, cpu=pin_cpu(),
        )  # fmt: skip
        result["pinned"] = {
            "cpu": pin_cpu(),
            "confluent_readings": raw_pinned,
            "gateway_readings": pinned_run,
            "gateway_vs_confluent": ratio(
                pinned_run["readings_per_s"], raw_pinned["readings_per_s"]
            ),
        }
        rss["pinned_readings"] = pinned_run["peak_rss_mb"]
    if params.sustained:  # after every run counting edge.summaries from an offset
        result["sustained"] = _sustained(params, endpoints, work, None, monitor, phases)
        rss["sustained"] = result["sustained"]["peak_rss_mb"]
        if params.pinned:
            sus = _sustained(params, endpoints, work, pin_cpu(), monitor, phases)
            result["pinned"]["sustained"] = sus
            rss["pinned_sustained"] = sus["peak_rss_mb"]
    return rss


def _raw_baselines(
    params: EdgeBenchParams, inputs: list[BenchInput], bootstrap: str, registry: str, phases: Phases
) -> tuple[dict[str, Any], dict[str, list[bytes]]]:
    out: dict[str, Any] = {}
    values: dict[str, list[bytes]] = {}
    for inp in inputs:
        frames = inp.schema == "SensorFrame"
        src = RawTopic(bootstrap, registry, inp.topic, inp.messages, frames)
        phases.start(f"raw confluent-kafka consumer + decode_many: {inp.topic}", inp.messages)
        key = f"confluent_{inp.name}"
        out[key], values[inp.name] = confluent_baseline(src, phases.update)
        phases.done(f"{out[key]['readings_per_s']:,} readings/s")
        if params.aiokafka and not frames:
            phases.start(f"raw aiokafka getmany + decode_many: {inp.topic}", inp.messages)
            out[f"aiokafka_{inp.name}"] = asyncio.run(aiokafka_baseline(src, phases.update))
            phases.done(f"{out[f'aiokafka_{inp.name}']['readings_per_s']:,} readings/s")
    return out, values


def _reference(
    params: EdgeBenchParams,
    inputs: list[BenchInput],
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
            inp.topology,
            inp.gateway,
            topic,
            registry,
            values[inp.name],
            batch=params.batch
            if inp.schema == "SensorFrame"
            else max(params.batch, MAX_BATCH_READINGS),
            state_dir=work / f"reference-{inp.name}",
            sync=params.sync,
        )
        out[inp.name] = run.as_dict()
        if inp.name == "readings":
            features_input = run.features_input
    return out, features_input


def _gateway_run(
    params: EdgeBenchParams,
    inp: BenchInput,
    reference: dict[str, Any],
    endpoints: tuple[str, str],
    work: Path,
    start_offset: int,
    monitor: ProcMonitor,
    phases: Phases,
    cpu: int | None = None,
) -> tuple[dict[str, Any], int]:
    """A fresh worker on ``inp`` (pinned to ``cpu`` if given) until every expected summary is
    out; its numbers and the summaries topic's next offset."""
    expected = reference["summaries"]
    bootstrap, registry = endpoints
    prof = params.profile_dir / f"worker-{inp.name}.prof" if params.profile_dir else None
    run_name = inp.name if cpu is None else f"{inp.name}-pinned"
    data = work / f"gw-{run_name}"
    argv = edge_worker_argv(
        inp.topology_path, inp.gateway, bootstrap, registry, data, params.sync, prof
    )
    phases.start(f"gateway worker on {inp.topic} ({run_name})", total=expected)
    run = run_until_outputs(
        argv,
        work / f"{run_name}.log",
        bootstrap,
        SUMMARIES_TOPIC,
        expected,
        {0: start_offset},
        monitor,
        params.timeout,
        on_progress=lambda n: phases.update(n, f"{n:,}/{expected:,} summaries"),
        cpu=cpu,
    )
    out = _run_numbers(run, reference)
    if prof is not None:
        out["profile"] = _profile_summary(prof)
    phases.done(f"{out['readings_per_s']:,} readings/s over the span, {run.outputs:,} summaries")
    return out, run.next_offset.get(0, start_offset)


def _run_numbers(run: WorkerRun, reference: dict[str, Any]) -> dict[str, Any]:
    """Throughput, CPU and memory of one gateway run against its in-process reference."""
    expected = reference["summaries"]
    assert run.first_output is not None and run.last_output is not None
    span_s = run.last_output - run.first_output
    wall_s = run.last_output - run.started
    first_s = run.first_output - run.started
    span_readings = reference["readings"] - reference["first_output_readings"]
    rps = rate(span_readings, span_s)
    first, last = run.cpu_at_first, run.cpu_at_last
    cpu_span = last["main"] + last["other"] - first["main"] - first["other"]
    return {
        "expected_summaries": expected,
        "summaries": run.outputs,
        "extra_summaries": run.extra,
        "readings": reference["readings"],
        "span_readings": span_readings,
        "span_s": round(span_s, 3),
        "readings_per_s": round(rps),
        "wall_s": round(wall_s, 3),
        "wall_readings_per_s": round(rate(reference["readings"], wall_s)),
        "first_output_s": round(first_s, 3),
        "startup_s_est": round(first_s - rate(reference["first_output_readings"], rps), 3),
        "cpu_s": round(run.cpu_total, 2),
        "cpu_main_s": round(last["main"], 2),
        "cpu_other_s": round(last["other"], 2),
        "cpu_span_s": round(cpu_span, 2),
        "cpu_span_main_s": round(last["main"] - first["main"], 2),
        "cpu_us_per_reading": round(cpu_span / span_readings * 1e6, 2) if span_readings else None,
        "runqueue_wait_s": round(run.runqueue_wait_s, 2),
        "peak_rss_mb": run.peak_rss_mb,
        "exit_code": run.exit_code,
    }


def _raw_pinned(inp: BenchInput, endpoints: tuple[str, str], phases: Phases) -> dict[str, Any]:
    """The confluent-kafka baseline with this thread (and the client threads it starts)
    on the pinned CPU."""
    src = RawTopic(*endpoints, inp.topic, inp.messages)
    before = os.sched_getaffinity(0)
    phases.start(f"raw confluent-kafka consumer + decode_many, pinned: {inp.topic}", inp.messages)
    os.sched_setaffinity(0, {pin_cpu()})
    try:
        out, _ = confluent_baseline(src, phases.update)
    finally:
        os.sched_setaffinity(0, before)
    phases.done(f"{out['readings_per_s']:,} readings/s")
    return out


def _sustained(
    params: EdgeBenchParams,
    endpoints: tuple[str, str],
    work: Path,
    cpu: int | None,
    monitor: ProcMonitor,
    phases: Phases,
) -> dict[str, Any]:
    """A live run at ``params.load_rate`` on a topic of its own (see
    :mod:`edgestream.bench.sustained`), the worker pinned to ``cpu`` if given."""
    name = "live" if cpu is None else "live-pinned"
    gateway, topic = f"bench-{name}", f"{LIVE_TOPIC}.{name}"
    path = work / f"{name}.yaml"
    topology = write_topology(params, path, gateway, topic, "SensorReading", endpoints[0])
    data = work / f"gw-{name}"
    argv = edge_worker_argv(path, gateway, *endpoints, data, params.sync)
    waits = {w.size: w.allowed_lateness + w.max_out_of_orderness for w in topology.windows}
    plan = LoadPlan(
        rate=params.load_rate,
        duration=params.load_duration,
        step_duration=params.step_duration,
        max_steps=params.max_steps,
        devices=params.devices,
        seed=params.seed,
    )
    worker = LoadWorker(
        [*argv, "--metrics-port", "0"], data, work / f"{name}.log", topic, waits, cpu
    )
    label = "sustained load" + ("" if cpu is None else f", worker on CPU {cpu}")
    phases.start(label)
    out = run_sustained(plan, worker, endpoints, monitor, lambda text: phases.update(0, text))
    phases.done(
        f"p99 reading->alert {out['p99_reading_to_alert_ms']} ms, lag growth "
        f"{out['lag_growth']}, max rate {out['max_rate']}"
    )
    return out


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


__all__ = ["run_edge_bench"]
