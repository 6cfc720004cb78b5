"""Simulator data for training and evaluation: one device type's readings, in process.

A thin adapter over :class:`edgestream.sim.signals.SignalGenerator` (no Kafka): readings in
arrival order as flat numpy arrays, plus the injected anomaly episodes as labels.

>>> from edgestream.sim.config import SimConfig
>>> cfg = SimConfig(devices=2, rate=10.0, duration=5, seed=3, start_time=0, labels=None)
>>> r = simulate_readings(cfg, "pump")
>>> r.values.shape, r.channels[0]
((50, 4), 'vibration_rms')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgestream.ml.features import FeatureExtractor
from edgestream.sim.config import SimConfig
from edgestream.sim.devices import DEVICE_TYPES
from edgestream.sim.signals import SignalGenerator

BATCH = 2048  # readings per transform call in offline use (a gateway-sized micro-batch)


@dataclass(frozen=True)
class Episode:
    """A labelled anomaly episode (same fields as the simulator's ``AnomalyLabel``)."""

    device_id: str
    type: str
    start_ts: int
    end_ts: int


@dataclass
class SimReadings:
    """One device type's readings of a simulator run, in arrival order, with its episodes."""

    device_type: str
    channels: tuple[str, ...]
    device_ids: np.ndarray  # (n,) str
    ts: np.ndarray  # (n,) int64 event time
    values: np.ndarray  # (n, channels) float64
    anomalous: np.ndarray  # (n,) bool: inside an injected episode
    episodes: list[Episode]

    def columns(self, names: Sequence[str]) -> np.ndarray:
        """The value columns of ``names`` (e.g. a model's feature channels), in that order."""
        return self.values[:, [self.channels.index(c) for c in names]]


def simulate_readings(config: SimConfig, device_type: str) -> SimReadings:
    """Run the simulator in process (no Kafka) and keep one device type's readings.

    Arrival order is emission order (event time plus a late reading's delay).
    """
    start = config.start_time if config.start_time is not None else 0
    gen = SignalGenerator(config, start)
    ids, ts, values, anomalous, emit = [], [], [], [], []
    names = tuple(d.device_id for d in gen.fleet.devices)
    for batch in gen.batches():
        for group in batch.groups:
            if group.device_type != device_type:
                continue
            k = group.values.shape[2]
            ids.append(np.repeat(np.array(names)[group.index][None, :], group.ts.shape[1], 0))
            ts.append(group.ts.T)
            emit.append((group.ts + group.delay_ms).T)
            values.append(group.values.transpose(1, 0, 2).reshape(-1, k))
            anomalous.append(group.anomalous.T)
    if not ts:
        raise ValueError(f"the simulator config has no {device_type!r} devices")
    t = np.concatenate([x.ravel() for x in ts])
    order = np.argsort(np.concatenate([x.ravel() for x in emit]), kind="stable")
    last_ts: dict[str, int] = {}
    all_ids = np.concatenate([x.ravel() for x in ids])
    for device in np.unique(all_ids):
        last_ts[str(device)] = int(t[all_ids == device].max())
    episodes = [
        Episode(
            names[ep.device],
            ep.kind,
            int(ep.start_ts),
            int(ep.end_ts if ep.end_ts is not None else last_ts[names[ep.device]]),
        )
        for ep in gen.episodes
        if names[ep.device] in last_ts and ep.start_ts is not None
    ]
    return SimReadings(
        device_type=device_type,
        channels=DEVICE_TYPES[device_type].channel_names,
        device_ids=all_ids[order],
        ts=t[order],
        values=np.concatenate(values)[order],
        anomalous=np.concatenate([x.ravel() for x in anomalous])[order],
        episodes=sorted(episodes, key=lambda e: (e.start_ts, e.device_id)),
    )


def extract(readings: SimReadings, extractor: FeatureExtractor, batch: int = BATCH) -> np.ndarray:
    """Features of every reading, in arrival order, fed in gateway-sized batches."""
    values = readings.columns(extractor.channels)
    parts = [
        extractor.transform(
            readings.device_ids[i : i + batch], readings.ts[i : i + batch], values[i : i + batch]
        )
        for i in range(0, len(readings.ts), batch)
    ]
    return np.concatenate(parts)
