"""Ground truth of a simulator run: the JSON-lines side file and its reader.

One line per anomaly episode, per drift, per late reading, then one ``run`` line with totals:

    {"kind":"drift","device_type":"pump","channels":["vibration_rms"],"start_ts":...}
    {"kind":"anomaly","device_id":"pump-0001","type":"spike","start_ts":...,"first_seq":...}
    {"kind":"late","device_id":"pump-0002","seq":41,"ts":...,"delay_ms":2300,"emit_ts":...}
    {"kind":"run","seed":7,"readings":1200,"readings_per_device":{"pump-0001":600,...},...}

Readings of a device are numbered ``0 .. readings_per_device[id] - 1``; ``device_id + seq``
identifies a reading.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "labels.jsonl"
>>> labels = Labels(anomalies=[AnomalyLabel("pump-0001", "spike", 1000, 3000, 1, 3, ("pressure",))],
...                 run=RunLabel(seed=1, start_ts=0, end_ts=5000, readings=6,
...                              readings_per_device={"pump-0001": 6}))
>>> _ = write_labels(path, labels)
>>> sorted(read_labels(path).anomalous_ids())
[('pump-0001', 1), ('pump-0001', 2), ('pump-0001', 3)]
>>> len(read_labels(path).reading_ids())
6
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from edgestream.sim.exceptions import SimError


@dataclass(frozen=True)
class AnomalyLabel:
    """An injected anomaly episode: readings ``first_seq..last_seq`` of one device."""

    device_id: str
    type: str  # spike | level_shift | stuck | noise_burst | channel_drift | nab_window
    start_ts: int
    end_ts: int
    first_seq: int
    last_seq: int
    channels: tuple[str, ...]

    @property
    def readings(self) -> int:
        return self.last_seq - self.first_seq + 1


@dataclass(frozen=True)
class DriftLabel:
    """A distribution change (not an anomaly) of some channels of one device type."""

    device_type: str
    channels: tuple[str, ...]
    start_ts: int
    ramp_s: float
    end_ts: int  # when the ramp is complete
    shift: dict[str, float] = field(default_factory=dict)  # mean shift, channel units
    std_factor: float = 1.0  # noise standard deviation multiplier


@dataclass(frozen=True)
class LateLabel:
    """A reading emitted after later readings: planned delay and virtual emission time."""

    device_id: str
    seq: int
    ts: int
    delay_ms: int
    emit_ts: int  # < ts + delay_ms when the run ended first (pending readings are flushed)


@dataclass(frozen=True)
class RunLabel:
    """Totals of the run; ``params`` are the settings (seed, rate, ...)."""

    seed: int
    start_ts: int
    end_ts: int
    readings: int
    readings_per_device: dict[str, int]
    anomalous_readings: int = 0
    late_readings: int = 0
    messages: int = 0
    frames: int = 0  # SensorFrame messages (0 when readings were sent one by one)
    topics: dict[str, int] = field(default_factory=dict)  # messages per topic
    stopped: bool = False  # stopped before the configured duration
    params: dict[str, Any] = field(default_factory=dict)


_KINDS: dict[str, type] = {
    "anomaly": AnomalyLabel,
    "drift": DriftLabel,
    "late": LateLabel,
    "run": RunLabel,
}


@dataclass
class Labels:
    """Everything in a labels file."""

    anomalies: list[AnomalyLabel] = field(default_factory=list)
    drifts: list[DriftLabel] = field(default_factory=list)
    late: list[LateLabel] = field(default_factory=list)
    run: RunLabel | None = None

    def reading_ids(self) -> set[tuple[str, int]]:
        """Every (device_id, seq) the run produced, from the run totals."""
        if self.run is None:
            raise SimError("the labels have no run line: the simulator did not finish")
        return {(d, s) for d, n in self.run.readings_per_device.items() for s in range(n)}

    def anomalous_ids(self) -> set[tuple[str, int]]:
        """(device_id, seq) of every labelled anomalous reading."""
        return {
            (a.device_id, s) for a in self.anomalies for s in range(a.first_seq, a.last_seq + 1)
        }

    def late_ids(self) -> set[tuple[str, int]]:
        return {(x.device_id, x.seq) for x in self.late}

    def lines(self) -> list[dict[str, Any]]:
        """The file's lines as dicts, in file order."""
        items: list[tuple[str, Any]] = [("drift", x) for x in self.drifts]
        items += [("anomaly", x) for x in self.anomalies]
        items += [("late", x) for x in self.late]
        if self.run is not None:
            items.append(("run", self.run))
        return [{"kind": kind, **asdict(item)} for kind, item in items]


def write_labels(path: Path | str, labels: Labels) -> Path:
    """Write the labels file atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as out:
        for line in labels.lines():
            out.write(json.dumps(line, separators=(",", ":")) + "\n")
    os.replace(tmp, path)
    return path


def read_labels(path: Path | str) -> Labels:
    """Read a labels file written by the simulator."""
    path = Path(path)
    labels = Labels()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SimError(f"cannot read labels file {path}: {error.strerror}") from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            cls = _KINDS[raw.pop("kind")]
            names = {f.name for f in fields(cls)}
            data = {k: v for k, v in raw.items() if k in names}
            if "channels" in data:
                data["channels"] = tuple(data["channels"])
            item = cls(**data)
        except (ValueError, KeyError, TypeError) as error:
            raise SimError(f"{path}:{number} is not a simulator label line ({error})") from None
        if isinstance(item, AnomalyLabel):
            labels.anomalies.append(item)
        elif isinstance(item, DriftLabel):
            labels.drifts.append(item)
        elif isinstance(item, LateLabel):
            labels.late.append(item)
        else:
            labels.run = item
    return labels
