"""The deterministic reading generator: pure numpy, no Kafka, no clock.

:class:`SignalGenerator` yields :class:`Batch` es: a block of consecutive time steps for every
device, vectorised per device type. Random numbers come from seed streams that depend only
on the seed, the block number and the device, so a config (with its start time) always gives
the same readings, and a shorter run is a prefix of a longer one.

>>> from edgestream.sim.config import SimConfig
>>> gen = SignalGenerator(SimConfig(devices=2, rate=1.0, duration=5, seed=1), start_ms=0)
>>> batch = next(gen.batches())
>>> batch.first_seq, batch.steps, [g.device_type for g in batch.groups]
(0, 5, ['pump', 'reefer'])
>>> batch.groups[0].values.shape  # devices, steps, channels
(1, 5, 4)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from edgestream.sim.anomalies import NEVER, Episode, Injector
from edgestream.sim.config import SimConfig
from edgestream.sim.devices import Fleet, Group, ambient, build_fleet
from edgestream.sim.labels import DriftLabel

STREAM_BLOCK = 2  # per block and group: noise, jitter, late readings
STREAM_EVENT_START = 5  # per group: first door event of each device
STREAM_EVENTS = 6  # per device: its door events
DECIMALS = 3  # sensors report with 1/1000 resolution


@dataclass(frozen=True)
class GroupBatch:
    """Readings of one device type for one block: arrays are (devices, steps[, channels])."""

    device_type: str
    channels: tuple[str, ...]
    index: np.ndarray  # fleet indices of the devices (rows)
    ts: np.ndarray  # event time, epoch ms (int64)
    values: np.ndarray  # channel values as emitted (float64)
    anomalous: np.ndarray  # bool: the reading is inside an injected anomaly episode
    delay_ms: np.ndarray  # int64: emission delay of late readings, 0 = on time
    clean: np.ndarray | None = None  # values without anomalies (``keep_clean``)
    emit_ts: np.ndarray | None = None  # on-time send time when it is not ``ts`` (replay)
    seq: np.ndarray | None = None  # per-device sequence numbers when not the batch's (replay)


@dataclass(frozen=True)
class Batch:
    """One block of time steps ``first_seq .. first_seq + steps - 1`` for every device."""

    first_seq: int
    steps: int
    groups: tuple[GroupBatch, ...]

    @property
    def readings(self) -> int:
        return sum(g.ts.size for g in self.groups)


class _Lags:
    """First-order lag filters with per-device state (the model's ``ctx.lag``)."""

    def __init__(self, dt_s: float) -> None:
        self.dt_s = dt_s
        self.state: dict[str, np.ndarray] = {}

    def run(self, name: str, x: np.ndarray, tau_s: float) -> np.ndarray:
        a = float(np.exp(-self.dt_s / tau_s))  # y_t = a * y_(t-1) + (1 - a) * x_t
        y = self.state.get(name)
        y = x[:, 0].copy() if y is None else y.copy()
        out = np.empty_like(x)
        # closed form per chunk: y_t = a^(t+1) * (y0 + (1-a)/a * sum_k<=t a^-k x_k); chunks
        # keep a^-k below 1e6 so the sum stays exact to ~1e-10
        chunk = max(1, int(np.log(1e-6) / np.log(a))) if 0 < a < 1 else x.shape[1]
        for s in range(0, x.shape[1], chunk):
            part = x[:, s : s + chunk]
            k = np.arange(part.shape[1])
            if a <= 0:
                out[:, s : s + chunk] = part
            else:
                acc = np.cumsum(part * a ** (-k), axis=1)
                out[:, s : s + chunk] = a ** (k + 1) * (y[:, None] + (1 - a) / a * acc)
            y = out[:, s + part.shape[1] - 1].copy()
        return out


@dataclass
class _Ctx:
    params: dict[str, np.ndarray]
    hour: np.ndarray
    elapsed_days: np.ndarray
    ambient: np.ndarray
    process_noise: np.ndarray
    event: np.ndarray
    lags: _Lags
    saved: dict[str, np.ndarray] = field(default_factory=dict)
    steps: int = 0

    def lag(self, name: str, x: np.ndarray, tau_s: float) -> np.ndarray:
        out = self.lags.run(name, x, tau_s)
        self.saved[name] = out[:, self.steps - 1].copy()  # state after the used steps
        return out


class _GroupState:
    """Everything that carries over between blocks for one device type."""

    def __init__(self, gen: SignalGenerator, number: int, group: Group) -> None:
        cfg = gen.config
        self.number = number
        self.group = group
        n = group.size
        self.lags = _Lags(1.0 / cfg.rate)
        self.rngs: dict[int, np.random.Generator] = {}
        chans = group.dtype.channels
        self.lo = np.array([c.lo for c in chans])
        self.hi = np.array([c.hi for c in chans])
        self.coarse = bool((group.quantum > 0).any())
        self.injector = Injector(cfg, group, number, self.finish, gen.episodes)
        spec = group.dtype.event
        self.ev_start = np.full(n, NEVER, dtype=np.int64)
        self.ev_end = np.full(n, NEVER, dtype=np.int64)
        if spec is not None:
            ev_rng = np.random.default_rng([cfg.seed, STREAM_EVENT_START, number])
            self.ev_start = gen.start_ms + (ev_rng.exponential(spec.mean_gap_s, n) * 1000)
            self.ev_start = self.ev_start.astype(np.int64)
            self.ev_end = self.ev_start + (ev_rng.uniform(*spec.duration_s, n) * 1000).astype(
                np.int64
            )

    def rng(self, row: int, seed: int) -> np.random.Generator:
        found = self.rngs.get(row)
        if found is None:
            device = int(self.group.index[row])
            found = self.rngs[row] = np.random.default_rng([seed, STREAM_EVENTS, device])
        return found

    def finish(
        self, raw: np.ndarray, rows: np.ndarray | slice, ch: np.ndarray | slice
    ) -> np.ndarray:
        """Clip to the plausible range, quantise coarse sensors, round to the resolution."""
        out = np.clip(raw, self.lo[ch], self.hi[ch])
        if self.coarse:
            q = self.group.quantum[rows][:, ch][:, None, :]
            safe = np.where(q > 0, q, 1.0)
            out = np.where(q > 0, np.round(out / safe) * safe, out)
        return np.round(out, DECIMALS)


def late_delays(cfg: SimConfig, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Emission delays (ms) for a block of readings: 0 for on time, else within/beyond lateness."""
    delay = np.zeros(shape, dtype=np.int64)
    if cfg.late_fraction <= 0:
        return delay
    late = rng.random(shape) < cfg.late_fraction
    count = int(late.sum())
    beyond = rng.random(count) < cfg.late_beyond_share
    seconds = np.where(
        beyond, rng.uniform(*cfg.late_beyond, count), rng.uniform(*cfg.late_within, count)
    )
    delay[late] = np.maximum(1, np.round(seconds * 1000)).astype(np.int64)
    return delay


class SignalGenerator:
    """Readings of a simulated fleet, block by block. See the module docstring."""

    def __init__(self, config: SimConfig, start_ms: int, fleet: Fleet | None = None) -> None:
        self.config = config
        self.start_ms = int(start_ms)
        self.fleet = fleet or build_fleet(
            config.devices,
            config.device_types,
            config.sites,
            config.seed,
            config.rate,
            config.prefix,
            config.site_names,
        )
        self.block_steps = config.block_steps or max(1, min(1024, 32768 // config.devices))
        self.episodes: list[Episode] = []
        self.drifts = self._drifts()
        self._states = [_GroupState(self, i, g) for i, g in enumerate(self.fleet.groups)]

    def _drifts(self) -> list[DriftLabel]:
        cfg = self.config
        if cfg.drift_at is None:
            return []
        found = []
        for group in self.fleet.groups:
            dtype = group.dtype
            if cfg.drift_types and dtype.name not in cfg.drift_types:
                continue
            wanted = cfg.drift_channels or dtype.drift_channels
            chans = tuple(c.name for c in dtype.channels if c.name in wanted and c.drifts)
            if not chans:
                continue
            shift = {c.name: cfg.drift_shift * c.scale for c in dtype.channels if c.name in chans}
            start = self.start_ms + round(cfg.drift_at * 1000)
            end = start + round(cfg.drift_ramp * 1000)  # the ramp is complete
            found.append(
                DriftLabel(dtype.name, chans, start, cfg.drift_ramp, end, shift, cfg.drift_std)
            )
        return found

    def batches(self) -> Iterator[Batch]:
        """Blocks of readings until the configured duration (forever when it is None)."""
        total = self.config.steps
        block = 0
        s0 = 0
        while total is None or s0 < total:
            steps = self.block_steps if total is None else min(self.block_steps, total - s0)
            groups = tuple(self._group_block(st, block, s0, steps) for st in self._states)
            yield Batch(first_seq=s0, steps=steps, groups=groups)
            s0 += steps
            block += 1

    # -- one block of one device type ------------------------------------------------------
    def _group_block(self, st: _GroupState, block: int, s0: int, steps: int) -> GroupBatch:
        cfg, group, full = self.config, st.group, self.block_steps
        dtype = group.dtype
        n, c = group.size, len(dtype.channels)
        rng = np.random.default_rng([cfg.seed, STREAM_BLOCK, block, st.number])
        z = rng.standard_normal((n, full, c))
        process = rng.standard_normal((n, full))
        interval = 1000.0 / cfg.rate
        jitter_max = min(5, int(interval * 0.02))
        seqs = np.arange(s0, s0 + full, dtype=np.int64)
        ts = self.start_ms + group.phase_ms[:, None] + np.floor(seqs * interval).astype(np.int64)
        if jitter_max:
            ts = ts + rng.integers(-jitter_max, jitter_max + 1, (n, full))
        delay = late_delays(cfg, rng, (n, full))

        sites = self.fleet.sites
        offsets = np.array([s.utc_offset_h for s in sites])[group.site_index][:, None]
        hour = np.mod(ts / 3.6e6 + offsets, 24.0)
        elapsed = (ts - self.start_ms) / 8.64e7
        amb = ambient(sites, group.site_index, hour, ts / 8.64e7)
        event = self._events(st, ts) if dtype.event else np.zeros((n, full))
        ctx = _Ctx(group.params, hour, elapsed, amb, process, event, st.lags, steps=steps)
        assert dtype.model is not None
        true = dtype.model(ctx)
        st.lags.state.update(ctx.saved)

        raw = true * group.gain[:, None, :] + group.offset[:, None, :]
        noise = z * group.noise[:, None, :]
        for drift in self.drifts:
            if drift.device_type == dtype.name and ts[:, :steps].max() >= drift.start_ts:
                ramp = (ts - drift.start_ts) / 1000.0
                r = (
                    np.clip(ramp / drift.ramp_s, 0.0, 1.0)
                    if drift.ramp_s > 0
                    else (ramp >= 0).astype(float)
                )
                r = np.where(ramp >= 0, r, 0.0)[..., None]
                names = dtype.channel_names
                shift = np.array([drift.shift.get(name, 0.0) for name in names])
                std = np.array(
                    [drift.std_factor if name in drift.channels else 1.0 for name in names]
                )
                raw = raw + r * shift
                noise = noise * (1.0 + r * (std - 1.0))
        clean = st.finish(raw + noise, slice(None), slice(None))[:, :steps]
        ts, delay = ts[:, :steps], delay[:, :steps]

        values, anomalous = st.injector.inject(s0, ts, clean, copy=cfg.keep_clean)
        return GroupBatch(
            device_type=dtype.name,
            channels=dtype.channel_names,
            index=group.index,
            ts=ts,
            values=values,
            anomalous=anomalous,
            delay_ms=delay,
            clean=clean if cfg.keep_clean else None,
        )

    def _events(self, st: _GroupState, ts: np.ndarray) -> np.ndarray:
        """On/off state of the type's normal event (door open) per reading."""
        spec = st.group.dtype.event
        assert spec is not None
        on = np.zeros(ts.shape, dtype=bool)
        last = ts[:, -1]
        while True:
            rows = np.flatnonzero(st.ev_start <= last)
            if not len(rows):
                break
            t = ts[rows]
            on[rows] |= (t >= st.ev_start[rows, None]) & (t < st.ev_end[rows, None])
            ended = rows[st.ev_end[rows] <= last[rows]]
            if not len(ended):
                break
            for row in ended:
                rng = st.rng(int(row), self.config.seed)
                start = st.ev_end[row] + int(rng.exponential(spec.mean_gap_s) * 1000) + 1
                st.ev_start[row] = start
                st.ev_end[row] = start + int(rng.uniform(*spec.duration_s) * 1000)
            # rows whose next event starts after this block drop out of the next round
        return on.astype(float)
