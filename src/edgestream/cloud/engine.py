"""The fleet job's logic in one object: dedup, watermarks, fleet stats, drift, triggers.

:class:`FleetEngine` gets decoded records of the cloud topics with their partition and offset
and returns what to write: ``("stats", key, FleetStats row)`` and ``("retrain", key,
RetrainRequest)``. The Flink job (:mod:`edgestream.cloud.job`) only moves bytes in and out;
everything here is plain Python, so it is tested without Flink and checked against an
independent offline reference.

* Replays from the forwarders are dropped first (:class:`edgestream.forward.dedup.
  Deduplicator`: ``gateway_id`` + ``gateway_seq``, else the record id); samples by
  ``device_id`` + ``seq``.
* Watermarks: one per input (summaries drive fleet stats, samples drive drift), per partition
  ``max event time - max_out_of_orderness``, idle partitions skipped
  (:class:`edgestream.edge.watermarks.Watermarks`); a summary's event time is its
  ``window_start`` (so a cloud window closes when summaries of a later window arrive, not at
  the first summary of its own last window), a sample's its ``ts``. Every partition of an
  input holds its watermark back from the start (:meth:`FleetEngine.assign`). Alerts never
  move a watermark (they travel ahead of the summaries of their window): they count while
  their window is open, else as late.
* Triggers: a drift verdict ``major`` for a device type, or a fleet-stats row of a device type
  with ``anomaly_rate > anomaly_rate_threshold`` over at least ``min_readings`` readings, is a
  crossing window for :class:`edgestream.cloud.triggers.Triggers` (cooldown, one request per
  episode); the data pointer is the samples' offset ranges of the crossing window.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

from edgestream.cloud.drift import DriftMonitor, DriftVerdict, ModelInfo
from edgestream.cloud.stats import FleetStats
from edgestream.cloud.triggers import Triggers, retrain_request
from edgestream.core.topology import Topology
from edgestream.edge.watermarks import Watermarks
from edgestream.edge.window_types import WindowSpec
from edgestream.forward.dedup import Deduplicator

log = logging.getLogger(__name__)

__all__ = ["FleetEngine", "Output", "source_window_ms", "topology_models"]

Output = tuple[str, str, dict[str, Any]]


def _now_ms() -> int:
    return int(time.time() * 1000)


def source_window_ms(topology: Topology) -> int:
    """The edge window size whose device summaries the fleet job aggregates: the smallest
    tumbling window of the topology (other sizes repeat the same readings)."""
    sizes = [w.size for w in topology.windows if not getattr(w, "hop", None)]
    return min(sizes or [w.size for w in topology.windows])


def topology_models(topology: Topology) -> dict[str, ModelInfo]:
    """The topology's model per device type with its sidecar baseline (when there is one)."""
    import json

    out = {}
    for dtype, spec in topology.models.items():
        sidecar = Path(topology.resolve_path(spec.path)).with_suffix(".json")
        sha, baseline = None, None
        if sidecar.exists():
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
            sha = meta.get("sha256")
            baseline = {c: {"channel": c, **b} for c, b in (meta.get("baseline") or {}).items()}
        out[dtype] = ModelInfo(spec.name, str(spec.version), sha, baseline or None)
    return out


class FleetEngine:
    """Fleet analytics + drift + retraining triggers over decoded cloud records."""

    def __init__(self, topology: Topology) -> None:
        jobs = topology.cloud.jobs
        fs, dj, rj = jobs.fleet_stats, jobs.drift, jobs.retrain
        topics = topology.forwarding.topics
        self.summaries_topic, self.alerts_topic = topics.summaries, topics.alerts
        self.samples_topic = getattr(topics, "samples", "fleet.samples")
        self.models_topic = topology.cloud.models_topic
        self.stats = FleetStats(
            fs.window, fs.allowed_lateness, fs.worst_n, source_window_ms(topology)
        )
        self.models = topology_models(topology)
        self.drift = DriftMonitor(
            dj.window,
            {t: topology.features_for(t) for t in topology.device_types},
            self.models,
            psi_major=dj.psi_major,
            psi_minor=dj.psi_minor,
            ks_threshold=dj.ks_threshold,
            min_samples=dj.min_samples,
            reference=getattr(dj, "reference", "model"),
            reference_lag=getattr(dj, "reference_lag", 2),
            samples_topic=self.samples_topic,
        )
        self.triggers = Triggers(rj.cooldown, getattr(rj, "quiet_windows", 2))
        self.anomaly_rate_threshold = rj.anomaly_rate_threshold
        self.min_readings = getattr(rj, "min_readings", 1000)

        def marks(size: int) -> Watermarks:
            spec = WindowSpec(
                size,
                max_out_of_orderness_ms=fs.max_out_of_orderness,
                idle_timeout_ms=fs.idle_timeout,
            )
            return Watermarks(spec)

        self.wm_stats, self.wm_samples = marks(fs.window), marks(dj.window)
        self.dedup = Deduplicator()
        self.sample_ids = Deduplicator(window=1)
        # the latest judged windows (for inspection; bounded: the job runs for months)
        self.verdicts: deque[DriftVerdict] = deque(maxlen=1000)
        self.counts: Counter[str] = Counter()
        self._rate_seen: set[tuple[int, str]] = set()

    # -- input -----------------------------------------------------------------------------
    def assign(self, topic: str, partitions: list[int], now_ms: int) -> None:
        """The partitions of an input topic: each holds its watermark back from the start
        (until it delivers or goes idle), not only once its first record arrived."""
        if topic == self.summaries_topic:
            self.wm_stats.assign(list(partitions), now_ms)
        elif topic == self.samples_topic:
            self.wm_samples.assign(list(partitions), now_ms)

    def process(
        self, topic: str, partition: int, offset: int, record: dict[str, Any], now_ms: int
    ) -> list[Output]:
        """One decoded record of a cloud topic; the outputs it makes due (often none)."""
        if topic == self.summaries_topic:
            if "window_start" not in record or "channels" not in record:
                raise ValueError("not a WindowSummary (no window_start / channels)")
            # an original window's summary_id is null on the wire: gateway_seq decides
            if not self.dedup.accept_record(record):
                self.counts["duplicates"] += 1
                return []
            # the cloud wire form (WindowSummary v2) leaves derivable values out: the stats
            # read only count / sum (exact Decimals expanded) / m2 of each channel
            # (:func:`edgestream.cloud.stats.channel_parts`), not complete_summary()'s copy
            self.counts[f"summaries_{self.stats.add_summary(record)}"] += 1
            self.wm_stats.observe(partition, int(record["window_start"]), offset, now_ms)
            if self.wm_stats.candidate(now_ms) > self.stats.watermark:
                return self._advance_stats(now_ms)
            return []
        if topic == self.alerts_topic:
            if not self.dedup.accept_record(record):
                self.counts["duplicates"] += 1
                return []
            self.counts[f"alerts_{self.stats.add_alert(record)}"] += 1
            return []
        if topic == self.samples_topic:
            rid = f"{record.get('device_id')}|{record.get('seq')}"
            if not self.sample_ids.accept(None, None, rid):
                self.counts["duplicates"] += 1
                return []
            self.counts[f"samples_{self.drift.add_sample(record, partition, offset)}"] += 1
            self.wm_samples.observe(partition, int(record["ts"]), offset, now_ms)
            if self.wm_samples.candidate(now_ms) > self.drift.watermark:
                return self._advance_drift(now_ms)
            return []
        if topic == self.models_topic:
            self.drift.add_model_update(record)
            self.counts["model_updates"] += 1
            return []
        self.counts["unknown_topic"] += 1
        return []

    def tick(self, now_ms: int) -> list[Output]:
        """Processing time passed: idle partitions stop holding the watermarks back."""
        out = []
        if self.wm_stats.candidate(now_ms) > self.stats.watermark:
            out += self._advance_stats(now_ms)
        if self.wm_samples.candidate(now_ms) > self.drift.watermark:
            out += self._advance_drift(now_ms)
        return out

    def flush(self, now_ms: int | None = None) -> list[Output]:
        """End of a bounded input: every window closes (drift first: its data pointers)."""
        now = _now_ms() if now_ms is None else now_ms
        out = self._verdicts(self.drift.flush(), now)
        return out + self._rows(self.stats.flush(now), now)

    # -- output ----------------------------------------------------------------------------
    def _advance_stats(self, now_ms: int) -> list[Output]:
        wm = self.wm_stats.candidate(now_ms)
        self.wm_stats.value = wm
        return self._rows(self.stats.advance(wm, _now_ms()), now_ms)

    def _advance_drift(self, now_ms: int) -> list[Output]:
        wm = self.wm_samples.candidate(now_ms)
        self.wm_samples.value = wm
        return self._verdicts(self.drift.advance(wm), now_ms)

    def _rows(self, rows: list[dict[str, Any]], now_ms: int) -> list[Output]:
        out: list[Output] = []
        for row in rows:
            key = f"{row['window_start']}|{row['scope']}|{row['scope_key']}"
            out.append(("stats", key, row))
            if row["scope"] == "device_type":  # judged once, at the window's first firing
                out += self._rate_trigger(row, now_ms)
        return out

    def _rate_trigger(self, row: dict[str, Any], now_ms: int) -> list[Output]:
        dtype = row["scope_key"]
        model = self.drift.models.get(dtype)
        if model is None or (row["window_start"], dtype) in self._rate_seen:
            return []
        self._rate_seen.add((row["window_start"], dtype))
        judged = row["reading_count"] >= self.min_readings
        crossing = judged and row["anomaly_rate"] > self.anomaly_rate_threshold
        window = (row["window_start"], row["window_end"])
        key = self.triggers.observe((model.name, "device_type", dtype), *window, crossing)
        if key is None:
            return []
        feature = {
            "feature": "anomaly_rate",
            "statistic": "anomaly_rate",
            "value": row["anomaly_rate"],
            "threshold": self.anomaly_rate_threshold,
            "sample_count": row["reading_count"],
        }
        request = retrain_request(
            key, "anomaly_rate", "major", _model_dict(model), ("device_type", dtype), window,
            [feature], self.drift.ranges(dtype, *window), now_ms,
        )  # fmt: skip
        return [("retrain", key, request)]

    def _verdicts(self, verdicts: list[DriftVerdict], now_ms: int) -> list[Output]:
        out: list[Output] = []
        for v in verdicts:
            self.verdicts.append(v)
            self.counts[f"drift_{v.severity}"] += 1
            log.info("drift %s", describe(v))
            if v.model is None or v.severity == "unjudged":
                continue
            crossing = v.severity == "major"
            key = self.triggers.observe(
                (v.model.name, "device_type", v.device_type), v.start, v.end, crossing
            )
            if key is None:
                continue
            request = retrain_request(
                key, "drift", "major", _model_dict(v.model), ("device_type", v.device_type),
                (v.start, v.end), v.features, self.drift.ranges(v.device_type, v.start, v.end),
                now_ms,
            )  # fmt: skip
            out.append(("retrain", key, request))
        return out


def describe(v: DriftVerdict) -> str:
    """One log line of a judged window: type, window, samples, verdict, worst statistics.

    >>> describe(DriftVerdict("pump", 0, 30_000, 90, None, "major",
    ...     [{"feature": "t", "statistic": "psi", "value": 0.41, "threshold": 0.25}]))
    'pump [0, 30000) samples=90 major psi(t)=0.410/0.25'
    """
    worst: dict[str, dict[str, Any]] = {}
    for f in v.features:
        best = worst.get(f["statistic"])
        if best is None or f["value"] > best["value"]:
            worst[f["statistic"]] = f
    stats = " ".join(
        f"{k}({f['feature']})={f['value']:.3f}/{f['threshold']:g}" for k, f in sorted(worst.items())
    )
    return f"{v.device_type} [{v.start}, {v.end}) samples={v.samples} {v.severity} {stats}".rstrip()


def _model_dict(model: ModelInfo) -> dict[str, Any]:
    return {"name": model.name, "version": model.version, "sha256": model.sha256}
