"""The simulator's one configuration object: frozen, validated, errors name the CLI option."""

from __future__ import annotations

import math
import string
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgestream.sim.exceptions import SimConfigError

#: Kinds of injected anomaly episodes.
ANOMALY_KINDS = ("spike", "level_shift", "stuck", "noise_burst", "channel_drift")
#: Fields a ``--topic`` template may use.
TOPIC_FIELDS = ("device_type", "site", "device_id")
MAX_RATE_HZ = 1000.0  # event times are epoch ms: above 1 kHz two readings would share a ts


def parse_start_time(value: str | int | float | datetime | None) -> int | None:
    """Epoch milliseconds from epoch ms (int or digits) or an ISO-8601 time (UTC if naive).

    >>> parse_start_time("1718000000000")
    1718000000000
    >>> parse_start_time("2024-06-10T06:13:20Z")
    1718000000000
    >>> parse_start_time("2024-06-10 06:13:20")
    1718000000000
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return round(moment.timestamp() * 1000)
    if isinstance(value, int | float):
        return int(value)
    text = value.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SimConfigError(
            f"--start-time {value!r} is neither epoch milliseconds nor an ISO-8601 time "
            "(e.g. 2024-06-10T06:13:20Z)"
        ) from None
    return parse_start_time(moment)


def now_ms() -> int:
    """Wall-clock now in epoch ms, rounded down to the second (the default start time)."""
    return int(time.time()) * 1000


@dataclass(frozen=True)
class ReplaySpec:
    """Replay a history file (:mod:`edgestream.sim.history`: CSV or Parquet, one column per
    channel, optional device, site and label columns; a NAB ``timestamp,value`` CSV too).

    ``device_id`` names the device of a file without a device column; ``site`` is the site
    of rows without a site column; ``channel`` renames a ``value`` column (NAB files);
    ``mapping`` renames columns to channels (``((column, channel), ...)``); ``channels``
    (a topology's channels of ``device_type``) makes other columns an error, ``required``
    the channels the file must give.
    """

    path: Path
    device_id: str | None = None
    site: str = "site-1"
    device_type: str = "replay"
    channel: str = "value"
    windows: Path | None = None  # NAB ``combined_windows.json``: windows become anomaly labels
    mapping: tuple[tuple[str, str], ...] = ()
    channels: tuple[str, ...] | None = None
    required: tuple[str, ...] | None = None


@dataclass(frozen=True)
class SimConfig:
    """Everything a simulator run depends on. Same config (incl. seed, start time) = same run.

    >>> SimConfig(devices=4, rate=2.0).readings_expected
    480
    >>> SimConfig(rate=-1)
    Traceback (most recent call last):
    ...
    edgestream.sim.exceptions.SimConfigError: --rate must be > 0 and <= 1000 Hz (got -1)
    """

    devices: int = 10
    rate: float = 1.0  # readings per second per device
    duration: float | None = 60.0  # seconds of event time; None = until stopped
    seed: int = 0
    start_time: int | None = None  # epoch ms; None = now (synthetic) / the CSV's times (replay)
    sites: int = 3
    device_types: tuple[str, ...] = ("pump", "reefer")
    # anomalies: expected fraction of anomalous readings, episode length in readings
    anomaly_rate: float = 0.01
    anomaly_length: tuple[int, int] = (3, 20)
    anomaly_kinds: tuple[str, ...] = ANOMALY_KINDS
    # drift: from drift_at seconds, ramped over drift_ramp seconds
    drift_at: float | None = None
    drift_ramp: float = 60.0
    drift_shift: float = 2.0  # mean shift in channel scales (see devices.Channel.scale)
    drift_std: float = 1.5  # noise standard deviation multiplier
    drift_types: tuple[str, ...] | None = None  # None = every simulated type
    drift_channels: tuple[str, ...] | None = None  # None = each type's default drift channels
    # late readings: delay = within-lateness or (with late_beyond_share) beyond-lateness
    late_fraction: float = 0.0
    late_within: tuple[float, float] = (1.0, 5.0)
    late_beyond: tuple[float, float] = (30.0, 120.0)
    late_beyond_share: float = 0.25
    # output
    frames: int = 1
    topic: str = "sensors.{device_type}"
    prefix: str = ""  # namespaces device ids and sites, e.g. "gw1-" for one fleet per gateway
    site_names: tuple[str, ...] | None = None  # explicit site names (then ``sites`` = their count)
    partitions: int = 1  # for topics the simulator has to create
    labels: Path | None = field(default_factory=lambda: Path("sim-labels.jsonl"))
    fast: bool = False
    speed: float = 1.0  # pacing factor: 2.0 = twice real time
    replay: ReplaySpec | None = None
    keep_clean: bool = False  # batches carry the anomaly-free values too (tests, evaluation)
    block_steps: int | None = None  # time steps per generated batch; None = automatic

    def __post_init__(self) -> None:
        self._check_fleet()
        self._check_anomalies()
        self._check_drift()
        self._check_late_and_output()

    def _check_fleet(self) -> None:
        """Devices, rate, duration, seed, sites and device types."""
        from edgestream.sim.devices import DEVICE_TYPES  # devices imports this module

        _need(isinstance(self.devices, int) and self.devices >= 1, "--devices must be >= 1")
        rate_ok = _finite(self.rate) and 0 < self.rate <= MAX_RATE_HZ
        _need(rate_ok, f"--rate must be > 0 and <= 1000 Hz (got {_fmt(self.rate)})")
        dur = self.duration
        _need(dur is None or (_finite(dur) and dur > 0), f"--duration must be > 0 (got {dur})")
        _need(isinstance(self.seed, int) and self.seed >= 0, f"--seed must be >= 0 ({self.seed})")
        _need(self.sites >= 1, f"--sites must be >= 1 (got {self.sites})")
        if self.site_names is not None:
            _need(len(self.site_names) >= 1, "--site-names needs at least one name")
            object.__setattr__(self, "sites", len(self.site_names))
        _need(bool(self.device_types), "--device-types needs at least one type")
        for name in self.device_types:
            known = ", ".join(DEVICE_TYPES)
            _need(name in DEVICE_TYPES, f"--device-types: unknown type {name!r} (known: {known})")
        _need(len(set(self.device_types)) == len(self.device_types), "--device-types repeats")

    def _check_anomalies(self) -> None:
        _fraction(self.anomaly_rate, "--anomaly-rate", upper_open=True)
        lo, hi = self.anomaly_length
        _need(1 <= lo <= hi, f"anomaly_length must be 1 <= min <= max (got {lo}, {hi})")
        for kind in self.anomaly_kinds:
            _need(kind in ANOMALY_KINDS, f"unknown anomaly kind {kind!r} ({ANOMALY_KINDS})")
        _need(bool(self.anomaly_kinds), "anomaly_kinds needs at least one kind")

    def _check_drift(self) -> None:
        from edgestream.sim.devices import DEVICE_TYPES  # devices imports this module

        at = self.drift_at
        _need(at is None or (_finite(at) and at >= 0), f"--drift-at must be >= 0 (got {at})")
        _need(_finite(self.drift_ramp) and self.drift_ramp >= 0, "--drift-ramp must be >= 0")
        _need(_finite(self.drift_shift), "--drift-shift must be a number")
        _need(_finite(self.drift_std) and self.drift_std > 0, "--drift-std must be > 0")
        for name in self.drift_types or ():
            _need(name in self.device_types, f"--drift-types: {name!r} is not simulated")
        if self.drift_channels:
            types = self.drift_types or self.device_types
            known = {c.name for t in types for c in DEVICE_TYPES[t].channels if c.drifts}
            for name in self.drift_channels:
                _need(name in known, f"--drift-channels: no channel {name!r} ({sorted(known)})")

    def _check_late_and_output(self) -> None:
        """Late readings, frames, partitions, pacing, topic template and prefix."""
        _fraction(self.late_fraction, "--late-fraction")
        _fraction(self.late_beyond_share, "--late-beyond-share")
        for option, (a, b) in (
            ("--late-within", self.late_within),
            ("--late-beyond", self.late_beyond),
        ):
            _need(_finite(a) and _finite(b) and 0 < a <= b, f"{option} needs 0 < MIN <= MAX s")
        _need(isinstance(self.frames, int) and self.frames >= 1, "--frames must be >= 1")
        _need(self.partitions >= 1, "--partitions must be >= 1")
        _need(_finite(self.speed) and self.speed > 0, f"--speed must be > 0 (got {self.speed})")
        finite = self.duration is not None or self.replay is not None
        _need(finite or not self.fast, "--fast needs a finite --duration")
        _need(self.block_steps is None or self.block_steps >= 1, "block_steps must be >= 1")
        fields = {f for _, f, _, _ in string.Formatter().parse(self.topic) if f is not None}
        unknown = sorted(fields - set(TOPIC_FIELDS))
        _need(not unknown, f"--topic template uses unknown field(s) {unknown} ({TOPIC_FIELDS})")
        _need(bool(self.topic.strip()), "--topic must not be empty")
        prefix_ok = all(ch.isalnum() or ch in "-_." for ch in self.prefix)
        _need(prefix_ok, f"--prefix allows letters, digits, '-', '_', '.' (got {self.prefix!r})")

    @property
    def steps(self) -> int | None:
        """Readings per device (None when running until stopped)."""
        if self.duration is None:
            return None
        return max(1, round(self.duration * self.rate))

    @property
    def readings_expected(self) -> int | None:
        steps = self.steps
        return None if steps is None else steps * self.devices

    def with_(self, **changes: Any) -> SimConfig:
        """A validated copy with some fields changed."""
        return replace(self, **changes)

    def as_params(self) -> dict[str, Any]:
        """The settings as JSON-able values (for the labels file's run line)."""
        params = asdict(self)
        for key in ("labels",):
            params[key] = None if params[key] is None else str(params[key])
        if self.replay is not None:
            params["replay"] = {
                k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self.replay).items()
            }
        params.pop("keep_clean")
        return params


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise SimConfigError(message)


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _fraction(value: Any, option: str, upper_open: bool = False) -> None:
    ok = _finite(value) and 0 <= value <= 1 and not (upper_open and value == 1)
    if not ok:
        bound = "< 1" if upper_open else "<= 1"
        raise SimConfigError(f"{option} must be a fraction >= 0 and {bound} (got {value})")
