"""Injected anomaly episodes: when they start, what they do to the channels, their truth.

Each device runs a renewal process: a normal gap of G readings (geometric), then an episode
of L readings (uniform in ``anomaly_length``), so that E[L] / (E[L] + E[G]) is the configured
anomaly rate. An episode changes one or two channels (one for ``channel_drift``):

* ``spike`` - a peaked excursion of 6-10 channel scales (at least half of that at the ends)
* ``level_shift`` - a constant offset of 4-6 scales
* ``stuck`` - the channel repeats the last value it reported
* ``noise_burst`` - random-sign deviations of at least 2 scales
* ``channel_drift`` - a ramp from 1.5 to 8 scales

Every reading of an episode deviates from the clean value by at least a quarter scale on its
channels (``stuck`` excepted: its value is frozen), and nothing outside episodes changes.
Random numbers come from one stream per device, so episodes do not depend on block sizes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edgestream.sim.config import SimConfig
from edgestream.sim.devices import Group

STREAM_EPISODE_START = 3  # per group: the first anomaly start of each device
STREAM_EPISODES = 4  # per device: its anomaly episodes
NEVER = np.iinfo(np.int64).max // 4

Finish = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass
class Episode:
    """An anomaly episode on some channels of one device, readings first..last."""

    device: int  # fleet index
    kind: str
    channels: tuple[str, ...]
    first_seq: int
    last_seq: int
    ch_index: np.ndarray
    delta: np.ndarray | None  # (readings, channels) added to the clean value; None for stuck
    next_start: int  # where the device's next episode starts
    start_ts: int | None = None
    end_ts: int | None = None
    stuck: np.ndarray | None = field(default=None, repr=False)


class Injector:
    """Anomaly episodes of the devices of one type, applied block by block."""

    def __init__(
        self, cfg: SimConfig, group: Group, number: int, finish: Finish, log: list[Episode]
    ) -> None:
        self.cfg = cfg
        self.group = group
        self.finish = finish  # clip / quantise / round, as the clean values were
        self.log = log  # every episode, in creation order
        n = group.size
        chans = group.dtype.channels
        self.eligible = np.array([i for i, c in enumerate(chans) if c.anomalies], dtype=np.int64)
        self.scale = np.array([c.scale for c in chans])
        self.current: list[Episode | None] = [None] * n
        self.last_values: np.ndarray | None = None
        self.rngs: dict[int, np.random.Generator] = {}
        lo, hi = cfg.anomaly_length
        p = cfg.anomaly_rate
        mean_len = (lo + hi) / 2.0
        self.q = 0.0 if p <= 0 or not len(self.eligible) else 1.0 / (1.0 + mean_len * (1 - p) / p)
        if self.q > 0:
            rng = np.random.default_rng([cfg.seed, STREAM_EPISODE_START, number])
            self.start = rng.geometric(self.q, n).astype(np.int64) - 1  # current or next episode
        else:
            self.start = np.full(n, NEVER, dtype=np.int64)

    def inject(
        self, s0: int, ts: np.ndarray, clean: np.ndarray, copy: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Values with the episodes of readings ``s0 ..`` applied, and the anomalous mask."""
        n, steps = ts.shape
        anomalous = np.zeros((n, steps), dtype=bool)
        touched = np.flatnonzero(self.start < s0 + steps)
        values = clean.copy() if (len(touched) or copy) else clean
        for row in touched.tolist():
            self._device(row, s0, ts, clean, values, anomalous)
        self.last_values = values[:, -1, :].copy()
        return values, anomalous

    def _device(
        self,
        row: int,
        s0: int,
        ts: np.ndarray,
        clean: np.ndarray,
        values: np.ndarray,
        anomalous: np.ndarray,
    ) -> None:
        end = s0 + ts.shape[1]
        while True:
            episode = self.current[row]
            if episode is None:
                if self.start[row] >= end:
                    return
                episode = self.current[row] = self._new(row, int(self.start[row]))
            self._apply(row, episode, s0, ts, clean, values)
            a, b = max(episode.first_seq, s0), min(episode.last_seq, end - 1)
            anomalous[row, a - s0 : b - s0 + 1] = True
            if episode.last_seq >= end:
                return
            self.current[row] = None
            self.start[row] = episode.next_start

    def _new(self, row: int, first: int) -> Episode:
        cfg = self.cfg
        rng = self.rngs.get(row)
        if rng is None:
            device = int(self.group.index[row])
            rng = self.rngs[row] = np.random.default_rng([cfg.seed, STREAM_EPISODES, device])
        lo, hi = cfg.anomaly_length
        length = int(rng.integers(lo, hi + 1))
        kind = cfg.anomaly_kinds[int(rng.integers(len(cfg.anomaly_kinds)))]
        k = 1 if kind == "channel_drift" or rng.random() < 0.7 else 2
        ch = np.sort(rng.choice(self.eligible, min(k, len(self.eligible)), replace=False))
        sign = rng.choice(np.array([-1.0, 1.0]), len(ch))
        u = np.linspace(0.0, 1.0, length)[:, None] if length > 1 else np.ones((1, 1))
        delta: np.ndarray | None
        if kind == "spike":
            delta = sign * rng.uniform(6.0, 10.0, len(ch)) * (1.0 - 0.5 * np.abs(2 * u - 1))
        elif kind == "level_shift":
            delta = np.broadcast_to(sign * rng.uniform(4.0, 6.0, len(ch)), (length, len(ch)))
        elif kind == "noise_burst":
            signs = rng.choice(np.array([-1.0, 1.0]), (length, len(ch)))
            delta = signs * (2.0 + np.abs(rng.normal(0.0, 3.0, (length, len(ch)))))
        elif kind == "channel_drift":
            delta = sign * (1.5 + 6.5 * u)
        else:  # stuck: hold the last reported value
            delta = None
        gap = int(rng.geometric(self.q)) - 1
        names = self.group.dtype.channel_names
        episode = Episode(
            device=int(self.group.index[row]),
            kind=kind,
            channels=tuple(names[i] for i in ch),
            first_seq=first,
            last_seq=first + length - 1,
            ch_index=ch,
            delta=None if delta is None else np.asarray(delta) * self.scale[ch],
            next_start=first + length + gap,
        )
        self.log.append(episode)
        return episode

    def _apply(
        self,
        row: int,
        ep: Episode,
        s0: int,
        ts: np.ndarray,
        clean: np.ndarray,
        values: np.ndarray,
    ) -> None:
        """Apply ``ep`` to device ``row`` within the block that starts at reading ``s0``."""
        a, b = max(ep.first_seq, s0), min(ep.last_seq, s0 + ts.shape[1] - 1)
        rows = np.arange(a - s0, b - s0 + 1)
        ch = ep.ch_index
        view = values[row]
        if a == ep.first_seq:
            ep.start_ts = int(ts[row, a - s0])
        if b == ep.last_seq:
            ep.end_ts = int(ts[row, b - s0])
        if ep.delta is None:
            if ep.stuck is None:
                if a > s0:
                    ep.stuck = view[a - s0 - 1, ch].copy()
                elif self.last_values is not None:
                    ep.stuck = self.last_values[row, ch].copy()
                else:
                    ep.stuck = view[0, ch].copy()
            view[np.ix_(rows, ch)] = ep.stuck
            return
        base = clean[row][np.ix_(rows, ch)]
        delta = ep.delta[a - ep.first_seq : b - ep.first_seq + 1]
        picked = np.array([row])
        up = self.finish((base + delta)[None], picked, ch)[0]
        down = self.finish((base - delta)[None], picked, ch)[0]
        weak = np.abs(up - base) < 0.5 * self.scale[ch]  # clipped at a bound: go the other way
        view[np.ix_(rows, ch)] = np.where(weak, down, up)
