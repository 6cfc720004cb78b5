"""In-process costs on the benchmark's input: the gateway pipeline stage by stage, and the model.

:func:`run_pipeline` drives the same :class:`TopicPipeline` the Faust worker drives, on the
same bytes cut into the agent's batch size, and does what the worker does with the results
(serialise alerts and summaries, ack them in the local state) - without Kafka or Faust. So
its summaries are exactly the ones the worker must emit (window results do not depend on
batching) and its per-stage seconds attribute the worker's cost; what the worker spends on
top of it is Faust's and Kafka's.

>>> clock = StageClock()
>>> outer = clock.wrap("outer", lambda: inner() + 1)
>>> inner = clock.wrap("inner", lambda: 1)
>>> outer(), sorted(clock.seconds), clock.calls["inner"]
(2, ['inner', 'outer'], 1)
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgestream.core.serde import AvroSerializer, subject_for
from edgestream.core.topology import Topology
from edgestream.core.topology.edge import SensorTopic
from edgestream.edge.models import features_for
from edgestream.edge.pipeline import TopicPipeline
from edgestream.evaluation.replay import in_process_pipeline
from edgestream.ml.artifact import shipped_model_path
from edgestream.ml.scorer import ROW_STRIDE, OnnxScorer
from edgestream.wire.topics import ALERTS_TOPIC, SUMMARIES_TOPIC

#: Stages in the order of the pipeline (``other``: the pipeline's own glue code).
STAGES = (
    "decode",
    "validate",
    "features",
    "score",
    "incidents",
    "windows",
    "state_blobs",
    "commit",
    "serialize_out",
    "other",
)


class StageClock:
    """Exclusive wall time per stage: a wrapped call's time minus its wrapped callees'."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[float] = []

    def wrap(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._stack.append(0.0)
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                inclusive = time.perf_counter() - start
                children = self._stack.pop()
                self.seconds[stage] += inclusive - children
                self.calls[stage] += 1
                if self._stack:
                    self._stack[-1] += inclusive

        return timed


@dataclass
class PipelineRun:
    """What the in-process pipeline did with one input."""

    messages: int
    readings: int  # valid readings
    rejected: int  # rejected messages
    batches: int
    summaries: int
    alerts: int
    late: int
    first_output_readings: int  # readings up to and including the batch of the first summary
    seconds: float
    stages: dict[str, float]
    features_input: tuple[list[str], np.ndarray, np.ndarray] = field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        total = sum(self.stages.values()) or 1.0
        return {
            "messages": self.messages,
            "readings": self.readings,
            "rejected_messages": self.rejected,
            "batches": self.batches,
            "summaries": self.summaries,
            "alerts": self.alerts,
            "late": self.late,
            "first_output_readings": self.first_output_readings,
            "seconds": round(self.seconds, 3),
            "readings_per_s": round(self.readings / self.seconds) if self.seconds else 0,
            "stage_s": {k: round(v, 3) for k, v in self.stages.items()},
            "stage_share": {k: round(v / total, 3) for k, v in self.stages.items()},
        }


def run_pipeline(
    topology: Topology,
    gateway_id: str,
    topic: SensorTopic,
    registry: str,
    values: Sequence[bytes],
    batch: int,
    state_dir: Path,
    sync: bool = True,
) -> PipelineRun:
    """Process ``values`` (one partition, offsets 0..n-1) as the worker would, timed by stage."""
    pipeline, _, _ = in_process_pipeline(topology, gateway_id, topic, registry, state_dir, sync)
    alert_ser = AvroSerializer(registry, "AnomalyAlert", subject_for(ALERTS_TOPIC))
    summary_ser = AvroSerializer(registry, "WindowSummary", subject_for(SUMMARIES_TOPIC))
    _ = alert_ser.schema_id, summary_ser.schema_id  # register before the clock starts
    clock = StageClock()
    captured: list[tuple[Any, Any, Any]] = []
    _instrument(pipeline, clock, captured)
    serialize = clock.wrap("serialize_out", lambda records, ser: [ser(r) for r in records])
    process = clock.wrap("other", pipeline.process)
    ack = clock.wrap("other", pipeline.ack)
    summaries = alerts = late = rejected = readings = 0
    first_output: int | None = None
    n_batches = 0
    start = time.perf_counter()
    try:
        for lo in range(0, len(values), batch):
            chunk = list(values[lo : lo + batch])
            now = int(time.time() * 1000)
            out = process(0, range(lo, lo + len(chunk)), chunk, now)
            n_batches += 1
            readings += len(out.readings)
            rejected += len(out.rejected)
            late += len(out.late)
            if out.alerts or out.summaries:
                stamped = [{**a, "emitted_at": a.get("emitted_at") or now} for a in out.alerts]
                serialize(stamped, alert_ser)
                serialize(out.summaries, summary_ser)
                ack([s["summary_id"] for s in out.summaries], [a["alert_id"] for a in out.alerts])
            if out.summaries and first_output is None:
                first_output = readings
            summaries += len(out.summaries)
            alerts += len(out.alerts)
        seconds = time.perf_counter() - start
    finally:
        pipeline.close()
    return PipelineRun(
        messages=len(values),
        readings=readings,
        rejected=rejected,
        batches=n_batches,
        summaries=summaries,
        alerts=alerts,
        late=late,
        first_output_readings=first_output or 0,
        seconds=seconds,
        stages={s: clock.seconds.get(s, 0.0) for s in STAGES},
        features_input=_features_input(captured),
    )


def _features_input(captured: list[tuple[Any, Any, Any]]) -> tuple[Any, Any, Any]:
    """(device ids, timestamps, feature rows) the model was given, over every batch."""
    ids = [d for c in captured for d in list(c[0])]
    ts = np.concatenate([np.asarray(c[1], np.int64) for c in captured]) if captured else None
    x = np.concatenate([np.asarray(c[2], np.float64) for c in captured]) if captured else None
    return ids, ts if ts is not None else np.zeros(0, np.int64), _or_empty(x)


def _or_empty(x: np.ndarray | None) -> np.ndarray:
    return x if x is not None else np.zeros((0, 0))


def _instrument(pipeline: TopicPipeline, clock: StageClock, captured: list[Any]) -> None:
    """Time the pipeline's collaborators by wrapping their bound methods on the instances."""
    validator = pipeline.validator
    de = validator.deserializer
    de.decode_many = clock.wrap("decode", de.decode_many)  # type: ignore[method-assign]
    validator.validate = clock.wrap("validate", validator.validate)  # type: ignore[method-assign]
    fx = pipeline.features
    if fx is not None:
        transform = fx.transform

        def capture(ids: Any, ts: Any, values: Any) -> Any:
            captured.append((ids, ts, values))
            return transform(ids, ts, values)

        fx.transform = clock.wrap("features", capture)  # type: ignore[method-assign]
        fx.changed_parts = clock.wrap("state_blobs", fx.changed_parts)  # type: ignore[method-assign]
    if pipeline.scorer is not None:
        scorer = pipeline.scorer
        scorer.score = clock.wrap("score", scorer.score)  # type: ignore[method-assign]
    inc = pipeline.incidents
    inc.process = clock.wrap("incidents", inc.process)  # type: ignore[method-assign]
    inc.state = clock.wrap("state_blobs", inc.state)  # type: ignore[method-assign]
    for engine in pipeline.engines:
        engine.process = clock.wrap("windows", engine.process)  # type: ignore[method-assign]
        store = engine.store
        store.commit = clock.wrap("commit", store.commit)  # type: ignore[method-assign]


def model_stats(
    device_id: list[str], ts: np.ndarray, values: np.ndarray, batch: int = 1024, calls: int = 200
) -> dict[str, Any]:
    """Features rows/s and ONNX scoring rows/s and per-call latency at ``batch`` rows, with
    the shipped pump model, on the benchmark's own readings (feature columns)."""
    t0 = time.perf_counter()
    scorer = OnnxScorer.load(shipped_model_path("pump"))
    load_s = time.perf_counter() - t0
    scorer.warm()
    n = len(ts)
    if n == 0:
        return {"version": scorer.version, "rows": 0}
    fx = features_for(scorer.meta)
    ids = np.asarray(device_id, dtype=object)
    chunks = [(i, min(i + batch, n)) for i in range(0, n, batch)]
    feats = []
    t0 = time.perf_counter()
    for lo, hi in chunks:
        feats.append(fx.transform(ids[lo:hi], ts[lo:hi], values[lo:hi]))
    features_s = time.perf_counter() - t0
    x = np.concatenate(feats)
    full = [x[lo:hi] for lo, hi in chunks if hi - lo == batch] or [x[:batch]]
    lat = []
    rows = 0
    for i in range(calls):
        part = full[i % len(full)]
        t0 = time.perf_counter()
        scorer.score(part)
        lat.append(time.perf_counter() - t0)
        rows += len(part)
    session = scorer.session
    feed = {session.get_inputs()[0].name: np.ascontiguousarray(full[0], dtype=np.float32)}
    t0 = time.perf_counter()
    for _ in range(calls):
        session.run(None, feed)
    session_s = time.perf_counter() - t0
    lat_ms = np.array(lat) * 1000
    return {
        "version": scorer.version,
        "load_s": round(load_s, 3),
        "batch": len(full[0]),
        "calls": calls,
        "row_stride": ROW_STRIDE,
        "score_rows_per_s": round(rows / sum(lat)),
        "score_p50_ms": round(float(np.percentile(lat_ms, 50)), 3),
        "score_p99_ms": round(float(np.percentile(lat_ms, 99)), 3),
        "session_rows_per_s": round(calls * len(full[0]) / session_s),
        "features_rows": n,
        "features_rows_per_s": round(n / features_s) if features_s else 0,
    }
