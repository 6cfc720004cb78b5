"""Event-level detection quality: incidents from scores, matched against labelled episodes.

The incident rule is the gateway's (:class:`IncidentRule`): a reading is anomalous when its
score is > ``threshold``; per device (readings in time order) an incident opens at the first
run of ``consecutive`` anomalous readings in a row, every anomalous reading at most ``gap``
normal readings after the incident's last anomalous one extends it, the next one after a
longer pause starts over. It approximates the gateway's
:class:`~edgestream.edge.incidents.IncidentTracker` (which counts a pause in event time,
``cooldown``, not in readings); to measure what the gateway really does, rebuild incidents
from its alerts with :func:`incidents_from_alerts` (or :func:`alert_spans`, one per alert).

Matching: an episode (device, start_ts, end_ts) is *detected* when an incident of its device
overlaps ``[start_ts - tolerance_ms, end_ts + tolerance_ms]``; an incident is *true* when it
overlaps such an episode window, else a *false alert*. recall = detected / episodes,
precision = true incidents / incidents.

>>> rule = IncidentRule(threshold=0.5, consecutive=2, gap=1)
>>> ids = ["a"] * 8
>>> incidents = incidents_from_scores(ids, range(8), [0, .9, .9, 0, .9, 0, 0, .9], rule)
>>> [(i.first_ts, i.last_ts, i.readings) for i in incidents]
[(1, 4, 3)]
>>> episodes = [Episode("a", "spike", 2, 3), Episode("a", "stuck", 20, 25)]
>>> m = event_metrics(episodes, incidents, tolerance_ms=0)
>>> m.recall, m.precision, m.false_alerts
(0.5, 1.0, 0)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from edgestream.ml.data import BATCH, Episode, SimReadings
from edgestream.ml.features import FeatureExtractor

if TYPE_CHECKING:
    from edgestream.ml.scorer import OnnxScorer


class EpisodeLike(Protocol):
    device_id: str
    type: str
    start_ts: int
    end_ts: int


@dataclass(frozen=True)
class IncidentRule:
    """Score threshold plus the gateway's incident rule (see the module docstring)."""

    threshold: float
    consecutive: int = 1
    gap: int = 0


@dataclass(frozen=True)
class Incident:
    """One alert: a device's anomalous readings from ``first_ts`` to ``last_ts``."""

    device_id: str
    first_ts: int
    last_ts: int
    readings: int  # anomalous readings in it
    peak: float  # highest score


@dataclass
class EventMetrics:
    """Event-level recall and precision, overall and per anomaly kind."""

    recall: float
    precision: float
    episodes: int
    detected: int
    incidents: int
    false_alerts: int
    per_kind: dict[str, dict[str, float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["recall"] = round(self.recall, 6)
        data["precision"] = round(self.precision, 6)
        return data


def incidents_from_scores(
    device_ids: Sequence[str] | np.ndarray,
    ts: Iterable[int] | np.ndarray,
    scores: Iterable[float] | np.ndarray,
    rule: IncidentRule,
) -> list[Incident]:
    """Incidents per device (readings taken in time order), sorted by first_ts."""
    ids = np.asarray(device_ids, dtype=str)
    t = np.asarray(list(ts) if not isinstance(ts, np.ndarray) else ts, dtype=np.int64)
    s = np.asarray(list(scores) if not isinstance(scores, np.ndarray) else scores, dtype=float)
    found: list[Incident] = []
    for device in np.unique(ids):
        rows = np.flatnonzero(ids == device)
        rows = rows[np.argsort(t[rows], kind="stable")]
        hot = s[rows] > rule.threshold
        edges = np.diff(np.r_[0, hot.astype(np.int8), 0])
        run_starts, run_ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
        current: list[int] | None = None  # [first, last, anomalous readings]
        for a, b in zip(run_starts.tolist(), run_ends.tolist(), strict=True):
            if current is not None and a - current[1] - 1 <= rule.gap:
                current[1] = b
                current[2] += b - a + 1
                continue
            if current is not None:
                found.append(_incident(str(device), rows, t, s, current))
                current = None
            if b - a + 1 >= rule.consecutive:
                current = [a, b, b - a + 1]
        if current is not None:
            found.append(_incident(str(device), rows, t, s, current))
    found.sort(key=lambda i: (i.first_ts, i.device_id))
    return found


def _incident(
    device: str, rows: np.ndarray, t: np.ndarray, s: np.ndarray, span: list[int]
) -> Incident:
    a, b, count = span
    inside = rows[a : b + 1]
    return Incident(device, int(t[rows[a]]), int(t[rows[b]]), count, float(s[inside].max()))


def incidents_from_alerts(alerts: Iterable[Mapping[str, Any]]) -> list[Incident]:
    """The gateway's incidents, rebuilt from its AnomalyAlert records (any order, duplicates
    of a replay included): one per ``incident_id``, from its ``first_ts`` to the largest
    ``last_ts`` of its alerts (updates and the ``resolved`` alert extend it), sorted by
    first_ts. ``readings`` is the largest ``reading_count``, ``peak`` the highest score of a
    triggering reading.

    >>> base = {"device_id": "d", "incident_id": "gw|d|r|100", "first_ts": 100}
    >>> alerts = [
    ...     {**base, "status": "open", "last_ts": 100, "reading_count": 1,
    ...      "readings": [{"seq": 1, "ts": 100, "score": 0.7}]},
    ...     {**base, "status": "update", "last_ts": 900, "reading_count": 3,
    ...      "readings": [{"seq": 9, "ts": 900, "score": 0.9}]},
    ...     {**base, "status": "resolved", "last_ts": 1000, "reading_count": 4, "readings": []},
    ... ]
    >>> incidents_from_alerts(alerts)
    [Incident(device_id='d', first_ts=100, last_ts=1000, readings=4, peak=0.9)]
    """
    spans: dict[str, list[Any]] = {}  # incident id -> [device, first, last, readings, peak]
    for alert in alerts:
        peak = max((float(r["score"]) for r in alert.get("readings") or ()), default=-np.inf)
        span = spans.setdefault(
            alert["incident_id"],
            [alert["device_id"], alert["first_ts"], alert["last_ts"], 0, -np.inf],
        )
        span[1] = min(span[1], int(alert["first_ts"]))
        span[2] = max(span[2], int(alert["last_ts"]))
        span[3] = max(span[3], int(alert.get("reading_count") or 0))
        span[4] = max(span[4], peak)
    found = [Incident(str(d), int(a), int(b), n, float(p)) for d, a, b, n, p in spans.values()]
    found.sort(key=lambda i: (i.first_ts, i.device_id))
    return found


def alert_spans(alerts: Iterable[Mapping[str, Any]]) -> list[Incident]:
    """Every ``open`` and ``update`` alert on its own, spanning only the readings it carries
    (its triggering readings' ``ts``; the alert's ``ts`` when it lists none): the strict view,
    in which an episode counts as detected only when an alert names one of its readings, not
    when it merely falls inside a longer incident. ``resolved`` alerts are not detections.
    Duplicates (same ``alert_id``) count once.

    >>> alerts = [
    ...     {"alert_id": "i|0", "device_id": "d", "status": "open", "ts": 100,
    ...      "reading_count": 1, "readings": [{"seq": 1, "ts": 100, "score": 0.7}]},
    ...     {"alert_id": "i|resolved", "device_id": "d", "status": "resolved", "ts": 5000,
    ...      "reading_count": 1, "readings": []},
    ... ]
    >>> alert_spans(alerts)
    [Incident(device_id='d', first_ts=100, last_ts=100, readings=1, peak=0.7)]
    """
    seen: dict[str, Incident] = {}
    for alert in alerts:
        if alert["status"] == "resolved" or alert["alert_id"] in seen:
            continue
        readings = alert.get("readings") or []
        times = [int(r["ts"]) for r in readings] or [int(alert["ts"])]
        peak = max((float(r["score"]) for r in readings), default=float(alert.get("score", 0)))
        seen[alert["alert_id"]] = Incident(
            str(alert["device_id"]), min(times), max(times), len(readings), peak
        )
    return sorted(seen.values(), key=lambda i: (i.first_ts, i.device_id))


def event_metrics(
    episodes: Iterable[EpisodeLike], incidents: Iterable[Incident], tolerance_ms: int = 0
) -> EventMetrics:
    """Match incidents to episodes (see the module docstring)."""
    eps = list(episodes)
    incs = list(incidents)
    detected = np.zeros(len(eps), dtype=bool)
    true_inc = np.zeros(len(incs), dtype=bool)
    by_device: dict[str, list[int]] = {}
    for i, inc in enumerate(incs):
        by_device.setdefault(inc.device_id, []).append(i)
    for e, ep in enumerate(eps):
        lo, hi = ep.start_ts - tolerance_ms, ep.end_ts + tolerance_ms
        for i in by_device.get(ep.device_id, []):
            if incs[i].first_ts <= hi and incs[i].last_ts >= lo:
                detected[e] = True
                true_inc[i] = True
    per_kind: dict[str, dict[str, float]] = {}
    for kind in sorted({ep.type for ep in eps}):
        mask = np.array([ep.type == kind for ep in eps])
        total, hit = int(mask.sum()), int(detected[mask].sum())
        per_kind[kind] = {"episodes": total, "detected": hit, "recall": round(hit / total, 6)}
    return EventMetrics(
        recall=float(detected.mean()) if eps else 1.0,
        precision=float(true_inc.mean()) if incs else 1.0,
        episodes=len(eps),
        detected=int(detected.sum()),
        incidents=len(incs),
        false_alerts=int((~true_inc).sum()),
        per_kind=per_kind,
    )


def score_readings(
    readings: SimReadings, scorer: OnnxScorer, extractor: FeatureExtractor, batch: int = BATCH
) -> np.ndarray:
    """Scores of every reading, fed through features and model in gateway-sized batches."""
    values = readings.columns(extractor.channels)
    out = np.empty(len(readings.ts))
    for i in range(0, len(out), batch):
        sl = slice(i, i + batch)
        feats = extractor.transform(readings.device_ids[sl], readings.ts[sl], values[sl])
        out[sl] = scorer.score(feats)
    return out


def evaluate_readings(
    readings: SimReadings,
    scorer: OnnxScorer,
    extractor: FeatureExtractor,
    rule: IncidentRule,
    tolerance_ms: int,
) -> EventMetrics:
    """Score labelled readings, form incidents with ``rule`` and match them to episodes."""
    scores = score_readings(readings, scorer, extractor)
    incidents = incidents_from_scores(readings.device_ids, readings.ts, scores, rule)
    return event_metrics(readings.episodes, incidents, tolerance_ms)


@dataclass
class FleetRun:
    """Scores and incidents of a labelled simulator run, every device type together."""

    episodes: list[Episode]
    incidents: list[Incident]
    metrics: EventMetrics
    per_type: dict[str, EventMetrics]


def evaluate_fleet(
    config: Any, models: dict[str, Path | str], tolerance_readings: int = 3
) -> FleetRun:
    """Event metrics of a whole simulated fleet, each device type scored by its model.

    ``config`` is a :class:`~edgestream.sim.config.SimConfig`; ``models`` maps a device
    type to its ONNX path (sidecar beside it). Each model's sidecar ``rule`` is used.
    """
    from edgestream.ml.data import simulate_readings
    from edgestream.ml.scorer import OnnxScorer

    tolerance = round(tolerance_readings * 1000 / config.rate)
    episodes: list[Episode] = []
    incidents: list[Incident] = []
    per_type = {}
    for device_type in config.device_types:
        scorer = OnnxScorer.load(models[device_type])
        meta = scorer.meta
        rule = IncidentRule(meta.threshold, **meta.rule)
        readings = simulate_readings(config, device_type)
        scores = score_readings(readings, scorer, FeatureExtractor.from_config(meta.features))
        found = incidents_from_scores(readings.device_ids, readings.ts, scores, rule)
        per_type[device_type] = event_metrics(readings.episodes, found, tolerance)
        episodes += readings.episodes
        incidents += found
    return FleetRun(episodes, incidents, event_metrics(episodes, incidents, tolerance), per_type)
