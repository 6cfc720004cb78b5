"""Device types, their channels and physics, and the fleet drawn from a seed.

A device type is a set of channels (unit, noise, plausible range) and a *model*: a numpy
function that turns time of day, ambient temperature and per-device parameters into the
noise-free value of every channel for a block of time steps. Noise, per-device gains and
offsets, quantisation, drift and anomalies are added by :mod:`edgestream.sim.signals`.

>>> fleet = build_fleet(4, ("pump", "reefer"), sites=2, seed=7, rate=1.0)
>>> [d.device_id for d in fleet.devices]
['pump-0001', 'reefer-0001', 'pump-0002', 'reefer-0002']
>>> DEVICE_TYPES["pump"].channel_names
('vibration_rms', 'bearing_temp', 'pressure', 'motor_current')
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

TWO_PI = 2.0 * np.pi
STREAM_FLEET = 1  # seed streams: the fleet's own random numbers


@dataclass(frozen=True)
class Channel:
    """One measured quantity of a device type."""

    name: str
    unit: str
    noise: float  # standard deviation of the Gaussian measurement noise
    scale: float  # typical variation; anomaly and drift magnitudes are multiples of it
    lo: float  # physically plausible range: values are clipped to [lo, hi]
    hi: float
    quantum: float = 0.0  # resolution of a coarse sensor (some devices quantise)
    anomalies: bool = True  # may carry injected anomalies
    drifts: bool = True  # may be chosen for drift


@dataclass(frozen=True)
class EventSpec:
    """Normal on/off events of a device type (e.g. a reefer door), as a renewal process."""

    name: str
    mean_gap_s: float
    duration_s: tuple[float, float]


class Context(Protocol):
    """What a device model sees for one block: arrays are (devices, steps)."""

    params: dict[str, np.ndarray]
    hour: np.ndarray  # local hour of day, 0..24
    elapsed_days: np.ndarray  # days since the simulation start
    ambient: np.ndarray  # ambient temperature at the device's site, deg C
    process_noise: np.ndarray  # standard normal draws for the model's own use
    event: np.ndarray  # 1.0 while the type's event (door open) is on, else 0.0

    def lag(self, name: str, x: np.ndarray, tau_s: float) -> np.ndarray:
        """First-order lag of ``x`` with time constant ``tau_s`` (state kept per device)."""
        ...


Model = Callable[[Context], np.ndarray]
ParamDraw = Callable[[np.random.Generator, int], dict[str, np.ndarray]]


@dataclass(frozen=True)
class DeviceType:
    """A kind of device: channels, default drift channels, physics and parameter draws."""

    name: str
    channels: tuple[Channel, ...]
    drift_channels: tuple[str, ...]
    model: Model | None = None
    draw_params: ParamDraw | None = None
    event: EventSpec | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def channel_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.channels)


def _col(x: np.ndarray) -> np.ndarray:
    return x[:, None]


# --- pump: centrifugal pump with motor, bearing and discharge pressure sensors --------------


def _pump_params(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    return {
        "load_base": rng.uniform(0.45, 0.7, n),
        "load_amp": rng.uniform(0.12, 0.28, n),
        "shift_h": rng.uniform(-1.5, 1.5, n),
        "age_days": rng.uniform(30.0, 1500.0, n),
        "wear_vib": rng.uniform(0.0002, 0.0012, n),  # mm/s per day
        "wear_temp": rng.uniform(0.0005, 0.003, n),  # deg C per day
        "motor": rng.uniform(0.9, 1.1, n),
    }


def _pump_model(ctx: Context) -> np.ndarray:
    p = ctx.params
    h = ctx.hour - _col(p["shift_h"])
    amp = _col(p["load_amp"])
    load = (
        _col(p["load_base"])
        + amp * np.sin(TWO_PI * (h - 8.0) / 24.0)
        + 0.3 * amp * np.sin(2.0 * TWO_PI * (h - 3.0) / 24.0)
        + 0.03 * ctx.process_noise
    )
    load = np.clip(load, 0.05, 1.0)
    days = _col(p["age_days"]) + ctx.elapsed_days
    pressure = 1.5 + 5.0 * load  # bar: follows the duty point
    current = _col(p["motor"]) * (6.0 + 1.6 * pressure + 8.0 * load)  # A: rises with head
    vibration = 1.0 + 1.6 * load + _col(p["wear_vib"]) * days  # mm/s RMS, ISO 10816 zone A/B
    # bearing temperature follows load with a 15-minute thermal lag
    temp = ctx.ambient + 12.0 + 30.0 * ctx.lag("load", load, 900.0) + _col(p["wear_temp"]) * days
    return np.stack([vibration, temp, pressure, current], axis=-1)


PUMP = DeviceType(
    name="pump",
    channels=(
        Channel("vibration_rms", "mm/s", noise=0.12, scale=0.4, lo=0.0, hi=50.0, quantum=0.05),
        Channel("bearing_temp", "degC", noise=0.25, scale=2.0, lo=-30.0, hi=150.0, quantum=0.5),
        Channel("pressure", "bar", noise=0.06, scale=0.4, lo=0.0, hi=16.0, quantum=0.1),
        Channel("motor_current", "A", noise=0.35, scale=1.5, lo=0.0, hi=100.0, quantum=0.2),
    ),
    drift_channels=("vibration_rms", "bearing_temp"),
    model=_pump_model,
    draw_params=_pump_params,
    tags={"unit_vibration_rms": "mm/s"},
)


# --- reefer: refrigerated shipping container ------------------------------------------------


def _reefer_params(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    frozen = rng.random(n) < 0.5
    setpoint = np.where(
        frozen, rng.choice([-25.0, -20.0, -18.0], n), rng.choice([2.0, 4.0, 13.0], n)
    )
    return {
        "setpoint": setpoint,
        "humidity": np.where(frozen, rng.uniform(55.0, 70.0, n), rng.uniform(80.0, 90.0, n)),
        "compressor": rng.uniform(0.9, 1.1, n),
        "insulation": rng.uniform(0.02, 0.05, n),  # return-air gain from the heat leak
        "age_days": rng.uniform(30.0, 3000.0, n),
        "wear_comp": rng.uniform(0.0001, 0.0005, n),  # A per day
    }


def _reefer_model(ctx: Context) -> np.ndarray:
    p = ctx.params
    setpoint = _col(p["setpoint"])
    heat = np.maximum(ctx.ambient - setpoint, 0.0)  # heat leak drives the compressor
    door = ctx.lag("door", ctx.event, 90.0)  # warm air mixes in over ~1.5 minutes
    days = _col(p["age_days"]) + ctx.elapsed_days
    compressor = _col(p["compressor"]) * (4.0 + 0.25 * heat) * (1.0 + 0.35 * door)
    compressor = compressor + _col(p["wear_comp"]) * days
    supply = setpoint + 1.8 * door
    ret = supply + 1.5 + _col(p["insulation"]) * heat + 7.0 * door
    humidity = _col(p["humidity"]) + 10.0 * door - 1.5 * np.sin(TWO_PI * (ctx.hour - 14.0) / 24)
    return np.stack([supply, ret, humidity, compressor, ctx.event], axis=-1)


REEFER = DeviceType(
    name="reefer",
    channels=(
        Channel("supply_air_temp", "degC", noise=0.15, scale=0.8, lo=-40.0, hi=40.0, quantum=0.1),
        Channel("return_air_temp", "degC", noise=0.2, scale=1.0, lo=-40.0, hi=50.0, quantum=0.1),
        Channel("humidity", "%", noise=1.0, scale=3.0, lo=0.0, hi=100.0, quantum=1.0),
        Channel("compressor_current", "A", noise=0.4, scale=1.5, lo=0.0, hi=60.0, quantum=0.2),
        Channel(
            "door_open", "bool", noise=0.0, scale=1.0, lo=0.0, hi=1.0, anomalies=False, drifts=False
        ),
    ),
    drift_channels=("supply_air_temp", "compressor_current"),
    model=_reefer_model,
    draw_params=_reefer_params,
    event=EventSpec("door", mean_gap_s=7200.0, duration_s=(30.0, 300.0)),
)

DEVICE_TYPES: dict[str, DeviceType] = {t.name: t for t in (PUMP, REEFER)}


# --- the fleet ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Device:
    """One simulated device; ``index`` is its position in the fleet (0-based)."""

    index: int
    device_id: str
    site: str
    device_type: str
    tags: dict[str, str]


@dataclass(frozen=True)
class Site:
    """Climate of a site: ambient mean and daily amplitude (deg C), offset from UTC (h)."""

    name: str
    mean_temp: float
    daily_amp: float
    utc_offset_h: float
    weather_phase: float


@dataclass
class Group:
    """The devices of one type, with their per-device parameters as arrays (rows = devices)."""

    dtype: DeviceType
    index: np.ndarray  # fleet indices of the devices
    devices: list[Device]
    site_index: np.ndarray
    gain: np.ndarray  # (n, channels)
    offset: np.ndarray
    noise: np.ndarray  # measurement noise std per device and channel
    quantum: np.ndarray  # 0 = no quantisation
    phase_ms: np.ndarray  # per-device offset of the sampling instants
    params: dict[str, np.ndarray]

    @property
    def size(self) -> int:
        return len(self.devices)


@dataclass
class Fleet:
    devices: list[Device]
    groups: list[Group]
    sites: list[Site]
    extra: dict[str, Any] = field(default_factory=dict)


def build_fleet(
    n: int,
    types: tuple[str, ...],
    sites: int,
    seed: int,
    rate: float,
    prefix: str = "",
    site_names: tuple[str, ...] | None = None,
) -> Fleet:
    """Draw ``n`` devices (types round-robin, sites shuffled) and their baselines from ``seed``.

    ``prefix`` namespaces device ids and site names (e.g. one fleet per gateway: ``"gw1-"``);
    ``site_names`` names the sites explicitly (a topology's gateway sites).
    """
    names = site_names or tuple(f"{prefix}site-{i + 1}" for i in range(sites))
    # one stream, drawn in this order: sites, devices, then each type's group
    rng = np.random.default_rng([seed, STREAM_FLEET])
    site_list = _draw_sites(rng, names)
    devices = _draw_devices(rng, n, types, prefix, site_list)
    interval_ms = 1000.0 / rate
    site_number = {site.name: i for i, site in enumerate(site_list)}
    groups = []
    for name in types:
        members = [d for d in devices if d.device_type == name]
        if members:
            groups.append(_draw_group(rng, DEVICE_TYPES[name], members, site_number, interval_ms))
    return Fleet(devices=devices, groups=groups, sites=site_list)


def _draw_sites(rng: np.random.Generator, names: tuple[str, ...]) -> list[Site]:
    """A site per name: its climate and time zone."""
    return [
        Site(
            name=names[i],
            mean_temp=float(rng.uniform(8.0, 28.0)),
            daily_amp=float(rng.uniform(3.0, 8.0)),
            utc_offset_h=float(rng.integers(-8, 10)),
            weather_phase=float(rng.uniform(0.0, TWO_PI)),
        )
        for i in range(len(names))
    ]


def _draw_devices(
    rng: np.random.Generator, n: int, types: tuple[str, ...], prefix: str, site_list: list[Site]
) -> list[Device]:
    """``n`` devices: types round-robin, sites shuffled, a firmware version each."""
    site_of = rng.permutation(np.arange(n) % len(site_list))
    counters = dict.fromkeys(types, 0)
    devices: list[Device] = []
    for i in range(n):
        dtype = types[i % len(types)]
        counters[dtype] += 1
        firmware = f"{1 + int(rng.integers(0, 3))}.{int(rng.integers(0, 10))}"
        devices.append(
            Device(
                index=i,
                device_id=f"{prefix}{dtype}-{counters[dtype]:04d}",
                site=site_list[int(site_of[i])].name,
                device_type=dtype,
                tags={"fw": firmware, **DEVICE_TYPES[dtype].tags},
            )
        )
    return devices


def _draw_group(
    rng: np.random.Generator,
    dtype: DeviceType,
    members: list[Device],
    site_number: dict[str, int],
    interval_ms: float,
) -> Group:
    """The devices of one type as arrays: per device and channel gain, offset, noise and ADC
    quantum; per device the phase of its readings and the type's own parameters."""
    m, c = len(members), len(dtype.channels)
    scale = np.array([ch.scale for ch in dtype.channels])
    noise = np.array([ch.noise for ch in dtype.channels])
    coarse = rng.random(m) < 0.2  # a fifth of the devices have a coarse ADC
    quantum = np.where(coarse[:, None], [ch.quantum for ch in dtype.channels], 0.0)
    fixed = np.array([not ch.anomalies for ch in dtype.channels])  # e.g. door switch
    gain = np.where(fixed, 1.0, np.clip(rng.normal(1.0, 0.03, (m, c)), 0.9, 1.1))
    offset = np.where(fixed, 0.0, rng.normal(0.0, 0.3, (m, c)) * scale)
    noise_mult = np.exp(rng.normal(0.0, 0.25, (m, c)))
    assert dtype.draw_params is not None
    return Group(
        dtype=dtype,
        index=np.array([d.index for d in members], dtype=np.int64),
        devices=members,
        site_index=np.array([site_number[d.site] for d in members]),
        gain=gain,
        offset=offset,
        noise=noise * noise_mult,
        quantum=quantum,
        phase_ms=rng.integers(0, max(1, int(min(interval_ms, 1000.0))), m),
        params=dtype.draw_params(rng, m),
    )


def ambient(sites: list[Site], site_index: np.ndarray, hour: np.ndarray, days: np.ndarray):
    """Ambient temperature (deg C): daily cycle with a harmonic plus multi-day weather."""
    mean = np.array([s.mean_temp for s in sites])[site_index][:, None]
    amp = np.array([s.daily_amp for s in sites])[site_index][:, None]
    phase = np.array([s.weather_phase for s in sites])[site_index][:, None]
    daily = amp * np.sin(TWO_PI * (hour - 9.0) / 24.0)
    daily += 0.25 * amp * np.sin(2.0 * TWO_PI * (hour - 6.0) / 24.0)
    weather = 2.0 * np.sin(TWO_PI * days / 4.3 + phase) + np.sin(TWO_PI * days / 9.1 + 2 * phase)
    return mean + daily + weather
