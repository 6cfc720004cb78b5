"""Helpers of the simulator tests: small configs and collected runs (no Kafka)."""

from __future__ import annotations

import numpy as np

from edgestream.sim import SimConfig, Simulator
from edgestream.sim.schedule import Message
from edgestream.sim.signals import SignalGenerator

START = 1_718_000_000_000  # 2024-06-10T06:13:20Z
FIELDS = ("ts", "values", "clean", "anomalous", "delay")


def config(**changes: object) -> SimConfig:
    """A small fast config with a fixed start time and no labels file."""
    base = {"devices": 6, "rate": 2.0, "duration": 120.0, "seed": 11, "start_time": START}
    base.update(changes)
    base.setdefault("labels", None)
    return SimConfig(**base)  # type: ignore[arg-type]


def run(cfg: SimConfig) -> tuple[list[Message], Simulator]:
    sim = Simulator(cfg)
    return list(sim.messages()), sim


def generate(cfg: SimConfig) -> tuple[SignalGenerator, dict[str, dict[str, np.ndarray]]]:
    """All blocks of a run concatenated per device type: ts, values, clean, anomalous."""
    gen = SignalGenerator(cfg, cfg.start_time or START)
    parts: dict[str, dict[str, list[np.ndarray]]] = {}
    for batch in gen.batches():
        for g in batch.groups:
            empty: dict[str, list[np.ndarray]] = {k: [] for k in FIELDS}
            slot = parts.setdefault(g.device_type, empty)
            slot["ts"].append(g.ts)
            slot["values"].append(g.values)
            slot["clean"].append(g.clean if g.clean is not None else g.values)
            slot["anomalous"].append(g.anomalous)
            slot["delay"].append(g.delay_ms)
    joined = {
        t: {k: np.concatenate(v, axis=1) for k, v in slot.items()} for t, slot in parts.items()
    }
    return gen, joined
