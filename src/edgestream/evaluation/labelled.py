"""Detection quality of a model on labelled recordings, through the gateway's own path.

``edgestream models evaluate MODEL --data FILE...``: the model takes the place of the
topology's model for one device type and every file is replayed through that topic's
pipeline (:func:`~edgestream.evaluation.replay.replay`: features -> model -> the topology's
incident rules), streaming. Measured against the files' labels:

* **per point**: a reading is flagged when its score exceeds the rule's threshold (what the
  incident rules count as anomalous); precision, recall, F1, false-alarm rate
  (FP / normal readings) and missed-alarm rate (FN / anomalous readings);
* **per event**: an episode is a run of labelled readings of one device; it is detected when
  an incident (rebuilt from the gateway's alerts) overlaps it; incident precision and
  false alerts as :func:`~edgestream.ml.evaluate.event_metrics` counts them, and the event
  F1 of event recall and incident precision (how well the model finds the anomalies);
* **detection delay**: from an episode's first reading to the first alert of its device
  emitted inside it (event time).

A labelled file is a history file (CSV or Parquet, :mod:`edgestream.sim.history`) with
``timestamp`` (``YYYY-MM-DD HH:MM:SS`` or epoch ms), the device type's channels (``value``
for one-channel files), ``label`` (1 = anomalous) and optionally ``device_id`` (default:
the file's stem). NAB's data files with a label column,
or ``eval nab --out`` results, read as they are.

>>> flags = np.array([1, 1, 0, 0, 1, 0], bool)
>>> labels = np.array([1, 0, 0, 1, 1, 0], bool)
>>> m = point_metrics(flags, labels)
>>> m["tp"], m["fp"], m["fn"], m["tn"], m["precision"], m["false_alarm_rate"]
(2, 1, 1, 2, 0.666667, 0.333333)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgestream.core.topology import Topology
from edgestream.core.topology.detection import ModelSpec
from edgestream.evaluation.exceptions import EvaluationError
from edgestream.evaluation.replay import Recording, replay, sensor_topic
from edgestream.ml.data import Episode
from edgestream.ml.evaluate import event_metrics, incidents_from_alerts

ONLINE = "online"


@dataclass(frozen=True)
class Labelled:
    """A recording and its per-reading labels (in the recording's time order)."""

    source: str
    recording: Recording
    labels: np.ndarray  # bool


def read_labelled(
    path: Path, channels: Sequence[str], mapping: Mapping[str, str] | None = None
) -> Labelled:
    """A labelled history file (CSV or Parquet, :mod:`edgestream.sim.history`), sorted by
    time; ``mapping`` renames columns to channels, other columns are ignored."""
    from edgestream.sim.exceptions import ReplayError
    from edgestream.sim.history import read_history

    try:
        history = read_history(
            path,
            channels=channels,
            mapping=mapping,
            device_id=Path(path).stem,
            extra_columns="ignore",
        )
    except ReplayError as error:
        raise EvaluationError(f"labelled file {error}") from None
    if history.labels is None:
        raise EvaluationError(
            f"{Path(path).name}: row 1, column 'label': missing (a labelled file has "
            f"timestamp, {', '.join(channels)}, label and optionally device_id)"
        )
    rec = Recording(history.device_id, history.ts, history.columns(channels), tuple(channels))
    order = np.argsort(history.ts, kind="stable")
    return Labelled(str(path), rec.in_time_order(), history.labels[order])


def with_model(topology: Topology, device_type: str, model: str) -> Topology:
    """``topology`` with ``model`` scoring ``device_type``: ``online`` (the in-stream
    detector, with the topology's settings when it already has one) or an ONNX file."""
    spec = topology.models.get(device_type)
    base: dict[str, Any] = spec.model_dump() if spec is not None else {}
    if model == ONLINE:
        update = {"kind": ONLINE, "path": None, "name": f"{device_type}-online"}
        update["version"] = base.get("version") if base.get("kind") == ONLINE else ONLINE
    else:
        path = Path(model).resolve()
        if not path.is_file():
            raise EvaluationError(f"model {model} not found: give an ONNX file or 'online'")
        update = {"kind": "onnx", "path": path, "name": path.stem, "version": path.stem}
        update["threshold"] = None  # the model's own calibrated threshold
    new = ModelSpec.model_validate({**base, **update})
    return topology.model_copy(update={"models": {**topology.models, device_type: new}})


def point_metrics(flags: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Confusion counts and rates of per-reading flags against labels."""
    tp = int((flags & labels).sum())
    fp = int((flags & ~labels).sum())
    fn = int((~flags & labels).sum())
    tn = int((~flags & ~labels).sum())
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "precision": round(precision, 6),
        "recall": round(recall, 6),
        "f1": round(f1, 6),
        "false_alarm_rate": round(fp / (fp + tn), 6) if fp + tn else 0.0,
        "missed_alarm_rate": round(fn / (fn + tp), 6) if fn + tp else 0.0,
    }


def episodes_of(data: Labelled) -> list[Episode]:
    """Runs of labelled readings per device (time order) as episodes."""
    out: list[Episode] = []
    rec = data.recording
    for device in dict.fromkeys(rec.device_id.tolist()):
        rows = np.flatnonzero(rec.device_id == device)
        hot = data.labels[rows].astype(np.int8)
        edges = np.diff(np.r_[0, hot, 0])
        for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1, strict=True):
            out.append(Episode(str(device), "labelled", int(rec.ts[rows[a]]), int(rec.ts[rows[b]])))
    return out


def event_f1(recall: float, precision: float) -> float:
    """Harmonic mean of event recall (episodes detected) and incident precision.

    >>> event_f1(0.982759, 1.0)
    0.991305
    """
    total = recall + precision
    return round(2 * recall * precision / total, 6) if total else 0.0


def detection_delays(episodes: list[Episode], alerts: list[dict[str, Any]]) -> list[int | None]:
    """Per episode: ms from its start to the first open/update alert of its device emitted
    inside it (None: no alert inside)."""
    out: list[int | None] = []
    for ep in episodes:
        times = [
            int(a["ts"])
            for a in alerts
            if a["device_id"] == ep.device_id
            and a["status"] != "resolved"
            and ep.start_ts <= a["ts"] <= ep.end_ts
        ]
        out.append(min(times) - ep.start_ts if times else None)
    return out


@dataclass
class Quality:
    """One model's detection quality on the labelled files."""

    model: str
    version: str | None
    threshold: float | None
    readings: int = 0
    seconds: float = 0.0
    point: dict[str, Any] = field(default_factory=dict)
    event: dict[str, Any] = field(default_factory=dict)
    delay_ms: dict[str, float | None] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "threshold": self.threshold,
            "readings": self.readings,
            "us_per_reading": round(1e6 * self.seconds / max(self.readings, 1), 2),
            "point": self.point,
            "event": self.event,
            "delay_ms": self.delay_ms,
        }


def evaluate_model(
    topology: Topology,
    model: str,
    files: Sequence[Path],
    device_type: str | None = None,
    mapping: Mapping[str, str] | None = None,
) -> Quality:
    """Replay ``files`` through ``topology`` with ``model`` for ``device_type`` (default:
    the device type of the topology's first topic with a model) and measure."""
    dtype = device_type or sensor_topic(topology).device_type
    topics = topology.topics_for(dtype)
    if not topics:
        raise EvaluationError(f"topology {topology.name!r} has no sensor topic of {dtype!r}")
    topo = with_model(topology, dtype, model)
    channels = topo.model_inputs(dtype)
    flags, labels, alerts, episodes = [], [], [], []
    quality = Quality(model if model == ONLINE else Path(model).name, None, None)
    for path in files:
        data = read_labelled(Path(path), channels, mapping)
        run = replay(topo, data.recording, topics[0].name)
        quality.version, quality.threshold = run.model_version, run.threshold
        quality.readings += len(run.scores)
        quality.seconds += run.seconds
        threshold = run.threshold if run.threshold is not None else np.inf
        flags.append(np.nan_to_num(run.scores, nan=-np.inf) > threshold)
        labels.append(data.labels)
        alerts += run.alerts
        episodes += episodes_of(data)
    quality.point = point_metrics(np.concatenate(flags), np.concatenate(labels))
    metrics = event_metrics(episodes, incidents_from_alerts(alerts))
    quality.event = {k: v for k, v in metrics.as_dict().items() if k != "per_kind"}
    quality.event["f1"] = event_f1(quality.event["recall"], quality.event["precision"])
    delays = [d for d in detection_delays(episodes, alerts) if d is not None]
    quality.delay_ms = {
        "mean": float(np.mean(delays)) if delays else None,
        "median": float(np.median(delays)) if delays else None,
        "max": float(np.max(delays)) if delays else None,
    }
    return quality
