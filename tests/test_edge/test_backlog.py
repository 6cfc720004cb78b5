"""A gateway worker down for longer than the allowed lateness and the idle timeout: the
readings produced meanwhile (its backlog, on two partitions) are windowed by event time after
the restart, exactly as an uninterrupted run windows them, and none goes to ``.late``.

Real parts: the embedded Kafka broker and registry, ``edgestream edge run`` as a subprocess
killed with SIGKILL, the shipped ONNX model; the reference is computed offline from the
sensor topic (``tests.support.windows_ref``)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgestream.core.serde import AvroDeserializer
from edgestream.core.topology import load_topology
from edgestream.edge.pipeline import window_spec
from edgestream.ml.artifact import shipped_model_path
from edgestream.ml.features import FeatureExtractor
from edgestream.ml.scorer import OnnxScorer
from edgestream.sim import simulate
from edgestream.wire.window_types import ReadingBatch
from tests.support import gateway as gr
from tests.support.windows_ref import Event, assert_close, reference, slice_batch

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GATEWAY = "gw-test"  # the reference's gateway id
TOPIC = "sensors.pump"
IDLE_TIMEOUT_MS = 1000
LATENESS_MS = 2000
WINDOWS = [
    {"size": "5s", "allowed_lateness": "2s", "max_out_of_orderness": "1s", "idle_timeout": "1s"},
    {
        "size": "10s",
        "hop": "5s",
        "allowed_lateness": "2s",
        "max_out_of_orderness": "1s",
        "idle_timeout": "1s",
    },
]


def _topology(path: Path) -> Path:
    """Two partitions (the bug needs a second partition to be skipped); batches of 200, so a
    partition's backlog is read in many batches while the other one waits."""
    gr.write_topology(path, GATEWAY, windows=WINDOWS)
    topo = yaml.safe_load(path.read_text())
    topo["sensors"]["topics"][0]["partitions"] = 2
    topo["models"]["pump"]["batch"]["size"] = 200
    path.write_text(yaml.safe_dump(topo, sort_keys=False))
    return path


def _simulate(bootstrap: str, registry: str, tmp: Path, **changes: object) -> None:
    params: dict = dict(
        devices=6,
        rate=50.0,
        seed=11,
        device_types=("pump",),
        sites=2,
        anomaly_rate=0.01,
        late_fraction=0.0,
        topic=TOPIC,
        partitions=2,
        labels=tmp / "labels.jsonl",
    )
    simulate(bootstrap=bootstrap, registry=registry, **{**params, **changes})


def test_a_backlog_after_downtime_is_windowed_like_live_data(stack, tmp_path: Path) -> None:
    ends = stack.endpoints()
    bootstrap, registry = ends["edge"]["gw-1"], str(ends["registry"])
    topology = _topology(tmp_path / "topology.yaml")
    data = tmp_path / "gw"
    start = (int(time.time()) - 300) * 1000
    live_s, backlog_s = 15, 30

    worker = gr.Worker(topology, GATEWAY, bootstrap, registry, data).start()
    try:
        # live: paced readings the worker windows as they come
        _simulate(bootstrap, registry, tmp_path, start_time=start, duration=live_s, fast=False)
        first = gr.wait_for(bootstrap, "edge.summaries", 1, 60, worker)
        assert first, "the worker windows the live readings"
        worker.kill()
        down_at = time.monotonic()
        # down: 30 s of event time (300 readings/s) is produced while no worker runs
        _simulate(
            bootstrap, registry, tmp_path, start_time=start + live_s * 1000, duration=backlog_s,
            fast=True,
        )  # fmt: skip
        while time.monotonic() - down_at < 2 * max(IDLE_TIMEOUT_MS, LATENESS_MS) / 1000:
            time.sleep(0.1)  # the downtime itself is the scenario: longer than both
        worker = gr.Worker(topology, GATEWAY, bootstrap, registry, data).start()

        refs, batches = _reference(bootstrap, registry, topology)
        assert all(len(b) > 1000 for b in batches), "both partitions hold a backlog"
        want = {sid: s for ref in refs for sid, s in ref.summaries.items()}
        raw = _wait_for_keys(bootstrap, want.keys(), 180, worker)
        late = gr.read_topic(bootstrap, f"{TOPIC}.late")
    finally:
        worker.stop()

    by_key: dict[bytes, set[bytes]] = {}
    for msg in raw:
        by_key.setdefault(msg.key(), set()).add(msg.value())
    assert all(len(v) == 1 for v in by_key.values()), "a re-sent summary is byte-identical"
    decode = AvroDeserializer(registry)
    got = {k.decode(): decode(next(iter(v))) for k, v in by_key.items()}
    missing, extra = sorted(want.keys() - got.keys()), sorted(got.keys() - want.keys())
    assert not missing and not extra, f"missing {len(missing)} {missing[:3]}, extra {extra[:3]}"
    for sid, expected_summary in want.items():
        assert_close(got[sid], expected_summary, sid)
    assert late == [], f"{len(late)} readings went to {TOPIC}.late"


def _reference(bootstrap: str, registry: str, topology: Path):
    """Per window spec: an uninterrupted run over both partitions, read as live data is (in
    pieces of 200 readings, the pieces of both partitions in event-time order); no late
    reading is expected: the simulator's readings are in order within a device."""
    batches = _sensor_batches(bootstrap, registry)
    pieces = [slice_batch(b, slice(i, i + 200)) for b in batches for i in range(0, len(b), 200)]
    pieces.sort(key=lambda piece: int(piece.ts[0]))
    refs = []
    for window in load_topology(topology).windows:
        events = [Event("batch", 0, piece) for piece in pieces]
        ref = reference(events, window_spec(window), TOPIC)
        assert not ref.late
        refs.append(ref)
    return refs, batches


def _wait_for_keys(bootstrap: str, keys: Iterable[str], timeout: float, worker: gr.Worker):
    """Read ``edge.summaries`` until it holds every key (re-sent duplicates aside)."""
    deadline = time.monotonic() + timeout
    want = set(keys)
    while True:
        raw = gr.read_topic(bootstrap, "edge.summaries", settle=1.0)
        if want <= {m.key().decode() for m in raw} or time.monotonic() > deadline:
            return raw
        assert worker.alive(), f"worker died:\n{worker.log_text()[-3000:]}"


def _sensor_batches(bootstrap: str, registry: str) -> list[ReadingBatch]:
    """The sensor topic's readings scored offline with the shipped model (a device's readings
    are on one partition, in order), one :class:`ReadingBatch` per partition."""
    messages = gr.read_topic(bootstrap, TOPIC)
    decode = AvroDeserializer(registry)
    records = [decode(m.value()) for m in messages]
    values = np.array([[r["channels"][c] for c in gr.PUMP_CHANNELS] for r in records])
    scorer = OnnxScorer.load(shipped_model_path("pump"))
    fx = FeatureExtractor.from_config(scorer.meta.features)
    cols = [gr.PUMP_CHANNELS.index(c) for c in scorer.meta.channels]
    ids = np.array([r["device_id"] for r in records], dtype=object)
    ts = np.array([r["ts"] for r in records], dtype=np.int64)
    scores = scorer.score(fx.transform(list(ids), ts, values[:, cols]))
    partition = np.array([m.partition() for m in messages])
    batches = []
    for p in sorted(set(partition.tolist())):
        rows = np.flatnonzero(partition == p)
        batches.append(
            ReadingBatch(
                partition=p,
                offsets=np.array([messages[i].offset() for i in rows], dtype=np.int64),
                device_id=ids[rows],
                site=np.array([records[i]["site"] for i in rows], dtype=object),
                device_type=np.array([records[i]["device_type"] for i in rows], dtype=object),
                ts=ts[rows],
                seq=np.array([records[i]["seq"] for i in rows], dtype=np.int64),
                values=values[rows],
                channels=gr.PUMP_CHANNELS,
                scores=scores[rows],
                anomaly=scores[rows] > scorer.threshold,
                model_version=scorer.version,
            )
        )
    return batches
