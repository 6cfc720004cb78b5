"""What a gateway does to one batch of one sensor topic partition, without Kafka or Faust:

validate -> skip replayed readings -> features -> ONNX scores -> incidents (alerts)
-> event-time windows (summaries, late readings).

State and exactness. Each window spec has a :class:`WindowEngine` (its own RocksDB). The
feature and incident state, and the alerts not yet confirmed by the broker, are committed as
*extras* in the same atomic write as the **last** engine's state; engines commit in order,
so the last engine is never ahead of the others. After a crash everything restarts from the
last engine: readings it has seen are skipped, readings after it are scored again from the
restored feature state (bit-identical scores), engines that already have them skip them by
offset. Re-produced alerts and summaries carry the same deterministic keys and bytes.
The feature state is stored as parts (``features/`` + device id, and its header): a batch
commits the records of the devices it changed, not the whole fleet's history.

>>> from edgestream.core.topology.detection import Window
>>> spec = window_spec(Window(size=10_000, allowed_lateness=2_000))
>>> spec.size_ms, spec.step_ms, spec.allowed_lateness_ms, spec.scopes
(10000, 10000, 2000, ('device', 'site'))
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgestream.core.serde import AvroDeserializer
from edgestream.core.topology import Topology
from edgestream.core.topology.detection import Window
from edgestream.core.topology.edge import SensorTopic
from edgestream.edge.incidents import IncidentTracker
from edgestream.edge.models import Features, features_for
from edgestream.edge.validate import Readings, Rejected, Validator
from edgestream.edge.windows import WindowEngine
from edgestream.ml.scorer import OnnxScorer
from edgestream.wire.window_types import ReadingBatch, WindowSpec

FEATURES, INCIDENTS, ALERTS, POSITIONS = "features", "incidents", "alerts", "positions"
TOPIC_ID = "topic_id"  # the Kafka topic id the positions belong to
#: extras name prefix of the feature state's parts: a batch commits the devices it changed
FEATURE_PART = "features/"


def window_spec(window: Window) -> WindowSpec:
    """The engine's spec for a topology window."""
    return WindowSpec(
        size_ms=window.size,
        hop_ms=window.hop,
        allowed_lateness_ms=window.allowed_lateness,
        max_out_of_orderness_ms=window.max_out_of_orderness,
        scopes=tuple(window.scopes),
        idle_timeout_ms=window.idle_timeout,
    )


@dataclass(frozen=True)
class LateReading:
    """A reading whose windows (of one window spec) were all closed when it arrived."""

    message: int  # index of its message in the batch
    reading: int  # index into :attr:`Outputs.readings`
    window: str  # window spec label, e.g. "10s"
    window_start: int
    window_end: int
    watermark: int


@dataclass
class Outputs:
    """Everything one batch produced, for the worker to send."""

    readings: Readings
    rejected: list[Rejected] = field(default_factory=list)
    late: list[LateReading] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    summaries: list[dict[str, Any]] = field(default_factory=list)
    replayed: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)  # SensorReadings for the cloud
    inference_rows: int = 0  # rows scored by the model in this batch (metrics)
    inference_s: float = 0.0  # wall time of the model call
    scores: np.ndarray | None = None  # one per reading (NaN: no model), for offline replays


class TopicPipeline:
    """The gateway's processing of one sensor topic (all its partitions)."""

    def __init__(
        self,
        topology: Topology,
        gateway_id: str,
        topic: SensorTopic,
        state_dir: Path,
        deserializer: AvroDeserializer,
        scorer: OnnxScorer | None,
        sync: bool = True,
        threshold: float | None = None,
    ) -> None:
        self.topic = topic
        self.gateway_id = gateway_id
        self.validator = Validator(topic, topology.sensors.validation, deserializer)
        self.scorer = scorer
        self.labels = [_label(w) for w in topology.windows]
        self.engines = [
            WindowEngine.open(
                window_spec(w),
                gateway_id,
                state_dir / topic.name / label,
                sync=sync,
                source=topic.name,
            )
            for w, label in zip(topology.windows, self.labels, strict=True)
        ]
        last = self.engines[-1]
        self.features: Features | None = None
        self.threshold = threshold if threshold is not None else scorer and scorer.threshold
        self.shadow: Any = None  # a candidate scored beside the model (edgestream.rollout.agent)
        if scorer is not None:
            self.features = features_for(scorer.meta)
            parts = {
                k[len(FEATURE_PART) :]: v
                for k, v in last.extras.items()
                if k.startswith(FEATURE_PART)
            }
            if parts:
                self.features.restore_parts(parts)
            elif FEATURES in last.extras:  # one blob, as releases before parts stored it
                self.features.restore(last.extras[FEATURES])
            channels = scorer.meta.channels or scorer.meta.inputs
            self._feature_cols = [self.validator.channels.index(c) for c in channels]
        thresholds = {topic.device_type: self.threshold if scorer else None}
        self.incidents = IncidentTracker(topology.anomaly, gateway_id, thresholds)
        self.incidents.restore(last.extras.get(INCIDENTS))
        self._pending_alerts: list[dict[str, Any]] = json.loads(last.extras.get(ALERTS, b"[]"))
        # next offset per partition over *every* message (valid or not): a redelivered batch
        # of only rejected records is not sent to the DLQ twice
        saved = json.loads(last.extras.get(POSITIONS, b"{}"))
        self._next: dict[int, int] = {int(p): int(o) for p, o in saved.items()}
        self.counts = {"readings": 0, "replayed": 0, "alerts": 0, "late": 0, "summaries": 0}
        sampling = topology.forwarding.samples
        self.sample_every = sampling.every if sampling.enabled else 0
        self.counts["samples"] = 0

    # -- recovery and acks -----------------------------------------------------------------
    def unacked(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(alerts, summaries) emitted before a crash and not yet acked: produce them first."""
        summaries = [s for engine in self.engines for s in engine.unacked()]
        return list(self._pending_alerts), summaries

    def ack(self, summary_ids: Sequence[str], alert_ids: Sequence[str] = ()) -> None:
        """The broker confirmed these summaries and alerts: forget them (one commit).

        Alerts emitted since (a later batch) stay pending: the worker confirms in the
        background while the next batches run. Not fsynced (the next batch's commit syncs
        it): an OS crash that loses an ack only makes a restart send those outputs again,
        with the same keys and bytes, as it does for outputs not yet confirmed.
        """
        ids = set(summary_ids)
        for engine in self.engines[:-1]:
            if ids:
                engine.ack(ids, durable=False)
        extras = None
        done = set(alert_ids)
        if done and self._pending_alerts:
            self._pending_alerts = [a for a in self._pending_alerts if a["alert_id"] not in done]
            extras = {ALERTS: json.dumps(self._pending_alerts).encode()}
        if ids or extras:
            self.engines[-1].ack(ids, extras=extras, durable=False)

    def positions(self) -> dict[int, int]:
        """Next offset per partition to read (from the last engine: the one never ahead, and
        from the messages it committed that held no valid reading)."""
        merged = dict(self._next)
        for partition, offset in self.engines[-1].positions().items():
            merged[partition] = max(offset, merged.get(partition, offset))
        return merged

    @property
    def topic_id(self) -> str | None:
        """The id of the topic the positions were read from (None before it was known)."""
        stored = self.engines[-1].extras.get(TOPIC_ID)
        return stored.decode() if stored else None

    def rewind(self, offsets: dict[int, int], topic_id: str | None = None) -> None:
        """Read these partitions again from these offsets (their log restarted: the topic was
        recreated or purged, see :mod:`edgestream.core.offsets`); ``topic_id``: the topic's
        id now. The last engine commits last: a crash in between rewinds again."""
        self._next.update(offsets)
        extras = {POSITIONS: json.dumps(self._next).encode()}
        if topic_id is not None:
            extras[TOPIC_ID] = topic_id.encode()
        for engine in self.engines[:-1]:
            for partition, offset in offsets.items():
                engine.rewind(partition, offset)
        last = self.engines[-1]
        for partition, offset in offsets.items():
            last.rewind(partition, offset)
        last.ack([], extras=extras)

    def assign(self, partitions: Sequence[int], now_ms: int) -> None:
        for engine in self.engines:
            engine.assign(partitions, now_ms)

    # -- processing ------------------------------------------------------------------------
    def process(
        self, partition: int, offsets: Sequence[int], values: Sequence[bytes | None], now_ms: int
    ) -> Outputs:
        """Process one batch of one partition (offsets ascending); see the module docstring."""
        offsets_arr = np.asarray(offsets, dtype=np.int64)
        start = self.positions().get(partition)
        fresh = 0 if start is None else int(np.searchsorted(offsets_arr, start, side="left"))
        readings, rejected = self.validator.validate(list(values[fresh:]), now_ms)
        readings.message += fresh
        rejected = [Rejected(r.index + fresh, r.reason, r.detail) for r in rejected]
        out = Outputs(readings, rejected, replayed=fresh)
        self.counts["replayed"] += fresh
        if fresh == len(offsets_arr):
            return out
        self._next[partition] = int(offsets_arr[-1]) + 1
        positions = {POSITIONS: json.dumps(self._next).encode()}
        n = len(readings)
        if n == 0:  # only rejected records: remember that they were handled
            self.engines[-1].ack([], extras=positions)
            return out
        self.counts["readings"] += n
        extras: dict[str, bytes] = dict(positions)
        scores, anomaly, version = self._score(readings, out, extras)
        out.scores = scores
        out.alerts = self.incidents.process(
            readings.device_id,
            readings.site,
            readings.device_type,
            readings.ts,
            readings.seq,
            scores,
            readings.values,
            readings.channels,
            version,
        )
        self._pending_alerts += out.alerts
        extras[INCIDENTS] = self.incidents.state()
        extras[ALERTS] = json.dumps(self._pending_alerts).encode()
        out.samples = self.samples(readings, version)
        batch = ReadingBatch(
            partition=partition,
            offsets=offsets_arr[readings.message],
            device_id=np.asarray(readings.device_id, dtype=object),
            site=np.asarray(readings.site, dtype=object),
            device_type=np.asarray(readings.device_type, dtype=object),
            ts=readings.ts,
            seq=readings.seq,
            values=readings.values,
            channels=readings.channels,
            scores=scores,
            anomaly=anomaly,
            model_version=version,
        )
        self._windows(batch, readings, now_ms, extras, out)
        self.counts["alerts"] += len(out.alerts)
        self.counts["late"] += len(out.late)
        self.counts["summaries"] += len(out.summaries)
        return out

    def _score(
        self, readings: Readings, out: Outputs, extras: dict[str, bytes]
    ) -> tuple[np.ndarray, np.ndarray, str | None]:
        """Scores, anomaly flags and model version of a batch's readings (NaN, False and None
        without a model); the feature state the batch changed goes into ``extras``."""
        n = len(readings)
        scores = np.full(n, np.nan)
        anomaly = np.zeros(n, bool)
        version = None
        if self.scorer is not None and self.features is not None:
            x = self.features.transform(
                readings.device_id, readings.ts, readings.values[:, self._feature_cols]
            )
            started = time.perf_counter()
            scores = self.scorer.score(x)
            out.inference_rows, out.inference_s = n, time.perf_counter() - started
            if self.shadow is not None:  # shadow: scored, compared, never published
                self.shadow.observe(x, scores, self.threshold)
            anomaly = scores > self.threshold
            version = self.scorer.version
            extras.update((FEATURE_PART + k, v) for k, v in self.features.changed_parts().items())
        return scores, anomaly, version

    def _windows(
        self,
        batch: ReadingBatch,
        readings: Readings,
        now_ms: int,
        extras: dict[str, bytes],
        out: Outputs,
    ) -> None:
        """Feed every window engine; their summaries and late readings go into ``out`` (the
        last engine's commit carries ``extras``)."""
        last = len(self.engines) - 1
        for i, (engine, label) in enumerate(zip(self.engines, self.labels, strict=True)):
            result = engine.process(batch, now_ms, extras=extras if i == last else None)
            out.summaries += result.summaries
            late = result.late
            for j in range(len(late)):
                idx = int(late.indices[j])
                out.late.append(
                    LateReading(
                        message=int(readings.message[idx]),
                        reading=idx,
                        window=label,
                        window_start=int(late.window_start[j]),
                        window_end=int(late.window_end[j]),
                        watermark=int(late.watermark[j]),
                    )
                )

    def samples(self, readings: Readings, version: str | None) -> list[dict[str, Any]]:
        """The valid readings with ``seq % every == 0`` (topology ``forwarding.samples``) as
        SensorReadings tagged with the gateway and the model version that scored them
        ("none": no model). A batch replayed after a crash was skipped before this point, so a
        sample emitted but not produced before a crash is not re-emitted: the channel is a
        statistical sample for drift and retraining, not a record of every reading.
        """
        if not self.sample_every or not len(readings):
            return []
        picked = np.flatnonzero((readings.seq >= 0) & (readings.seq % self.sample_every == 0))
        tags = {"gateway_id": self.gateway_id, "model_version": version or "none"}
        out = []
        for i in picked.tolist():
            row = readings.values[i]
            out.append({
                "device_id": readings.device_id[i],
                "site": readings.site[i],
                "device_type": readings.device_type[i],
                "ts": int(readings.ts[i]),
                "seq": int(readings.seq[i]),
                "channels": {c: float(v) for c, v in zip(readings.channels, row, strict=True)
                             if v == v},  # NaN: channel absent from the reading
                "tags": dict(tags),
            })  # fmt: skip
        self.counts["samples"] += len(out)
        return out

    def set_model(self, scorer: OnnxScorer, threshold: float) -> None:
        """Swap the model between batches (same inputs: the feature state carries over)."""
        if self.scorer is None or tuple(scorer.inputs) != tuple(self.scorer.inputs):
            raise ValueError(
                f"model {scorer.version} takes {list(scorer.inputs)}, the pipeline computes "
                f"{list(self.scorer.inputs) if self.scorer else []}"
            )
        self.scorer, self.threshold = scorer, float(threshold)
        self.incidents.thresholds[self.topic.device_type] = float(threshold)

    def advance_idle(self, now_ms: int) -> list[dict[str, Any]]:
        """Let idle partitions stop holding the watermark; returns the summaries that closed."""
        out = []
        for engine in self.engines:
            out += engine.advance_idle(now_ms).summaries
        self.counts["summaries"] += len(out)
        return out

    def flush_all(self) -> list[dict[str, Any]]:
        """End of a bounded input: close every window."""
        out = []
        for engine in self.engines:
            out += engine.flush_all().summaries
        self.counts["summaries"] += len(out)
        return out

    def metrics(self) -> dict[str, Any]:
        engine = {label: e.metrics() for label, e in zip(self.labels, self.engines, strict=True)}
        return {
            **self.counts,
            "rejected": dict(self.validator.counts),
            "windows": engine,
            "incidents": dict(self.incidents.counts),
        }

    def close(self) -> None:
        for engine in self.engines:
            engine.close()


def _label(window: Window) -> str:
    """A short name of a window spec, used for its state dir and the late topic header."""
    text = _duration(window.size)
    if window.hop and window.hop != window.size:
        text += f"-hop{_duration(window.hop)}"
    return text


def _duration(ms: int) -> str:
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
