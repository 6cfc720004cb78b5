"""Replay a recorded series (NAB ``timestamp,value`` CSV) as one device.

Timestamps ``YYYY-mm-dd HH:MM:SS`` are read as UTC. Readings keep the file's times unless a
start time is given (then the series is shifted to start there); ``seq`` is the row number.
Rows are sent in file order: a timestamp that goes back (the NAB machine-temperature file has
one) is sent at once, out of order, like the original sensor did.
NAB's labelled windows (``combined_windows.json``) become anomaly labels of type
``nab_window`` covering the readings inside each window (bounds included).

>>> import tempfile
>>> csv_path = Path(tempfile.mkdtemp()) / "series.csv"
>>> rows = "timestamp,value\\n2013-12-02 21:15:00,73.9\\n2013-12-02 21:20:00,74.9\\n"
>>> _ = csv_path.write_text(rows)
>>> ts, values = read_series(csv_path)
>>> ts.tolist(), values.tolist()
([1386018900000, 1386019200000], [73.9, 74.9])
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edgestream.sim.anomalies import Episode
from edgestream.sim.config import SimConfig
from edgestream.sim.devices import Channel, Device
from edgestream.sim.exceptions import ReplayError
from edgestream.sim.signals import STREAM_BLOCK, Batch, GroupBatch, late_delays

ROWS_PER_BATCH = 4096


def _to_ms(stamps: list[str], where: str) -> np.ndarray:
    try:
        return np.array(stamps, dtype="datetime64[ms]").astype(np.int64)
    except ValueError as error:
        raise ReplayError(
            f"{where}: timestamps must look like 2013-12-02 21:15:00 ({error})"
        ) from None


def read_series(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Event times (epoch ms, int64) and values (float64) of a ``timestamp,value`` CSV."""
    try:
        with Path(path).open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except OSError as error:
        raise ReplayError(f"cannot read replay file {path}: {error.strerror}") from None
    if rows and rows[0] and not rows[0][0][:1].isdigit():
        rows = rows[1:]  # header
    if not rows:
        raise ReplayError(f"replay file {path} has no readings")
    stamps, values = [], []
    for number, row in enumerate(rows, 2):
        try:
            stamps.append(row[0].strip())
            values.append(float(row[1]))
        except (IndexError, ValueError):
            raise ReplayError(f"{path}:{number}: expected 'timestamp,value', got {row}") from None
    return _to_ms(stamps, str(path)), np.array(values, dtype=np.float64)


def read_windows(path: Path, series: Path) -> list[tuple[int, int]]:
    """The labelled windows of ``series`` (matched by file name) from a NAB windows file."""
    try:
        windows = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise ReplayError(f"cannot read --replay-windows {path}: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise ReplayError(f"--replay-windows {path} is not JSON: {error}") from None
    matches = [key for key in windows if Path(key).name == Path(series).name]
    if not matches:
        raise ReplayError(f"--replay-windows {path} has no entry for {Path(series).name}")
    found = []
    for pair in windows[matches[0]]:
        start, end = _to_ms([pair[0], pair[1]], str(path))
        found.append((int(start), int(end)))
    return found


class ReplaySource:
    """Batches and anomaly episodes of one replayed device (the generator's interface)."""

    def __init__(self, config: SimConfig) -> None:
        spec = config.replay
        if spec is None:
            raise ReplayError("no replay configured: pass --replay FILE.csv")
        self.config = config
        ts, values = read_series(spec.path)
        windows = read_windows(spec.windows, spec.path) if spec.windows else []
        shift = 0 if config.start_time is None else int(config.start_time) - int(ts[0])
        self.ts = ts + shift
        self.values = values
        if config.duration is not None:
            end = self.ts[0] + round(config.duration * 1000)
            rows = int(np.searchsorted(np.maximum.accumulate(self.ts), end))  # a prefix
            self.ts, self.values = self.ts[:rows], self.values[:rows]
        self.start_ms = int(self.ts[0])
        # rows are sent in file order: a timestamp that goes back is sent at once (out of order)
        self.emit_ts = np.maximum.accumulate(self.ts)
        tags = {"source": f"replay:{Path(spec.path).name}"}
        self.device = Device(0, spec.device_id, spec.site, spec.device_type, tags)
        self.channel = Channel(spec.channel, "", noise=0.0, scale=1.0, lo=-np.inf, hi=np.inf)
        self.episodes = self._episodes(windows, shift)
        self.drifts: list = []

    @property
    def devices(self) -> list[Device]:
        return [self.device]

    @property
    def channels(self) -> dict[str, tuple[str, ...]]:
        return {self.device.device_type: (self.channel.name,)}

    @property
    def readings_expected(self) -> int:
        return len(self.ts)

    def _episodes(self, windows: list[tuple[int, int]], shift: int) -> list[Episode]:
        found = []
        for start, end in windows:
            inside = np.flatnonzero((self.ts >= start + shift) & (self.ts <= end + shift))
            if not len(inside):
                continue
            first, last = int(inside[0]), int(inside[-1])
            found.append(
                Episode(
                    device=0,
                    kind="nab_window",
                    channels=(self.channel.name,),
                    first_seq=first,
                    last_seq=last,
                    ch_index=np.array([0]),
                    delta=None,
                    next_start=last + 1,
                    start_ts=int(self.ts[first]),
                    end_ts=int(self.ts[last]),
                )
            )
        return found

    def batches(self) -> Iterator[Batch]:
        cfg = self.config
        anomalous = np.zeros(len(self.ts), dtype=bool)
        for ep in self.episodes:
            anomalous[ep.first_seq : ep.last_seq + 1] = True
        for block, s0 in enumerate(range(0, len(self.ts), ROWS_PER_BATCH)):
            s1 = min(s0 + ROWS_PER_BATCH, len(self.ts))
            rng = np.random.default_rng([cfg.seed, STREAM_BLOCK, block, 0])
            values = self.values[None, s0:s1, None]
            group = GroupBatch(
                device_type=self.device.device_type,
                channels=(self.channel.name,),
                index=np.array([0], dtype=np.int64),
                ts=self.ts[None, s0:s1],
                values=values,
                anomalous=anomalous[None, s0:s1],
                delay_ms=late_delays(cfg, rng, (1, s1 - s0)),
                clean=values if cfg.keep_clean else None,
                emit_ts=self.emit_ts[None, s0:s1],
            )
            yield Batch(first_seq=s0, steps=s1 - s0, groups=(group,))
