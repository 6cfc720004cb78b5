"""Replaying recorded readings through the gateway's own detection path, in process.

:func:`replay` builds the :class:`~edgestream.edge.pipeline.TopicPipeline` the worker builds
for a sensor topic of a topology (validation, the topology's model via
:func:`~edgestream.edge.models.load_model`, features, incident rules, windows), encodes the
readings as the topic's Avro records, and feeds them in event-time order in micro-batches of
the model's ``batch.size`` - as the worker's agent receives them, without Kafka or Faust.
Each reading's score is the pipeline's own; the alerts are the ones the gateway would send.

Strictly streaming: the pipeline sees a batch only after every earlier one, so a score
depends only on the readings up to it (the tests check that truncating the input leaves the
earlier scores unchanged). The replay clock (``now`` of each batch) is the newest event time
in it, so recorded data is not "too old" for the clock-skew checks (the topology's
``sensors.validation.max_age`` should still be ``null`` for data older than a week).

>>> import numpy as np
>>> from edgestream.core.topology import load_topology
>>> from edgestream.core.paths import topologies_dir
>>> topology = load_topology(topologies_dir() / "nab.yaml")
>>> ts = 1_400_000_000_000 + np.arange(400) * 300_000
>>> x = np.sin(np.arange(400) / 5.0)
>>> x[350] = 9.0
>>> topology = with_online_settings(topology, "metric", calibration=100)
>>> run = replay(topology, Recording.one_device("dev-1", ts, x))
>>> len(run.scores), float(run.scores[350]), [a["status"] for a in run.alerts][:1]
(400, 1.0, ['open'])
"""

from __future__ import annotations

import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgestream.core.serde import AvroDeserializer, AvroSerializer, subject_for
from edgestream.core.topology import Topology
from edgestream.core.topology.edge import SensorTopic
from edgestream.edge.models import load_model
from edgestream.edge.pipeline import TopicPipeline
from edgestream.evaluation.exceptions import EvaluationError
from edgestream.ml.scorer import OnnxScorer

GATEWAY = "replay"
SITE = "replay"


@dataclass(frozen=True)
class Recording:
    """Readings to replay: one row per reading, any devices, columns in ``channels`` order."""

    device_id: np.ndarray  # (n,) str
    ts: np.ndarray  # (n,) event time, epoch ms
    values: np.ndarray  # (n, len(channels))
    channels: tuple[str, ...]

    @classmethod
    def one_device(
        cls, device: str, ts: np.ndarray, values: np.ndarray, channel: str = "value"
    ) -> Recording:
        """One device's single-channel series."""
        n = len(ts)
        ids = np.full(n, device, dtype=object)
        return cls(ids, np.asarray(ts, np.int64), np.asarray(values, float).reshape(n, 1),
                   (channel,))  # fmt: skip

    def __len__(self) -> int:
        return len(self.ts)

    def in_time_order(self) -> Recording:
        """The readings sorted by event time (stable: ties keep their order)."""
        order = np.argsort(self.ts, kind="stable")
        return Recording(self.device_id[order], self.ts[order], self.values[order], self.channels)


@dataclass
class ReplayRun:
    """What the gateway's path did with a recording (rows in the recording's time order)."""

    scores: np.ndarray  # per reading; NaN: rejected or no model
    rejected: dict[str, int]  # reason -> messages
    alerts: list[dict[str, Any]] = field(default_factory=list)
    summaries: int = 0
    batches: int = 0
    seconds: float = 0.0  # wall time in the pipeline (encoding excluded)
    model_version: str | None = None
    threshold: float | None = None

    @property
    def per_reading_us(self) -> float:
        return 1e6 * self.seconds / max(len(self.scores), 1)


def sensor_topic(topology: Topology, name: str | None = None) -> SensorTopic:
    """The topology's sensor topic ``name`` (default: its only / first topic with a model)."""
    topics = topology.sensors.topics
    if name is not None:
        for topic in topics:
            if topic.name == name:
                return topic
        raise EvaluationError(
            f"topology {topology.name!r} has no sensor topic {name!r} "
            f"(it has {', '.join(t.name for t in topics)})"
        )
    with_model = [t for t in topics if t.device_type in topology.models]
    return (with_model or list(topics))[0]


def with_online_settings(topology: Topology, device_type: str, **settings: Any) -> Topology:
    """``topology`` with the online detector of ``device_type`` changed by ``settings``
    (e.g. ``calibration``: a NAB series' probationary period)."""
    spec = topology.models[device_type]
    if spec.kind != "online":
        raise EvaluationError(
            f"the model of {device_type!r} in topology {topology.name!r} is kind: {spec.kind}, "
            "not online: its settings cannot be changed per series"
        )
    online = spec.online.model_validate({**spec.online.model_dump(), **settings})
    models = {**topology.models, device_type: spec.model_copy(update={"online": online})}
    return topology.model_copy(update={"models": models})


def replay(
    topology: Topology,
    recording: Recording,
    topic: str | None = None,
    batch: int | None = None,
    state_dir: Path | None = None,
) -> ReplayRun:
    """Feed ``recording`` through the pipeline of ``topic`` (see the module docstring).

    ``batch``: readings per micro-batch (default: the topic's model ``batch.size``);
    ``state_dir``: where the pipeline keeps its state (default: a temporary directory).
    """
    spec = sensor_topic(topology, topic)
    rec = recording.in_time_order()
    missing = [c for c in spec.required_channels if c not in rec.channels]
    if missing:
        raise EvaluationError(
            f"the recording has channels {list(rec.channels)}; topic {spec.name} needs {missing}"
        )
    model = topology.models.get(spec.device_type)
    size = batch or (model.batch.size if model else 256)
    if state_dir is None:
        with tempfile.TemporaryDirectory(prefix="edgestream-replay-") as tmp:
            return _run(topology, spec, rec, size, Path(tmp))
    return _run(topology, spec, rec, size, Path(state_dir))


def in_process_pipeline(
    topology: Topology,
    gateway_id: str,
    topic: SensorTopic,
    registry: str,
    state_dir: Path,
    sync: bool = True,
) -> tuple[TopicPipeline, OnnxScorer | None, float | None]:
    """The :class:`TopicPipeline` of ``topic`` as the worker builds it, in this process: the
    topology's model of its device type (if any) and its threshold, records decoded with the
    topic's schema; the pipeline, the model and the threshold."""
    scorer, threshold = None, None
    if topic.device_type in topology.models:
        scorer, threshold = load_model(topology, topic.device_type)
    pipeline = TopicPipeline(
        topology,
        gateway_id,
        topic,
        state_dir,
        AvroDeserializer(registry, reader_schema=topic.schema_),
        scorer,
        sync=sync,
        threshold=threshold,
    )
    return pipeline, scorer, threshold


def _run(
    topology: Topology, spec: SensorTopic, rec: Recording, size: int, state_dir: Path
) -> ReplayRun:
    registry = f"mock://replay-{uuid.uuid4().hex}"
    pipeline, scorer, threshold = in_process_pipeline(
        topology, GATEWAY, spec, registry, state_dir, sync=False
    )
    encode = _encoder(registry, spec)
    run = ReplayRun(np.full(len(rec), np.nan), {}, threshold=threshold)
    run.model_version = scorer.version if scorer is not None else None
    offset = 0
    try:
        for lo in range(0, len(rec), size):
            hi = min(lo + size, len(rec))
            messages, first_row = encode(rec, lo, hi)
            now = int(rec.ts[hi - 1])
            started = time.perf_counter()
            out = pipeline.process(0, range(offset, offset + len(messages)), messages, now)
            pipeline.ack(
                [s["summary_id"] for s in out.summaries], [a["alert_id"] for a in out.alerts]
            )
            run.seconds += time.perf_counter() - started
            offset += len(messages)
            run.batches += 1
            if out.scores is not None and len(out.readings):
                rows = _rows_of(out.readings.message, first_row, messages, spec)
                run.scores[lo + rows] = out.scores
            for r in out.rejected:
                run.rejected[r.reason] = run.rejected.get(r.reason, 0) + 1
            run.alerts += out.alerts
            run.summaries += len(out.summaries)
        run.summaries += len(pipeline.flush_all())
    finally:
        pipeline.close()
    return run


def _rows_of(
    message: np.ndarray, first_row: np.ndarray, messages: list[bytes], spec: SensorTopic
) -> np.ndarray:
    """Batch rows of the valid readings (a frame's readings follow its first row)."""
    if spec.schema_ == "SensorReading":
        return first_row[message]
    # frames: readings of message m are rows first_row[m], first_row[m] + 1, ...
    starts = np.r_[0, np.flatnonzero(np.diff(message)) + 1]
    within = np.arange(len(message)) - np.repeat(starts, np.diff(np.r_[starts, len(message)]))
    return first_row[message] + within


def _encoder(registry: str, spec: SensorTopic) -> Any:
    """``encode(recording, lo, hi) -> (messages, first row of each message)`` for the topic's
    schema: one SensorReading per reading, or one SensorFrame per run of one device."""
    ser = AvroSerializer(registry, spec.schema_, subject_for(spec.name))
    seqs: dict[str, int] = {}

    def reading(rec: Recording, lo: int, hi: int) -> tuple[list[bytes], np.ndarray]:
        out = []
        for i in range(lo, hi):
            device = str(rec.device_id[i])
            seq = seqs[device] = seqs.get(device, -1) + 1
            channels = dict(zip(rec.channels, rec.values[i].tolist(), strict=True))
            out.append(ser(_record(spec, device, int(rec.ts[i]), channels) | {"seq": seq}))
        return out, np.arange(hi - lo)

    def frame(rec: Recording, lo: int, hi: int) -> tuple[list[bytes], np.ndarray]:
        ids = rec.device_id[lo:hi]
        starts = np.r_[0, np.flatnonzero(ids[1:] != ids[:-1]) + 1]
        ends = np.r_[starts[1:], hi - lo]
        out = []
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            device = str(ids[a])
            first = seqs.get(device, -1) + 1
            seqs[device] = first + (b - a) - 1
            cols = {c: rec.values[lo + a : lo + b, k].tolist() for k, c in enumerate(rec.channels)}
            record = _record(spec, device, 0, cols)
            out.append(ser(record | {"ts": rec.ts[lo + a : lo + b].tolist(), "first_seq": first}))
        return out, starts

    return reading if spec.schema_ == "SensorReading" else frame


def _record(spec: SensorTopic, device: str, ts: int, channels: dict[str, Any]) -> dict[str, Any]:
    return {
        "device_id": device,
        "site": SITE,
        "device_type": spec.device_type,
        "ts": ts,
        "channels": channels,
        "tags": {},
    }
