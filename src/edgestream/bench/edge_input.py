"""What ``edgestream bench edge`` runs on: its parameters, the bench topology of one gateway
and one pump topic, and the input it writes (a primer reading an hour early, then the
simulator's readings, as single readings or as SensorFrames).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from edgestream.bench.common import BenchError, Phases
from edgestream.bench.sustained import GROWTH_WINDOW_S
from edgestream.core.broker import ensure_topics, producer_config
from edgestream.core.serde import AvroSerializer, subject_for
from edgestream.core.topology import Topology, load_topology
from edgestream.edge.config import edge_topics
from edgestream.ml.artifact import shipped_model_path
from edgestream.sim import simulate

READINGS_TOPIC = "sensors.pump"
FRAMES_TOPIC = "sensors.pump.frames"
LIVE_TOPIC = "sensors.pump.live"  # the sustained runs' live input (a topic per run)
PRIMER_DEVICE = "bench-primer"
PRIMER_VALUES = {"vibration_rms": 3.0, "bearing_temp": 50.0, "pressure": 5.0, "motor_current": 30.0}
CHANNELS = {
    "vibration_rms": {"unit": "mm/s", "min": 0, "max": 50},
    "bearing_temp": {"unit": "degC", "min": -30, "max": 150},
    "pressure": {"unit": "bar", "min": 0, "max": 16},
    "motor_current": {"unit": "A", "min": 0, "max": 100},
}
SITES = 3


@dataclass(frozen=True)
class EdgeBenchParams:
    """Sizes and switches of one ``bench edge`` run (defaults: the documented run).

    >>> EdgeBenchParams(readings=1000, devices=10, rate=10.0).duration_s
    10.0
    >>> EdgeBenchParams(frames=0)
    Traceback (most recent call last):
    ...
    edgestream.bench.common.BenchError: --frames must be >= 2 (readings per SensorFrame)
    """

    readings: int = 100_000  # per input: single readings, and the same again in frames
    frames: int = 50  # readings per SensorFrame
    devices: int = 50
    rate: float = 10.0  # Hz per device: event time spans readings / (devices * rate) s
    batch: int = 256  # the model's micro-batch: the agent's take size (default topology)
    max_wait_ms: int = 20  # the agent's take window (default topology)
    sync: bool = True  # fsync every state commit, as the worker does by default
    aiokafka: bool = True
    seed: int = 7
    timeout: float = 300.0  # per gateway run
    profile_dir: Path | None = None  # run the workers under cProfile (all threads)
    workdir: Path | None = None  # kept when given; a temp dir removed afterwards otherwise
    sustained: bool = True  # the fixed-rate live run and its step search
    load_rate: float = 10_000.0  # readings/s of the sustained run (CLI --rate)
    load_duration: float = 60.0  # seconds of the sustained run (CLI --duration)
    step_duration: float = 20.0  # seconds per step of the search for the highest rate
    max_steps: int = 5  # probes of the step search (0: none)
    pinned: bool = True  # the raw consumer, a gateway run and the sustained run on one core

    def __post_init__(self) -> None:
        checks = [
            (self.readings >= self.devices, "--readings must be >= --devices"),
            (self.frames >= 2, "--frames must be >= 2 (readings per SensorFrame)"),
            (self.devices >= 1, "--devices must be >= 1"),
            (0 < self.rate <= 1000, "--rate must be in (0, 1000] Hz"),
            (self.batch >= 1, "--batch must be >= 1"),
            (self.max_wait_ms >= 1, "--max-wait must be >= 1 ms"),
            (self.timeout > 0, "--timeout must be > 0"),
            (self.load_rate > 0, "--rate must be > 0 readings/s"),
            (self.load_duration >= 2 * GROWTH_WINDOW_S, "--duration must be >= 20 s"),
            (self.step_duration >= 2 * GROWTH_WINDOW_S, "--step-duration must be >= 20 s"),
            (self.max_steps >= 0, "--max-steps must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise BenchError(message)

    @property
    def duration_s(self) -> float:
        return self.readings / (self.devices * self.rate)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("profile_dir", "workdir"):
            out[key] = None if out[key] is None else str(out[key])
        return {**out, "duration_s": round(self.duration_s, 3)}


def bench_topology(
    gateway_id: str, topic: str, schema: str, batch: int = 256, max_wait_ms: int = 20
) -> dict[str, Any]:
    """One gateway, one 1-partition pump topic; model, windows and rules of the default
    topology (``topologies/default.yaml``)."""
    return {
        "name": f"bench-{gateway_id}",
        "version": "1",
        "gateways": [
            {
                "id": gateway_id,
                "sites": [f"site-{i}" for i in range(1, SITES + 1)],
                "device_types": ["pump"],
            }
        ],
        "sensors": {
            "validation": {"max_clock_skew": "5m", "max_payload_bytes": "64KB"},
            "topics": [pump_topic(topic, schema)],
        },
        "features": {"pump": list(CHANNELS)},
        "models": {"pump": pump_model(batch, max_wait_ms, version="v1")},
        "windows": [
            {"size": "10s", "allowed_lateness": "5s", "max_out_of_orderness": "2s"},
            {"size": "1m", "allowed_lateness": "10s", "max_out_of_orderness": "2s"},
        ],
        "anomaly": {"rules": [{"name": "pump-anomaly", "device_types": ["pump"]}]},
    }


def pump_topic(topic: str, schema: str) -> dict[str, Any]:
    """A one-partition pump sensor topic of the bench topologies.

    >>> pump_topic("sensors.pump", "SensorReading")["channels"]["pressure"]
    {'unit': 'bar', 'min': 0, 'max': 16}
    """
    return {
        "name": topic,
        "device_type": "pump",
        "schema": schema,
        "partitions": 1,
        "channels": CHANNELS,
    }


def pump_model(batch: int, max_wait_ms: int, **extra: Any) -> dict[str, Any]:
    """The shipped pump model at micro-batch ``batch`` (``extra``: e.g. its version)."""
    return {
        "name": "pump-ae",
        "path": str(shipped_model_path("pump")),
        **extra,
        "batch": {"size": batch, "max_wait": f"{max_wait_ms}ms"},
    }


@dataclass
class BenchInput:
    name: str  # "readings" | "frames"
    gateway: str
    topic: str
    schema: str
    topology_path: Path
    topology: Topology | None = None
    messages: int = 0
    readings: int = 0


def bench_inputs(work: Path) -> list[BenchInput]:
    """The two inputs of a run: single readings and the same readings in SensorFrames."""
    return [
        BenchInput("readings", "bench-readings", READINGS_TOPIC, "SensorReading", work / "r.yaml"),
        BenchInput("frames", "bench-frames", FRAMES_TOPIC, "SensorFrame", work / "f.yaml"),
    ]


def write_topology(
    params: EdgeBenchParams, path: Path, gateway: str, topic: str, schema: str, bootstrap: str
) -> Topology:
    """Write the bench topology of one gateway and topic, load it, create its topics."""
    topo = bench_topology(gateway, topic, schema, params.batch, params.max_wait_ms)
    path.write_text(yaml.safe_dump(topo, sort_keys=False))
    topology = load_topology(path)
    ensure_topics(bootstrap, edge_topics(topology, gateway))
    return topology


def produce_inputs(
    params: EdgeBenchParams, inputs: list[BenchInput], bootstrap: str, registry: str, phases: Phases
) -> dict[str, Any]:
    """Primer + simulator run per input topic (same seed, same readings)."""
    start = (int(time.time() - params.duration_s) - 120) * 1000  # all in the past
    out: dict[str, Any] = {"start_time": start}
    for inp in inputs:
        frames = params.frames if inp.name == "frames" else 1
        produce_primer(bootstrap, registry, inp.topic, inp.schema, start - 3_600_000)
        phases.start(f"simulator -> {inp.topic}", total=params.readings)
        sim = simulate(
            bootstrap=bootstrap,
            registry=registry,
            devices=params.devices,
            rate=params.rate,
            duration=params.duration_s,
            seed=params.seed,
            sites=SITES,
            device_types=("pump",),
            start_time=start,
            frames=frames,
            topic=inp.topic,
            labels=None,
            fast=True,
            on_progress=lambda p: phases.update(p.readings, f"{p.readings:,} readings"),
        )
        inp.messages, inp.readings = sim.messages + 1, sim.readings + 1
        phases.done(f"{sim.readings:,} readings in {sim.messages:,} messages")
        out[inp.name] = {
            "topic": inp.topic,
            "messages": inp.messages,
            "readings": inp.readings,
            "bytes": sim.bytes,
            "produce_s": round(sim.seconds, 3),
            "anomalous_readings": sim.anomalous_readings,
        }
    return out


def produce_primer(bootstrap: str, registry: str, topic: str, schema: str, ts: int) -> None:
    from confluent_kafka import Producer

    head = {"device_id": PRIMER_DEVICE, "site": "site-1", "device_type": "pump", "tags": {}}
    if schema == "SensorFrame":
        channels: dict[str, Any] = {k: [v] for k, v in PRIMER_VALUES.items()}
        record = {**head, "first_seq": 0, "ts": [ts], "channels": channels}
    else:
        record = {**head, "ts": ts, "seq": 0, "channels": dict(PRIMER_VALUES)}
    ser = AvroSerializer(registry, schema, subject_for(topic))
    producer = Producer(producer_config(bootstrap))
    producer.produce(topic, ser(record), PRIMER_DEVICE.encode())
    if producer.flush(15):
        raise BenchError(f"the broker at {bootstrap} did not take the primer record")
