"""Detection quality measured on the code the gateway runs (draft harness)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgestream.core.topology import Topology, load_topology
from edgestream.edge.features import FeatureExtractor
from edgestream.edge.incidents import IncidentTracker
from edgestream.ml.scorer import OnnxScorer
from edgestream.sim import SimConfig, Simulator
from edgestream.sim.labels import AnomalyLabel

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TOPOLOGY = ROOT / "topologies" / "default.yaml"
START = 1_718_000_000_000  # the training data's start (ml/train.py); seeds shift it by hours
TOLERANCE_MS = 300  # 3 readings at 10 Hz, as ml.evaluate.evaluate_fleet


def sim_config(seed: int, **changes: Any) -> SimConfig:
    params: dict[str, Any] = dict(
        devices=20,
        rate=10.0,
        duration=600.0,
        seed=seed,
        start_time=START + seed * 3_600_000,
        anomaly_rate=0.01,
        late_fraction=0.02,
        labels=None,
    )
    params.update(changes)
    return SimConfig(**params)


@dataclass
class _TopicState:
    """What a TopicPipeline keeps for anomaly detection: features, model, incidents."""

    channels: tuple[str, ...]
    features: FeatureExtractor
    scorer: OnnxScorer
    feature_cols: list[int]
    incidents: IncidentTracker
    pending: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class OfflineRun:
    alerts: list[dict[str, Any]]
    episodes: list[AnomalyLabel]
    readings: int
    scored: list[tuple[str, int, int, float]]  # (device, seq, ts, score) in arrival order
    counts: dict[str, dict[str, int]]


def run_offline(topology: Topology, config: SimConfig, batch: int = 500) -> OfflineRun:
    """The simulator's messages through features -> ONNX -> IncidentTracker, per gateway and
    sensor topic, in micro-batches of ``batch`` readings in arrival order (as TopicPipeline
    does after validation)."""
    sim = Simulator(config)
    gateway_of = {site: g.id for g in topology.gateways for site in g.sites}
    topics = {t.name: t for t in topology.sensors.topics}
    scorers = {t: OnnxScorer.load(topology.model_path(t)) for t in topology.device_types}
    states: dict[tuple[str, str], _TopicState] = {}
    alerts: list[dict[str, Any]] = []
    readings = 0
    scored: list[tuple[str, int, int, float]] = []

    def flush(state: _TopicState) -> None:
        rows = state.pending
        state.pending = []
        if not rows:
            return
        ids = [r["device_id"] for r in rows]
        ts = np.array([r["ts"] for r in rows], dtype=np.int64)
        values = np.array([[r["channels"][c] for c in state.channels] for r in rows], float)
        x = state.features.transform(ids, ts, values[:, state.feature_cols])
        scores = state.scorer.score(x)
        scored.extend(zip(ids, [r["seq"] for r in rows], ts.tolist(), scores.tolist(), strict=True))
        alerts.extend(
            state.incidents.process(
                ids,
                [r["site"] for r in rows],
                [r["device_type"] for r in rows],
                ts,
                np.array([r["seq"] for r in rows], dtype=np.int64),
                scores,
                values,
                state.channels,
                state.scorer.version,
            )
        )

    for message in sim.messages():
        value = message.value
        key = (gateway_of[value["site"]], message.topic)
        state = states.get(key)
        if state is None:
            topic = topics[message.topic]
            scorer = scorers[topic.device_type]
            channels = tuple(topic.channels)
            state = states[key] = _TopicState(
                channels=channels,
                features=FeatureExtractor.from_config(scorer.meta.features),
                scorer=scorer,
                feature_cols=[channels.index(c) for c in scorer.meta.channels],
                incidents=IncidentTracker(
                    topology.anomaly, key[0], {topic.device_type: scorer.threshold}
                ),
            )
        state.pending.append(value)
        readings += 1
        if len(state.pending) >= batch:
            flush(state)
    for state in states.values():
        flush(state)
    counts = {f"{g}/{t}": dict(s.incidents.counts) for (g, t), s in states.items()}
    return OfflineRun(alerts, sim.labels().anomalies, readings, scored, counts)


def default_topology(**anomaly: Any) -> Topology:
    topo = load_topology(DEFAULT_TOPOLOGY)
    if not anomaly:
        return topo
    spec = topo.anomaly.model_copy(update=anomaly)
    return topo.model_copy(update={"anomaly": spec})
