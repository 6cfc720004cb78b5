"""Helpers to run a real gateway worker (a subprocess) against a real embedded broker."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from confluent_kafka import Consumer, TopicPartition

from edgestream.core.broker import consumer_config
from edgestream.core.commands import edge_run, python_argv
from edgestream.core.procs import Child
from edgestream.core.serde import AvroDeserializer
from edgestream.loop.watch import Series
from edgestream.ml.artifact import shipped_model_path
from edgestream.ml.features import FeatureExtractor
from edgestream.sim import simulate
from edgestream.wire.window_types import ReadingBatch

PUMP_CHANNELS = ("vibration_rms", "bearing_temp", "pressure", "motor_current")
GATEWAY = "gw-test"  # the reference's gateway id


def write_topology(path: Path, gateway: str = GATEWAY, **overrides: Any) -> Path:
    """A one-gateway pump topology with 1-partition topics (a deterministic arrival order)."""
    topo: dict[str, Any] = {
        "name": "edge-test",
        "version": "1",
        "gateways": [{"id": gateway, "sites": ["site-1"], "device_types": ["pump"]}],
        "sensors": {
            "validation": {"max_clock_skew": "5m", "max_payload_bytes": "4KB"},
            "topics": [
                {
                    "name": "sensors.pump",
                    "device_type": "pump",
                    "schema": "SensorReading",
                    "partitions": 1,
                    "channels": {
                        "vibration_rms": {"unit": "mm/s", "min": 0, "max": 50},
                        "bearing_temp": {"unit": "degC", "min": -30, "max": 150},
                        "pressure": {"unit": "bar", "min": 0, "max": 16},
                        "motor_current": {"unit": "A", "min": 0, "max": 100},
                    },
                }
            ],
        },
        "features": {"pump": list(PUMP_CHANNELS)},
        "models": {
            "pump": {
                "name": "pump-model",
                "path": str(shipped_model_path("pump")),
                "batch": {"size": 500, "max_wait": "20ms"},
            }
        },
        "windows": [
            {"size": "10s", "allowed_lateness": "2s", "max_out_of_orderness": "1s"},
            {"size": "30s", "hop": "10s", "allowed_lateness": "5s", "max_out_of_orderness": "1s"},
        ],
        "anomaly": {"rules": [{"name": "pump", "consecutive": 2}]},
    }
    topo.update(overrides)
    path.write_text(yaml.safe_dump(topo, sort_keys=False))
    return path


def simulate_pumps(env: dict[str, Any], **changes: Any) -> None:
    """Simulated pump readings into the edge broker of ``env`` (``bootstrap``, ``registry``,
    ``dir``): 6 devices at 10 Hz for 120 s of event time ending 8 min ago, 1 % anomalies, 5 %
    late, labels in ``dir/labels.jsonl``; ``changes`` override any of these."""
    params = dict(
        devices=6,
        rate=10.0,
        duration=120.0,
        seed=11,
        device_types=("pump",),
        sites=2,
        anomaly_rate=0.01,
        late_fraction=0.05,
        start_time=(int(time.time()) - 600) * 1000,
        topic="sensors.pump",
        labels=env["dir"] / "labels.jsonl",
        fast=True,
    )
    params.update(changes)
    simulate(bootstrap=env["bootstrap"], registry=env["registry"], **params)


class Worker(Child):
    """``edgestream edge run`` as a subprocess (so it can be killed with SIGKILL)."""

    def __init__(self, topology: Path, gateway: str, bootstrap: str, registry: str, data: Path):
        argv = python_argv(edge_run(topology, gateway, bootstrap=bootstrap, registry=registry,
                                    data_dir=data))  # fmt: skip
        super().__init__(argv, data.parent / f"{data.name}-worker.log")


def read_topic(bootstrap: str, topic: str, settle: float = 2.0) -> list[Any]:
    """Every message of ``topic`` (all partitions, from offset 0) until ``settle`` s of quiet.

    Fetch-based: never trusts end offsets from ListOffsets (short on some brokers).
    """
    consumer = Consumer(consumer_config(bootstrap, f"read-{time.time_ns()}"))
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return []
        consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
        out: list[Any] = []
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < settle:
            batch = consumer.consume(2000, timeout=0.5)
            for msg in batch:
                if msg.error() is None:
                    out.append(msg)
            if batch:
                quiet_since = time.monotonic()
        return out
    finally:
        consumer.close()


def wait_for(
    bootstrap: str, topic: str, count: int, timeout: float, worker: Worker | None = None
) -> list[Any]:
    """Read ``topic`` until it holds at least ``count`` messages (or time runs out)."""
    deadline = time.monotonic() + timeout
    got: list[Any] = []
    while time.monotonic() < deadline:
        got = read_topic(bootstrap, topic, settle=1.0)
        if len(got) >= count:
            return got
        if worker is not None and not worker.alive():
            raise AssertionError(f"worker died:\n{worker.log_text()[-3000:]}")
        time.sleep(1.0)
    return got


def metrics_page(data: Path) -> tuple[int | None, Series | None]:
    """(port, parsed ``/metrics`` page) of the worker whose data dir is ``data`` (port from
    ``<data>/edge.metrics-port``); the page is None until the worker answers."""
    from edgestream.core.metrics import read_port
    from edgestream.loop.watch import scrape

    port = read_port(data, "edge")
    return port, (scrape(f"http://127.0.0.1:{port}/metrics", timeout=10.0) if port else None)


def wait_metrics(
    worker: Worker, data: Path, done: Callable[[Series], bool], timeout: float, what: str
) -> Series:
    """The worker's metrics page once ``done(page)`` holds (``what`` names it on failure,
    with the port and the ``edgestream_*`` samples last seen)."""
    deadline = time.monotonic() + timeout
    port, page = None, None
    while time.monotonic() < deadline:
        port, page = metrics_page(data)
        if page is not None and done(page):
            return page
        if not worker.alive():
            raise AssertionError(f"worker died:\n{worker.log_text()[-3000:]}")
        time.sleep(0.5)
    ours = {k: v for k, v in (page or {}).items() if k.startswith("edgestream_")}
    answered = "answered" if page is not None else "not answering"
    raise AssertionError(f"{what}: not in {timeout:g} s (metrics port {port}, {answered}: {ours})")


def wait_processed(worker: Worker, data: Path, records: int, timeout: float) -> Series:
    """Wait until the worker's metrics count every one of ``records`` input records: valid
    readings (``edgestream_readings_total``, late ones included) plus DLQ records. The
    counters move after a batch's alerts and summaries were handed to the producer, so then
    every output the input makes has been emitted (not necessarily confirmed)."""
    from edgestream.loop.watch import total

    def taken(page: Series) -> float:
        return total(page, "edgestream_readings_total") + total(
            page, "edgestream_dlq_records_total"
        )

    page = wait_metrics(
        worker, data, lambda p: taken(p) >= records, timeout, f"the worker took in {records}"
    )
    assert taken(page) == records, f"the worker counted {taken(page):.0f} of {records} records"
    return page


def ask_counts(bootstrap: str, gateway: str, worker: Worker, timeout: float) -> dict[str, Any]:
    """The worker's per-topic counts (readings, alerts, rejected...), asked on ``edge.control``
    now and answered on ``edge.status`` (an answer made before the question is not taken)."""
    from confluent_kafka import Producer

    from edgestream.core.broker import producer_config

    asked = int(time.time() * 1000)
    producer = Producer(producer_config(bootstrap, **{"linger.ms": 0}))
    producer.produce("edge.control", value=b'{"command": "metrics"}')
    assert producer.flush(10) == 0, "the control command was not delivered"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for msg in read_topic(bootstrap, "edge.status", settle=0.5):
            if msg.key() != gateway.encode():
                continue
            try:  # edge.status carries other events of the gateway too
                body = json.loads(msg.value())
            except ValueError:
                continue
            if isinstance(body, dict) and "topics" in body and body.get("ts", 0) >= asked:
                return dict(body["topics"])
        if not worker.alive():
            raise AssertionError(f"worker died:\n{worker.log_text()[-3000:]}")
        time.sleep(0.5)
    raise AssertionError(f"the worker did not answer the metrics command in {timeout:g} s")


def autoencoder_scores(onnx_path: Path, features: np.ndarray) -> np.ndarray:
    """The reference's own scoring: a float64 numpy forward pass of the autoencoder's ONNX
    weights (``score = mean((mlp(|x| * s) - |x| * s)^2)``, ReLU between layers), not
    onnxruntime and not :class:`OnnxScorer`. The graph must be that shape."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    layers = sum(1 for n in model.graph.node if n.op_type == "MatMul")
    hidden = ["MatMul", "Add", "Relu"] * layers
    ops = ["Abs", "Mul", *hidden[:-1], "Sub", "Mul", "ReduceMean"]  # no ReLU on the output
    assert [n.op_type for n in model.graph.node] == ops, "not the autoencoder graph"
    w = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in model.graph.initializer}
    xs = np.abs(features.astype(np.float64)) * w["inv_scale"]
    h = xs
    for i in range(layers):
        h = h @ w[f"w{i}"] + w[f"b{i}"]
        if i < layers - 1:
            h = np.maximum(h, 0.0)
    return ((h - xs) ** 2).mean(axis=1)


def sensor_batch(bootstrap: str, registry: str, topic: str) -> tuple[ReadingBatch, list[Any]]:
    """The topic's readings in offset order (1 partition) scored offline with the shipped
    model's weights (:func:`autoencoder_scores`; threshold and version read from its
    sidecar), as one :class:`ReadingBatch` for the reference; plus the raw messages."""
    messages = read_topic(bootstrap, topic)
    decode = AvroDeserializer(registry)
    records = [decode(m.value()) for m in messages]
    values = np.array([[r["channels"][c] for c in PUMP_CHANNELS] for r in records], dtype=float)
    onnx_path = shipped_model_path("pump")
    sidecar = json.loads(onnx_path.with_suffix(".json").read_text())
    fx = FeatureExtractor.from_config(sidecar["features"])
    cols = [PUMP_CHANNELS.index(c) for c in sidecar["channels"]]
    ids = [r["device_id"] for r in records]
    ts = np.array([r["ts"] for r in records], dtype=np.int64)
    scores = autoencoder_scores(onnx_path, fx.transform(ids, ts, values[:, cols]))
    batch = ReadingBatch(
        partition=0,
        offsets=np.array([m.offset() for m in messages], dtype=np.int64),
        device_id=np.array(ids, dtype=object),
        site=np.array([r["site"] for r in records], dtype=object),
        device_type=np.array([r["device_type"] for r in records], dtype=object),
        ts=ts,
        seq=np.array([r["seq"] for r in records], dtype=np.int64),
        values=values,
        channels=PUMP_CHANNELS,
        scores=scores,
        anomaly=scores > sidecar["threshold"],
        model_version=sidecar["version"],
    )
    return batch, messages


def header(msg: Any, name: str) -> str | None:
    for key, value in msg.headers() or []:
        if key == name:
            return value.decode()
    return None
