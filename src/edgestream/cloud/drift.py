"""Drift of sampled readings against a reference distribution, per device type and window.

Pure logic. Sampled readings (``fleet.samples``: SensorReading, 1 in ``every`` per device)
fall into tumbling event-time windows per device type; when the watermark passes a window's
end, each model channel of the window is compared with its reference by PSI (decile bins)
and the KS distance at the bin edges (:mod:`edgestream.ml.drift`). A window with fewer than
``min_samples`` readings is not judged. A channel drifts *majorly* when PSI > ``psi_major``
and KS > ``ks_threshold`` (PSI alone reacts to every wobble of a small fleet's mixture, KS
alone to little; both together kept one simulated stationary hour quiet); *minorly* when
PSI > ``psi_minor``.

The reference (topology ``cloud.jobs.drift.reference``):

* ``model``: the training baseline of the live model: the baseline of the latest promoted
  ModelUpdate of the device type's model on ``fleet.models``, else the sidecar of the
  topology's model file.
* ``lagged``: the same device type's samples ``reference_lag`` windows earlier (deciles of
  that window). Measured reason: the shipped models were trained on another simulated fleet
  and hour of the day, and their baselines give PSI 1-6 on stationary data of the default
  fleet; a lagged reference follows slow daily cycles and still sees a drift's ramp.
* ``first``: the first *full* window (it starts at or after the type's first sample) with
  ``min_samples`` readings since the live model went live: the data as the model met it
  here. A promotion or rollback starts a new reference. Unlike ``lagged`` it cannot miss a
  drift whose ramp straddles two windows; it also sees slow cycles, so use it for demos
  and short windows, ``model`` once baselines come from this fleet.

Each closed window remembers, per partition of the samples topic, the offset range of its
samples: :meth:`DriftMonitor.ranges` is the data pointer of a RetrainRequest.

>>> import numpy as np
>>> base = {"x": {"edges": [float(e) for e in range(1, 10)], "fractions": [0.1] * 10}}
>>> mon = DriftMonitor(1000, {"pump": ("x",)}, {"pump": ModelInfo("m", "v1", None, base)},
...                    min_samples=50, samples_topic="fleet.samples")
>>> for i in range(100):
...     _ = mon.add_sample({"device_type": "pump", "ts": i, "channels": {"x": i % 10 + 0.5}},
...                        partition=0, offset=i)
>>> for i in range(100):
...     _ = mon.add_sample({"device_type": "pump", "ts": 1000 + i, "channels": {"x": 9.5}},
...                        partition=0, offset=100 + i)
>>> [(v.start, v.severity) for v in mon.advance(1999)]
[(0, None), (1000, 'major')]
>>> mon.ranges("pump", 1000, 2000)
[{'topic': 'fleet.samples', 'partition': 0, 'start_offset': 100, 'end_offset': 200}]
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from edgestream.ml.artifact import decile_baseline
from edgestream.ml.drift import channel_drift
from edgestream.wire.topics import FLEET

__all__ = ["DriftMonitor", "DriftVerdict", "ModelInfo"]


@dataclass(frozen=True)
class ModelInfo:
    """The live model of a device type and its training baseline (channel -> record)."""

    name: str
    version: str
    sha256: str | None
    baseline: dict[str, dict[str, Any]] | None


@dataclass
class DriftVerdict:
    """The judgement of one closed window of one device type."""

    device_type: str
    start: int
    end: int
    samples: int
    model: ModelInfo | None
    severity: str | None  # "major", "minor", None (no drift) or "unjudged"
    features: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""


@dataclass
class _Window:
    values: dict[str, list[float]] = field(default_factory=dict)
    samples: int = 0
    offsets: dict[int, list[int]] = field(default_factory=dict)  # partition -> [lo, hi]


@dataclass
class _Closed:
    start: int
    end: int
    samples: int
    values: dict[str, np.ndarray]
    offsets: dict[int, list[int]]


class DriftMonitor:
    """Sample windows per device type, judged against a reference (see the module doc)."""

    def __init__(
        self,
        window_ms: int,
        channels: dict[str, tuple[str, ...]],
        models: dict[str, ModelInfo],
        psi_major: float = 0.25,
        psi_minor: float = 0.1,
        ks_threshold: float = 0.2,
        min_samples: int = 500,
        reference: Literal["model", "lagged", "first"] = "model",
        reference_lag: int = 2,
        samples_topic: str = FLEET["samples"],
        keep_windows: int = 64,
    ) -> None:
        self.window_ms = window_ms
        self.channels = channels
        self.models = dict(models)
        self.psi_major, self.psi_minor, self.ks_threshold = psi_major, psi_minor, ks_threshold
        self.min_samples = min_samples
        self.reference = reference
        self.reference_lag = reference_lag
        self.samples_topic = samples_topic
        self.open: dict[tuple[str, int], _Window] = {}
        self.closed: dict[str, deque[_Closed]] = {}
        self.keep_windows = keep_windows
        self.watermark = -(2**62)
        self.updates: list[dict[str, Any]] = []  # candidates, for baselines of promotions
        self.first_ts: dict[str, int] = {}  # device type -> its earliest sample's event time
        self.first_ref: dict[str, dict[str, Any]] = {}  # reference="first": per device type
        self.stats: Counter[str] = Counter()

    # -- models ----------------------------------------------------------------------------
    def add_model_update(self, update: dict[str, Any]) -> None:
        """Follow ``fleet.models``: a ``promote`` (or ``rollback`` to a parent) makes a
        published version live; its candidate record carries the baseline."""
        action = update.get("action", "candidate")
        if action == "candidate":
            self.updates.append(update)
            return
        version = update.get("version")
        if action == "rollback":
            version = update.get("parent_version") or version
        if action not in ("promote", "rollback") or version is None:
            return
        found = [
            u
            for u in self.updates
            if u["model_name"] == update["model_name"] and u["version"] == version
        ]
        source = found[-1] if found else update
        dtype = source.get("device_type") or update.get("device_type")
        if dtype is None:
            dtype = next(
                (t for t, m in self.models.items() if m.name == update["model_name"]), None
            )
        if dtype is None:
            return
        baseline = {b["channel"]: b for b in source.get("baseline") or []} or None
        current = self.models.get(dtype)
        if baseline is None and current is not None and current.version == version:
            baseline = current.baseline
        self.models[dtype] = ModelInfo(
            update["model_name"], str(version), source.get("sha256"), baseline
        )
        self.first_ref.pop(dtype, None)  # reference="first": the new model meets new data
        self.first_ts.pop(dtype, None)
        self.stats["model_changes"] += 1

    # -- samples ---------------------------------------------------------------------------
    def add_sample(self, reading: dict[str, Any], partition: int, offset: int) -> str:
        """Add one (deduplicated) sampled reading; ``counted``, ``late`` or ``skipped``."""
        dtype = reading.get("device_type")
        chans = self.channels.get(dtype)  # type: ignore[arg-type]
        if chans is None:
            self.stats["skipped"] += 1
            return "skipped"
        ts = int(reading["ts"])
        start = ts - ts % self.window_ms
        if start + self.window_ms - 1 <= self.watermark:
            self.stats["late"] += 1
            return "late"
        if ts < self.first_ts.get(dtype, ts + 1):
            self.first_ts[dtype] = ts
        win = self.open.get((dtype, start))
        if win is None:
            win = self.open[(dtype, start)] = _Window({c: [] for c in chans})
        values = reading["channels"]
        for c in chans:
            v = values.get(c)
            if v is not None:
                win.values[c].append(v)
        win.samples += 1
        span = win.offsets.get(partition)
        if span is None:
            win.offsets[partition] = [offset, offset]
        else:
            span[0] = min(span[0], offset)
            span[1] = max(span[1], offset)
        self.stats["counted"] += 1
        return "counted"

    def advance(self, watermark: int) -> list[DriftVerdict]:
        """Close (and judge) the windows with ``end - 1 <= watermark``, oldest first."""
        self.watermark = max(self.watermark, watermark)
        due = sorted(
            (k for k in self.open if k[1] + self.window_ms - 1 <= self.watermark),
            key=lambda k: (k[1], k[0]),
        )
        verdicts = []
        for dtype, start in due:
            win = self.open.pop((dtype, start))
            closed = _Closed(
                start,
                start + self.window_ms,
                win.samples,
                {c: np.asarray(v, dtype=np.float64) for c, v in win.values.items()},
                win.offsets,
            )
            history = self.closed.setdefault(dtype, deque(maxlen=self.keep_windows))
            verdicts.append(self._judge(dtype, closed, history))
            history.append(closed)
        return verdicts

    def flush(self) -> list[DriftVerdict]:
        """End of a bounded input: close every window."""
        return self.advance(2**62)

    def _reference(self, dtype: str, closed: _Closed, history: deque[_Closed]):
        model = self.models.get(dtype)
        if self.reference == "model":
            return (model.baseline, "") if model and model.baseline else (None, "no baseline")
        if self.reference == "first":
            ref = self.first_ref.get(dtype)
            if ref is not None:
                return ref, ""
            if closed.start >= self.first_ts.get(dtype, closed.start):
                self.first_ref[dtype] = {
                    c: decile_baseline(v) for c, v in closed.values.items() if len(v)
                }
                return None, "reference window"
            return None, "partial window (before the first sample)"
        want = closed.start - self.reference_lag * self.window_ms
        ref = next((h for h in history if h.start == want), None)
        if ref is None or ref.samples < self.min_samples:
            return None, "no reference window"
        return {c: decile_baseline(v) for c, v in ref.values.items() if len(v)}, ""

    def _judge(self, dtype: str, closed: _Closed, history: deque[_Closed]) -> DriftVerdict:
        model = self.models.get(dtype)
        verdict = DriftVerdict(dtype, closed.start, closed.end, closed.samples, model, "unjudged")
        if closed.samples < self.min_samples:
            verdict.note = f"{closed.samples} < min_samples {self.min_samples}"
            return verdict
        baseline, note = self._reference(dtype, closed, history)
        if baseline is None:
            verdict.note = note
            return verdict
        major = minor = False
        for channel, values in closed.values.items():
            base = baseline.get(channel)
            if base is None or not len(values):
                continue
            p, k, n = channel_drift(base, values)
            major |= p > self.psi_major and k > self.ks_threshold
            minor |= p > self.psi_minor
            verdict.features += [
                {"feature": channel, "statistic": "psi", "value": p,
                 "threshold": self.psi_major, "sample_count": n},
                {"feature": channel, "statistic": "ks", "value": k,
                 "threshold": self.ks_threshold, "sample_count": n},
            ]  # fmt: skip
        verdict.severity = "major" if major else "minor" if minor else None
        return verdict

    def ranges(self, dtype: str, start: int, end: int) -> list[dict[str, Any]]:
        """OffsetRange records of the samples topic covering the closed windows of ``dtype``
        inside ``[start, end)`` (records of other types and times lie between: filter)."""
        spans: dict[int, list[int]] = {}
        for h in self.closed.get(dtype, ()):
            if h.start >= start and h.end <= end:
                for p, (lo, hi) in h.offsets.items():
                    cur = spans.setdefault(p, [lo, hi])
                    cur[0], cur[1] = min(cur[0], lo), max(cur[1], hi)
        return [
            {"topic": self.samples_topic, "partition": p, "start_offset": lo, "end_offset": hi + 1}
            for p, (lo, hi) in sorted(spans.items())
        ]
