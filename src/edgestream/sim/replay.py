"""Replay recorded history (:mod:`edgestream.sim.history`: multichannel CSV or Parquet, or
a NAB ``timestamp,value`` CSV) as the devices that recorded it.

Timestamps ``YYYY-mm-dd HH:MM:SS`` are read as UTC. Readings keep the file's times unless a
start time is given (then the whole file is shifted so its first row starts there); ``seq``
is the row number of the device. Rows are sent in file order: a timestamp that goes back
(the NAB machine-temperature file has one) is sent at once, out of order, like the original
sensor did. A ``label`` column's runs of anomalous rows become anomaly labels of type
``labelled``; NAB's labelled windows (``combined_windows.json``) become labels of type
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
from edgestream.sim.config import ReplaySpec, SimConfig
from edgestream.sim.devices import Device
from edgestream.sim.exceptions import ReplayError
from edgestream.sim.history import read_history
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
    """Batches and anomaly episodes of a replayed history file (the generator's interface).

    Rows are sent in file order: the send time of a row is the newest event time so far,
    so a timestamp that goes back is sent at once (out of order) with its own event time.
    Each device's rows are numbered (``seq``) in file order. Episodes are the runs of
    labelled rows of each device (type ``labelled``) and the readings inside NAB windows
    (type ``nab_window``).
    """

    def __init__(self, config: SimConfig) -> None:
        spec = config.replay
        if spec is None:
            raise ReplayError("no replay configured: pass --replay FILE")
        self.config = config
        history = read_history(
            spec.path,
            channels=spec.channels,
            required=spec.required,
            mapping=self._mapping(spec),
            device_id=spec.device_id,
        )
        if not len(history):
            raise ReplayError(f"replay file {spec.path} has no readings")
        windows = read_windows(spec.windows, spec.path) if spec.windows else []
        ts = history.ts
        shift = 0 if config.start_time is None else int(config.start_time) - int(ts[0])
        self.ts = ts + shift
        self.values = history.values
        labels = history.labels
        # rows are sent in file order: a timestamp that goes back is sent at once
        self.emit_ts = np.maximum.accumulate(self.ts)
        rows = len(self.ts)
        if config.duration is not None:
            end = self.ts[0] + round(config.duration * 1000)
            rows = int(np.searchsorted(self.emit_ts, end))  # a prefix
        self.ts, self.values, self.emit_ts = self.ts[:rows], self.values[:rows], self.emit_ts[:rows]
        self.start_ms = int(self.ts.min()) if rows else int(ts[0]) + shift
        names = history.devices
        index = {name: d for d, name in enumerate(names)}
        self.row_device = np.array([index[x] for x in history.device_id[:rows]], dtype=np.int64)
        self.seq = np.zeros(rows, dtype=np.int64)
        for d in range(len(names)):
            at = np.flatnonzero(self.row_device == d)
            self.seq[at] = np.arange(len(at))
        tags = {"source": f"replay:{Path(spec.path).name}"}
        sites = history.site[:rows] if history.site is not None else None
        self._devices = [
            Device(d, name, self._site(sites, d, spec.site), spec.device_type, tags)
            for d, name in enumerate(names)
        ]
        self.channel_names = history.channels
        self.anomalous = np.zeros(rows, dtype=bool) if labels is None else labels[:rows].copy()
        self.episodes = self._label_episodes("labelled") if labels is not None else []
        if windows:
            self.episodes += self._window_episodes(windows, shift)
            for start, end in windows:
                self.anomalous |= (self.ts >= start + shift) & (self.ts <= end + shift)
        self.drifts: list = []

    @staticmethod
    def _mapping(spec: ReplaySpec) -> dict[str, str]:
        mapping = dict(spec.mapping)
        if not mapping and spec.channel != "value":
            mapping = {"value": spec.channel}  # a NAB file's one column, named
        return mapping

    def _site(self, sites: np.ndarray | None, device: int, default: str) -> str:
        if sites is None:
            return default
        at = np.flatnonzero(self.row_device == device)
        return str(sites[at[0]]) if len(at) else default

    @property
    def devices(self) -> list[Device]:
        return self._devices

    @property
    def channels(self) -> dict[str, tuple[str, ...]]:
        return {self._devices[0].device_type: self.channel_names}

    @property
    def readings_expected(self) -> int:
        return len(self.ts)

    def _label_episodes(self, kind: str) -> list[Episode]:
        found = []
        for d in range(len(self._devices)):
            rows = np.flatnonzero(self.row_device == d)
            hot = self.anomalous[rows].astype(np.int8)
            edges = np.diff(np.r_[0, hot, 0])
            for a, b in zip(
                np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1, strict=True
            ):
                found.append(self._episode(d, kind, rows[a], rows[b], int(a), int(b)))
        return sorted(found, key=lambda e: (e.start_ts, e.device))

    def _window_episodes(self, windows: list[tuple[int, int]], shift: int) -> list[Episode]:
        found = []
        for d in range(len(self._devices)):
            rows = np.flatnonzero(self.row_device == d)
            for start, end in windows:
                inside = np.flatnonzero(
                    (self.ts[rows] >= start + shift) & (self.ts[rows] <= end + shift)
                )
                if len(inside):
                    a, b = int(inside[0]), int(inside[-1])
                    found.append(self._episode(d, "nab_window", rows[a], rows[b], a, b))
        return found

    def _episode(
        self, device: int, kind: str, first_row: int, last_row: int, a: int, b: int
    ) -> Episode:
        return Episode(
            device=device,
            kind=kind,
            channels=self.channel_names,
            first_seq=a,
            last_seq=b,
            ch_index=np.arange(len(self.channel_names)),
            delta=None,
            next_start=b + 1,
            start_ts=int(self.ts[first_row]),
            end_ts=int(self.ts[last_row]),
        )

    def batches(self) -> Iterator[Batch]:
        cfg = self.config
        dtype = self._devices[0].device_type
        for block, s0 in enumerate(range(0, len(self.ts), ROWS_PER_BATCH)):
            s1 = min(s0 + ROWS_PER_BATCH, len(self.ts))
            rng = np.random.default_rng([cfg.seed, STREAM_BLOCK, block, 0])
            delay = late_delays(cfg, rng, (1, s1 - s0))[0]
            devices = self.row_device[s0:s1]
            groups = []
            for d in np.unique(devices).tolist():
                at = s0 + np.flatnonzero(devices == d)
                values = self.values[None, at, :]
                groups.append(
                    GroupBatch(
                        device_type=dtype,
                        channels=self.channel_names,
                        index=np.array([d], dtype=np.int64),
                        ts=self.ts[None, at],
                        values=values,
                        anomalous=self.anomalous[None, at],
                        delay_ms=delay[None, at - s0],
                        clean=values if cfg.keep_clean else None,
                        emit_ts=self.emit_ts[None, at],
                        seq=self.seq[None, at],
                    )
                )
            yield Batch(first_seq=s0, steps=s1 - s0, groups=tuple(groups))
